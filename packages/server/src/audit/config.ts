/**
 * Audit settings, resolved once with the rest of the server config: where the signing key
 * lives, and how often checkpoints are signed.
 */
import { dirname, join, resolve } from 'node:path';
import { CountersignError, originProblem } from '@countersign/core';

export interface AuditConfig {
  /** The Ed25519 private key file (PEM); null keeps a key in memory only (in-memory databases). */
  readonly keyPath: string | null;
  /**
   * PostgreSQL with the default key path only: `./countersign-audit-key.pem`, where earlier
   * versions kept every PostgreSQL installation's key (and where a SQLite database in the same
   * directory keeps its own). Used only while `keyPath` does not exist, and only if it signed this
   * database's newest checkpoint (runtime.ts); otherwise `keyPath` is created.
   */
  readonly legacyKeyPath: string | null;
  /** Sign a checkpoint once this many entries have come since the last one… */
  readonly checkpointEvery: number;
  /** …or once this many seconds have passed since it, if any entry came. */
  readonly checkpointSeconds: number;
  /** Entries older than this many days are removed (their hashes stay; what remains still verifies). 0 keeps everything. */
  readonly retentionDays: number;
  /** Field names redacted whole in audit data (COUNTERSIGN_AUDIT_REDACT_FIELDS, comma-separated); undefined: the defaults. */
  readonly redactFields: readonly string[] | undefined;
  /** The append-only witness directory every signed checkpoint is written to as a note (COUNTERSIGN_AUDIT_WITNESS_DIR); null: none. */
  readonly witnessDir: string | null;
  /** The deployment's checkpoint origin to keep at the first start (COUNTERSIGN_AUDIT_ORIGIN); null: a default drawn then. */
  readonly origin: string | null;
}

export const KEY_FILE = 'countersign-audit-key.pem';

/**
 * Next to the SQLite file; for PostgreSQL, `./countersign-audit-key.<server>-<port>-<database>[-<schema>].pem`
 * in the start directory, so each database gets its own key and never shares one with a SQLite
 * installation (or another PostgreSQL database) started from the same directory; none (in memory)
 * for `sqlite::memory:`, whose trail does not outlive the process either.
 */
export function defaultAuditKeyPath(databaseUrl: string, cwd = process.cwd()): string | null {
  // Parsed here by hand: the CLI's client commands load this module and must not load the drivers.
  if (databaseUrl.startsWith('sqlite:')) {
    const target = databaseUrl.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    return target === ':memory:' || target === '' ? null : join(dirname(resolve(cwd, target)), KEY_FILE);
  }
  return resolve(cwd, `countersign-audit-key.${postgresKeyName(databaseUrl)}.pem`);
}

/** `pg-127.0.0.1-5432-countersign` (plus `-<schema>`): which database a key file belongs to, as a file name. */
export function postgresKeyName(databaseUrl: string): string {
  let parts: string[];
  try {
    const url = new URL(databaseUrl);
    const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || decodeURIComponent(url.username) || 'postgres';
    const schema = url.searchParams.get('schema');
    parts = ['pg', url.hostname || 'localhost', url.port || '5432', database, ...(schema ? [schema] : [])];
  } catch {
    parts = ['pg', 'unparsed'];
  }
  return parts.join('-').replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 120);
}

function fieldList(value: string | undefined): readonly string[] | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of names) {
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name)) throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_AUDIT_REDACT_FIELDS: "${name}" is not a field name`);
  }
  return Object.freeze(names);
}

function auditOrigin(value: string | undefined): string | null {
  if (value === undefined || value.trim() === '') return null;
  const problem = originProblem(value.trim());
  if (problem) throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_AUDIT_ORIGIN: ${problem}`);
  return value.trim();
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new CountersignError('VALIDATION_FAILED', `${name} must be a whole number ≥ 1 (got "${value}")`);
  return n;
}

export function resolveAuditConfig(
  databaseUrl: string,
  flags: { auditKey?: string | undefined } = {},
  env: Readonly<Record<string, string | undefined>>,
  cwd = process.cwd(),
): AuditConfig {
  const explicit = flags.auditKey || env.COUNTERSIGN_AUDIT_KEY_PATH || undefined;
  return Object.freeze({
    keyPath: explicit ? resolve(cwd, explicit) : defaultAuditKeyPath(databaseUrl, cwd),
    legacyKeyPath: explicit || databaseUrl.startsWith('sqlite:') ? null : resolve(cwd, KEY_FILE),
    checkpointEvery: positive('COUNTERSIGN_AUDIT_CHECKPOINT_ENTRIES', env.COUNTERSIGN_AUDIT_CHECKPOINT_ENTRIES, 1000),
    checkpointSeconds: positive('COUNTERSIGN_AUDIT_CHECKPOINT_SECONDS', env.COUNTERSIGN_AUDIT_CHECKPOINT_SECONDS, 60),
    retentionDays: env.COUNTERSIGN_AUDIT_RETENTION_DAYS === '0' ? 0 : positive('COUNTERSIGN_AUDIT_RETENTION_DAYS', env.COUNTERSIGN_AUDIT_RETENTION_DAYS, 365),
    redactFields: fieldList(env.COUNTERSIGN_AUDIT_REDACT_FIELDS),
    witnessDir: env.COUNTERSIGN_AUDIT_WITNESS_DIR ? resolve(cwd, env.COUNTERSIGN_AUDIT_WITNESS_DIR) : null,
    origin: auditOrigin(env.COUNTERSIGN_AUDIT_ORIGIN),
  });
}

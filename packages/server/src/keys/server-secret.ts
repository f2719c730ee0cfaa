/**
 * The server secret file: 32 random bytes kept beside the audit key (mode 0600, created on first
 * start, `COUNTERSIGN_SERVER_SECRET_PATH`), never in the database. Keys derived from it
 *   - MAC every credential row (operators, their tokens, agent keys): a row written or edited by
 *     someone who can only reach the database does not authenticate, so a database writer alone
 *     cannot mint an admin (`countersign admin recover` needs this file too);
 *   - seal TOTP seeds when no COUNTERSIGN_ENCRYPTION_KEY is set (no more `plain:` seeds).
 * Servers sharing a database must share this file, as they share the audit key.
 *
 *   const secret = loadOrCreateServerSecret('/var/lib/countersign/countersign-server-secret');
 *   secret.mac('operator', [id, name, roles]);   // hex HMAC-SHA256
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CountersignError } from '@countersign/core';

export const SERVER_SECRET_FILE = 'countersign-server-secret';

export interface ServerSecret {
  /** Where it is kept; null for one that lives in this process only (in-memory databases, tests). */
  readonly path: string | null;
  /** True when this process created it (a first start): rows from before MACs existed are adopted once, then. */
  readonly created: boolean;
  /** HMAC-SHA256 of the canonical JSON of `fields`, under a key derived for `label`; hex. */
  mac(label: string, fields: readonly unknown[]): string;
  /** Constant-time check of a stored MAC (null or malformed: false). */
  verify(label: string, fields: readonly unknown[], stored: string | null | undefined): boolean;
  /** A 32-byte key derived for `label` (e.g. the TOTP seed key). */
  derive(label: string): Buffer;
}

function fromBytes(bytes: Buffer, path: string | null, created: boolean): ServerSecret {
  const derive = (label: string) => createHmac('sha256', bytes).update(`countersign/${label}`).digest();
  const mac = (label: string, fields: readonly unknown[]) => createHmac('sha256', derive(`mac/${label}`)).update(JSON.stringify(fields)).digest('hex');
  return {
    path,
    created,
    derive,
    mac,
    verify(label, fields, stored) {
      if (typeof stored !== 'string' || !/^[0-9a-f]{64}$/.test(stored)) return false;
      return timingSafeEqual(Buffer.from(stored, 'hex'), Buffer.from(mac(label, fields), 'hex'));
    },
  };
}

/** A secret that lives in memory only. */
export function ephemeralServerSecret(): ServerSecret {
  return fromBytes(randomBytes(32), null, true);
}

function parse(text: string, path: string): Buffer {
  const hex = text.trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new CountersignError('VALIDATION_FAILED', `${path} is not a Countersign server secret (64 hex digits)`);
  return Buffer.from(hex, 'hex');
}

/** Reads the secret at `path`, or null when there is none (break-glass refuses to create one). */
export function readServerSecret(path: string): ServerSecret | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CountersignError('STORE_UNAVAILABLE', `cannot read the server secret ${path}: ${(err as Error).message}`);
  }
  return fromBytes(parse(text, path), path, false);
}

/** Reads the secret at `path`, creating it (exclusively, 0600) when there is none. */
export function loadOrCreateServerSecret(path: string): ServerSecret {
  const existing = readServerSecret(path);
  if (existing) return existing;
  mkdirSync(dirname(path), { recursive: true });
  const bytes = randomBytes(32);
  try {
    writeFileSync(path, `${bytes.toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = readServerSecret(path);
      if (raced) return raced;
    }
    throw new CountersignError('STORE_UNAVAILABLE', `cannot create the server secret ${path}: ${(err as Error).message}`);
  }
  return fromBytes(bytes, path, true);
}

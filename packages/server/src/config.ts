/**
 * One config pipeline. Each setting is resolved once, with the precedence flag > `COUNTERSIGN_*`
 * environment > file > default, into a frozen object that the runtime (runtime.ts) hands to
 * every part it builds. This module is the only reader of `process.env`
 * (`processEnvironment()`); everything else is given a resolved config or an explicit
 * environment, so a test can pass its own without touching the process.
 *
 * The "file" layer is an object of the same keys as the flags (`ServerFileSettings`): the server
 * has no settings file of its own today (the policy file is data the engine validates, found
 * through `policyPath`), so callers pass none; embedded mode passes its options as flags.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CountersignError, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN, type ApproverLimits, type CooldownConfig } from '@countersign/core';
import { resolveAuditConfig, type AuditConfig } from './audit/config.ts';

/** The process environment, as a frozen copy: the one place the server reads `process.env`. */
export function processEnvironment(): Readonly<Record<string, string | undefined>> {
  return Object.freeze({ ...process.env });
}

/**
 * Under the test runner (`VITEST`) or with `COUNTERSIGN_CHECK_REENTRY=1`, the store refuses a
 * query on itself from inside its own transaction (it would wait for itself on SQLite).
 */
export function reentryCheckFrom(env: Readonly<Record<string, string | undefined>>): boolean {
  return env['VITEST'] !== undefined || env['COUNTERSIGN_CHECK_REENTRY'] === '1';
}

export type Environment = Readonly<Record<string, string | undefined>>;

export interface GuardOptions {
  /** COUNTERSIGN_ENCRYPTION_KEY: seals TOTP secrets (and request columns) at rest; without it they are stored plain. */
  encryptionKey?: string | undefined;
  /** COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS: comma-separated old keys, only read with (store/sealing.ts). */
  previousEncryptionKeys?: string | undefined;
  approverLimits?: ApproverLimits;
  cooldown?: CooldownConfig;
}

/**
 * Guard settings from the environment: COUNTERSIGN_ENCRYPTION_KEY (and _PREVIOUS), and COUNTERSIGN_REVIEWER_LIMITS
 * (`on`, the default, or `off`: no automatic velocity limits or cool-downs — for test rigs and
 * single-operator demos; manual cool-downs, MFA and number matching still apply).
 */
export function guardOptionsFromEnv(env: Record<string, string | undefined>): GuardOptions {
  const limits = (env.COUNTERSIGN_REVIEWER_LIMITS ?? '').trim().toLowerCase();
  if (limits !== '' && limits !== 'on' && limits !== 'off') {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_REVIEWER_LIMITS must be "on" or "off", not "${limits}"`);
  }
  const never = Number.MAX_SAFE_INTEGER;
  return {
    encryptionKey: env.COUNTERSIGN_ENCRYPTION_KEY || undefined,
    previousEncryptionKeys: env.COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS || undefined,
    ...(limits === 'off'
      ? { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: never, perDay: never }, cooldown: { ...DEFAULT_COOLDOWN, threshold: never } }
      : {}),
  };
}

/** What every runtime needs, `serve` and embedded mode alike (runtime.ts). */
export interface RuntimeConfig {
  readonly databaseUrl: string;
  /** Milliseconds between scheduler polls (COUNTERSIGN_TICK_MS); due timers written by this process run at once regardless. */
  readonly tickMs: number;
  /** How long a process's claim on a due timer lasts before another may take it over (COUNTERSIGN_TIMER_LEASE_MS, default 30 s). */
  readonly timerLeaseMs: number;
  /** Where people reach the dashboard, for links in notifications (COUNTERSIGN_PUBLIC_URL); default the listen URL. */
  readonly publicUrl: string | undefined;
  /** Audit key file, checkpoint cadence, retention, redacted fields (COUNTERSIGN_AUDIT_*). */
  readonly audit: AuditConfig;
  /**
   * The server secret file (keys/server-secret.ts: credential MACs, the TOTP seed key), 0600:
   * COUNTERSIGN_SERVER_SECRET_PATH, else beside the audit key; null (in memory) with the audit key.
   */
  readonly serverSecretPath: string | null;
  /** Encryption keys (COUNTERSIGN_ENCRYPTION_KEY, _PREVIOUS) and reviewer limits (COUNTERSIGN_REVIEWER_LIMITS). */
  readonly guard: Readonly<GuardOptions>;
  /**
   * The environment as it was when the config was resolved. Channel secrets are named by the
   * policy (`secretEnv: …`), so which variables matter is known only once a policy is read;
   * they are looked up here, never in `process.env`.
   */
  readonly env: Environment;
}

/** `serve`'s config: the runtime's plus the listener, the policy file, bootstrap secrets and sessions. */
export interface ServerConfig extends RuntimeConfig {
  readonly host: string;
  readonly port: number;
  /** Absolute path of the policy file, or null for the built-in default. */
  readonly policyPath: string | null;
  readonly adminToken: string | undefined;
  readonly agentKey: string | undefined;
  /** HMAC key for dashboard session cookies (COUNTERSIGN_SESSION_SECRET); random per process when unset. */
  readonly sessionSecret: string | undefined;
  /** Believe X-Forwarded-Proto/-Host from a TLS-terminating proxy (COUNTERSIGN_TRUST_PROXY=1). */
  readonly trustProxy: boolean;
}

export interface ServerFlags {
  database?: string | undefined;
  host?: string | undefined;
  port?: string | number | undefined;
  policy?: string | undefined;
  auditKey?: string | undefined;
  /** Scheduler poll interval, ms (embedded mode's `sweepIntervalMs`; `serve` has no flag for it). */
  tickMs?: string | number | undefined;
}

/** Settings from a file, below the environment and above the defaults. */
export type ServerFileSettings = ServerFlags;

type Layers = { flags: ServerFlags; env: Environment; file: ServerFileSettings };

/** flag > environment > file; undefined when none of them sets it (the caller supplies the default). */
function pick(layers: Layers, key: keyof ServerFlags, envName: string): string | number | undefined {
  return layers.flags[key] ?? layers.env[envName] ?? layers.file[key];
}

export function resolveRuntimeConfig(
  flags: ServerFlags = {},
  env: Environment = processEnvironment(),
  cwd = process.cwd(),
  file: ServerFileSettings = {},
): RuntimeConfig {
  const layers = { flags, env, file };
  const tickValue = pick(layers, 'tickMs', 'COUNTERSIGN_TICK_MS');
  const tickMs = Number(tickValue ?? 1000);
  if (!Number.isInteger(tickMs) || tickMs < 10 || tickMs > 60_000) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_TICK_MS must be an integer 10–60000 (got "${tickValue}")`);
  }
  const timerLeaseMs = Number(env.COUNTERSIGN_TIMER_LEASE_MS ?? 30_000);
  if (!Number.isInteger(timerLeaseMs) || timerLeaseMs < 100 || timerLeaseMs > 3_600_000) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_TIMER_LEASE_MS must be an integer 100–3600000 (got "${env.COUNTERSIGN_TIMER_LEASE_MS}")`);
  }
  const databaseUrl = String(pick(layers, 'database', 'COUNTERSIGN_DATABASE_URL') ?? 'sqlite:./countersign.db');
  const auditKey = flags.auditKey ?? (env.COUNTERSIGN_AUDIT_KEY_PATH ? undefined : file.auditKey);
  const audit = resolveAuditConfig(databaseUrl, { auditKey }, env, cwd);
  return Object.freeze({
    databaseUrl,
    tickMs,
    timerLeaseMs,
    publicUrl: env.COUNTERSIGN_PUBLIC_URL || undefined,
    audit,
    serverSecretPath: serverSecretPathFrom(audit, env, cwd),
    guard: Object.freeze(guardOptionsFromEnv(env)),
    env: Object.isFrozen(env) ? env : Object.freeze({ ...env }),
  });
}

/** COUNTERSIGN_SERVER_SECRET_PATH, else the file beside the audit key; null when the audit key lives in memory. */
export function serverSecretPathFrom(audit: Pick<AuditConfig, 'keyPath'>, env: Environment, cwd = process.cwd()): string | null {
  if (env.COUNTERSIGN_SERVER_SECRET_PATH) return resolve(cwd, env.COUNTERSIGN_SERVER_SECRET_PATH);
  return audit.keyPath === null ? null : join(dirname(audit.keyPath), 'countersign-server-secret');
}

export function resolveServerConfig(
  flags: ServerFlags = {},
  env: Environment = processEnvironment(),
  cwd = process.cwd(),
  file: ServerFileSettings = {},
): ServerConfig {
  const layers = { flags, env, file };
  const portValue = pick(layers, 'port', 'COUNTERSIGN_PORT');
  const port = Number(portValue ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new CountersignError('VALIDATION_FAILED', `port must be an integer 0–65535 (got "${portValue}")`);
  }
  const explicitPolicy = pick(layers, 'policy', 'COUNTERSIGN_POLICY');
  let policyPath: string | null = null;
  if (explicitPolicy) {
    policyPath = resolve(cwd, String(explicitPolicy));
    if (!existsSync(policyPath)) throw new CountersignError('POLICY_INVALID', `policy file ${policyPath} does not exist`);
  } else if (existsSync(resolve(cwd, 'countersign.yaml'))) {
    policyPath = resolve(cwd, 'countersign.yaml');
  }
  const runtime = resolveRuntimeConfig(flags, env, cwd, file);
  return Object.freeze({
    ...runtime,
    host: String(pick(layers, 'host', 'COUNTERSIGN_HOST') ?? '127.0.0.1'),
    port,
    policyPath,
    adminToken: env.COUNTERSIGN_ADMIN_TOKEN || undefined,
    agentKey: env.COUNTERSIGN_AGENT_KEY || undefined,
    sessionSecret: env.COUNTERSIGN_SESSION_SECRET || undefined,
    trustProxy: ['1', 'true', 'yes'].includes((env.COUNTERSIGN_TRUST_PROXY ?? '').toLowerCase()),
  });
}

export interface ClientConfig {
  readonly url: string;
  readonly token: string | undefined;
}

export function resolveClientConfig(flags: { url?: string | undefined; token?: string | undefined } = {}, env: Environment = processEnvironment()): ClientConfig {
  return Object.freeze({
    url: (flags.url ?? env.COUNTERSIGN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''),
    token: flags.token ?? env.COUNTERSIGN_TOKEN ?? undefined,
  });
}

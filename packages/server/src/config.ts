/**
 * One config pipeline. Each setting is resolved once, with the precedence flag > `COUNTERSIGN_*`
 * environment > file > default, into a frozen object that the runtime (runtime.ts) hands to
 * every part it builds. This module is the only reader of `process.env`
 * (`processEnvironment()`, kept in environment.ts and re-exported here); everything else is
 * given a resolved config or an explicit environment, so a test can pass its own without
 * touching the process.
 *
 * The "file" layer is an object of the same keys as the flags (`ServerFileSettings`): the server
 * has no settings file of its own today (the policy file is data the engine validates, found
 * through `policyPath`), so callers pass none; embedded mode passes its options as flags.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CountersignError, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN, parseIdentityFile, policyOverridesFrom, type ApproverLimits, type CooldownConfig, type IdentitySettings, type PolicyOverride } from '@countersign/core';
import { resolveAuditConfig, type AuditConfig } from './audit/config.ts';
import { processEnvironment, type Environment } from './environment.ts';
import { resolveForwardingConfig, type ForwardingConfig } from './forwarding/config.ts';
import { clientSecretFrom } from './identity/oidc.ts';

// The process environment and the client settings live in environment.ts (no domain imports, for
// the CLI's start-up); they are part of this pipeline and exported from here as well.
export { processEnvironment, resolveClientConfig, type ClientConfig, type Environment } from './environment.ts';

/**
 * Under the test runner (`VITEST`) or with `COUNTERSIGN_CHECK_REENTRY=1`, the store refuses a
 * query on itself from inside its own transaction (it would wait for itself on SQLite).
 */
export function reentryCheckFrom(env: Readonly<Record<string, string | undefined>>): boolean {
  return env['VITEST'] !== undefined || env['COUNTERSIGN_CHECK_REENTRY'] === '1';
}


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
  /** SIEM forwarding: syslog and HTTPS NDJSON destinations, batch, poll, lease (COUNTERSIGN_FORWARD_*, forwarding/config.ts). */
  readonly forward: ForwardingConfig;
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
  /**
   * With no policy named (flag or COUNTERSIGN_POLICY), `./countersign.yaml` of the start directory,
   * whether or not it exists yet: a reload (SIGHUP) picks it up once it is created. Else null.
   */
  readonly policyFallback: string | null;
  /** Started by `npm start` (npm_lifecycle_event): the server stops when that npm process is gone, rather than live on as an orphan. */
  readonly underNpm: boolean;
  readonly adminToken: string | undefined;
  readonly agentKey: string | undefined;
  /** HMAC key for dashboard session cookies (COUNTERSIGN_SESSION_SECRET); random per process when unset. */
  readonly sessionSecret: string | undefined;
  /** Believe X-Forwarded-Proto/-Host from a TLS-terminating proxy (COUNTERSIGN_TRUST_PROXY=1). */
  readonly trustProxy: boolean;
  /** Bodies, connections, slow clients and waits (http/listener.ts, http/body-limit.ts, http/wait-slots.ts). */
  readonly transport: TransportConfig;
  /** The JSON log stream (log.ts): COUNTERSIGN_LOG_LEVEL, and COUNTERSIGN_DEBUG=1 for a routing line per create. */
  readonly logging: LoggingConfig;
  /**
   * Common policy settings from the environment (COUNTERSIGN_SLA_*, COUNTERSIGN_AUTOMATION_*,
   * COUNTERSIGN_REQUIRE_APPROVAL; core policy/env.ts), over the policy file and under an agent's own settings.
   */
  readonly policyOverrides: readonly PolicyOverride[];
  /** Single sign-on and SCIM (COUNTERSIGN_IDENTITY_FILE); null when not configured. */
  readonly identity: ResolvedIdentity | null;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggingConfig {
  /** COUNTERSIGN_LOG_LEVEL (default info); COUNTERSIGN_DEBUG=1 without a level means debug. */
  readonly level: LogLevel;
  /** COUNTERSIGN_DEBUG=1: one `routed` debug line per create (route, risk, rule names, automation, ids). */
  readonly debug: boolean;
}

export function resolveLoggingConfig(env: Environment = processEnvironment()): LoggingConfig {
  const debugValue = (env.COUNTERSIGN_DEBUG ?? '').trim().toLowerCase();
  if (!['', '0', '1', 'true', 'false'].includes(debugValue)) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_DEBUG must be 1 or 0 (got "${env.COUNTERSIGN_DEBUG}")`, { field: 'COUNTERSIGN_DEBUG' });
  }
  const debug = debugValue === '1' || debugValue === 'true';
  const levelValue = (env.COUNTERSIGN_LOG_LEVEL ?? '').trim().toLowerCase();
  if (levelValue !== '' && !(LOG_LEVELS as readonly string[]).includes(levelValue)) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${env.COUNTERSIGN_LOG_LEVEL}")`, { field: 'COUNTERSIGN_LOG_LEVEL' });
  }
  const level = (levelValue || (debug ? 'debug' : 'info')) as LogLevel;
  return Object.freeze({ level, debug });
}

/** The policy settings the environment sets, each validated like the file's key; a bad one is refused naming its variable. */
export function resolvePolicyOverrides(env: Environment = processEnvironment()): readonly PolicyOverride[] {
  const { overrides, errors } = policyOverridesFrom(env);
  const first = errors[0];
  if (first) {
    throw new CountersignError('VALIDATION_FAILED', errors.map((e) => e.message).join('; '), { field: first.variable });
  }
  return Object.freeze(overrides);
}

/** The identity file, parsed, with the OIDC client secret read from the variable it names. */
export interface ResolvedIdentity {
  readonly source: string;
  readonly settings: IdentitySettings;
  readonly clientSecret: string | null;
}

/** COUNTERSIGN_IDENTITY_FILE: a YAML file (core identity/config.ts); a file that does not validate stops the start. */
export function resolveIdentityConfig(env: Environment, cwd = process.cwd()): ResolvedIdentity | null {
  const named = env.COUNTERSIGN_IDENTITY_FILE;
  if (!named) return null;
  const path = resolve(cwd, named);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_IDENTITY_FILE: cannot read ${path} (${(err as Error).message})`);
  }
  const settings = parseIdentityFile(text, path);
  return Object.freeze({ source: path, settings, clientSecret: settings.oidc ? clientSecretFrom(settings.oidc, env) : null });
}

/**
 * What one client can hold of the server. Every limit has a flag (`ServerFlags`), a
 * `COUNTERSIGN_*` variable and a default; the defaults keep a single key from exhausting file
 * descriptors (one agent held 1,500 event streams before these existed) and drop slowloris
 * clients within seconds.
 */
export interface TransportConfig {
  /** COUNTERSIGN_MAX_BODY_BYTES (1 MiB): the largest request body, counted while it streams. */
  readonly maxBodyBytes: number;
  /** COUNTERSIGN_MAX_CONNECTIONS (1000): open sockets; further ones are closed at once (Node `server.maxConnections`). */
  readonly maxConnections: number;
  /** COUNTERSIGN_HEADERS_TIMEOUT_MS (10 s): a client has this long to send its request headers. */
  readonly headersTimeoutMs: number;
  /** COUNTERSIGN_REQUEST_TIMEOUT_MS (30 s): … and this long to send the whole request, body included (answers may take longer: long-polls, streams). */
  readonly requestTimeoutMs: number;
  /** COUNTERSIGN_KEEPALIVE_TIMEOUT_MS (5 s): an idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number;
  /** COUNTERSIGN_MAX_WAITS_PER_PRINCIPAL (64): concurrent long-polls and event streams per agent key or operator. */
  readonly waitsPerPrincipal: number;
  /** COUNTERSIGN_MAX_WAITS (800): concurrent long-polls and event streams in this process, for everyone. */
  readonly waitsTotal: number;
}

const TRANSPORT_SETTINGS: ReadonlyArray<{ key: keyof TransportConfig; env: string; min: number; max: number; fallback: number }> = [
  { key: 'maxBodyBytes', env: 'COUNTERSIGN_MAX_BODY_BYTES', min: 1024, max: 64 * 1024 * 1024, fallback: 1024 * 1024 },
  { key: 'maxConnections', env: 'COUNTERSIGN_MAX_CONNECTIONS', min: 1, max: 1_000_000, fallback: 1000 },
  { key: 'headersTimeoutMs', env: 'COUNTERSIGN_HEADERS_TIMEOUT_MS', min: 100, max: 600_000, fallback: 10_000 },
  { key: 'requestTimeoutMs', env: 'COUNTERSIGN_REQUEST_TIMEOUT_MS', min: 100, max: 3_600_000, fallback: 30_000 },
  { key: 'keepAliveTimeoutMs', env: 'COUNTERSIGN_KEEPALIVE_TIMEOUT_MS', min: 100, max: 600_000, fallback: 5_000 },
  { key: 'waitsPerPrincipal', env: 'COUNTERSIGN_MAX_WAITS_PER_PRINCIPAL', min: 1, max: 100_000, fallback: 64 },
  { key: 'waitsTotal', env: 'COUNTERSIGN_MAX_WAITS', min: 1, max: 1_000_000, fallback: 800 },
];

export function resolveTransportConfig(flags: ServerFlags = {}, env: Environment = processEnvironment(), file: ServerFileSettings = {}): TransportConfig {
  const layers = { flags, env, file };
  const resolved = {} as Record<keyof TransportConfig, number>;
  for (const { key, env: name, min, max, fallback } of TRANSPORT_SETTINGS) {
    const value = pick(layers, key, name);
    const number = value === undefined || value === '' ? fallback : Number(value);
    if (!Number.isInteger(number) || number < min || number > max) {
      throw new CountersignError('VALIDATION_FAILED', `${name} must be an integer ${min}–${max} (got "${value}")`, { field: name });
    }
    resolved[key] = number;
  }
  // Node refuses a headers timeout longer than the request timeout (the headers are part of the request).
  if (resolved.headersTimeoutMs > resolved.requestTimeoutMs) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_HEADERS_TIMEOUT_MS (${resolved.headersTimeoutMs}) must not exceed COUNTERSIGN_REQUEST_TIMEOUT_MS (${resolved.requestTimeoutMs})`, { field: 'COUNTERSIGN_HEADERS_TIMEOUT_MS' });
  }
  if (resolved.waitsPerPrincipal > resolved.waitsTotal) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_MAX_WAITS_PER_PRINCIPAL (${resolved.waitsPerPrincipal}) must not exceed COUNTERSIGN_MAX_WAITS (${resolved.waitsTotal})`, { field: 'COUNTERSIGN_MAX_WAITS_PER_PRINCIPAL' });
  }
  return Object.freeze(resolved);
}

export interface ServerFlags {
  database?: string | undefined;
  host?: string | undefined;
  port?: string | number | undefined;
  policy?: string | undefined;
  auditKey?: string | undefined;
  /** Scheduler poll interval, ms (embedded mode's `sweepIntervalMs`; `serve` has no flag for it). */
  tickMs?: string | number | undefined;
  /** Transport limits (TransportConfig); `serve` has no flags for them yet, only COUNTERSIGN_* variables. */
  maxBodyBytes?: string | number | undefined;
  maxConnections?: string | number | undefined;
  headersTimeoutMs?: string | number | undefined;
  requestTimeoutMs?: string | number | undefined;
  keepAliveTimeoutMs?: string | number | undefined;
  waitsPerPrincipal?: string | number | undefined;
  waitsTotal?: string | number | undefined;
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
    forward: resolveForwardingConfig(env, cwd),
    env: Object.isFrozen(env) ? env : Object.freeze({ ...env }),
  });
}

/**
 * COUNTERSIGN_SERVER_SECRET_PATH, else the file beside the audit key, named after it: one secret
 * per database as there is one audit key per database (`countersign-audit-key.pg-h-5432-db.pem`
 * → `countersign-server-secret.pg-h-5432-db`; the SQLite default and any other key name →
 * `countersign-server-secret`). Null when the audit key lives in memory.
 */
export function serverSecretPathFrom(audit: Pick<AuditConfig, 'keyPath'>, env: Environment, cwd = process.cwd()): string | null {
  if (env.COUNTERSIGN_SERVER_SECRET_PATH) return resolve(cwd, env.COUNTERSIGN_SERVER_SECRET_PATH);
  return audit.keyPath === null ? null : serverSecretBeside(audit.keyPath);
}

export function serverSecretBeside(keyPath: string): string {
  const own = /^countersign-audit-key\.(pg-[A-Za-z0-9._-]+)\.pem$/.exec(basename(keyPath));
  return join(dirname(keyPath), own ? `countersign-server-secret.${own[1]}` : 'countersign-server-secret');
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
  let policyFallback: string | null = null;
  if (explicitPolicy) {
    policyPath = resolve(cwd, String(explicitPolicy));
    if (!existsSync(policyPath)) throw new CountersignError('POLICY_INVALID', `policy file ${policyPath} does not exist`);
  } else {
    policyFallback = resolve(cwd, 'countersign.yaml');
    if (existsSync(policyFallback)) policyPath = policyFallback;
  }
  const runtime = resolveRuntimeConfig(flags, env, cwd, file);
  return Object.freeze({
    ...runtime,
    host: String(pick(layers, 'host', 'COUNTERSIGN_HOST') ?? '127.0.0.1'),
    port,
    policyPath,
    policyFallback,
    underNpm: env.npm_lifecycle_event === 'start',
    adminToken: env.COUNTERSIGN_ADMIN_TOKEN || undefined,
    agentKey: env.COUNTERSIGN_AGENT_KEY || undefined,
    sessionSecret: env.COUNTERSIGN_SESSION_SECRET || undefined,
    trustProxy: ['1', 'true', 'yes'].includes((env.COUNTERSIGN_TRUST_PROXY ?? '').toLowerCase()),
    transport: resolveTransportConfig(flags, env, file),
    logging: resolveLoggingConfig(env),
    policyOverrides: resolvePolicyOverrides(env),
    identity: resolveIdentityConfig(env, cwd),
  });
}


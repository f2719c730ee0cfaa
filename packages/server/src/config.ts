/**
 * One config pipeline: flags > COUNTERSIGN_* environment > defaults, resolved once into a
 * frozen object. The policy file is resolved separately (it is data the engine validates).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CountersignError } from '@countersign/core';
import { resolveAuditConfig, type AuditConfig } from './audit/config.ts';

export interface ServerConfig {
  readonly databaseUrl: string;
  readonly host: string;
  readonly port: number;
  /** Absolute path of the policy file, or null for the built-in default. */
  readonly policyPath: string | null;
  readonly adminToken: string | undefined;
  readonly agentKey: string | undefined;
  /** Milliseconds between scheduler polls (COUNTERSIGN_TICK_MS); due timers written by this process run at once regardless. */
  readonly tickMs: number;
  /** How long a process's claim on a due timer lasts before another may take it over (COUNTERSIGN_TIMER_LEASE_MS, default 30 s). */
  readonly timerLeaseMs: number;
  /** Where people reach the dashboard, for links in notifications (COUNTERSIGN_PUBLIC_URL); default the listen URL. */
  readonly publicUrl: string | undefined;
  /** HMAC key for dashboard session cookies (COUNTERSIGN_SESSION_SECRET); random per process when unset. */
  readonly sessionSecret: string | undefined;
  /** Believe X-Forwarded-Proto/-Host from a TLS-terminating proxy (COUNTERSIGN_TRUST_PROXY=1). */
  readonly trustProxy: boolean;
  /** Audit key file and checkpoint cadence (COUNTERSIGN_AUDIT_KEY_PATH, COUNTERSIGN_AUDIT_CHECKPOINT_*). */
  readonly audit: AuditConfig;
}

export interface ServerFlags {
  database?: string | undefined;
  host?: string | undefined;
  port?: string | number | undefined;
  policy?: string | undefined;
  auditKey?: string | undefined;
}

export function resolveServerConfig(flags: ServerFlags = {}, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): ServerConfig {
  const port = Number(flags.port ?? env.COUNTERSIGN_PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new CountersignError('VALIDATION_FAILED', `port must be an integer 0–65535 (got "${flags.port ?? env.COUNTERSIGN_PORT}")`);
  }
  const tickMs = Number(env.COUNTERSIGN_TICK_MS ?? 1000);
  if (!Number.isInteger(tickMs) || tickMs < 10 || tickMs > 60_000) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_TICK_MS must be an integer 10–60000 (got "${env.COUNTERSIGN_TICK_MS}")`);
  }
  const timerLeaseMs = Number(env.COUNTERSIGN_TIMER_LEASE_MS ?? 30_000);
  if (!Number.isInteger(timerLeaseMs) || timerLeaseMs < 100 || timerLeaseMs > 3_600_000) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_TIMER_LEASE_MS must be an integer 100–3600000 (got "${env.COUNTERSIGN_TIMER_LEASE_MS}")`);
  }
  const explicitPolicy = flags.policy ?? env.COUNTERSIGN_POLICY;
  let policyPath: string | null = null;
  if (explicitPolicy) {
    policyPath = resolve(cwd, explicitPolicy);
    if (!existsSync(policyPath)) throw new CountersignError('POLICY_INVALID', `policy file ${policyPath} does not exist`);
  } else if (existsSync(resolve(cwd, 'countersign.yaml'))) {
    policyPath = resolve(cwd, 'countersign.yaml');
  }
  const databaseUrl = flags.database ?? env.COUNTERSIGN_DATABASE_URL ?? 'sqlite:./countersign.db';
  return Object.freeze({
    databaseUrl,
    host: flags.host ?? env.COUNTERSIGN_HOST ?? '127.0.0.1',
    port,
    policyPath,
    adminToken: env.COUNTERSIGN_ADMIN_TOKEN || undefined,
    agentKey: env.COUNTERSIGN_AGENT_KEY || undefined,
    tickMs,
    timerLeaseMs,
    publicUrl: env.COUNTERSIGN_PUBLIC_URL || undefined,
    sessionSecret: env.COUNTERSIGN_SESSION_SECRET || undefined,
    trustProxy: ['1', 'true', 'yes'].includes((env.COUNTERSIGN_TRUST_PROXY ?? '').toLowerCase()),
    audit: resolveAuditConfig(databaseUrl, flags, env, cwd),
  });
}

export interface ClientConfig {
  readonly url: string;
  readonly token: string | undefined;
}

export function resolveClientConfig(flags: { url?: string | undefined; token?: string | undefined } = {}, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  return Object.freeze({
    url: (flags.url ?? env.COUNTERSIGN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''),
    token: flags.token ?? env.COUNTERSIGN_TOKEN ?? undefined,
  });
}

/**
 * What one client may hold of the server while it waits, and how fast the server calls its
 * database back after losing it. Pure: the server counts and draws the randomness.
 *
 *   admitWait({ perPrincipal: 64, total: 800 }, { principal: 64, total: 100 })
 *   // → { admit: false, scope: 'principal', limit: 64, retryAfterSeconds: 5 }
 */

export interface WaitLimits {
  /** Concurrent long-polls and event streams one agent key or operator may hold. */
  readonly perPrincipal: number;
  /** Concurrent long-polls and event streams in one server process, for everyone. */
  readonly total: number;
}

export type WaitAdmission =
  | { readonly admit: true }
  | { readonly admit: false; readonly scope: 'principal' | 'server'; readonly limit: number; readonly retryAfterSeconds: number };

/** A wait ends when its request is decided or its client's timeout runs out; a few seconds is a fair first retry. */
export const WAIT_RETRY_AFTER_SECONDS = 5;

/** Whether one more wait fits beside those already held (`held` counts them, before this one). */
export function admitWait(limits: WaitLimits, held: { readonly principal: number; readonly total: number }): WaitAdmission {
  if (held.principal >= limits.perPrincipal) {
    return { admit: false, scope: 'principal', limit: limits.perPrincipal, retryAfterSeconds: WAIT_RETRY_AFTER_SECONDS };
  }
  if (held.total >= limits.total) {
    return { admit: false, scope: 'server', limit: limits.total, retryAfterSeconds: WAIT_RETRY_AFTER_SECONDS };
  }
  return { admit: true };
}

export interface ReconnectBackoff {
  readonly baseMs: number;
  readonly capMs: number;
}

/** 100 ms, doubling, never more than 5 s between tries: a restart is back within seconds, a long outage costs one try per 5 s. */
export const DEFAULT_RECONNECT_BACKOFF: ReconnectBackoff = Object.freeze({ baseMs: 100, capMs: 5_000 });

/**
 * The wait before reconnect attempt `attempt` (1, 2, 3, …): exponential with equal jitter, so
 * servers that lost the same database do not all call back in the same millisecond. Never ends:
 * the server keeps trying for as long as it runs. `random` is in [0, 1].
 */
export function reconnectDelay(attempt: number, random: number, backoff: ReconnectBackoff = DEFAULT_RECONNECT_BACKOFF): number {
  const exp = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  const r = Math.min(Math.max(random, 0), 1);
  return Math.round(exp / 2 + (exp / 2) * r);
}

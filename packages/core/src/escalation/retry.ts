/**
 * Delivery retries: exponential backoff with jitter, up to a limit. Randomness is an input
 * (`random` in [0, 1)), so the schedule is testable and the core stays deterministic.
 */

export interface RetryPolicy {
  /** Attempts in total, the first included. */
  readonly maxAttempts: number;
  /** Delay before the second attempt; doubles each time. */
  readonly baseMs: number;
  /** No single wait is longer than this. */
  readonly capMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ maxAttempts: 8, baseMs: 2_000, capMs: 15 * 60_000 });

/**
 * After `attempts` failed attempts: the delay before the next one, or null when the limit is
 * reached and the delivery is recorded as failed. "Equal jitter": half the exponential delay
 * is fixed, half random, so retries from many deliveries spread out but never bunch at zero.
 */
export function nextRetryDelay(attempts: number, policy: RetryPolicy, random: number): number | null {
  if (attempts >= policy.maxAttempts) return null;
  const exp = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempts - 1));
  const r = Math.min(Math.max(random, 0), 1);
  return Math.round(exp / 2 + (exp / 2) * r);
}

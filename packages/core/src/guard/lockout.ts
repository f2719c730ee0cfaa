/**
 * Step-up attempt limits (issue 13, finding 3): after `threshold` wrong TOTP or match codes for
 * one operator within `window` — or `lookbackThreshold` within `lookback`, however spread out —
 * further attempts are refused for a back-off that doubles with each further strike (`base`,
 * `2·base`, … at most `max`), counted over `lookback`.
 *
 * An attempt is counted from the moment it is reserved, before its code is evaluated (the server
 * stores it `pending`, then `failed`, or deletes it for a good code), so parallel guesses cannot
 * all slip in before the first failure is recorded: at most `threshold` codes are ever evaluated
 * before a lockout.
 *
 *   stepUpLockout([{ id: 'a1', at: t }, …five…], t + 1_000) // → { locked: true, until: t5 + 60_000, … }
 */

export interface LockoutConfig {
  /** Wrong codes within `windowMs` that start a lockout. */
  readonly threshold: number;
  readonly windowMs: number;
  /** The first lockout's length; each further strike doubles it. */
  readonly baseMs: number;
  readonly maxMs: number;
  /** How far back strikes are counted (the back-off keeps growing within it). */
  readonly lookbackMs: number;
  /**
   * Wrong codes within `lookbackMs` that also start a lockout, however slowly they came: a
   * patient guesser holding an operator's token could otherwise send `threshold − 1` codes every
   * `windowMs` (4 per 15 minutes, 384 a day) forever, never locked, audited or noticed.
   */
  readonly lookbackThreshold: number;
}

export const DEFAULT_LOCKOUT: LockoutConfig = Object.freeze({
  threshold: 5,
  windowMs: 15 * 60_000,
  baseMs: 60_000,
  maxMs: 60 * 60_000,
  lookbackMs: 24 * 3600_000,
  lookbackThreshold: 20,
});

/** A wrong (or not yet judged) code attempt. */
export interface StepUpAttempt {
  readonly id: string;
  readonly at: number;
}

export type LockoutState =
  | { readonly locked: false; readonly failures: number; readonly strikes: number }
  | {
      readonly locked: true;
      readonly failures: number;
      readonly strikes: number;
      readonly until: number;
      /** Whole seconds until the next attempt is taken (at least 1). */
      readonly retryAfterSeconds: number;
      /** The attempt whose failure started the current lockout. */
      readonly triggeredBy: string;
    };

/**
 * Whether an operator may try a code at `now`, given their failed and in-flight attempts (any
 * order; those older than `lookbackMs` are ignored). Pure: the caller reads the attempts under a
 * per-operator lock and records the new attempt in the same transaction.
 */
export function stepUpLockout(attempts: readonly StepUpAttempt[], now: number, config: LockoutConfig = DEFAULT_LOCKOUT): LockoutState {
  // Attempts stamped ahead of `now` (another server's clock runs fast) still count: skew must not widen the allowance.
  const sorted = attempts.filter((a) => a.at > now - config.lookbackMs).sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let strikes = 0;
  let until = 0;
  let triggeredBy = '';
  let start = 0;
  let longStart = 0;
  sorted.forEach((attempt, i) => {
    while (sorted[start]!.at <= attempt.at - config.windowMs) start++;
    while (sorted[longStart]!.at <= attempt.at - config.lookbackMs) longStart++;
    if (i - start + 1 >= config.threshold || i - longStart + 1 >= config.lookbackThreshold) {
      strikes++;
      until = attempt.at + Math.min(config.baseMs * 2 ** Math.min(strikes - 1, 30), config.maxMs);
      triggeredBy = attempt.id;
    }
  });
  const failures = sorted.filter((a) => a.at > now - config.windowMs).length;
  if (until > now) {
    return { locked: true, failures, strikes, until, retryAfterSeconds: Math.max(1, Math.ceil((until - now) / 1000)), triggeredBy };
  }
  return { locked: false, failures, strikes };
}

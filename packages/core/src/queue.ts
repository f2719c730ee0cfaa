/**
 * The queue's order (issue 13, "a flood-proof queue"): the one definition of "most urgent first"
 * that the server's paged query, the CLI and the dashboard all follow.
 *
 *   1. risk level: critical, then high, then medium, then low — so no number of low-risk requests
 *      can push a critical one down;
 *   2. the deadline: the earliest of the current SLA deadline (the escalation level's `dueAt`, or
 *      the assessment's `slaDueAt` when there is no escalation state) and the agent's own expiry
 *      (`expiresAt`); a request with neither comes after those with one;
 *   3. the oldest first, then the id (a total order, so keyset paging never skips or repeats).
 *
 * Pure: the server stores the deadline beside each pending request (`requests.queue_due_at`) so
 * that this order is an index walk; `compareUrgency` is the same order over values in memory.
 */
import { CountersignError } from './errors.ts';
import type { RiskLevel } from './schemas.ts';

/** Risk levels, most urgent first. */
export const RISK_URGENCY: readonly RiskLevel[] = Object.freeze(['critical', 'high', 'medium', 'low'] as RiskLevel[]);

/** The deadline a pending request is sorted by: the earlier of its SLA deadline and its expiry; null when it has neither. */
export function queueDeadline(slaDueAt: number | null | undefined, expiresAt: number | null | undefined): number | null {
  const candidates = [slaDueAt, expiresAt].filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return candidates.length === 0 ? null : Math.min(...candidates);
}

/** What the queue order reads of a request: times in epoch milliseconds. */
export interface UrgencyKey {
  riskLevel: RiskLevel;
  /** `queueDeadline(...)`: null when the request has no deadline. */
  dueAt: number | null;
  createdAt: number;
  id: string;
}

/** Most urgent first (see the top of this file). Negative when `a` comes before `b`. */
export function compareUrgency(a: UrgencyKey, b: UrgencyKey): number {
  const risk = RISK_URGENCY.indexOf(a.riskLevel) - RISK_URGENCY.indexOf(b.riskLevel);
  if (risk !== 0) return risk;
  const da = a.dueAt ?? Infinity;
  const db = b.dueAt ?? Infinity;
  if (da !== db) return da < db ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The orders a listing can have: `urgent` (the queue), `newest` (history), `oldest`. */
export const LIST_ORDERS = ['urgent', 'newest', 'oldest'] as const;
export type ListOrder = (typeof LIST_ORDERS)[number];

/**
 * A listing's order when none is asked for: the queue (only pending requests) is most urgent
 * first; anything that includes decided requests is history, newest first.
 */
export function defaultListOrder(status: string | undefined): ListOrder {
  return status === 'pending' ? 'urgent' : 'newest';
}

/**
 * A comma-separated list filter (`riskLevel=high,critical`), each value checked against
 * `allowed`. Empty items, unknown values and more items than `allowed` holds are refused, naming
 * the field and the values it takes; duplicates collapse. Linear in the text, no regex.
 */
export function parseListFilter<T extends string>(field: string, text: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (text === undefined) return undefined;
  const parts = text.split(',').map((p) => p.trim());
  const bad = parts.filter((p) => !(allowed as readonly string[]).includes(p));
  if (parts.length > allowed.length * 2 || bad.length > 0) {
    const shown = bad.slice(0, 3).map((b) => JSON.stringify(b.length > 40 ? `${b.slice(0, 40)}…` : b));
    throw new CountersignError('VALIDATION_FAILED', `${field} takes one or more of ${allowed.join(', ')}, comma-separated${shown.length > 0 ? `; not ${shown.join(', ')}` : ''}`, {
      field,
      allowed: [...allowed],
    });
  }
  return [...new Set(parts)] as T[];
}

/**
 * Velocity limits and cool-downs: protecting reviewers from being flooded into approving, and
 * systems from agents that ask too fast. Pure: the server passes the relevant history and `now`.
 */
import type { RiskLevel } from '../schemas.ts';

const MINUTE = 60_000;

export interface RateWindow {
  name: string;
  ms: number;
  limit: number;
}

export interface RateCheck {
  allowed: boolean;
  counts: Record<string, number>;
  limits: Record<string, number>;
  /** Why not, naming the window; null when allowed. */
  reason: string | null;
  /** When the blocking window frees a slot (ISO); null when allowed. */
  resetAt: string | null;
}

/**
 * Counts events per sliding window and says whether one more is allowed. `resetAt` is when
 * the oldest event in the most constraining full window slides out.
 */
export function checkRate(times: readonly number[], now: number, windows: readonly RateWindow[]): RateCheck {
  const counts: Record<string, number> = {};
  const limits: Record<string, number> = {};
  let reason: string | null = null;
  let resetAt = -Infinity;
  for (const w of windows) {
    const inside = times.filter((t) => t > now - w.ms && t <= now).sort((a, b) => a - b);
    counts[w.name] = inside.length;
    limits[w.name] = w.limit;
    if (inside.length >= w.limit) {
      reason ??= `${inside.length} in the last ${w.name} (limit ${w.limit})`;
      const freeAt = inside[inside.length - w.limit]! + w.ms;
      resetAt = Math.max(resetAt, freeAt);
    }
  }
  return { allowed: reason === null, counts, limits, reason, resetAt: reason === null ? null : new Date(resetAt).toISOString() };
}

export interface ApprovalRecord {
  requestId: string;
  at: number;
  riskLevel: RiskLevel;
}

export interface ApproverLimits {
  perHour: number;
  perDay: number;
  /** Only approvals of these levels count (and are limited). */
  riskLevels: readonly RiskLevel[];
}

export const DEFAULT_APPROVER_LIMITS: ApproverLimits = Object.freeze({ perHour: 10, perDay: 50, riskLevels: ['high', 'critical'] as RiskLevel[] });

/** May this approver approve one more request of `riskLevel` now? */
export function approverVelocity(
  approvals: readonly ApprovalRecord[],
  now: number,
  riskLevel: RiskLevel,
  limits: ApproverLimits = DEFAULT_APPROVER_LIMITS,
): RateCheck & { applies: boolean } {
  const counted = approvals.filter((a) => limits.riskLevels.includes(a.riskLevel)).map((a) => a.at);
  const check = checkRate(counted, now, [
    { name: 'hour', ms: 60 * MINUTE, limit: limits.perHour },
    { name: 'day', ms: 24 * 60 * MINUTE, limit: limits.perDay },
  ]);
  const applies = limits.riskLevels.includes(riskLevel);
  return applies ? { ...check, applies } : { ...check, allowed: true, reason: null, resetAt: null, applies };
}

export interface CooldownConfig {
  /** This many approvals … */
  threshold: number;
  /** … within this many minutes … */
  windowMinutes: number;
  /** … start a cool-down of this many minutes … */
  durationMinutes: number;
  /** … during which the approver may not approve these levels. */
  riskLevels: readonly RiskLevel[];
}

export const DEFAULT_COOLDOWN: CooldownConfig = Object.freeze({ threshold: 5, windowMinutes: 15, durationMinutes: 30, riskLevels: ['high', 'critical'] as RiskLevel[] });

export interface CooldownState {
  active: boolean;
  until: string | null;
  reason: string | null;
  /** The approvals that started it (automatic cool-downs). */
  triggeredBy: string[];
}

/**
 * The approver's cool-down now: automatic (the latest run of `threshold` approvals within the
 * window) or manual (set by a lead with a reason), whichever ends later.
 */
export function cooldownState(
  approvals: readonly ApprovalRecord[],
  now: number,
  config: CooldownConfig = DEFAULT_COOLDOWN,
  manual?: { until: number; reason: string } | null,
): CooldownState {
  const counted = approvals.filter((a) => config.riskLevels.includes(a.riskLevel) && a.at <= now).sort((a, b) => a.at - b.at);
  let auto: { until: number; ids: string[] } | null = null;
  for (let i = config.threshold - 1; i < counted.length; i++) {
    const first = counted[i - config.threshold + 1]!;
    const last = counted[i]!;
    if (last.at - first.at <= config.windowMinutes * MINUTE) {
      auto = { until: last.at + config.durationMinutes * MINUTE, ids: counted.slice(i - config.threshold + 1, i + 1).map((a) => a.requestId) };
    }
  }
  const autoActive = auto !== null && auto.until > now;
  const manualActive = manual != null && manual.until > now;
  if (!autoActive && !manualActive) return { active: false, until: null, reason: null, triggeredBy: [] };
  if (manualActive && (!autoActive || manual.until >= auto!.until)) {
    return { active: true, until: new Date(manual.until).toISOString(), reason: `manual: ${manual.reason}`, triggeredBy: [] };
  }
  return {
    active: true,
    until: new Date(auto!.until).toISOString(),
    reason: `${config.threshold} approvals of ${config.riskLevels.join('/')} risk within ${config.windowMinutes} min`,
    triggeredBy: auto!.ids,
  };
}

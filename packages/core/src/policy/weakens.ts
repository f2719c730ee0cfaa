/**
 * Whether a change to an agent's configuration loosens the gate for that agent (issue 18,
 * four-eyes on admin power). A loosening is a Countersign request another admin must approve
 * (unless `admin.singleAdmin`); a change with no loosening applies at once.
 *
 * It compares the two policies *as they apply to the agent* (agent-config.ts `policyForAgent`),
 * so a key that moves from the file to the overlay with the same value is no change, and every
 * setting an agent config can touch is looked at. Where the direction of a change is not clear
 * (the slicing collection time; an SLA shortened while `onFinalTimeout: approve` would approve
 * sooner) it counts as loosening: when in doubt, a second admin looks.
 *
 * @example
 *   weakens(before, after, 'billing-bot')
 *   // → [{ key: 'enabled', before: false, after: true, why: 'enables the agent' }]
 */
import { RISK_LEVELS, type RiskLevel } from '../schemas.ts';
import { agentEnabled, policyForAgent } from './agent-config.ts';
import type { Policy, SlicingResponse } from './types.ts';
import { own } from './util.ts';

export interface Loosening {
  /** The agent config key, e.g. `levels.medium.autoApprove`, `requireApproval`. */
  readonly key: string;
  readonly before: unknown;
  readonly after: unknown;
  /** In words, for the reviewer's card and the audit trail. */
  readonly why: string;
}

const SLICING_RANK: Readonly<Record<SlicingResponse | 'none', number>> = { none: 0, alert: 1, review: 2, aggregate: 3, pause: 3 };

/** Raised or removed: a limit where absent means no limit. */
function limitRaised(before: number | undefined, after: number | undefined): boolean {
  return before !== undefined && (after === undefined || after > before);
}

/** The loosenings from `before` to `after` for agent `name` (both policies already carry the agent's overlay). Empty: the change only tightens or keeps. */
export function weakens(before: Policy, after: Policy, name: string): Loosening[] {
  const out: Loosening[] = [];
  const push = (key: string, b: unknown, a: unknown, why: string) => void out.push({ key, before: b, after: a, why });
  const A = policyForAgent(before, name);
  const B = policyForAgent(after, name);
  const a = own(before.agents, name);
  const b = own(after.agents, name);

  if (!agentEnabled(before, name) && agentEnabled(after, name)) push('enabled', false, true, 'enables the agent');

  const removed = (x: readonly string[], y: readonly string[]) => x.filter((v) => !y.includes(v));
  const lessReview = removed(a?.requireApproval ?? [], b?.requireApproval ?? []);
  if (lessReview.length > 0) push('requireApproval', a?.requireApproval ?? [], b?.requireApproval ?? [], `no longer requires approval for ${lessReview.join(', ')}`);
  const unblocked = removed(a?.block ?? [], b?.block ?? []);
  if (unblocked.length > 0) push('block', a?.block ?? [], b?.block ?? [], `no longer blocks ${unblocked.join(', ')}`);
  if (a?.minConfidence !== undefined && (b?.minConfidence === undefined || b.minConfidence < a.minConfidence)) {
    push('minConfidence', a.minConfidence, b?.minConfidence ?? null, 'lets it act alone at a lower confidence');
  }

  for (const k of ['perMinute', 'perHour'] as const) {
    const x = A.guard.agentLimits[k];
    const y = B.guard.agentLimits[k];
    if (limitRaised(x, y)) push(`limits.${k}`, x, y ?? null, y === undefined ? `lifts its create limit ${k}` : `raises its create limit ${k}`);
  }

  const finalApprove = before.escalation.onFinalTimeout === 'approve' || after.escalation.onFinalTimeout === 'approve';
  for (const lvl of RISK_LEVELS) {
    const x = A.levels[lvl];
    const y = B.levels[lvl];
    if (!x.autoApprove && y.autoApprove) push(`levels.${lvl}.autoApprove`, false, true, `auto-approves ${lvl} risk`);
    if (x.mfa && !y.mfa) push(`levels.${lvl}.mfa`, true, false, `drops step-up MFA at ${lvl} risk`);
    if (y.slaMs > x.slaMs) push(`levels.${lvl}.sla`, x.slaMs, y.slaMs, `a longer review deadline at ${lvl} risk (escalation comes later)`);
    else if (y.slaMs < x.slaMs && finalApprove) push(`levels.${lvl}.sla`, x.slaMs, y.slaMs, `a shorter deadline at ${lvl} risk while onFinalTimeout: approve (silence approves sooner)`);
  }

  const vx = A.guard.velocity;
  const vy = B.guard.velocity;
  if (vy.perHour > vx.perHour) push('velocity.perHour', vx.perHour, vy.perHour, 'lets an approver approve more of its requests an hour');
  if (vy.perDay > vx.perDay) push('velocity.perDay', vx.perDay, vy.perDay, 'lets an approver approve more of its requests a day');
  const velocityLevels = removed(vx.riskLevels, vy.riskLevels) as RiskLevel[];
  if (velocityLevels.length > 0) push('velocity.riskLevels', vx.riskLevels, vy.riskLevels, `stops counting approvals at ${velocityLevels.join(', ')} risk`);

  const cx = A.guard.cooldown;
  const cy = B.guard.cooldown;
  if (cy.threshold > cx.threshold) push('cooldown.threshold', cx.threshold, cy.threshold, 'more approvals before a cool-down starts');
  if (cy.windowMinutes < cx.windowMinutes) push('cooldown.window', cx.windowMinutes, cy.windowMinutes, 'a shorter window for counting approvals toward a cool-down');
  if (cy.durationMinutes < cx.durationMinutes) push('cooldown.duration', cx.durationMinutes, cy.durationMinutes, 'shorter cool-downs');
  const cooldownLevels = removed(cx.riskLevels, cy.riskLevels);
  if (cooldownLevels.length > 0) push('cooldown.riskLevels', cx.riskLevels, cy.riskLevels, `no cool-downs at ${cooldownLevels.join(', ')} risk`);

  const sx = a?.onSlicing ?? 'none';
  const sy = b?.onSlicing ?? 'none';
  if (sx !== sy && SLICING_RANK[sy] <= SLICING_RANK[sx]) push('onSlicing', a?.onSlicing ?? null, b?.onSlicing ?? null, `a slicing alert does ${sy === 'none' ? 'nothing but report' : sy} instead of ${sx}`);
  if (B.guard.slicing.holdMinutes < A.guard.slicing.holdMinutes) push('slicing.hold', A.guard.slicing.holdMinutes, B.guard.slicing.holdMinutes, 'a slicing response ends sooner');
  if (B.guard.slicing.collectSeconds !== A.guard.slicing.collectSeconds) {
    push('slicing.collect', A.guard.slicing.collectSeconds, B.guard.slicing.collectSeconds, 'changes how long an aggregate review collects (either way, a second admin looks)');
  }
  if (A.guard.whilePaused === 'refuse' && B.guard.whilePaused === 'hold') push('whilePaused', 'refuse', 'hold', 'takes its requests while it is paused (held) instead of refusing them');
  return out;
}

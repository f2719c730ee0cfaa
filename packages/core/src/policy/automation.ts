/**
 * Automation level and route (DESIGN.md §3).
 *
 * Confidence picks a band (full / supervised / advisory / manual), then risk caps it: high risk
 * is at most advisory, critical risk is manual — critical always needs a human, whatever the
 * confidence. Only `full` and `supervised` may run without a human, and only when the risk
 * level's `autoApprove` allows it and nothing asked for a human (a rule, an agent override, or
 * the agent itself naming approvers). Blocks win over everything.
 *
 * When such a request goes to review anyway, its automation level is reported as `advisory`
 * ("the AI proposes, a human decides"), so level and route never contradict each other.
 */
import type { AutomationLevel, RiskLevel, Route } from '../schemas.ts';
import type { Policy } from './types.ts';
import { listText, round } from './util.ts';

export function confidenceBand(confidence: number, policy: Policy): AutomationLevel {
  const b = policy.automation;
  return confidence >= b.full ? 'full' : confidence >= b.supervised ? 'supervised' : confidence >= b.advisory ? 'advisory' : 'manual';
}

const RANK: Record<AutomationLevel, number> = { full: 3, supervised: 2, advisory: 1, manual: 0 };

/** The most automation a risk level allows. */
export function automationCap(level: RiskLevel): AutomationLevel {
  return level === 'critical' ? 'manual' : level === 'high' ? 'advisory' : 'full';
}

export interface RouteInput {
  readonly confidence: number;
  readonly confidenceStated: boolean;
  readonly level: RiskLevel;
  /** Names of matched rules that block, and that demand review. */
  readonly blockedBy: readonly string[];
  readonly reviewBy: readonly string[];
  readonly agentNamedApprovers: boolean;
}

export interface RouteDecision {
  readonly automationLevel: AutomationLevel;
  readonly route: Route;
  readonly reasons: string[];
}

export function decideRoute(input: RouteInput, policy: Policy): RouteDecision {
  const reasons: string[] = [];
  const band = confidenceBand(input.confidence, policy);
  const c = String(round(input.confidence, 3));
  reasons.push(
    input.confidenceStated
      ? `Confidence ${c} is in the ${band} band.`
      : `No confidence given; treated as ${c}, which is the ${band} band.`,
  );
  const cap = automationCap(input.level);
  let level: AutomationLevel = band;
  if (RANK[band] > RANK[cap]) {
    level = cap;
    reasons.push(input.level === 'critical' ? 'Critical risk always needs a human.' : `High risk caps automation at ${cap}.`);
  }

  if (input.blockedBy.length > 0) {
    reasons.push(`Blocked by policy: ${listText(input.blockedBy)}.`);
    return { automationLevel: level, route: 'block', reasons };
  }

  if (level === 'full' || level === 'supervised') {
    const why: string[] = [];
    if (!policy.levels[input.level].autoApprove) why.push(`the policy does not auto-approve ${input.level} risk`);
    if (input.reviewBy.length > 0) why.push(`${listText(input.reviewBy)} require${input.reviewBy.length === 1 ? 's' : ''} review`);
    if (input.agentNamedApprovers) why.push('the agent asked for specific approvers');
    if (why.length === 0) {
      reasons.push(`Auto-approved: ${input.level} risk at ${level} automation.`);
      return { automationLevel: level, route: 'auto_approve', reasons };
    }
    reasons.push(`A human decides: ${listText(why)}.`);
    return { automationLevel: 'advisory', route: 'review', reasons };
  }

  if (input.reviewBy.length > 0) reasons.push(`${listText(input.reviewBy)} require${input.reviewBy.length === 1 ? 's' : ''} review.`);
  reasons.push(level === 'manual' ? 'Manual: a human decides, with no automatic path.' : 'Advisory: the agent proposes, a human decides.');
  return { automationLevel: level, route: 'review', reasons };
}

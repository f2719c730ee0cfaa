/**
 * Aggregate review (`onSlicing: aggregate`): when an agent looks like it is slicing one large
 * action into many small ones, its requests are put before a human together, as one request
 * whose value is their sum and whose risk is at least the highest of theirs, so the reviewer
 * sees the whole (20 transfers of 9,900 are one transfer of 198,000). One decision on it
 * decides every member, each bound to its own exact action and args. Pure: the server stores
 * the bundle and carries the decision over.
 */
import { evaluate } from '../policy/evaluate.ts';
import type { HistoryStats, Policy } from '../policy/types.ts';
import { levelRank, maxLevel } from '../policy/util.ts';
import {
  RESERVED_ACTION_PREFIX,
  type ApprovalRequirement,
  type ApprovalStage,
  type Assessment,
  type CreateRequest,
  type Decision,
  type JsonObject,
  type RiskLevel,
} from '../schemas.ts';

/** The action of an aggregate review. Agents may not use the `countersign.` namespace. */
export const AGGREGATE_ACTION = `${RESERVED_ACTION_PREFIX}aggregate`;
/** At most this many requests in one aggregate review (more make several). */
export const MAX_AGGREGATE_MEMBERS = 100;

export interface AggregateMember {
  readonly id: string;
  readonly action: string;
  readonly args: JsonObject;
  /** `context.value` of the member, when it gave one. */
  readonly value?: number | undefined;
  readonly riskLevel: RiskLevel;
  readonly confidence?: number | undefined;
}

/** What the agent already asked for in this hold's earlier aggregate reviews (whatever became of them). */
export interface EarlierInHold {
  readonly count: number;
  /** Their summed value; null when none stated one. */
  readonly value: number | null;
}

/**
 * The body of the aggregate review of `members` (1 to MAX_AGGREGATE_MEMBERS): the members'
 * actions and args listed under `args.requests`, `context.value` their summed value plus the
 * value of this hold's earlier aggregates (so value rules see the whole, however the agent paces
 * its requests), and a risk floor of the highest member risk.
 */
export function aggregateRequest(
  members: readonly AggregateMember[],
  agentName: string,
  alerts: readonly string[],
  earlier: EarlierInHold = { count: 0, value: null },
): CreateRequest {
  if (members.length < 1 || members.length > MAX_AGGREGATE_MEMBERS) {
    throw new RangeError(`an aggregate review has 1 to ${MAX_AGGREGATE_MEMBERS} members, not ${members.length}`);
  }
  const values = members.map((m) => m.value).filter((v): v is number => v !== undefined);
  const ownValue = values.length > 0 ? values.reduce((sum, v) => sum + v, 0) : null;
  const totalValue = ownValue === null && earlier.value === null ? null : (ownValue ?? 0) + (earlier.value ?? 0);
  const riskLevel = members.map((m) => m.riskLevel).reduce(maxLevel);
  const actions = [...new Set(members.map((m) => m.action))].sort();
  const confidences = members.map((m) => m.confidence).filter((c): c is number => c !== undefined);
  const before =
    earlier.count > 0
      ? ` The agent asked for ${earlier.count} more earlier in this hold${earlier.value === null ? '' : ` (value ${earlier.value})`}, counted in the total value.`
      : '';
  return {
    action: AGGREGATE_ACTION,
    args: {
      count: members.length,
      value: ownValue,
      totalValue,
      earlierInHold: { count: earlier.count, value: earlier.value },
      actions,
      requests: members.map((m) => ({ id: m.id, action: m.action, args: m.args, value: m.value ?? null })),
    },
    description:
      `${members.length === 1 ? '1 request' : `${members.length} requests`} from agent ${agentName} (${actions.join(', ')}), reviewed as one because slicing was detected ` +
      `(${alerts.join(', ')}). Approving or rejecting this decides every one of them.${before}`,
    riskLevel,
    ...(confidences.length > 0 ? { confidence: Math.min(...confidences) } : {}),
    ...(totalValue !== null ? { context: { value: totalValue } } : {}),
  };
}

/**
 * The policy's view of an aggregate: evaluated once as each member action with the total value
 * and every member's args (so action weights, action-scoped rules, value thresholds and content
 * patterns apply to the whole), always routed to review, and never easier to approve than any
 * member was on its own (`members`: their own assessments). See `strictestOf`.
 */
export function assessAggregate(
  body: CreateRequest,
  agent: string,
  policy: Policy,
  history: HistoryStats,
  now: Date,
  forcedReview: { readonly rule: string; readonly reason: string },
  members: readonly Assessment[] = [],
): Assessment {
  const actions = (body.args['actions'] as string[] | undefined) ?? [];
  const evaluations = (actions.length > 0 ? actions : [body.action]).map((action) => evaluate({ ...body, action, agent, forcedReview }, policy, history, now));
  return strictestOf([...evaluations, ...members]);
}

/**
 * One assessment at least as strict as each of `all` in every respect: the highest risk, a
 * block if any blocks (else review), step-up MFA if any needs it, the latest escalation start,
 * the shortest SLA, every matched rule, and every approval stage (the same approver once, at
 * the largest count; a generic "N reviewers" stage folds into the specific stages as their
 * quorum, as in a single request's requirement), with the smallest `deny`.
 */
export function strictestOf(all: readonly Assessment[]): Assessment {
  if (all.length === 0) throw new RangeError('strictestOf needs at least one assessment');
  const base = all.reduce((a, b) => (levelRank(b.riskLevel) > levelRank(a.riskLevel) || (b.riskLevel === a.riskLevel && b.riskScore > a.riskScore) ? b : a));
  const rules = new Map<string, Assessment['matchedRules'][number]>();
  for (const a of [base, ...all]) for (const r of a.matchedRules) if (!rules.has(r.name)) rules.set(r.name, r);
  const slas = all.filter((a) => a.slaSeconds !== null);
  const sla = slas.length > 0 ? slas.reduce((a, b) => (b.slaSeconds! < a.slaSeconds! ? b : a)) : null;
  const starts = all.map((a) => a.escalationStartLevel).filter((l): l is number => l !== undefined);
  const route = all.some((a) => a.route === 'block') ? 'block' : 'review';
  return {
    ...base,
    route,
    requiresApproval: true,
    matchedRules: [...rules.values()],
    approval: route === 'block' ? null : mergeRequirements([base, ...all].map((a) => a.approval)),
    slaSeconds: sla?.slaSeconds ?? null,
    slaDueAt: sla?.slaDueAt ?? null,
    mfaRequired: all.some((a) => a.mfaRequired),
    ...(all.some((a) => a.mfaRequired && a.webauthnRequired === true) ? { webauthnRequired: true } : {}),
    reasons: [...base.reasons, `The strictest of ${all.length} evaluations (the aggregate as each member action, and each member on its own) applies.`],
    ...(starts.length > 0 ? { escalationStartLevel: Math.max(...starts) } : {}),
  };
}

function mergeRequirements(requirements: readonly (ApprovalRequirement | null)[]): ApprovalRequirement {
  const present = requirements.filter((r): r is ApprovalRequirement => r !== null);
  if (present.length === 0) return { stages: [{ count: 1, label: '1 reviewer' }], deny: 1 };
  const generic = Math.max(0, ...present.flatMap((r) => r.stages.filter(isGeneric).map((s) => s.count)));
  const specific = new Map<string, ApprovalStage>();
  for (const stage of present.flatMap((r) => r.stages).filter((s) => !isGeneric(s))) {
    const key = JSON.stringify([stage.role ?? null, stage.group ?? null, stage.operators ?? null]);
    const seen = specific.get(key);
    if (!seen || stage.count > seen.count) specific.set(key, stage);
  }
  // A role or group stage takes the generic quorum as its own count; a named operator is one
  // person and cannot, so without a role or group stage the generic stage stays (an agent's own
  // `approvers` only ever add to what the policy asks).
  const absorbs = [...specific.values()].some((s) => !s.operators);
  const genericStage = generic > 0 && !absorbs ? [{ count: generic, label: generic === 1 ? '1 reviewer' : `${generic} reviewers` }] : [];
  const stages = [
    ...genericStage,
    ...[...specific.values()].map((s) => (s.operators || s.count >= generic ? s : { ...s, count: generic, label: `${s.label} (${generic} needed)` })),
  ];
  return {
    stages,
    deny: Math.min(...present.map((r) => r.deny)),
    ...(present.some((r) => r.modifiedNeedsSecondReviewer) ? { modifiedNeedsSecondReviewer: true } : {}),
  };
}

const isGeneric = (s: ApprovalStage) => s.role === undefined && s.group === undefined && s.operators === undefined;

/**
 * A member's decision, carried over from the aggregate's: same outcome, deciders and time; if
 * approved, bound to the member's own action and args (an aggregate is never modified).
 */
export function memberDecision(aggregateId: string, aggregate: Decision, member: { action: string; args: JsonObject }): Decision {
  const approved = aggregate.outcome === 'approved';
  const { receipt: _aggregateReceipt, ...decided } = aggregate; // the member gets its own receipt, over its own payload
  return {
    ...decided,
    reason: `decided with aggregate review ${aggregateId}${aggregate.reason ? `: ${aggregate.reason}` : ''}`,
    action: approved ? member.action : null,
    args: approved ? member.args : null,
    alternative: null,
    modified: false,
  };
}

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
import { RESERVED_ACTION_PREFIX, type Assessment, type CreateRequest, type Decision, type JsonObject, type RiskLevel } from '../schemas.ts';

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

/**
 * The body of the aggregate review of `members` (two or more, at most MAX_AGGREGATE_MEMBERS):
 * the members' actions and args listed under `args.requests`, `context.value` their summed
 * value (so value rules see the whole), and a risk floor of the highest member risk.
 */
export function aggregateRequest(members: readonly AggregateMember[], agentName: string, alerts: readonly string[]): CreateRequest {
  if (members.length < 2 || members.length > MAX_AGGREGATE_MEMBERS) {
    throw new RangeError(`an aggregate review has 2 to ${MAX_AGGREGATE_MEMBERS} members, not ${members.length}`);
  }
  const values = members.map((m) => m.value).filter((v): v is number => v !== undefined);
  const totalValue = values.reduce((sum, v) => sum + v, 0);
  const riskLevel = members.map((m) => m.riskLevel).reduce(maxLevel);
  const actions = [...new Set(members.map((m) => m.action))].sort();
  const confidences = members.map((m) => m.confidence).filter((c): c is number => c !== undefined);
  return {
    action: AGGREGATE_ACTION,
    args: {
      count: members.length,
      totalValue: values.length > 0 ? totalValue : null,
      actions,
      requests: members.map((m) => ({ id: m.id, action: m.action, args: m.args, value: m.value ?? null })),
    },
    description:
      `${members.length} requests from agent ${agentName} (${actions.join(', ')}), reviewed together because slicing was detected ` +
      `(${alerts.join(', ')}). Approving or rejecting this decides every one of them.`,
    riskLevel,
    ...(confidences.length > 0 ? { confidence: Math.min(...confidences) } : {}),
    ...(values.length > 0 ? { context: { value: totalValue } } : {}),
  };
}

/**
 * The policy's view of an aggregate: evaluated once as each member action with the summed value
 * and every member's args (so action weights, action-scoped rules, value thresholds and content
 * patterns apply to the whole), always routed to review; the strictest result stands (highest
 * risk level, then most approvals, then highest score).
 */
export function assessAggregate(
  body: CreateRequest,
  agent: string,
  policy: Policy,
  history: HistoryStats,
  now: Date,
  forcedReview: { readonly rule: string; readonly reason: string },
): Assessment {
  const actions = (body.args['actions'] as string[] | undefined) ?? [];
  const candidates = actions.map((action) => evaluate({ ...body, action, agent, forcedReview }, policy, history, now));
  const strictness = (a: Assessment) => [levelRank(a.riskLevel), a.approval?.stages.reduce((n, s) => n + s.count, 0) ?? 0, a.riskScore];
  const stricter = (a: Assessment, b: Assessment) => {
    const [x, y] = [strictness(a), strictness(b)];
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! > y[i]! ? a : b;
    return a;
  };
  if (candidates.length === 0) return evaluate({ ...body, agent, forcedReview }, policy, history, now);
  return candidates.reduce(stricter);
}

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

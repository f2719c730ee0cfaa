/**
 * The request state machine of DESIGN.md §3 as a pure transition function.
 *
 *   pending ──review──► pending (vote counted) | approved | rejected
 *   pending ──cancel──► cancelled          pending ──expire──► expired
 *   approved ──claim──► executing ──execution──► executed | execution_failed
 *   approved ──claim deadline passed, unclaimed (scheduler sweep)──► lapsed
 *
 * The engine loads the current state, calls `transition`, and writes what comes back together
 * with its audit entry in one transaction. Who may approve what, now, is the gate's question
 * (`gate/gate.ts`: the payload that will run, rounds, step-up, guard facts); once the server is
 * wired to it, reviews go through `gate` and this machine keeps cancel, expiry, timeout approval
 * and the execution report. Illegal moves throw a `CountersignError` with a
 * stable code, so racing reviewers get exactly one decision and a clear conflict for the rest.
 */
import { payloadKey } from './canonical.ts';
import { CountersignError } from './errors.ts';
import { decideExecutionReport } from './gate/claim.ts';
import type {
  Actor,
  Alternative,
  ApprovalRequirement,
  ApprovalStage,
  Decision,
  JsonObject,
  RequestStatus,
  Role,
  Verdict,
} from './schemas.ts';

/** Ranks for "this role or higher". Auditors read; they never review. */
export const ROLE_RANK: Readonly<Record<Role, number>> = Object.freeze({
  auditor: 0,
  reviewer: 1,
  lead: 2,
  manager: 3,
  director: 4,
  admin: 5,
});

export const TERMINAL_STATUSES: ReadonlySet<RequestStatus> = new Set([
  'rejected',
  'expired',
  'cancelled',
  'executed',
  'execution_failed',
  'lapsed',
]);

export function isTerminal(status: RequestStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

/** Decided means a human or the policy has ruled; `approved` still awaits its claim, `executing` its execution report. */
export function isDecided(status: RequestStatus): boolean {
  return status !== 'pending';
}

export interface Reviewer {
  id: string;
  name: string;
  roles: readonly Role[];
  groups: readonly string[];
}

/** One reviewer's vote as stored. `stage` is the approval stage it counted towards (approvals only). */
export interface Vote {
  reviewer: Actor;
  verdict: Verdict;
  reason: string | null;
  args: JsonObject | null;
  alternative: string | null;
  payloadKey: string | null;
  stage: number | null;
  /**
   * The identity of that stage (`stageKeyOf`: who it asks for, not how many), so a vote counts only
   * towards the same stage after a policy reload moved the stages (review finding 3). `null` (a vote
   * stored without one) never counts; absent (an in-memory vote) counts by index.
   */
  stageKey?: string | null;
  at: string;
}

export interface LifecycleState {
  status: RequestStatus;
  action: string;
  args: JsonObject;
  alternatives: readonly Alternative[];
  approval: ApprovalRequirement | null;
  votes: readonly Vote[];
  /** The operator who submitted the request, when an operator token acted as the agent. */
  requesterOperatorId: string | null;
  /** Who may act at a stage; escalation and reassignment widen it (escalation/eligibility.ts). Default `isEligibleForStage`. */
  eligible?: ((reviewer: Reviewer, stage: ApprovalStage) => boolean) | undefined;
}

export type LifecycleEvent =
  | {
      type: 'review';
      reviewer: Reviewer;
      verdict: Verdict;
      reason?: string | undefined;
      args?: JsonObject | undefined;
      alternative?: string | undefined;
      at: string;
    }
  | { type: 'cancel'; actor: Actor; reason?: string | undefined; at: string }
  | { type: 'expire'; reason?: string | undefined; at: string }
  /** The end of the escalation chain under `onFinalTimeout: approve`. */
  | { type: 'timeout_approve'; reason: string; at: string }
  | { type: 'execution'; status: 'succeeded' | 'failed'; at: string };

export type TransitionKind = 'reviewed' | 'approved' | 'rejected' | 'cancelled' | 'expired' | 'executed' | 'execution_failed';

export interface Transition {
  status: RequestStatus;
  /** What happened, in the order the audit trail records it (e.g. `reviewed` then `approved`). */
  kinds: TransitionKind[];
  vote: Vote | null;
  decision: Decision | null;
  /** The vote decided alone as the final authority of this escalation level (escalation/final-authority.ts): audited on its entries. */
  finalAuthority?: { level: number; operator: string; operatorId: string };
}

const DEFAULT_REQUIREMENT: ApprovalRequirement = { stages: [{ count: 1, label: '1 reviewer' }], deny: 1 };

function actorOf(reviewer: Reviewer): Actor {
  return { type: 'operator', id: reviewer.id, name: reviewer.name };
}

function highestRank(roles: readonly Role[]): number {
  return roles.reduce((max, role) => Math.max(max, ROLE_RANK[role]), 0);
}

export function canReviewAtAll(reviewer: Pick<Reviewer, 'roles'>): boolean {
  return highestRank(reviewer.roles) >= ROLE_RANK.reviewer;
}

/** The prefix of every operator id the server issues (`op_…`, server ids.ts). */
export const OPERATOR_ID_PREFIX = 'op_';

/**
 * Whether a policy entry naming an operator (an escalation level's or approval stage's
 * `operators:`, a reassignment's assignee) names this operator. Ids and names are kept apart: an
 * entry that starts with `op_` is an operator id and matches only that id, any other entry is a
 * name and matches only that name. An operator NAMED like another's id is never taken for them;
 * an operator whose name starts with `op_` is named in policy by their id.
 */
export function namesOperator(entry: string, operator: Pick<Reviewer, 'id' | 'name'>): boolean {
  return entry.startsWith(OPERATOR_ID_PREFIX) ? entry === operator.id : entry === operator.name;
}

export function isEligibleForStage(reviewer: Reviewer, stage: ApprovalStage): boolean {
  if (!canReviewAtAll(reviewer)) return false;
  if (stage.role !== undefined && highestRank(reviewer.roles) < ROLE_RANK[stage.role]) return false;
  if (stage.group !== undefined && !reviewer.groups.includes(stage.group)) return false;
  if (stage.operators !== undefined && !stage.operators.some((o) => namesOperator(o, reviewer))) {
    return false;
  }
  return true;
}

type Payload = { action: string; args: JsonObject; alternative: string | null; key: string };

/**
 * The payload the request would run with right now: the latest explicit proposal (modified args
 * or an alternative) by an approving reviewer, else the original. A plain approval approves
 * whatever was current when it was cast, so it never changes the payload.
 */
export function currentPayload(state: LifecycleState): Payload {
  for (let i = state.votes.length - 1; i >= 0; i--) {
    const vote = state.votes[i];
    if (vote?.verdict === 'approve' && (vote.args !== null || vote.alternative !== null)) {
      return explicitPayload(state, vote.args ?? undefined, vote.alternative ?? undefined) ?? original(state);
    }
  }
  return original(state);
}

function original(state: LifecycleState): Payload {
  return { action: state.action, args: state.args, alternative: null, key: payloadKey(state.action, state.args) };
}

/** For UNKNOWN_ALTERNATIVE: which names there are (the first 20, quoted), or that there are none. */
export function alternativeNames(alternatives: readonly { name: string }[]): string {
  if (alternatives.length === 0) return 'this request offers no alternatives';
  const shown = alternatives.slice(0, 20).map((a) => `"${a.name}"`).join(', ');
  return `its alternatives are ${shown}${alternatives.length > 20 ? ` and ${alternatives.length - 20} more` : ''}`;
}

function explicitPayload(state: LifecycleState, args: JsonObject | undefined, alternative: string | undefined): Payload | null {
  if (alternative !== undefined) {
    const alt = state.alternatives.find((a) => a.name === alternative);
    if (!alt) {
      throw new CountersignError('UNKNOWN_ALTERNATIVE', `no alternative named "${alternative}"; ${alternativeNames(state.alternatives)}`, {
        alternatives: state.alternatives.map((a) => a.name),
      });
    }
    return { action: alt.action, args: alt.args, alternative: alt.name, key: payloadKey(alt.action, alt.args) };
  }
  if (args !== undefined) return { action: state.action, args, alternative: null, key: payloadKey(state.action, args) };
  return null;
}

/**
 * The requirement a payload must meet: as stated, except that with `modifiedNeedsSecondReviewer`
 * a payload other than the original needs one approval more at its last stage, so whoever
 * modified the args (or picked an alternative) cannot approve the change alone.
 */
export function requirementFor(requirement: ApprovalRequirement, key: string, state: Pick<LifecycleState, 'action' | 'args'>): ApprovalRequirement {
  if (!requirement.modifiedNeedsSecondReviewer || key === payloadKey(state.action, state.args)) return requirement;
  const last = requirement.stages.length - 1;
  return { ...requirement, stages: requirement.stages.map((s, i) => (i === last ? { ...s, count: s.count + 1, label: `${s.label} + 1 more (modified)` } : s)) };
}

/** Stage progress for one payload: how many distinct approvals each stage has. */
export function stageProgress(requirement: ApprovalRequirement, votes: readonly Vote[], key: string): number[] {
  const counts = requirement.stages.map(() => 0);
  for (const vote of votes) {
    if (vote.verdict === 'approve' && vote.payloadKey === key && vote.stage !== null && vote.stage < counts.length) {
      counts[vote.stage] = (counts[vote.stage] ?? 0) + 1;
    }
  }
  return counts;
}

/** Index of the first stage still short of approvals, or -1 when every stage is met. */
export function currentStage(requirement: ApprovalRequirement, votes: readonly Vote[], key: string): number {
  const counts = stageProgress(requirement, votes, key);
  return requirement.stages.findIndex((stage, i) => (counts[i] ?? 0) < stage.count);
}

function review(state: LifecycleState, event: Extract<LifecycleEvent, { type: 'review' }>): Transition {
  const { reviewer } = event;
  if (state.requesterOperatorId !== null && reviewer.id === state.requesterOperatorId) {
    throw new CountersignError('SELF_REVIEW', 'a requester cannot review their own request');
  }
  if (!canReviewAtAll(reviewer)) {
    throw new CountersignError('NOT_ELIGIBLE', `operator "${reviewer.name}" has no reviewing role`);
  }
  if (state.votes.some((v) => v.reviewer.id === reviewer.id)) {
    throw new CountersignError('ALREADY_REVIEWED', `operator "${reviewer.name}" has already reviewed this request`);
  }
  const requirement = state.approval ?? DEFAULT_REQUIREMENT;

  if (event.verdict === 'reject') {
    const stageIndex = currentStage(requirement, state.votes, currentPayload(state).key);
    const stage = requirement.stages[Math.max(stageIndex, 0)];
    if (stage && !(state.eligible ?? isEligibleForStage)(reviewer, stage)) {
      throw new CountersignError('NOT_ELIGIBLE', `this request now needs: ${stage.label}`, { stage });
    }
    const vote: Vote = {
      reviewer: actorOf(reviewer),
      verdict: 'reject',
      reason: event.reason ?? null,
      args: null,
      alternative: null,
      payloadKey: null,
      stage: null,
      at: event.at,
    };
    const rejections = state.votes.filter((v) => v.verdict === 'reject').length + 1;
    if (rejections < requirement.deny) return { status: 'pending', kinds: ['reviewed'], vote, decision: null };
    const deciders = [...state.votes.filter((v) => v.verdict === 'reject').map((v) => v.reviewer), vote.reviewer];
    return {
      status: 'rejected',
      kinds: ['reviewed', 'rejected'],
      vote,
      decision: {
        outcome: 'rejected',
        decidedBy: 'reviewers',
        deciders,
        reason: event.reason ?? null,
        at: event.at,
        action: null,
        args: null,
        alternative: null,
        modified: false,
      },
    };
  }

  const payload = explicitPayload(state, event.args, event.alternative) ?? currentPayload(state);
  const needed = requirementFor(requirement, payload.key, state);
  const stageIndex = currentStage(needed, state.votes, payload.key);
  const stage = needed.stages[stageIndex];
  if (stageIndex < 0 || !stage) {
    // Cannot happen for a pending request: a fully met requirement decides at once.
    throw new CountersignError('ILLEGAL_TRANSITION', 'approval requirement is already met');
  }
  if (!(state.eligible ?? isEligibleForStage)(reviewer, stage)) {
    throw new CountersignError('NOT_ELIGIBLE', `this request now needs: ${stage.label}`, { stage });
  }
  const vote: Vote = {
    reviewer: actorOf(reviewer),
    verdict: 'approve',
    reason: event.reason ?? null,
    args: event.args ?? null,
    alternative: event.alternative ?? null,
    payloadKey: payload.key,
    stage: stageIndex,
    at: event.at,
  };
  const votes = [...state.votes, vote];
  if (currentStage(needed, votes, payload.key) >= 0) {
    return { status: 'pending', kinds: ['reviewed'], vote, decision: null };
  }
  const deciders = votes.filter((v) => v.verdict === 'approve' && v.payloadKey === payload.key).map((v) => v.reviewer);
  return {
    status: 'approved',
    kinds: ['reviewed', 'approved'],
    vote,
    decision: {
      outcome: 'approved',
      decidedBy: 'reviewers',
      deciders,
      reason: event.reason ?? null,
      at: event.at,
      action: payload.action,
      args: payload.args,
      alternative: payload.alternative,
      modified: payload.alternative === null && payload.key !== payloadKey(state.action, state.args),
    },
  };
}

function closing(
  outcome: 'cancelled' | 'expired',
  decidedBy: Decision['decidedBy'],
  deciders: Actor[],
  reason: string | null,
  at: string,
): Transition {
  return {
    status: outcome,
    kinds: [outcome],
    vote: null,
    decision: { outcome, decidedBy, deciders, reason, at, action: null, args: null, alternative: null, modified: false },
  };
}

/**
 * Whether `reviewer` may cast a vote on this request now: pending, not their own, no earlier
 * vote, and eligible for the stage it waits on. For queues ("what can I act on?");
 * `transition` stays the authority when the vote is cast.
 */
export function canReviewNow(state: LifecycleState, reviewer: Reviewer): boolean {
  if (state.status !== 'pending') return false;
  if (state.requesterOperatorId !== null && state.requesterOperatorId === reviewer.id) return false;
  if (!canReviewAtAll(reviewer)) return false;
  if (state.votes.some((v) => v.reviewer.id === reviewer.id)) return false;
  const requirement = state.approval ?? DEFAULT_REQUIREMENT;
  const index = currentStage(requirement, state.votes, currentPayload(state).key);
  const stage = requirement.stages[Math.max(index, 0)];
  return stage !== undefined && (state.eligible ?? isEligibleForStage)(reviewer, stage);
}

export function transition(state: LifecycleState, event: LifecycleEvent): Transition {
  if (event.type === 'execution') {
    // Only a claimed approval (`executing`) takes its result (gate/claim.ts).
    const report = decideExecutionReport(state.status, event.status, true);
    if (!report.ok) throw report.error;
    return { status: report.status, kinds: [report.status], vote: null, decision: null };
  }
  if (state.status !== 'pending') {
    throw new CountersignError('ALREADY_DECIDED', `request is already ${state.status}`, { status: state.status });
  }
  switch (event.type) {
    case 'review':
      return review(state, event);
    case 'cancel':
      return closing('cancelled', 'agent', [event.actor], event.reason ?? null, event.at);
    case 'timeout_approve':
      return timeoutApprove(state, event);
    case 'expire':
      return closing('expired', 'timeout', [], event.reason ?? 'no decision before the deadline', event.at);
  }
}

/**
 * Approval by timeout (policy `onFinalTimeout: approve`, written explicitly). It runs only the
 * original payload, as the agent asked it: if reviewers proposed a modification or an
 * alternative, silence never approves it, and the request expires (fail closed; the server also
 * re-assesses the original under the active policy first: core `timeoutOutcome`). If any reviewer
 * voted to reject, nobody's silence overrides that objection and the request expires too.
 */
function timeoutApprove(state: LifecycleState, event: Extract<LifecycleEvent, { type: 'timeout_approve' }>): Transition {
  if (state.votes.some((v) => v.verdict === 'reject')) {
    return closing('expired', 'timeout', [], `${event.reason}; not approved because a reviewer voted to reject`, event.at);
  }
  const payload = original(state);
  if (currentPayload(state).key !== payload.key) {
    return closing('expired', 'timeout', [], `${event.reason}; not approved because reviewers proposed a payload other than the request as asked`, event.at);
  }
  return {
    status: 'approved',
    kinds: ['approved'],
    vote: null,
    decision: {
      outcome: 'approved',
      decidedBy: 'timeout',
      deciders: [],
      reason: event.reason,
      at: event.at,
      action: payload.action,
      args: payload.args,
      alternative: null,
      modified: false,
    },
  };
}

/** The decision a policy takes at creation, for requests that are not queued. */
export function policyDecision(
  route: 'auto_approve' | 'block',
  action: string,
  args: JsonObject,
  reason: string,
  at: string,
): Decision {
  const approved = route === 'auto_approve';
  return {
    outcome: approved ? 'approved' : 'rejected',
    decidedBy: 'policy',
    deciders: [],
    reason,
    at,
    action: approved ? action : null,
    args: approved ? args : null,
    alternative: null,
    modified: false,
  };
}

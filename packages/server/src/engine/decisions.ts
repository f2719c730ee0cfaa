/**
 * Decisions: the engine's thin shell around core's gate (`gate/`), the one place that answers
 * "may this reviewer cast this vote on this request now, for the payload that will run". It
 * gathers the facts the pure gate judges — the request and its votes, the payload the vote
 * approves with its own full policy evaluation, the reviewer's limits read under their lock, the
 * allowlists, what the vote's codes are worth — runs `gate()`, and records the counters of an
 * accepted vote. `actionable` is the same gate as a dry run (`readerView`), so the queue never
 * offers what the review refuses.
 *
 * Every path that decides by a reviewer's vote comes here: HTTP, the CLI (over HTTP), the
 * dashboard, Slack clicks and aggregate reviews (themselves requests). The engine's `change()`
 * refuses a raw review event, so nothing can go around it.
 */
import {
  AGGREGATE_ACTION,
  CountersignError,
  agentEnabled,
  isAdminChangeAction,
  EMPTY_HISTORY,
  approverVelocity,
  currentRound,
  payloadRequirement,
  stageEligible,
  assessPayload,
  timeoutOutcome,
  stageProgressOf,
  cooldownState,
  dryRun,
  gate,
  precheck,
  payloadKey,
  resolvePayload,
  roleAt,
  finalAuthorityOf,
  type AlternativeView,
  type Assessment,
  type EscalationState,
  type EvaluationRequest,
  type GateEscalation,
  type GatePayload,
  type GateRequest,
  type GateVote,
  type GuardFacts,
  type HistoryStats,
  type JsonObject,
  type Policy,
  type ReviewBody,
  type RiskLevel,
  type Transition,
  type Vote,
  type PrecheckResult,
  type PrecheckEffect,
  applicablePrechecks,
  precheckEffects,
  precheckOutcomes,
  RISK_LEVELS,
} from '@countersign/core';
import { precheckIdentity } from '../precheck/caller.ts';
import { sha256Hex } from '../ids.ts';
import type { AuditDraft } from '../audit/writer.ts';
import type { GuardService } from '../guard/service.ts';
import type { Queries, RequestRow } from '../store/store.ts';
import type { Principal } from './principal.ts';

type Operator = Extract<Principal, { kind: 'operator' }>;

/** What the gate says to a reader of a pending request, for the view (`actionable`, `notActionable`, `payload`). */
export interface ReaderView {
  actionable: boolean;
  notActionable?: { code: string; message: string; retryAt?: string };
  payload: { action: string; args: JsonObject; alternative: string | null; payloadHash: string; mfaRequired: boolean; webauthnRequired: boolean; matchCodeRequired: boolean };
}

/** The hash an approve surface shows and sends back (`seenPayloadHash`): SHA-256 of the payload key, the trail's payloadHash. */
export function payloadHashOf(key: string): string {
  return sha256Hex(key);
}

/** The request as the agent asked, for evaluating another payload in its situation (context, confidence, approvers). */
function evaluationRequest(row: RequestRow, agentName: string): EvaluationRequest {
  const hint = row.risk_hint as EvaluationRequest['riskLevel'] | null;
  return {
    action: row.action,
    args: JSON.parse(row.args) as JsonObject,
    context: JSON.parse(row.context) as EvaluationRequest['context'],
    approvers: JSON.parse(row.approvers) as EvaluationRequest['approvers'],
    agent: agentName,
    ...(row.description !== null ? { description: row.description } : {}),
    ...(row.confidence !== null ? { confidence: row.confidence } : {}),
    ...(hint !== null ? { riskLevel: hint } : {}),
    ...(row.timeout_seconds !== null ? { timeoutSeconds: row.timeout_seconds } : {}),
  } as EvaluationRequest;
}

function gateEscalation(state: EscalationState | null, activePolicy: Pick<Policy, 'escalation'> | undefined): GateEscalation | null {
  if (state === null) return null;
  const a = state.assignee;
  return {
    level: state.level,
    startLevel: state.startLevel,
    levelRole: roleAt(state),
    assignee: a === null ? null : { ...(a.operator !== undefined ? { operator: a.operator } : {}), ...(a.group !== undefined ? { group: a.group } : {}), ...(a.stage !== undefined ? { stage: a.stage } : {}) },
    extended: state.extension !== null,
    // Without the policy running now, nobody is a final authority (fail closed).
    finalAuthority: activePolicy === undefined ? null : finalAuthorityOf(state, activePolicy),
  };
}

export interface RequestFacts {
  votes: readonly Vote[];
  escalation: EscalationState | null;
  aggregated: GateRequest['aggregated'];
  agentPaused: GateRequest['agentPaused'];
  /** The agent's policy as the vote reads it (file + overlay) says `enabled: false` (review2 F2); `vote` and `readerView` read it from that policy. */
  agentDisabled: boolean;
  /** An admin change: who may sign it now (engine/agent-config.ts `signersOf`); absent for other requests. */
  adminSigners?: readonly string[] | null;
  /** The policy the vote is judged by, for the final authority (core escalation/final-authority.ts); absent: no final authority. */
  activePolicy?: Pick<Policy, 'escalation'>;
}

export function gateRequest(row: RequestRow, facts: RequestFacts): GateRequest {
  return {
    id: row.id,
    status: row.status as GateRequest['status'],
    action: row.action,
    args: JSON.parse(row.args) as JsonObject,
    alternatives: JSON.parse(row.alternatives) as AlternativeView[],
    assessment: JSON.parse(row.assessment) as Assessment,
    votes: facts.votes,
    requesterOperatorId: row.requester_operator_id,
    isAggregate: row.action === AGGREGATE_ACTION,
    isAdminChange: isAdminChangeAction(row.action),
    adminSigners: facts.adminSigners ?? null,
    aggregated: facts.aggregated,
    agentPaused: facts.agentPaused,
    agentDisabled: facts.agentDisabled,
    escalation: gateEscalation(facts.escalation, facts.activePolicy),
  };
}

/**
 * The payload a vote approves, with its own full policy evaluation when it is not the request as
 * asked (an alternative or a modification: finding 1 and 2). An alternative marked blocked at
 * create stays blocked whatever the policy says now (fail closed).
 */
export function gatePayload(
  request: GateRequest,
  row: RequestRow,
  agentName: string,
  vote: { args?: JsonObject | undefined; alternative?: string | undefined },
  policy: Policy,
  history: HistoryStats,
  at: number,
  /** What the governance pre-checks decided for this payload at the vote (precheckEffects); judged like screening outcomes. */
  prechecks: readonly PrecheckEffect[] = [],
): GatePayload {
  const p = resolvePayload(request, vote);
  const asAsked = p.key === payloadKey(request.action, request.args);
  if (asAsked && prechecks.length === 0) return { ...p, assessment: null };
  let assessment = assessPayload({ ...evaluationRequest(row, agentName), ...(prechecks.length > 0 ? { prechecks } : {}) }, { action: p.action, args: p.args }, policy, history, new Date(at));
  if (asAsked) return { ...p, assessment, rechecked: true };
  const marked = p.alternative === null ? undefined : (request.alternatives as AlternativeView[]).find((a) => a.name === p.alternative)?.blocked;
  if (marked && assessment.route !== 'block') {
    assessment = {
      ...assessment,
      route: 'block',
      matchedRules: [...assessment.matchedRules, ...marked.rules.map((name) => ({ name, reason: 'blocked by policy when the request was made', effects: ['block'] }))],
    };
  }
  return { ...p, assessment };
}

export class Decisions {
  constructor(
    private readonly guard: GuardService,
    private readonly policy: () => Policy,
    readonly limitsOff: boolean,
    /** The policy as it applies to one agent's requests (its configuration overlaid: engine/agent-config.ts), read in the vote's transaction. */
    private readonly agentPolicy: (tx: Queries, agentId: string, agentName: string) => Promise<Policy> = async () => this.policy(),
    /** Who may sign an admin change now (engine/agent-config.ts `signersOf`). */
    private readonly adminSigners: (q: Queries, row: RequestRow) => Promise<readonly string[]> = async () => [],
  ) {}

  /** The policy that judges this agent's requests (file + its overlay), and for an admin change who may sign it: read on `q`. */
  async requestContext(q: Queries, row: RequestRow, agentName: string): Promise<{ policy: Policy; adminSigners: readonly string[] | null }> {
    return {
      policy: await this.agentPolicy(q, row.agent_id, agentName),
      adminSigners: isAdminChangeAction(row.action) ? await this.adminSigners(q, row) : null,
    };
  }

  /**
   * The facts of one vote on `q`: the request, the payload it approves (with its own assessment,
   * and the pre-checks' effects judged under the validators configured now), the reviewer.
   */
  private async prepare(q: Queries, by: Operator, row: RequestRow, agentName: string, escalation: EscalationState | null, votes: readonly Vote[], body: ReviewBody, at: number, precheckResults: readonly PrecheckResult[] | null) {
    const approving = body.verdict === 'approve';
    const pause = approving && row.status === 'pending' ? await q.guard.activePause(row.agent_id, at) : undefined;
    const aggregate = approving && row.status === 'pending' ? await this.guard.aggregateOf(row.id, q) : undefined;
    // The agent's own settings (levels, approver velocity and cool-down) judge votes on its requests.
    const { policy, adminSigners } = await this.requestContext(q, row, agentName);
    const request = gateRequest(row, {
      votes,
      escalation,
      aggregated: aggregate ? { aggregateId: aggregate.id, collectingUntil: aggregate.collectingUntil } : null,
      agentPaused: pause ? { until: new Date(Number(pause.until)).toISOString(), reason: pause.reason } : null,
      agentDisabled: !agentEnabled(policy, agentName),
      adminSigners,
      activePolicy: policy,
    });
    const asked = resolvePayload(request, { args: body.args, alternative: body.alternative });
    const history = asked.key === payloadKey(request.action, request.args) ? null : await q.historyCounts(row.agent_id, asked.action);
    const counts = history ?? { total: 0, approved: 0, rejected: 0, succeeded: 0, failed: 0 };
    let payload = gatePayload(request, row, agentName, body, policy, counts, at);
    if (approving && precheckResults !== null) {
      // Governance pre-checks, judged on the exact payload that runs, under the validators configured NOW:
      // a validator without a result under its current identity fails closed by its onError (F1).
      const applicable = applicablePrechecks(this.policy().prechecks, { action: payload.action, riskLevel: higherRisk(row.risk_level as RiskLevel, payload.assessment?.riskLevel) });
      if (applicable.length > 0) {
        const effects = precheckEffects(precheckOutcomes(precheckResults, applicable, precheckIdentity));
        if (effects.length > 0) payload = gatePayload(request, row, agentName, body, policy, asked.key === payloadKey(request.action, request.args) ? await q.historyCounts(row.agent_id, asked.action) : counts, at, effects);
      }
    }
    const reviewer = { id: by.operatorId, name: by.name, roles: by.roles, groups: by.groups };
    const gateVote = (codes: { totp: GateVote['totp']; matchCode: GateVote['matchCode'] }) => ({
      verdict: body.verdict,
      reason: body.reason,
      args: body.args,
      alternative: body.alternative,
      seenPayloadKey: seenKey(body.seenPayloadHash, payload.key, request),
      totp: codes.totp,
      matchCode: codes.matchCode,
      at: new Date(at).toISOString(),
    });
    return { request, payload, policy, reviewer, gateVote };
  }

  /**
   * The gate's cheap checks for a vote (state, identity, separation, aggregate/pause), on `q`
   * without any lock, and the payload it would approve: the vote's pre-check phase runs these
   * before any validator is called (F2), so nobody who may not vote makes Countersign call one.
   */
  async cheapChecks(q: Queries, by: Operator, row: RequestRow, agentName: string, escalation: EscalationState | null, votes: readonly Vote[], body: ReviewBody, at: number): Promise<GatePayload> {
    const { request, payload, reviewer, gateVote } = await this.prepare(q, by, row, agentName, escalation, votes, body, at, null);
    const unlimited: GuardFacts = { now: at, ip: { allowed: true }, approvals: [], manualCooldown: null, velocity: this.guard.velocityLimits, cooldown: this.guard.cooldownLimits, limitsOff: this.limitsOff };
    const early = precheck({ request, payload, reviewer, vote: gateVote({ totp: 'absent', matchCode: 'absent' }), guard: unlimited });
    if (early) throw early;
    return payload;
  }

  /**
   * One vote, in the review's transaction (the request row is locked): facts, the gate, and the
   * counters of an accepted vote. Throws the gate's refusal; a refusal records nothing.
   */
  async vote(
    tx: Queries,
    by: Operator,
    row: RequestRow,
    agentName: string,
    escalation: EscalationState | null,
    votes: readonly Vote[],
    body: ReviewBody,
    ip: string | null | undefined,
    at: number,
    /** The pre-check results gathered for this vote (engine/reviews.ts); judged here under the policy in force now. */
    precheckResults: readonly PrecheckResult[] = [],
  ): Promise<{ transition: Transition; entries: AuditDraft[] }> {
    const approving = body.verdict === 'approve';
    const { request, payload, policy, reviewer, gateVote } = await this.prepare(tx, by, row, agentName, escalation, votes, body, at, precheckResults);
    const unlimited: GuardFacts = { now: at, ip: { allowed: true }, approvals: [], manualCooldown: null, velocity: this.guard.velocityLimits, cooldown: this.guard.cooldownLimits, limitsOff: this.limitsOff };
    // Cheap checks (state, identity, separation, aggregate/pause) before the approver's advisory
    // lock is taken (review finding 4): a vote that cannot pass never waits on, or holds, that lock.
    const early = precheck({ request, payload, reviewer, vote: gateVote({ totp: 'absent', matchCode: 'absent' }), guard: unlimited });
    if (early) throw early;
    const limits = approving ? await this.guard.limitFacts(tx, by.operatorId, at, true, policy) : { approvals: [], manualCooldown: null, velocity: this.guard.velocityLimits, cooldown: this.guard.cooldownLimits };
    const guard: GuardFacts = { now: at, ip: approving ? await this.guard.ipFact(tx, by, ip) : { allowed: true }, ...limits, limitsOff: this.limitsOff };
    const codes = approving ? await this.guard.stepUpFacts(tx, by, row.id, body, at) : { totp: 'absent' as const, step: null, matchCode: 'absent' as const };
    // WebAuthn: the assertion verified against this request, the hash of the payload this vote approves and its verdict.
    const assertion = approving && body.webauthn
      ? await this.guard.webauthn.assertionFact(tx, by, row.id, payloadHashOf(payload.key), body.verdict, body.webauthn, payloadRequirement(request.assessment, payload.assessment, payload.assessment !== null).webauthn, at)
      : null;
    const result = gate({ request, payload, reviewer, vote: { ...gateVote(codes), ...(assertion ? { webauthn: assertion.fact } : {}) }, guard });
    if (!result.ok) {
      const e = result.error;
      if (assertion?.reason && e.code === 'MFA_INVALID' && (e.details as { factor?: string } | undefined)?.factor === 'webauthn') {
        throw new CountersignError(e.code, `${e.message}: ${assertion.reason.message}`, { factor: 'webauthn', reason: assertion.reason.code, credentialId: body.webauthn!.credentialId });
      }
      throw e;
    }
    const entries = approving ? await this.guard.recordApproval(tx, by, row.id, result.record, codes.step, at) : [];
    if (result.record.factor === 'webauthn' && assertion?.use) entries.push(...(await this.guard.webauthn.recordUse(tx, by, row.id, assertion.use, at)));
    const finalAuthority = result.finalAuthority && { level: result.finalAuthority.level, operator: by.name, operatorId: by.operatorId };
    return { transition: { status: result.status, kinds: [...result.kinds], vote: result.vote, decision: result.decision, ...(finalAuthority ? { finalAuthority } : {}) }, entries };
  }

  /**
   * What the final timeout does when the policy says `onFinalTimeout: approve` (review finding 1):
   * core `timeoutOutcome` over the round's payload and the original re-assessed under the policy
   * that applies to the agent now (the file with its overlay: review F2). A clock approves only the
   * request as asked, only if that policy would not block it now, and never for an agent that is
   * disabled (`enabled: false`, file or overlay: review F3); otherwise the request expires. An
   * assessment that throws (an overlay failing its MAC included) expires it too (fail closed).
   */
  async timeoutEvent(tx: Queries, row: RequestRow, agentName: string, votes: readonly Vote[], reason: string, at: number): Promise<{ type: 'timeout_approve' | 'expire'; reason: string; at: '' }> {
    const request = gateRequest(row, { votes, escalation: null, aggregated: null, agentPaused: null, agentDisabled: false });
    let outcome;
    try {
      const policy = await this.agentPolicy(tx, row.agent_id, agentName);
      if (!agentEnabled(policy, agentName)) return { type: 'expire', reason: `${reason}; agent ${agentName} is disabled (enabled: false), so onFinalTimeout: approve does not apply`, at: '' };
      const history = await tx.historyCounts(row.agent_id, row.action);
      const now = assessPayload(evaluationRequest(row, agentName), { action: request.action, args: request.args }, policy, history, new Date(at));
      outcome = timeoutOutcome(request, now, reason);
    } catch (err) {
      outcome = { type: 'expire' as const, reason: `${reason}; not approved by timeout because it could not be re-assessed (${(err as Error).message})` };
    }
    return { ...outcome, at: '' };
  }

  /**
   * The stage a request waits on for the payload that would run now, and whether this operator
   * may sign it (the gate's own eligibility rule: a reassignment moves only the stage it was made
   * at, and never one that names operators or a group). For extend and reassign.
   */
  async stageFor(tx: Queries, by: Operator, row: RequestRow, agentName: string, escalation: EscalationState | null, votes: readonly Vote[], at: number) {
    const request = gateRequest(row, { votes, escalation, aggregated: null, agentPaused: null, agentDisabled: false });
    const current = resolvePayload(request, {});
    const history = current.key === payloadKey(request.action, request.args) ? EMPTY_HISTORY : await tx.historyCounts(row.agent_id, current.action);
    const payload = gatePayload(request, row, agentName, {}, await this.agentPolicy(tx, row.agent_id, agentName), history, at);
    const requirement = payloadRequirement(request.assessment, payload.assessment, payload.assessment !== null);
    const round = currentRound(request).votes;
    const counts = stageProgressOf(requirement.stages, round);
    const stageIndex = Math.max(0, requirement.stages.findIndex((s, i) => (counts[i] ?? 0) < s.count));
    const stage = requirement.stages[stageIndex]!;
    const reviewer = { id: by.operatorId, name: by.name, roles: by.roles, groups: by.groups };
    return { eligible: stageEligible(reviewer, stage, stageIndex, request.escalation), stage, stageIndex };
  }

  /**
   * The dry run for one operator reading a pending request: whether a plain approval of the
   * current payload would pass (step-up codes assumed given), why not, and that payload. The IP
   * allowlist is judged for the reader's own address (`limits.ip`, from the request that reads),
   * which is the address their approval will come from; everything is the same list.
   */
  readerView(
    by: Operator,
    row: RequestRow,
    agentName: string,
    facts: Omit<RequestFacts, 'agentDisabled'>,
    limits: Pick<GuardFacts, 'approvals' | 'manualCooldown' | 'velocity' | 'cooldown' | 'ip'>,
    history: HistoryStats,
    at: number,
    /** The policy that applies to the agent (file + overlay: `requestContext`), as the vote reads it (review F5). */
    policy: Policy = this.policy(),
  ): ReaderView {
    // The same fact the vote reads, from the same policy (review2 F2: a disabled agent's requests are not actionable).
    const request = gateRequest(row, { ...facts, agentDisabled: !agentEnabled(policy, agentName), activePolicy: policy });
    let payload: GatePayload;
    try {
      payload = gatePayload(request, row, agentName, {}, policy, history, at);
    } catch (err) {
      const a = JSON.parse(row.assessment) as Assessment;
      const p = { action: row.action, args: JSON.parse(row.args) as JsonObject, alternative: null, payloadHash: payloadHashOf(payloadKey(row.action, JSON.parse(row.args) as JsonObject)), mfaRequired: a.mfaRequired, webauthnRequired: a.mfaRequired && a.webauthnRequired === true, matchCodeRequired: a.riskLevel === 'critical' };
      return { actionable: false, notActionable: { code: err instanceof CountersignError ? err.code : 'INTERNAL', message: (err as Error).message }, payload: p };
    }
    const out = dryRun({
      request,
      payload,
      reviewer: { id: by.operatorId, name: by.name, roles: by.roles, groups: by.groups },
      guard: { now: at, ...limits, limitsOff: this.limitsOff },
      at: new Date(at).toISOString(),
    });
    const view = { action: payload.action, args: payload.args, alternative: payload.alternative, payloadHash: payloadHashOf(payload.key), mfaRequired: out.stepUp.mfa, webauthnRequired: out.stepUp.webauthn, matchCodeRequired: out.stepUp.matchCode };
    if (out.actionable || out.reason === null) return { actionable: true, payload: view };
    const retryAt = retryAtOf(out.reason.code, limits, out.requirement.riskLevel, at);
    return { actionable: false, notActionable: { code: out.reason.code, message: out.reason.message, ...(retryAt ? { retryAt } : {}) }, payload: view };
  }
}

/**
 * What the surface says it showed, as the gate compares it: the hash of the payload the vote
 * approves (a plain approval), or, for a modification or an alternative, the hash of the payload
 * it was proposed over (the round's current one), which stands for the one the vote names.
 */
function seenKey(seenHash: string | undefined, key: string, request: GateRequest): string | undefined {
  if (seenHash === undefined) return undefined;
  if (seenHash === payloadHashOf(key)) return key;
  const current = resolvePayload(request, {});
  if (current.key !== key && seenHash === payloadHashOf(current.key)) return key;
  return `seen:${seenHash}`;
}

/** The higher of two risk levels (the second may be absent). */
export function higherRisk(a: RiskLevel, b: RiskLevel | undefined): RiskLevel {
  return b !== undefined && RISK_LEVELS.indexOf(b) > RISK_LEVELS.indexOf(a) ? b : a;
}

/** When a limit refusal passes by itself: the cool-down's end, or when the velocity window frees a slot. */
function retryAtOf(code: string, limits: Pick<GuardFacts, 'approvals' | 'manualCooldown' | 'velocity' | 'cooldown'>, risk: RiskLevel, at: number): string | undefined {
  if (code === 'COOLDOWN_ACTIVE') return cooldownState(limits.approvals, at, limits.cooldown, limits.manualCooldown).until ?? undefined;
  if (code === 'VELOCITY_LIMITED') return approverVelocity(limits.approvals, at, risk, limits.velocity).resetAt ?? undefined;
  return undefined;
}

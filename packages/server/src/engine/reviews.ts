/**
 * Reviews (engine room): a request's state changes. A reviewer's vote through the gate
 * (engine/decisions.ts), a cancel, a timer's decision: the row locked, the state machine run, the
 * review, the sealed decision and their audit entries written in one transaction (`change`), then
 * waiters woken. Also post-hoc feedback on what the policy approved alone.
 */
import { isAdminChangeAction, AGGREGATE_ACTION, CountersignError, transition, type ApprovalRequest, type Assessment, type CancelBody, type Decision, type RiskLevel, type LifecycleEvent, type LifecycleState, type RequestStatus, type ReviewBody, type Transition, type TransitionKind, type EscalationState, type PrecheckResult } from '@countersign/core';
import { newId } from '../ids.ts';
import { SYSTEM_ACTOR, actorOf } from '../audit/writer.ts';
import { outcomeOf as lockoutOutcome } from '../guard/lockout.ts';
import { type Queries, type RequestRow } from '../store/store.ts';
import { voteFromRow } from './mapping.ts';
import type { Principal } from './principal.ts';
import { approvalClaim } from './execution.ts';
import { WAKE_CHANNEL, audit, checkOwner, checkReadable, refuseBadArgs, requireOperator, type Gated, type AuditEntry, type House, type Operator } from './house.ts';
import { higherRisk } from './decisions.ts';
import { subjectOf } from './prechecks.ts';
import { auditFromRow } from './views.ts';

const SYSTEM = SYSTEM_ACTOR;

export class Reviews {
  constructor(private readonly h: House) {}

  /**
   * A reviewer's vote, judged by the gate (engine/decisions.ts → core `gate()`): every check in
   * one ordered list over the payload that will run, in the change's transaction. A refusal
   * changes nothing (no counter, no TOTP step, no escalation) and is audited after the rollback.
   * `from.ip`: the caller's address, for the approval allowlists.
   */
  async review(by: Principal, id: string, body: ReviewBody, from: { ip?: string | null | undefined } = {}): Promise<ApprovalRequest> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot review requests');
    // Step-up attempt limits (guard/lockout.ts): an approval carrying a code reserves an attempt, committed
    // before any code is judged (or is MFA_LOCKED); a refusal for a wrong code keeps it as a failure.
    const attempt = body.verdict === 'approve' && (body.totp !== undefined || body.matchCode !== undefined || body.webauthn !== undefined) ? await this.h.guard.lockout.begin(by) : null;
    try {
      // Governance pre-checks (engine/prechecks.ts): an approval is judged on the exact payload that will run.
      // An aggregate review's approval also judges each member's own payload (F1: engine/aggregates.ts).
      const { results: precheckResults, members: memberPrechecks } = body.verdict === 'approve' && this.h.policy().policy.prechecks.length > 0 ? await this.precheckVote(by, id, body) : { results: [], members: undefined };
      const decided = await this.change(by, id, async (tx, current, escalation) => {
        // Fail closed (review2 F4): the reviewer as they are now, read under lock in this
        // transaction, not as the (up to 2 s) cached principal: a deactivation committed anywhere
        // before this vote refuses it, and a role lost since is judged by the gate.
        const reviewer = await this.h.credentials.lockCurrent(tx, by.operatorId);
        if (body.verdict === 'approve' && body.args !== undefined) refuseBadArgs(this.h.policy().policy, current.action, body.args, 'args');
        const votes = (await tx.reviewsFor([id])).map(voteFromRow);
        const agentName = await this.h.views.agentName(current.agent_id, tx);
        const { transition, entries } = await this.h.decisions.vote(tx, reviewer, current, agentName, escalation, votes, body, from.ip, this.h.now(), precheckResults);
        if (entries.some((e) => e.type === 'cooldown_started')) this.h.commits.timersDue = true; // its guard notices, if any
        return { type: 'gated', transition, entries, ...(memberPrechecks ? { memberPrechecks } : {}) };
      });
      await attempt?.settle('good');
      return decided;
    } catch (err) {
      await attempt?.settle(lockoutOutcome(err));
      await this.h.guard.auditRefusal(err, by, id, 'review');
      throw err;
    }
  }

  /**
   * A vote's pre-check phase, before its transaction and before any validator is called: the
   * request must be readable, the reviewer's args must fit the policy, and the gate's cheap
   * checks (state, identity, separation, aggregate/pause) must pass (F2); then the validators
   * that apply to the payload that will run are called again, or their stored results reused
   * (engine/prechecks.ts atVote). The vote's transaction judges these results under the policy
   * in force then (Decisions.vote: a validator changed meanwhile has no result and fails closed).
   */
  private async precheckVote(by: Operator, id: string, body: ReviewBody): Promise<{ results: PrecheckResult[]; members: ReadonlyMap<string, readonly PrecheckResult[]> | undefined }> {
    const q = this.h.store;
    const row = await q.getRequest(id);
    checkReadable(by, row, id);
    const policy = this.h.policy();
    if (body.args !== undefined) refuseBadArgs(policy.policy, row.action, body.args, 'args');
    const agentName = await this.h.views.agentName(row.agent_id);
    const escalation = await this.h.escalation.escalationOf(q, id);
    const votes = (await q.reviewsFor([id])).map(voteFromRow);
    const payload = await this.h.decisions.cheapChecks(q, by, row, agentName, escalation, votes, body, this.h.now());
    const risk = higherRisk(row.risk_level as RiskLevel, payload.assessment?.riskLevel);
    // An aggregate review: its members' payloads are what will run (its own countersign.* action has no validator).
    const members = row.action === AGGREGATE_ACTION && row.status === 'pending' ? await this.h.aggregates.precheckMembers(by, id) : undefined;
    const configs = this.h.prechecks.applicable(policy.policy.prechecks, payload.action, risk);
    if (configs.length === 0) return { results: [], members };
    const subject = subjectOf('vote', id, payload, { id: row.agent_id, name: agentName }, { level: risk, score: payload.assessment?.riskScore ?? row.risk_score }, JSON.parse(row.context) as Record<string, unknown>);
    return { results: await this.h.prechecks.atVote(q, by.operatorId, configs, subject, this.h.trail.payloadHash(payload.action, payload.args), policy.version), members };
  }

  async cancel(by: Principal, id: string, body: CancelBody = {}): Promise<ApprovalRequest> {
    return this.change(by, id, { type: 'cancel', actor: actorOf(by), reason: body.reason, at: '' }, true);
  }

  /** A decision as stored: sealed with its receipt and, when it approves something to run, the claim it runs with once. */
  sealed(id: string, decision: Decision, riskLevel: string): Pick<RequestRow, 'decision' | 'claim_nonce' | 'claim_expires_at'> {
    const issued = approvalClaim(decision, riskLevel as RiskLevel, this.h.policy().policy);
    return {
      decision: JSON.stringify(this.h.trail.seal(id, decision, issued?.claim)),
      claim_nonce: issued?.columns.claim_nonce ?? null,
      claim_expires_at: issued?.columns.claim_expires_at ?? null,
    };
  }

  /**
   * One state change: lock the row, replay the votes into the pure state machine, write the
   * result and its audit entries in the same transaction, then wake waiters.
   */
  async change(
    by: Principal | undefined,
    id: string,
    /** The event, or a function that decides it inside the transaction (timers); `null` commits what it wrote without a transition. */
    eventOrFire: LifecycleEvent | ((tx: Queries, current: RequestRow, escalation: EscalationState | null) => Promise<LifecycleEvent | Gated | null>),
    ownerOnly = false,
  ): Promise<ApprovalRequest> {
    let previousStatus: RequestStatus = 'pending';
    let settled: RequestRow[] = [];
    const row = await this.h.store.transaction(async (tx) => {
      const current = await tx.getRequest(id, true);
      if (by) checkReadable(by, current, id);
      if (!current) throw new CountersignError('NOT_FOUND', `no request ${id}`);
      if (by && ownerOnly) checkOwner(by, current);
      const escalation = await this.h.escalation.escalationOf(tx, id);
      const event = typeof eventOrFire === 'function' ? await eventOrFire(tx, current, escalation) : eventOrFire;
      if (event === null) return (await tx.getRequest(id)) ?? current;
      // Fail closed: a vote is decided by the gate (review()), never by a raw lifecycle event.
      if (event.type === 'review') throw new CountersignError('INTERNAL', 'reviews are decided through the gate (Engine.review)');
      const at = this.h.now();
      const atIso = new Date(at).toISOString();
      let result: Transition;
      if (event.type === 'gated') result = event.transition;
      else {
        const assessment = JSON.parse(current.assessment) as Assessment;
        const votes = (await tx.reviewsFor([id])).map(voteFromRow);
        const state: LifecycleState = {
          status: current.status as RequestStatus,
          action: current.action,
          args: JSON.parse(current.args),
          alternatives: JSON.parse(current.alternatives),
          approval: assessment.approval,
          votes,
          requesterOperatorId: current.requester_operator_id,
        };
        result = transition(state, { ...event, at: atIso });
      }
      const actor = by ? actorOf(by) : SYSTEM;
      if (result.vote) {
        const v = result.vote;
        await tx.insertReview({
          id: newId('rev', at),
          request_id: id,
          operator_id: v.reviewer.id,
          operator_name: v.reviewer.name,
          verdict: v.verdict,
          reason: v.reason,
          args: v.args === null ? null : JSON.stringify(v.args),
          alternative: v.alternative,
          payload_key: v.payloadKey,
          stage: v.stage,
          stage_key: v.stageKey ?? null,
          created_at: at,
        });
      }
      const patch: Partial<RequestRow> = { status: result.status, updated_at: at };
      if (result.decision) {
        Object.assign(patch, this.sealed(id, result.decision, current.risk_level));
        patch.decided_at = at;
      }
      if (!(await tx.updateRequest(id, patch, current.status))) {
        throw new CountersignError('ALREADY_DECIDED', `request ${id} changed concurrently`);
      }
      if (current.status === 'pending' && result.status !== 'pending') await this.h.escalation.closeEscalation(tx, current, escalation, result.status, at);
      await this.h.writer.append(tx, result.kinds.map((kind) => audit(kind, id, kind === 'expired' ? SYSTEM : actor, this.auditData(kind, result), at)));
      if (event.type === 'gated' && event.entries.length > 0) await this.h.writer.append(tx, event.entries);
      await tx.notify(WAKE_CHANNEL, id);
      previousStatus = current.status as RequestStatus;
      if (current.action === AGGREGATE_ACTION && current.status === 'pending' && result.decision) {
        const outcome = await this.h.aggregates.settleAggregate(tx, current, result.decision, at, event.type === 'gated' ? event.memberPrechecks : undefined);
        settled = outcome.members;
        Object.assign(patch, outcome.patch);
      }
      // Four-eyes: an approved admin change is applied here, exactly as approved, once (engine/agent-config.ts).
      if (isAdminChangeAction(current.action) && current.status === 'pending' && result.decision) {
        Object.assign(patch, await this.h.agentConfigs.settle(tx, { ...current, ...patch } as RequestRow, result.decision, at));
      }
      return { ...current, ...patch } as RequestRow;
    });
    this.h.commits.afterCommit(id);
    this.h.commits.emitChange({ previousStatus, row });
    for (const member of settled) {
      this.h.commits.afterCommit(member.id);
      this.h.commits.emitChange({ previousStatus: 'pending', row: member });
    }
    return this.h.views.toPublic(row);
  }

  auditData(kind: TransitionKind, result: Transition) {
    const fa = result.finalAuthority ? { finalAuthority: result.finalAuthority } : {};
    if (kind === 'reviewed' && result.vote) {
      const v = result.vote;
      return { verdict: v.verdict, reason: v.reason, modifiedArgs: v.args !== null, alternative: v.alternative, stage: v.stage, ...fa };
    }
    const d = result.decision;
    return d
      ? {
          ...fa,
          decidedBy: d.decidedBy,
          deciders: d.deciders.map((x) => x.name),
          reason: d.reason,
          alternative: d.alternative,
          modified: d.modified,
          // The trail binds exactly what may run (as the receipt does) without storing the args.
          payloadHash: d.outcome === 'approved' && d.action !== null && d.args !== null ? this.h.trail.payloadHash(d.action, d.args) : null,
        }
      : {};
  }

  /**
   * Post-hoc feedback on a request the policy approved on its own (the dashboard's supervised
   * feed): "should have asked", or "ok". It changes no request state; it is an audit entry, so
   * it is part of the trail. A repeat of an operator's latest verdict returns that entry.
   */
  async recordFeedback(by: Principal, id: string, body: { verdict: 'should_have_asked' | 'ok'; note?: string | undefined }): Promise<AuditEntry> {
    requireOperator(by);
    const request = await this.h.store.getRequest(id);
    checkReadable(by, request, id);
    if (request.route !== 'auto_approve') {
      throw new CountersignError('ILLEGAL_TRANSITION', `feedback is for requests the policy approved on its own; ${id} was routed to ${request.route}`);
    }
    const entryId = await this.h.store.transaction(async (tx) => {
      const mine = (await tx.auditFor(id)).filter((e) => e.type === 'feedback' && e.actor_id === by.operatorId);
      const latest = mine[mine.length - 1];
      if (latest && (JSON.parse(latest.data) as { verdict?: string }).verdict === body.verdict) return latest.entry_id ?? latest.seq;
      const data = { verdict: body.verdict, note: body.note ?? null, automationLevel: request.automation_level, riskLevel: request.risk_level };
      const entry = audit('feedback', id, actorOf(by), data, this.h.now());
      const [row] = await this.h.writer.append(tx, [entry]);
      return row!.id;
    });
    // The answer names the entry's seq: wait (bounded) for the integrator to give it one.
    await this.h.store.settleAudit();
    const row = await this.h.store.auditByEntryId(entryId);
    if (!row) throw new CountersignError('STORE_UNAVAILABLE', `the feedback is recorded (entry ${entryId}) but not yet in the audit tree; it will be within seconds: read GET /v1/requests/${id}/audit`);
    return auditFromRow(row);
  }
}

/**
 * Escalation (engine room): a pending request's deadlines and levels. Its state and timers at
 * creation, a level's deadline firing (up a level, or the final outcome), a reviewer extending,
 * reassigning or escalating now, and the deadlines closed when it leaves `pending`.
 */
import { CountersignError, EMPTY_HISTORY, OPERATOR_ID_PREFIX, agentEnabled, cooldownEscalation, cooldownState, payloadKey, resolvePayload, type CooldownEscalation, type ApprovalRequest, type Assessment, type AuditEventType, type RequestStatus, canReviewAtAll, channelsAtStart, channelsFor, startedHigher, channelsSoFar, escalationTimerAt, extend as extendEscalation, onDue, reassign as reassignEscalation, escalateNow, checkEscalationReason, repeatedEscalation, startEscalation, type EscalationState } from '@countersign/core';
import { SYSTEM_ACTOR, actorOf } from '../audit/writer.ts';
import { type Queries, type RequestRow } from '../store/store.ts';
import { voteFromRow } from './mapping.ts';
import { gatePayload, gateRequest } from './decisions.ts';
import type { Operator as OperatorPrincipal } from './house.ts';
import type { Principal } from './principal.ts';
import { queueDueAt } from './queue.ts';
import { Listeners } from './listeners.ts';
import { TimerSkip, requestTimer, type TimerRow } from '../store/timers.ts';
import { WAKE_CHANNEL, audit, checkReadable, requireOperator, type EscalationCause, type House } from './house.ts';

const SYSTEM = SYSTEM_ACTOR;

/**
 * A request that starts above escalation level 1 (a rule's `then.startLevel`, or its risk level's
 * `levels.<risk>.startLevel`, e.g. critical straight to level 2): the data of the `escalated`
 * entry (reason `critical`) written in the create transaction (requests.ts), counted as
 * `countersign_escalations_total{reason="critical"}` once it commits. Null when the request starts
 * at level 1 (or has no chain).
 */
export function startEntryData(escalation: EscalationState | null, assessment: Assessment) {
  const up = escalation === null ? null : startedHigher(escalation);
  if (up === null) return null;
  // Which rules asked for this level (their effects name `startLevel N`); none: the risk level's own startLevel.
  const asked = (e: string) => /^startLevel (\d{1,2})$/.exec(e)?.[1];
  const rules = assessment.matchedRules.filter((r) => r.effects.some((e) => Number(asked(e)) === up.to)).map((r) => r.name);
  return {
    from: up.from,
    to: up.to,
    role: up.role,
    dueAt: new Date(up.state.dueAt).toISOString(),
    notify: up.notify,
    reason: 'critical' as const,
    riskLevel: assessment.riskLevel,
    startedBy: rules.length > 0 ? { rules } : { riskLevel: `levels.${assessment.riskLevel}.startLevel` },
    lateMs: 0,
  };
}

/** A `cooldown` timer's payload (guard/service.ts `queueCooldownSweep`). */
interface CooldownTimer {
  key: string;
  operatorId: string;
  operator: string;
  until: string;
  /** The lead who set a manual cool-down; null for an automatic one. */
  setBy: string | null;
}

interface CooldownSweep {
  c: CooldownTimer;
  reviewers: readonly OperatorPrincipal[];
  facts: Awaited<ReturnType<House['guard']['coolingFacts']>>;
  at: number;
}

/** Pending requests read per page by a cool-down sweep. */
const COOLDOWN_PAGE = 200;

export class Escalation {
  constructor(private readonly h: House) {}

  /** At creation, in the create transaction: escalation state, its deadline, the agent's hard deadline, first notifications. */
  async scheduleCreated(tx: Queries, row: RequestRow, escalation: EscalationState | null, at: number, notify = true): Promise<void> {
    const timers: TimerRow[] = [];
    if (row.expires_at !== null) timers.push(requestTimer('expire', row.id, row.expires_at, at));
    if (escalation) {
      await tx.timers.insertEscalation({ request_id: row.id, level: escalation.level, due_at: escalation.dueAt, state: JSON.stringify(escalation), updated_at: at });
      const due = escalationTimerAt(escalation, row.expires_at);
      if (due !== null) timers.push(requestTimer('escalate', row.id, due, at, { level: escalation.level }));
    }
    await tx.timers.insertTimers(timers);
    if (escalation && notify) await this.h.deliveries.enqueueDeliveries(tx, row.id, channelsAtStart(escalation), 'requested', { level: escalation.level }, at);
  }

  /** When a request leaves `pending`: its deadlines are moot, and every channel told about it hears the outcome. */
  async closeEscalation(tx: Queries, current: RequestRow, escalation: EscalationState | null, status: RequestStatus, at: number): Promise<void> {
    await tx.timers.cancelRequestTimers(current.id, ['escalate', 'expire']);
    if (escalation) await this.h.deliveries.enqueueDeliveries(tx, current.id, channelsSoFar(escalation), 'decided', { status }, at);
  }

  async escalationOf(tx: Queries, id: string): Promise<EscalationState | null> {
    const [row] = await tx.timers.escalationsFor([id]);
    return row ? (JSON.parse(row.state) as EscalationState) : null;
  }

  async escalationsOf(ids: readonly string[]): Promise<Map<string, EscalationState>> {
    const rows = await this.h.store.timers.escalationsFor(ids);
    return new Map(rows.map((r) => [r.request_id, JSON.parse(r.state) as EscalationState]));
  }

  async saveEscalation(tx: Queries, current: RequestRow, state: EscalationState, at: number, isNew: boolean): Promise<void> {
    const row = { request_id: current.id, level: state.level, due_at: state.dueAt, state: JSON.stringify(state), updated_at: at };
    if (isNew) await tx.timers.insertEscalation(row);
    else await tx.timers.updateEscalation(row);
    await tx.timers.cancelRequestTimers(current.id, ['escalate']);
    const due = escalationTimerAt(state, current.expires_at);
    if (due !== null) await tx.timers.insertTimers([requestTimer('escalate', current.id, due, at, { level: state.level })]);
    // The request itself changed for its readers (level, deadline): waiters and SSE see a new updatedAt.
    if (!(await tx.updateRequest(current.id, { updated_at: at, queue_due_at: queueDueAt(current, state) }, 'pending'))) {
      throw new CountersignError('ALREADY_DECIDED', `request ${current.id} changed concurrently`);
    }
    await tx.notify(WAKE_CHANNEL, current.id);
  }

  /**
   * Fires one request timer (`escalate` or `expire`) claimed by the scheduler. The timer is
   * deleted in the transaction that makes its change, so it fires once. `escalated`: up a level;
   * `decided`: expired, or approved by timeout; `gone`: another process (or an earlier attempt)
   * fired it; `rescheduled`: its deadline moved after the claim; `stale`: decided meanwhile.
   */
  async fireRequestTimer(timer: TimerRow): Promise<'escalated' | 'decided' | 'gone' | 'rescheduled' | 'stale'> {
    const id = timer.request_id;
    if (id === null || (timer.kind !== 'escalate' && timer.kind !== 'expire')) {
      throw new CountersignError('INTERNAL', `fireTimer: ${timer.kind} is not a request timer`);
    }
    let outcome = 'decided' as 'escalated' | 'decided' | 'stale';
    try {
      await this.h.reviews.change(undefined, id, async (tx, current, escalation) => {
        const taken = await tx.timers.takeTimer(timer.id);
        // Gone, or already replaced by the next level's timer (same id, a later incarnation).
        if (!taken || taken.created_at !== timer.created_at || taken.payload !== timer.payload) throw new TimerSkip('gone');
        const at = this.h.now();
        if (taken.due_at > at) throw new TimerSkip('rescheduled');
        if (current.status !== 'pending') {
          outcome = 'stale';
          return null;
        }
        if (taken.kind === 'expire') {
          return { type: 'expire', reason: "the agent's own timeout (timeoutSeconds) passed before a decision", at: '' };
        }
        // A request in an aggregate review follows the aggregate's deadlines, never its own chain.
        if (await tx.aggregates.membership(id)) {
          outcome = 'stale';
          return null;
        }
        const state = escalation ?? startEscalation(this.h.policy().policy, JSON.parse(current.assessment) as Assessment, current.created_at);
        if (!state) throw new CountersignError('INTERNAL', `request ${id} is pending without a review route`);
        const due = onDue(state, this.h.policy().policy, at);
        if (due.type === 'final') {
          if (due.outcome === 'approve' && (await tx.guard.activePause(current.agent_id, at))) {
            // Fail closed: a paused agent's request is never approved by a clock.
            return { type: 'expire', reason: `${due.reason}; the agent is paused, so onFinalTimeout: approve does not apply`, at: '' };
          }
          if (due.outcome !== 'approve') return { type: 'expire', reason: due.reason, at: '' };
          // Silence approves only the request as asked, and only if the active policy would not block it.
          const votes = (await tx.reviewsFor([id])).map(voteFromRow);
          return this.h.decisions.timeoutEvent(tx, current, await this.h.views.agentName(current.agent_id, tx), votes, due.reason, at);
        }
        outcome = 'escalated';
        await this.saveEscalation(tx, current, due.state, at, escalation === null);
        await this.h.deliveries.enqueueDeliveries(tx, id, due.notify, 'escalated', { from: due.from, to: due.to, role: due.role, reason: 'sla_timeout' }, at);
        await this.h.writer.append(tx, [
          audit(
            'escalated',
            id,
            SYSTEM,
            { from: due.from, to: due.to, role: due.role, dueAt: new Date(due.state.dueAt).toISOString(), notify: due.notify, reason: 'sla_timeout', lateMs: at - taken.due_at },
            at,
          ),
        ]);
        return null;
      });
    } catch (err) {
      if (err instanceof TimerSkip) return err.why;
      throw err;
    }
    if (outcome === 'escalated') this.emitEscalated('sla_timeout');
    return outcome;
  }

  /**
   * A `cooldown` timer (queued by guard/service.ts in the transaction that started an operator's
   * cool-down, automatic or manual): every pending request that the cool-down leaves with nobody
   * free who may approve it moves up one level (`reason: cooldown`), or, at a level that cannot
   * escalate, stays pending and its level's channels are told (`cooldown_stranded`). Core's
   * `cooldownEscalation` decides; "eligible" is the gate's own cheap checks (its comment).
   *
   * The operators and their cool-down facts are read once, at the start. Each pending request is
   * judged first without a lock (cheap reads; most are not stranded), and the few that are
   * stranded again in their own transaction with the row locked (`FOR UPDATE` on PostgreSQL,
   * SQLite's write lock), from the state as it is then: a decision, a timeout or another
   * cool-down that moved it meanwhile is seen. Once only: the state keeps the key of every
   * cool-down that moved or stranded it (`cooldownKeys`, core), so a second run of this timer (its lease ran out on a slow sweep, a crash
   * before the timer was deleted, another server) changes nothing, and any move in the last
   * minute blocks another (`ESCALATION_REPEAT_MS`). The timer is deleted after the sweep; a
   * failure leaves it leased and it runs again (idempotent). Fails closed: any doubt about a
   * request (its payload cannot be judged, an operator's facts are missing) leaves it as it is.
   */
  async fireCooldown(timer: TimerRow): Promise<'escalated' | 'decided' | 'gone' | 'rescheduled' | 'stale'> {
    const c = JSON.parse(timer.payload) as CooldownTimer;
    const at = this.h.now();
    if (timer.due_at > at) return 'rescheduled';
    const reviewers = (await this.h.credentials.activeOperators()).filter((o) => canReviewAtAll({ roles: o.roles }));
    const facts = await this.h.guard.coolingFacts(this.h.store, reviewers.map((o) => o.operatorId), at);
    const sweep: CooldownSweep = { c, reviewers, facts, at };
    let escalated = 0;
    let stranded = 0;
    let after: { createdAt: number; id: string } | undefined;
    for (;;) {
      const page = await this.h.store.listRequests({ status: 'pending', limit: COOLDOWN_PAGE, order: 'oldest', ...(after ? { after } : {}) });
      for (const row of page) {
        // Unlocked first: only a request stranded now is locked and judged again.
        const first = await this.judgeCooldown(this.h.store, row, sweep);
        if (first === null || first.type === 'none') continue;
        // One request that fails (a concurrent change, the database) is left as it is (fail closed); the sweep goes on.
        // Judged and stamped at the time of its own move, not the sweep's start: a request moved late in a long
        // sweep gets its full time at the new level, and the repeat guard runs from the real move.
        const moved = await this.applyCooldown(row.id, { ...sweep, at: Math.max(sweep.at, this.h.now()) }).catch(() => 'none' as const);
        if (moved === 'escalated') escalated++;
        else if (moved === 'stranded') stranded++;
      }
      if (page.length < COOLDOWN_PAGE) break;
      const last = page[page.length - 1]!;
      after = { createdAt: last.created_at, id: last.id };
    }
    const taken = await this.h.store.transaction((tx) => tx.timers.takeTimer(timer.id));
    for (let i = 0; i < escalated; i++) this.emitEscalated('cooldown');
    if (escalated > 0) return 'escalated';
    if (stranded > 0) return 'decided';
    return taken ? 'stale' : 'gone';
  }

  /** One pending request under the cool-down, on `q` (the store, or the locked transaction): core's judgment, or null when it is not judged (no chain, an aggregate's member, any doubt). */
  private async judgeCooldown(q: Queries, row: RequestRow, s: CooldownSweep): Promise<(CooldownEscalation & { escalation: EscalationState }) | null> {
    try {
      const escalation = await this.escalationOf(q, row.id);
      if (escalation === null) return null;
      // A member of an aggregate review follows the aggregate's deadlines, never its own chain (AGGREGATED).
      if (await this.h.guard.aggregateOf(row.id, q)) return null;
      const votes = (await q.reviewsFor([row.id])).map(voteFromRow);
      const agentName = await this.h.views.agentName(row.agent_id, q);
      const { policy, adminSigners } = await this.h.decisions.requestContext(q, row, agentName);
      const pause = await q.guard.activePause(row.agent_id, s.at);
      const request = gateRequest(row, {
        votes,
        escalation,
        aggregated: null,
        agentPaused: pause ? { until: new Date(Number(pause.until)).toISOString(), reason: pause.reason } : null,
        agentDisabled: !agentEnabled(policy, agentName),
        adminSigners,
        activePolicy: policy,
      });
      const current = resolvePayload(request, {});
      const history = current.key === payloadKey(request.action, request.args) ? EMPTY_HISTORY : await q.historyCounts(row.agent_id, current.action);
      const payload = gatePayload(request, row, agentName, {}, policy, history, s.at);
      const { cooldown } = this.h.guard.limitsFor(policy);
      const candidates = s.reviewers.map((o) => {
        const f = s.facts.get(o.operatorId);
        // Facts missing: counted as free (fail closed: nothing moves on a doubt).
        return { reviewer: { id: o.operatorId, name: o.name, roles: o.roles, groups: o.groups }, coolingDown: f ? cooldownState(f.approvals, s.at, cooldown, f.manualCooldown).active : false };
      });
      const out = cooldownEscalation({
        request,
        payload,
        state: escalation,
        cooled: s.c.operatorId,
        key: s.c.key,
        ...(s.c.setBy !== null ? { setBy: s.c.setBy } : {}),
        candidates,
        riskLevels: cooldown.riskLevels,
        limitsOff: this.h.decisions.limitsOff,
        now: s.at,
      });
      return { ...out, escalation };
    } catch {
      return null;
    }
  }

  /** The locked half: judge one request again in its own transaction and make the move (or the stranded notice). */
  private async applyCooldown(id: string, s: CooldownSweep): Promise<'escalated' | 'stranded' | 'none'> {
    const { c, at } = s;
    const outcome = await this.h.store.transaction(async (tx) => {
      const current = await tx.getRequest(id, true);
      if (!current || current.status !== 'pending') return 'none' as const;
      const out = await this.judgeCooldown(tx, current, s);
      if (out === null || out.type === 'none') return 'none' as const;
      const who = { operatorId: c.operatorId, operator: c.operator, cooldownUntil: c.until, ...(c.setBy !== null ? { setBy: c.setBy } : {}), eligible: out.eligible };
      if (out.type === 'escalate') {
        const up = out.up;
        await this.saveEscalation(tx, current, up.state, at, false);
        const data = { from: up.from, to: up.to, role: up.role, dueAt: new Date(up.state.dueAt).toISOString(), notify: up.notify, reason: 'cooldown', ...who };
        await this.h.deliveries.enqueueDeliveries(tx, id, up.notify, 'escalated', data, at);
        await this.h.writer.append(tx, [audit('escalated', id, SYSTEM, data, at)]);
        return 'escalated' as const;
      }
      // The last level, or a final authority: it never escalates further and is never approved by this; it waits, and its people hear why.
      await this.saveEscalation(tx, current, out.state, at, false);
      const notify = channelsFor(out.state, out.level);
      await this.h.deliveries.enqueueDeliveries(tx, id, notify, 'escalated', { from: out.level, to: out.level, role: out.state.plan.steps[out.level - 1]?.role ?? null, reason: 'cooldown', stranded: true, ...who }, at);
      await this.h.writer.append(tx, [audit('cooldown_stranded', id, SYSTEM, { level: out.level, ...who, notify }, at)]);
      return 'stranded' as const;
    });
    if (outcome !== 'none') this.h.commits.afterCommit(id);
    return outcome;
  }

  /**
   * Who may extend or reassign: someone the gate would let vote on the request now (its identity
   * and separation checks, over the payload that would run). Returns the index of the stage the
   * request waits on, which a reassignment moves (and only that one).
   */
  async actingStage(tx: Queries, by: Extract<Principal, { kind: 'operator' }>, current: RequestRow, escalation: EscalationState): Promise<number> {
    if (current.requester_operator_id === by.operatorId) throw new CountersignError('SELF_REVIEW', 'a requester cannot manage their own request');
    const votes = (await tx.reviewsFor([current.id])).map(voteFromRow);
    const agentName = await this.h.views.agentName(current.agent_id, tx);
    const { eligible, stage, stageIndex } = await this.h.decisions.stageFor(tx, by, current, agentName, escalation, votes, this.h.now());
    if (!eligible) throw new CountersignError('NOT_ELIGIBLE', `only someone who may review this request now may do this (${stage.label})`, { stage });
    return stageIndex;
  }

  /**
   * Locks a pending request with escalation state, runs `fn`, writes its audit entry; one
   * transaction. A member of an aggregate review (or of a collection that will become one) is
   * refused with AGGREGATED: the aggregate is decided, extended and escalated as a whole. That
   * refusal, and SELF_REVIEW, are audited as `escalation_refused` after the rollback. `fn`
   * returning null changes nothing (a repeated escalation): the request is answered as it is.
   */
  async manage(
    by: Principal,
    id: string,
    what: 'extend' | 'reassign' | 'escalate',
    fn: (tx: Queries, current: RequestRow, escalation: EscalationState, at: number, stage: number) => Promise<{ state: EscalationState; audit: [AuditEventType, unknown]; notify?: readonly string[] } | null>,
  ): Promise<{ request: ApprovalRequest; changed: boolean }> {
    requireOperator(by);
    let changed = false;
    let row: RequestRow;
    try {
      row = await this.h.store.transaction(async (tx) => {
        const current = await tx.getRequest(id, true);
        checkReadable(by, current, id);
        if (current.status !== 'pending') throw new CountersignError('ALREADY_DECIDED', `request is already ${current.status}`, { status: current.status });
        const escalation = await this.escalationOf(tx, id);
        if (!escalation) throw new CountersignError('ILLEGAL_TRANSITION', `request ${id} has no deadline to manage`);
        // A parked member's own chain stopped when it joined an aggregate review, which has its own (as fireRequestTimer).
        const aggregated = await this.h.guard.aggregateOf(id, tx);
        if (aggregated) {
          throw new CountersignError('AGGREGATED', `this request is decided in its aggregate review: ${what} that instead`, { aggregateId: aggregated.id, collectingUntil: aggregated.collectingUntil });
        }
        const stage = await this.actingStage(tx, by, current, escalation);
        const at = this.h.now();
        const out = await fn(tx, current, escalation, at, stage);
        if (out === null) return current;
        await this.saveEscalation(tx, current, out.state, at, false);
        const [type, data] = out.audit;
        if (out.notify) await this.h.deliveries.enqueueDeliveries(tx, id, out.notify, type, data, at);
        await this.h.writer.append(tx, [audit(type, id, actorOf(by), data, at)]);
        changed = true;
        return { ...current, updated_at: at };
      });
    } catch (err) {
      await this.h.guard.auditRefusal(err, by, id, what);
      throw err;
    }
    if (changed) this.h.commits.afterCommit(id);
    return { request: await this.h.views.toPublic(row), changed };
  }

  /** A reviewer grants more time at the current level: once per request, bounded, with a reason. The agent's own timeout never moves. */
  async extendDeadline(by: Principal, id: string, body: { seconds: number; reason: string }): Promise<ApprovalRequest> {
    const { request } = await this.manage(by, id, 'extend', async (_tx, _current, escalation, at) => {
      const state = extendEscalation(escalation, body.seconds * 1000, body.reason, by.kind === 'operator' ? by.name : '', at);
      const data = { level: state.level, bySeconds: body.seconds, reason: body.reason, dueAt: new Date(state.dueAt).toISOString() };
      return { state, audit: ['extended', data] };
    });
    return request;
  }

  /** Hands a pending request to another operator or a group; the current level's channels hear of it. */
  async reassign(by: Principal, id: string, body: { operator?: string | undefined; group?: string | undefined; reason: string }): Promise<ApprovalRequest> {
    let operator: string | undefined;
    if (body.operator !== undefined) {
      // Only an operator who could sign in (MAC valid, not disabled or removed) is handed a request.
      const found = await this.h.credentials.operatorPrincipal(body.operator);
      if (!found) throw new CountersignError('VALIDATION_FAILED', `no active operator named "${body.operator}"`, { field: 'operator' });
      if (!canReviewAtAll({ roles: found.roles })) {
        throw new CountersignError('VALIDATION_FAILED', `operator "${found.name}" has no reviewing role`, { field: 'operator' });
      }
      // Recorded as core's namesOperator reads it: by name, or by id when the name looks like an id (`op_…`).
      operator = found.name.startsWith(OPERATOR_ID_PREFIX) ? found.operatorId : found.name;
    }
    const { request } = await this.manage(by, id, 'reassign', async (_tx, _current, escalation, at, stage) => {
      // Only the current stage moves, and never one that names people (the gate's eligibility, finding 4).
      const state = reassignEscalation(escalation, { operator, group: body.group }, body.reason, by.kind === 'operator' ? by.name : '', at, stage);
      const data = { level: state.level, to: operator !== undefined ? { operator } : { group: body.group }, reason: body.reason, stage };
      return { state, audit: ['reassigned', data], notify: channelsFor(state, state.level) };
    });
    return request;
  }

  /**
   * A reviewer escalates a pending request now: the same move up one level as a timeout (core's
   * `escalateNow`), its next level's channels told with the reason, the timer rescheduled for
   * that level's period. Whoever may review it now may (as for extend and reassign); it never
   * decides the request, and is refused at the last level. `fromLevel` (the level the caller
   * saw) makes two escalations made at once move one level: the row lock serialises them, and
   * the second finds the level moved on. Without `fromLevel`, the same operator escalating the
   * same request again within a minute (core `repeatedEscalation`: a double click, a retried
   * call) is answered with the request as it is, nothing moved, audited or counted.
   */
  async escalate(by: Principal, id: string, body: { reason: string; fromLevel?: number | undefined }): Promise<ApprovalRequest> {
    checkEscalationReason(body.reason);
    const { request, changed } = await this.manage(by, id, 'escalate', async (_tx, _current, escalation, at) => {
      const operatorId = by.kind === 'operator' ? by.operatorId : undefined;
      // The same operator again within a minute, without saying from where: a double click, not a second jump.
      if (operatorId !== undefined && repeatedEscalation(escalation, operatorId, at, body.fromLevel)) return null;
      const up = escalateNow(escalation, body.reason, at, body.fromLevel, operatorId);
      const operator = by.kind === 'operator' ? by.name : '';
      const data = { from: up.from, to: up.to, role: up.role, dueAt: new Date(up.state.dueAt).toISOString(), notify: up.notify, reason: 'manual', by: operator, text: body.reason };
      return { state: up.state, audit: ['escalated', data], notify: up.notify };
    });
    if (changed) this.emitEscalated('manual');
    return request;
  }

  private readonly escalationListeners = new Listeners<EscalationCause>();

  /** Told after each committed escalation in this process, with its cause (metrics). */
  onEscalated(listener: (reason: EscalationCause) => void): () => void {
    return this.escalationListeners.add(listener);
  }

  emitEscalated(reason: EscalationCause): void {
    this.escalationListeners.emit(reason);
  }
}

/**
 * Aggregates (engine room, `onSlicing: aggregate`; the pure parts are core's guard/aggregate.ts):
 * a closed collection becomes one aggregate review request, and its decision settles each member.
 */
import { CountersignError, EMPTY_HISTORY, aggregateMemberPrecheck, applicablePrechecks, precheckOutcomes, type PrecheckResult, type RiskLevel, MAX_AGGREGATE_MEMBERS, aggregateRequest, assessAggregate, memberDecision, canonicalJson, type Assessment, type Decision, type JsonObject, type EarlierInHold, type RequestStatus, startEscalation } from '@countersign/core';
import { newId, sha256Hex } from '../ids.ts';
import { SYSTEM_ACTOR } from '../audit/writer.ts';
import { type Queries, type RequestRow } from '../store/store.ts';
import { queueDueAt } from './queue.ts';
import { TimerSkip, type TimerRow } from '../store/timers.ts';
import { WAKE_CHANNEL, audit, type House, type Operator } from './house.ts';
import { subjectOf } from './prechecks.ts';

const SYSTEM = SYSTEM_ACTOR;
/** A request's `context.value`, when it stated a number. */
function statedValue(row: RequestRow): number | null {
  const value = (JSON.parse(row.context) as { value?: unknown }).value;
  return typeof value === 'number' ? value : null;
}

/** Sums the stated values; null when none is stated. */
function sumValues(...values: Array<number | null>): number | null {
  const stated = values.filter((v): v is number => v !== null);
  return stated.length > 0 ? stated.reduce((a, v) => a + v, 0) : null;
}
export class Aggregates {
  constructor(private readonly h: House) {}

  /**
   * Closes an aggregate collection (its `collect` timer): the agent's still-pending requests in it
   * become one aggregate review request (several when there are more than MAX_AGGREGATE_MEMBERS;
   * one request alone is an aggregate of one), whose total value also counts what the agent
   * asked for in this hold's earlier aggregates, evaluated by the policy as a whole and routed to
   * review with its own escalation. `decided`: something was put together.
   */
  async collectAggregate(timer: TimerRow): Promise<'decided' | 'gone' | 'rescheduled' | 'stale'> {
    const { collectionId } = JSON.parse(timer.payload) as { collectionId: string };
    const made: RequestRow[] = [];
    const settled: RequestRow[] = [];
    try {
      await this.h.store.transaction(async (tx) => {
        const taken = await tx.timers.takeTimer(timer.id);
        if (!taken || taken.created_at !== timer.created_at) throw new TimerSkip('gone');
        const at = this.h.now();
        if (taken.due_at > at) throw new TimerSkip('rescheduled');
        // Locked: a create joining the collection and this close take turns (PostgreSQL).
        const collection = await tx.aggregates.collection(collectionId, true);
        if (!collection || collection.closed_at !== null) return;
        const members: RequestRow[] = [];
        for (const id of await tx.aggregates.collecting(collection.id)) {
          const row = await tx.getRequest(id, true);
          if (row?.status === 'pending') members.push(row);
        }
        const alerts = JSON.parse(collection.alerts) as string[];
        const agentName = await this.h.views.agentName(collection.agent_id, tx);
        let earlier = await tx.aggregates.earlierInHold(collection.agent_id, Number(collection.hold_since));
        const groups = Math.ceil(members.length / MAX_AGGREGATE_MEMBERS);
        for (let g = 0; g < groups; g++) {
          const group = members.filter((_, i) => i % groups === g);
          const aggregate = await this.insertAggregate(tx, group, agentName, alerts, earlier, at, settled);
          made.push(aggregate.row);
          earlier = { count: earlier.count + group.length, value: sumValues(earlier.value, aggregate.value) };
        }
        await tx.aggregates.closeCollection(collection.id, at, members.length, sumValues(...members.map(statedValue)));
      });
    } catch (err) {
      if (err instanceof TimerSkip) return err.why as 'gone' | 'rescheduled';
      throw err;
    }
    for (const row of [...made, ...settled]) {
      this.h.commits.afterCommit(row.id);
      this.h.commits.emitChange({ previousStatus: made.includes(row) ? null : 'pending', row });
    }
    return made.length > 0 ? 'decided' : 'stale';
  }

  async insertAggregate(
    tx: Queries,
    members: readonly RequestRow[],
    agentName: string,
    alerts: readonly string[],
    earlier: EarlierInHold,
    at: number,
    settled: RequestRow[],
  ): Promise<{ row: RequestRow; value: number | null }> {
    const body = aggregateRequest(
      members.map((m) => ({
        id: m.id,
        action: m.action,
        args: JSON.parse(m.args),
        value: statedValue(m) ?? undefined,
        riskLevel: m.risk_level as Assessment['riskLevel'],
        confidence: m.confidence ?? undefined,
      })),
      agentName,
      alerts,
      earlier,
    );
    const forced = {
      rule: `slicing-aggregate:${alerts.join('+')}`,
      reason: `slicing detected (${alerts.join(', ')}); policy onSlicing: aggregate puts ${members.length === 1 ? 'this request' : `${members.length} requests`} before a reviewer as one`,
    };
    // Never easier to approve than any member was on its own (its MFA, approvers, quorum).
    const own = members.map((m) => JSON.parse(m.assessment) as Assessment);
    const first = members[0]!;
    // The agent's policy (file + overlay: an overlay block, levels or escalation apply to the bundle as to each member, review2 F3).
    const policy = await this.h.agentConfigs.policyFor(tx, first.agent_id, agentName);
    const assessment = assessAggregate(body, agentName, policy, EMPTY_HISTORY, new Date(at), forced, own);
    const id = newId('req', at);
    const { row, decision, status } = this.h.requests.newRequestRow(id, first.agent_id, first.requester_operator_id, body, sha256Hex(canonicalJson(body)), assessment, this.h.policy().version, at);
    const escalation = status === 'pending' ? startEscalation(policy, assessment, at) : null;
    row.queue_due_at = queueDueAt(row, escalation);
    await tx.insertRequest(row);
    await this.h.escalation.scheduleCreated(tx, row, escalation, at);
    await tx.aggregates.bundle(
      members.map((m) => m.id),
      id,
    );
    await this.h.writer.append(tx, [
      audit('created', id, SYSTEM, {
        action: body.action,
        agentId: row.agent_id,
        policyVersion: row.policy_version,
        riskScore: assessment.riskScore,
        riskLevel: assessment.riskLevel,
        route: assessment.route,
        matchedRules: assessment.matchedRules.map((r) => r.name),
        members: members.map((m) => m.id),
        payloadHash: this.h.trail.payloadHash(body.action, body.args),
      }, at),
      ...members.map((m) => audit('aggregated', m.id, SYSTEM, { aggregateId: id }, at)),
      status === 'pending' ? audit('queued', id, SYSTEM, { slaDueAt: assessment.slaDueAt, approval: assessment.approval }, at) : audit(status, id, SYSTEM, { decidedBy: 'policy', reason: decision?.reason ?? null }, at),
    ]);
    await tx.notify(WAKE_CHANNEL, id);
    // A policy that blocks the whole decides every member at once.
    if (decision) settled.push(...(await this.settleAggregate(tx, row, decision, at)).members);
    return { row, value: (body.args['value'] as number | null | undefined) ?? null };
  }

  /**
   * Before an approval vote on an aggregate review, outside its transaction and after the vote's
   * cheap checks passed (review F1): each pending member's own payload judged by the validators
   * that apply to it now, exactly as a direct vote on it would be (Prechecks.atVote: the stored
   * results reused when the payload and each validator's identity are unchanged, otherwise the
   * validators called, charged to the approver's budget: RATE_LIMITED when spent).
   */
  async precheckMembers(by: Operator, aggregateId: string): Promise<Map<string, readonly PrecheckResult[]>> {
    const q = this.h.store;
    const policy = this.h.policy();
    const out = new Map<string, readonly PrecheckResult[]>();
    if (policy.policy.prechecks.length === 0) return out;
    for (const memberId of await q.aggregates.members(aggregateId)) {
      const member = await q.getRequest(memberId);
      if (member?.status !== 'pending') continue;
      const risk = member.risk_level as RiskLevel;
      const configs = this.h.prechecks.applicable(policy.policy.prechecks, member.action, risk);
      if (configs.length === 0) continue;
      const args = JSON.parse(member.args) as JsonObject;
      const agent = { id: member.agent_id, name: await this.h.views.agentName(member.agent_id) };
      const subject = subjectOf('vote', member.id, { action: member.action, args, alternative: null }, agent, { level: risk, score: member.risk_score }, JSON.parse(member.context) as Record<string, unknown>);
      out.set(member.id, await this.h.prechecks.atVote(q, by.operatorId, configs, subject, this.h.trail.payloadHash(member.action, args), policy.version));
    }
    return out;
  }

  /**
   * An aggregate review was decided: each still-pending member gets the same outcome, bound to
   * its own action and args (its own signed receipt), in the same transaction. An approved
   * aggregate has nothing left to run, so it is recorded as executed (the members run, each
   * reported by its agent).
   *
   * Pre-checks (review F1): on approval, each member is judged under the validators configured
   * NOW (the policy in force in this transaction) by the results gathered before it
   * (`memberPrechecks`, precheckMembers). A member a validator denies, raises above the
   * aggregate's level, or has no result for (a validator added or changed since; a timer's
   * approval, which gathers none) is rejected with the reason naming the validator, never approved.
   */
  async settleAggregate(tx: Queries, aggregate: RequestRow, decision: Decision, at: number, memberPrechecks?: ReadonlyMap<string, readonly PrecheckResult[]>): Promise<{ members: RequestRow[]; patch: Partial<RequestRow> }> {
    const validators = decision.outcome === 'approved' ? this.h.policy().policy.prechecks : [];
    const members: RequestRow[] = [];
    const deciders = decision.deciders.map((d) => d.name);
    for (const memberId of await tx.aggregates.members(aggregate.id)) {
      const member = await tx.getRequest(memberId, true);
      if (member?.status !== 'pending') continue;
      // An objection already raised on the member stands: the aggregate's approval does not override it.
      const objected = decision.outcome === 'approved' && (await tx.reviewsFor([member.id])).some((v) => v.verdict === 'reject');
      const configs = objected || validators.length === 0 ? [] : applicablePrechecks(validators, { action: member.action, riskLevel: member.risk_level as RiskLevel });
      const judged = configs.length === 0 ? { approve: true as const } : aggregateMemberPrecheck(precheckOutcomes(memberPrechecks?.get(member.id) ?? [], configs, (c) => this.h.precheckCaller.identity(c)), aggregate.risk_level as RiskLevel);
      const d = objected
        ? {
            ...memberDecision(aggregate.id, { ...decision, outcome: 'expired' }, { action: member.action, args: {} }),
            reason: `aggregate review ${aggregate.id} was approved, but a reviewer had objected to this request, so it is not`,
          }
        : !judged.approve
          ? {
              ...memberDecision(aggregate.id, { ...decision, outcome: 'rejected' }, { action: member.action, args: {} }),
              reason: `aggregate review ${aggregate.id} was approved, but this request is not: ${judged.why}`.slice(0, 1000),
            }
          : memberDecision(aggregate.id, decision, { action: member.action, args: JSON.parse(member.args) });
      const patch = { status: d.outcome as RequestStatus, updated_at: at, ...this.h.reviews.sealed(member.id, d, member.risk_level), decided_at: at };
      if (!(await tx.updateRequest(member.id, patch, 'pending'))) throw new CountersignError('ALREADY_DECIDED', `request ${member.id} changed concurrently`);
      await tx.timers.cancelRequestTimers(member.id, ['escalate', 'expire']);
      const payloadHash = d.action !== null && d.args !== null ? this.h.trail.payloadHash(d.action, d.args) : null;
      await this.h.writer.append(tx, [audit(d.outcome, member.id, SYSTEM, { decidedBy: d.decidedBy, deciders, reason: d.reason, aggregateId: aggregate.id, payloadHash }, at)]);
      await tx.notify(WAKE_CHANNEL, member.id);
      members.push({ ...member, ...patch });
    }
    if (decision.outcome !== 'approved') return { members, patch: {} };
    const execution = { status: 'succeeded', result: { decided: members.map((m) => m.id) }, error: null, at: new Date(at).toISOString() };
    const patch = { status: 'executed' as RequestStatus, execution: JSON.stringify(execution), updated_at: at };
    if (!(await tx.updateRequest(aggregate.id, patch, 'approved'))) throw new CountersignError('ALREADY_DECIDED', `request ${aggregate.id} changed concurrently`);
    await this.h.writer.append(tx, [audit('executed', aggregate.id, SYSTEM, { status: 'succeeded', members: members.length }, at)]);
    return { members, patch };
  }
}

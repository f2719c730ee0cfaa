/**
 * Requests (engine room): a proposal's way in. Judged by the agent's own policy, idempotent per
 * agent, screened, evaluated with its alternatives and history, routed (decided at once or queued
 * with its escalation), and written with its audit entries in one transaction. Admin changes
 * (four-eyes on agent configuration) are filed here too.
 */
import { type JsonObject, agentEnabled, agentPolicy, isAdminChangeAction, CountersignError, EMPTY_HISTORY, approvalLapsed, normalizeActionName, canonicalJson, evaluate, policyDecision, type ApprovalRequest, type Assessment, type CreateRequest, type Policy, type RequestStatus, type SlicingAlert, type AlternativeView, assessAlternatives, startEscalation, precheckEffects } from '@countersign/core';
import { newId, sha256Hex } from '../ids.ts';
import { SYSTEM_ACTOR, actorOf, type AuditDraft } from '../audit/writer.ts';
import { SlicingReview } from '../guard/service.ts';
import { type HistoryCounts, type RequestRow } from '../store/store.ts';
import { requestFromRow } from './mapping.ts';
import type { Principal } from './principal.ts';
import { AgentConfigDesk } from './agent-config.ts';
import { queueDueAt } from './queue.ts';
import { startEntryData } from './escalation.ts';
import { parseScreenRequest, screeningEffect, type ScreenRequest, type ScreenResult } from '@countersign/core/screen/api';
import type { EvaluationRequest } from '@countersign/core';
import { NO_DEADLINE } from '../store/queue.ts';
import { subjectOf } from './prechecks.ts';
import { HISTORY_CACHE_MS, WAKE_CHANNEL, audit, refuseBadArgs, type House } from './house.ts';

const SYSTEM = SYSTEM_ACTOR;

export class Requests {
  private readonly historyCache = new Map<string, { counts: HistoryCounts; until: number }>();

  constructor(private readonly h: House) {}

  /**
   * Proposes an action. Idempotent per agent on `idempotencyKey`: the same key and body return
   * the same request (`replayed: true`); the same key with a different body is a conflict.
   */
  async createRequest(by: Principal, body: CreateRequest, slicing?: SlicingReview): Promise<{ request: ApprovalRequest; replayed: boolean }> {
    const policy = this.h.policy();
    const at = this.h.now();
    const agent = await this.h.identity.requesterAgent(by, at);
    // The agent's own configuration (policy file agents.<name>, then its API overlay): the policy that judges this request.
    let overlay: Awaited<ReturnType<AgentConfigDesk['overlayOf']>>;
    try {
      overlay = await this.h.agentConfigs.overlayOf(this.h.store, agent.id, agent.name);
    } catch (err) {
      await this.h.guard.auditRefusal(err, by, null, 'create');
      throw err;
    }
    const judged = agentPolicy(policy.policy, agent.name, overlay.config, overlay.baselines);
    if (!agentEnabled(judged, agent.name)) {
      const err = new CountersignError('AGENT_DISABLED', `agent ${agent.name} is disabled (enabled: false${overlay.config?.enabled === false ? ', set through the API' : ' in the policy file'}); nothing was created`, { agent: agent.name, source: overlay.config?.enabled === false ? 'overlay' : 'policy' });
      await this.h.guard.auditRefusal(err, by, null, 'create');
      throw err;
    }
    const bodyHash = sha256Hex(canonicalJson(body));
    let refiles: RequestRow | undefined;
    if (body.idempotencyKey !== undefined) {
      const existing = await this.h.store.findByIdempotencyKey(agent.id, body.idempotencyKey);
      if (existing) {
        const lapsed = approvalLapsed({ status: existing.status, claimedAt: existing.claimed_at === null ? null : Number(existing.claimed_at), claimExpiresAt: existing.claim_expires_at === null ? null : Number(existing.claim_expires_at) }, at);
        if (!lapsed || existing.body_hash !== bodyHash) return { request: await this.replay(existing, bodyHash), replayed: true };
        refiles = existing; // it can never run: file a new request under the key (below, in one transaction)
      }
    }
    refuseBadArgs(policy.policy, body.action, body.args, 'args');
    for (const [i, alt] of (body.alternatives ?? []).entries()) refuseBadArgs(policy.policy, alt.action, alt.args, `alternatives[${i}].args`);
    const history = await this.history(agent.id, body.action, at);
    const gate = await this.h.guard.createGate(agent, judged, at); // whilePaused: hold; onSlicing: review, aggregate
    const forcedReview = slicing?.review ?? (gate && { rule: gate.rule, reason: gate.reason });
    // Prompt-injection screening of every agent-written string (core screen/request.ts), off the event loop when large (screener.ts).
    const screening = await this.screenBody(body, policy.policy);
    let assessment = evaluate({ ...body, agent: agent.name, forcedReview, screening }, judged, history, new Date(at));
    const id = newId('req', at);
    // Governance pre-checks (engine/prechecks.ts): the validators that apply judge the payload before it is routed;
    // a deny blocks it (rejected, never runs), a raise raises its risk and sends it to humans. Not called for what the policy blocks anyway.
    let prechecked: AuditDraft | null = null;
    const validators = assessment.route === 'block' ? [] : this.h.prechecks.applicable(judged.prechecks, body.action, assessment.riskLevel);
    if (validators.length > 0) {
      // The cheap part first: an agent over its own request limit makes Countersign call no validator.
      try {
        await this.h.guard.refuseCreateOverLimit(this.h.store, agent, judged, at);
      } catch (err) {
        await this.h.guard.auditRefusal(err, by, null, 'create');
        throw err;
      }
      const subject = subjectOf('create', id, { action: body.action, args: body.args, alternative: null }, agent, { level: assessment.riskLevel, score: assessment.riskScore }, body.context);
      const checked = await this.h.prechecks.atCreate(validators, subject, agent.id, this.h.trail.payloadHash(body.action, body.args), policy.version, at);
      prechecked = checked.entry;
      if (checked.outcome.effect !== 'allow') assessment = evaluate({ ...body, agent: agent.name, forcedReview, screening, prechecks: precheckEffects(checked.outcome) }, judged, history, new Date(at));
    }
    // Each alternative gets the full evaluation too: a blocked one is kept, marked with its rules, and can never be chosen (finding 1).
    const alternatives = await this.assessedAlternatives(body, agent, at, judged);
    const sampled = this.h.screening.drawSample(id, screening?.result);
    const { row, decision, status } = this.newRequestRow(id, agent.id, by.kind === 'operator' ? by.operatorId : null, body, bodyHash, assessment, policy.version, at, alternatives);
    const escalation = status === 'pending' ? startEscalation(judged, assessment, at) : null;
    row.queue_due_at = queueDueAt(row, escalation);
    const started = startEntryData(escalation, assessment); // a start above level 1 (escalation.ts)
    const actor = actorOf(by);
    const entries: AuditDraft[] = [
      audit('created', id, actor, {
        action: body.action,
        agentId: agent.id,
        confidence: body.confidence,
        policyVersion: policy.version,
        riskScore: assessment.riskScore,
        riskLevel: assessment.riskLevel,
        automationLevel: assessment.automationLevel,
        route: assessment.route,
        matchedRules: assessment.matchedRules.map((r) => r.name),
        payloadHash: this.h.trail.payloadHash(body.action, body.args),
        ...(alternatives?.some((a) => a.blocked) ? { blockedAlternatives: alternatives.filter((a) => a.blocked).map((a) => ({ name: a.name, rules: a.blocked!.rules })) } : {}),
        ...(refiles ? { refiles: refiles.id } : {}),
        ...(overlay.version > 0 ? { agentConfigVersion: overlay.version } : {}),
        ...(sampled && !assessment.screening ? { screening: { score: screening!.result.score, action: screening!.result.action, sampled: true, findings: [] } } : {}),
        ...(assessment.screening
          ? {
              screening: {
                ...(sampled ? { sampled: true } : {}),
                score: assessment.screening.score,
                action: assessment.screening.action,
                overBudget: assessment.screening.overBudget,
                findings: assessment.screening.findings.map((f) => ({ field: f.field, kind: f.kind, span: f.span, score: f.score })),
              },
            }
          : {}),
      }, at),
      ...(prechecked ? [prechecked] : []),
      ...(refiles ? [audit('claim_lapsed', refiles.id, SYSTEM, { refiledAs: id, expiresAt: new Date(Number(refiles.claim_expires_at)).toISOString() }, at)] : []),
      status === 'pending'
        ? audit('queued', id, SYSTEM, {
            slaDueAt: assessment.slaDueAt,
            approval: assessment.approval,
            escalation: escalation && { level: escalation.level, dueAt: new Date(escalation.dueAt).toISOString() },
          }, at)
        : audit(status, id, SYSTEM, { decidedBy: 'policy', reason: decision?.reason ?? null, payloadHash: status === 'approved' ? this.h.trail.payloadHash(body.action, body.args) : null }, at),
      ...(started ? [audit('escalated', id, SYSTEM, started, at)] : []),
    ];
    let alerts: SlicingAlert[] = [];
    try {
      await this.h.store.transaction(async (tx) => {
        // Judged by the overlay still in force (a change takes the same agent lock): else refuse, and the agent sends it again.
        await this.h.agentConfigs.recheck(tx, agent, overlay);
        const checked = await this.h.guard.checkCreate(tx, agent, judged, at, status === 'pending', { id, action: body.action, args: body.args, value: assessment.value?.amount, autoApproved: status === 'approved' });
        const held = checked.entries;
        alerts = checked.alerts;
        // A racing create (or claim) got there first: the catch below replays what now holds the key.
        if (refiles && !(await tx.releaseLapsedKey(refiles.id, body.idempotencyKey!, at))) {
          throw new CountersignError('IDEMPOTENCY_CONFLICT', 'the lapsed approval under this idempotency key changed meanwhile', { requestId: refiles.id });
        }
        await tx.insertRequest(row, true); // with the statements after it: a taken key fails the transaction there (store/pipeline.ts)
        if (sampled) await this.h.screening.recordSample(tx, id, screening!.result, at);
        // Under `onSlicing: aggregate` the request waits in the agent's collection: its own channels hear of the aggregate instead.
        const collect = gate?.aggregate && status === 'pending' ? gate.aggregate : undefined;
        await this.h.escalation.scheduleCreated(tx, row, escalation, at, collect === undefined);
        if (collect) {
          const collection = await this.h.guard.park(tx, agent.id, [id], collect, judged, at);
          held.push(audit('collected', id, SYSTEM, { collectionId: collection.id, closesAt: new Date(collection.closesAt).toISOString() }, at));
        }
        // In the same transaction as the request; on PostgreSQL sent with the commit (store/pipeline.ts).
        await this.h.writer.appendLater(tx, held.length === 0 ? entries : [...entries, ...held.map((e) => ({ ...e, requestId: id }))]);
        await tx.notify(WAKE_CHANNEL, id);
      });
    } catch (err) {
      // This create raised slicing alerts its onSlicing holds for: created again, held for review (once).
      if (err instanceof SlicingReview && !slicing) return this.createRequest(by, body, err);
      await this.h.guard.auditRefusal(err, by, null, 'create');
      // Two creates raced on one idempotency key: the loser returns the winner's request.
      if (body.idempotencyKey !== undefined) {
        const existing = await this.h.store.findByIdempotencyKey(agent.id, body.idempotencyKey);
        if (existing) return { request: await this.replay(existing, bodyHash), replayed: true };
      }
      throw err;
    }
    this.h.commits.afterCommit(id);
    this.h.commits.emitChange({ previousStatus: null, row });
    if (started) this.h.escalation.emitEscalated('critical');
    await this.h.guard.afterCreate(agent, judged, alerts);
    return { request: requestFromRow(row, agent.name, [], escalation), replayed: false };
  }

  /**
   * Files an admin change (core admin-change.ts: `countersign.agent_config`) as a request of the
   * admin, judged by `assessment` (always review, by another admin), with `entries` in the same
   * transaction. Only the engine files these; agents cannot name a `countersign.*` action.
   */
  async proposeAdminChange(
    by: Extract<Principal, { kind: 'operator' }>,
    action: string,
    args: JsonObject,
    description: string,
    assessment: Assessment,
    entries: (requestId: string) => AuditDraft[],
  ): Promise<ApprovalRequest> {
    if (!isAdminChangeAction(action) || assessment.route !== 'review') throw new CountersignError('INTERNAL', `${action} is not an admin change`);
    const policy = this.h.policy();
    const at = this.h.now();
    const agent = await this.h.identity.requesterAgent(by, at);
    const body: CreateRequest = { action, args, description };
    const id = newId('req', at);
    const { row } = this.newRequestRow(id, agent.id, by.operatorId, body, sha256Hex(canonicalJson(body)), assessment, policy.version, at);
    const escalation = startEscalation(policy.policy, assessment, at);
    row.queue_due_at = queueDueAt(row, escalation);
    await this.h.store.transaction(async (tx) => {
      await tx.insertRequest(row);
      await this.h.escalation.scheduleCreated(tx, row, escalation, at);
      await this.h.writer.append(tx, [
        audit('created', id, actorOf(by), {
          action,
          agentId: agent.id,
          policyVersion: policy.version,
          riskScore: assessment.riskScore,
          riskLevel: assessment.riskLevel,
          automationLevel: assessment.automationLevel,
          route: assessment.route,
          matchedRules: assessment.matchedRules.map((r) => r.name),
          payloadHash: this.h.trail.payloadHash(action, args),
        }, at),
        audit('queued', id, SYSTEM, { slaDueAt: assessment.slaDueAt, approval: assessment.approval, escalation: escalation && { level: escalation.level, dueAt: new Date(escalation.dueAt).toISOString() } }, at),
        ...entries(id),
      ]);
      await tx.notify(WAKE_CHANNEL, id);
    });
    this.h.commits.afterCommit(id);
    this.h.commits.emitChange({ previousStatus: null, row });
    return requestFromRow(row, agent.name, [], escalation);
  }

  /**
   * `POST /v1/screen`: any authenticated caller (agent or operator) screens one text under the
   * active policy's `screening:` section. Stateless: nothing is stored or audited.
   */
  async screenText(by: Principal, request: ScreenRequest): Promise<ScreenResult> {
    // Every principal may screen; each has its own small share of the worker (screener.ts: RATE_LIMITED when full).
    const caller = by.kind === 'agent' ? `agent:${by.agentId}` : `operator:${by.operatorId}`;
    return this.h.screener.screenText(parseScreenRequest(request), this.h.policy().policy.screening, caller, this.h.screenModels.current());
  }

  /** Screen a create body's text under the policy's `screening:` section; nothing when screening is disabled. */
  async screenBody(body: CreateRequest, policy: Policy): Promise<EvaluationRequest['screening']> {
    const config = policy.screening;
    if (!config.enabled) return undefined;
    const result = await this.h.screener.screen(body, config, this.h.screenModels.current());
    return { result, outcomes: screeningEffect(result, config) };
  }

  /** A new request's row from its body and assessment: decided at once unless routed to review. */
  newRequestRow(
    id: string,
    agentId: string,
    requesterOperatorId: string | null,
    body: CreateRequest,
    bodyHash: string,
    assessment: Assessment,
    policyVersion: number,
    at: number,
    alternatives: readonly AlternativeView[] | null = null,
  ) {
    const decision =
      assessment.route === 'review'
        ? null
        : policyDecision(assessment.route, body.action, body.args, assessment.reasons.join(' ') || assessment.route, new Date(at).toISOString());
    const status: RequestStatus = decision === null ? 'pending' : decision.outcome === 'approved' ? 'approved' : 'rejected';
    const row: RequestRow = {
      id,
      agent_id: agentId,
      requester_operator_id: requesterOperatorId,
      idempotency_key: body.idempotencyKey ?? null,
      body_hash: bodyHash,
      action: body.action,
      args: JSON.stringify(body.args),
      description: body.description ?? null,
      confidence: body.confidence ?? null,
      risk_hint: body.riskLevel ?? null,
      context: JSON.stringify(body.context ?? {}),
      alternatives: JSON.stringify(alternatives ?? body.alternatives ?? []),
      approvers: JSON.stringify(body.approvers ?? []),
      timeout_seconds: body.timeoutSeconds ?? null,
      status,
      risk_score: assessment.riskScore,
      risk_level: assessment.riskLevel,
      automation_level: assessment.automationLevel,
      route: assessment.route,
      assessment: JSON.stringify(assessment),
      policy_version: policyVersion,
      ...(decision === null ? { decision: null, claim_nonce: null, claim_expires_at: null } : this.h.reviews.sealed(id, decision, assessment.riskLevel)),
      claimed_at: null,
      execution: null,
      created_at: at,
      updated_at: at,
      decided_at: decision === null ? null : at,
      expires_at: decision === null && body.timeoutSeconds !== undefined ? at + body.timeoutSeconds * 1000 : null,
      queue_due_at: NO_DEADLINE, // set from the escalation state once it is planned (queueDueAt)
      action_key: normalizeActionName(body.action),
    };
    return { row, decision, status };
  }

  /** A create's alternatives, each assessed as a request of its own; a blocked one carries `blocked: {rules}`. Null without alternatives. */
  async assessedAlternatives(body: CreateRequest, agent: { id: string; name: string }, at: number, policy: Policy): Promise<AlternativeView[] | null> {
    if (!body.alternatives || body.alternatives.length === 0) return null;
    const histories = new Map<string, HistoryCounts>();
    for (const alt of body.alternatives) if (!histories.has(alt.action)) histories.set(alt.action, await this.history(agent.id, alt.action, at));
    const assessed = assessAlternatives({ ...body, agent: agent.name }, policy, (action) => histories.get(action) ?? EMPTY_HISTORY, new Date(at));
    return body.alternatives.map((alt, i) => {
      const blocked = assessed[i]?.blocked;
      return blocked ? { ...alt, blocked } : alt;
    });
  }

  /**
   * The agent's recent outcomes for this action. History is a soft risk signal (one factor of
   * seven), so a second-old answer is good enough and keeps bursts of creates from re-reading it.
   */
  async history(agentId: string, action: string, now: number): Promise<HistoryCounts> {
    const key = `${agentId}\u0000${normalizeActionName(action)}`;
    const cached = this.historyCache.get(key);
    if (cached && cached.until > now) return cached.counts;
    const counts = await this.h.store.historyCounts(agentId, action);
    if (this.historyCache.size >= 10_000) this.historyCache.clear();
    this.historyCache.set(key, { counts, until: now + HISTORY_CACHE_MS });
    return counts;
  }

  async replay(existing: RequestRow, bodyHash: string): Promise<ApprovalRequest> {
    if (existing.body_hash !== bodyHash) {
      throw new CountersignError('IDEMPOTENCY_CONFLICT', 'this idempotency key was used for a different request', {
        requestId: existing.id,
      });
    }
    return this.h.views.toPublic(existing);
  }
}

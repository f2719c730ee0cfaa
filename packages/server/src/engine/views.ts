/**
 * Views (engine room): every read of requests and their trail, as a caller may see them. A
 * request with its reviews and escalation, and, for an operator, the gate's dry run (`actionable`);
 * the queue and its counts, my dashboard, waiting for a decision, the audit entries.
 */
import { CountersignError, EMPTY_HISTORY, type ApprovalRequest, type Vote, currentRound, payloadKey, resolvePayload, type EscalationState } from '@countersign/core';
import { GuardService } from '../guard/service.ts';
import { type AuditRow, type Queries, type RequestRow, type ReviewRow } from '../store/store.ts';
import { requestFromRow, voteFromRow } from './mapping.ts';
import { Decisions, type RequestFacts } from './decisions.ts';
import type { Principal } from './principal.ts';
import { SELF_REF, isSelfRef } from './refs.ts';
import { readActionableListing, readCounts, readListing, type ListOptions } from './queue.ts';
import { myDashboard, type MyDashboardOptions } from './my-dashboard.ts';
import type { ComplianceReport, MetricBucket } from '@countersign/core';
import { complianceReport, operatorMetrics, type OperatorMetrics } from '../audit/reports.ts';
import type { SummaryAggregates } from '../store/history.ts';
import type { DeliveryFilter, DeliveryRow } from '../store/timers.ts';
import { checkReadable, requireOperator, type AuditEntry, type House, type ReaderFrom, type ReaderGuardFacts } from './house.ts';

export class Views {
  private readonly agentNames = new Map<string, string>();

  constructor(private readonly h: House) {}

  /**
   * How long the oldest entry still waiting for integration has waited (by this engine's clock,
   * which stamped it), or null when none is pending: /healthz is degraded past a bound.
   */
  async auditIntegrationLag(): Promise<{ ms: number; since: number } | null> {
    const oldest = await this.h.store.auditOldestPendingAt();
    return oldest === undefined ? null : { ms: this.h.now() - oldest, since: oldest };
  }

  /** `from.ip`: the reader's address, judged against the approval allowlists in `actionable` exactly as `review` would judge it. */
  async getRequest(by: Principal, id: string, from: ReaderFrom = {}): Promise<ApprovalRequest> {
    const row = await this.h.store.getRequest(id);
    checkReadable(by, row, id);
    const aggregate = await this.h.guard.aggregateOf(row.id);
    const paused = row.status === 'pending' ? await this.h.guard.pauseOf(row.agent_id) : undefined;
    const request = await this.toPublic(row, by, { aggregate, paused }, from);
    // Number matching: only an operator reading the request itself sees the code (never listings
    // or notifications). On every pending request, not only critical ones: a reviewer's
    // modification or an alternative can make the approval critical (the gate then asks for it).
    if (by.kind === 'operator' && row.status === 'pending') request.matchCode = await this.h.guard.matchCode(row.id);
    if (aggregate) request.aggregate = aggregate;
    if (paused) request.agentPaused = paused;
    return request;
  }

  /**
   * Returns as soon as the request leaves `pending` (or, when it already has, at once), else
   * after `waitMs` with its current state. Subscribes before reading, so a decision that lands
   * between the read and the wait is never missed.
   */
  async waitForDecision(by: Principal, id: string, waitMs: number, signal?: AbortSignal): Promise<ApprovalRequest> {
    const deadline = this.h.now() + waitMs;
    for (;;) {
      const stop = new AbortController();
      const onAbort = () => stop.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const changed = this.h.wakeups.next(id, Math.max(0, deadline - this.h.now()), stop.signal);
      try {
        const row = await this.h.store.getRequest(id);
        checkReadable(by, row, id);
        if (row.status !== 'pending' || this.h.now() >= deadline || signal?.aborted) return await this.toPublic(row);
        if ((await changed) !== 'changed') return await this.toPublic((await this.h.store.getRequest(id)) ?? row);
      } finally {
        stop.abort();
        signal?.removeEventListener('abort', onAbort);
      }
    }
  }

  /** The queue and the history: filtered, ordered and paged in SQL, with counts (engine/queue.ts). */
  async listRequests(by: Principal, options: ListOptions = {}, from: ReaderFrom = {}) {
    requireOperator(by);
    if (options.actionableBy !== undefined) {
      const reader = by;
      if (!isSelfRef(reader, options.actionableBy)) {
        throw new CountersignError('VALIDATION_FAILED', 'actionableBy takes me (or your own operator id or name): whether someone else may act is theirs to see', { field: 'actionableBy' });
      }
      const views = new Map<string, ApprovalRequest>();
      const listing = await readActionableListing(this.h.store, options, async (rows) => {
        const seen = await this.viewOfRows(reader, rows, from);
        return seen.map((view) => (view.actionable === true ? (views.set(view.id, view), true) : false));
      });
      const items = listing.rows.map((row) => views.get(row.id)!);
      return { items, nextCursor: listing.nextCursor, order: listing.order, counts: listing.counts, remaining: listing.remaining };
    }
    const listing = await readListing(this.h.store, options);
    const items = await this.viewOfRows(by, listing.rows, from);
    return { items, nextCursor: listing.nextCursor, order: listing.order, counts: listing.counts, remaining: listing.remaining };
  }

  /** `GET /v1/requests/count`: the requests matching the listing's filters, by status and risk level (engine/queue.ts). */
  async countRequests(by: Principal, options: ListOptions = {}) {
    requireOperator(by);
    return readCounts(this.h.store, options);
  }

  /** `GET /v1/me/dashboard` (engine/my-dashboard.ts): what I may approve now, my metrics, my recent actions. */
  async myDashboard(by: Principal, options: MyDashboardOptions = {}, from: ReaderFrom = {}) {
    requireOperator(by);
    const actionable = (reader: Principal, limit: number) => this.listRequests(reader, { actionableBy: SELF_REF, limit }, from);
    return myDashboard({ store: this.h.store, now: this.h.now, actionable }, by, options);
  }

  /** Rows as `by` sees them in a listing: reviews, escalation and whether they may act on each now (one query per kind). */
  async viewOfRows(by: Extract<Principal, { kind: 'operator' }>, page: readonly RequestRow[], from: ReaderFrom = {}): Promise<ApprovalRequest[]> {
    const reviews = await this.h.store.reviewsFor(page.map((r) => r.id));
    const escalations = await this.h.escalation.escalationsOf(page.map((r) => r.id));
    // Requests in an aggregate review are decided there (the queue offers the aggregate instead);
    // a paused agent's requests wait for the pause to end. Both are facts of the gate's dry run.
    const pending = page.filter((r) => r.status === 'pending');
    const limits = pending.length > 0 ? await this.h.guard.readerFacts(by, from.ip) : undefined;
    const aggregated = await this.h.store.aggregates.membersAmong(pending.map((r) => r.id));
    const pausedIds = await this.h.guard.pausedAmong(pending.map((r) => r.agent_id));
    const pauses = new Map<string, { until: string; reason: string } | undefined>();
    for (const agentId of pausedIds) pauses.set(agentId, await this.h.guard.pauseOf(agentId));
    return Promise.all(
      page.map(async (row) => {
        const own = reviews.filter((v) => v.request_id === row.id);
        const escalation = escalations.get(row.id) ?? null;
        const request = requestFromRow(row, await this.agentName(row.agent_id), own, escalation);
        if (!limits || row.status !== 'pending') return request;
        const aggregate = aggregated.has(row.id) ? { id: null, collectingUntil: null } : undefined;
        return this.withActionable(by, request, row, own, escalation, { aggregate, paused: pauses.get(row.agent_id) }, limits);
      }),
    );
  }

  /** A request as the API shows it, read for background work (notifications) that acts for no caller. */
  async requestById(id: string): Promise<ApprovalRequest | undefined> {
    const row = await this.h.store.getRequest(id);
    return row ? this.toPublic(row) : undefined;
  }

  async auditForRequest(by: Principal, id: string): Promise<AuditEntry[]> {
    const row = await this.h.store.getRequest(id);
    checkReadable(by, row, id);
    return (await this.h.store.auditFor(id)).map(auditFromRow);
  }

  async listAudit(by: Principal, options: { afterSeq?: number; limit?: number; type?: string }) {
    requireOperator(by);
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1000);
    const rows = await this.h.store.listAudit({ afterSeq: options.afterSeq, limit, type: options.type });
    return rows.map(auditFromRow);
  }

  async toPublic(row: RequestRow, viewer?: Principal, guardFacts?: ReaderGuardFacts, from: ReaderFrom = {}): Promise<ApprovalRequest> {
    const reviews = await this.h.store.reviewsFor([row.id]);
    const escalation = (await this.h.escalation.escalationsOf([row.id])).get(row.id) ?? null;
    const request = requestFromRow(row, await this.agentName(row.agent_id), reviews, escalation);
    if (!viewer || viewer.kind !== 'operator' || row.status !== 'pending') return request;
    const facts = guardFacts ?? { aggregate: await this.h.guard.aggregateOf(row.id), paused: await this.h.guard.pauseOf(row.agent_id) };
    return this.withActionable(viewer, request, row, reviews, escalation, facts, await this.h.guard.readerFacts(viewer, from.ip));
  }

  /**
   * Marks, for an operator, whether they may approve this pending request now, and why not: the
   * gate's dry run (engine/decisions.ts), the same ordered checks a vote goes through, so the
   * queue never offers what the server refuses. Also the payload an approval approves now.
   */
  async withActionable(
    by: Extract<Principal, { kind: 'operator' }>,
    request: ApprovalRequest,
    row: RequestRow,
    reviews: readonly ReviewRow[],
    escalation: EscalationState | null,
    guardFacts: ReaderGuardFacts,
    limits: Awaited<ReturnType<GuardService['readerFacts']>>,
  ): Promise<ApprovalRequest> {
    const votes = reviews.map(voteFromRow);
    const facts: Omit<RequestFacts, 'agentDisabled'> = {
      votes,
      escalation,
      aggregated: guardFacts.aggregate ? { aggregateId: guardFacts.aggregate.id, collectingUntil: guardFacts.aggregate.collectingUntil } : null,
      agentPaused: guardFacts.paused ?? null,
    };
    const round = currentRound({ action: row.action, args: request.args, votes });
    // Another payload's own evaluation reads its history (a soft signal, cached a second).
    const history = round.key === payloadKey(row.action, request.args) ? EMPTY_HISTORY : await this.h.requests.history(row.agent_id, this.roundAction(request, votes), this.h.now());
    // The agent's own policy (file + overlay) and, for an admin change, who may sign it: as the vote reads them (review F5).
    let context: Awaited<ReturnType<Decisions['requestContext']>>;
    try {
      context = await this.h.decisions.requestContext(this.h.store, row, request.agentName);
    } catch (err) {
      request.actionable = false;
      request.notActionable = { code: err instanceof CountersignError ? err.code : 'INTERNAL', message: (err as Error).message };
      return request;
    }
    const view = this.h.decisions.readerView(
      by,
      row,
      request.agentName,
      { ...facts, adminSigners: context.adminSigners },
      { ...limits, ...this.h.guard.limitsFor(context.policy) },
      history,
      this.h.now(),
      context.policy,
    );
    request.actionable = view.actionable;
    if (view.notActionable) request.notActionable = view.notActionable;
    request.payload = view.payload;
    return request;
  }

  /** The action of the round's payload (an alternative's, or the request's own). */
  roundAction(request: ApprovalRequest, votes: readonly Vote[]): string {
    try {
      return resolvePayload({ action: request.action, args: request.args, alternatives: request.alternatives, votes }, {}).action;
    } catch {
      return request.action;
    }
  }

  /** `q`: inside a transaction, its handle (on SQLite a read outside it would wait for it to commit). */
  async agentName(agentId: string, q: Queries = this.h.store): Promise<string> {
    const cached = this.agentNames.get(agentId);
    if (cached !== undefined) return cached;
    const agent = await q.findAgentById(agentId);
    const name = agent?.name ?? agentId;
    this.agentNames.set(agentId, name);
    return name;
  }

  // ---- reads for the shell (metrics, health, reports, the embedded gateway, the scheduler): none of them reaches the store ----

  /** The database's kind (`sqlite`, `postgres`), for /healthz and the start line. */
  get databaseDialect(): string {
    return this.h.store.capabilities.dialect;
  }

  /** Round-trips the database (/healthz): throws when it cannot be reached. */
  ping(): Promise<void> {
    return this.h.store.ping();
  }

  /** Pending requests by risk level (the Prometheus gauge). */
  pendingCountsByRisk(): Promise<Record<string, number>> {
    return this.h.store.pendingCountsByRisk();
  }

  /** Waits (bounded) until the committed audit entries are integrated into the tree. */
  settleAudit(): Promise<boolean> {
    return this.h.store.settleAudit();
  }

  /** The history's SQL aggregates for [from, to) by bucket (store/history.ts). */
  historySummary(from: number, to: number, bucket: MetricBucket, now: number): Promise<SummaryAggregates> {
    return this.h.store.history.summary(from, to, bucket, now);
  }

  /** `GET /v1/audit/reports/compliance` (audit/reports.ts), over this engine's database. */
  complianceReport(by: Principal, input: Parameters<typeof complianceReport>[2], now: number, integrity: Parameters<typeof complianceReport>[4]): Promise<ComplianceReport> {
    return complianceReport(this.h.store, by, input, now, integrity);
  }

  /** `GET /v1/metrics/operators/:id` (audit/reports.ts), over this engine's database. */
  operatorMetrics(by: Principal, ref: string, period: string, now: number): Promise<OperatorMetrics> {
    return operatorMetrics(this.h.store, by, ref, period, now);
  }

  /** A delivery as stored (the notifier reads it before an attempt). */
  deliveryById(id: string): Promise<DeliveryRow | undefined> {
    return this.h.store.timers.getDelivery(id);
  }

  /** Deliveries as stored, newest first (the notifier reads a channel's earlier responses to thread its messages). */
  storedDeliveries(filter: DeliveryFilter): Promise<DeliveryRow[]> {
    return this.h.store.timers.listDeliveries(filter);
  }

  /** An agent by name, without making one (the embedded gateway). */
  async agentByName(name: string): Promise<{ id: string; name: string } | undefined> {
    const row = await this.h.store.findAgentByName(name);
    return row ? { id: row.id, name: row.name } : undefined;
  }

  /** Whether an operator of this name exists (disabled or not). */
  async operatorExists(name: string): Promise<boolean> {
    return (await this.h.store.findOperatorByName(name)) !== undefined;
  }

  /** How many credentials were ever issued on this database (none: no server has used it). */
  countCredentials(): Promise<number> {
    return this.h.store.countCredentials();
  }
}

export function auditFromRow(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    at: new Date(row.at).toISOString(),
    type: row.type,
    requestId: row.request_id,
    actor: { type: row.actor_type, id: row.actor_id, name: row.actor_name },
    data: JSON.parse(row.data),
  };
}

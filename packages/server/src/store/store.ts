/**
 * All SQL lives here, as methods over one Kysely handle. `Store` and the transaction handle it
 * passes to `transaction()` have the same methods, so the engine writes a state change and its
 * audit entry with one object in one transaction. Nothing outside the engine calls the write
 * methods (one writer per table).
 */
import { processEnvironment, reentryCheckFrom } from '../config.ts';
import { AsyncLocalStorage } from 'node:async_hooks';
import { CountersignError, normalizeActionName, type AutomationLevel } from '@countersign/core';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Capabilities, Connection } from './connect.ts';
import { TimerQueries } from './timers.ts';
import { TrailQueries } from './trail.ts';
import { AuditKeyQueries } from './audit-keys.ts';
import { GuardQueries } from './guard.ts';
import { WebAuthnQueries } from './webauthn.ts';
import { CredentialQueries } from './credentials.ts';
import { IdentityQueries } from './identity.ts';
import { ScreeningQueries } from './screening.ts';
import { AggregateQueries } from './aggregates.ts';
import { ListQueries } from './queue.ts';
import { CounterQueries } from './counters.ts';
import { AgentConfigQueries } from './agent-configs.ts';
import { ReplayQueries } from './replay.ts';
import { ForwardQueries } from './forwarding.ts';
import { SEALED_REQUEST_COLUMNS, SEALED_REVIEW_COLUMNS, Sealer } from './sealing.ts';
import { replaceSealedValue, sealCensus, selectResealBatch, type ResealTarget, type SealCensus, type SealedRow, type SealedTable } from './sealed-sql.ts';
import { insertRows, insertRowsReturning } from './insert-rows.ts';
import { deferred } from './pipeline.ts';
import { AuditIntegrator, type IntegratorOptions } from './integrator.ts';
import { currentBusyBudget, withBusyBudget } from './sqlite-busy.ts';
import type {
  AuditLogTable,
  Database,
  OperatorsTable,
  PoliciesTable,
  RequestFactColumn,
  RequestsTable,
  ReviewsTable,
} from './schema.ts';
import { decisionFactColumns, HistoryQueries, requestFactColumns, selfApprovedBy } from './history.ts';

/** A request as the engine writes it; the store adds the fact columns (migration 019_rollups). Rows read back carry them too. */
export type RequestRow = Omit<RequestsTable, RequestFactColumn> & Partial<Pick<RequestsTable, RequestFactColumn>>;
export type ReviewRow = ReviewsTable;
export type AuditRow = AuditLogTable;
export type PolicyRow = PoliciesTable;
export type OperatorRow = OperatorsTable;

export type NewAuditEntry = Omit<AuditLogTable, 'seq' | 'entry_id'>;

export interface RequestFilter {
  status?: string | undefined;
  riskLevel?: string | undefined;
  agentId?: string | undefined;
  action?: string | undefined;
  automationLevel?: AutomationLevel | undefined;
  limit: number;
  /** Keyset cursor: rows strictly after this (created_at, id) in the listing order. */
  after?: { createdAt: number; id: string } | undefined;
  order: 'newest' | 'oldest';
}

/** A stored row as the metrics reference reads it (http/metrics-summary.ts `summarize`). */
export type MetricFactRow = Pick<
  RequestRow,
  'id' | 'status' | 'risk_level' | 'automation_level' | 'route' | 'decision' | 'created_at' | 'decided_at'
> & { assessment: string | null };

export interface HistoryCounts {
  total: number;
  approved: number;
  rejected: number;
  succeeded: number;
  failed: number;
}

type Db = Kysely<Database> | Transaction<Database>;

const SEALED_IN: Record<'requests' | 'reviews', SealedTable> = {
  requests: { table: 'requests', key: 'id', columns: SEALED_REQUEST_COLUMNS },
  reviews: { table: 'reviews', key: 'id', columns: SEALED_REVIEW_COLUMNS },
};

export class Queries {
  constructor(
    protected readonly db: Db,
    readonly capabilities: Capabilities,
    /** Encryption at rest of agent-supplied columns (store/sealing.ts); plain without a key. */
    readonly sealer: Sealer = Sealer.none,
  ) {}

  // ---- credentials ----

  async countCredentials(): Promise<number> {
    const a = await this.db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const o = await this.db
      .selectFrom('operator_tokens')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(a.n) + Number(o.n);
  }

  /** Operator tokens ever issued, revoked ones included. */
  async countOperatorTokens(): Promise<number> {
    const o = await this.db.selectFrom('operator_tokens').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(o.n);
  }

  async findAgentByName(name: string) {
    return this.db.selectFrom('agents').selectAll().where('name', '=', name).executeTakeFirst();
  }

  async findAgentById(id: string) {
    return this.db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async insertAgent(row: Database['agents']): Promise<void> {
    await this.db.insertInto('agents').values(row).execute();
  }

  async insertApiKey(row: Database['api_keys']): Promise<void> {
    await this.db.insertInto('api_keys').values(row).execute();
  }

  async findOperatorByName(name: string): Promise<OperatorRow | undefined> {
    return this.db.selectFrom('operators').selectAll().where('name', '=', name).executeTakeFirst();
  }

  async listOperators(): Promise<OperatorRow[]> {
    return this.db.selectFrom('operators').selectAll().orderBy('created_at').execute();
  }

  async listAgents() {
    return this.db.selectFrom('agents').selectAll().orderBy('created_at').execute();
  }

  async insertOperator(row: OperatorRow): Promise<void> {
    await this.db.insertInto('operators').values(row).execute();
  }

  async insertOperatorToken(row: Database['operator_tokens']): Promise<void> {
    await this.db.insertInto('operator_tokens').values(row).execute();
  }

  // ---- policies ----

  async latestPolicy(): Promise<PolicyRow | undefined> {
    return this.db.selectFrom('policies').selectAll().orderBy('version', 'desc').limit(1).executeTakeFirst();
  }

  async insertPolicy(row: PolicyRow): Promise<void> {
    await this.db.insertInto('policies').values(row).execute();
  }

  // ---- requests ----

  /** `later`: sent with the transaction's next statement (store/pipeline.ts); a failure (a taken idempotency key) fails the transaction there. */
  async insertRequest(row: RequestRow, later = false): Promise<void> {
    await this.insertRequests([row], later);
  }

  /** Several requests in one statement (bench/scale.ts populates a history with it); each with its fact columns. */
  async insertRequests(rows: readonly RequestRow[], later = false): Promise<void> {
    if (rows.length === 0) return;
    await this.insertRows(
      'requests',
      rows.map((row) => ({ ...this.sealer.sealRequest(row), ...requestFactColumns(row), action_key: normalizeActionName(row.action) })),
      later,
    );
  }

  private insertRows<T extends 'requests' | 'audit_log'>(table: T, rows: ReadonlyArray<Database[T]>, later = false): Promise<void> {
    return insertRows(this.db, table, rows, later);
  }

  /** With `lock`, takes the row lock until the transaction ends (PostgreSQL); SQLite is already serial. */
  async getRequest(id: string, lock = false): Promise<RequestRow | undefined> {
    let query = this.db.selectFrom('requests').selectAll().where('id', '=', id);
    if (lock && this.capabilities.rowLocks) query = query.forUpdate();
    const row = await query.executeTakeFirst();
    return row && this.sealer.openRequest(row);
  }

  async findByIdempotencyKey(agentId: string, key: string): Promise<RequestRow | undefined> {
    const row = await this.db
      .selectFrom('requests')
      .selectAll()
      .where('agent_id', '=', agentId)
      .where('idempotency_key', '=', key)
      .executeTakeFirst();
    return row && this.sealer.openRequest(row);
  }

  async updateRequest(
    id: string,
    patch: Partial<Pick<RequestRow, 'status' | 'decision' | 'execution' | 'updated_at' | 'decided_at' | 'expires_at' | 'queue_due_at' | 'claim_nonce' | 'claim_expires_at'>>,
    expectedStatus: string,
  ): Promise<boolean> {
    // A new decision updates its fact columns in the same statement (migration 019_rollups).
    const facts = patch.decision === undefined ? null : decisionFactColumns(patch.decision);
    const result = await this.db
      .updateTable('requests')
      .set(this.sealer.sealRequest(patch))
      .$if(facts !== null, (q) => q.set({ ...facts!.columns, self_approved: selfApprovedBy(facts!.deciderOperatorIds) }))
      .where('id', '=', id)
      .where('status', '=', expectedStatus)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Claims an approval for execution (issue 12): one conditional UPDATE from `approved` to
   * `executing`, matching the nonce the approval was issued with and only before its expiry, so
   * of any number of racing claims, on any number of servers, exactly one changes the row. The
   * caller has already decided the claim (core `decideClaim`) under the row lock; this is the
   * compare-and-set that makes it hold without one. `nonce` null: an approval stored before
   * nonces (its column is null too). `deadline` (core `claimDeadline`: the earlier of the column
   * and the receipt's signed expiry) bounds it too, so a moved column does not extend it.
   */
  async claimApproval(id: string, nonce: string | null, at: number, deadline: number): Promise<boolean> {
    let query = this.db
      .updateTable('requests')
      .set({ status: 'executing', claimed_at: at, updated_at: at })
      .where('id', '=', id)
      .where('status', '=', 'approved')
      .where('claimed_at', 'is', null)
      .where((eb) => eb.or([eb('claim_expires_at', 'is', null), eb('claim_expires_at', '>', at)]))
      .where(sql<boolean>`cast(${deadline} as bigint) > cast(${at} as bigint)`);
    query = nonce === null ? query.where('claim_nonce', 'is', null) : query.where('claim_nonce', '=', nonce);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async listRequests(filter: RequestFilter): Promise<RequestRow[]> {
    const dir = filter.order === 'newest' ? 'desc' : 'asc';
    let query = this.db.selectFrom('requests').selectAll();
    if (filter.status) query = query.where('status', '=', filter.status);
    if (filter.riskLevel) query = query.where('risk_level', '=', filter.riskLevel);
    if (filter.agentId) query = query.where('agent_id', '=', filter.agentId);
    if (filter.action) query = query.where('action', '=', filter.action);
    if (filter.automationLevel) query = query.where('automation_level', '=', filter.automationLevel);
    if (filter.after) {
      const { createdAt, id } = filter.after;
      const op = dir === 'desc' ? '<' : '>';
      query = query.where((eb) =>
        eb.or([eb('created_at', op, createdAt), eb.and([eb('created_at', '=', createdAt), eb('id', op, id)])]),
      );
    }
    const rows = await query.orderBy('created_at', dir).orderBy('id', dir).limit(filter.limit).execute();
    return rows.map((r) => this.sealer.openRequest(r));
  }

  /** How many requests wait for a human, by risk level (the `/metrics` gauge). */
  async pendingCountsByRisk(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('requests')
      .select(['risk_level', (eb) => eb.fn.countAll<number>().as('n')])
      .where('status', '=', 'pending')
      .groupBy('risk_level')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.risk_level, Number(r.n)]));
  }

  /** Request ids with an audit entry of `type` among requests created in [from, to) (e.g. escalations). */
  async requestsWithAudit(type: string, from: number, to: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('audit_log')
      .innerJoin('requests', 'requests.id', 'audit_log.request_id')
      .select('requests.id')
      .distinct()
      .where('audit_log.type', '=', type)
      .where('requests.created_at', '>=', from)
      .where('requests.created_at', '<', to)
      .execute();
    return rows.map((r) => r.id);
  }

  /** Requests whose deadline has passed while still pending. */
  async duePending(now: number, limit: number): Promise<Array<Pick<RequestRow, 'id'>>> {
    return this.db
      .selectFrom('requests')
      .select('id')
      .where('status', '=', 'pending')
      .where('expires_at', '<=', now)
      .orderBy('expires_at')
      .limit(limit)
      .execute();
  }

  /**
   * Outcomes of this agent's most recent `window` requests for this action, in any spelling
   * (`wireTransfer` and `wire_transfer` are one action's history). Bounded, so the cost of a
   * create does not grow with the agent's lifetime history.
   */
  async historyCounts(agentId: string, action: string, window = 200): Promise<HistoryCounts> {
    const recent = this.db
      .selectFrom('requests')
      .select('status')
      .where('agent_id', '=', agentId)
      .where('action_key', '=', normalizeActionName(action))
      .orderBy('created_at', 'desc')
      .limit(window)
      .as('recent');
    const rows = await this.db
      .selectFrom(recent)
      .select(['recent.status', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('recent.status')
      .execute();
    const counts: HistoryCounts = { total: 0, approved: 0, rejected: 0, succeeded: 0, failed: 0 };
    for (const { status, n } of rows) {
      const count = Number(n);
      counts.total += count;
      // An approval that lapsed unclaimed was still approved by someone: the history counts it so.
      if (status === 'approved' || status === 'executing' || status === 'lapsed') counts.approved += count;
      if (status === 'executed') (counts.approved += count), (counts.succeeded += count);
      if (status === 'execution_failed') (counts.approved += count), (counts.failed += count);
      if (status === 'rejected' || status === 'expired') counts.rejected += count;
    }
    return counts;
  }

  // ---- reviews ----

  async insertReview(row: ReviewRow): Promise<void> {
    await this.db.insertInto('reviews').values(this.sealer.sealReview(row)).execute();
  }

  async reviewsFor(requestIds: readonly string[]): Promise<ReviewRow[]> {
    if (requestIds.length === 0) return [];
    const rows = await this.db
      .selectFrom('reviews')
      .selectAll()
      .where('request_id', 'in', requestIds)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map((r) => this.sealer.openReview(r));
  }

  // ---- re-encryption (keys/rotation.ts drives these) ----

  /** Requests or reviews after `after` (id order) holding values the target wants re-sealed, raw. */
  async resealBatch(table: 'requests' | 'reviews', after: string, limit: number, target: ResealTarget): Promise<SealedRow[]> {
    return selectResealBatch(this.db, SEALED_IN[table], after, limit, target);
  }

  /** Swaps one raw sealed value for its re-sealed form, unless it changed meanwhile (false). */
  async replaceSealed(table: 'requests' | 'reviews', id: string, column: string, before: string, after: string): Promise<boolean> {
    return replaceSealedValue(this.db, SEALED_IN[table], id, column, before, after);
  }

  async sealCensus(table: 'requests' | 'reviews', currentPrefix: string): Promise<SealCensus> {
    return sealCensus(this.db, SEALED_IN[table], currentPrefix);
  }

  // ---- audit ----

  /** True once this handle appended an entry: the store wakes the integrator after its commit. */
  auditWritten = false;

  /**
   * The one place audit entries are written: into `audit_pending`, in the caller's transaction,
   * with a database id and no tree position, so concurrent transactions never wait on each
   * other here. The integrator (store/integrator.ts) gives each its seq and leaf after commit;
   * a rolled-back transaction (or savepoint) takes its entries with it. Returns the ids.
   */
  async appendAudit(entries: readonly NewAuditEntry[]): Promise<number[]> {
    if (entries.length === 0) return [];
    this.auditWritten = true;
    const rows = await insertRowsReturning(this.db, 'audit_pending', entries as ReadonlyArray<Database['audit_pending']>, 'id');
    return rows.map((r) => Number(r['id'])).sort((a, b) => a - b);
  }

  /** `appendAudit` for a caller that needs no ids: sent with the transaction's next statement, `commit` included (store/pipeline.ts). */
  async appendAuditLater(entries: readonly NewAuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.auditWritten = true;
    await insertRows(this.db, 'audit_pending', entries as ReadonlyArray<Database['audit_pending']>, true);
  }

  /** The time (`at`) of the oldest entry still waiting for integration, if any: /healthz reads it. */
  async auditOldestPendingAt(): Promise<number | undefined> {
    const row = await this.db.selectFrom('audit_pending').select('at').orderBy('id').limit(1).executeTakeFirst();
    return row === undefined ? undefined : Number(row.at);
  }

  /** The integrated tree size (0 on an empty trail). */
  async auditHeadSeq(): Promise<number> {
    const row = await this.db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirst();
    return Number(row?.seq ?? 0);
  }

  /** The newest entry id written, integrated or not (0n when none), exactly: where a change watcher starts. */
  async auditLastEntryId(): Promise<bigint> {
    const pending = await this.db.selectFrom('audit_pending').select(sql<string | null>`cast(max(id) as text)`.as('n')).executeTakeFirst();
    const log = await this.db.selectFrom('audit_log').select(sql<string | null>`cast(max(entry_id) as text)`.as('n')).executeTakeFirst();
    const a = BigInt(pending?.n ?? 0);
    const b = BigInt(log?.n ?? 0);
    return a > b ? a : b;
  }

  /**
   * Which requests the entries with an id after `afterId` are about, integrated or not, by id
   * (both tables' id indexes). On SQLite ids are drawn by one writer at a time, so they are in
   * commit order and a watcher that remembers the last id misses nothing (engine/external-changes.ts).
   * Ids are exact (text, compared as bigint): a planted id at or above 2^53 must not make the
   * watcher skip the genuine ids after it.
   */
  async auditRequestsAfterEntry(afterId: bigint, limit: number): Promise<Array<{ id: bigint; request_id: string | null }>> {
    const after = String(afterId);
    const pending = await this.db
      .selectFrom('audit_pending')
      .select([sql<string>`cast(id as text)`.as('id'), 'request_id'])
      .where(sql<boolean>`id > cast(${after} as bigint)`)
      .orderBy('audit_pending.id')
      .limit(limit)
      .execute();
    const log = await this.db
      .selectFrom('audit_log')
      .select([sql<string>`cast(entry_id as text)`.as('id'), 'request_id'])
      .where(sql<boolean>`entry_id > cast(${after} as bigint)`)
      .orderBy('audit_log.entry_id')
      .limit(limit)
      .execute();
    return [...pending, ...log]
      .map((r) => ({ id: BigInt(r.id), request_id: r.request_id }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .slice(0, limit);
  }

  /** The integrated entry that had pending id `id`, if it is integrated yet. */
  async auditByEntryId(id: number): Promise<AuditRow | undefined> {
    // An id that is not exact (at or above 2^53: planted) names no entry reliably: none.
    if (!Number.isSafeInteger(id)) return undefined;
    // Two rows with one entry_id can only be planted: neither is trusted to be the caller's.
    const rows = await this.db.selectFrom('audit_log').selectAll().where('entry_id', '=', id).orderBy('seq').limit(2).execute();
    return rows.length === 1 ? rows[0] : undefined;
  }

  /**
   * Frees the idempotency key of an approval that lapsed unclaimed (core `approvalLapsed`), so a
   * new request may take it: a conditional UPDATE, so of racing creates one frees it.
   */
  async releaseLapsedKey(id: string, key: string, at: number): Promise<boolean> {
    const result = await this.db
      .updateTable('requests')
      .set({ idempotency_key: null })
      .where('id', '=', id)
      .where('idempotency_key', '=', key)
      .where('status', 'in', ['approved', 'lapsed'])
      .where('claimed_at', 'is', null)
      .where('claim_expires_at', 'is not', null)
      .where('claim_expires_at', '<=', at)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Approvals due to lapse (core `approvalDueToLapse`): approved, unclaimed, stored claim expiry
   * at or before `now`, earliest first, at most `limit` (index `requests_claim_lapse`). On
   * PostgreSQL the rows are locked and ones another server holds are skipped, so two sweeping
   * servers split the work; `lapseApproval` is what makes each change happen once.
   */
  async approvalsDueToLapse(now: number, limit: number): Promise<RequestRow[]> {
    let q = this.db
      .selectFrom('requests')
      .selectAll()
      .where('status', '=', 'approved')
      .where('claim_expires_at', 'is not', null)
      .where('claim_expires_at', '<=', now)
      .where('claimed_at', 'is', null)
      .orderBy('claim_expires_at')
      .limit(limit);
    if (this.capabilities.skipLocked) q = q.forUpdate().skipLocked();
    return (await q.execute()).map((r) => this.sealer.openRequest(r));
  }

  /** approved → lapsed, by the same predicate (a compare-and-set: a racing claim or sweep leaves one winner). */
  async lapseApproval(id: string, at: number): Promise<boolean> {
    const result = await this.db
      .updateTable('requests')
      .set({ status: 'lapsed', updated_at: at })
      .where('id', '=', id)
      .where('status', '=', 'approved')
      .where('claimed_at', 'is', null)
      .where('claim_expires_at', 'is not', null)
      .where('claim_expires_at', '<=', at)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Whether the trail holds an entry of `type` for the request (by both tables' request indexes).
   * One statement over both tables (UNION ALL), so one snapshot: an entry the integrator moves
   * from audit_pending to audit_log is in exactly one of them for it, never in neither (two
   * statements under READ COMMITTED could each miss it).
   */
  async auditHas(requestId: string, type: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('audit_log')
      .select(sql<number>`1`.as('found'))
      .where('request_id', '=', requestId)
      .where('type', '=', type)
      .unionAll(this.db.selectFrom('audit_pending').select(sql<number>`1`.as('found')).where('request_id', '=', requestId).where('type', '=', type))
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * A request's entries: the integrated ones by seq, then any not yet integrated, by id, with
   * seq 0 (inside a transaction, what it wrote itself is pending until the integrator runs).
   * One statement over both tables (UNION ALL, one snapshot), so an entry integrated during
   * the read is in the answer once, never lost between two reads.
   */
  async auditFor(requestId: string): Promise<AuditRow[]> {
    const rows = await this.db
      .selectFrom('audit_log')
      .select(['seq', 'entry_id', 'at', 'type', 'request_id', 'actor_type', 'actor_id', 'actor_name', 'data'])
      .where('request_id', '=', requestId)
      .unionAll(
        this.db
          .selectFrom('audit_pending')
          .select([sql<number>`0`.as('seq'), 'id as entry_id', 'at', 'type', 'request_id', 'actor_type', 'actor_id', 'actor_name', 'data'])
          .where('request_id', '=', requestId),
      )
      .execute();
    const all = rows.map((r) => ({ ...r, seq: Number(r.seq), at: Number(r.at), entry_id: r.entry_id === null ? null : Number(r.entry_id) }));
    const integrated = all.filter((r) => r.seq > 0).sort((x, y) => x.seq - y.seq);
    const pending = all.filter((r) => r.seq === 0).sort((x, y) => (x.entry_id ?? 0) - (y.entry_id ?? 0));
    return [...integrated, ...pending];
  }

  /** The trail in seq order; `actor` matches an actor's id or name; `from`/`to` bound `at` (ms, to exclusive). */
  async listAudit(filter: {
    afterSeq?: number | undefined;
    /** Newest first: only entries before this seq (with `newest`). */
    beforeSeq?: number | undefined;
    newest?: boolean | undefined;
    limit: number;
    type?: string | undefined;
    types?: readonly string[] | undefined;
    requestId?: string | undefined;
    actor?: string | undefined;
    /** Exactly this actor id (`actor` also matches a name). */
    actorId?: string | undefined;
    from?: number | undefined;
    to?: number | undefined;
  }): Promise<AuditRow[]> {
    let query = this.db.selectFrom('audit_log').selectAll();
    if (filter.afterSeq !== undefined) query = query.where('seq', '>', filter.afterSeq);
    if (filter.beforeSeq !== undefined) query = query.where('seq', '<', filter.beforeSeq);
    if (filter.type) query = query.where('type', '=', filter.type);
    if (filter.types && filter.types.length > 0) query = query.where('type', 'in', [...filter.types]);
    if (filter.requestId) query = query.where('request_id', '=', filter.requestId);
    if (filter.actor) {
      const actor = filter.actor;
      query = query.where((eb) => eb.or([eb('actor_id', '=', actor), eb('actor_name', '=', actor)]));
    }
    if (filter.actorId) query = query.where('actor_id', '=', filter.actorId);
    if (filter.from !== undefined) query = query.where('at', '>=', filter.from);
    if (filter.to !== undefined) query = query.where('at', '<', filter.to);
    return query.orderBy('seq', filter.newest ? 'desc' : 'asc').limit(filter.limit).execute();
  }

  /** Sent with the transaction's next statement, usually `commit` (store/pipeline.ts). */
  async notify(channel: string, payload: string): Promise<void> {
    if (!this.capabilities.listenNotify) return;
    await this.db.executeQuery(deferred(sql`select pg_notify(${channel}, ${payload})`.compile(this.db)));
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  /** Timers, escalation state, deliveries and nonces (store/timers.ts), on this handle (or transaction). */
  get timers(): TimerQueries {
    return new TimerQueries(this.db, this.capabilities);
  }

  /** The audit trail's Merkle tree and checkpoints (store/trail.ts), on this handle (or transaction). */
  get trail(): TrailQueries {
    return new TrailQueries(this.db, this.sealer);
  }

  /** The keys the trail was signed with, and the rotation lock (store/audit-keys.ts). */
  get auditKeys(): AuditKeyQueries {
    return new AuditKeyQueries(this.db, this.capabilities);
  }

  /** Listings of requests: the queue's urgent order, the history, their counts and "N more" (store/queue.ts). */
  get list(): ListQueries {
    return new ListQueries(this.db, this.sealer);
  }

  /** The metrics summary's and compliance reports' SQL aggregates (store/history.ts). */
  get history(): HistoryQueries {
    return new HistoryQueries(this.db, this.sealer);
  }

  /** Aggregate reviews' collections and members (store/aggregates.ts). */
  get aggregates(): AggregateQueries {
    return new AggregateQueries(this.db, this.capabilities);
  }

  /** Operators, tokens, agent keys, dashboard sessions and step-up attempts (store/credentials.ts). */
  get credentials(): CredentialQueries {
    return new CredentialQueries(this.db, this.capabilities);
  }

  /** Sign-ins in flight, linked provider subjects, SCIM users, groups and tokens (store/identity.ts). */
  get identity(): IdentityQueries {
    return new IdentityQueries(this.db, this.capabilities);
  }

  /** The gate's insert-only counters and the per-principal lock they are checked under (store/counters.ts). */
  get counters(): CounterQueries {
    return new CounterQueries(this.db, this.capabilities);
  }

  /** Per-agent configuration overlays and their versions (store/agent-configs.ts). */
  get agentConfigs(): AgentConfigQueries {
    return new AgentConfigQueries(this.db, this.capabilities);
  }

  /** TOTP enrolments, cool-downs, pauses and the approver/agent history the guard reads (store/guard.ts). */
  get guard(): GuardQueries {
    return new GuardQueries(this.db, this.sealer);
  }

  /** WebAuthn credentials and challenges (store/webauthn.ts). */
  get webauthn(): WebAuthnQueries {
    return new WebAuthnQueries(this.db);
  }

  /** Screening verdicts and the audit sample of auto-allowed requests (store/screening.ts). */
  get screening(): ScreeningQueries {
    return new ScreeningQueries(this.db);
  }

  /** SIEM forwarding's cursors and leases, and the trail read after a cursor (store/forwarding.ts). */
  get forwarding(): ForwardQueries {
    return new ForwardQueries(this.db);
  }

  /** Paged, read-only reads of stored requests and policy versions for a what-if replay (store/replay.ts). */
  get replay(): ReplayQueries {
    return new ReplayQueries(this.db, this.sealer);
  }
}

interface Job {
  fn: (tx: Queries) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  /** How long the caller would wait for SQLite's write lock (store/sqlite-busy.ts). */
  busyBudget: number;
}

/** Most transactions that share one group commit; bounds the latency one batch can add. */
const MAX_GROUP = 64;

/**
 * SQLite has one connection: a query on the store (not on the `tx` handle) from inside a
 * transaction's function waits for that transaction, which waits for the function — for ever.
 * Under the test runner the store refuses such a query at once, naming it, so the mistake fails a
 * test instead of hanging a server. (Off in production: there it could only turn a hang into an error.)
 */
const insideTransaction = new AsyncLocalStorage<true>();
const CHECK_REENTRY = reentryCheckFrom(processEnvironment());
const QUERY_ENTRY_POINTS = new Set(['selectFrom', 'insertInto', 'updateTable', 'deleteFrom', 'replaceInto', 'mergeInto', 'with', 'selectNoFrom', 'getExecutor', 'executeQuery', 'connection', 'transaction']);

function refuseReentry<T extends object>(db: T): T {
  return new Proxy(db, {
    get(target, prop) {
      if (typeof prop === 'string' && QUERY_ENTRY_POINTS.has(prop) && insideTransaction.getStore()) {
        throw new CountersignError('INTERNAL', `store.${prop} called inside a transaction on SQLite: use the transaction's handle (it would wait for itself)`);
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value; // Kysely's private fields need the real `this`
    },
  });
}

export class Store extends Queries {
  private readonly queue: Job[] = [];
  private draining = false;
  /** Folds committed entries into the tree (store/integrator.ts); woken after every commit that wrote one. */
  readonly integrator: AuditIntegrator;

  constructor(
    private readonly connection: Connection,
    sealer: Sealer = Sealer.none,
    integration: IntegratorOptions = {},
  ) {
    super(CHECK_REENTRY && connection.capabilities.groupCommit ? refuseReentry(connection.db) : connection.db, connection.capabilities, sealer);
    const postgres = connection.capabilities.dialect === 'postgres';
    const db = connection.db;
    this.integrator = new AuditIntegrator(
      {
        integrateBatch: (limit) =>
          postgres
            ? db.transaction().execute((trx) => new TrailQueries(trx, sealer).integrateBatch(limit, true))
            : this.transaction((tx) => tx.trail.integrateBatch(limit, false)),
        // Ids as exact text (a planted id may be at or above 2^53; see TrailQueries.integrateBatch).
        newestPending: async () => BigInt((await db.selectFrom('audit_pending').select(sql<string | null>`cast(max(id) as text)`.as('n')).executeTakeFirst())?.n ?? 0),
        pendingAtOrBelow: async (id) =>
          (await db.selectFrom('audit_pending').select('id').where(sql<boolean>`id <= cast(${String(id)} as bigint)`).limit(1).executeTakeFirst()) !== undefined,
      },
      integration,
    );
  }

  /**
   * The read side's barrier: integrates (or waits, up to `timeoutMs`, for the server holding the
   * lock to integrate) every entry committed before the call; false if some still is not. Never
   * call it inside a transaction.
   */
  settleAudit(timeoutMs?: number): Promise<boolean> {
    return this.integrator.settle(timeoutMs);
  }

  // Reads of the trail outside a transaction see what committed before them, integrated.
  override async listAudit(filter: Parameters<Queries['listAudit']>[0]): Promise<AuditRow[]> {
    await this.settleAudit();
    return super.listAudit(filter);
  }

  override async auditFor(requestId: string): Promise<AuditRow[]> {
    await this.settleAudit();
    return super.auditFor(requestId);
  }

  override async requestsWithAudit(type: string, from: number, to: number): Promise<string[]> {
    await this.settleAudit();
    return super.requestsWithAudit(type, from, to);
  }

  /**
   * Runs `fn` in a transaction. On SQLite, transactions that arrive while another is running are
   * grouped: each runs in its own SAVEPOINT (so a failure undoes only its own writes), and one
   * COMMIT (one fsync) makes the whole group durable. Every caller is answered only after that
   * commit, so "acknowledged" still means "on disk". PostgreSQL has real concurrent
   * transactions and uses them.
   */
  async transaction<T>(fn: (tx: Queries) => Promise<T>): Promise<T> {
    if (CHECK_REENTRY && insideTransaction.getStore()) {
      throw new CountersignError('INTERNAL', 'store.transaction called inside a transaction on SQLite: it would wait for itself');
    }
    if (!this.capabilities.groupCommit) {
      let tx: Queries | undefined;
      const value = await this.connection.db.transaction().execute((trx) => fn((tx = new Queries(trx, this.capabilities, this.sealer))));
      if (tx?.auditWritten) this.integrator.wake();
      return value;
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn: CHECK_REENTRY ? (tx) => insideTransaction.run(true, () => fn(tx)) : fn, resolve: resolve as (value: unknown) => void, reject, busyBudget: currentBusyBudget() });
      if (this.draining) return;
      this.draining = true;
      // Start on the next turn of the event loop, after the I/O callbacks of this one, so
      // requests that arrived together commit together.
      setImmediate(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_GROUP);
        let outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>;
        let wrote = false;
        try {
          // The group waits for the write lock as long as its most patient member would (a request's
          // job grouped with a background one keeps the request's budget: store/sqlite-busy.ts).
          const patience = Math.max(...batch.map((job) => job.busyBudget));
          outcomes = await withBusyBudget(patience, () => this.connection.db.connection().execute(async (conn) => {
            const tx = new Queries(conn, this.capabilities, this.sealer);
            const results: typeof outcomes = [];
            await sql`begin immediate`.execute(conn);
            try {
              for (const job of batch) {
                await sql`savepoint job`.execute(conn);
                try {
                  const value = await job.fn(tx);
                  await sql`release savepoint job`.execute(conn);
                  results.push({ ok: true, value });
                } catch (error) {
                  await sql`rollback to savepoint job`.execute(conn);
                  await sql`release savepoint job`.execute(conn);
                  results.push({ ok: false, error });
                }
              }
              await sql`commit`.execute(conn);
              wrote = tx.auditWritten;
            } catch (error) {
              await sql`rollback`.execute(conn).catch(() => {});
              throw error;
            }
            return results;
          }));
        } catch (error) {
          for (const job of batch) job.reject(error);
          continue;
        }
        if (wrote) this.integrator.wake();
        outcomes.forEach((outcome, i) => {
          const job = batch[i]!;
          if (outcome.ok) job.resolve(outcome.value);
          else job.reject(outcome.error);
        });
      }
    } finally {
      this.draining = false;
    }
  }

  /** `PRAGMA data_version` of a SQLite file (see Connection.dataVersion); undefined elsewhere. */
  get dataVersion(): (() => number) | undefined {
    return this.connection.dataVersion;
  }

  /** Cross-process notifications (PostgreSQL); `onReconnect` after a lost LISTEN connection is back (store/listener.ts). */
  listen(channel: string, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>> {
    if (!this.connection.listen) return Promise.resolve(async () => {});
    return this.connection.listen(channel, onMessage, onReconnect);
  }

  async close(): Promise<void> {
    await this.integrator.stop();
    await this.connection.destroy();
  }
}

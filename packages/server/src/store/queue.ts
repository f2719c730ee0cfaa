/**
 * The listing of requests, in SQL (issue 13: a flood-proof queue). One filter builder serves the
 * page, the counts and the "N more", so the numbers a reviewer sees and the rows they see come
 * from the same conditions.
 *
 * Orders (core `queue.ts` defines them):
 * - `urgent`: risk level (critical first), then `queue_due_at`, `created_at`, `id`. Risk levels
 *   are read one after the other, each as a range walk of `requests_queue` (status, risk_level,
 *   queue_due_at, created_at, id), so the order never needs a sort and a page after a flood of
 *   low-risk rows costs what the page holds.
 * - `newest` / `oldest`: `created_at`, `id` (the history), on `requests_status_created` /
 *   `requests_created`.
 *
 * Keyset positions are row values (`(a, b, c) > (?, ?, ?)`), which both SQLite and PostgreSQL
 * turn into an index range.
 */
import type { AutomationLevel } from '@countersign/core';
import { sql, type Kysely, type SelectQueryBuilder, type Transaction } from 'kysely';
import type { Database } from './schema.ts';
import type { RequestsTable } from './schema.ts';
import type { Sealer } from './sealing.ts';

/** `queue_due_at` of a request without a deadline: the largest time a JavaScript Date holds, so it sorts last in both dialects. */
export const NO_DEADLINE = 8_640_000_000_000_000;

export const URGENCY_LEVELS = ['critical', 'high', 'medium', 'low'] as const;

export interface ListFilter {
  status?: string | undefined;
  /** Only these risk levels; undefined for all. */
  riskLevels?: readonly string[] | undefined;
  agentId?: string | undefined;
  /** The action's normal form (`requests.action_key`). */
  actionKey?: string | undefined;
  automationLevel?: AutomationLevel | undefined;
  /** Not a SQL condition: binds a cursor to an `actionableBy` listing (engine/queue.ts). */
  actionableOnly?: boolean | undefined;
}

/** Where a page starts: strictly after this row, in the listing's order. */
export type ListPosition =
  | { order: 'urgent'; riskLevel: string; dueAt: number; createdAt: number; id: string }
  | { order: 'newest' | 'oldest'; createdAt: number; id: string };

export type ListOrderName = ListPosition['order'];

type Db = Kysely<Database> | Transaction<Database>;
type RequestQuery<O> = SelectQueryBuilder<Database, 'requests', O>;

export class ListQueries {
  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {}

  /** The filters, every one but the risk levels (counts are per level). */
  private where<O>(query: RequestQuery<O>, filter: ListFilter): RequestQuery<O> {
    let q = query;
    if (filter.status) q = q.where('status', '=', filter.status);
    if (filter.agentId) q = q.where('agent_id', '=', filter.agentId);
    if (filter.actionKey) q = q.where('action_key', '=', filter.actionKey);
    if (filter.automationLevel) q = q.where('automation_level', '=', filter.automationLevel);
    return q;
  }

  /** Risk levels in urgency order, as the filter allows them. */
  levels(filter: ListFilter): string[] {
    return URGENCY_LEVELS.filter((l) => filter.riskLevels === undefined || filter.riskLevels.includes(l));
  }

  /** One risk level's rows in urgency order, strictly after (dueAt, createdAt, id) when given. */
  urgentQuery(filter: ListFilter, riskLevel: string, after: { dueAt: number; createdAt: number; id: string } | undefined, limit: number) {
    let q = this.where(this.db.selectFrom('requests').selectAll(), filter).where('risk_level', '=', riskLevel);
    if (after) q = q.where(sql<boolean>`(queue_due_at, created_at, id) > (${after.dueAt}, ${after.createdAt}, ${after.id})`);
    return q.orderBy('queue_due_at').orderBy('created_at').orderBy('id').limit(limit);
  }

  /** Rows by creation time, strictly after (createdAt, id) in that direction when given. */
  timeQuery(filter: ListFilter, order: 'newest' | 'oldest', after: { createdAt: number; id: string } | undefined, limit: number) {
    let q = this.where(this.db.selectFrom('requests').selectAll(), filter);
    if (filter.riskLevels !== undefined) q = q.where('risk_level', 'in', [...filter.riskLevels]);
    if (after) {
      q = q.where(order === 'newest' ? sql<boolean>`(created_at, id) < (${after.createdAt}, ${after.id})` : sql<boolean>`(created_at, id) > (${after.createdAt}, ${after.id})`);
    }
    const dir = order === 'newest' ? 'desc' : 'asc';
    return q.orderBy('created_at', dir).orderBy('id', dir).limit(limit);
  }

  /** Up to `limit` rows after `after` (from the start when undefined), in `order`. */
  async page(filter: ListFilter, order: ListOrderName, after: ListPosition | undefined, limit: number): Promise<RequestsTable[]> {
    if (order !== 'urgent') {
      const position = after && after.order !== 'urgent' ? after : undefined;
      const rows = await this.timeQuery(filter, order, position, limit).execute();
      return rows.map((r) => this.sealer.openRequest(r));
    }
    const levels = this.levels(filter);
    const start = after && after.order === 'urgent' ? levels.indexOf(after.riskLevel) : 0;
    const out: RequestsTable[] = [];
    for (let i = Math.max(0, start); i < levels.length && out.length < limit; i++) {
      const level = levels[i]!;
      const position = after && after.order === 'urgent' && after.riskLevel === level ? after : undefined;
      const rows = await this.urgentQuery(filter, level, position, limit - out.length).execute();
      out.push(...rows.map((r) => this.sealer.openRequest(r)));
    }
    return out;
  }

  /** Rows matching every filter but the risk levels, counted per risk level. */
  countsQuery(filter: ListFilter) {
    return this.where(this.db.selectFrom('requests').select(['risk_level', (eb) => eb.fn.countAll<number>().as('n')]), filter).groupBy('risk_level');
  }

  /** Rows matching every filter (the risk levels included), counted per status and risk level. */
  async countsByStatusAndRisk(filter: ListFilter): Promise<Array<{ status: string; riskLevel: string; n: number }>> {
    let q = this.where(this.db.selectFrom('requests').select(['status', 'risk_level', (eb) => eb.fn.countAll<number>().as('n')]), filter);
    if (filter.riskLevels !== undefined) q = q.where('risk_level', 'in', [...filter.riskLevels]);
    const rows = await q.groupBy(['status', 'risk_level']).execute();
    return rows.map((r) => ({ status: r.status, riskLevel: r.risk_level, n: Number(r.n) }));
  }

  async countsByRisk(filter: ListFilter): Promise<Record<string, number>> {
    const rows = await this.countsQuery(filter).execute();
    return Object.fromEntries(rows.map((r) => [r.risk_level, Number(r.n)]));
  }

  /**
   * Rows matching the filter after `after` in its order: the "N more" below a page. For the
   * urgent order only the position's own risk level is counted here (the less urgent levels
   * come from `countsByRisk`).
   */
  countAfterQuery(filter: ListFilter, after: ListPosition) {
    let q = this.where(this.db.selectFrom('requests').select((eb) => eb.fn.countAll<number>().as('n')), filter);
    if (after.order === 'urgent') {
      q = q.where('risk_level', '=', after.riskLevel).where(sql<boolean>`(queue_due_at, created_at, id) > (${after.dueAt}, ${after.createdAt}, ${after.id})`);
    } else {
      if (filter.riskLevels !== undefined) q = q.where('risk_level', 'in', [...filter.riskLevels]);
      q = q.where(after.order === 'newest' ? sql<boolean>`(created_at, id) < (${after.createdAt}, ${after.id})` : sql<boolean>`(created_at, id) > (${after.createdAt}, ${after.id})`);
    }
    return q;
  }

  async countAfter(filter: ListFilter, after: ListPosition): Promise<number> {
    const row = await this.countAfterQuery(filter, after).executeTakeFirstOrThrow();
    return Number(row.n);
  }
}

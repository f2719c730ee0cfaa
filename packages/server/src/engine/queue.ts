/**
 * Listing requests (the queue and the history), the engine's reading role for `GET /v1/requests`
 * (issue 13, a flood-proof queue): checks and resolves the filters, reads one page in the asked
 * order through the store (store/queue.ts), and answers with the counts per risk level, the
 * total matching the filters and how many more follow the page — all from the same conditions.
 *
 * - Filters: `status`; `riskLevel` (one level or several, comma-separated); `agentId` (an agent's
 *   id or its name); `action` (any spelling: compared in core's normal form); `automationLevel`.
 *   A bad value is refused with VALIDATION_FAILED naming the field, before anything is read.
 * - Order: `urgent` (core `compareUrgency`; the default for `status=pending`), `newest` (the
 *   default otherwise) or `oldest`.
 * - Cursor: opaque; it names the order, a digest of the filters and the last row's position, so
 *   rows inserted meanwhile never shift the next page, and a cursor used with other filters or
 *   another order is refused rather than giving a page of something else.
 */
import { AUTOMATION_LEVELS, CountersignError, LIST_ORDERS, REQUEST_STATUSES, RISK_URGENCY, defaultListOrder, normalizeActionName, parseListFilter, queueDeadline, type EscalationState, type ListOrder } from '@countersign/core';
import { createHash } from 'node:crypto';
import type { Queries, RequestRow } from '../store/store.ts';
import { NO_DEADLINE, type ListFilter, type ListPosition } from '../store/queue.ts';

export interface ListOptions {
  status?: string | undefined;
  /** One risk level, or several comma-separated. */
  riskLevel?: string | undefined;
  /** An agent's id or name. */
  agentId?: string | undefined;
  action?: string | undefined;
  automationLevel?: string | undefined;
  order?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
  /** `me`: only the pending requests the reader may approve now (the gate's dry run, per row). */
  actionableBy?: string | undefined;
}

export interface ListCounts {
  /** Requests matching every filter (the risk levels included). */
  total: number;
  /** Requests matching every filter but the risk level, per level. */
  critical: number;
  high: number;
  medium: number;
  low: number;
}

export interface Listing {
  rows: RequestRow[];
  order: ListOrder;
  nextCursor: string | null;
  counts: ListCounts;
  /** How many matching requests follow this page ("N more"). */
  remaining: number;
}

/**
 * `requests.queue_due_at` for a pending request: the earlier of its current SLA deadline (the
 * escalation level's) and its expiry, `NO_DEADLINE` when it has neither. The engine writes it
 * when the request is created and whenever its escalation state is saved.
 */
export function queueDueAt(row: Pick<RequestRow, 'expires_at'>, escalation: Pick<EscalationState, 'dueAt'> | null): number {
  return queueDeadline(escalation?.dueAt ?? null, row.expires_at) ?? NO_DEADLINE;
}

export const MAX_PAGE = 500;
export const DEFAULT_PAGE = 50;

function refuse(field: string, message: string): never {
  throw new CountersignError('VALIDATION_FAILED', message, { field });
}

function oneOf<T extends string>(field: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) refuse(field, `${field} takes one of ${allowed.join(', ')}`);
  return value as T;
}

/** The filters as the store applies them; the agent is resolved from an id or a name. */
export async function listFilter(q: Queries, options: ListOptions): Promise<ListFilter> {
  const status = oneOf('status', options.status, REQUEST_STATUSES);
  const riskLevels = parseListFilter('riskLevel', options.riskLevel, RISK_URGENCY);
  const automationLevel = oneOf('automationLevel', options.automationLevel, AUTOMATION_LEVELS);
  let actionKey: string | undefined;
  if (options.action !== undefined) {
    const key = normalizeActionName(options.action.trim());
    if (key === '' || key.length > 128) refuse('action', 'action must name an action (1 to 128 characters)');
    actionKey = key;
  }
  let agentId: string | undefined;
  if (options.agentId !== undefined) {
    const text = options.agentId;
    if (text === '' || text.length > 200) refuse('agentId', 'agentId must be an agent id or name (1 to 200 characters)');
    const agent = (await q.findAgentById(text)) ?? (await q.findAgentByName(text));
    if (!agent) refuse('agentId', `no agent has the id or name ${JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text)}`);
    agentId = agent.id;
  }
  return { status, riskLevels: riskLevels && riskLevels.length < RISK_URGENCY.length ? riskLevels : undefined, agentId, actionKey, automationLevel };
}

/** What a cursor is bound to: the order and the filters, as a short digest. */
function digest(order: ListOrder, filter: ListFilter): string {
  const fields = [order, filter.status ?? null, filter.riskLevels ? [...filter.riskLevels].sort() : null, filter.agentId ?? null, filter.actionKey ?? null, filter.automationLevel ?? null];
  // Only when set, so every cursor issued before actionableBy existed keeps its digest.
  const canonical = JSON.stringify(filter.actionableOnly ? [...fields, 'actionable'] : fields);
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 12);
}

export function positionOf(order: ListOrder, row: RequestRow): ListPosition {
  return order === 'urgent'
    ? { order, riskLevel: row.risk_level, dueAt: row.queue_due_at, createdAt: row.created_at, id: row.id }
    : { order, createdAt: row.created_at, id: row.id };
}

export function encodeListCursor(order: ListOrder, filter: ListFilter, row: RequestRow): string {
  const p = positionOf(order, row);
  const fields = p.order === 'urgent' ? [p.riskLevel, p.dueAt, p.createdAt, p.id] : [p.createdAt, p.id];
  return Buffer.from(['c1', order, digest(order, filter), ...fields].join('|')).toString('base64url');
}

const ID_CHARS = /^[A-Za-z0-9_]{1,64}$/;
const isTime = (text: string | undefined): boolean => text !== undefined && /^\d{1,16}$/.test(text) && Number.isSafeInteger(Number(text));

/** The position a cursor names, for this order and these filters; anything else is refused. */
export function decodeListCursor(cursor: string, order: ListOrder, filter: ListFilter): ListPosition {
  const bad = (why: string): never => refuse('cursor', `cursor ${why}`);
  if (cursor.length === 0 || cursor.length > 200) bad('is not one this server issued');
  const parts = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (parts[0] !== 'c1' || !(LIST_ORDERS as readonly string[]).includes(parts[1] ?? '')) bad('is not one this server issued');
  if (parts[1] !== order) bad(`was issued for order=${parts[1]}, not ${order}`);
  if (parts[2] !== digest(order, filter)) bad('was issued for other filters: keep the filters of the first page, or start again without a cursor');
  if (order === 'urgent') {
    const [, , , riskLevel, dueAt, createdAt, id] = parts;
    if (parts.length !== 7 || !(RISK_URGENCY as readonly string[]).includes(riskLevel ?? '') || !isTime(dueAt) || !isTime(createdAt) || !ID_CHARS.test(id ?? '')) {
      bad('is not one this server issued');
    }
    return { order, riskLevel: riskLevel!, dueAt: Number(dueAt), createdAt: Number(createdAt), id: id! };
  }
  const [, , , createdAt, id] = parts;
  if (parts.length !== 5 || !isTime(createdAt) || !ID_CHARS.test(id ?? '')) bad('is not one this server issued');
  return { order, createdAt: Number(createdAt), id: id! };
}

/** The counts per risk level of the rows matching every filter but the risk level, and their total over the levels asked for. */
async function countsOf(q: Queries, filter: ListFilter): Promise<ListCounts> {
  const byRisk = await q.list.countsByRisk(filter);
  return {
    total: q.list.levels(filter).reduce((sum, l) => sum + (byRisk[l] ?? 0), 0),
    critical: byRisk.critical ?? 0,
    high: byRisk.high ?? 0,
    medium: byRisk.medium ?? 0,
    low: byRisk.low ?? 0,
  };
}

/** How many matching rows follow `last` in `order` ("N more"). */
async function remainingAfter(q: Queries, filter: ListFilter, order: ListOrder, counts: ListCounts, last: RequestRow): Promise<number> {
  const position = positionOf(order, last);
  let remaining = await q.list.countAfter(filter, position);
  if (position.order === 'urgent') {
    const levels = q.list.levels(filter);
    for (const l of levels.slice(levels.indexOf(position.riskLevel) + 1)) remaining += counts[l as keyof ListCounts] ?? 0;
  }
  return remaining;
}

function pageSize(limit: number | undefined): number {
  return Math.min(Math.max(Math.trunc(limit ?? DEFAULT_PAGE), 1), MAX_PAGE);
}

/** One page of requests with its counts: the whole of `GET /v1/requests` but the per-viewer view of each row. */
export async function readListing(q: Queries, options: ListOptions): Promise<Listing> {
  const filter = await listFilter(q, options);
  const order = oneOf('order', options.order, LIST_ORDERS) ?? defaultListOrder(filter.status);
  const limit = pageSize(options.limit);
  const after = options.cursor !== undefined ? decodeListCursor(options.cursor, order, filter) : undefined;
  const [rows, counts] = await Promise.all([q.list.page(filter, order, after, limit + 1), countsOf(q, filter)]);
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  const more = rows.length > limit && last !== undefined;
  return { rows: page, order, nextCursor: more ? encodeListCursor(order, filter, last) : null, counts, remaining: more ? await remainingAfter(q, filter, order, counts, last) : 0 };
}

/** How many pending rows one `actionableBy=me` page examines at most before it answers (with a cursor to go on). */
export const ACTIONABLE_SCAN = 2000;
const SCAN_CHUNK = 100;

/**
 * `GET /v1/requests?actionableBy=me` (issue 18, operator views): the pending requests the reader
 * may approve now, in the asked order. Whether a reader may act is the gate's dry run, judged
 * per row (`keep`), so it cannot be a SQL condition: the listing is walked in chunks until the
 * page is full or `ACTIONABLE_SCAN` rows were examined; then `nextCursor` goes on from the last
 * row examined, and a page may hold fewer than `limit` items (even none) while `nextCursor` is
 * not null. `counts` and `remaining` count every pending request matching the other filters,
 * those the reader cannot act on included.
 */
export async function readActionableListing(q: Queries, options: ListOptions, keep: (rows: readonly RequestRow[]) => Promise<boolean[]>, budget = ACTIONABLE_SCAN): Promise<Listing> {
  if (options.status !== undefined && options.status !== 'pending') refuse('status', 'actionableBy lists pending requests: leave status out, or set it to pending');
  const filter: ListFilter = { ...(await listFilter(q, { ...options, status: 'pending' })), actionableOnly: true };
  const order = oneOf('order', options.order, LIST_ORDERS) ?? defaultListOrder(filter.status);
  const limit = pageSize(options.limit);
  let after = options.cursor !== undefined ? decodeListCursor(options.cursor, order, filter) : undefined;
  const counts = await countsOf(q, filter);
  const kept: RequestRow[] = [];
  let lastExamined: RequestRow | undefined;
  let exhausted = false;
  for (let examined = 0; kept.length < limit && examined < budget; ) {
    const want = Math.min(SCAN_CHUNK, budget - examined);
    const chunk = await q.list.page(filter, order, after, want);
    if (chunk.length < want) exhausted = true; // a short chunk is the listing's end
    if (chunk.length === 0) break;
    const verdicts = await keep(chunk);
    for (let i = 0; i < chunk.length; i++) {
      lastExamined = chunk[i];
      if (verdicts[i]) kept.push(chunk[i]!);
      if (kept.length === limit) {
        if (i < chunk.length - 1) exhausted = false; // rows of this chunk follow the page
        break;
      }
    }
    if (exhausted) break;
    examined += chunk.length;
    after = positionOf(order, lastExamined!);
  }
  // Go on from the last row examined (the page's last item when it filled up), unless nothing follows it.
  const remaining = !exhausted && lastExamined !== undefined ? await remainingAfter(q, filter, order, counts, lastExamined) : 0;
  return { rows: kept, order, nextCursor: remaining > 0 ? encodeListCursor(order, filter, lastExamined!) : null, counts, remaining };
}

export interface RequestCountsByStatus {
  total: number;
  byStatus: Record<(typeof REQUEST_STATUSES)[number], number>;
  byRisk: Record<(typeof RISK_URGENCY)[number], number>;
  /** status → risk level → count; only the pairs that occur. */
  byStatusAndRisk: Record<string, Record<string, number>>;
}

/**
 * `GET /v1/requests/count` (issue 18, operator views): the requests matching the listing's
 * filters, counted by status and by risk level in one grouped read. Every status and level is
 * present in `byStatus` and `byRisk` (0 when none).
 */
export async function readCounts(q: Queries, options: Pick<ListOptions, 'status' | 'riskLevel' | 'agentId' | 'action' | 'automationLevel'>): Promise<RequestCountsByStatus> {
  const filter = await listFilter(q, options);
  const rows = await q.list.countsByStatusAndRisk(filter);
  const byStatus = Object.fromEntries(REQUEST_STATUSES.map((s) => [s, 0])) as RequestCountsByStatus['byStatus'];
  const byRisk = Object.fromEntries(RISK_URGENCY.map((l) => [l, 0])) as RequestCountsByStatus['byRisk'];
  const byStatusAndRisk: Record<string, Record<string, number>> = {};
  let total = 0;
  for (const r of rows) {
    total += r.n;
    const status = r.status as keyof RequestCountsByStatus['byStatus'];
    const level = r.riskLevel as keyof RequestCountsByStatus['byRisk'];
    byStatus[status] = (byStatus[status] ?? 0) + r.n;
    byRisk[level] = (byRisk[level] ?? 0) + r.n;
    (byStatusAndRisk[r.status] ??= {})[r.riskLevel] = r.n;
  }
  return { total, byStatus, byRisk, byStatusAndRisk };
}

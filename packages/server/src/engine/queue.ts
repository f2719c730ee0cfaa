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
  const canonical = JSON.stringify([order, filter.status ?? null, filter.riskLevels ? [...filter.riskLevels].sort() : null, filter.agentId ?? null, filter.actionKey ?? null, filter.automationLevel ?? null]);
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

/** One page of requests with its counts: the whole of `GET /v1/requests` but the per-viewer view of each row. */
export async function readListing(q: Queries, options: ListOptions): Promise<Listing> {
  const filter = await listFilter(q, options);
  const order = oneOf('order', options.order, LIST_ORDERS) ?? defaultListOrder(filter.status);
  const limit = Math.min(Math.max(Math.trunc(options.limit ?? DEFAULT_PAGE), 1), MAX_PAGE);
  const after = options.cursor !== undefined ? decodeListCursor(options.cursor, order, filter) : undefined;
  const list = q.list;
  const [rows, byRisk] = await Promise.all([list.page(filter, order, after, limit + 1), list.countsByRisk(filter)]);
  const page = rows.slice(0, limit);
  const levels = list.levels(filter);
  const counts: ListCounts = {
    total: levels.reduce((sum, l) => sum + (byRisk[l] ?? 0), 0),
    critical: byRisk.critical ?? 0,
    high: byRisk.high ?? 0,
    medium: byRisk.medium ?? 0,
    low: byRisk.low ?? 0,
  };
  const last = page[page.length - 1];
  let remaining = 0;
  if (rows.length > limit && last) {
    const position = positionOf(order, last);
    remaining = await list.countAfter(filter, position);
    if (position.order === 'urgent') {
      for (const l of levels.slice(levels.indexOf(position.riskLevel) + 1)) remaining += byRisk[l] ?? 0;
    }
  }
  return { rows: page, order, nextCursor: rows.length > limit && last ? encodeListCursor(order, filter, last) : null, counts, remaining };
}

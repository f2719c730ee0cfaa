/** Queue order, filters and counts: pure, so they are tested without a browser. */
import type { ApprovalRequest, RiskLevel } from '@countersign/core';

export const RISK_ORDER: readonly RiskLevel[] = ['critical', 'high', 'medium', 'low'];
const RANK: Record<RiskLevel, number> = { critical: 3, high: 2, medium: 1, low: 0 };

/** The escalation state the scheduler attaches to pending requests, when it does. */
export interface EscalationInfo {
  level: number;
  levels?: number;
  role?: string | null;
  dueAt?: string | null;
  /** The current level's named operators and groups (policy text), and whether it is the final authority now. */
  operators?: string[];
  groups?: string[];
  finalAuthority?: boolean;
}

export function escalationOf(r: ApprovalRequest): EscalationInfo | null {
  const e = (r as { escalation?: unknown }).escalation;
  if (typeof e !== 'object' || e === null || typeof (e as { level?: unknown }).level !== 'number') return null;
  return e as EscalationInfo;
}

/** When the current SLA (or escalation level) runs out, epoch ms, or null when none. */
export function dueAt(r: ApprovalRequest): number | null {
  const iso = escalationOf(r)?.dueAt ?? r.assessment.slaDueAt;
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

/** The server's queue order (core `compareUrgency`): risk level, then the deadline (SLA or expiry, none last), then oldest, then id. */
export function byUrgency(a: ApprovalRequest, b: ApprovalRequest): number {
  const risk = RANK[b.assessment.riskLevel] - RANK[a.assessment.riskLevel];
  if (risk !== 0) return risk;
  const da = deadlineOf(a) ?? Infinity;
  const db = deadlineOf(b) ?? Infinity;
  if (da !== db) return da < db ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The deadline the server sorts by: the earlier of the SLA deadline (`dueAt`) and the agent's expiry. */
export function deadlineOf(r: ApprovalRequest): number | null {
  const times = [dueAt(r), r.expiresAt ? Date.parse(r.expiresAt) : Number.NaN].filter((v): v is number => v !== null && Number.isFinite(v));
  return times.length === 0 ? null : Math.min(...times);
}

/** What the queue asks the server for: every filter is applied there, so the counts and the rows agree. */
export interface QueueQuery {
  risks: ReadonlySet<RiskLevel>;
  /** An agent's id or name ('' for any). */
  agent: string;
  /** Any spelling of an action ('' for any). */
  action: string;
  /** Only what I may approve now (`actionableBy=me`: the server's dry run of my vote, per request). */
  mine: boolean;
}

export const NO_FILTER: QueueQuery = { risks: new Set(), agent: '', action: '', mine: false };

export function isFiltered(q: QueueQuery): boolean {
  return q.risks.size > 0 || q.agent.trim() !== '' || q.action.trim() !== '' || q.mine;
}

/** The query string parameters of `GET /v1/requests` for the queue. */
export function queueParams(q: QueueQuery, limit: number, cursor?: string): Record<string, string | number | undefined> {
  return {
    // actionableBy lists pending requests only (and refuses another status).
    ...(q.mine ? { actionableBy: 'me' } : { status: 'pending' }),
    riskLevel: q.risks.size > 0 ? RISK_ORDER.filter((l) => q.risks.has(l)).join(',') : undefined,
    agentId: q.agent.trim() || undefined,
    action: q.action.trim() || undefined,
    limit,
    cursor,
  };
}

export interface QueueCounts {
  /** Pending requests matching every filter. */
  total: number;
  critical: number;
  high: number;
  medium: number;
  low: number;
}

export const NO_COUNTS: QueueCounts = { total: 0, critical: 0, high: 0, medium: 0, low: 0 };

/**
 * Applies one change from the live stream to the loaded rows: keep the newest state of each
 * request (by `updatedAt`, so a late page load never overwrites a newer event), and only pending
 * ones. A request not loaded is left to the next read of the page (the server decides whether
 * and where it belongs); the feed carries no `actionable`, so a row keeps the one it had.
 */
export function applyChange(queue: ReadonlyMap<string, ApprovalRequest>, incoming: ApprovalRequest, seen: Map<string, string>): Map<string, ApprovalRequest> {
  const last = seen.get(incoming.id);
  if (last !== undefined && last > incoming.updatedAt) return queue as Map<string, ApprovalRequest>;
  seen.set(incoming.id, incoming.updatedAt);
  const current = queue.get(incoming.id);
  if (current === undefined) return queue as Map<string, ApprovalRequest>;
  const next = new Map(queue);
  if (incoming.status === 'pending') next.set(incoming.id, incoming.actionable === undefined && current.actionable !== undefined ? { ...incoming, actionable: current.actionable } : incoming);
  else next.delete(incoming.id);
  return next;
}

/** High and critical approvals always need a confirmation step, whatever the input device. */
export function needsConfirmation(r: ApprovalRequest): boolean {
  return r.assessment.riskLevel === 'high' || r.assessment.riskLevel === 'critical';
}

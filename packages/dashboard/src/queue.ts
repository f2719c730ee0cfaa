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

/**
 * Most urgent first: the least SLA time left (overdue first, no SLA last), then higher risk,
 * then higher score, then older.
 */
export function byUrgency(a: ApprovalRequest, b: ApprovalRequest): number {
  const da = dueAt(a) ?? Infinity;
  const db = dueAt(b) ?? Infinity;
  if (da !== db) return da < db ? -1 : 1;
  const risk = RANK[b.assessment.riskLevel] - RANK[a.assessment.riskLevel];
  if (risk !== 0) return risk;
  if (a.assessment.riskScore !== b.assessment.riskScore) return b.assessment.riskScore - a.assessment.riskScore;
  return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0;
}

export interface QueueFilter {
  risks: ReadonlySet<RiskLevel>;
  agent: string;
  action: string;
  /** '' for any; otherwise the escalation level as a string. */
  escalation: string;
}

export const NO_FILTER: QueueFilter = { risks: new Set(), agent: '', action: '', escalation: '' };

export function matches(r: ApprovalRequest, f: QueueFilter): boolean {
  if (f.risks.size > 0 && !f.risks.has(r.assessment.riskLevel)) return false;
  if (f.agent && r.agentName !== f.agent) return false;
  if (f.action && r.action !== f.action) return false;
  if (f.escalation && String(escalationOf(r)?.level ?? 0) !== f.escalation) return false;
  return true;
}

export function countByRisk(requests: Iterable<ApprovalRequest>): Record<RiskLevel, number> {
  const counts: Record<RiskLevel, number> = { critical: 0, high: 0, medium: 0, low: 0 };
  for (const r of requests) counts[r.assessment.riskLevel]++;
  return counts;
}

/**
 * Applies one change from the live stream: keep the newest state of each request (by
 * `updatedAt`, so a late page load never overwrites a newer event), and only pending ones.
 */
export function applyChange(queue: ReadonlyMap<string, ApprovalRequest>, incoming: ApprovalRequest, seen: Map<string, string>): Map<string, ApprovalRequest> {
  const last = seen.get(incoming.id);
  if (last !== undefined && last > incoming.updatedAt) return queue as Map<string, ApprovalRequest>;
  seen.set(incoming.id, incoming.updatedAt);
  const next = new Map(queue);
  if (incoming.status === 'pending') next.set(incoming.id, incoming);
  else next.delete(incoming.id);
  return next;
}

/** High and critical approvals always need a confirmation step, whatever the input device. */
export function needsConfirmation(r: ApprovalRequest): boolean {
  return r.assessment.riskLevel === 'high' || r.assessment.riskLevel === 'critical';
}

/**
 * Compliance reports and operator metrics: the period's totals come from the store's SQL
 * aggregates (store/history.ts) and core builds the report (`ComplianceAccumulator.fromTotals`). Who may read them: auditors and senior
 * roles for reports; an operator's own metrics for themselves, everyone's for those roles.
 */
import {
  GUARD_EVENT_TYPES,
  ComplianceAccumulator,
  CountersignError,
  parseDuration,
  type Assessment,
  type ComplianceReport,
  type Regulation,
  type Role,
} from '@countersign/core';
import type { Principal } from '../engine/principal.ts';
import type { Store } from '../store/store.ts';
import { findOperatorRef } from '../engine/refs.ts';

/** Roles that may read reports and everyone's metrics. */
export const REPORT_ROLES: readonly Role[] = ['auditor', 'admin', 'manager', 'director'];

/**
 * Whether `by` may see another operator's numbers (votes, approvals, response times): only the
 * report roles; everyone else sees their own only. The one rule for `GET /v1/metrics/operators/:id`
 * and the per-operator rows of `GET /v1/metrics/summary` (issue 13, point 7: the summary gave any
 * operator what the per-operator route refused them).
 */
export function seesOperatorMetrics(by: Principal, operatorId: string | undefined): boolean {
  if (by.kind !== 'operator') return false;
  return operatorId === by.operatorId || by.roles.some((r) => REPORT_ROLES.includes(r));
}
const PAGE = 2000;
/** Decided requests with a violation read for the report's list (core lists at most 500 items). */
const MAX_VIOLATION_ITEMS = 500;
/** A report covers at most this long a period. */
const MAX_PERIOD_MS = 3 * 366 * 86_400_000;

function requireReader(by: Principal): void {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'reports need an operator token');
  if (!by.roles.some((r) => REPORT_ROLES.includes(r))) {
    throw new CountersignError('FORBIDDEN', `reports need one of the roles ${REPORT_ROLES.join(', ')}`);
  }
}

/** ISO 8601 (a date, or a date and time) or epoch milliseconds. */
export function parseTime(text: string, field: string): number {
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(ms)) {
    throw new CountersignError('VALIDATION_FAILED', `${field} must be an ISO 8601 time (2026-01-31 or 2026-01-31T09:00:00Z) or epoch milliseconds`, { field });
  }
  return ms;
}

export async function complianceReport(
  store: Store,
  by: Principal,
  input: { regulation: Regulation; from: string; to?: string | undefined },
  now: number,
  integrity: { treeSize: number; rootHash: string | null; checkpointAt: string | null; keyId: string | null },
): Promise<ComplianceReport> {
  requireReader(by);
  const from = parseTime(input.from, 'from');
  const to = input.to === undefined ? now : parseTime(input.to, 'to');
  if (to <= from) throw new CountersignError('VALIDATION_FAILED', 'to must be after from', { field: 'to' });
  if (to - from > MAX_PERIOD_MS) throw new CountersignError('VALIDATION_FAILED', 'a report covers at most three years', { field: 'from' });
  // Counts, review times and the first violations from SQL (store/history.ts), by core's definitions.
  const totals = await store.history.compliance(from, to, MAX_VIOLATION_ITEMS);
  const acc = ComplianceAccumulator.fromTotals(totals.counts, totals.review, totals.violating);
  // The guard's refusals of the period, by code; self-approval attempts (SELF_REVIEW) are also violations.
  const actions = new Map<string, string>();
  for (let afterSeq = 0; ; ) {
    const refused = await store.listAudit({ type: 'create_refused', from, to, afterSeq, limit: PAGE });
    for (const entry of refused) acc.addGuardRefusal(String((JSON.parse(entry.data) as { code?: unknown }).code));
    const last = refused[refused.length - 1];
    if (refused.length < PAGE || !last) break;
    afterSeq = Number(last.seq);
  }
  for (let afterSeq = 0; ; ) {
    const refused = await store.listAudit({ type: 'review_refused', from, to, afterSeq, limit: PAGE });
    for (const entry of refused) {
      const data = JSON.parse(entry.data) as { code?: string };
      acc.addGuardRefusal(String(data.code));
      if (data.code !== 'SELF_REVIEW' || entry.request_id === null) continue;
      let action = actions.get(entry.request_id);
      if (action === undefined) {
        action = (await store.getRequest(entry.request_id))?.action ?? '';
        actions.set(entry.request_id, action);
      }
      acc.addSelfReviewAttempt({ requestId: entry.request_id, action, operator: entry.actor_name, at: new Date(Number(entry.at)).toISOString() });
    }
    const last = refused[refused.length - 1];
    if (refused.length < PAGE || !last) break;
    afterSeq = Number(last.seq);
  }
  acc.addGuardEvents(await store.trail.countAuditByType(GUARD_EVENT_TYPES, from, to));
  const escalations = await store.trail.countAuditOfRequests('escalated', from, to);
  return acc.report({
    regulation: input.regulation,
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    generatedAt: new Date(now).toISOString(),
    escalations,
    integrity,
  });
}

export interface OperatorMetrics {
  operator: { id: string; name: string };
  period: string;
  from: string;
  to: string;
  /** Votes cast in the period. */
  decisionsReviewed: number;
  approvals: number;
  rejections: number;
  /** approvals / votes. */
  approvalRate: number | null;
  /** Votes that changed the args or chose an alternative. */
  overrides: number;
  /** Mean time from the request's creation to this operator's vote. */
  averageReviewSeconds: number | null;
  /** Of votes on requests with an SLA, the share cast within it. */
  slaCompliance: number | null;
}

/** `ref`: an operator's id, name, or `me` (the caller). Anyone may read their own; others need a report role. */
export async function operatorMetrics(store: Store, by: Principal, ref: string, period: string, now: number): Promise<OperatorMetrics> {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'operator metrics need an operator token');
  const operator = await findOperatorRef(store, by, ref);
  // Without a report role, every other name is refused alike, so the answer says nothing about who exists.
  if (!seesOperatorMetrics(by, operator?.id)) {
    throw new CountersignError('FORBIDDEN', `another operator's metrics need one of the roles ${REPORT_ROLES.join(', ')}`);
  }
  if (!operator) throw new CountersignError('NOT_FOUND', `no operator ${ref}`);
  const span = parseDuration(period);
  if (span === undefined || span > 366 * 86_400_000) {
    throw new CountersignError('VALIDATION_FAILED', 'period is a duration up to 366d, like 24h, 7d or 30m', { field: 'period' });
  }
  const from = now - span;
  const votes = await store.trail.operatorVotes(operator.id, from, now + 1);
  let approvals = 0;
  let overrides = 0;
  let totalMs = 0;
  let withSla = 0;
  let withinSla = 0;
  for (const v of votes) {
    if (v.verdict === 'approve') approvals++;
    if (v.args !== null || v.alternative !== null) overrides++;
    const took = Number(v.created_at) - Number(v.request_created_at);
    totalMs += took;
    const sla = (JSON.parse(v.assessment) as Pick<Assessment, 'slaSeconds'>).slaSeconds;
    if (sla !== null && sla !== undefined) {
      withSla++;
      if (took <= sla * 1000) withinSla++;
    }
  }
  const n = votes.length;
  const ratio = (a: number, b: number) => (b > 0 ? Number((a / b).toFixed(3)) : null);
  return {
    operator: { id: operator.id, name: operator.name },
    period,
    from: new Date(from).toISOString(),
    to: new Date(now).toISOString(),
    decisionsReviewed: n,
    approvals,
    rejections: n - approvals,
    approvalRate: ratio(approvals, n),
    overrides,
    averageReviewSeconds: n > 0 ? Number((totalMs / n / 1000).toFixed(1)) : null,
    slaCompliance: ratio(withinSla, withSla),
  };
}

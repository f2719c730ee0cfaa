/**
 * `GET /v1/me/dashboard` (issue 18, operator views): what an operator sees first, in one read —
 * the requests they may approve now (the gate's dry run, as `GET /v1/requests?actionableBy=me`),
 * their own review metrics, and their own recent actions from the audit trail.
 *
 * Recent actions are the operator's own audit entries (everything committed before the read:
 * `Store.listAudit` waits for the integrator), as type, time and request id only: the entries'
 * data can hold other people's names and agent text, which the trail's own routes redact by role.
 */
import { operatorMetrics, type OperatorMetrics } from '../audit/reports.ts';
import type { Store } from '../store/store.ts';
import type { Principal } from './principal.ts';
import type { ApprovalRequest } from '@countersign/core';
import type { ListCounts } from './queue.ts';

type Operator = Extract<Principal, { kind: 'operator' }>;

export interface MyDashboard {
  operator: { id: string; name: string; roles: string[] };
  pending: { items: ApprovalRequest[]; counts: ListCounts; remaining: number; nextCursor: string | null };
  metrics: OperatorMetrics;
  recent: Array<{ seq: number; at: string; type: string; requestId: string | null }>;
}

export interface MyDashboardOptions {
  /** The metrics period (a duration, default 7d). */
  period?: string | undefined;
  /** How many actionable requests (default 10) and recent actions (default 20). */
  pendingLimit?: number;
  recentLimit?: number;
}

export async function myDashboard(
  deps: {
    store: Store;
    now: () => number;
    actionable: (by: Operator, limit: number) => Promise<{ items: ApprovalRequest[]; counts: ListCounts; remaining: number; nextCursor: string | null }>;
  },
  by: Operator,
  options: MyDashboardOptions = {},
): Promise<MyDashboard> {
  const at = deps.now();
  // The metrics check the period first: a bad one is refused before anything else is read.
  const metrics = await operatorMetrics(deps.store, by, 'me', options.period ?? '7d', at);
  const [pending, entries] = await Promise.all([
    deps.actionable(by, options.pendingLimit ?? 10),
    deps.store.listAudit({ actorId: by.operatorId, newest: true, limit: options.recentLimit ?? 20 }),
  ]);
  return {
    operator: { id: by.operatorId, name: by.name, roles: [...by.roles] },
    pending: { items: pending.items, counts: pending.counts, remaining: pending.remaining, nextCursor: pending.nextCursor },
    metrics,
    recent: entries.map((e) => ({ seq: Number(e.seq), at: new Date(Number(e.at)).toISOString(), type: e.type, requestId: e.request_id })),
  };
}

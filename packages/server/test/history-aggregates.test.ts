/**
 * Issue 19: the metrics summary and compliance reports are SQL aggregates (store/history.ts)
 * over fact columns the store derives (migration 019_rollups). On random histories, inserted
 * and decided through the store on both dialects, they equal core's reference definitions
 * computed in memory from the stored JSON (core metrics-summary.ts `summarizeMetrics`, via the
 * server's `summarize`; core `ComplianceAccumulator.add`).
 */
import fc from 'fast-check';
import { ComplianceAccumulator, type ComplianceFact, type ComplianceReport } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Connection } from '../src/store/connect.ts';
import { Store, type MetricFactRow, type RequestRow } from '../src/store/store.ts';
import { metricsSummary, summarize } from '../src/http/metrics-summary.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const HOUR = 3_600_000;
const OPERATORS = ['op_a', 'op_b', 'op_c'];
const BY = ['policy', 'reviewers', 'agent', 'timeout'] as const;
const OUTCOMES = ['approved', 'rejected', 'expired', 'cancelled'] as const;

const requestArb = fc.record({
  offset: fc.integer({ min: -6 * HOUR, max: 60 * HOUR }),
  route: fc.constantFrom('auto_approve', 'review', 'review', 'block'),
  risk: fc.constantFrom('low', 'medium', 'high', 'critical'),
  requester: fc.option(fc.constantFrom(...OPERATORS), { nil: null }),
  requiresApproval: fc.boolean(),
  sla: fc.option(fc.constantFrom(60, 900, 3600, 0.5), { nil: null }),
  decision: fc.option(
    fc.record({
      by: fc.constantFrom(...BY),
      outcome: fc.constantFrom(...OUTCOMES),
      // Negative: a clock that stepped back (times never go below 0 in the summary).
      took: fc.integer({ min: -5_000, max: 3 * HOUR }),
      deciders: fc.subarray(OPERATORS),
      modified: fc.boolean(),
      alternative: fc.option(fc.constantFrom('alt_1', 'alt_2'), { nil: null }),
      // Decided later by an update (the engine's path), or inserted decided (auto-approval's).
      later: fc.boolean(),
    }),
    { nil: null },
  ),
  // One vote per operator and request (the store's unique index).
  // The name the vote carries: an operator renamed between votes has several. Upper before lower
  // case, and a fullwidth letter (U+FF3A) against an emoji (a surrogate pair in UTF-16, first in
  // JavaScript's order but last in UTF-8's): "the least name" is JavaScript's order.
  votes: fc.uniqueArray(
    fc.record({ operator: fc.constantFrom(...OPERATORS), name: fc.constantFrom('Bob', 'alice', '\uFF3Aoe', '\u{1F600}oe'), approve: fc.boolean(), after: fc.integer({ min: -1_000, max: 2 * HOUR }) }),
    { maxLength: 3, selector: (v) => v.operator },
  ),
  escalated: fc.boolean(),
});

const historyArb = fc.record({
  requests: fc.array(requestArb, { maxLength: 40 }),
  from: fc.integer({ min: 0, max: 6 * HOUR }),
  span: fc.integer({ min: 1, max: 60 * HOUR }),
  bucket: fc.constantFrom('hour' as const, 'day' as const),
  now: fc.integer({ min: 0, max: 70 * HOUR }),
});

type Request = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;

function rowOf(id: string, createdAt: number, r: Request, inserted: boolean): RequestRow {
  const d = r.decision;
  const decision = d && inserted
    ? JSON.stringify({ outcome: d.outcome, decidedBy: d.by, deciders: d.deciders.map((o) => ({ type: 'operator', id: o, name: o })), reason: null, at: 'x', action: null, args: null, alternative: d.alternative, modified: d.modified })
    : null;
  return {
    id,
    agent_id: 'agt_1',
    requester_operator_id: r.requester,
    idempotency_key: null,
    body_hash: 'h',
    action: 'block_ip',
    args: '{}',
    description: null,
    confidence: null,
    risk_hint: null,
    context: '{}',
    alternatives: '[]',
    approvers: '[]',
    timeout_seconds: null,
    status: decision ? 'decided' : 'pending',
    risk_score: 0.5,
    risk_level: r.risk,
    automation_level: 'advisory',
    route: r.route,
    assessment: JSON.stringify({ requiresApproval: r.requiresApproval, slaSeconds: r.sla, slaDueAt: r.sla === null ? null : new Date(createdAt + r.sla * 1000).toISOString() }),
    policy_version: 1,
    decision,
    execution: null,
    created_at: createdAt,
    updated_at: createdAt,
    decided_at: decision && d ? createdAt + d.took : null,
    expires_at: null,
    queue_due_at: 8_640_000_000_000_000,
    action_key: 'block_ip',
    claim_nonce: null,
    claim_expires_at: null,
    claimed_at: null,
  };
}

describe.each(ENGINES)('history aggregates equal core definitions: $name', ({ make }) => {
  let database: TestDatabase;
  let connection: Connection;
  let store: Store;
  let run = 0;

  beforeAll(async () => {
    database = make();
    connection = await connect(database.url);
    store = new Store(connection, undefined, { pollMs: 3_600_000 });
    await store.insertAgent({ id: 'agt_1', name: 'agent', created_at: 1 });
  });

  afterAll(async () => {
    await store.close();
    await database.drop();
  });

  /** Writes a history in its own stretch of time (each run far from the others) and returns that stretch's base. */
  async function write(requests: readonly Request[]): Promise<{ base: number; ids: string[] }> {
    run++;
    const base = 1_700_000_000_000 + run * 1_000 * HOUR;
    const ids: string[] = [];
    const rows = requests.map((r, i) => {
      const id = `req_${run}_${String(i).padStart(3, '0')}`;
      ids.push(id);
      // Coarse offsets collide, so (created_at, id) order matters.
      return rowOf(id, base + Math.round(r.offset / 600_000) * 600_000, r, !r.decision?.later);
    });
    await store.insertRequests(rows.slice(0, Math.ceil(rows.length / 2)));
    for (const row of rows.slice(Math.ceil(rows.length / 2))) await store.insertRequest(row);
    for (const [i, r] of requests.entries()) {
      const row = rows[i]!;
      const d = r.decision;
      if (d?.later) {
        const decision = JSON.stringify({ outcome: d.outcome, decidedBy: d.by, deciders: d.deciders.map((o) => ({ type: 'operator', id: o, name: o })), reason: null, at: 'x', action: null, args: null, alternative: d.alternative, modified: d.modified });
        expect(await store.updateRequest(row.id, { status: 'decided', decision, decided_at: row.created_at + d.took }, 'pending')).toBe(true);
      }
      for (const [k, v] of r.votes.entries()) {
        await store.insertReview({ id: `rev_${row.id}_${k}`, request_id: row.id, operator_id: v.operator, operator_name: v.name, verdict: v.approve ? 'approve' : 'reject', reason: null, args: null, alternative: null, payload_key: null, stage: null, stage_key: null, created_at: row.created_at + v.after });
      }
      if (r.escalated) {
        await store.transaction((tx) => tx.appendAudit([{ at: row.created_at, type: 'escalated', request_id: row.id, actor_type: 'system', actor_id: 'system', actor_name: 'test', data: '{}' }]));
      }
    }
    return { base, ids };
  }

  /** What the references read: the stored rows themselves (plain JSON), as the old in-memory paths did. */
  async function stored(from: number, to: number) {
    await store.settleAudit();
    const rows = await connection.db
      .selectFrom('requests')
      .select(['id', 'action', 'status', 'risk_level', 'automation_level', 'route', 'decision', 'assessment', 'created_at', 'decided_at', 'requester_operator_id'])
      .where('created_at', '>=', from)
      .where('created_at', '<', to)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    const reviews = await connection.db
      .selectFrom('reviews')
      .innerJoin('requests', 'requests.id', 'reviews.request_id')
      .select(['reviews.operator_id', 'reviews.operator_name', 'reviews.verdict', 'reviews.created_at', 'requests.created_at as request_created_at'])
      .where('requests.created_at', '>=', from)
      .where('requests.created_at', '<', to)
      .execute();
    const escalated = await connection.db.selectFrom('audit_log').select('request_id').where('type', '=', 'escalated').execute();
    return {
      rows: rows.map((r) => ({ ...r, created_at: Number(r.created_at), decided_at: r.decided_at === null ? null : Number(r.decided_at) })),
      reviews: reviews.map((r) => ({ ...r, created_at: Number(r.created_at), request_created_at: Number(r.request_created_at) })),
      escalated: new Set(escalated.map((e) => e.request_id!)),
    };
  }

  it('GET /v1/metrics/summary: counts, rates, quantiles per bucket and operator', async () => {
    await fc.assert(
      fc.asyncProperty(historyArb, async (h) => {
        const { base } = await write(h.requests);
        const from = base + h.from;
        const to = from + h.span;
        const now = base + h.now;
        const s = await stored(from, to);
        const reference = summarize({ facts: s.rows as MetricFactRow[], reviews: s.reviews, escalated: s.escalated, from, to, bucket: h.bucket, now });
        const fromSql = await metricsSummary({ settleAudit: () => store.settleAudit(), historySummary: (...args) => store.history.summary(...args) }, from, to, h.bucket, now);
        expect(fromSql).toEqual(reference);
      }),
      { numRuns: 30 },
    );
  });

  it('GET /v1/reports/compliance: counts, review times, violations in order', async () => {
    await fc.assert(
      fc.asyncProperty(historyArb, async (h) => {
        const { base } = await write(h.requests);
        const from = base + h.from;
        const to = from + h.span;
        const s = await stored(from, to);
        const reference = new ComplianceAccumulator();
        for (const row of s.rows) {
          const a = JSON.parse(row.assessment) as { slaSeconds: number | null; requiresApproval: boolean };
          const d = row.decision === null ? null : (JSON.parse(row.decision) as NonNullable<ComplianceFact['decision']>);
          reference.add({
            id: row.id,
            action: row.action,
            status: row.status,
            riskLevel: row.risk_level,
            createdAt: row.created_at,
            decidedAt: row.decided_at,
            slaSeconds: a.slaSeconds,
            requiresApproval: a.requiresApproval,
            requesterOperatorId: row.requester_operator_id,
            decision: d,
          });
        }
        // Few items, so the list is cut short too (core lists at most 500; the SQL reads `limit` rows).
        const limit = 3;
        const totals = await store.history.compliance(from, to, 500);
        const cut = await store.history.compliance(from, to, limit);
        const meta = { regulation: 'SOC2' as const, from: 'f', to: 't', generatedAt: 'g', escalations: 0, integrity: { treeSize: 0, rootHash: null, checkpointAt: null, keyId: null } };
        const expected: ComplianceReport = reference.report(meta);
        expect(ComplianceAccumulator.fromTotals(totals.counts, totals.review, totals.violating).report(meta)).toEqual(expected);
        const short = ComplianceAccumulator.fromTotals(cut.counts, cut.review, cut.violating).report(meta);
        expect(short.violations.byKind).toEqual(expected.violations.byKind);
        expect(short.violations.items).toEqual(expected.violations.items.slice(0, short.violations.items.length));
        expect(short.violations.items.length).toBeGreaterThanOrEqual(Math.min(limit, expected.violations.items.length));
      }),
      { numRuns: 30 },
    );
  });
});

/**
 * The dashboard's Metrics screen: rates over time and per-operator numbers, computed here from
 * the store (`summarize` is pure; the route only reads and calls it).
 *
 * Definitions (per bucket of request creation time, and in total):
 * - automation rate: share of requests the policy approved on its own (route `auto_approve`);
 * - human-review rate: share routed to humans (route `review`); the rest were blocked;
 * - escalation rate: share of human-routed requests with at least one `escalated` audit entry;
 * - approval rate: share of human decisions (decided by reviewers) that approved;
 * - time to decision: proposal → decision by reviewers, median and p90 (linear interpolation);
 * - SLA compliance: of human-routed requests whose SLA has come due or that were decided, the
 *   share decided by reviewers no later than the SLA. Expired and still-pending-past-due count
 *   as missed; cancelled requests are left out.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody, type Assessment, type Decision } from '@countersign/core';
import type { Engine } from '../engine/engine.ts';
import type { MetricFactRow } from '../store/store.ts';
import { type ApiEnv as Env } from './routes/contract.ts';
/** The response shape lives in core, shared with the dashboard. */
import { quantile, rate, slaCompliance, withinSla, type MetricsSummary, type Rates } from '@countersign/core';
import { seesOperatorMetrics } from '../audit/reports.ts';


export const ESCALATED_AUDIT_TYPE = 'escalated';
/** Most requests one summary reads; beyond it the answer says `truncated`. */
export const MAX_FACTS = 500_000;
const BUCKET_MS = { hour: 3_600_000, day: 86_400_000 } as const;
const MAX_BUCKETS = 400;

export interface ReviewFact {
  operator_id: string;
  operator_name: string;
  verdict: string;
  created_at: number;
  request_created_at: number;
}

/** The math is core's (metrics.ts), shared with Prometheus; `quantile` is re-exported for its tests. */
export { quantile };
const ratio = rate;

class Accumulator {
  requests = 0;
  automated = 0;
  humanRouted = 0;
  blocked = 0;
  escalated = 0;
  humanDecided = 0;
  humanApproved = 0;
  slaMet = 0;
  slaMissed = 0;
  durations: number[] = [];

  rates(): Rates {
    const sorted = [...this.durations].sort((a, b) => a - b);
    const round = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10);
    return {
      requests: this.requests,
      automated: this.automated,
      humanRouted: this.humanRouted,
      blocked: this.blocked,
      escalated: this.escalated,
      humanDecided: this.humanDecided,
      humanApproved: this.humanApproved,
      automationRate: ratio(this.automated, this.requests),
      humanReviewRate: ratio(this.humanRouted, this.requests),
      escalationRate: ratio(this.escalated, this.humanRouted),
      approvalRate: ratio(this.humanApproved, this.humanDecided),
      medianDecisionSeconds: round(quantile(sorted, 0.5)),
      p90DecisionSeconds: round(quantile(sorted, 0.9)),
      slaMet: this.slaMet,
      slaMissed: this.slaMissed,
      slaCompliance: slaCompliance(this.slaMet, this.slaMissed),
    };
  }
}

export function summarize(input: {
  facts: readonly MetricFactRow[];
  reviews: readonly ReviewFact[];
  escalated: ReadonlySet<string>;
  from: number;
  to: number;
  bucket: 'hour' | 'day';
  now: number;
  truncated?: boolean;
}): MetricsSummary {
  const size = BUCKET_MS[input.bucket];
  const first = Math.floor(input.from / size) * size;
  const count = Math.max(1, Math.ceil((input.to - first) / size));
  const buckets = Array.from({ length: count }, () => new Accumulator());
  const total = new Accumulator();
  for (const f of input.facts) {
    const bucket = buckets[Math.min(count - 1, Math.max(0, Math.floor((f.created_at - first) / size)))]!;
    for (const acc of [bucket, total]) add(acc, f, input.escalated, input.now);
  }
  const operators = new Map<string, { name: string; reviews: number; approvals: number; rejections: number; times: number[] }>();
  for (const r of input.reviews) {
    const o = operators.get(r.operator_id) ?? { name: r.operator_name, reviews: 0, approvals: 0, rejections: 0, times: [] };
    o.reviews++;
    if (r.verdict === 'approve') o.approvals++;
    else o.rejections++;
    o.times.push(Math.max(0, r.created_at - r.request_created_at) / 1000);
    operators.set(r.operator_id, o);
  }
  return {
    from: new Date(input.from).toISOString(),
    to: new Date(input.to).toISOString(),
    bucket: input.bucket,
    totals: total.rates(),
    series: buckets.map((b, i) => ({ start: new Date(first + i * size).toISOString(), ...b.rates() })),
    operators: [...operators.entries()]
      .map(([id, o]) => {
        const median = quantile([...o.times].sort((a, b) => a - b), 0.5);
        return {
          id,
          name: o.name,
          reviews: o.reviews,
          approvals: o.approvals,
          rejections: o.rejections,
          medianResponseSeconds: median === null ? null : Math.round(median * 10) / 10,
        };
      })
      .sort((a, b) => b.reviews - a.reviews || a.name.localeCompare(b.name)),
    truncated: input.truncated ?? false,
  };
}

function add(acc: Accumulator, f: MetricFactRow, escalated: ReadonlySet<string>, now: number): void {
  acc.requests++;
  if (f.route === 'auto_approve') acc.automated++;
  else if (f.route === 'block') acc.blocked++;
  if (f.route !== 'review') return;
  acc.humanRouted++;
  if (escalated.has(f.id)) acc.escalated++;
  const decision = f.decision === null ? null : (JSON.parse(f.decision) as Decision);
  const byReviewers = decision?.decidedBy === 'reviewers';
  if (byReviewers && f.decided_at !== null) {
    acc.humanDecided++;
    if (decision?.outcome === 'approved') acc.humanApproved++;
    acc.durations.push(Math.max(0, f.decided_at - f.created_at) / 1000);
  }
  if (decision?.outcome === 'cancelled') return;
  const dueIso = f.assessment === null ? null : (JSON.parse(f.assessment) as Assessment).slaDueAt;
  if (dueIso === null) return;
  const due = Date.parse(dueIso);
  if (byReviewers && f.decided_at !== null) {
    if (withinSla(f.decided_at, dueIso)) acc.slaMet++;
    else acc.slaMissed++;
  } else if (decision !== null) {
    acc.slaMissed++; // expired (fail closed) before anyone decided
  } else if (now > due) {
    acc.slaMissed++; // still waiting past its SLA
  }
}

// ---- route ----

export const SummaryQuery = z.object({
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  bucket: z.enum(['hour', 'day']).optional(),
});

const RatesSchema = z.object({
  requests: z.number(),
  automated: z.number(),
  humanRouted: z.number(),
  blocked: z.number(),
  escalated: z.number(),
  humanDecided: z.number(),
  humanApproved: z.number(),
  automationRate: z.number().nullable(),
  humanReviewRate: z.number().nullable(),
  escalationRate: z.number().nullable(),
  approvalRate: z.number().nullable(),
  medianDecisionSeconds: z.number().nullable(),
  p90DecisionSeconds: z.number().nullable(),
  slaMet: z.number(),
  slaMissed: z.number(),
  slaCompliance: z.number().nullable(),
});

export const SummarySchema = z.object({
  from: z.string(),
  to: z.string(),
  bucket: z.enum(['hour', 'day']),
  totals: RatesSchema,
  series: z.array(RatesSchema.extend({ start: z.string() })),
  operators: z.array(
    z.object({ id: z.string(), name: z.string(), reviews: z.number(), approvals: z.number(), rejections: z.number(), medianResponseSeconds: z.number().nullable() }),
  ),
  truncated: z.boolean(),
});

export const summaryRoute = createRoute({
  method: 'get',
  path: '/v1/metrics/summary',
  summary: 'Review metrics over time and per operator (default: the last 14 days by day)',
  security: [{ bearer: [] }],
  request: { query: SummaryQuery },
  responses: {
    200: { content: { 'application/json': { schema: SummarySchema } }, description: 'The summary' },
    400: { content: { 'application/json': { schema: ErrorBody } }, description: 'Bad range' },
    401: { content: { 'application/json': { schema: ErrorBody } }, description: 'No credential' },
    403: { content: { 'application/json': { schema: ErrorBody } }, description: 'Not an operator' },
  },
});

export function registerSummaryRoute(app: OpenAPIHono<Env>, engine: Engine, now: () => number = Date.now): void {
  app.openapi(summaryRoute, async (c) => {
    if (c.get('principal').kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
    const q = c.req.valid('query');
    const bucket = q.bucket ?? 'day';
    const to = q.to ? Date.parse(q.to) : now();
    const from = q.from ? Date.parse(q.from) : to - 14 * BUCKET_MS.day;
    if (!(from < to)) throw new CountersignError('VALIDATION_FAILED', '`from` must be before `to`');
    if ((to - from) / BUCKET_MS[bucket] > MAX_BUCKETS) {
      throw new CountersignError('VALIDATION_FAILED', `at most ${MAX_BUCKETS} buckets: widen the bucket or narrow the range`);
    }
    const [facts, reviews, escalated] = await Promise.all([
      engine.store.metricFacts(from, to, MAX_FACTS + 1),
      engine.store.reviewFacts(from, to),
      engine.store.requestsWithAudit(ESCALATED_AUDIT_TYPE, from, to),
    ]);
    const truncated = facts.length > MAX_FACTS;
    const summary = summarize({
      facts: truncated ? facts.slice(0, MAX_FACTS) : facts,
      reviews: reviews.map((r) => ({ ...r, created_at: Number(r.created_at), request_created_at: Number(r.request_created_at) })),
      escalated: new Set(escalated),
      from,
      to,
      bucket,
      now: now(),
      truncated,
    });
    // Other operators' rows only for the report roles (audit/reports.ts), as /v1/metrics/operators/:id.
    const by = c.get('principal');
    return c.json({ ...summary, operators: summary.operators.filter((o) => seesOperatorMetrics(by, o.id)) }, 200);
  });
}

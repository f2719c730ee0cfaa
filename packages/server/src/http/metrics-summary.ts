/**
 * The dashboard's Metrics screen: rates over time and per-operator numbers. The definitions are
 * core's (metrics-summary.ts); the numbers come from SQL aggregates (store/history.ts), so the
 * cost follows the buckets and operators, not the history. `summarize` is the in-memory
 * reference over stored rows (tests).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import {
  CountersignError,
  ErrorBody,
  METRIC_BUCKET_MS,
  bucketLayout,
  operatorNumbers,
  quantile,
  ratesOf,
  sortOperators,
  summarizeMetrics,
  ZERO_COUNTS,
  type Assessment,
  type Decision,
  type MetricBucket,
  type MetricsSummary,
} from '@countersign/core';
import type { Engine } from '../engine/engine.ts';
import type { MetricFactRow } from '../store/store.ts';
import type { SummaryAggregates } from '../store/history.ts';
import { type ApiEnv as Env } from './routes/contract.ts';
import { seesOperatorMetrics } from '../audit/reports.ts';

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

/** The reference: the summary of stored rows (JSON assessment and decision), in memory, by core's definition. */
export function summarize(input: {
  facts: readonly MetricFactRow[];
  reviews: readonly ReviewFact[];
  escalated: ReadonlySet<string>;
  from: number;
  to: number;
  bucket: MetricBucket;
  now: number;
  truncated?: boolean;
}): MetricsSummary {
  return summarizeMetrics({
    facts: input.facts.map((f) => {
      const decision = f.decision === null ? null : (JSON.parse(f.decision) as Partial<Decision>);
      const dueIso = f.route !== 'review' || f.assessment === null ? null : (JSON.parse(f.assessment) as Assessment).slaDueAt;
      const due = dueIso === null || dueIso === undefined ? Number.NaN : Date.parse(dueIso);
      return {
        id: f.id,
        route: f.route,
        createdAt: f.created_at,
        decidedAt: f.decided_at,
        decidedBy: decision === null ? null : (decision.decidedBy ?? ''),
        outcome: decision === null ? null : (decision.outcome ?? ''),
        slaDueAt: Number.isFinite(due) ? due : null,
        escalated: input.escalated.has(f.id),
      };
    }),
    votes: input.reviews.map((r) => ({ operatorId: r.operator_id, operatorName: r.operator_name, verdict: r.verdict, createdAt: r.created_at, requestCreatedAt: r.request_created_at })),
    from: input.from,
    to: input.to,
    bucket: input.bucket,
    now: input.now,
    ...(input.truncated === undefined ? {} : { truncated: input.truncated }),
  });
}

/** The summary from the store's SQL aggregates (store/history.ts), laid out as core's reference lays it out. */
export function summaryOf(agg: SummaryAggregates, from: number, to: number, bucket: MetricBucket): MetricsSummary {
  const { first, size, count } = bucketLayout(from, to, bucket);
  return {
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    bucket,
    totals: ratesOf(agg.total.counts, agg.total.median, agg.total.p90),
    series: Array.from({ length: count }, (_, i) => {
      const b = agg.buckets.get(i);
      return { start: new Date(first + i * size).toISOString(), ...ratesOf(b?.counts ?? ZERO_COUNTS, b?.median ?? null, b?.p90 ?? null) };
    }),
    operators: sortOperators(agg.operators.map((o) => operatorNumbers(o.id, o.name, o.reviews, o.approvals, o.median))),
    truncated: false,
  };
}

/** `GET /v1/metrics/summary`'s numbers for [from, to): the trail settled first (escalations are audit entries). */
export async function metricsSummary(engine: Pick<Engine, 'settleAudit' | 'historySummary'>, from: number, to: number, bucket: MetricBucket, now: number): Promise<MetricsSummary> {
  await engine.settleAudit();
  return summaryOf(await engine.historySummary(from, to, bucket, now), from, to, bucket);
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
    const from = q.from ? Date.parse(q.from) : to - 14 * METRIC_BUCKET_MS.day;
    if (!(from < to)) throw new CountersignError('VALIDATION_FAILED', '`from` must be before `to`');
    if ((to - from) / METRIC_BUCKET_MS[bucket] > MAX_BUCKETS) {
      throw new CountersignError('VALIDATION_FAILED', `at most ${MAX_BUCKETS} buckets: widen the bucket or narrow the range`);
    }
    const summary = await metricsSummary(engine, from, to, bucket, now());
    // Other operators' rows only for the report roles (audit/reports.ts), as /v1/metrics/operators/:id.
    const by = c.get('principal');
    return c.json({ ...summary, operators: summary.operators.filter((o) => seesOperatorMetrics(by, o.id)) }, 200);
  });
}

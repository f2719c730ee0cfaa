/**
 * The one definition of `GET /v1/metrics/summary`'s numbers (issue 19). The server computes
 * them in SQL (server/src/store/history.ts) with bounded memory; `summarizeMetrics` here is the
 * reference over plain facts, and property tests hold the SQL to it on random histories on both
 * dialects (server/test/history-aggregates.test.ts). The pieces both share (bucket layout,
 * rates from counts, the operator rows' order) are written once, here.
 *
 * Definitions (per bucket of request creation time, and in total):
 * - automation rate: share of requests the policy approved on its own (route `auto_approve`);
 * - human-review rate: share routed to humans (route `review`); the rest were blocked;
 * - escalation rate: share of human-routed requests with at least one `escalated` audit entry;
 * - approval rate: share of human decisions (decided by reviewers) that approved;
 * - time to decision: proposal → decision by reviewers (never below 0), median and p90 by the
 *   core quantile (metrics.ts `quantile`: linear interpolation), in seconds rounded to 0.1;
 * - SLA compliance: of human-routed requests whose SLA has come due or that were decided, the
 *   share decided by reviewers no later than the SLA. Expired and still-pending-past-due count
 *   as missed; cancelled requests are left out.
 * - operators: votes on requests created in the period, by operator; the name is the least of
 *   the names their votes carry in JavaScript's order (one name unless the operator was
 *   renamed); busiest first, then by name, then by id; median response is
 *   vote time minus request creation (never below 0), by the same quantile.
 */
import { quantile, rate, slaCompliance, type MetricsSummary, type OperatorNumbers, type Rates } from './metrics.ts';

export const METRIC_BUCKET_MS = { hour: 3_600_000, day: 86_400_000 } as const;
export type MetricBucket = keyof typeof METRIC_BUCKET_MS;

/** One request of the period, as the summary needs it (times in epoch ms). */
export interface MetricFact {
  id: string;
  route: string;
  createdAt: number;
  decidedAt: number | null;
  /** The decision's `decidedBy` and `outcome`; both null while undecided. */
  decidedBy: string | null;
  outcome: string | null;
  /** The assessment's `slaDueAt` as epoch ms; null without an SLA. */
  slaDueAt: number | null;
  /** Whether the trail holds an `escalated` entry for it. */
  escalated: boolean;
}

/** One vote on a request of the period. */
export interface MetricVote {
  operatorId: string;
  operatorName: string;
  verdict: string;
  createdAt: number;
  requestCreatedAt: number;
}

/** The counts behind a `Rates` (one bucket, or the total). */
export interface RateCounts {
  requests: number;
  automated: number;
  humanRouted: number;
  blocked: number;
  escalated: number;
  humanDecided: number;
  humanApproved: number;
  slaMet: number;
  slaMissed: number;
}

export const ZERO_COUNTS: Readonly<RateCounts> = Object.freeze({ requests: 0, automated: 0, humanRouted: 0, blocked: 0, escalated: 0, humanDecided: 0, humanApproved: 0, slaMet: 0, slaMissed: 0 });

/** Buckets of a period: the first starts at `from` rounded down to the bucket size. */
export function bucketLayout(from: number, to: number, bucket: MetricBucket): { first: number; size: number; count: number } {
  const size = METRIC_BUCKET_MS[bucket];
  const first = Math.floor(from / size) * size;
  return { first, size, count: Math.max(1, Math.ceil((to - first) / size)) };
}

const round1 = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10);

/** The rates of some counts and their decision-time quantiles (seconds, unrounded). */
export function ratesOf(c: RateCounts, median: number | null, p90: number | null): Rates {
  return {
    requests: c.requests,
    automated: c.automated,
    humanRouted: c.humanRouted,
    blocked: c.blocked,
    escalated: c.escalated,
    humanDecided: c.humanDecided,
    humanApproved: c.humanApproved,
    automationRate: rate(c.automated, c.requests),
    humanReviewRate: rate(c.humanRouted, c.requests),
    escalationRate: rate(c.escalated, c.humanRouted),
    approvalRate: rate(c.humanApproved, c.humanDecided),
    medianDecisionSeconds: round1(median),
    p90DecisionSeconds: round1(p90),
    slaMet: c.slaMet,
    slaMissed: c.slaMissed,
    slaCompliance: slaCompliance(c.slaMet, c.slaMissed),
  };
}

/** An operator's row from their counts and median response (seconds, unrounded). */
export function operatorNumbers(id: string, name: string, reviews: number, approvals: number, median: number | null): OperatorNumbers {
  return { id, name, reviews, approvals, rejections: reviews - approvals, medianResponseSeconds: round1(median) };
}

/** Busiest first, then by name, then by id (two operators may share a name). */
export function sortOperators(rows: OperatorNumbers[]): OperatorNumbers[] {
  return rows.sort((a, b) => b.reviews - a.reviews || a.name.localeCompare(b.name) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Seconds from creation to a decision (or vote), never below 0. */
export function decisionSeconds(createdAt: number, decidedAt: number): number {
  return Math.max(0, decidedAt - createdAt) / 1000;
}

/** What one fact adds to its bucket's counts, and its decision time when reviewers decided it. */
export function countFact(c: RateCounts, f: MetricFact, now: number): number | null {
  c.requests++;
  if (f.route === 'auto_approve') c.automated++;
  else if (f.route === 'block') c.blocked++;
  if (f.route !== 'review') return null;
  c.humanRouted++;
  if (f.escalated) c.escalated++;
  const byReviewers = f.decidedBy === 'reviewers' && f.decidedAt !== null;
  let took: number | null = null;
  if (byReviewers) {
    c.humanDecided++;
    if (f.outcome === 'approved') c.humanApproved++;
    took = decisionSeconds(f.createdAt, f.decidedAt!);
  }
  if (f.outcome === 'cancelled' || f.slaDueAt === null) return took;
  if (byReviewers) {
    if (f.decidedAt! <= f.slaDueAt) c.slaMet++;
    else c.slaMissed++;
  } else if (f.outcome !== null) {
    c.slaMissed++; // expired (fail closed) before anyone decided
  } else if (now > f.slaDueAt) {
    c.slaMissed++; // still waiting past its SLA
  }
  return took;
}

/** The reference: the summary of facts created in [from, to), in memory. */
export function summarizeMetrics(input: {
  facts: readonly MetricFact[];
  votes: readonly MetricVote[];
  from: number;
  to: number;
  bucket: MetricBucket;
  now: number;
  truncated?: boolean;
}): MetricsSummary {
  const { first, size, count } = bucketLayout(input.from, input.to, input.bucket);
  const buckets = Array.from({ length: count }, () => ({ counts: { ...ZERO_COUNTS }, times: [] as number[] }));
  const total = { counts: { ...ZERO_COUNTS }, times: [] as number[] };
  for (const f of input.facts) {
    const bucket = buckets[Math.min(count - 1, Math.max(0, Math.floor((f.createdAt - first) / size)))]!;
    for (const acc of [bucket, total]) {
      const took = countFact(acc.counts, f, input.now);
      if (took !== null) acc.times.push(took);
    }
  }
  const rates = (acc: { counts: RateCounts; times: number[] }) => {
    const sorted = [...acc.times].sort((a, b) => a - b);
    return ratesOf(acc.counts, quantile(sorted, 0.5), quantile(sorted, 0.9));
  };
  const operators = new Map<string, { name: string; reviews: number; approvals: number; times: number[] }>();
  for (const v of input.votes) {
    const o = operators.get(v.operatorId) ?? { name: v.operatorName, reviews: 0, approvals: 0, times: [] };
    if (v.operatorName < o.name) o.name = v.operatorName;
    o.reviews++;
    if (v.verdict === 'approve') o.approvals++;
    o.times.push(decisionSeconds(v.requestCreatedAt, v.createdAt));
    operators.set(v.operatorId, o);
  }
  return {
    from: new Date(input.from).toISOString(),
    to: new Date(input.to).toISOString(),
    bucket: input.bucket,
    totals: rates(total),
    series: buckets.map((b, i) => ({ start: new Date(first + i * size).toISOString(), ...rates(b) })),
    operators: sortOperators(
      [...operators.entries()].map(([id, o]) => operatorNumbers(id, o.name, o.reviews, o.approvals, quantile([...o.times].sort((a, b) => a - b), 0.5))),
    ),
    truncated: input.truncated ?? false,
  };
}

/**
 * The shape of `GET /v1/metrics/summary`: written once here so the server that computes it and
 * the dashboard that draws it cannot drift.
 */
export interface Rates {
  requests: number;
  automated: number;
  humanRouted: number;
  blocked: number;
  escalated: number;
  humanDecided: number;
  humanApproved: number;
  automationRate: number | null;
  humanReviewRate: number | null;
  escalationRate: number | null;
  approvalRate: number | null;
  medianDecisionSeconds: number | null;
  p90DecisionSeconds: number | null;
  slaMet: number;
  slaMissed: number;
  slaCompliance: number | null;
}

export interface OperatorNumbers {
  id: string;
  name: string;
  reviews: number;
  approvals: number;
  rejections: number;
  medianResponseSeconds: number | null;
}

export interface MetricsSummary {
  from: string;
  to: string;
  bucket: 'hour' | 'day';
  totals: Rates;
  series: Array<{ start: string } & Rates>;
  operators: OperatorNumbers[];
  truncated: boolean;
}

// ---- the math, defined once (the dashboard summary and Prometheus use it) ----

/**
 * THE quantile of Countersign (the summary, compliance reports and Prometheus all use it):
 * linear interpolation between order statistics (numpy's default, Hyndman & Fan type 7). Of
 * `n` sorted values, the q-quantile lies at position `(n - 1) * q` (0-based): between the values
 * ranked `lo = floor(pos)` and `hi = ceil(pos)`, `frac = pos - lo` of the way. The SQL reads
 * (store/history.ts) fetch exactly those two order statistics and call `interpolate`, so both
 * dialects give the very same double as `quantile` over the sorted list.
 */
export function quantileRanks(n: number, q: number): { lo: number; hi: number; frac: number } | null {
  if (n <= 0) return null;
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  return { lo, hi: Math.ceil(pos), frac: pos - lo };
}

/** The value `frac` of the way from order statistic `a` to `b` (see `quantileRanks`). */
export function interpolate(a: number, b: number, frac: number): number {
  return a + (b - a) * frac;
}

/** Linear-interpolated quantile of sorted values (`quantileRanks`), null for none. */
export function quantile(sorted: readonly number[], q: number): number | null {
  const r = quantileRanks(sorted.length, q);
  return r === null ? null : interpolate(sorted[r.lo]!, sorted[r.hi]!, r.frac);
}

/** n / d, null when there is nothing to divide by (a rate of nothing is unknown, not 0). */
export function rate(n: number, d: number): number | null {
  return d === 0 ? null : n / d;
}

/** Share of SLA-bound requests decided in time: met / (met + missed), null for none. */
export function slaCompliance(met: number, missed: number): number | null {
  return rate(met, met + missed);
}

/** Whether a decision at `decidedAt` (epoch ms) met an SLA due at `dueAt` (ISO time; null: no SLA). Due at the instant counts as met. */
export function withinSla(decidedAt: number, dueAt: string | null): boolean | null {
  return dueAt === null ? null : decidedAt <= Date.parse(dueAt);
}

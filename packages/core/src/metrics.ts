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

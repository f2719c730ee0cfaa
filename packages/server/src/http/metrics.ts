/**
 * `GET /metrics`: Prometheus text exposition (prom-client). Counters are per process, as
 * Prometheus expects (it sums instances); the pending gauge is read from the database at
 * scrape time, so it is right after a restart and across processes sharing one database.
 *
 * The engine feeds decisions, executions and SLA breaches through `Engine.observe`. Other parts
 * report what only they see through the hooks below — call them, never the metric objects:
 *
 *   recordEscalation('sla_timeout')                 // engine (Engine.onEscalated): a request moved up a level; or 'manual'
 *   recordDelivery('slack', 'delivered')            // channels: one notification attempt
 *
 * Label values must come from a small fixed set (channel names, reason codes), never from
 * agent-supplied text; they are clipped and reduced to [a-z0-9_:.-] as a last line of defence.
 */
import { ratesOf, withinSla, type Assessment, type Decision } from '@countersign/core';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Engine, RequestChange } from '../engine/engine.ts';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

const RISK_LEVELS = ['low', 'medium', 'high', 'critical'] as const;

const decisions = new Counter({
  name: 'countersign_decisions_total',
  help: 'Requests decided, by the automation level the policy assigned, the outcome and who decided (policy, reviewers, timeout, agent)',
  labelNames: ['automation_level', 'outcome', 'decided_by'] as const,
  registers: [registry],
});

const created = new Counter({
  name: 'countersign_requests_created_total',
  help: 'Requests proposed, by route (auto_approve, review, block) and risk level',
  labelNames: ['route', 'risk_level'] as const,
  registers: [registry],
});

const pending = new Gauge({
  name: 'countersign_requests_pending',
  help: 'Requests waiting for a human, by risk level (read from the database at scrape time)',
  labelNames: ['risk_level'] as const,
  registers: [registry],
});

const forwardLag = new Gauge({
  name: 'countersign_forward_lag',
  help: 'SIEM forwarding: audit entries not yet delivered to each destination (the trail head minus its stored cursor; read at scrape time); destination is its kind and a keyed hash, mapped in GET /v1/forwarding',
  labelNames: ['destination'] as const,
  registers: [registry],
});

const forwardFailing = new Gauge({
  name: 'countersign_forward_failing',
  help: "SIEM forwarding: 1 while a destination's newest event is an error, else 0",
  labelNames: ['destination'] as const,
  registers: [registry],
});

const screenRates = new Gauge({
  name: 'countersign_screen_rate',
  help: 'Prompt-injection screening rates from accepted reviewer verdicts (detection, false_positive; false_negative from the audit sample); -1 while unknown',
  labelNames: ['rate'] as const,
  registers: [registry],
});

const screenVerdicts = new Gauge({
  name: 'countersign_screen_verdicts',
  help: 'Accepted screening verdicts in the report window, by outcome against what the screen did',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

/**
 * The seeds' review numbers as gauges (issue 18, Prometheus in the seeds' terms), over the last
 * 24 hours of requests, from the same SQL aggregates and definitions as `GET /v1/metrics/summary`
 * (store/history.ts, core metrics-summary.ts), read at scrape time; -1 while there is nothing to
 * rate (no human decision, no SLA counted). Decisions by automation level are
 * `countersign_decisions_total{automation_level}`.
 */
const reviewRates = new Gauge({
  name: 'countersign_review_rate',
  help: 'Over the last 24h of requests: approval (human approvals of human decisions), automation (decided by policy alone), human_review (routed to people), escalation (escalated of human-routed), sla_compliance (met of counted); -1 while unknown',
  labelNames: ['rate', 'window'] as const,
  registers: [registry],
});

const reviewSeconds = new Gauge({
  name: 'countersign_review_seconds',
  help: 'Over the last 24h of requests: seconds from filing to the human decision, at the median (quantile 0.5) and the 90th percentile; -1 while no human decided',
  labelNames: ['quantile', 'window'] as const,
  registers: [registry],
});

const timeToDecision = new Histogram({
  name: 'countersign_time_to_decision_seconds',
  help: 'From proposal to decision, for requests that went to humans (decided by reviewers or by timeout)',
  labelNames: ['risk_level', 'outcome'] as const,
  buckets: [5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400, 43_200, 86_400],
  registers: [registry],
});

const slaBreaches = new Counter({
  name: 'countersign_sla_breaches_total',
  help: 'Requests decided (by reviewers or by timeout) after their SLA was due, by risk level',
  labelNames: ['risk_level'] as const,
  registers: [registry],
});

const escalations = new Counter({
  name: 'countersign_escalations_total',
  help: 'Escalations to a higher level, by reason (sla_timeout, manual, critical: started above level 1 by policy, cooldown: every eligible reviewer cooling down)',
  labelNames: ['reason'] as const,
  registers: [registry],
});

const deliveries = new Counter({
  name: 'countersign_notification_deliveries_total',
  help: 'Notification delivery attempts, by channel and result',
  labelNames: ['channel', 'result'] as const,
  registers: [registry],
});

const executions = new Counter({
  name: 'countersign_executions_total',
  help: 'Execution reports from agents, by status',
  labelNames: ['status'] as const,
  registers: [registry],
});

const feedback = new Counter({
  name: 'countersign_feedback_total',
  help: 'Post-hoc feedback submissions on automatically approved requests (should_have_asked, ok)',
  labelNames: ['verdict'] as const,
  registers: [registry],
});

/** Keeps label values bounded and printable whatever a caller passes. */
export function labelValue(value: string): string {
  const clean = value.toLowerCase().replace(/[^a-z0-9_:.-]+/g, '_').slice(0, 64);
  return clean === '' ? 'unknown' : clean;
}

/** Called once per committed escalation, with its cause: `sla_timeout` (the level's deadline), `manual` (a reviewer, `POST /v1/requests/:id/escalate`) `critical` (policy started a new request above level 1: `startLevel`) or `cooldown` (an operator's cool-down left nobody free to approve it: engine/escalation.ts `fireCooldown`). */
export function recordEscalation(reason: string): void {
  escalations.inc({ reason: labelValue(reason) });
}

/** Channels call this once per delivery attempt (result e.g. `delivered`, `failed`, `retrying`, `gave_up`). */
export function recordDelivery(channel: string, result: string): void {
  deliveries.inc({ channel: labelValue(channel), result: labelValue(result) });
}

export function recordFeedback(verdict: string): void {
  feedback.inc({ verdict: labelValue(verdict) });
}

/** What one committed request change adds to the counters. */
export function observeChange({ previousStatus, row }: RequestChange): void {
  if (previousStatus === null) created.inc({ route: row.route, risk_level: row.risk_level });
  if (row.status === 'executed' || row.status === 'execution_failed') {
    executions.inc({ status: row.status === 'executed' ? 'succeeded' : 'failed' });
  }
  const decidedNow = (previousStatus === null || previousStatus === 'pending') && row.status !== 'pending' && row.decision !== null;
  if (!decidedNow || row.decision === null) return;
  const decision = JSON.parse(row.decision) as Decision;
  decisions.inc({ automation_level: row.automation_level, outcome: decision.outcome, decided_by: decision.decidedBy });
  if (decision.decidedBy !== 'reviewers' && decision.decidedBy !== 'timeout') return;
  const decidedAt = row.decided_at ?? row.updated_at;
  timeToDecision.observe({ risk_level: row.risk_level, outcome: decision.outcome }, Math.max(0, decidedAt - row.created_at) / 1000);
  const due = (JSON.parse(row.assessment) as Assessment).slaDueAt;
  if (withinSla(decidedAt, due) === false) slaBreaches.inc({ risk_level: row.risk_level });
}

const instrumented = new WeakSet<Engine>();

/** Feeds this engine's changes into the counters (once per engine, however many apps use it). */
export function instrumentEngine(engine: Engine): void {
  if (instrumented.has(engine)) return;
  instrumented.add(engine);
  engine.observe(observeChange);
}

/** The exposition text, with the pending gauge read fresh from this engine's database. */
export async function renderMetrics(engine: Engine): Promise<{ contentType: string; body: string }> {
  const counts = await engine.pendingCountsByRisk();
  for (const level of RISK_LEVELS) pending.set({ risk_level: level }, counts[level] ?? 0);
  // Screening rates from accepted verdicts (engine/screening.ts), read at scrape time like the pending gauge; -1 while there are none.
  const rates = await engine.screening.rates();
  screenRates.set({ rate: 'detection' }, rates.detectionRate ?? -1);
  screenRates.set({ rate: 'false_positive' }, rates.falsePositiveRate ?? -1);
  screenRates.set({ rate: 'false_negative' }, rates.falseNegativeRate?.rate ?? -1);
  screenVerdicts.set({ outcome: 'true_positive' }, rates.truePositives);
  screenVerdicts.set({ outcome: 'false_positive' }, rates.falsePositives);
  screenVerdicts.set({ outcome: 'false_negative' }, rates.falseNegatives);
  screenVerdicts.set({ outcome: 'true_negative' }, rates.trueNegatives);
  const now = Date.now();
  const day = await engine.historySummary(now - 24 * 3600_000, now + 1, 'hour', now);
  const review = ratesOf(day.total.counts, day.total.median, day.total.p90);
  const window = '24h';
  reviewRates.set({ rate: 'approval', window }, review.approvalRate ?? -1);
  reviewRates.set({ rate: 'automation', window }, review.automationRate ?? -1);
  reviewRates.set({ rate: 'human_review', window }, review.humanReviewRate ?? -1);
  reviewRates.set({ rate: 'escalation', window }, review.escalationRate ?? -1);
  reviewRates.set({ rate: 'sla_compliance', window }, review.slaCompliance ?? -1);
  reviewSeconds.set({ quantile: '0.5', window }, review.medianDecisionSeconds ?? -1);
  reviewSeconds.set({ quantile: '0.9', window }, review.p90DecisionSeconds ?? -1);
  // Every stored cursor (any server's destinations: the rows are shared), so a scrape of any server
  // sees them all. /metrics takes no credential: destinations are labelled by a keyed hash, never
  // by host, port or path (GET /v1/forwarding maps each label to its destination).
  const forwarding = await engine.forwardingStatus([], now);
  forwardLag.reset();
  forwardFailing.reset();
  for (const d of forwarding.destinations) {
    forwardLag.set({ destination: d.metricsLabel! }, d.lag);
    forwardFailing.set({ destination: d.metricsLabel! }, d.state === 'failing' ? 1 : 0);
  }
  return { contentType: registry.contentType, body: await registry.metrics() };
}

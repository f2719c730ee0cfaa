/**
 * Compliance reports, computed from facts about the requests of a period: what was decided and
 * how (by policy, by people, by timeout), how fast, within SLA or not, how often reviewers
 * changed what agents proposed, and what breaks the rules a regulator cares about (a critical
 * action that ran without a human, an approval that came from a timeout, a person approving
 * their own request). Each section names the controls it evidences for the chosen regulation.
 *
 * Pure: the server feeds `ComplianceFacts` page by page and renders the result as JSON,
 * Markdown or CSV.
 */
import { REGULATIONS } from '../constants.ts';
import { quantile } from '../metrics.ts';
import type { RiskLevel } from '../schemas.ts';

export { REGULATIONS };
export type Regulation = (typeof REGULATIONS)[number];

/** One request of the period, as the report needs it. */
export interface ComplianceFact {
  id: string;
  action: string;
  status: string;
  riskLevel: RiskLevel | string;
  createdAt: number;
  decidedAt: number | null;
  /** The policy's SLA for a human decision, seconds (null when none applies). */
  slaSeconds: number | null;
  requiresApproval: boolean;
  requesterOperatorId: string | null;
  decision: {
    outcome: string;
    decidedBy: string;
    deciders: ReadonlyArray<{ type: string; id: string; name: string }>;
    modified: boolean;
    alternative: string | null;
  } | null;
}

export interface Violation {
  /** `self_approval_attempt`: a review of one's own request, refused (SELF_REVIEW) and audited as `review_refused`. */
  kind: 'critical_without_human' | 'approved_by_timeout' | 'sla_breach' | 'self_approval' | 'self_approval_attempt';
  requestId: string;
  action: string;
  detail: string;
}

type Section = 'decisions' | 'review' | 'sla' | 'overrides' | 'violations' | 'protection' | 'integrity';

/** The guard's refusals a report counts (their audit `code`), from `review_refused` and `create_refused`. */
export const GUARD_REFUSAL_CODES = [
  'MFA_REQUIRED',
  'MFA_INVALID',
  'MATCH_CODE_INVALID',
  'IP_NOT_ALLOWED',
  'VELOCITY_LIMITED',
  'COOLDOWN_ACTIVE',
  'AGENT_PAUSED',
  'AGGREGATED',
  'RATE_LIMITED',
] as const;
/** The guard's actions a report counts (audit entry types). */
export const GUARD_EVENT_TYPES = ['slicing_alert', 'review_forced', 'aggregation_started', 'aggregated', 'agent_paused', 'pause_expired', 'agent_resumed', 'held', 'cooldown_started'] as const;

/** The controls each report section evidences, per regulation. */
export const CONTROLS: Readonly<Record<Regulation, Readonly<Record<Section, readonly string[]>>>> = {
  SOC2: {
    decisions: ['CC6.1 logical access controls', 'CC8.1 change management: authorised changes'],
    review: ['CC6.3 authorisation of access and changes', 'CC7.2 monitoring of system components'],
    sla: ['CC7.3 evaluation of security events', 'CC7.4 incident response'],
    overrides: ['CC8.1 changes are authorised, designed and approved'],
    violations: ['CC7.2 anomalies are identified', 'CC7.3 security events are evaluated'],
    protection: ['CC6.1 logical access: step-up authentication and network limits for approvers', 'CC6.8 prevention of unauthorised or malicious actions (slicing, rate limits)', 'CC7.2 anomalies are identified'],
    integrity: ['CC7.2 monitoring (tamper-evident log)', 'CC4.1 evaluations of controls'],
  },
  ISO27001: {
    decisions: ['A.5.15 access control', 'A.8.2 privileged access rights'],
    review: ['A.5.18 access rights', 'A.8.32 change management'],
    sla: ['A.5.26 response to information security incidents'],
    overrides: ['A.8.32 change management'],
    violations: ['A.8.16 monitoring activities', 'A.5.25 assessment of security events'],
    protection: ['A.8.5 secure authentication', 'A.5.17 authentication information', 'A.8.16 monitoring activities'],
    integrity: ['A.8.15 logging (protection of log information)', 'A.8.16 monitoring activities'],
  },
  GDPR: {
    decisions: ['Art. 22 automated individual decision-making: human intervention', 'Art. 30 records of processing activities'],
    review: ['Art. 22(3) right to obtain human intervention', 'Art. 5(2) accountability'],
    sla: ['Art. 33 timely handling of breaches'],
    overrides: ['Art. 5(1)(d) accuracy', 'Art. 25 data protection by design'],
    violations: ['Art. 22 decisions without human involvement', 'Art. 32 security of processing'],
    protection: ['Art. 32 security of processing', 'Art. 22(3) meaningful human intervention'],
    integrity: ['Art. 5(1)(f) integrity and confidentiality', 'Art. 30 records of processing activities'],
  },
  HIPAA: {
    decisions: ['§164.312(a)(1) access control', '§164.308(a)(4) information access management'],
    review: ['§164.308(a)(1)(ii)(D) information system activity review'],
    sla: ['§164.308(a)(6) security incident procedures'],
    overrides: ['§164.312(c)(1) integrity'],
    violations: ['§164.308(a)(1)(ii)(D) information system activity review', '§164.308(a)(6)(ii) response and reporting'],
    protection: ['§164.312(d) person or entity authentication', '§164.308(a)(5)(ii)(C) log-in monitoring', '§164.308(a)(1)(ii)(D) information system activity review'],
    integrity: ['§164.312(b) audit controls', '§164.312(c)(2) mechanism to authenticate ePHI'],
  },
  'PCI-DSS': {
    decisions: ['7.2 access is assigned and approved', '10.2 audit logs record user activity'],
    review: ['7.2.4 review of user accounts and access privileges', '6.5.1 changes are approved'],
    sla: ['12.10 incident response'],
    overrides: ['6.5.1 change management'],
    violations: ['10.4 audit logs are reviewed to identify anomalies', '10.7 failures of critical controls are detected'],
    protection: ['8.4 multi-factor authentication', '10.7 failures of critical security control systems are detected', '11.5 unauthorised changes are detected'],
    integrity: ['10.3 audit logs are protected from modification', '10.5 audit log history is retained'],
  },
};

export interface ComplianceReport {
  regulation: Regulation;
  from: string;
  to: string;
  generatedAt: string;
  decisions: {
    requests: number;
    decided: number;
    pending: number;
    automated: number;
    humanReviewed: number;
    byTimeout: number;
    cancelled: number;
    approved: number;
    rejected: number;
    expired: number;
    /** approved / (approved + rejected + expired), null when nothing was decided that way. */
    approvalRate: number | null;
    /** Share of requests the policy routed to a person. */
    humanReviewRate: number | null;
  };
  review: {
    decisions: number;
    averageSeconds: number | null;
    p90Seconds: number | null;
  };
  sla: {
    withSla: number;
    withinSla: number;
    breached: number;
    /** withinSla / withSla. */
    compliance: number | null;
  };
  escalations: number;
  overrides: { modifiedArgs: number; alternatives: number; rate: number | null };
  violations: { total: number; byKind: Record<Violation['kind'], number>; items: Violation[] };
  /** Protecting reviewers: what the guard refused (by code) and did (by audit type) in the period. */
  protection: { refusals: Record<(typeof GUARD_REFUSAL_CODES)[number], number>; events: Record<(typeof GUARD_EVENT_TYPES)[number], number> };
  integrity: { treeSize: number; rootHash: string | null; checkpointAt: string | null; keyId: string | null; verify: string };
  controls: Readonly<Record<Section, readonly string[]>>;
  recommendations: string[];
}

/** What decides a decided request's violations (a `ComplianceFact`, or a row the store's SQL picked). */
export interface ViolationFact {
  id: string;
  action: string;
  riskLevel: string;
  createdAt: number;
  decidedAt: number;
  slaSeconds: number | null;
  requiresApproval: boolean;
  decidedBy: string;
  outcome: string;
  /** A decider is the operator who requested it. */
  selfApproved: boolean;
}

/**
 * A decided request's violations, in the order a report lists them. The store's SQL counts the
 * same conditions (server/src/store/history.ts); tests hold the two together.
 */
export function violationsOf(f: ViolationFact): Violation[] {
  const out: Violation[] = [];
  const took = f.decidedAt - f.createdAt;
  if (f.requiresApproval && f.slaSeconds !== null && f.decidedBy !== 'agent' && !(f.decidedBy === 'reviewers' && took <= f.slaSeconds * 1000)) {
    out.push({ kind: 'sla_breach', requestId: f.id, action: f.action, detail: f.decidedBy === 'reviewers' ? `decided after ${Math.round(took / 1000)} s (SLA ${f.slaSeconds} s)` : `no human decision within the SLA (${f.outcome} by ${f.decidedBy})` });
  }
  if (f.outcome === 'approved') {
    if (f.riskLevel === 'critical' && f.decidedBy !== 'reviewers') {
      out.push({ kind: 'critical_without_human', requestId: f.id, action: f.action, detail: `critical-risk action approved by ${f.decidedBy}` });
    }
    if (f.decidedBy === 'timeout') out.push({ kind: 'approved_by_timeout', requestId: f.id, action: f.action, detail: 'approved because nobody decided in time (onFinalTimeout: approve)' });
    if (f.selfApproved) out.push({ kind: 'self_approval', requestId: f.id, action: f.action, detail: 'an approver is the operator who requested it' });
  }
  return out;
}

/** The counts of a period's requests (the store sums them in SQL; `ComplianceAccumulator.add` counts them one by one). */
export interface ComplianceCounts {
  requests: number;
  pending: number;
  decided: number;
  automated: number;
  human: number;
  timeout: number;
  cancelled: number;
  approved: number;
  rejected: number;
  expired: number;
  routedToHuman: number;
  withSla: number;
  withinSla: number;
  modified: number;
  alternatives: number;
  /** Violations by kind (the trail's refused self-reviews are added apart). */
  criticalWithoutHuman: number;
  approvedByTimeout: number;
  slaBreach: number;
  selfApproval: number;
}

/**
 * Review times of decisions by reviewers: how many, their sum (ms), and the order statistics the
 * core quantile needs for p90 (metrics.ts `quantileRanks`), as seconds.
 */
export interface ReviewTimes {
  decisions: number;
  totalMs: number;
  p90Seconds: number | null;
}

/** Violations listed in full up to this many; the counts are always complete. */
const MAX_ITEMS = 500;

const round = (n: number, digits = 3) => Number(n.toFixed(digits));
const rate = (part: number, whole: number) => (whole > 0 ? round(part / whole) : null);

const ZERO: ComplianceCounts = {
  requests: 0,
  pending: 0,
  decided: 0,
  automated: 0,
  human: 0,
  timeout: 0,
  cancelled: 0,
  approved: 0,
  rejected: 0,
  expired: 0,
  routedToHuman: 0,
  withSla: 0,
  withinSla: 0,
  modified: 0,
  alternatives: 0,
  criticalWithoutHuman: 0,
  approvedByTimeout: 0,
  slaBreach: 0,
  selfApproval: 0,
};

/**
 * A report, built either fact by fact (`add`: the reference definition, in memory) or from the
 * period's totals (`fromTotals`: what the server's SQL sums, with bounded memory). p90 is the
 * core quantile (metrics.ts: linear interpolation), the same as the metrics summary's.
 */
export class ComplianceAccumulator {
  #c: ComplianceCounts = { ...ZERO };
  #reviewMs: number[] = [];
  #review: ReviewTimes | null = null;
  #violations: Violation[] = [];
  #attempts = 0;
  #refusals = Object.fromEntries(GUARD_REFUSAL_CODES.map((c) => [c, 0])) as ComplianceReport['protection']['refusals'];
  #events = Object.fromEntries(GUARD_EVENT_TYPES.map((t) => [t, 0])) as ComplianceReport['protection']['events'];

  /**
   * From the period's counts, its review times, and the first decided requests (by creation,
   * then id) that have a violation: only their items are listed, the counts are `counts`'.
   */
  static fromTotals(counts: ComplianceCounts, review: ReviewTimes, violating: Iterable<ViolationFact>): ComplianceAccumulator {
    const acc = new ComplianceAccumulator();
    acc.#c = { ...counts };
    acc.#review = { ...review };
    for (const f of violating) {
      for (const v of violationsOf(f)) acc.#list(v);
      if (acc.#violations.length >= MAX_ITEMS) break;
    }
    return acc;
  }

  /** A refusal the guard audited (`review_refused` / `create_refused`): counted when its code is one of GUARD_REFUSAL_CODES. */
  addGuardRefusal(code: string): void {
    if ((GUARD_REFUSAL_CODES as readonly string[]).includes(code)) this.#refusals[code as (typeof GUARD_REFUSAL_CODES)[number]]++;
  }

  /** How many audit entries of each of GUARD_EVENT_TYPES the period holds. */
  addGuardEvents(counts: Readonly<Record<string, number>>): void {
    for (const type of GUARD_EVENT_TYPES) this.#events[type] += counts[type] ?? 0;
  }

  add(fact: ComplianceFact): void {
    const c = this.#c;
    c.requests++;
    if (fact.requiresApproval) c.routedToHuman++;
    const d = fact.decision;
    if (!d || fact.decidedAt === null) {
      c.pending++;
      return;
    }
    c.decided++;
    if (d.decidedBy === 'policy') c.automated++;
    else if (d.decidedBy === 'reviewers') c.human++;
    else if (d.decidedBy === 'timeout') c.timeout++;
    else if (d.decidedBy === 'agent') c.cancelled++;
    if (d.outcome === 'approved') c.approved++;
    else if (d.outcome === 'rejected') c.rejected++;
    else if (d.outcome === 'expired') c.expired++;
    if (d.modified) c.modified++;
    if (d.alternative !== null) c.alternatives++;

    const took = fact.decidedAt - fact.createdAt;
    if (d.decidedBy === 'reviewers') this.#reviewMs.push(took);
    if (fact.requiresApproval && fact.slaSeconds !== null && d.decidedBy !== 'agent') {
      c.withSla++;
      if (d.decidedBy === 'reviewers' && took <= fact.slaSeconds * 1000) c.withinSla++;
    }
    const selfApproved = fact.requesterOperatorId !== null && d.deciders.some((x) => x.type === 'operator' && x.id === fact.requesterOperatorId);
    const found = violationsOf({ id: fact.id, action: fact.action, riskLevel: fact.riskLevel, createdAt: fact.createdAt, decidedAt: fact.decidedAt, slaSeconds: fact.slaSeconds, requiresApproval: fact.requiresApproval, decidedBy: d.decidedBy, outcome: d.outcome, selfApproved });
    for (const v of found) {
      if (v.kind === 'sla_breach') c.slaBreach++;
      else if (v.kind === 'critical_without_human') c.criticalWithoutHuman++;
      else if (v.kind === 'approved_by_timeout') c.approvedByTimeout++;
      else if (v.kind === 'self_approval') c.selfApproval++;
      this.#list(v);
    }
  }

  /** A refused attempt to review one's own request (from the trail's `review_refused` entries with code SELF_REVIEW). */
  addSelfReviewAttempt(attempt: { requestId: string; action: string; operator: string; at: string }): void {
    this.#attempts++;
    this.#list({ kind: 'self_approval_attempt', requestId: attempt.requestId, action: attempt.action, detail: `${attempt.operator} tried to review their own request at ${attempt.at} (refused: SELF_REVIEW)` });
  }

  #list(v: Violation): void {
    if (this.#violations.length < MAX_ITEMS) this.#violations.push(v);
  }

  /** The review times of the decisions `add` saw (sorted ms), or the totals `fromTotals` was given. */
  #reviewTimes(): ReviewTimes {
    if (this.#review !== null) return this.#review;
    const sorted = [...this.#reviewMs].sort((a, b) => a - b);
    return {
      decisions: sorted.length,
      totalMs: sorted.reduce((s, x) => s + x, 0),
      p90Seconds: quantile(sorted.map((ms) => ms / 1000), 0.9),
    };
  }

  report(input: {
    regulation: Regulation;
    from: string;
    to: string;
    generatedAt: string;
    escalations: number;
    integrity: { treeSize: number; rootHash: string | null; checkpointAt: string | null; keyId: string | null };
  }): ComplianceReport {
    const c = this.#c;
    const times = this.#reviewTimes();
    const average = times.decisions > 0 ? round(times.totalMs / times.decisions / 1000, 1) : null;
    const p90 = times.p90Seconds === null ? null : round(times.p90Seconds, 1);
    const byKind: Record<Violation['kind'], number> = {
      critical_without_human: c.criticalWithoutHuman,
      approved_by_timeout: c.approvedByTimeout,
      sla_breach: c.slaBreach,
      self_approval: c.selfApproval,
      self_approval_attempt: this.#attempts,
    };
    const breached = byKind.sla_breach;
    const total = Object.values(byKind).reduce((s, x) => s + x, 0);
    const report: ComplianceReport = {
      regulation: input.regulation,
      from: input.from,
      to: input.to,
      generatedAt: input.generatedAt,
      decisions: {
        requests: c.requests,
        decided: c.decided,
        pending: c.pending,
        automated: c.automated,
        humanReviewed: c.human,
        byTimeout: c.timeout,
        cancelled: c.cancelled,
        approved: c.approved,
        rejected: c.rejected,
        expired: c.expired,
        approvalRate: rate(c.approved, c.approved + c.rejected + c.expired),
        humanReviewRate: rate(c.routedToHuman, c.requests),
      },
      review: { decisions: times.decisions, averageSeconds: average, p90Seconds: p90 },
      sla: { withSla: c.withSla, withinSla: c.withinSla, breached, compliance: rate(c.withinSla, c.withSla) },
      escalations: input.escalations,
      overrides: { modifiedArgs: c.modified, alternatives: c.alternatives, rate: rate(c.modified + c.alternatives, c.human) },
      violations: { total, byKind, items: this.#violations.slice() },
      protection: { refusals: { ...this.#refusals }, events: { ...this.#events } },
      integrity: { ...input.integrity, verify: 'countersign audit verify (or: audit export, then audit verify --file … --public-key …)' },
      controls: CONTROLS[input.regulation],
      recommendations: [],
    };
    report.recommendations = recommend(report);
    return report;
  }
}

function recommend(r: ComplianceReport): string[] {
  const out: string[] = [];
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  if (r.violations.byKind.critical_without_human > 0) {
    out.push(`${r.violations.byKind.critical_without_human} critical-risk action(s) ran without a human decision: require review for critical risk in the policy (levels.critical).`);
  }
  if (r.violations.byKind.approved_by_timeout > 0) {
    out.push(`${r.violations.byKind.approved_by_timeout} approval(s) came from a timeout: set escalation.onFinalTimeout to reject, or add escalation levels.`);
  }
  if (r.violations.byKind.self_approval > 0) out.push('Someone approved their own request: investigate at once; the engine should refuse this (SELF_REVIEW).');
  if (r.violations.byKind.self_approval_attempt > 0) {
    out.push(`${r.violations.byKind.self_approval_attempt} attempt(s) to review one's own request were refused (SELF_REVIEW): ask the operators why; repeated attempts can be someone probing the controls.`);
  }
  if (r.sla.compliance !== null && r.sla.compliance < 0.9) {
    out.push(`SLA compliance is ${pct(r.sla.compliance)}: add reviewers or escalation levels, or revisit the SLAs in levels.*.sla.`);
  }
  if (r.escalations > 0 && r.decisions.humanReviewed > 0 && r.escalations / r.decisions.humanReviewed > 0.25) {
    out.push(`${r.escalations} escalations for ${r.decisions.humanReviewed} human decisions: first-level reviewers are not keeping up.`);
  }
  if (r.overrides.rate !== null && r.overrides.rate > 0.2) {
    out.push(`Reviewers changed ${pct(r.overrides.rate)} of what agents proposed: review those agents' prompts, or offer the usual correction as an alternative.`);
  }
  if (r.decisions.humanReviewed >= 20 && r.decisions.approvalRate !== null && r.decisions.approvalRate > 0.98 && r.overrides.rate === 0) {
    out.push('Nearly every reviewed action is approved unchanged: check for rubber-stamping, or automate the low-risk ones (automation bands) to keep reviewers for what matters.');
  }
  const p = r.protection;
  if (p.refusals.MFA_INVALID >= 5) {
    out.push(`${p.refusals.MFA_INVALID} approvals were refused for a wrong or reused TOTP code: check with those reviewers; repeated failures can be someone guessing codes.`);
  }
  if (p.refusals.IP_NOT_ALLOWED > 0) out.push(`${p.refusals.IP_NOT_ALLOWED} approval(s) came from outside an IP allowlist and were refused: confirm who tried.`);
  if (p.events.slicing_alert > 0) {
    out.push(`${p.events.slicing_alert} slicing alert(s) were raised: review those agents' requests together (countersign agents slicing NAME) and their onSlicing response.`);
  }
  if (p.events.cooldown_started > 0 || p.refusals.VELOCITY_LIMITED > 0) {
    out.push(`Approvers hit their limits (${p.events.cooldown_started} cool-down(s), ${p.refusals.VELOCITY_LIMITED} velocity refusal(s)): spread the review load, or revisit guard.velocity / guard.cooldown.`);
  }
  if (r.decisions.pending > 0) out.push(`${r.decisions.pending} request(s) of the period are still pending.`);
  if (r.integrity.rootHash === null) out.push('No signed checkpoint covers the trail yet: sign one (POST /v1/audit/checkpoints) before relying on this report.');
  if (out.length === 0) out.push('No findings for this period.');
  return out;
}

/** The report as Markdown, for people. Agent-supplied text (action names) is escaped. */
export function complianceMarkdown(r: ComplianceReport): string {
  const esc = (s: string) => s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
  const pct = (x: number | null) => (x === null ? '—' : `${Math.round(x * 1000) / 10}%`);
  const n = (x: number | null, unit = '') => (x === null ? '—' : `${x}${unit}`);
  const controls = (s: Section) => `_Evidences: ${r.controls[s].join('; ')}_`;
  const lines = [
    `# ${r.regulation} compliance report`,
    '',
    `Period: ${r.from} to ${r.to} (generated ${r.generatedAt}).`,
    '',
    '## Decisions',
    controls('decisions'),
    '',
    '| measure | value |',
    '| --- | --- |',
    `| requests | ${r.decisions.requests} |`,
    `| decided | ${r.decisions.decided} (pending: ${r.decisions.pending}) |`,
    `| automated (policy) | ${r.decisions.automated} |`,
    `| human-reviewed | ${r.decisions.humanReviewed} |`,
    `| decided by timeout | ${r.decisions.byTimeout} |`,
    `| cancelled by the agent | ${r.decisions.cancelled} |`,
    `| approval rate | ${pct(r.decisions.approvalRate)} |`,
    `| routed to a human | ${pct(r.decisions.humanReviewRate)} |`,
    '',
    '## Human review',
    controls('review'),
    '',
    `Decisions: ${r.review.decisions}; average time to decide ${n(r.review.averageSeconds, ' s')}; p90 ${n(r.review.p90Seconds, ' s')}; escalations: ${r.escalations}.`,
    '',
    '## SLA',
    controls('sla'),
    '',
    `${r.sla.withinSla} of ${r.sla.withSla} within SLA (${pct(r.sla.compliance)}); breaches: ${r.sla.breached}.`,
    '',
    '## Overrides',
    controls('overrides'),
    '',
    `Modified args: ${r.overrides.modifiedArgs}; alternatives chosen: ${r.overrides.alternatives} (${pct(r.overrides.rate)} of human decisions).`,
    '',
    '## Violations',
    controls('violations'),
    '',
    `Total: ${r.violations.total} (critical without a human: ${r.violations.byKind.critical_without_human}; approved by timeout: ${r.violations.byKind.approved_by_timeout}; SLA breaches: ${r.violations.byKind.sla_breach}; self-approval: ${r.violations.byKind.self_approval}; self-approval attempts, refused: ${r.violations.byKind.self_approval_attempt}).`,
    ...(r.violations.items.length > 0
      ? ['', '| kind | request | action | detail |', '| --- | --- | --- | --- |', ...r.violations.items.map((v) => `| ${v.kind} | ${v.requestId} | ${esc(v.action)} | ${esc(v.detail)} |`)]
      : []),
    '',
    '## Reviewer protection',
    controls('protection'),
    '',
    '| refused | count |',
    '| --- | --- |',
    ...GUARD_REFUSAL_CODES.map((c) => `| ${c} | ${r.protection.refusals[c]} |`),
    '',
    '| guard action | count |',
    '| --- | --- |',
    ...GUARD_EVENT_TYPES.map((t) => `| ${t} | ${r.protection.events[t]} |`),
    '',
    '## Integrity of the trail',
    controls('integrity'),
    '',
    r.integrity.rootHash === null
      ? 'No signed checkpoint yet.'
      : `Signed checkpoint: ${r.integrity.treeSize} entries, root \`${r.integrity.rootHash}\`, signed ${r.integrity.checkpointAt} by key ${r.integrity.keyId}. Verify with: ${r.integrity.verify}.`,
    '',
    '## Recommendations',
    '',
    ...r.recommendations.map((x) => `- ${x}`),
    '',
  ];
  return lines.join('\n');
}

/** The report as CSV: one `section,measure,value` row per figure, then the violations. */
export function complianceCsv(r: ComplianceReport): string {
  const cell = (v: unknown) => {
    const s = v === null || v === undefined ? '' : String(v);
    // Quote always; neutralise spreadsheet formulas in text that came from agents.
    return `"${(/^[=+\-@\t\r]/.test(s) ? `'${s}` : s).replace(/"/g, '""')}"`;
  };
  const rows: unknown[][] = [['section', 'measure', 'value']];
  for (const [k, v] of Object.entries(r.decisions)) rows.push(['decisions', k, v]);
  for (const [k, v] of Object.entries(r.review)) rows.push(['review', k, v]);
  for (const [k, v] of Object.entries(r.sla)) rows.push(['sla', k, v]);
  rows.push(['escalations', 'count', r.escalations]);
  for (const [k, v] of Object.entries(r.overrides)) rows.push(['overrides', k, v]);
  for (const [k, v] of Object.entries(r.violations.byKind)) rows.push(['violations', k, v]);
  for (const [k, v] of Object.entries(r.protection.refusals)) rows.push(['protection.refused', k, v]);
  for (const [k, v] of Object.entries(r.protection.events)) rows.push(['protection.events', k, v]);
  rows.push(['integrity', 'treeSize', r.integrity.treeSize], ['integrity', 'rootHash', r.integrity.rootHash], ['integrity', 'checkpointAt', r.integrity.checkpointAt]);
  for (const v of r.violations.items) rows.push([`violation:${v.kind}`, v.requestId, `${v.action}: ${v.detail}`]);
  for (const x of r.recommendations) rows.push(['recommendation', '', x]);
  return `${rows.map((row) => row.map(cell).join(',')).join('\r\n')}\r\n`;
}

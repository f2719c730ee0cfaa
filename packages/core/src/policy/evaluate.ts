/**
 * The policy decision for one proposed action: risk, matched rules, automation level, route,
 * who must approve and by when. Pure and deterministic: the clock (`now`) and the agent's
 * history are inputs, so the same inputs always give a deep-equal assessment — which is what
 * lets an auditor re-run a decision from the trail.
 *
 * Order of decisions:
 * 1. score the risk (factors from the policy; the agent's hint may raise the level);
 * 2. scan content for the patterns the rules use, then run the rules (which may raise the
 *    level further, force review, name approvers, block);
 * 3. pick the automation level from confidence, capped by the final risk level;
 * 4. route: block if anything blocks; auto-approve only at full/supervised automation with
 *    nothing asking for a human; otherwise review, with the approval stages and SLA.
 */
import { RISK_LEVELS, type Assessment, type CreateRequest, type RiskLevel } from '../schemas.ts';
import type { RequestScreening, ScreeningOutcome } from '../screen/request.ts';
import { approvalRequirement } from './approval.ts';
import { decideRoute } from './automation.ts';
import { SCAN_LIMIT_CHARS, scanContentBounded } from './patterns.ts';
import { UNSTATED_CONFIDENCE, assessRisk } from './risk.ts';
import { normalizeActionName } from './names.ts';
import { applyRules, effectiveRules, patternsInUse } from './rules.ts';
import { requestValue } from './value.ts';
import type { EscalationLevel, HistoryStats, Policy } from './types.ts';

export type EvaluationRequest = CreateRequest & {
  agent: string;
  /** Set by the server, never by the agent: a reason this request must be reviewed (e.g. a slicing alert under `onSlicing: review`), reported as a matched rule. */
  forcedReview?: { readonly rule: string; readonly reason: string } | undefined;
  /** Set by the server: what screening the request's text found (screen/request.ts) and what that does to it. */
  screening?: { readonly result: RequestScreening; readonly outcomes: readonly ScreeningOutcome[] } | undefined;
  /** Set by the server: what the governance pre-checks decided (precheck/outcomes.ts precheckEffects), judged like screening outcomes. */
  prechecks?: readonly ScreeningOutcome[] | undefined;
};

/** The implicit rule reported when a request is too large to scan completely. */
const SCAN_LIMIT_RULE = 'content-scan-limit';
/** The implicit rule reported when the policy's value path (or an `args.amount` a value rule needs) cannot be read. */
const VALUE_UNREADABLE_RULE = 'value-unreadable';

export function evaluate(request: EvaluationRequest, policy: Policy, history: HistoryStats, now: Date): Assessment {
  if (Number.isNaN(now.getTime())) throw new TypeError('evaluate: `now` is an invalid Date');

  // Judged by the normal form of its name (names.ts), so a respelling cannot escape a rule.
  const judged = { ...request, action: normalizeActionName(request.action) };
  const risk = assessRisk(judged, policy, history);
  const confidence = request.confidence ?? UNSTATED_CONFIDENCE;

  const rules = effectiveRules(policy, request.agent);
  const valueRules = rules.some(
    (r) => r.when.valueAtLeast !== undefined && (r.when.action === undefined || r.when.action.some((a) => normalizeActionName(a) === judged.action)),
  );
  const value = requestValue(judged, policy, valueRules);
  const patterns = patternsInUse(rules);
  const scan = patterns.length > 0 ? scanContentBounded(request, patterns, policy) : { matches: [], truncated: false };
  const outcome = applyRules({ request: judged, agent: request.agent, confidence, level: risk.level, content: scan.matches, now, value }, policy, rules);

  const matchedRules = [...outcome.matched];
  const reviewBy = [...outcome.reviewBy];
  if (scan.truncated) {
    // Fail closed: what was not scanned may hold the very data the rules look for.
    matchedRules.push({
      name: SCAN_LIMIT_RULE,
      reason: `request text beyond ${SCAN_LIMIT_CHARS / 1024} KiB (or nested too deeply) was not scanned for sensitive content`,
      effects: ['review'],
    });
    reviewBy.push(SCAN_LIMIT_RULE);
  }
  if (value.unreadable) {
    // Fail closed: the amount the rules need is there but unreadable (or, configured, absent).
    matchedRules.push({
      name: VALUE_UNREADABLE_RULE,
      reason: `the request's value could not be read: ${value.unreadable.reason}${value.unreadable.configured ? ` (the policy reads it from args.${value.unreadable.path})` : ''}`,
      effects: ['review'],
    });
    reviewBy.push(VALUE_UNREADABLE_RULE);
  }
  if (request.forcedReview) {
    matchedRules.push({ name: request.forcedReview.rule, reason: request.forcedReview.reason, effects: ['review'] });
    reviewBy.push(request.forcedReview.rule);
  }

  let level: RiskLevel = outcome.level;
  const blockedBy = [...outcome.blockedBy];
  const screenReasons: string[] = [];
  for (const o of [...(request.screening?.outcomes ?? []), ...(request.prechecks ?? [])]) {
    const effects = [o.route === 'none' ? 'none' : o.route, ...(o.raiseRisk !== undefined ? [`riskAtLeast: ${o.raiseRisk}`] : [])];
    matchedRules.push({ name: o.rule, reason: o.reason, effects });
    if (o.route === 'block') blockedBy.push(o.rule);
    if (o.route === 'review') reviewBy.push(o.rule);
    if (o.raiseRisk !== undefined && RISK_LEVELS.indexOf(o.raiseRisk) > RISK_LEVELS.indexOf(level)) {
      level = o.raiseRisk;
      screenReasons.push(`${o.rule.startsWith('precheck:') ? 'Pre-check' : 'Screening'} (${o.rule}) raises the risk to ${level}.`);
    }
  }
  const decision = decideRoute(
    {
      confidence,
      confidenceStated: request.confidence !== undefined,
      level,
      blockedBy,
      reviewBy,
      agentNamedApprovers: (request.approvers?.length ?? 0) > 0,
    },
    policy,
  );

  const reasons = [`Risk ${level} (score ${risk.score}).`, ...risk.reasons, ...outcome.reasons, ...screenReasons, ...decision.reasons];
  const review = decision.route === 'review';
  // A rule's startLevel and the risk level's (`levels.<risk>.startLevel`): the higher start wins.
  const riskStart = policy.levels[level].startLevel;
  const startLevel = outcome.startLevel === undefined ? riskStart : riskStart === undefined ? outcome.startLevel : Math.max(outcome.startLevel, riskStart);
  let slaSeconds: number | null = null;
  let slaDueAt: string | null = null;
  if (review) {
    let slaMs = policy.levels[level].slaMs;
    if (request.timeoutSeconds !== undefined && request.timeoutSeconds * 1000 < slaMs) {
      slaMs = request.timeoutSeconds * 1000;
      reasons.push(`The request's timeout (${request.timeoutSeconds}s) is shorter than the ${level} SLA and applies.`);
    }
    slaSeconds = slaMs / 1000;
    slaDueAt = new Date(now.getTime() + slaMs).toISOString();
    if (startLevel !== undefined) {
      const esc = policy.escalation.levels[startLevel - 1];
      const who = esc ? levelWho(esc) : '';
      const why = outcome.startLevel === startLevel ? '' : ` (levels.${level}.startLevel)`;
      reasons.push(`Escalation starts at level ${startLevel}${who ? ` (${who})` : ''}${why}.`);
    }
  }

  return {
    riskScore: risk.score,
    riskLevel: level,
    factors: risk.factors,
    automationLevel: decision.automationLevel,
    route: decision.route,
    requiresApproval: review,
    matchedRules,
    approval: review ? approvalRequirement(level, outcome.approvers, outcome.approvals, request.approvers ?? [], policy) : null,
    slaSeconds,
    slaDueAt,
    mfaRequired: review && (policy.levels[level].mfa || outcome.mfa),
    // Present only when true (assessments stored before it read as TOTP-or-WebAuthn).
    ...(review && policy.levels[level].mfa && policy.levels[level].webauthn === true ? { webauthnRequired: true } : {}),
    reasons,
    ...(review && startLevel !== undefined ? { escalationStartLevel: startLevel } : {}),
    ...(request.screening && (request.screening.result.findings.length > 0 || request.screening.outcomes.length > 0)
      ? { screening: screeningRecord(request.screening.result) }
      : {}),
    ...(value.amount !== undefined
      ? { value: { amount: value.amount, ...(value.args ? { args: { ...value.args } } : {}), ...(value.context !== undefined ? { context: value.context } : {}) } }
      : {}),
  };
}

/** What the assessment keeps of a screening: scores, action and findings (field, kind, span, score, why), never the text. */
function screeningRecord(r: RequestScreening): NonNullable<Assessment['screening']> {
  return {
    score: r.score,
    action: r.action,
    severity: r.severity,
    overBudget: r.overBudget,
    screenedChars: r.screenedChars,
    findings: r.findings.map((f) => ({ field: f.field, kind: f.kind, span: { start: f.span.start, end: f.span.end }, score: f.score, why: f.why })),
  };
}

/** Who an escalation level names, in words: `lead`, `operators cfo` or `manager, groups sec-leads`. */
export function levelWho(l: Pick<EscalationLevel, 'role' | 'operators' | 'groups'>): string {
  return [l.role ?? '', l.operators.length > 0 ? `operators ${l.operators.join(', ')}` : '', l.groups.length > 0 ? `groups ${l.groups.join(', ')}` : ''].filter(Boolean).join('; ');
}

/**
 * The risk assessor: a weighted sum of seven factors, each a value in 0..1 where 1 is the
 * riskiest reading. Weights come from the policy and are normalised to sum to 1, so the score
 * is always within 0..1. Each factor carries a sentence saying why it has its value: a
 * reviewer must be able to see what drove a score, and a policy author what to tune.
 *
 * Factors that are not stated by the request read as neutral (0.5, or "medium" for targets)
 * rather than as safe: an agent cannot lower its risk by saying less.
 *
 * Agent-supplied signals may raise risk but never lower it below what the policy says:
 * - `riskLevel` (the hint) can raise the level, never lower it;
 * - `context.reversible: true` does not override an action the policy marks irreversible;
 * - `context.target.criticality` does not lower a criticality matched by the policy's targets.
 *
 * Time sensitivity (the one factor that can pull risk down): when the situation is urgent
 * (`context.timeSensitivity` or `context.threatScore`, whichever is higher) and the action is a
 * reversible protective step (category `containment`, `notification` or `investigation`),
 * acting quickly is itself the safer choice — a late IP block costs more than a wrong one that
 * is undone. Urgency never lowers the risk of an irreversible or non-protective action (a
 * rushed wire transfer is not safer); those keep the neutral value.
 */
import type { BlastRadius, CreateRequest, RiskFactor, RiskLevel } from '../schemas.ts';
import { globMatch } from './glob.ts';
import { EMPTY_HISTORY, type HistoryStats, type Policy, type RiskFactorName } from './types.ts';
import { clamp01, isPlainObject, levelRank, maxLevel, own, round } from './util.ts';

export type RiskInput = Pick<CreateRequest, 'action' | 'args' | 'confidence' | 'riskLevel' | 'context'>;

export interface RiskAssessment {
  /** 0..1, rounded to 3 decimals; the level is read from this rounded value. */
  readonly score: number;
  /** From the score and thresholds, raised (never lowered) by the agent's hint. */
  readonly level: RiskLevel;
  readonly factors: RiskFactor[];
  /** Why the level differs from the score's level, if it does. */
  readonly reasons: string[];
}

/** Confidence assumed when the agent states none: "unsure", which lands in the manual band. */
export const UNSTATED_CONFIDENCE = 0.5;

const CRITICALITY_VALUE: Record<RiskLevel, number> = { low: 0.1, medium: 0.4, high: 0.7, critical: 1 };
const SCOPE_VALUE = { single: 0.1, host: 0.2, team: 0.4, department: 0.6, organization: 0.8, global: 1 } as const;
const UNSTATED_SCOPE = 0.25;
const PROTECTIVE = new Set(['containment', 'notification', 'investigation']);

/** Args whose string values name what an action touches, matched against `targets`. */
const TARGET_ARGS = ['target', 'targets', 'path', 'paths', 'file', 'files', 'host', 'hosts', 'hostname', 'server', 'resource', 'database', 'table', 'bucket', 'account', 'user', 'username', 'ip'];
const MAX_TARGET_CANDIDATES = 100;

const fmt = (n: number): string => String(round(n, 3));

export function levelForScore(score: number, policy: Policy): RiskLevel {
  const t = policy.riskThresholds;
  return score >= t.critical ? 'critical' : score >= t.high ? 'high' : score >= t.medium ? 'medium' : 'low';
}

interface FactorReading {
  value: number;
  detail: string;
}

function severity(request: RiskInput, policy: Policy): FactorReading {
  const traits = own(policy.actions.byName, request.action);
  return traits
    ? { value: traits.weight, detail: `policy weight of ${request.action} is ${fmt(traits.weight)}` }
    : { value: policy.actions.defaultWeight, detail: `${request.action} is not in the policy; default weight ${fmt(policy.actions.defaultWeight)}` };
}

function targetCandidates(request: RiskInput): { where: string; text: string }[] {
  const out: { where: string; text: string }[] = [];
  const target = request.context?.target;
  if (typeof target === 'string') out.push({ where: 'context.target', text: target });
  else if (target) {
    if (target.name) out.push({ where: 'context.target.name', text: target.name });
    if (target.id) out.push({ where: 'context.target.id', text: target.id });
  }
  const args = isPlainObject(request.args) ? request.args : {};
  for (const key of TARGET_ARGS) {
    const v = own(args, key);
    if (typeof v === 'string') out.push({ where: `args.${key}`, text: v });
    else if (Array.isArray(v)) {
      v.forEach((item, i) => typeof item === 'string' && out.push({ where: `args.${key}[${i}]`, text: item }));
    }
  }
  return out.slice(0, MAX_TARGET_CANDIDATES);
}

function targetCriticality(request: RiskInput, policy: Policy): FactorReading {
  let matched: { level: RiskLevel; why: string } | undefined;
  for (const c of targetCandidates(request)) {
    for (const t of policy.targets) {
      if ((!matched || levelRank(t.criticality) > levelRank(matched.level)) && globMatch(t.match, c.text)) {
        matched = { level: t.criticality, why: `${c.where} matches target ${t.match} (${t.criticality})` };
      }
    }
  }
  const target = request.context?.target;
  const stated = typeof target === 'object' ? target.criticality : undefined;
  if (matched && (!stated || levelRank(matched.level) >= levelRank(stated))) {
    const note = stated && stated !== matched.level ? `; agent said ${stated}` : '';
    return { value: CRITICALITY_VALUE[matched.level], detail: matched.why + note };
  }
  if (stated) {
    const note = matched ? `; policy target match says ${matched.level}` : '';
    return { value: CRITICALITY_VALUE[stated], detail: `agent states target criticality ${stated}${note}` };
  }
  return { value: CRITICALITY_VALUE.medium, detail: 'no known target criticality; treated as medium' };
}

function confidence(request: RiskInput): FactorReading {
  if (request.confidence === undefined) {
    return { value: 1 - UNSTATED_CONFIDENCE, detail: `no confidence given; treated as ${UNSTATED_CONFIDENCE}` };
  }
  return { value: 1 - request.confidence, detail: `agent confidence ${fmt(request.confidence)}` };
}

/** `true`, `false` or `undefined` (unknown), the cautious reading of policy and agent together. */
export function effectiveReversible(request: RiskInput, policy: Policy): boolean | undefined {
  const trait = own(policy.actions.byName, request.action)?.reversible;
  const stated = request.context?.reversible;
  if (trait === false || stated === false) return false;
  if (trait === true || stated === true) return true;
  return undefined;
}

function reversibility(request: RiskInput, policy: Policy): FactorReading {
  const trait = own(policy.actions.byName, request.action)?.reversible;
  const stated = request.context?.reversible;
  const r = effectiveReversible(request, policy);
  const source = trait !== undefined && (stated === undefined || trait === r) ? 'policy' : 'agent';
  if (r === false) return { value: 1, detail: `irreversible (${source})` };
  if (r === true) return { value: 0, detail: `reversible (${source})` };
  return { value: 0.5, detail: 'reversibility unknown' };
}

function countValue(n: number): number {
  return n <= 1 ? 0.1 : Math.min(1, 0.1 + 0.3 * Math.log10(n));
}

function impactScope(blast: BlastRadius | undefined): FactorReading {
  if (blast === undefined) return { value: UNSTATED_SCOPE, detail: 'blast radius not stated' };
  if (typeof blast === 'number') return { value: countValue(blast), detail: `${blast} entities affected` };
  if (typeof blast === 'string') return { value: SCOPE_VALUE[blast], detail: `scope ${blast}` };
  const byScope = blast.scope ? SCOPE_VALUE[blast.scope] : undefined;
  const byCount = blast.count !== undefined ? countValue(blast.count) : undefined;
  if (byScope === undefined && byCount === undefined) return { value: UNSTATED_SCOPE, detail: 'blast radius not stated' };
  const parts = [blast.scope ? `scope ${blast.scope}` : '', blast.count !== undefined ? `${blast.count} entities` : ''].filter(Boolean);
  return { value: Math.max(byScope ?? 0, byCount ?? 0), detail: parts.join(', ') };
}

/**
 * Past outcomes shift the neutral 0.5 toward a target: 0.1 for a clean record, rising steeply
 * with the share of rejections and failures (10% bad is already neutral, 35% or more is the
 * worst). The shift is scaled by n/(n+10) so a handful of outcomes moves little.
 */
function history(h: HistoryStats): FactorReading {
  const n = (x: number): number => (Number.isFinite(x) && x > 0 ? x : 0);
  const good = n(h.approved) + n(h.succeeded);
  const bad = n(h.rejected) + n(h.failed);
  const outcomes = good + bad;
  if (outcomes === 0) return { value: 0.5, detail: 'no history for this agent and action' };
  const badRate = bad / outcomes;
  const target = bad === 0 ? 0.1 : Math.min(1, 0.3 + 2 * badRate);
  const value = 0.5 + (outcomes / (outcomes + 10)) * (target - 0.5);
  const pct = Math.round(badRate * 100);
  return {
    value,
    detail: `${outcomes} past outcomes (${n(h.approved)} approved, ${n(h.rejected)} rejected, ${n(h.succeeded)} succeeded, ${n(h.failed)} failed; ${pct}% bad)`,
  };
}

function timeSensitivity(request: RiskInput, policy: Policy): FactorReading {
  const ctx = request.context;
  const urgency = Math.max(ctx?.timeSensitivity ?? -1, ctx?.threatScore ?? -1);
  if (urgency < 0) return { value: 0.5, detail: 'no urgency stated' };
  const category = own(policy.actions.byName, request.action)?.category;
  const protective = effectiveReversible(request, policy) === true && category !== undefined && PROTECTIVE.has(category);
  if (!protective) {
    return { value: 0.5, detail: `urgency ${fmt(urgency)} does not lower the risk of an action that is not a reversible protective step` };
  }
  return { value: 0.5 * (1 - urgency), detail: `urgency ${fmt(urgency)} favours acting now: reversible ${category} step` };
}

export function assessRisk(request: RiskInput, policy: Policy, historyStats: HistoryStats = EMPTY_HISTORY): RiskAssessment {
  const readings: Record<RiskFactorName, FactorReading> = {
    severity: severity(request, policy),
    targetCriticality: targetCriticality(request, policy),
    confidence: confidence(request),
    reversibility: reversibility(request, policy),
    impactScope: impactScope(request.context?.blastRadius),
    history: history(historyStats),
    timeSensitivity: timeSensitivity(request, policy),
  };
  let total = 0;
  const factors: RiskFactor[] = [];
  for (const [name, reading] of Object.entries(readings) as [RiskFactorName, FactorReading][]) {
    const weight = policy.riskFactors[name];
    const value = clamp01(reading.value);
    total += weight * value;
    factors.push({ name, value: round(value, 3), weight: round(weight, 4), contribution: round(weight * value, 4), detail: reading.detail });
  }
  const score = round(clamp01(total), 3);
  const scored = levelForScore(score, policy);
  const reasons: string[] = [];
  let level = scored;
  if (request.riskLevel && levelRank(request.riskLevel) > levelRank(scored)) {
    level = maxLevel(scored, request.riskLevel);
    reasons.push(`The agent rated the risk ${request.riskLevel}, above the scored ${scored}; the higher level applies.`);
  }
  return { score, level, factors, reasons };
}

/**
 * The pure decisions of governance pre-checks: which validators apply to a payload, each one's
 * identity (what a stored result is bound to), and what a set of results does under the current
 * policy: block, raise the risk (which always routes to humans), or allow.
 */
import { canonicalJson } from '../canonical.ts';
import { RISK_LEVELS, type RiskLevel } from '../schemas.ts';
import { normalizeActionName } from '../policy/names.ts';
import type { ScreeningOutcome } from '../screen/request.ts';
import { DEFAULT_PRECHECK_TIMEOUT_MS, type PrecheckConfig, type PrecheckOutcome, type PrecheckResult, type PrecheckVerdict } from './types.ts';
import type { PrecheckFile } from './schema.ts';

/** A validator's effect as evaluate() takes it (`EvaluationRequest.prechecks`): the shape of a screening outcome. */
export type PrecheckEffect = ScreeningOutcome;

/** A validated `prechecks:` entry with its defaults filled in. */
export function resolvePrecheck(f: PrecheckFile): PrecheckConfig {
  return Object.freeze({
    name: f.name,
    kind: f.kind,
    url: new URL(f.url).href,
    path: f.path ?? null,
    timeoutMs: f.timeoutMs ?? DEFAULT_PRECHECK_TIMEOUT_MS,
    onError: f.onError ?? 'deny',
    when: Object.freeze({
      actions: f.when?.actions ? Object.freeze([...new Set(f.when.actions.map(normalizeActionName))].sort()) : null,
      risk: f.when?.risk ? Object.freeze([...new Set(f.when.risk)].sort((a, b) => RISK_LEVELS.indexOf(a) - RISK_LEVELS.indexOf(b))) : null,
    }),
    raiseTo: f.raiseTo ?? 'high',
    headersEnv: f.headersEnv ?? null,
  });
}

/**
 * The text a validator's identity hashes: its whole canonical config (name, kind, url, path,
 * timeout, onError, when, raiseTo, headersEnv). The caller hashes it (SHA-256, the server's ids.ts).
 * Any change to the validator, even one that keeps its name, is a new identity (F1).
 */
export function precheckIdentityText(c: PrecheckConfig): string {
  return canonicalJson({ v: 1, ...c, when: { actions: c.when.actions, risk: c.when.risk } });
}

/**
 * The validators of `configs` that judge this payload: `when.actions` (normal form) and `when.risk`
 * both match. None for Countersign's own reserved `countersign.*` actions (aggregate reviews,
 * admin changes): they are not agent actions and have their own rules (four-eyes).
 */
export function applicablePrechecks(configs: readonly PrecheckConfig[], payload: { action: string; riskLevel: RiskLevel }): PrecheckConfig[] {
  const action = normalizeActionName(payload.action);
  if (action.startsWith('countersign.')) return [];
  return configs.filter((c) => (c.when.actions === null || c.when.actions.includes(action)) && (c.when.risk === null || c.when.risk.includes(payload.riskLevel)));
}

function higher(a: RiskLevel | null, b: RiskLevel): RiskLevel {
  return a === null || RISK_LEVELS.indexOf(b) > RISK_LEVELS.indexOf(a) ? b : a;
}

/**
 * What the results do under `configs` (the current policy's applicable validators): every config
 * is judged by the result with its own name AND identity; a config with none (never called, or
 * called under an earlier config of the same name) fails closed as an error under its own
 * `onError`. Results for validators no longer configured are ignored.
 * - allow: the validator allowed (raising to its `risk` when it gave one);
 * - deny: it denied → block;
 * - error: per `onError`: deny → block, allow → allow, raise → raise to `raiseTo`.
 */
export function precheckOutcomes(results: readonly PrecheckResult[], configs: readonly PrecheckConfig[], identityOf: (c: PrecheckConfig) => string): PrecheckOutcome {
  const verdicts: PrecheckVerdict[] = configs.map((c) => {
    const identity = identityOf(c);
    const r = results.find((x) => x.name === c.name && x.identity === identity);
    const status = r?.status ?? 'missing';
    const reasons = r ? [...r.reasons] : [`no result of ${c.name} under its current configuration`];
    if (status === 'deny') return { name: c.name, identity, outcome: 'deny', status, reasons, raiseTo: null };
    if (status === 'allow') {
      return r?.raiseTo !== undefined ? { name: c.name, identity, outcome: 'raise', status, reasons, raiseTo: r.raiseTo } : { name: c.name, identity, outcome: 'allow', status, reasons, raiseTo: null };
    }
    const why = [...reasons, ...(r?.error ? [`validator error: ${r.error}`] : [])];
    if (c.onError === 'allow') return { name: c.name, identity, outcome: 'allow', status, reasons: why, raiseTo: null };
    if (c.onError === 'raise') return { name: c.name, identity, outcome: 'raise', status, reasons: why, raiseTo: c.raiseTo };
    return { name: c.name, identity, outcome: 'deny', status, reasons: why, raiseTo: null };
  });
  let raiseTo: RiskLevel | null = null;
  for (const v of verdicts) if (v.outcome === 'raise' && v.raiseTo !== null) raiseTo = higher(raiseTo, v.raiseTo);
  const effect = verdicts.some((v) => v.outcome === 'deny') ? 'block' : raiseTo !== null ? 'raise' : 'allow';
  return { effect, raiseTo: effect === 'raise' ? raiseTo : null, verdicts };
}

/** The rule name a validator's effect is reported under in an assessment's matched rules. */
export function precheckRule(name: string): string {
  return `precheck:${name}`;
}

/**
 * The outcome as evaluate() takes it (`EvaluationRequest.prechecks`, the same shape as screening
 * outcomes): a deny blocks, a raise raises the risk AND forces review (a raised risk always goes
 * to humans), an allow does nothing. Reasons are the validator's own text, already bounded by
 * the response parser; they stay untrusted text wherever shown.
 */
export function precheckEffects(outcome: PrecheckOutcome): PrecheckEffect[] {
  return outcome.verdicts
    .filter((v) => v.outcome !== 'allow')
    .map((v) => ({
      rule: precheckRule(v.name),
      route: v.outcome === 'deny' ? ('block' as const) : ('review' as const),
      ...(v.outcome === 'raise' && v.raiseTo !== null ? { raiseRisk: v.raiseTo } : {}),
      reason: `${v.outcome === 'deny' ? 'denied' : `raised the risk to ${v.raiseTo}`} by validator ${v.name}${v.reasons.length > 0 ? `: ${v.reasons.join('; ')}` : ''}`.slice(0, 1000),
    }));
}

/**
 * Whether an approved aggregate review may approve one member (F1), from the member's pre-check
 * outcome under the validators configured at the vote. Fail closed: a member is not approved when
 * any applicable validator has no result under its current identity (whatever its `onError`),
 * when one denies (or errs under `onError: deny`), or when one raises the risk above the
 * aggregate's own level (the bundle's approvals were required at that level, not the raised one).
 * `why` names the validator; the caller rejects the member with it.
 */
export function aggregateMemberPrecheck(outcome: PrecheckOutcome, aggregateRisk: RiskLevel): { approve: true } | { approve: false; validator: string; why: string } {
  for (const v of outcome.verdicts) {
    const reasons = v.reasons.length > 0 ? `: ${v.reasons.join('; ')}` : '';
    if (v.status === 'missing') return { approve: false, validator: v.name, why: `validator ${v.name} has no result for it under its current configuration` };
    if (v.outcome === 'deny') return { approve: false, validator: v.name, why: `denied by validator ${v.name}${reasons}`.slice(0, 1000) };
    if (v.outcome === 'raise' && v.raiseTo !== null && RISK_LEVELS.indexOf(v.raiseTo) > RISK_LEVELS.indexOf(aggregateRisk)) {
      return { approve: false, validator: v.name, why: `validator ${v.name} raised its risk to ${v.raiseTo}, above the aggregate review's ${aggregateRisk}${reasons}`.slice(0, 1000) };
    }
  }
  return { approve: true };
}

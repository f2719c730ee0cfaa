/**
 * Screening a proposed action on the create path, and what the result does to the request.
 * Pure: the model, the config and the request are inputs.
 *
 * What is screened, always as `content` (it is text an agent wrote or read, not a prompt
 * someone typed): the description, every string leaf of `args`, each `context.evidence` item,
 * and each alternative's description and string args. Fields are screened in that order until
 * the per-request budget (`screening.maxBytes`, UTF-16 units summed over fields) is spent;
 * what is left unscreened sends the request to review with that reason (fail closed: the text
 * nobody read may be the very text that carries the injection).
 *
 * @example
 * const s = screenRequestText(body, DEFAULT_SCREEN_MODEL, policy.screening);
 * const effect = screeningEffect(s, policy.screening); // → evaluate({ ...body, screening: effect }, …)
 */
import { pathStep } from './fields.ts';
import type { ScreenModel } from './model.ts';
import { ACTION_RANK, SEVERITY_RANK, type ScreeningConfig, type ScreenEffect } from './schema.ts';
import { screen } from './screen.ts';
import type { ScreenAction, Severity, Span } from './types.ts';

/** One piece of agent text and where it sits in the request body. */
export interface RequestText {
  /** `description`, `args.to`, `args.items[2].body`, `args["a.b"]`, `context.evidence[0]`, `alternatives[1].args.cmd` (fields.ts). */
  readonly field: string;
  readonly text: string;
}

/** A finding as the assessment records it: no text, only where (field and span) and why. */
export interface RequestFinding {
  readonly field: string;
  readonly kind: string;
  /** UTF-16 offsets into the field's string. */
  readonly span: Span;
  readonly score: number;
  readonly why: string;
}

export interface RequestScreening {
  /** The highest calibrated score over the fields screened. */
  readonly score: number;
  readonly action: ScreenAction;
  readonly severity: Severity;
  readonly findings: readonly RequestFinding[];
  /** Fields and characters screened, and whether some text went unscreened (over the budget or past the walk's bounds). */
  readonly screenedFields: number;
  readonly screenedChars: number;
  readonly overBudget: boolean;
  /** Why some text went unscreened when it was not the budget (the screening worker timed out or failed). */
  readonly unscreened?: string;
}

/** The most string leaves one request's text walk visits; past it the request is over budget. */
export const MAX_SCREENED_FIELDS = 2_000;
/** Findings kept in the assessment (the card and the audit); the score and action still count all of them. */
export const MAX_RECORDED_FINDINGS = 50;
const MAX_DEPTH = 64;

/**
 * The agent-written strings of a create body, in screening order. Stops (and says so) after
 * `MAX_SCREENED_FIELDS` leaves or at nesting deeper than 64, so a hostile body cannot make the
 * walk itself the cost.
 */
export function requestTexts(body: {
  description?: string | undefined;
  args?: unknown;
  context?: { evidence?: readonly unknown[] | undefined } | undefined;
  alternatives?: readonly { description?: string | undefined; args?: unknown }[] | undefined;
}): { texts: RequestText[]; complete: boolean } {
  const texts: RequestText[] = [];
  let complete = true;
  const walk = (value: unknown, field: string, depth: number): void => {
    if (texts.length >= MAX_SCREENED_FIELDS || depth > MAX_DEPTH) {
      complete = false;
      return;
    }
    if (typeof value === 'string') {
      if (value.trim().length > 0) texts.push({ field, text: value });
    } else if (Array.isArray(value)) {
      for (let i = 0; i < value.length && complete; i++) walk(value[i], `${field}${pathStep(i)}`, depth + 1);
    } else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        if (!complete) break;
        walk(v, `${field}${pathStep(k)}`, depth + 1);
      }
    }
  };
  if (body.description !== undefined) walk(body.description, 'description', 0);
  if (body.args !== undefined) walk(body.args, 'args', 0);
  if (body.context?.evidence !== undefined) walk(body.context.evidence, 'context.evidence', 0);
  for (const [i, alt] of (body.alternatives ?? []).entries()) {
    if (alt.description !== undefined) walk(alt.description, `alternatives[${i}].description`, 0);
    if (alt.args !== undefined) walk(alt.args, `alternatives[${i}].args`, 0);
  }
  return { texts, complete };
}

/** Screen a create body's text within the budget. */
export function screenRequestText(body: Parameters<typeof requestTexts>[0], model: ScreenModel, config: ScreeningConfig): RequestScreening {
  const { texts, complete } = requestTexts(body);
  let budget = config.maxBytes;
  let score = 0;
  let action: ScreenAction = 'allow';
  let severity: Severity = 'none';
  let screenedFields = 0;
  let screenedChars = 0;
  let overBudget = !complete;
  const findings: RequestFinding[] = [];
  for (const t of texts) {
    if (budget <= 0) {
      overBudget = true;
      break;
    }
    // Only the share that fits is screened (screen() cuts at its own maxBytes and reports it).
    const take = Math.min(budget, t.text.length);
    const r = screen({ content: t.text, channel: 'content' }, model, { ...config, maxBytes: take });
    budget -= take;
    screenedFields++;
    screenedChars += take;
    if (r.score > score) score = r.score;
    for (const f of r.findings) {
      if (f.kind === 'over-budget') {
        overBudget = true;
        continue;
      }
      if (f.kind === 'redacted') continue;
      if (findings.length < MAX_RECORDED_FINDINGS) findings.push({ field: t.field, kind: f.kind, span: f.span, score: f.score, why: f.why });
    }
    if (ACTION_RANK[r.action] > ACTION_RANK[action]) action = r.action;
    if (SEVERITY_RANK[r.severity] > SEVERITY_RANK[severity]) severity = r.severity;
  }
  if (overBudget && ACTION_RANK[config.overBudget] > ACTION_RANK[action]) action = config.overBudget;
  if (overBudget && SEVERITY_RANK[severity] < 1) severity = 'low';
  return { score, action, severity, findings, screenedFields, screenedChars, overBudget };
}

/** The implicit rule a screening finding is reported as. */
export const SCREENING_RULE = 'prompt-injection';
/** The implicit rule reported when part of the request's text was not screened. */
export const SCREENING_BUDGET_RULE = 'screening-budget';

/** What a screening result does to the request, for evaluate() to apply. */
export interface ScreeningOutcome {
  readonly rule: string;
  readonly route: ScreenEffect['route'];
  readonly raiseRisk?: ScreenEffect['raiseRisk'];
  readonly reason: string;
}

/**
 * The decision: a screen result → the policy's effect for its action (`screening.effects`).
 * Returns one outcome per reason (the model's finding, the unscreened text), none when the
 * screen allowed everything it read and read everything. A disabled screen decides nothing.
 *
 * @example screeningEffect({ action: 'escalate', score: 0.41, … }, DEFAULT_SCREENING)
 * // → [{ rule: 'prompt-injection', route: 'review', raiseRisk: 'high', reason: '…' }]
 */
export function screeningEffect(s: RequestScreening, config: ScreeningConfig): ScreeningOutcome[] {
  if (!config.enabled) return [];
  const out: ScreeningOutcome[] = [];
  const modelAction = actionOfScore(s, config);
  if (modelAction !== 'allow') {
    const e = config.effects[modelAction];
    const fields = [...new Set(s.findings.map((f) => f.field))].slice(0, 5);
    out.push({
      rule: SCREENING_RULE,
      route: e.route,
      ...(e.raiseRisk !== undefined ? { raiseRisk: e.raiseRisk } : {}),
      reason: `agent text scores ${s.score.toFixed(2)} for prompt injection (screen action ${modelAction})${fields.length > 0 ? ` in ${fields.join(', ')}` : ''}`,
    });
  }
  if (s.overBudget) {
    const e = config.effects[config.overBudget];
    // Fail closed: over the budget the request is at least reviewed, whatever the effect table says.
    out.push({
      rule: SCREENING_BUDGET_RULE,
      route: e.route === 'block' ? 'block' : 'review',
      ...(e.raiseRisk !== undefined ? { raiseRisk: e.raiseRisk } : {}),
      reason: s.unscreened ?? `the request's text is larger than the screening budget (${config.maxBytes} characters, ${MAX_SCREENED_FIELDS} fields): the rest was not screened`,
    });
  }
  return out;
}

/** The action the model's score alone earns (the over-budget part is its own outcome). */
function actionOfScore(s: RequestScreening, config: ScreeningConfig): ScreenAction {
  let action: ScreenAction = 'allow';
  for (const b of config.bands.content) if (s.score >= b.min) action = b.action;
  return action;
}

/** The fail-closed result when the text could not be screened at all (the caller says why). */
export function unscreenedResult(reason: string, config: ScreeningConfig): RequestScreening {
  return { score: 0, action: config.overBudget, severity: 'low', findings: [], screenedFields: 0, screenedChars: 0, overBudget: true, unscreened: reason };
}

/**
 * Screening a proposed action on the create path, and what the result does to the request.
 * Pure: the model, the config and the request are inputs.
 *
 * What is screened, always as `content` (it is text an agent wrote or read, not a prompt
 * someone typed): every agent-written string of the body: the description, every string leaf
 * and every key of `args` and `context` (less the schema's enums, ATT&CK ids and its own field
 * names), each alternative's name, description and args, approver group and operator names, the
 * idempotency key; and for each array and object a joined view of its direct strings, so text cut
 * one word per leaf is read as the sentence a consumer of the JSON reads. Texts are screened in
 * that order until the per-request budget (`screening.maxBytes`, UTF-16 units summed over texts,
 * joined views included) is spent; what is left unscreened sends the request to review with that
 * reason (fail closed: the text nobody read may be the very text that carries the injection).
 * Agent text holding a bidi override, embedding or isolate goes to review too (what a reader sees
 * is not what was screened).
 *
 * @example
 * const s = screenRequestText(body, DEFAULT_SCREEN_MODEL, policy.screening);
 * const effect = screeningEffect(s, policy.screening); // → evaluate({ ...body, screening: effect }, …)
 */
import { boundPath, keyPath, pathStep } from './fields.ts';
import type { ScreenModel } from './model.ts';
import { ACTION_RANK, SEVERITY_RANK, type ScreeningConfig, type ScreenEffect } from './schema.ts';
import { screen } from './screen.ts';
import type { ScreenAction, Severity, Span } from './types.ts';

/** Where a piece of a joined view came from: `len` units at `at` in the view are `from..` of `field`'s text. */
export interface JoinedPart {
  readonly field: string;
  readonly at: number;
  readonly len: number;
  readonly from: number;
}

/** One piece of agent text and where it sits in the request body. */
export interface RequestText {
  /** `description`, `args.to`, `args.items[2].body`, `args["a.b"]`, `args.note.$key` (the key itself), `context.evidence[0]` (fields.ts). */
  readonly field: string;
  readonly text: string;
  /** Set on a joined view of sibling strings: which field each piece is (a finding is reported on the first field it touches). */
  readonly parts?: readonly JoinedPart[];
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
  /** Some agent text holds a bidi override, embedding or isolate: what a reader sees is not the order the screen read. */
  readonly bidi?: boolean;
  /** Why some text went unscreened when it was not the budget (the screening worker timed out or failed). */
  readonly unscreened?: string;
}

/** The most texts (strings, keys, joined views) one request's walk yields; past it the request is over budget. */
export const MAX_SCREENED_FIELDS = 2_000;
/** Findings kept in the assessment (the card and the audit); the score and action still count all of them. */
export const MAX_RECORDED_FINDINGS = 50;
const MAX_DEPTH = 64;
/** A sibling longer than twice this joins the view by its head and tail only (its middle is screened on its own). */
const JOIN_EDGE = 200;
/** Bidi overrides, embeddings and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI). One class: linear. */
const BIDI_REORDER = /[\u202A-\u202E\u2066-\u2069]/u;

/**
 * Strings and keys of `context` that the create schema fixes (enums, ATT&CK ids, its own field
 * names): not agent prose, so not screened. Everything else in `context` is (it is a loose object:
 * extras are kept and shown under "Other context").
 */
const CONTEXT_KEYS = new Set(['target', 'evidence', 'blastRadius', 'attack', 'relatedIncidents', 'value', 'reversible', 'timeSensitivity', 'threatScore']);
const CONTEXT_NESTED_KEYS = new Set(['name', 'id', 'type', 'criticality', 'summary', 'source', 'scope', 'count', 'description']);
const CONTEXT_ENUMS = new Set(['context.attack', 'context.blastRadius', 'context.blastRadius.scope', 'context.target.criticality']);

type Body = {
  description?: string | undefined;
  args?: unknown;
  context?: unknown;
  alternatives?: readonly { name?: string | undefined; description?: string | undefined; args?: unknown }[] | undefined;
  approvers?: readonly { group?: string | undefined; operator?: string | undefined }[] | undefined;
  idempotencyKey?: string | undefined;
};

/**
 * Every agent-written string of a create body, in screening order: each string leaf, each object
 * key (as a text of its own, path ending `.$key`), and for each array or object a joined view of
 * its direct strings (keys and values, space-separated), so an injection cut one word per leaf
 * still reads as one sentence. Stops (and says so) after `MAX_SCREENED_FIELDS` texts or at
 * nesting deeper than 64, so a hostile body cannot make the walk itself the cost.
 */
export function requestTexts(body: Body): { texts: RequestText[]; complete: boolean } {
  const texts: RequestText[] = [];
  let complete = true;
  const push = (t: RequestText): void => {
    if (texts.length >= MAX_SCREENED_FIELDS) complete = false;
    else texts.push({ ...t, field: boundPath(t.field) });
  };
  const join = (field: string, members: { field: string; text: string }[]): void => {
    if (members.length < 2) return;
    const parts: JoinedPart[] = [];
    let view = '';
    const add = (f: string, text: string, from: number): void => {
      if (view.length > 0) view += ' ';
      parts.push({ field: boundPath(f), at: view.length, len: text.length, from });
      view += text;
    };
    for (const m of members) {
      if (m.text.length <= 2 * JOIN_EDGE) add(m.field, m.text, 0);
      else {
        add(m.field, m.text.slice(0, JOIN_EDGE), 0);
        add(m.field, m.text.slice(-JOIN_EDGE), m.text.length - JOIN_EDGE);
      }
    }
    push({ field, text: view, parts });
  };
  const inContext = (field: string): boolean => field === 'context' || field.startsWith('context.') || field.startsWith('context[');
  const walk = (value: unknown, field: string, depth: number): void => {
    if (!complete) return;
    if (depth > MAX_DEPTH) {
      complete = false;
      return;
    }
    if (typeof value === 'string') {
      if (value.trim().length > 0 && !CONTEXT_ENUMS.has(field)) push({ field, text: value });
      return;
    }
    const members: { field: string; text: string }[] = [];
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length && complete; i++) {
        const child = `${field}${pathStep(i)}`;
        const v: unknown = value[i];
        if (typeof v === 'string' && CONTEXT_ENUMS.has(field)) continue; // context.attack: ATT&CK ids
        walk(v, child, depth + 1);
        if (typeof v === 'string' && v.trim().length > 0 && !CONTEXT_ENUMS.has(field)) members.push({ field: child, text: v });
      }
    } else if (value !== null && typeof value === 'object') {
      const schemaKeys = field === 'context' ? CONTEXT_KEYS : inContext(field) ? CONTEXT_NESTED_KEYS : undefined;
      for (const [k, v] of Object.entries(value)) {
        if (!complete) break;
        const child = `${field}${pathStep(k)}`;
        if (k.trim().length > 0 && !schemaKeys?.has(k)) {
          push({ field: keyPath(child), text: k });
          members.push({ field: keyPath(child), text: k });
        }
        walk(v, child, depth + 1);
        if (typeof v === 'string' && v.trim().length > 0 && !CONTEXT_ENUMS.has(child)) members.push({ field: child, text: v });
      }
    } else return;
    if (complete) join(field, members);
  };
  if (body.description !== undefined) walk(body.description, 'description', 0);
  if (body.args !== undefined) walk(body.args, 'args', 0);
  if (body.context !== undefined) walk(body.context, 'context', 0);
  for (const [i, alt] of (body.alternatives ?? []).entries()) {
    if (alt.name !== undefined) walk(alt.name, `alternatives[${i}].name`, 0);
    if (alt.description !== undefined) walk(alt.description, `alternatives[${i}].description`, 0);
    if (alt.args !== undefined) walk(alt.args, `alternatives[${i}].args`, 0);
  }
  for (const [i, a] of (body.approvers ?? []).entries()) {
    if (a.group !== undefined) walk(a.group, `approvers[${i}].group`, 0);
    if (a.operator !== undefined) walk(a.operator, `approvers[${i}].operator`, 0);
  }
  if (body.idempotencyKey !== undefined) walk(body.idempotencyKey, 'idempotencyKey', 0);
  return { texts, complete };
}

/** A finding on a joined view, reported on the first field its span touches (span clamped to that field's piece). */
function mapJoined(parts: readonly JoinedPart[], span: Span): { field: string; span: Span } {
  let p = parts[0] as JoinedPart;
  for (const q of parts) {
    if (q.at + q.len > span.start) {
      p = q;
      break;
    }
  }
  const start = p.from + Math.max(0, Math.min(p.len, span.start - p.at));
  const end = Math.max(start, p.from + Math.max(0, Math.min(p.len, span.end - p.at)));
  return { field: p.field, span: { start, end } };
}

/** Screen a create body's text within the budget. */
export function screenRequestText(body: Body, model: ScreenModel, config: ScreeningConfig): RequestScreening {
  const { texts, complete } = requestTexts(body);
  let budget = config.maxBytes;
  let score = 0;
  let action: ScreenAction = 'allow';
  let severity: Severity = 'none';
  let screenedFields = 0;
  let screenedChars = 0;
  let overBudget = !complete;
  let bidi = false;
  const findings: RequestFinding[] = [];
  for (const t of texts) {
    if (budget <= 0) {
      overBudget = true;
      break;
    }
    // Only the share that fits is screened (screen() cuts at its own maxBytes and reports it).
    const take = Math.min(budget, t.text.length);
    if (!t.parts && BIDI_REORDER.test(t.text.slice(0, take))) bidi = true;
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
      if (findings.length >= MAX_RECORDED_FINDINGS) continue;
      const where = t.parts ? mapJoined(t.parts, f.span) : { field: t.field, span: f.span };
      findings.push({ field: where.field, kind: f.kind, span: where.span, score: f.score, why: f.why });
    }
    if (ACTION_RANK[r.action] > ACTION_RANK[action]) action = r.action;
    if (SEVERITY_RANK[r.severity] > SEVERITY_RANK[severity]) severity = r.severity;
  }
  if (overBudget && ACTION_RANK[config.overBudget] > ACTION_RANK[action]) action = config.overBudget;
  if (overBudget && SEVERITY_RANK[severity] < 1) severity = 'low';
  if (bidi && ACTION_RANK.review > ACTION_RANK[action]) action = 'review';
  if (bidi && SEVERITY_RANK[severity] < 1) severity = 'low';
  return { score, action, severity, findings, screenedFields, screenedChars, overBudget, ...(bidi ? { bidi } : {}) };
}

/** The implicit rule a screening finding is reported as. */
export const SCREENING_RULE = 'prompt-injection';
/** The implicit rule reported when agent text holds bidi reordering controls. */
export const SCREENING_BIDI_RULE = 'screening-bidi';
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
    // Counts only: the field paths hold the agent's keys, and this reason is server-authored text (review C3).
    const fields = new Set(s.findings.map((f) => f.field)).size;
    out.push({
      rule: SCREENING_RULE,
      route: e.route,
      ...(e.raiseRisk !== undefined ? { raiseRisk: e.raiseRisk } : {}),
      reason: `agent text scores ${s.score.toFixed(2)} for prompt injection (screen action ${modelAction})${fields > 0 ? ` in ${fields} field${fields === 1 ? '' : 's'}` : ''}`,
    });
  }
  if (s.bidi) {
    // What a reader sees is not the order the screen read: a person looks (review B4).
    out.push({ rule: SCREENING_BIDI_RULE, route: 'review', reason: 'agent text holds bidirectional override, embedding or isolate controls: what is displayed is not the order it was screened in' });
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

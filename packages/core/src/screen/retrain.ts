/**
 * The periodic retrain from reviewers' verdicts, and its evaluation gate. Pure and
 * deterministic: the committed documents plus the accepted verdicts (after `acceptVerdicts`'
 * caps, learn.ts) give one candidate model, byte for byte, whatever order they come in.
 *
 * Every retrain starts from the committed data, never from the last adopted model, so verdicts
 * cannot ratchet the model a little further each day: what moves it is the verdicts of the
 * window, each reviewer's weighing at most `maxWeightPerSource` documents in all.
 *
 * The gate runs the committed grouped-fold evaluation (evaluate.ts, what `npm run eval:screen`
 * and the CI floors run) twice — without the verdicts (the frozen baseline: the committed
 * model's own numbers) and with them in every fold's training (the candidate) — and refuses a
 * candidate that is worse than the baseline on any set by more than `tolerance`, or past any
 * committed floor. The report says, per set, what changed.
 *
 *   const { model, report } = retrain({ docs, examples, tolerance: 0.01 });
 *   if (report.accepted) adopt(model);
 */
import { fnv1a } from './bytes.ts';
import { EVAL_FLOORS, EVAL_THRESHOLD, perSet, runScheme, schemes as committedSchemes, type Scheme } from './evaluate.ts';
import { sparseFeatures } from './features.ts';
import { evaluationGate, type ModelSummary, type WeightedVerdict } from './learn.ts';
import { loadModel, type SerializedModel } from './model.ts';
import { RULE_KINDS } from './rules.ts';
import { resolveScreening, type ScreeningConfig } from './schema.ts';
import { screen } from './screen.ts';
import { DEFAULT_TRAIN, labelledSegments, trainModel, type Sample, type TrainingDoc, type TrainOptions } from './train.ts';
import type { Channel } from './types.ts';

/** One accepted verdict with the text it judged: what the retrain learns from. */
export interface VerdictExample {
  /** Unique and stable (reviewer and item): the order examples are used in. */
  readonly key: string;
  readonly channel: Channel;
  /** The judged text (the flagged span). */
  readonly text: string;
  readonly injection: boolean;
  /** The verdict's weight after acceptVerdicts' caps, in (0, 1]. */
  readonly weight: number;
  /** Who gave the verdict (corroboration counts distinct reviewers). */
  readonly reviewer: string;
}

/** Distinct reviewers who must agree that a text is not an injection before that verdict teaches. */
export const MIN_AGREEING_REVIEWERS = 2;

/** The longest judged text a verdict may teach with (a finding's span is far shorter). */
export const MAX_EXAMPLE_CHARS = 4_096;

/**
 * Accepted verdicts (acceptVerdicts' output) → examples, with the text each judged
 * (`textOf(itemId)`; undefined when it is gone, then the verdict is left out and counted).
 */
export function verdictExamples(accepted: readonly WeightedVerdict[], textOf: (itemId: string) => string | undefined): { examples: VerdictExample[]; missing: number } {
  const examples: VerdictExample[] = [];
  let missing = 0;
  for (const v of accepted) {
    const text = textOf(v.itemId);
    if (text === undefined || text.trim() === '') {
      missing++;
      continue;
    }
    if (!(v.weight > 0 && v.weight <= 1)) throw new RangeError(`verdict weight ${v.weight} on ${v.itemId} is outside (0, 1]`);
    examples.push({ key: `${v.reviewer}\u0000${v.itemId}`, channel: v.channel, text: text.slice(0, MAX_EXAMPLE_CHARS), injection: v.injection, weight: v.weight, reviewer: v.reviewer });
  }
  return { examples, missing };
}

/**
 * The examples a retrain learns from. A "not injection" verdict teaches the screen to let text
 * through, so one reviewer's word on one text is not enough (a careless, compromised or
 * colluding account would otherwise teach a chosen attack away): it teaches only when at least
 * MIN_AGREEING_REVIEWERS distinct reviewers judged the same text (same channel, same bytes) not
 * an injection and no accepted verdict calls that text an injection. "Injection" verdicts teach
 * on one reviewer's word: they can only make the screen stricter, which the gate's
 * false-positive sets measure.
 */
export function teachingExamples(examples: readonly VerdictExample[]): { teaching: VerdictExample[]; uncorroborated: number } {
  const textKey = (e: VerdictExample): string => `${e.channel}\u0000${e.text}`;
  const benignBy = new Map<string, Set<string>>();
  const confirmed = new Set<string>();
  for (const e of examples) {
    if (e.injection) confirmed.add(textKey(e));
    else {
      const s = benignBy.get(textKey(e)) ?? new Set<string>();
      s.add(e.reviewer);
      benignBy.set(textKey(e), s);
    }
  }
  const teaching: VerdictExample[] = [];
  let uncorroborated = 0;
  for (const e of examples) {
    const k = textKey(e);
    if (e.injection || (!confirmed.has(k) && (benignBy.get(k)?.size ?? 0) >= MIN_AGREEING_REVIEWERS)) teaching.push(e);
    else uncorroborated++;
  }
  return { teaching, uncorroborated };
}

function sortedExamples(examples: readonly VerdictExample[]): VerdictExample[] {
  const seen = new Set<string>();
  for (const e of examples) {
    if (seen.has(e.key)) throw new RangeError(`two verdict examples share the key ${JSON.stringify(e.key)}`);
    seen.add(e.key);
    if (!(e.weight > 0 && e.weight <= 1)) throw new RangeError(`verdict example ${JSON.stringify(e.key)} has weight ${e.weight}, outside (0, 1]`);
  }
  return [...examples].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * The training samples of one channel's examples. A judged text is cut into segments exactly as
 * training documents are (a benign text: every segment benign; an injection: the segments
 * training labels as carrying it), and its weight is shared among them: one verdict weighs at
 * most its capped weight however long the text.
 */
export function verdictSamples(examples: readonly VerdictExample[], channel: Channel): Sample[] {
  const out: Sample[] = [];
  for (const e of sortedExamples(examples)) {
    if (e.channel !== channel) continue;
    const doc: TrainingDoc = { id: e.key, set: 'verdict', channel, label: e.injection ? 1 : 0, text: e.text, groups: {} };
    const segs = labelledSegments(doc, channel);
    for (const s of segs) {
      const f = sparseFeatures(s.segment.text, s.segment.flags);
      out.push({ index: f.index, value: f.value, y: s.y, weight: e.weight / segs.length });
    }
  }
  return out;
}

function samplesByChannel(examples: readonly VerdictExample[]): Record<Channel, Sample[]> {
  return { user: verdictSamples(examples, 'user'), content: verdictSamples(examples, 'content') };
}

/** The candidate's version: the base version and a digest of what it learnt from. */
export function retrainVersion(base: string, examples: readonly VerdictExample[]): string {
  const digest = fnv1a(JSON.stringify(sortedExamples(examples).map((e) => [e.key, e.channel, e.text, e.injection, e.weight])));
  return `${base}+r${examples.length}.${digest.toString(16).padStart(8, '0')}`;
}

/** Committed documents + examples → the candidate model. Same inputs, in any order: the same bytes. */
export function retrainModel(docs: readonly TrainingDoc[], examples: readonly VerdictExample[], options: { baseVersion: string; train?: TrainOptions }): SerializedModel {
  return trainModel(docs, retrainVersion(options.baseVersion, examples), options.train ?? DEFAULT_TRAIN, samplesByChannel(examples));
}

/** Per `scheme / set`: the grouped-fold recall or false-positive rate at `threshold`. */
export function evaluationSummary(
  docs: readonly TrainingDoc[],
  examples: readonly VerdictExample[],
  options: { schemes?: readonly Scheme[]; threshold?: number; train?: TrainOptions } = {},
): ModelSummary {
  const extra = samplesByChannel(examples);
  const out: Record<string, { kind: 'recall' | 'fpr'; value: number }> = {};
  for (const scheme of options.schemes ?? committedSchemes(docs)) {
    const result = runScheme(docs, scheme, options.train ?? DEFAULT_TRAIN, extra[scheme.channel]);
    for (const m of perSet(result, options.threshold ?? EVAL_THRESHOLD)) out[`${scheme.name} / ${m.set}`] = { kind: m.kind, value: m.value };
  }
  return out;
}

/** The committed floors (EVAL_FLOORS) as evaluationGate's `scheme / set → bound`. */
export function gateFloors(table: typeof EVAL_FLOORS = EVAL_FLOORS): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [scheme, sets] of Object.entries(table)) {
    for (const [set, f] of Object.entries(sets)) {
      const bound = f.recall ?? f.fpr;
      if (bound !== undefined) out[`${scheme} / ${set}`] = bound;
    }
  }
  return out;
}

export interface RetrainSetReport {
  readonly set: string;
  readonly kind: 'recall' | 'fpr';
  readonly baseline: number;
  readonly candidate: number;
  /** candidate − baseline (for recall, up is better; for FPR, down is). */
  readonly delta: number;
  readonly floor: number | null;
  readonly ok: boolean;
  readonly reasons: readonly string[];
}

export interface RetrainReport {
  readonly accepted: boolean;
  readonly tolerance: number;
  /** `uncorroborated`: "not injection" verdicts left out (teachingExamples); `weight`: of the ones that taught. */
  readonly examples: { readonly total: number; readonly injection: number; readonly benign: number; readonly weight: number; readonly uncorroborated: number };
  readonly sets: readonly RetrainSetReport[];
  /** Refusals not tied to one set: nothing evaluated, floors of sets not evaluated, judged texts the candidate lets through. */
  readonly guards: readonly string[];
  /** One line: why it was refused, or that it passed. */
  readonly reason: string;
}

/**
 * The judged texts a candidate must not let through: every text of `examples` that an accepted
 * verdict calls an injection, or that a rule fires on under the baseline model, which the
 * baseline flags (any action but allow) and the candidate allows. Aggregate recall on the
 * committed sets cannot see a targeted backdoor on one text; this can. Returns one line each.
 */
export function flippedToAllow(
  examples: readonly VerdictExample[],
  baseline: SerializedModel,
  candidate: SerializedModel,
  config: ScreeningConfig = resolveScreening({}),
): string[] {
  const base = loadModel(baseline);
  const cand = loadModel(candidate);
  const rules = new Set<string>(RULE_KINDS);
  const texts = new Map<string, { channel: Channel; text: string; confirmed: boolean }>();
  for (const e of sortedExamples(examples)) {
    const k = `${e.channel}\u0000${e.text}`;
    const t = texts.get(k) ?? { channel: e.channel, text: e.text, confirmed: false };
    if (e.injection) t.confirmed = true;
    texts.set(k, t);
  }
  const out: string[] = [];
  for (const t of texts.values()) {
    const input = t.channel === 'user' ? { text: t.text, channel: t.channel } : { content: t.text, channel: t.channel };
    const before = screen(input, base, config);
    if (before.action === 'allow') continue;
    const ruled = before.findings.some((f) => rules.has(f.kind));
    if (!t.confirmed && !ruled) continue;
    const after = screen(input, cand, config);
    if (after.action !== 'allow') continue;
    const why = t.confirmed ? 'confirmed as an injection by an accepted verdict' : `a rule fires on it (${before.findings.filter((f) => rules.has(f.kind)).map((f) => f.kind).join(', ')})`;
    out.push(`the candidate allows a ${t.channel} text the baseline flags (${before.action}, ${before.score} → ${after.score}), ${why}: ${JSON.stringify(t.text.slice(0, 80))}`);
  }
  return out;
}

/** The gate over two summaries (evaluationGate), reported per set; `flips` (flippedToAllow) refuse too. */
export function gateReport(
  candidate: ModelSummary,
  baseline: ModelSummary,
  options: { tolerance: number; floors?: Readonly<Record<string, number>>; examples?: readonly VerdictExample[]; uncorroborated?: number; flips?: readonly string[] },
): RetrainReport {
  if (!(options.tolerance >= 0 && options.tolerance < 1)) throw new RangeError('tolerance must be in [0, 1)');
  const floors = options.floors ?? {};
  const gate = evaluationGate(candidate, baseline, { tolerance: options.tolerance, floors });
  const bySet = new Map<string, string[]>();
  for (const r of gate.regressions) bySet.set(r.set, [...(bySet.get(r.set) ?? []), r.reason]);
  const sets = Object.keys(baseline)
    .sort()
    .map((set): RetrainSetReport => {
      const b = baseline[set] as { kind: 'recall' | 'fpr'; value: number };
      const c = candidate[set]?.value ?? Number.NaN;
      const reasons = bySet.get(set) ?? [];
      return { set, kind: b.kind, baseline: b.value, candidate: c, delta: c - b.value, floor: floors[set] ?? null, ok: reasons.length === 0, reasons };
    });
  const guards = [
    ...gate.regressions.filter((r) => !(r.set in baseline)).map((r) => `${r.set}: ${r.reason}`),
    ...(options.flips ?? []),
  ];
  const ex = options.examples ?? [];
  const worst = sets.filter((s) => !s.ok);
  const accepted = gate.accepted && guards.length === 0;
  return {
    accepted,
    tolerance: options.tolerance,
    examples: {
      total: ex.length,
      injection: ex.filter((e) => e.injection).length,
      benign: ex.filter((e) => !e.injection).length,
      weight: ex.reduce((s, e) => s + e.weight, 0),
      uncorroborated: options.uncorroborated ?? 0,
    },
    sets,
    guards,
    reason: accepted
      ? `no set is worse than the frozen baseline by more than ${options.tolerance}, every floor holds (${sets.length} sets), and no judged attack is let through`
      : `refused: ${[...worst.map((s) => `${s.set} ${s.kind} ${s.baseline.toFixed(4)} → ${s.candidate.toFixed(4)} (${s.reasons.join('; ')})`), ...guards].join(', ')}`,
  };
}

export interface RetrainInput {
  readonly docs: readonly TrainingDoc[];
  readonly examples: readonly VerdictExample[];
  readonly baseVersion: string;
  readonly tolerance: number;
  /** Default: the committed floors (EVAL_FLOORS). */
  readonly floors?: Readonly<Record<string, number>>;
  /** Default: the committed grouped folds of `docs` (evaluate.ts `schemes`). */
  readonly schemes?: readonly Scheme[];
  /** The frozen baseline's summary, when the caller has it already (it depends only on the docs and the code). */
  readonly baseline?: ModelSummary;
  /** The frozen baseline model (the committed one) for the flip check; default: trained from `docs` without verdicts. */
  readonly baselineModel?: SerializedModel;
  /** The screening settings the flip check routes with (default: the default policy's). */
  readonly screening?: ScreeningConfig;
  readonly train?: TrainOptions;
}

/**
 * The whole retrain: the candidate model, and the gate's verdict on it against the frozen
 * baseline. Only the corroborated examples teach (teachingExamples); the gate also refuses a
 * candidate that lets through a judged text the baseline flags (flippedToAllow), checked over
 * every example given, taught or not. The model is returned either way (a refused one is for
 * the report, never for use).
 */
export function retrain(input: RetrainInput): { model: SerializedModel; report: RetrainReport; baseline: ModelSummary } {
  const opts = { ...(input.schemes ? { schemes: input.schemes } : {}), ...(input.train ? { train: input.train } : {}) };
  const { teaching, uncorroborated } = teachingExamples(input.examples);
  const baseline = input.baseline ?? evaluationSummary(input.docs, [], opts);
  const candidate = evaluationSummary(input.docs, teaching, opts);
  const train = input.train ? { train: input.train } : {};
  const model = retrainModel(input.docs, teaching, { baseVersion: input.baseVersion, ...train });
  const baseModel = input.baselineModel ?? retrainModel(input.docs, [], { baseVersion: input.baseVersion, ...train });
  const flips = flippedToAllow(input.examples, baseModel, model, input.screening);
  const report = gateReport(candidate, baseline, { tolerance: input.tolerance, floors: input.floors ?? gateFloors(), examples: teaching, uncorroborated, flips });
  return { model, report, baseline };
}

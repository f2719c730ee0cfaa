/**
 * Training (moved here from tools/screen so `npm run train:screen` and the server's periodic
 * retrain run one piece of code): documents → labelled segments (cut by core's own `prepare`, so training sees what
 * screening sees) → logistic regression (AdaGrad, L2, seeded order) → Platt scaling fitted on
 * out-of-fold document scores from a grouped cross-fit. Deterministic: no clock, no
 * unseeded randomness, sorted iteration everywhere.
 */
import { FEATURE_DIM, HASH_DIM, sparseFeatures } from './features.ts';
import { fnv1a } from './bytes.ts';
import { loadModel, serializeModel, type ChannelModel, type ScreenModel, type SerializedModel } from './model.ts';
import { prepare, type Segment } from './screen.ts';
import type { Channel } from './types.ts';
import { mulberry32, shuffle } from './prng.ts';

/** One labelled training document (tools/screen/data.ts builds them from data/prompt-injection). */
export interface TrainingDoc {
  readonly id: string;
  /** The evaluation set it belongs to (`deepset`, `notinject`, …). */
  readonly set: string;
  readonly channel: Channel;
  readonly label: 0 | 1;
  readonly text: string;
  /** For planted attacks: the attack text, to label which segments carry it. */
  readonly attack?: string;
  /** Group keys the folds hold out: instr, tool, category, position, subset, fold, family. */
  readonly groups: Readonly<Record<string, string>>;
}
type Doc = TrainingDoc;

export interface Sample {
  readonly index: Int32Array;
  readonly value: Float32Array;
  readonly y: 0 | 1;
  /** How much this sample counts (default 1): a reviewer verdict's capped weight, spread over its segments. */
  readonly weight?: number;
}

export interface TrainOptions {
  readonly epochs: number;
  readonly l2: number;
  readonly lr: number;
  readonly seed: number;
  /** Grouped cross-fit folds for Platt scaling. */
  readonly calibrationFolds: number;
  /**
   * The share of inputs assumed to carry an injection where the model is deployed. Platt is fitted
   * with both classes weighted equally, then shifted to this prior, so the score is a probability
   * under a stated base rate rather than under the arbitrary mix of the training sets.
   */
  readonly prior: Readonly<Record<Channel, number>>;
}

export const DEFAULT_TRAIN: TrainOptions = { epochs: 6, l2: 3e-3, lr: 0.3, seed: 20261201, calibrationFolds: 3, prior: { user: 0.05, content: 0.05 } };

/** Does this segment carry the planted attack, clearly not, or partly (then it is not used)? */
function attackLabel(seg: Segment, attack: string): 0 | 1 | null {
  const t = seg.text;
  const key = attack.split('\n')[0]!.trim().slice(0, 40);
  if (key.length >= 10 && t.includes(key)) return 1;
  if (t.length >= 25 && attack.includes(t.trim())) return 1;
  const head = t.trim().slice(0, 15);
  if ((head.length >= 8 && attack.includes(head)) || t.includes(attack.slice(0, 15))) return null;
  return 0;
}

/** A user-channel attack also counts as content: an override in a tool output is an attack too. */
const contentCopies = new WeakMap<Doc, Doc>();
function asContent(doc: Doc): Doc {
  let c = contentCopies.get(doc);
  if (!c) {
    c = { ...doc, channel: 'content', text: JSON.stringify({ note: doc.text }) };
    contentCopies.set(doc, c);
  }
  return c;
}

/** Segments of a document with their training labels (null = ambiguous, left out). */
export function labelledSegments(doc: Doc, channel: Channel): { segment: Segment; y: 0 | 1 }[] {
  const out: { segment: Segment; y: 0 | 1 }[] = [];
  const p = prepare({ text: doc.text }, channel);
  for (const segment of p.segments) {
    let y: 0 | 1 | null;
    if (doc.label === 0) y = 0;
    else if (doc.attack !== undefined) y = segment.source === 'decoded' ? 1 : attackLabel(segment, doc.attack);
    else if (channel === 'user') y = segment.source === 'whole' || segment.source === 'decoded' ? 1 : null;
    else y = segment.source === 'leaf' || segment.source === 'decoded' ? 1 : null;
    if (y !== null) out.push({ segment, y });
  }
  return out;
}

/** The documents a channel's model learns from. */
export function channelDocs(docs: readonly Doc[], channel: Channel): Doc[] {
  if (channel === 'user') return docs.filter((d) => d.channel === 'user');
  return [...docs.filter((d) => d.channel === 'content'), ...docs.filter((d) => d.channel === 'user' && d.label === 1).map(asContent)];
}

interface Prepped {
  /** Labelled training samples with their dedup keys. */
  readonly labelled: readonly { key: string; sample: Sample }[];
  /** Features of every segment, for document scores. */
  readonly segments: readonly { index: Int32Array; value: Float32Array }[];
}

/**
 * Segmentation and features are the slow part; each document is prepared once per channel. Keyed
 * by the document object (not its id), so two callers' documents never share an entry and the
 * cache goes when the documents do.
 */
const cache: Record<Channel, WeakMap<Doc, Prepped>> = { user: new WeakMap(), content: new WeakMap() };

function prepped(doc: Doc, channel: Channel): Prepped {
  const hit = cache[channel].get(doc);
  if (hit) return hit;
  const labelled = labelledSegments(doc, channel).map((s) => {
    const f = sparseFeatures(s.segment.text, s.segment.flags);
    const key = `${s.y}\u0000${s.segment.flags.decoded ? 1 : 0}${s.segment.flags.obfuscation}\u0000${s.segment.text}`;
    return { key, sample: { index: f.index, value: f.value, y: s.y } };
  });
  const segments = prepare({ text: doc.text }, channel).segments.map((seg) => sparseFeatures(seg.text, seg.flags));
  const p = { labelled, segments };
  cache[channel].set(doc, p);
  return p;
}

/** Deduplicated samples, in a stable order (sorted by key). */
export function samplesFor(docs: readonly Doc[], channel: Channel): Sample[] {
  const seen = new Map<string, Sample>();
  for (const d of docs) for (const { key, sample } of prepped(d, channel).labelled) if (!seen.has(key)) seen.set(key, sample);
  return [...seen.keys()].sort().map((k) => seen.get(k) as Sample);
}

/** Logistic regression by AdaGrad with lazy L2 and balanced class weights. */
export function fitLogistic(samples: readonly Sample[], opt: TrainOptions): { bias: number; weights: Float64Array } {
  const w = new Float64Array(FEATURE_DIM);
  const g2 = new Float64Array(FEATURE_DIM).fill(1e-8);
  let bias = 0;
  let gb = 1e-8;
  // Class totals by weight (with every weight 1 these are the counts, exactly: the committed model does not move).
  let pos = 0;
  let neg = 0;
  for (const s of samples) {
    if (s.y === 1) pos += s.weight ?? 1;
    else neg += s.weight ?? 1;
  }
  const total = pos + neg;
  const wPos = pos > 0 ? total / (2 * pos) : 1;
  const wNeg = neg > 0 ? total / (2 * neg) : 1;
  const rand = mulberry32(opt.seed);
  const order = samples.map((_, i) => i);
  for (let epoch = 0; epoch < opt.epochs; epoch++) {
    for (const i of shuffle(rand, order)) {
      const s = samples[i] as Sample;
      let z = bias;
      for (let k = 0; k < s.index.length; k++) z += (w[s.index[k] as number] as number) * (s.value[k] as number);
      const p = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
      const err = (p - s.y) * (s.y === 1 ? wPos : wNeg);
      // A sample's weight scales its step, not its gradient: AdaGrad divides a gradient by its own
      // history, so scaled-down gradients of a flood of light samples would still take full
      // steps. With weight 1 the arithmetic is exactly the unweighted one (lr · 1 = lr).
      const lr = opt.lr * (s.weight ?? 1);
      for (let k = 0; k < s.index.length; k++) {
        const j = s.index[k] as number;
        // L2 on the hashed n-grams only: the few cue weights should carry what generalises.
        const g = err * (s.value[k] as number) + (j < HASH_DIM ? opt.l2 * (w[j] as number) : 0);
        g2[j] = (g2[j] as number) + g * g;
        w[j] = (w[j] as number) - (lr * g) / Math.sqrt(g2[j] as number);
      }
      gb += err * err;
      bias -= (lr * err) / Math.sqrt(gb);
    }
  }
  return { bias, weights: w };
}

/** Platt scaling by Newton's method, with Platt's smoothed targets. */
export function fitPlatt(scores: readonly number[], labels: readonly (0 | 1)[], prior = 0.5): { a: number; b: number } {
  const pos = labels.filter((y) => y === 1).length;
  const neg = labels.length - pos;
  // Equal total weight per class: the fit is at a prior of one half, shifted to `prior` at the end.
  const wPos = pos > 0 ? labels.length / (2 * pos) : 1;
  const wNeg = neg > 0 ? labels.length / (2 * neg) : 1;
  const tPos = (pos + 1) / (pos + 2);
  const tNeg = 1 / (neg + 2);
  let a = 1;
  let b = 0;
  for (let it = 0; it < 100; it++) {
    let ga = 0;
    let gb = 0;
    let haa = 1e-9;
    let hab = 0;
    let hbb = 1e-9;
    for (let i = 0; i < scores.length; i++) {
      const x = scores[i] as number;
      const t = labels[i] === 1 ? tPos : tNeg;
      const wi = labels[i] === 1 ? wPos : wNeg;
      const z = a * x + b;
      const p = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
      const d = (p - t) * wi;
      ga += d * x;
      gb += d;
      const h = p * (1 - p) * wi;
      haa += h * x * x;
      hab += h * x;
      hbb += h;
    }
    const det = haa * hbb - hab * hab;
    if (Math.abs(det) < 1e-12) break;
    const da = (hbb * ga - hab * gb) / det;
    const db = (haa * gb - hab * ga) / det;
    a -= da;
    b -= db;
    if (Math.abs(da) < 1e-10 && Math.abs(db) < 1e-10) break;
  }
  return { a, b: b + Math.log(prior / (1 - prior)) };
}

/** The group a document is cross-fitted by: whole attack families and tools stay together. */
function cvGroup(d: Doc): string {
  const g = d.groups;
  return g['instr'] ?? g['family'] ?? g['category'] ?? g['tool'] ?? g['subset'] ?? g['fold'] ?? d.id;
}

/** Highest raw logit over a document's segments under a float model. */
export function docLogit(model: { bias: number; weights: Float64Array }, doc: Doc, channel: Channel): number {
  let best = -Infinity;
  for (const f of prepped(doc, channel).segments) {
    let z = model.bias;
    for (let k = 0; k < f.index.length; k++) z += (model.weights[f.index[k] as number] as number) * (f.value[k] as number);
    if (z > best) best = z;
  }
  return best === -Infinity ? model.bias : best;
}

/**
 * Train one channel: cross-fit for Platt, then the final fit on everything. `extra` samples (the
 * retrain's reviewer verdicts, core retrain.ts) join every fit after the documents' samples; they
 * are never held out and never scored for calibration.
 */
export function trainChannel(
  docs: readonly Doc[],
  channel: Channel,
  opt: TrainOptions = DEFAULT_TRAIN,
  extra: readonly Sample[] = [],
): { bias: number; weights: Float64Array; plattA: number; plattB: number } {
  const withExtra = (s: Sample[]): Sample[] => (extra.length > 0 ? [...s, ...extra] : s);
  const cd = channelDocs(docs, channel);
  const K = opt.calibrationFolds;
  const oofScores: number[] = [];
  const oofLabels: (0 | 1)[] = [];
  for (let k = 0; k < K; k++) {
    const train = cd.filter((d) => fnv1a(cvGroup(d)) % K !== k);
    const held = cd.filter((d) => fnv1a(cvGroup(d)) % K === k);
    const m = fitLogistic(withExtra(samplesFor(train, channel)), opt);
    for (const d of held) {
      oofScores.push(docLogit(m, d, channel));
      oofLabels.push(d.label);
    }
  }
  const { a, b } = fitPlatt(oofScores, oofLabels, opt.prior[channel]);
  const final = fitLogistic(withExtra(samplesFor(cd, channel)), opt);
  return { bias: final.bias, weights: final.weights, plattA: a, plattB: b };
}

/** Train both channels and serialise (`extra`: per-channel samples added to every fit, see trainChannel). */
export function trainModel(
  docs: readonly Doc[],
  version: string,
  opt: TrainOptions = DEFAULT_TRAIN,
  extra: Readonly<Record<Channel, readonly Sample[]>> = { user: [], content: [] },
): SerializedModel {
  return serializeModel(version, { user: trainChannel(docs, 'user', opt, extra.user), content: trainChannel(docs, 'content', opt, extra.content) });
}

export function modelFromDocs(docs: readonly Doc[], opt: TrainOptions = DEFAULT_TRAIN): ScreenModel {
  return loadModel(trainModel(docs, 'fold', opt));
}

/** The generated module's text: the serialised model as one frozen constant. */
export function modelModuleText(data: SerializedModel): string {
  return [
    '// Generated by `npm run train:screen` (tools/screen/train.ts) from data/prompt-injection. Do not edit.',
    "import type { SerializedModel } from './model.ts';",
    '',
    `export const DEFAULT_MODEL_DATA: SerializedModel = ${JSON.stringify(data, null, 1)};`,
    '',
  ].join('\n');
}

export type { ChannelModel };
export { HASH_DIM };

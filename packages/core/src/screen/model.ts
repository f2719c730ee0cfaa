/**
 * The linear models and their compact serialised form. A model is data handed to `screen()`,
 * never loaded by core: the default one is a generated module imported statically
 * (`model.generated.ts`, written by `npm run train:screen`), and a retrained or frozen baseline
 * model is passed in the same way.
 */
import { decodeBase64Bytes, encodeBase64Bytes } from './bytes.ts';
import { CUE_COUNT, HASH_BITS, HASH_DIM, visitFeatures, type SegmentFlags } from './features.ts';
import type { Channel } from './types.ts';

/** The committed model's version (`npm run train:screen` writes it into model.generated.ts; the determinism test checks they agree). */
export const COMMITTED_MODEL_VERSION = 'screen-2026.12-1';

/** One channel's model: logistic regression over hashed n-grams and cues, then Platt scaling. */
export interface ChannelModel {
  readonly bias: number;
  /** Hashed weights, int8, multiplied by `scale`. */
  readonly hashed: Int8Array;
  readonly scale: number;
  /** Cue weights, kept in full precision (few, and large). */
  readonly cues: Float64Array;
  /** Calibration: p = sigmoid(plattA · maxLogit + plattB). */
  readonly plattA: number;
  readonly plattB: number;
}

export interface ScreenModel {
  readonly version: string;
  readonly channels: Readonly<Record<Channel, ChannelModel>>;
}

/** The JSON-safe form written to `model.generated.ts`. */
export interface SerializedModel {
  readonly format: 'countersign-screen/1';
  readonly version: string;
  readonly hashBits: number;
  readonly channels: Readonly<
    Record<Channel, { bias: number; scale: number; cues: readonly number[]; plattA: number; plattB: number; hashed: string }>
  >;
}

/** Turn the serialised form into a model; throws on a model built for another feature layout. */
export function loadModel(data: SerializedModel): ScreenModel {
  if (data.format !== 'countersign-screen/1') throw new Error(`unknown screen model format ${String(data.format)}`);
  if (data.hashBits !== HASH_BITS) throw new Error(`screen model has ${data.hashBits} hash bits, this build uses ${HASH_BITS}`);
  const channel = (c: SerializedModel['channels'][Channel]): ChannelModel => {
    const bytes = decodeBase64Bytes(c.hashed);
    if (!bytes || bytes.length !== HASH_DIM) throw new Error('screen model weights have the wrong length');
    if (c.cues.length !== CUE_COUNT) throw new Error('screen model cue weights have the wrong length');
    return {
      bias: c.bias,
      hashed: new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length),
      scale: c.scale,
      cues: Float64Array.from(c.cues),
      plattA: c.plattA,
      plattB: c.plattB,
    };
  };
  return { version: data.version, channels: { user: channel(data.channels.user), content: channel(data.channels.content) } };
}

/** Quantise float weights to int8 with one scale; the inverse of `loadModel`. */
export function serializeModel(
  version: string,
  channels: Record<Channel, { bias: number; weights: Float64Array; plattA: number; plattB: number }>,
): SerializedModel {
  const one = (c: { bias: number; weights: Float64Array; plattA: number; plattB: number }) => {
    let max = 0;
    for (let k = 0; k < HASH_DIM; k++) max = Math.max(max, Math.abs(c.weights[k] as number));
    const scale = max > 0 ? max / 127 : 1;
    const q = new Int8Array(HASH_DIM);
    for (let k = 0; k < HASH_DIM; k++) q[k] = Math.max(-127, Math.min(127, Math.round((c.weights[k] as number) / scale)));
    return {
      bias: round(c.bias),
      scale: round(scale),
      cues: Array.from(c.weights.subarray(HASH_DIM, HASH_DIM + CUE_COUNT), round),
      plattA: round(c.plattA),
      plattB: round(c.plattB),
      hashed: encodeBase64Bytes(new Uint8Array(q.buffer)),
    };
  };
  return { format: 'countersign-screen/1', version, hashBits: HASH_BITS, channels: { user: one(channels.user), content: one(channels.content) } };
}

/** Nine significant digits: enough for the model, and stable text across platforms. */
function round(x: number): number {
  return Number(x.toPrecision(9));
}

/**
 * Scratch for de-duplicating a segment's hashed features without allocating: `stamp[k] === gen`
 * means feature k was already counted for the current segment. Module state, but not shared
 * across calls in any observable way (JavaScript runs one call at a time; `gen` only grows).
 */
const stamp = new Uint32Array(HASH_DIM);
let gen = 0;

/**
 * The raw (uncalibrated) logit of one segment. Features are binary and L2-normalised over the
 * distinct ones: repeating a sentence a thousand times must not make it a thousand times surer.
 */
export function segmentLogit(model: ChannelModel, text: string, flags: SegmentFlags, cues: Float64Array): number {
  let sum = 0;
  let count = 0;
  const w = model.hashed;
  gen = (gen + 1) >>> 0;
  if (gen === 0) {
    stamp.fill(0);
    gen = 1;
  }
  const g = gen;
  visitFeatures(
    text,
    flags,
    (k) => {
      if (stamp[k] === g) return;
      stamp[k] = g;
      sum += w[k] as number;
      count++;
    },
    cues,
  );
  let logit = model.bias + (count > 0 ? (sum * model.scale) / Math.sqrt(count) : 0);
  for (let k = 0; k < CUE_COUNT; k++) logit += (model.cues[k] as number) * (cues[k] as number);
  return logit;
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** Calibrated probability from the highest segment logit. */
export function calibrate(model: ChannelModel, logit: number): number {
  return sigmoid(model.plattA * logit + model.plattB);
}

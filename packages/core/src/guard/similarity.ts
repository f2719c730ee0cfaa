import type { JsonObject } from '../schemas.ts';
import { fnv1a } from '../screen/bytes.ts';

/** Flattened args: `path → primitive`. */
export type FlatArgs = Map<string, unknown>;

/**
 * Flattens args to `path → primitive` so two payloads can be compared field by field. `max`
 * bounds the work on a hostile payload (the per-create detectors pass one): flattening stops
 * once that many fields are kept, so later fields are simply not compared.
 */
export function flatten(args: JsonObject, prefix = '', out: FlatArgs = new Map<string, unknown>(), depth = 0, max = Number.POSITIVE_INFINITY): FlatArgs {
  for (const key in args) {
    if (out.size >= max) break;
    if (!Object.hasOwn(args, key)) continue;
    const value = args[key];
    const path = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && depth < 8) {
      flatten(value as JsonObject, path, out, depth + 1, max);
    } else {
      out.set(path, Array.isArray(value) ? JSON.stringify(value) : value);
    }
  }
  return out;
}

/** `argsSimilarity` of two flattened payloads. */
export function flatSimilarity(fa: FlatArgs, fb: FlatArgs): number {
  let union = fa.size;
  for (const key of fb.keys()) if (!fa.has(key)) union++;
  if (union === 0) return 1;
  let score = 0;
  for (const [key, x] of fa) {
    if (!fb.has(key)) continue;
    const y = fb.get(key);
    if (x === y) score += 1;
    else if (typeof x === 'number' && typeof y === 'number') score += 0.5;
  }
  return score / union;
}

/**
 * Share of fields (over the union of both key sets) with equal values: 1 for identical args,
 * 0 for nothing in common. Numbers that differ still count as half a match when both are
 * numbers, because "the same call with another offset" is exactly what slicing looks like.
 */
export function argsSimilarity(a: JsonObject, b: JsonObject): number {
  return flatSimilarity(flatten(a), flatten(b));
}

/** `differingFields` of two flattened payloads. */
export function flatDiffering(fa: FlatArgs, fb: FlatArgs): string[] | null {
  if (fa.size !== fb.size) return null;
  const diff: string[] = [];
  for (const [key, value] of fa) {
    if (!fb.has(key)) return null;
    if (fb.get(key) !== value) diff.push(key);
  }
  return diff;
}

/** The fields whose values differ between two payloads with the same keys, or null when the keys differ. */
export function differingFields(a: JsonObject, b: JsonObject): string[] | null {
  return flatDiffering(flatten(a), flatten(b));
}

/** A fingerprint keeps at most this many fields, each string value (and path, twice as long) at most this long: longer ones hashed. */
export const FINGERPRINT_FIELDS = 64;
export const FINGERPRINT_CHARS = 64;

const digest = (s: string) => `#${s.length}:${fnv1a(s).toString(36)}:${fnv1a(`${s.length}\u0000${s}`).toString(36)}`;

/**
 * A small, fixed-size stand-in for a payload that the per-create detectors compare instead of the
 * payload (issue 12 review: padding args must not exempt a request from detection): its first
 * `FINGERPRINT_FIELDS` flattened fields, a string value longer than `FINGERPRINT_CHARS` (a path
 * longer than twice that; an array or a too-deep object as its JSON) replaced by a hash of it,
 * numbers and booleans kept.
 * Equal values stay equal and numbers stay numbers, so similarity and "only numbers move" read the
 * same; it is its own fingerprint. Linear in the payload; at most about 13 KB as JSON.
 */
export function payloadFingerprint(args: JsonObject): JsonObject {
  const out: [string, string | number | boolean | null][] = [];
  for (const [path, value] of flatten(args, '', new Map(), 0, FINGERPRINT_FIELDS)) {
    const key = path.length > 2 * FINGERPRINT_CHARS ? digest(path) : path;
    const text = typeof value === 'string' ? value : value !== null && typeof value === 'object' ? JSON.stringify(value) : null;
    out.push([key, text === null ? (value as number | boolean | null) : text.length > FINGERPRINT_CHARS ? digest(text) : text]);
  }
  return Object.fromEntries(out) as JsonObject;
}

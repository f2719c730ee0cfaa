import type { JsonObject } from '../schemas.ts';

/** Flattens args to `path → primitive` so two payloads can be compared field by field. */
export function flatten(args: JsonObject, prefix = '', out = new Map<string, unknown>(), depth = 0): Map<string, unknown> {
  for (const [key, value] of Object.entries(args)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && depth < 8) {
      flatten(value as JsonObject, path, out, depth + 1);
    } else {
      out.set(path, Array.isArray(value) ? JSON.stringify(value) : value);
    }
  }
  return out;
}

/**
 * Share of fields (over the union of both key sets) with equal values: 1 for identical args,
 * 0 for nothing in common. Numbers that differ still count as half a match when both are
 * numbers, because "the same call with another offset" is exactly what slicing looks like.
 */
export function argsSimilarity(a: JsonObject, b: JsonObject): number {
  const fa = flatten(a);
  const fb = flatten(b);
  const keys = new Set([...fa.keys(), ...fb.keys()]);
  if (keys.size === 0) return 1;
  let score = 0;
  for (const key of keys) {
    const x = fa.get(key);
    const y = fb.get(key);
    if (x === y) score += 1;
    else if (typeof x === 'number' && typeof y === 'number') score += 0.5;
  }
  return score / keys.size;
}

/** The fields whose values differ between two payloads with the same keys, or null when the keys differ. */
export function differingFields(a: JsonObject, b: JsonObject): string[] | null {
  const fa = flatten(a);
  const fb = flatten(b);
  if (fa.size !== fb.size) return null;
  const diff: string[] = [];
  for (const [key, value] of fa) {
    if (!fb.has(key)) return null;
    if (fb.get(key) !== value) diff.push(key);
  }
  return diff;
}

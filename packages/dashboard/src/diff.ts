/** What a reviewer changes when modifying args: a structural diff, shown before submitting. */

export type Change =
  | { kind: 'added'; path: string; after: unknown }
  | { kind: 'removed'; path: string; before: unknown }
  | { kind: 'changed'; path: string; before: unknown; after: unknown };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `a.b[2]`, with keys that are not identifiers quoted: `["weird key"]`. */
export function joinPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) return base ? `${base}.${key}` : key;
  return `${base}[${JSON.stringify(key)}]`;
}

export function diffJson(before: unknown, after: unknown, path = ''): Change[] {
  if (isObject(before) && isObject(after)) {
    const out: Change[] = [];
    for (const key of Object.keys(before)) {
      const p = joinPath(path, key);
      if (!(key in after)) out.push({ kind: 'removed', path: p, before: before[key] });
      else out.push(...diffJson(before[key], after[key], p));
    }
    for (const key of Object.keys(after)) if (!(key in before)) out.push({ kind: 'added', path: joinPath(path, key), after: after[key] });
    return out;
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    const out: Change[] = [];
    const n = Math.max(before.length, after.length);
    for (let i = 0; i < n; i++) {
      const p = joinPath(path, i);
      if (i >= after.length) out.push({ kind: 'removed', path: p, before: before[i] });
      else if (i >= before.length) out.push({ kind: 'added', path: p, after: after[i] });
      else out.push(...diffJson(before[i], after[i], p));
    }
    return out;
  }
  if (Object.is(before, after)) return [];
  return [{ kind: 'changed', path: path || '(root)', before, after }];
}

export const MAX_DEPTH = 32;
export const MAX_BYTES = 256 * 1024;

export type ArgsCheck =
  | { ok: true; value: Record<string, unknown>; warnings: string[] }
  | { ok: false; error: string };

function depth(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    max = Math.max(max, d + 1);
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/**
 * Checks edited args before they are sent: valid JSON, an object, within the server's limits.
 * No action schemas exist yet, so the original args serve as the shape: a changed type or a
 * new or missing top-level key is a warning the reviewer must see, not an error.
 */
export function checkArgs(text: string, original: Record<string, unknown>): ArgsCheck {
  if (new TextEncoder().encode(text).length > MAX_BYTES) return { ok: false, error: `larger than ${MAX_BYTES / 1024} KiB` };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `not valid JSON: ${(err as Error).message}` };
  }
  if (!isObject(value)) return { ok: false, error: 'args must be a JSON object ({ … })' };
  if (depth(value) > MAX_DEPTH) return { ok: false, error: `nested deeper than ${MAX_DEPTH} levels` };
  const warnings: string[] = [];
  for (const key of Object.keys(original)) {
    if (!(key in value)) warnings.push(`removes "${key}"`);
    else if (typeName(original[key]) !== typeName(value[key])) warnings.push(`"${key}" changes type from ${typeName(original[key])} to ${typeName(value[key])}`);
  }
  for (const key of Object.keys(value)) if (!(key in original)) warnings.push(`adds "${key}"`);
  return { ok: true, value, warnings };
}

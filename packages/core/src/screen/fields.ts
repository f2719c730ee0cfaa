/**
 * Field paths of screening findings (`args.to`, `context.evidence[0]`, `args["a.b"]`): where in a
 * create body a flagged string sits. Keys are the agent's, so a key that is not a plain name is
 * written as a JSON string in brackets; otherwise `{"a.b": x}` and `{a: {b: y}}` would share the
 * path `args.a.b`, and the card would mark the spans over the wrong string.
 *
 * Paths are bounded (review C3/R4: a 300 KB key must not be copied into every finding): a key
 * longer than `MAX_STEP` is written as its first `MAX_STEP` characters, `…` and a short hash of
 * the whole key, and a path longer than `MAX_PATH` keeps its head, `…` and a hash. A bounded
 * path no longer resolves to its string (textAtPath: undefined); the finding still counts.
 * The key itself, screened as a text of its own, has the path of its value plus `.$key`
 * (a plain step never starts with `$`, so `.$key` names nothing else).
 *
 * @example fieldPath('args', ['items', 2, 'a.b']) // → 'args.items[2]["a.b"]'
 */

const PLAIN = /^[A-Za-z_][A-Za-z0-9_$-]{0,39}$/;
/** The longest key a path step quotes whole. */
export const MAX_STEP = 40;
/** The longest field path. */
export const MAX_PATH = 300;
/** The step that marks a path as naming the key of its last step, not the value. */
export const KEY_STEP = '.$key';

/** FNV-1a, 32 bits, as 8 hex digits: tells two cut keys apart (not a security hash). */
function shortHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** One step of a path: `.name`, `[3]` or `["any key"]` (a long key cut to `MAX_STEP` characters and a hash). */
export function pathStep(key: string | number): string {
  if (typeof key === 'number') return `[${key}]`;
  if (key.length > MAX_STEP) return `[${JSON.stringify(`${key.slice(0, MAX_STEP)}…#${shortHash(key)}`)}]`;
  return PLAIN.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** A path within `MAX_PATH` characters (a longer one keeps its head, `…#` and a hash of the whole). */
export function boundPath(path: string): string {
  return path.length <= MAX_PATH ? path : `${path.slice(0, MAX_PATH - 20)}…#${shortHash(path)}`;
}

/** The path of the key whose value is at `valuePath`. */
export function keyPath(valuePath: string): string {
  return boundPath(valuePath) + KEY_STEP;
}

/** The steps of a path written by `pathStep` (the root is the first, a plain name); null when malformed. Linear. */
export function parseFieldPath(path: string): (string | number)[] | null {
  const out: (string | number)[] = [];
  let i = 0;
  const name = (): string | null => {
    const m = /^[A-Za-z_$][A-Za-z0-9_$-]*/.exec(path.slice(i, i + 201));
    if (!m) return null;
    i += m[0].length;
    return m[0];
  };
  const root = name();
  if (root === null) return null;
  out.push(root);
  while (i < path.length) {
    const c = path[i];
    if (c === '.') {
      i++;
      const n = name();
      if (n === null) return null;
      out.push(n);
    } else if (c === '[' && path[i + 1] === '"') {
      // A JSON string: scan to its closing quote (skipping escapes), then parse it.
      let j = i + 2;
      while (j < path.length && path[j] !== '"') j += path[j] === '\\' ? 2 : 1;
      if (path[j + 1] !== ']') return null;
      try {
        out.push(JSON.parse(path.slice(i + 1, j + 1)) as string);
      } catch {
        return null;
      }
      i = j + 2;
    } else if (c === '[') {
      const m = /^\[(\d{1,9})\]/.exec(path.slice(i, i + 12));
      if (!m) return null;
      out.push(Number(m[1]));
      i += m[0].length;
    } else return null;
  }
  return out;
}

/** The string at a path in a request-like object (description, args, context, alternatives), if it is one. */
export function textAtPath(root: Readonly<Record<string, unknown>>, path: string): string | undefined {
  if (path.endsWith(KEY_STEP)) {
    // The key itself: the last step of its value's path, when that value exists.
    const valuePath = path.slice(0, -KEY_STEP.length);
    const steps = parseFieldPath(valuePath);
    const last = steps?.[steps.length - 1];
    if (typeof last !== 'string' || steps!.length < 2) return undefined;
    let cur: unknown = root;
    for (const s of steps!.slice(0, -1)) {
      if (cur === null || typeof cur !== 'object') return undefined;
      if (typeof s === 'number' ? !Array.isArray(cur) : Array.isArray(cur)) return undefined;
      cur = Object.hasOwn(cur, s) ? (cur as Record<string | number, unknown>)[s] : undefined;
    }
    return cur !== null && typeof cur === 'object' && !Array.isArray(cur) && Object.hasOwn(cur, last) ? last : undefined;
  }
  const steps = parseFieldPath(path);
  if (!steps) return undefined;
  let cur: unknown = root;
  for (const s of steps) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (typeof s === 'number' ? !Array.isArray(cur) : Array.isArray(cur)) return undefined;
    cur = Object.hasOwn(cur, s) ? (cur as Record<string | number, unknown>)[s] : undefined;
  }
  return typeof cur === 'string' ? cur : undefined;
}

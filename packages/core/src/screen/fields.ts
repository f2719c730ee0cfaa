/**
 * Field paths of screening findings (`args.to`, `context.evidence[0]`, `args["a.b"]`): where in a
 * create body a flagged string sits. Keys are the agent's, so a key that is not a plain name is
 * written as a JSON string in brackets; otherwise `{"a.b": x}` and `{a: {b: y}}` would share the
 * path `args.a.b`, and the card would mark the spans over the wrong string.
 *
 * @example fieldPath('args', ['items', 2, 'a.b']) // → 'args.items[2]["a.b"]'
 */

const PLAIN = /^[A-Za-z_$][A-Za-z0-9_$-]{0,199}$/;

/** One step of a path: `.name`, `[3]` or `["any key"]`. */
export function pathStep(key: string | number): string {
  if (typeof key === 'number') return `[${key}]`;
  return PLAIN.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
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

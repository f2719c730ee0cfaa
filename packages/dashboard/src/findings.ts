/**
 * Screening findings on the card: which string of the request a finding's `field` names, and
 * how its spans cut that string into plain and marked pieces. Pure, so the marking is tested
 * without a browser. The pieces are rendered as React text (SafeText), never as HTML: a span
 * only decides where a `<mark>` element starts and ends, not what is inside it.
 */
import type { ApprovalRequest } from '@countersign/core';

export type ScreeningRecord = NonNullable<ApprovalRequest['assessment']['screening']>;
export type Finding = ScreeningRecord['findings'][number];

/**
 * The steps of a field path (`args.items[2]["a.b"]`): the dashboard's copy of core's
 * screen/fields.ts parseFieldPath (the dashboard bundles no core code; a test checks they agree).
 */
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

/** The string at a finding's field path in the request (`description`, `args…`, `context.evidence[0]`, `alternatives[1]…`), if it is one. */
export function textAtField(r: Pick<ApprovalRequest, 'description' | 'args' | 'context' | 'alternatives'> & Partial<Pick<ApprovalRequest, 'approvers'>>, field: string): string | undefined {
  // `….$key` names the key of the value at `…` (core screen/fields.ts KEY_STEP): the key itself is the text.
  const isKey = field.endsWith('.$key');
  const steps = parseFieldPath(isKey ? field.slice(0, -'.$key'.length) : field);
  if (!steps) return undefined;
  let cur: unknown = { description: r.description, args: r.args, context: r.context, alternatives: r.alternatives, approvers: r.approvers };
  for (const [i, s] of steps.entries()) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (typeof s === 'number' ? !Array.isArray(cur) : Array.isArray(cur)) return undefined;
    if (!Object.hasOwn(cur, s)) return undefined;
    if (isKey && i === steps.length - 1) return typeof s === 'string' && steps.length > 1 ? s : undefined;
    cur = (cur as Record<string | number, unknown>)[s];
  }
  return typeof cur === 'string' ? cur : undefined;
}

export interface Piece {
  text: string;
  marked: boolean;
  /** Finding indexes marked here. */
  findings: number[];
}

/** Characters of context kept around marked spans; the rest is elided ("…"). */
const CONTEXT = 120;
/** At most this many characters of one field are shown. */
const MAX_SHOWN = 4000;

/**
 * Cut `text` into pieces: marked where any finding's span covers it (overlapping spans merge),
 * plain elsewhere, with long plain stretches elided to `CONTEXT` characters either side. Spans
 * are clamped to the text; an empty or inverted span marks nothing.
 */
/** True when index `i` of `t` falls between the two halves of a surrogate pair (a cut there would split one character). */
function insidePair(t: string, i: number): boolean {
  if (i <= 0 || i >= t.length) return false;
  const hi = t.charCodeAt(i - 1);
  const lo = t.charCodeAt(i);
  return hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff;
}
/** `i` moved back (`down`) or on (`up`) to a character boundary. */
const down = (t: string, i: number) => (insidePair(t, i) ? i - 1 : i);
const up = (t: string, i: number) => (insidePair(t, i) ? i + 1 : i);

export function markSpans(text: string, findings: readonly { span: { start: number; end: number }; index: number }[]): { pieces: Piece[]; elided: boolean } {
  const spans = findings
    .map((f) => ({ start: down(text, Math.max(0, Math.min(text.length, Math.floor(f.span.start)))), end: up(text, Math.max(0, Math.min(text.length, Math.floor(f.span.end)))), index: f.index }))
    .filter((s) => s.end > s.start)
    .sort((a, b) => a.start - b.start || a.end - b.end);
  const merged: { start: number; end: number; findings: number[] }[] = [];
  for (const s of spans) {
    const last = merged[merged.length - 1];
    if (last && s.start <= last.end) {
      last.end = Math.max(last.end, s.end);
      last.findings.push(s.index);
    } else merged.push({ start: s.start, end: s.end, findings: [s.index] });
  }
  const pieces: Piece[] = [];
  let elided = false;
  let shown = 0;
  const plain = (from: number, to: number, first: boolean, lastOne: boolean) => {
    if (to <= from) return;
    let t = text.slice(from, to);
    if (!first && !lastOne && t.length > 2 * CONTEXT) {
      t = `${t.slice(0, down(t, CONTEXT))} … ${t.slice(up(t, t.length - CONTEXT))}`;
      elided = true;
    } else if (first && t.length > CONTEXT) {
      t = `… ${t.slice(up(t, t.length - CONTEXT))}`;
      elided = true;
    } else if (lastOne && t.length > CONTEXT) {
      t = `${t.slice(0, down(t, CONTEXT))} …`;
      elided = true;
    }
    pieces.push({ text: t, marked: false, findings: [] });
    shown += t.length;
  };
  let at = 0;
  merged.forEach((m, i) => {
    plain(at, m.start, i === 0, false);
    if (shown < MAX_SHOWN) {
      const t = text.slice(m.start, m.end);
      const cut = t.length > MAX_SHOWN - shown ? `${t.slice(0, down(t, Math.max(0, MAX_SHOWN - shown)))} …` : t;
      if (cut !== t) elided = true;
      pieces.push({ text: cut, marked: true, findings: m.findings });
      shown += cut.length;
    } else elided = true;
    at = m.end;
  });
  if (merged.length === 0) plain(0, text.length, false, true);
  else plain(at, text.length, false, true);
  return { pieces, elided };
}

/**
 * Screening findings on the card: which string of the request a finding's `field` names, and
 * how its spans cut that string into plain and marked pieces. Pure, so the marking is tested
 * without a browser. The pieces are rendered as React text (SafeText), never as HTML: a span
 * only decides where a `<mark>` element starts and ends, not what is inside it.
 */
import type { ApprovalRequest } from '@countersign/core';

export type ScreeningRecord = NonNullable<ApprovalRequest['assessment']['screening']>;
export type Finding = ScreeningRecord['findings'][number];

/** The string at a finding's field path (`args.items[2].body`, `context.evidence[0]`, `alternatives[1].description`), if it is one. */
export function textAtField(r: Pick<ApprovalRequest, 'description' | 'args' | 'context' | 'alternatives'>, field: string): string | undefined {
  const parts = field.match(/[^.[\]]+|\[\d+\]/g) ?? [];
  const root = parts.shift();
  let cur: unknown =
    root === 'description' ? r.description : root === 'args' ? r.args : root === 'context' ? r.context : root === 'alternatives' ? r.alternatives : undefined;
  for (const p of parts) {
    if (cur === null || typeof cur !== 'object') return undefined;
    const key = p.startsWith('[') ? Number(p.slice(1, -1)) : p;
    cur = Object.hasOwn(cur, key) ? (cur as Record<string | number, unknown>)[key] : undefined;
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
export function markSpans(text: string, findings: readonly { span: { start: number; end: number }; index: number }[]): { pieces: Piece[]; elided: boolean } {
  const spans = findings
    .map((f) => ({ start: Math.max(0, Math.min(text.length, Math.floor(f.span.start))), end: Math.max(0, Math.min(text.length, Math.floor(f.span.end))), index: f.index }))
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
      t = `${t.slice(0, CONTEXT)} … ${t.slice(-CONTEXT)}`;
      elided = true;
    } else if (first && t.length > CONTEXT) {
      t = `… ${t.slice(-CONTEXT)}`;
      elided = true;
    } else if (lastOne && t.length > CONTEXT) {
      t = `${t.slice(0, CONTEXT)} …`;
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
      const cut = t.length > MAX_SHOWN - shown ? `${t.slice(0, Math.max(0, MAX_SHOWN - shown))} …` : t;
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

/**
 * Agent-supplied text, made safe to look at. React already renders strings as text (never as
 * HTML); this module deals with what text alone can still hide: invisible characters, bidi
 * controls that reorder what is shown (Trojan Source, CVE-2021-42574), tag characters that
 * smuggle ASCII, and sheer length.
 */

/** Names for the characters a reviewer must see; anything else matched is shown by code point. */
const NAMES: Readonly<Record<number, string>> = {
  0x00ad: 'SHY', 0x034f: 'CGJ', 0x061c: 'ALM', 0x115f: 'HCF', 0x1160: 'HJF', 0x17b4: 'KIV', 0x17b5: 'KIV', 0x180e: 'MVS',
  0x200b: 'ZWSP', 0x200c: 'ZWNJ', 0x200d: 'ZWJ', 0x200e: 'LRM', 0x200f: 'RLM',
  0x2028: 'LSEP', 0x2029: 'PSEP',
  0x202a: 'LRE', 0x202b: 'RLE', 0x202c: 'PDF', 0x202d: 'LRO', 0x202e: 'RLO',
  0x2060: 'WJ', 0x2061: 'FA', 0x2062: 'IT', 0x2063: 'IS', 0x2064: 'IP',
  0x2066: 'LRI', 0x2067: 'RLI', 0x2068: 'FSI', 0x2069: 'PDI',
  0x206a: 'ISS', 0x206b: 'ASS', 0x206c: 'IAFS', 0x206d: 'AAFS', 0x206e: 'NADS', 0x206f: 'NODS',
  0x3164: 'HF', 0xfeff: 'BOM', 0xffa0: 'HWHF', 0xfff9: 'IAA', 0xfffa: 'IAS', 0xfffb: 'IAT',
  0x0000: 'NUL', 0x0007: 'BEL', 0x0008: 'BS', 0x000b: 'VT', 0x000c: 'FF', 0x000d: 'CR', 0x001b: 'ESC', 0x007f: 'DEL',
};

/** Bidi controls: the ones that can make displayed text differ from its logical order. */
export const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/**
 * Everything shown as a visible marker instead of itself: C0/C1 controls (but tab and newline,
 * which layout shows), invisible formatting and bidi controls, fillers that render as blank,
 * tag characters (U+E0000–E007F, used to smuggle ASCII), and variation selectors 17–256.
 */
export const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0e\ufeff\uffa0\ufff9-\ufffb]|[\u{e0000}-\u{e007f}]|[\u{e0100}-\u{e01ef}]|[\u{1d173}-\u{1d17a}]/gu;

export type Segment = { kind: 'text'; text: string } | { kind: 'hidden'; codePoint: number; label: string };

export function codePointLabel(cp: number): string {
  const hex = cp.toString(16).toUpperCase().padStart(4, '0');
  const name = NAMES[cp];
  if (name) return `U+${hex} ${name}`;
  if (cp >= 0xe0020 && cp <= 0xe007e) return `U+${hex} TAG ${String.fromCodePoint(cp - 0xe0000)}`;
  return `U+${hex}`;
}

/** Splits text into plain runs and hidden characters, in order. Concatenating plain runs and hidden characters gives back the input. */
export function segment(text: string): Segment[] {
  const out: Segment[] = [];
  let last = 0;
  for (const match of text.matchAll(HIDDEN)) {
    const at = match.index;
    if (at > last) out.push({ kind: 'text', text: text.slice(last, at) });
    const cp = match[0].codePointAt(0)!;
    out.push({ kind: 'hidden', codePoint: cp, label: codePointLabel(cp) });
    last = at + match[0].length;
  }
  if (last < text.length) out.push({ kind: 'text', text: text.slice(last) });
  return out;
}

export function hasHidden(text: string): boolean {
  HIDDEN.lastIndex = 0;
  const found = HIDDEN.test(text);
  HIDDEN.lastIndex = 0;
  return found;
}

/** What the reviewer sees: hidden characters replaced by their ⟨label⟩ markers. */
export function visible(text: string): string {
  return segment(text)
    .map((s) => (s.kind === 'text' ? s.text : `⟨${s.label}⟩`))
    .join('');
}

/**
 * Cuts text to at most `max` code points (never inside a surrogate pair) and `maxLines` lines.
 * Returns the shown part and how much was left out.
 */
export function truncate(text: string, max: number, maxLines = Infinity): { shown: string; hidden: number } {
  const points = Array.from(text);
  let end = Math.min(points.length, max);
  if (maxLines !== Infinity) {
    let lines = 1;
    for (let i = 0; i < end; i++) {
      if (points[i] === '\n' && ++lines > maxLines) {
        end = i;
        break;
      }
    }
  }
  if (end >= points.length) return { shown: text, hidden: 0 };
  return { shown: points.slice(0, end).join(''), hidden: points.length - end };
}

/** One-line preview of any JSON value (for table cells). */
export function preview(value: unknown, max = 80): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return truncate(text.replace(/\s+/g, ' '), max).shown;
}

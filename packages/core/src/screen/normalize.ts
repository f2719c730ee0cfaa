/**
 * Normalisation: undo the character tricks that hide an instruction from a detector, and report
 * each trick as a finding, because using one is itself a signal (benign text rarely carries tag
 * characters or a base64 sentence).
 *
 * Everything is a hand-written scanner over char codes: no regex touches the input, so the cost
 * is linear in its length whatever an attacker sends. The output keeps a map from every output
 * position back to the input, so findings and redactions point at what the caller actually sent.
 */
import { decodeBase64Bytes, decodeUtf8, fnv1a } from './bytes.ts';

/** What normalisation found; `start`/`end` are UTF-16 offsets into the input, end exclusive. */
export interface NormFinding {
  readonly kind: NormKind;
  readonly start: number;
  readonly end: number;
  readonly why: string;
}

export type NormKind =
  | 'zero-width'
  | 'bidi-control'
  | 'soft-hyphen'
  | 'tag-characters'
  | 'variation-selector-smuggling'
  | 'compatibility-characters'
  | 'homoglyphs'
  | 'spaced-letters'
  | 'base64'
  | 'hex'
  | 'rot13';

/** Text recovered from an encoded span, already normalised itself (up to the depth bound). */
export interface DecodedSpan {
  readonly kind: 'base64' | 'hex' | 'rot13';
  readonly text: string;
  readonly start: number;
  readonly end: number;
  readonly depth: number;
}

export interface Normalized {
  /** The normalised text, case kept (sanitize and the reviewer see it). */
  readonly text: string;
  /** For each UTF-16 unit of `text`, the input offset it came from; null when `text` is the input unchanged. */
  readonly map: Int32Array | null;
  readonly findings: readonly NormFinding[];
  readonly decoded: readonly DecodedSpan[];
}

export interface NormalizeOptions {
  /** How many times decoded text is decoded again (base64 of base64…). Default 2. */
  readonly maxDepth?: number;
}

/** Zero-width and invisible formatting characters that carry no meaning in prose. */
function isZeroWidth(cp: number): boolean {
  return (
    cp === 0x200b ||
    cp === 0x200c ||
    cp === 0x200d ||
    cp === 0x2060 ||
    cp === 0xfeff ||
    cp === 0x180e ||
    (cp >= 0x2061 && cp <= 0x2064) ||
    cp === 0x034f ||
    cp === 0x115f ||
    cp === 0x1160 ||
    cp === 0x3164
  );
}

function isBidi(cp: number): boolean {
  return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp === 0x200e || cp === 0x200f || cp === 0x061c;
}

function isVariationSelector(cp: number): boolean {
  return (cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef);
}

/**
 * Confusables that look like Latin letters: Cyrillic, Greek and a few others. Not the whole
 * Unicode confusables table — the letters attackers actually use to break up trigger words.
 */
const HOMOGLYPHS: ReadonlyMap<number, number> = new Map(
  (
    [
      // Cyrillic lower
      ['а', 'a'], ['в', 'b'], ['е', 'e'], ['ё', 'e'], ['һ', 'h'], ['і', 'i'], ['ї', 'i'], ['ј', 'j'],
      ['к', 'k'], ['м', 'm'], ['н', 'h'], ['о', 'o'], ['р', 'p'], ['с', 'c'], ['т', 't'], ['у', 'y'],
      ['х', 'x'], ['ѕ', 's'], ['ԁ', 'd'], ['ԛ', 'q'], ['ԝ', 'w'], ['ɡ', 'g'], ['ո', 'n'], ['ս', 'u'],
      // Cyrillic upper
      ['А', 'A'], ['В', 'B'], ['Е', 'E'], ['К', 'K'], ['М', 'M'], ['Н', 'H'], ['О', 'O'], ['Р', 'P'],
      ['С', 'C'], ['Т', 'T'], ['Х', 'X'], ['У', 'Y'], ['І', 'I'], ['Ј', 'J'], ['Ѕ', 'S'], ['Ԁ', 'D'],
      // Greek
      ['α', 'a'], ['ο', 'o'], ['ν', 'v'], ['ι', 'i'], ['κ', 'k'], ['ρ', 'p'], ['τ', 't'], ['υ', 'u'],
      ['ϲ', 'c'], ['Α', 'A'], ['Β', 'B'], ['Ε', 'E'], ['Ζ', 'Z'], ['Η', 'H'], ['Ι', 'I'], ['Κ', 'K'],
      ['Μ', 'M'], ['Ν', 'N'], ['Ο', 'O'], ['Ρ', 'P'], ['Τ', 'T'], ['Υ', 'Y'], ['Χ', 'X'],
      // Latin look-alikes outside ASCII that NFKC keeps
      ['ı', 'i'], ['ȷ', 'j'], ['ℓ', 'l'],
    ] as const
  ).map(([from, to]) => [from.codePointAt(0) as number, to.charCodeAt(0)]),
);

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}
function isAsciiAlnum(c: number): boolean {
  return isAsciiLetter(c) || (c >= 0x30 && c <= 0x39);
}

/** Native UTF-16 decoding, far faster than String.fromCharCode over chunks (a lone surrogate becomes U+FFFD: harmless for screening). */
const UTF16 = new TextDecoder('utf-16le');

/** A growable UTF-16 buffer with a source offset per unit. */
class Builder {
  units: Uint16Array;
  src: Int32Array;
  length = 0;
  constructor(capacity: number) {
    this.units = new Uint16Array(Math.max(16, capacity));
    this.src = new Int32Array(Math.max(16, capacity));
  }
  push(unit: number, from: number): void {
    if (this.length === this.units.length) this.grow();
    this.units[this.length] = unit;
    this.src[this.length] = from;
    this.length++;
  }
  pushString(s: string, from: number): void {
    for (let i = 0; i < s.length; i++) this.push(s.charCodeAt(i), from);
  }
  private grow(): void {
    const units = new Uint16Array(this.units.length * 2);
    units.set(this.units);
    const src = new Int32Array(this.src.length * 2);
    src.set(this.src);
    this.units = units;
    this.src = src;
  }
  text(): string {
    return UTF16.decode(new Uint8Array(this.units.buffer, 0, this.length * 2));
  }
}

/** Findings of one kind closer than this are merged, so ZWSPs sprinkled through a sentence are one finding. */
const MERGE_GAP = 16;

/** Findings of one kind that touch (within MERGE_GAP) are merged into one span. */
class FindingSink {
  readonly list: NormFinding[] = [];
  add(kind: NormKind, start: number, end: number, why: string): void {
    const last = this.list[this.list.length - 1];
    if (last && last.kind === kind && start <= last.end + MERGE_GAP) {
      this.list[this.list.length - 1] = { kind, start: last.start, end: Math.max(end, last.end), why: last.why };
      return;
    }
    this.list.push({ kind, start, end, why });
  }
}

/**
 * Normalise `input`. Pure and linear: every pass is one scan.
 *
 * @example normalize('ig\u200Bnore prev\u0456ous').text === 'ignore previous'
 */
export function normalize(input: string, options: NormalizeOptions = {}): Normalized {
  return normalizeAt(input, options.maxDepth ?? 2, 0);
}

function normalizeAt(input: string, maxDepth: number, depth: number): Normalized {
  const findings = new FindingSink();
  // Fast path: plain ASCII has no invisible characters, homoglyphs or compatibility forms.
  const first = isPlainAscii(input) ? null : characterPass(input, findings);
  const firstText = first ? first.text() : input;
  let text = firstText;
  let map: Int32Array | null = first ? first.src.slice(0, first.length) : null;
  {
    const second = collapseSpacedLetters(firstText, map, findings);
    if (second) {
      text = second.text();
      map = second.src.slice(0, second.length);
    }
  }
  const decoded: DecodedSpan[] = [];
  if (depth < maxDepth) decodeSpans(text, map, depth, maxDepth, findings, decoded);
  findings.list.sort((a, b) => a.start - b.start || a.end - b.end);
  return { text, map, findings: findings.list, decoded };
}

/** The input offset of output unit `k` of a normalisation (`k` may be the length: the end). */
export function sourceOffset(norm: { readonly text: string; readonly map: Int32Array | null }, k: number): number {
  const m = norm.map;
  if (m === null) return Math.min(k, norm.text.length);
  if (k < m.length) return m[k] as number;
  return m.length > 0 ? (m[m.length - 1] as number) + 1 : 0;
}

function isPlainAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** Pass 1: invisible characters, tag and variation-selector smuggling, NFKC, homoglyphs. */
function characterPass(input: string, findings: FindingSink): Builder {
  const n = input.length;
  const out = new Builder(n + 16);
  let i = 0;
  while (i < n) {
    const c = input.charCodeAt(i);
    if (c < 0x80) {
      out.push(c, i);
      i++;
      continue;
    }
    const cp = input.codePointAt(i) as number;
    const width = cp > 0xffff ? 2 : 1;
    if (isZeroWidth(cp)) {
      findings.add('zero-width', i, i + width, 'invisible zero-width characters inside the text');
      i += width;
      continue;
    }
    if (isBidi(cp)) {
      findings.add('bidi-control', i, i + width, 'bidirectional control characters can reorder what a reader sees');
      i += width;
      continue;
    }
    if (cp === 0x00ad) {
      findings.add('soft-hyphen', i, i + 1, 'soft hyphens split words invisibly');
      i += 1;
      continue;
    }
    if (cp >= 0xe0000 && cp <= 0xe007f) {
      // Unicode tag characters: invisible ASCII. Decode the run in place.
      const start = i;
      while (i < n) {
        const t = input.codePointAt(i) as number;
        if (t < 0xe0000 || t > 0xe007f) break;
        if (t >= 0xe0020 && t <= 0xe007e) out.push(t - 0xe0000, i);
        i += 2;
      }
      findings.add('tag-characters', start, i, 'invisible Unicode tag characters spell out hidden ASCII text');
      continue;
    }
    if (isVariationSelector(cp)) {
      const start = i;
      const bytes: number[] = [];
      while (i < n) {
        const v = input.codePointAt(i) as number;
        if (!isVariationSelector(v)) break;
        bytes.push(v <= 0xfe0f ? v - 0xfe00 : v - 0xe0100 + 16);
        i += v > 0xffff ? 2 : 1;
      }
      // One or two selectors are ordinary emoji presentation; a long run is a byte payload.
      if (bytes.length >= 4) {
        const hidden = decodeUtf8(Uint8Array.from(bytes));
        if (hidden !== null) {
          out.push(0x20, start);
          out.pushString(hidden, start);
          out.push(0x20, start);
        }
        findings.add('variation-selector-smuggling', start, i, 'a run of variation selectors encodes hidden bytes');
      }
      continue;
    }
    const ch = input.slice(i, i + width);
    const folded = HOMOGLYPHS.get(cp);
    if (folded !== undefined) {
      // Neighbours in the input, not the output: folding a whole Cyrillic word is not mixing scripts.
      const prev = i > 0 ? input.charCodeAt(i - 1) : 0;
      const next = i + width < n ? input.charCodeAt(i + width) : 0;
      if (isAsciiLetter(prev) || isAsciiLetter(next)) {
        findings.add('homoglyphs', i, i + width, 'look-alike letters from another script mixed into a Latin word');
      }
      out.push(folded, i);
      i += width;
      continue;
    }
    const nf = ch.normalize('NFKC');
    if (nf !== ch) {
      let ascii = nf.length > 0;
      for (let k = 0; k < nf.length; k++) if (!isAsciiAlnum(nf.charCodeAt(k))) ascii = false;
      if (ascii) findings.add('compatibility-characters', i, i + width, 'full-width or styled letters stand in for plain ones');
      for (let k = 0; k < nf.length; k++) {
        const u = nf.charCodeAt(k);
        const f = HOMOGLYPHS.get(u);
        out.push(f ?? u, i);
      }
    } else {
      for (let k = 0; k < width; k++) out.push(input.charCodeAt(i + k), i + k);
    }
    i += width;
  }
  return out;
}

function isSpacer(c: number): boolean {
  return c === 0x20 || c === 0x2e || c === 0x2d || c === 0x5f || c === 0x2a || c === 0x2c || c === 0x7c || c === 0x2f;
}
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * Pass 2: "i g n o r e  a l l" → "ignore all". A run needs at least four single letters, each
 * separated by one spacer; two or three spaces inside a run mark a word gap. Text outside runs
 * is copied in bulk only once a run is found; null when there is none.
 */
function collapseSpacedLetters(text: string, srcMap: Int32Array | null, findings: FindingSink): Builder | null {
  const n = text.length;
  const src = (k: number): number => (srcMap === null ? k : (srcMap[k] as number));
  const code = (k: number): number => (k >= 0 && k < n ? text.charCodeAt(k) : 0);
  // A single letter at k: a letter whose neighbours are not letters or digits.
  const single = (k: number): boolean => isAsciiLetter(code(k)) && !isAsciiAlnum(code(k - 1)) && !isAsciiAlnum(code(k + 1));
  let out: Builder | null = null;
  let copied = 0;
  let i = 0;
  while (i < n) {
    // Cheap test first: letter, spacer, letter.
    if (!(isAsciiLetter(code(i)) && isSpacer(code(i + 1)) && isAsciiLetter(code(i + 2)) && single(i) && single(i + 2))) {
      i++;
      continue;
    }
    const letters: number[] = [i];
    const gaps: boolean[] = [false];
    let j = i;
    for (;;) {
      const s = j + 1;
      if (s < n && isSpacer(code(s)) && single(s + 1)) {
        letters.push(s + 1);
        gaps.push(false);
        j = s + 1;
        continue;
      }
      let k = s;
      while (k < n && k - s < 3 && isSpace(code(k))) k++;
      if (k - s >= 2 && single(k) && isSpacer(code(k + 1)) && single(k + 2)) {
        letters.push(k);
        gaps.push(true);
        j = k;
        continue;
      }
      break;
    }
    if (letters.length < 4) {
      i = j + 1;
      continue;
    }
    out ??= new Builder(n + 16);
    for (let k = copied; k < i; k++) out.push(text.charCodeAt(k), src(k));
    for (let k = 0; k < letters.length; k++) {
      const at = letters[k] as number;
      if (gaps[k]) out.push(0x20, src(at));
      out.push(text.charCodeAt(at), src(at));
    }
    const last = letters[letters.length - 1] as number;
    findings.add('spaced-letters', src(i), src(last) + 1, 'letters spaced apart to break up words');
    i = last + 1;
    copied = i;
  }
  if (out === null) return null;
  for (let k = copied; k < n; k++) out.push(text.charCodeAt(k), src(k));
  return out;
}

function isB64(c: number): boolean {
  return isAsciiAlnum(c) || c === 0x2b || c === 0x2f || c === 0x2d || c === 0x5f;
}
function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

/** Decoded bytes count as hidden text only if they read as text with words in it. */
function looksLikeText(s: string): boolean {
  if (s.length < 6) return false;
  let printable = 0;
  let letters = 0;
  let spaces = 0;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if ((c >= 0x20 && c < 0x7f) || c === 0x0a || c === 0x09 || c >= 0xa0) printable++;
    if (isAsciiLetter(c) || c >= 0xc0) letters++;
    if (c === 0x20) spaces++;
  }
  return printable / s.length >= 0.95 && letters / s.length >= 0.5 && spaces >= 1;
}

/** Before decoding: are nine bytes in ten printable ASCII or UTF-8 continuation/lead bytes? (Random bytes are not.) */
function mostlyText(bytes: Uint8Array): boolean {
  let ok = 0;
  for (let k = 0; k < bytes.length; k++) {
    const c = bytes[k] as number;
    if ((c >= 0x20 && c < 0x7f) || c === 0x0a || c === 0x09 || c >= 0xc2) ok++;
  }
  return ok >= bytes.length * 0.9;
}

/** A whole string that is one base64 or hex run (what a nested encoding decodes to). */
function isEncodedRun(s: string): boolean {
  if (s.length < MIN_BASE64) return false;
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x3d) end--;
  for (let k = 0; k < end; k++) if (!isB64(s.charCodeAt(k))) return false;
  return true;
}

const MIN_BASE64 = 16;
const MIN_HEX = 16;

/** Pass 3: base64, hex and rot13 spans, each decoded and normalised again up to the depth bound. */
function decodeSpans(
  text: string,
  map: Int32Array | null,
  depth: number,
  maxDepth: number,
  findings: FindingSink,
  decoded: DecodedSpan[],
): void {
  const n = text.length;
  const orig = (k: number): number => sourceOffset({ text, map }, k);
  const emit = (kind: DecodedSpan['kind'], s: number, e: number, plain: string): void => {
    const inner = normalizeAt(plain, maxDepth, depth + 1);
    const start = orig(s);
    const end = orig(e - 1) + 1;
    findings.add(kind, start, end, `${kind}-encoded text decodes to words`);
    decoded.push({ kind, text: inner.text, start, end, depth: depth + 1 });
    for (const d of inner.decoded) decoded.push({ ...d, start, end });
  };
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (!isB64(c) || (i > 0 && isB64(text.charCodeAt(i - 1)))) {
      i++;
      continue;
    }
    let j = i;
    let hexOnly = true;
    let upper = false;
    let lower = false;
    while (j < n && isB64(text.charCodeAt(j))) {
      const d = text.charCodeAt(j);
      if (!isHex(d)) hexOnly = false;
      if (d >= 0x41 && d <= 0x5a) upper = true;
      if (d >= 0x61 && d <= 0x7a) lower = true;
      j++;
    }
    let end = j;
    while (end < n && end - j < 2 && text.charCodeAt(end) === 0x3d) end++;
    const len = j - i;
    if (hexOnly && len >= MIN_HEX && len % 2 === 0) {
      const bytes = new Uint8Array(len / 2);
      for (let k = 0; k < bytes.length; k++) bytes[k] = parseInt(text.slice(i + 2 * k, i + 2 * k + 2), 16);
      const plain = mostlyText(bytes) ? decodeUtf8(bytes) : null;
      if (plain !== null && looksLikeText(plain)) emit('hex', i, j, plain);
    } else if (len >= MIN_BASE64 && upper && lower) {
      // Decode a short head first: identifiers and keys fail it without a full decode.
      const head = decodeBase64Bytes(text.slice(i, i + 16));
      const bytes = head && mostlyText(head) ? decodeBase64Bytes(text.slice(i, end)) : null;
      const plain = bytes && mostlyText(bytes) ? decodeUtf8(bytes) : null;
      // Base64 of base64 decodes to another run, not to words: open it while depth remains.
      if (plain !== null && (looksLikeText(plain) || (depth + 1 < maxDepth && isEncodedRun(plain)))) emit('base64', i, end, plain);
    }
    i = end;
  }
  scanRot13(text, emit);
}

/** Common short English words: which side of the rot13 cipher reads as English. */
const ENGLISH_WORDS = ['the', 'and', 'to', 'of', 'you', 'is', 'in', 'all', 'your', 'are', 'for', 'with', 'this', 'that', 'now', 'ignore', 'previous', 'instructions', 'system', 'prompt', 'tell', 'me', 'what', 'it', 'be', 'not', 'on', 'a', 'i'];
const fnv = fnv1a;
const ENGLISH = new Set(ENGLISH_WORDS.map(fnv));

function rot13(s: string): string {
  const out: number[] = [];
  for (let k = 0; k < s.length; k++) out.push(rot13Code(s.charCodeAt(k)));
  let r = '';
  for (let k = 0; k < out.length; k += 8192) r += String.fromCharCode(...out.slice(k, k + 8192));
  return r;
}
function rot13Code(c: number): number {
  if (c >= 0x61 && c <= 0x7a) return ((c - 0x61 + 13) % 26) + 0x61;
  if (c >= 0x41 && c <= 0x5a) return ((c - 0x41 + 13) % 26) + 0x41;
  return c;
}

/**
 * rot13 has no alphabet of its own, so a line counts as rot13 when its decoding has many common
 * English words and the line itself has almost none. Words are hashed in place (no allocation),
 * both as written and rotated; lines are capped at 400 characters.
 */
function scanRot13(text: string, emit: (kind: 'rot13', s: number, e: number, plain: string) => void): void {
  const n = text.length;
  let lineStart = 0;
  let words = 0;
  let plainHits = 0;
  let rotHits = 0;
  let hPlain = 0x811c9dc5;
  let hRot = 0x811c9dc5;
  let inWord = false;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? text.charCodeAt(i) : 0x0a;
    const letter = isAsciiLetter(c);
    if (letter) {
      const lower = c | 0x20;
      if (!inWord) {
        inWord = true;
        hPlain = 0x811c9dc5;
        hRot = 0x811c9dc5;
      }
      hPlain = Math.imul(hPlain ^ lower, 0x01000193);
      hRot = Math.imul(hRot ^ rot13Code(lower), 0x01000193);
      continue;
    }
    if (inWord) {
      inWord = false;
      words++;
      if (ENGLISH.has(hPlain >>> 0)) plainHits++;
      if (ENGLISH.has(hRot >>> 0)) rotHits++;
    }
    if (c !== 0x0a && c !== 0x2e && c !== 0x21 && c !== 0x3f && i - lineStart < 400) continue;
    if (words >= 4 && rotHits >= 2 && rotHits / words >= 0.3 && plainHits / words < 0.1) {
      emit('rot13', lineStart, i, rot13(text.slice(lineStart, i)));
    }
    lineStart = i + 1;
    words = 0;
    plainHits = 0;
    rotHits = 0;
  }
}

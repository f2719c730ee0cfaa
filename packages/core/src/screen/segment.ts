/**
 * Segmentation by channel. A detector that scores a whole document dilutes one injected
 * sentence in pages of benign text, so each channel is cut into the pieces an attack would fill:
 *
 * - `user`: the whole prompt and each sentence;
 * - `content`: every string leaf of JSON or Python-literal data (tool outputs are often printed
 *   Python dicts), and short windows of sentences for prose.
 *
 * The literal parser is hand-written, iterative over containers and bounded in depth, so hostile
 * nesting cannot exhaust the stack.
 */

export interface Leaf {
  /** The decoded string value. */
  readonly text: string;
  /** Span of the literal (quotes included) in the parsed text. */
  readonly start: number;
  readonly end: number;
  /** JSON-pointer-like path, for the reviewer: `reviews/0/review_content`. */
  readonly path: string;
}

/** Containers nested deeper than this make the text count as prose, not data. */
export const MAX_LITERAL_DEPTH = 64;

/**
 * Parse `text` as one JSON or Python literal (dicts, lists, tuples, sets, strings in either
 * quote, numbers, True/False/None/null) and return its string leaves (keys included when they
 * are long enough to carry words). Null when the text is not one literal.
 */
export function literalLeaves(text: string): Leaf[] | null {
  const p = new LiteralParser(text);
  return p.parseAll();
}

class LiteralParser {
  private i = 0;
  private readonly leaves: Leaf[] = [];
  constructor(private readonly s: string) {}

  parseAll(): Leaf[] | null {
    this.ws();
    const c = this.s.charCodeAt(this.i);
    if (c !== 0x7b && c !== 0x5b && c !== 0x28 && c !== 0x22 && c !== 0x27) return null;
    if (!this.value('', 0)) return null;
    this.ws();
    return this.i === this.s.length ? this.leaves : null;
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  private value(path: string, depth: number): boolean {
    if (depth > MAX_LITERAL_DEPTH) return false;
    this.ws();
    const s = this.s;
    const c = s.charCodeAt(this.i);
    if (c === 0x22 || c === 0x27) {
      const start = this.i;
      const str = this.string();
      if (str === null) return false;
      this.leaves.push({ text: str, start, end: this.i, path });
      return true;
    }
    if (c === 0x7b) return this.container(path, depth, 0x7d, true);
    if (c === 0x5b) return this.container(path, depth, 0x5d, false);
    if (c === 0x28) return this.container(path, depth, 0x29, false);
    // number / bareword
    const start = this.i;
    while (this.i < s.length) {
      const d = s.charCodeAt(this.i);
      const ok = (d >= 0x30 && d <= 0x39) || (d >= 0x41 && d <= 0x5a) || (d >= 0x61 && d <= 0x7a) || d === 0x2e || d === 0x2d || d === 0x2b || d === 0x5f;
      if (!ok) break;
      this.i++;
    }
    if (this.i === start) return false;
    const word = s.slice(start, this.i);
    if (/^[-+]?[0-9]/.test(word) || word === 'True' || word === 'False' || word === 'None' || word === 'true' || word === 'false' || word === 'null' || word === 'NaN' || word === 'Infinity') return true;
    return false;
  }

  /** `{k: v, …}` (dict; a Python set `{a, b}` too) or `[…]` / `(…)`. */
  private container(path: string, depth: number, close: number, dict: boolean): boolean {
    const s = this.s;
    this.i++;
    let index = 0;
    for (;;) {
      this.ws();
      if (this.i >= s.length) return false;
      if (s.charCodeAt(this.i) === close) {
        this.i++;
        return true;
      }
      if (dict) {
        const keyStart = this.i;
        const before = this.leaves.length;
        if (!this.value(path, depth + 1)) return false;
        let key = String(index);
        const keyLeaf = this.leaves[before];
        if (this.leaves.length === before + 1 && keyLeaf && keyLeaf.start === keyStart) {
          key = keyLeaf.text;
          // Keys are names; only a long key can carry an instruction.
          if (key.length < 40) this.leaves.pop();
        }
        this.ws();
        if (s.charCodeAt(this.i) === 0x3a) {
          this.i++;
          if (!this.value(path ? `${path}/${key}` : key, depth + 1)) return false;
        }
      } else if (!this.value(path ? `${path}/${index}` : String(index), depth + 1)) {
        return false;
      }
      index++;
      this.ws();
      const d = s.charCodeAt(this.i);
      if (d === 0x2c) {
        this.i++;
        continue;
      }
      if (d === close) {
        this.i++;
        return true;
      }
      return false;
    }
  }

  /** A quoted string with JSON/Python escapes; null if unterminated. */
  private string(): string | null {
    const s = this.s;
    const quote = s.charCodeAt(this.i);
    this.i++;
    let out = '';
    let runStart = this.i;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === quote) {
        out += s.slice(runStart, this.i);
        this.i++;
        return out;
      }
      if (c === 0x5c) {
        out += s.slice(runStart, this.i);
        const e = s.charCodeAt(this.i + 1);
        this.i += 2;
        switch (e) {
          case 0x6e: out += '\n'; break;
          case 0x74: out += '\t'; break;
          case 0x72: out += '\r'; break;
          case 0x62: out += '\b'; break;
          case 0x66: out += '\f'; break;
          case 0x75: {
            const hex = s.slice(this.i, this.i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) return null;
            out += String.fromCharCode(parseInt(hex, 16));
            this.i += 4;
            break;
          }
          case 0x78: {
            const hex = s.slice(this.i, this.i + 2);
            if (!/^[0-9a-fA-F]{2}$/.test(hex)) return null;
            out += String.fromCharCode(parseInt(hex, 16));
            this.i += 2;
            break;
          }
          default:
            if (Number.isNaN(e)) return null;
            out += String.fromCharCode(e);
        }
        runStart = this.i;
        continue;
      }
      this.i++;
    }
    return null;
  }
}

export interface Piece {
  readonly start: number;
  readonly end: number;
}

/**
 * Sentence spans of `text`: split after `.`, `!`, `?` followed by whitespace, and at line
 * breaks. Sentences over `maxLen` characters are cut at a space near the limit.
 */
export function sentences(text: string, maxLen = 400): Piece[] {
  const out: Piece[] = [];
  const n = text.length;
  let start = 0;
  const push = (s: number, e: number): void => {
    while (s < e && isWs(text.charCodeAt(s))) s++;
    while (e > s && isWs(text.charCodeAt(e - 1))) e--;
    if (e - s >= 2) out.push({ start: s, end: e });
  };
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    const boundary =
      c === 0x0a ||
      ((c === 0x2e || c === 0x21 || c === 0x3f || c === 0x3002 || c === 0xff01 || c === 0xff1f) && (i + 1 >= n || isWs(text.charCodeAt(i + 1))));
    if (boundary) {
      push(start, i + 1);
      start = i + 1;
    } else if (i - start >= maxLen && c === 0x20) {
      push(start, i);
      start = i + 1;
    }
  }
  push(start, n);
  return out;
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Windows of prose: each sentence, and each pair of neighbouring sentences (an injected
 * instruction is often a lead-in plus the command).
 */
export function proseWindows(text: string): Piece[] {
  const ss = sentences(text);
  const out: Piece[] = [];
  for (let k = 0; k < ss.length; k++) {
    const a = ss[k] as Piece;
    out.push(a);
    const b = ss[k + 1];
    if (b) out.push({ start: a.start, end: b.end });
  }
  return out;
}

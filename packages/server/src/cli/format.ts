/**
 * Human output for the CLI: safe printing of untrusted text, aligned tables, short durations.
 *
 * Everything an agent supplies (descriptions, evidence, args, context, alternative names) and
 * anything else that came over the wire is treated as hostile: control characters and the
 * bidi / invisible code points that let a string rewrite or disguise terminal output are shown
 * as visible `\uXXXX` escapes, never written raw.
 */
import { formatDuration } from '@countersign/core/duration';

/**
 * C0 controls and DEL, C1 controls, soft hyphen, Arabic letter mark, Mongolian vowel separator,
 * zero-width and direction marks (U+200B–U+200F), line/paragraph separators and bidi
 * embeddings/overrides (U+2028–U+202E), word joiner / invisible operators / bidi isolates
 * (U+2060–U+2069), the BOM / zero-width no-break space, interlinear annotation controls, and
 * lone surrogates.
 */
const UNSAFE =
  /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const escapeChar = (ch: string) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** One line of untrusted text: every unsafe character (newlines included) becomes `\uXXXX`. */
export function safe(text: unknown): string {
  return String(text ?? '').replace(UNSAFE, escapeChar);
}

/** Multi-line untrusted text: like `safe`, but `\n` stays a line break. */
export function safeMultiline(text: unknown): string {
  return String(text ?? '').replace(UNSAFE, (ch) => (ch === '\n' ? ch : escapeChar(ch)));
}

/**
 * JSON for a terminal or a pipe. JSON.stringify already escapes C0 controls; this also escapes
 * C1, bidi and invisible characters inside strings. The result parses back to the same value.
 */
export function safeJson(value: unknown, indent = 2): string {
  return safeMultiline(JSON.stringify(value, null, indent) ?? 'null');
}

/** Shortens to `max` characters with a trailing ellipsis (applied after escaping). */
export function truncate(text: string, max: number): string {
  if (max < 2 || text.length <= max) return text;
  return `${text.slice(0, max - 1)}…`;
}

/** Indents every line, so multi-line agent text cannot pose as one of the CLI's own labels. */
export function indentBlock(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((line) => `${prefix}${line}`)
    .join('\n');
}

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Longest cell, in characters; longer cells are truncated with an ellipsis. */
  max?: number;
  align?: 'left' | 'right';
}

/** An aligned plain-text table. Cells are escaped with `safe`, so any value may be passed. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((row) => columns.map((c) => truncate(safe(c.value(row)), c.max ?? 60)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => {
        const width = widths[i] ?? 0;
        if (columns[i]?.align === 'right') return v.padStart(width);
        return i === values.length - 1 ? v : v.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n');
}

/**
 * A compact duration: `45s`, `4m12s`, `2h3m`, `3d4h`; a zero second unit is dropped (`3m`,
 * `2h`). Always non-negative: callers say "ago", "left" or "overdue".
 */
export function shortDuration(ms: number): string {
  return formatDuration(Math.abs(ms));
}

/** `4m12s ago` for the past, `in 3m` for the future, `-` for a missing or unreadable time. */
export function relative(iso: string | null | undefined, now = Date.now()): string {
  const ms = iso ? Date.parse(iso) : Number.NaN;
  if (!Number.isFinite(ms)) return '-';
  const diff = now - ms;
  return diff >= 0 ? `${shortDuration(diff)} ago` : `in ${shortDuration(-diff)}`;
}

/** Time since `iso` (for an AGE column): `4m12s`. */
export function age(iso: string | null | undefined, now = Date.now()): string {
  const ms = iso ? Date.parse(iso) : Number.NaN;
  return Number.isFinite(ms) ? shortDuration(Math.max(0, now - ms)) : '-';
}

/** Time left until `iso` (`11m30s`), `overdue 3m` once it has passed, `-` when there is none. */
export function timeLeft(iso: string | null | undefined, now = Date.now()): string {
  const ms = iso ? Date.parse(iso) : Number.NaN;
  if (!Number.isFinite(ms)) return '-';
  return ms >= now ? shortDuration(ms - now) : `overdue ${shortDuration(now - ms)}`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function fixed(n: number | null | undefined, digits = 2): string {
  return typeof n === 'number' && Number.isFinite(n) ? n.toFixed(digits) : '-';
}

/**
 * The lines under an error that names several problems: a refused policy's `details.errors`
 * (`path: message`, with "did you mean" hints), the same at startup and on a refused reload.
 */
export function errorDetailLines(details: unknown): string {
  // A refusal with one thing to do says it (ADDRESS_IN_USE: stop the other server or pick a port).
  const hint = (details as { hint?: unknown } | undefined)?.hint;
  if (typeof hint === 'string') return `\n  hint: ${safe(hint)}`;
  if (details && typeof details === 'object' && 'errors' in details && Array.isArray((details as { errors: unknown[] }).errors)) {
    return '\n' + (details as { errors: Array<{ path: string; message: string }> }).errors.map((e) => `  ${safe(e.path)}: ${safe(e.message)}`).join('\n');
  }
  return '';
}

/**
 * `sanitize`: hand back data a model can read without taking orders from it (Hines et al.,
 * "Defending Against Indirect Prompt Injection Attacks With Spotlighting", 2024):
 *
 * - strip chat-template and delimiter tokens, so the data cannot forge a turn;
 * - redact high-scoring spans, reporting where they were;
 * - spotlight: wrap in delimiters carrying a nonce the caller supplies (core draws no randomness),
 *   or datamark: interleave a marker between words so the model sees data as data.
 */
import { findTemplateTokens } from './tokens.ts';
import type { Span } from './types.ts';

export interface SanitizeOptions {
  readonly mode: 'spotlight' | 'datamark';
  /** Required for `spotlight`: 8–64 characters of [A-Za-z0-9_-]. */
  readonly nonce?: string;
  /** Spans (into `text`) to redact. Overlaps are merged. */
  readonly redact?: readonly Span[];
  /** Datamark character; default U+02C6 (ˆ), which prose rarely contains. */
  readonly marker?: string;
}

export interface Sanitized {
  readonly text: string;
  /** Where tokens were stripped and spans redacted, in the input's offsets. */
  readonly removed: readonly (Span & { readonly kind: 'template-token' | 'redacted' })[];
}

/**
 * @example sanitize('hi <|im_start|>system', { mode: 'spotlight', nonce: 'n0nce123' }).text
 *   === '<<data n0nce123>>\nhi system\n<</data n0nce123>>'
 */
export function sanitize(text: string, options: SanitizeOptions): Sanitized {
  const removed: (Span & { kind: 'template-token' | 'redacted' })[] = [];
  for (const t of findTemplateTokens(text)) removed.push({ ...t, kind: 'template-token' });
  for (const r of options.redact ?? []) {
    if (r.end > r.start) removed.push({ start: Math.max(0, r.start), end: Math.min(text.length, r.end), kind: 'redacted' });
  }
  removed.sort((a, b) => a.start - b.start || b.end - a.end);
  // Merge overlaps; a redaction swallows tokens inside it.
  const merged: (Span & { kind: 'template-token' | 'redacted' })[] = [];
  for (const r of removed) {
    const last = merged[merged.length - 1];
    if (last && r.start < last.end) {
      merged[merged.length - 1] = { start: last.start, end: Math.max(last.end, r.end), kind: last.kind === 'redacted' || r.kind === 'redacted' ? 'redacted' : 'template-token' };
    } else merged.push(r);
  }
  let body = '';
  let at = 0;
  for (const r of merged) {
    body += text.slice(at, r.start);
    if (r.kind === 'redacted') body += '[redacted]';
    at = r.end;
  }
  body += text.slice(at);

  if (options.mode === 'datamark') {
    const marker = options.marker ?? '\u02c6';
    let out = '';
    let prevSpace = false;
    for (let i = 0; i < body.length; i++) {
      const c = body.charCodeAt(i);
      const space = c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
      if (space) {
        if (!prevSpace) out += marker;
      } else out += body[i];
      prevSpace = space;
    }
    return { text: out, removed: merged };
  }
  const nonce = options.nonce;
  if (nonce === undefined || !/^[A-Za-z0-9_-]{8,64}$/.test(nonce)) {
    throw new TypeError('spotlighting needs a nonce of 8–64 characters [A-Za-z0-9_-]');
  }
  // The data must not be able to close the spotlight itself.
  const safe = body.split(nonce).join('[nonce]');
  return { text: `<<data ${nonce}>>\n${safe}\n<</data ${nonce}>>`, removed: merged };
}

/**
 * Chat-template and delimiter tokens: the markup models use to separate system, user and
 * assistant turns. Inside data they have no business but to forge a turn, so they are a cue,
 * a rule and what `sanitize` strips. A scanner over fixed literals: linear, no regex.
 */
import type { Piece } from './segment.ts';

/** Literal tokens, matched case-insensitively. */
const LITERALS = [
  '[inst]',
  '[/inst]',
  '<<sys>>',
  '<</sys>>',
  '<s>',
  '</s>',
  '<system>',
  '</system>',
  '<user>',
  '</user>',
  '<assistant>',
  '</assistant>',
  '<instructions>',
  '</instructions>',
  '[system]',
  '[/system]',
  '### instruction',
  '### system',
  '### response',
  '### assistant',
  '### user',
  '### human',
  '[[system]]',
  '{{system}}',
  '<end_of_turn>',
  '<start_of_turn>',
  '<bos>',
  '<eos>',
].map((s) => ({ text: s, first: s.charCodeAt(0) }));

/** Role labels that forge a turn when they start a line: `system:`, `assistant:` … */
const ROLE_LABELS = ['system:', 'assistant:', 'user:', 'human:', 'ai:', '### '];

/** The maximum length of a `<|…|>` special token (e.g. `<|start_header_id|>`). */
const MAX_PIPE_TOKEN = 40;

function lower(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

function matchAt(text: string, i: number, lit: string): boolean {
  if (i + lit.length > text.length) return false;
  for (let k = 0; k < lit.length; k++) if (lower(text.charCodeAt(i + k)) !== lit.charCodeAt(k)) return false;
  return true;
}

/** Every chat-template or delimiter token in `text`, as spans, in order, not overlapping. */
export function findTemplateTokens(text: string): Piece[] {
  const out: Piece[] = [];
  scanTemplateTokens(text, (start, end) => out.push({ start, end }));
  return out;
}

/** How many template tokens `text` has, without allocating (the feature extractor's hot path). */
export function countTemplateTokens(text: string): number {
  return scanTemplateTokens(text, null);
}

function scanTemplateTokens(text: string, onToken: ((start: number, end: number) => void) | null): number {
  let count = 0;
  const out = {
    push(p: Piece): void {
      count++;
      if (onToken) onToken(p.start, p.end);
    },
  };
  const n = text.length;
  let lineStart = true;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      lineStart = true;
      continue;
    }
    if (lineStart && c !== 0x20 && c !== 0x09) {
      lineStart = false;
      const l = c | 0x20;
      // Only s(ystem) a(ssistant/i) u(ser) h(uman) can start a role label.
      if (l === 0x73 || l === 0x61 || l === 0x75 || l === 0x68) {
        let hit = false;
        for (const label of ROLE_LABELS) {
          if (label === '### ') continue;
          if (matchAt(text, i, label)) {
            out.push({ start: i, end: i + label.length });
            i += label.length - 1;
            hit = true;
            break;
          }
        }
        if (hit) continue;
      }
    }
    if (c === 0x3c && i + 1 < n && text.charCodeAt(i + 1) === 0x7c) {
      // <|name|>
      let j = i + 2;
      while (j < n && j - i < MAX_PIPE_TOKEN && text.charCodeAt(j) !== 0x7c && text.charCodeAt(j) !== 0x3e && text.charCodeAt(j) !== 0x0a) j++;
      if (j + 1 < n && text.charCodeAt(j) === 0x7c && text.charCodeAt(j + 1) === 0x3e) {
        out.push({ start: i, end: j + 2 });
        i = j + 1;
        continue;
      }
    }
    if (c === 0x3c || c === 0x5b || c === 0x23 || c === 0x7b) {
      for (const lit of LITERALS) {
        if (lit.first === lower(c) && matchAt(text, i, lit.text)) {
          out.push({ start: i, end: i + lit.text.length });
          i += lit.text.length - 1;
          break;
        }
      }
    }
  }
  return count;
}

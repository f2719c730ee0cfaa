/**
 * Rules: named explanations read from the cue features of each scored segment. They tell the
 * reviewer *what kind* of injection a span looks like and may raise severity, but `screen()`
 * only lets them do so once the model has flagged the input — a rule alone never decides.
 */
import { cueIndex } from './features.ts';
import type { Segment } from './screen.ts';
import type { Channel, Span } from './types.ts';

export interface RuleFinding {
  readonly kind: 'override-phrasing' | 'role-play' | 'system-prompt-exfiltration' | 'chat-template-tokens' | 'imperative-in-data';
  readonly span: Span;
  readonly score: number;
  readonly why: string;
  readonly path?: string;
}

const RULES: readonly { kind: RuleFinding['kind']; why: string; fires: (cues: Float64Array, channel: Channel) => boolean }[] = [
  { kind: 'override-phrasing', why: 'asks to ignore or replace earlier instructions', fires: (c) => (c[cueIndex('override-prior')] as number) >= 1 || (c[cueIndex('new-instructions')] as number) >= 1 && (c[cueIndex('override')] as number) >= 1 },
  { kind: 'role-play', why: 'assigns the model a new role or an unrestricted mode', fires: (c) => (c[cueIndex('role-play')] as number) >= 2 },
  { kind: 'system-prompt-exfiltration', why: 'asks the model to reveal hidden or system instructions', fires: (c) => (c[cueIndex('exfiltration')] as number) >= 1 },
  { kind: 'chat-template-tokens', why: 'contains chat-template or delimiter tokens that can forge a turn', fires: (c) => (c[cueIndex('template-tokens')] as number) >= 1 },
  {
    kind: 'imperative-in-data',
    why: 'data that gives the agent an order',
    fires: (c, ch) => ch === 'content' && (c[cueIndex('imperative-start')] as number) >= 1 && ((c[cueIndex('please-start')] as number) >= 1 || (c[cueIndex('agent-address')] as number) >= 1),
  },
];

/** Rule findings over scored segments: the narrowest span per rule, no duplicates. */
export function ruleFindings(scored: readonly { segment: Segment; score: number; cues: Float64Array }[], channel: Channel): RuleFinding[] {
  const hits: RuleFinding[] = [];
  const bySize = [...scored].sort((a, b) => a.segment.span.end - a.segment.span.start - (b.segment.span.end - b.segment.span.start));
  for (const s of bySize) {
    for (const rule of RULES) {
      if (!rule.fires(s.cues, channel)) continue;
      const sp = s.segment.span;
      if (hits.some((h) => h.kind === rule.kind && h.span.start >= sp.start && h.span.end <= sp.end)) continue;
      hits.push({ kind: rule.kind, span: sp, score: s.score, why: rule.why, ...(s.segment.path !== undefined ? { path: s.segment.path } : {}) });
    }
  }
  return hits;
}

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

const MAX_PER_RULE = 20;

/** The rules' finding kinds. */
export const RULE_KINDS: readonly RuleFinding['kind'][] = RULES.map((r) => r.kind);

/** Which rules fire on a segment's cues, as a bit mask (bit k = RULES[k]). */
export function ruleMask(cues: Float64Array, channel: Channel): number {
  let mask = 0;
  for (let k = 0; k < RULES.length; k++) if ((RULES[k] as (typeof RULES)[number]).fires(cues, channel)) mask |= 1 << k;
  return mask;
}

/** Rule findings over scored segments: the narrowest span per rule, no duplicates, a few per rule. */
export function ruleFindings(scored: readonly { segment: Segment; score: number; rules: number }[]): RuleFinding[] {
  const hits: RuleFinding[] = [];
  const firing = scored.filter((s) => s.rules !== 0);
  const bySize = firing.sort((a, b) => a.segment.span.end - a.segment.span.start - (b.segment.span.end - b.segment.span.start));
  const perKind = new Map<string, number>();
  for (const s of bySize) {
    for (let k = 0; k < RULES.length; k++) {
      if ((s.rules & (1 << k)) === 0) continue;
      const rule = RULES[k] as (typeof RULES)[number];
      // A hostile input can fire a rule in every sentence; the reviewer needs the first few.
      if ((perKind.get(rule.kind) ?? 0) >= MAX_PER_RULE) continue;
      const sp = s.segment.span;
      if (hits.some((h) => h.kind === rule.kind && h.span.start >= sp.start && h.span.end <= sp.end)) continue;
      perKind.set(rule.kind, (perKind.get(rule.kind) ?? 0) + 1);
      hits.push({ kind: rule.kind, span: sp, score: s.score, why: rule.why, ...(s.segment.path !== undefined ? { path: s.segment.path } : {}) });
    }
  }
  return hits;
}

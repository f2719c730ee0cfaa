/**
 * Red-team of the start level (issue 18): an agent reaches a start above level 1 only as policy
 * says (a rule, or its risk level's `startLevel` — its own risk hint can raise the level, never
 * lower it), the create body carries no start level of its own, and starting higher never brings
 * approval by silence sooner.
 */
import { describe, expect, it } from 'vitest';
import { EMPTY_HISTORY, evaluate, onDue, parsePolicy, startEscalation, type EscalationState, type Policy } from '../src/index.ts';
import { Assessment as AssessmentSchema, CreateRequestBody } from '../src/schemas.ts';

const T0 = Date.parse('2026-11-21T10:00:00Z');
const MIN = 60_000;

function policy(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}
const yaml = (final: 'reject' | 'approve') => `
levels:
  high: { sla: 10m }
  critical: { sla: 10m, startLevel: 2 }
escalation:
  onFinalTimeout: ${final}
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 20m }
    - { role: director, after: 30m }
`;
const assess = (p: Policy, extra: Record<string, unknown> = {}) =>
  AssessmentSchema.parse(evaluate({ ...CreateRequestBody.parse({ action: 'isolate_host', confidence: 0.82, ...extra }), agent: 'bot' }, p, EMPTY_HISTORY, new Date(T0)));

/** When the chain's final outcome comes, from creation, with nobody deciding. */
function finalAt(s: EscalationState, p: Policy): number {
  for (;;) {
    const d = onDue(s, p, s.dueAt);
    if (d.type === 'final') return s.dueAt;
    s = d.state;
  }
}

describe('start level: only as policy says', () => {
  it('the create body cannot name a start level', () => {
    for (const extra of [{ escalationStartLevel: 3 }, { startLevel: 3 }, { escalation: { level: 3 } }]) {
      expect(CreateRequestBody.safeParse({ action: 'isolate_host', ...extra }).success, JSON.stringify(extra)).toBe(false);
    }
  });

  it('the agent’s risk hint starts it where that risk level’s startLevel says, no higher', () => {
    const p = policy(yaml('reject'));
    expect(startEscalation(p, assess(p), T0)).toMatchObject({ level: 1, startLevel: 1 });
    expect(startEscalation(p, assess(p, { riskLevel: 'critical' }), T0)).toMatchObject({ level: 2, startLevel: 2 });
    // A lower hint never lowers it.
    const low = startEscalation(p, assess(p, { riskLevel: 'low' }), T0);
    expect(low === null || low.startLevel === 1).toBe(true);
  });

  it('under onFinalTimeout: approve, starting higher waits the skipped levels too: silence never approves sooner', () => {
    const p = policy(yaml('approve'));
    const fromOne = startEscalation(p, assess(p), T0)!;
    const fromTwo = startEscalation(p, assess(p, { riskLevel: 'critical' }), T0)!;
    expect(fromTwo.startLevel).toBe(2);
    expect(finalAt(fromOne, p) - T0).toBe(10 * MIN + 20 * MIN + 30 * MIN);
    expect(finalAt(fromTwo, p)).toBeGreaterThanOrEqual(finalAt(fromOne, p));
    expect(fromTwo.dueAt - T0).toBe(10 * MIN + 20 * MIN); // level 2's period and level 1's it skipped
    // Under reject (the default) a start above 1 waits that level's own period: expiring sooner fails closed.
    const r = policy(yaml('reject'));
    expect(startEscalation(r, assess(r, { riskLevel: 'critical' }), T0)!.dueAt - T0).toBe(20 * MIN);
  });
});

/** Approval by silence decided over the payload that would run and the active policy (review finding 1). */
import { describe, expect, it } from 'vitest';
import { payloadKey, timeoutOutcome, type Assessment, type GateRequest, type Vote } from '../src/index.ts';

const AT = '2026-01-01T12:00:00.000Z';
const allowed: Pick<Assessment, 'route' | 'matchedRules'> = { route: 'review', matchedRules: [] };
const blocked: Pick<Assessment, 'route' | 'matchedRules'> = { route: 'block', matchedRules: [{ name: 'no-prod', reason: 'x', effects: ['block'] }] };

function request(votes: Vote[] = []): Pick<GateRequest, 'action' | 'args' | 'alternatives' | 'votes'> {
  return { action: 'rotate_keys', args: { scope: 'staging' }, alternatives: [{ name: 'alt', action: 'pay_vendor', args: { v: 1 } }], votes };
}
const vote = (over: Partial<Vote>): Vote => ({
  reviewer: { type: 'operator', id: 'op_a', name: 'a' },
  verdict: 'approve',
  reason: null,
  args: null,
  alternative: null,
  payloadKey: payloadKey('rotate_keys', { scope: 'staging' }),
  stage: 0,
  at: AT,
  ...over,
} as Vote);

describe('timeoutOutcome', () => {
  it('approves the request as asked when the active policy does not block it', () => {
    expect(timeoutOutcome(request(), allowed, 'late')).toEqual({ type: 'timeout_approve', reason: 'late' });
    expect(timeoutOutcome(request([vote({})]), allowed, 'late').type).toBe('timeout_approve');
  });
  it('expires when the active policy now blocks the original', () => {
    const out = timeoutOutcome(request(), blocked, 'late');
    expect(out.type).toBe('expire');
    expect(out.reason).toContain('no-prod');
  });
  it("expires when the round's payload is a reviewer's modification", () => {
    const v = vote({ args: { scope: 'production' }, payloadKey: payloadKey('rotate_keys', { scope: 'production' }) });
    const out = timeoutOutcome(request([v]), allowed, 'late');
    expect(out).toMatchObject({ type: 'expire' });
    expect(out.reason).toContain('modified arguments');
  });
  it('expires when the round is on an alternative', () => {
    const v = vote({ alternative: 'alt', payloadKey: payloadKey('pay_vendor', { v: 1 }) });
    const out = timeoutOutcome(request([v]), allowed, 'late');
    expect(out.type).toBe('expire');
    expect(out.reason).toContain('"alt"');
  });
  it('a modification that equals the original is the original (approves)', () => {
    const v = vote({ args: { scope: 'staging' } });
    expect(timeoutOutcome(request([v]), allowed, 'late').type).toBe('timeout_approve');
  });
});

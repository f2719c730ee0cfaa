/** The queue's one order and its filter parsing (core/src/queue.ts), pure. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareUrgency, defaultListOrder, parseListFilter, queueDeadline, RISK_URGENCY, type UrgencyKey } from '../src/queue.ts';
import type { RiskLevel } from '../src/schemas.ts';

const key = (riskLevel: RiskLevel, dueAt: number | null, createdAt: number, id: string): UrgencyKey => ({ riskLevel, dueAt, createdAt, id });

describe('the queue order', () => {
  it('puts every critical request before any number of lower ones, whatever their deadlines or age', () => {
    const critical = key('critical', null, 9_000, 'req_z');
    for (const level of ['high', 'medium', 'low'] as const) expect(compareUrgency(critical, key(level, 1, 1, 'req_a'))).toBeLessThan(0);
    const sorted = [key('low', 1, 1, 'a'), key('medium', 5, 2, 'b'), key('high', null, 3, 'c'), critical].sort(compareUrgency);
    expect(sorted.map((k) => k.riskLevel)).toEqual(RISK_URGENCY);
  });

  it('within a level: the soonest deadline, no deadline last, then the oldest, then the id', () => {
    const sorted = [key('high', null, 1, 'a'), key('high', 50, 9, 'b'), key('high', 10, 9, 'c'), key('high', 50, 3, 'd'), key('high', 50, 3, 'a')].sort(compareUrgency);
    expect(sorted.map((k) => k.id)).toEqual(['c', 'a', 'd', 'b', 'a']);
    expect(sorted.map((k) => k.dueAt)).toEqual([10, 50, 50, 50, null]);
  });

  it('is a total order (antisymmetric, transitive, zero only for the same key)', () => {
    const arb = fc.record({
      riskLevel: fc.constantFrom(...RISK_URGENCY),
      dueAt: fc.option(fc.integer({ min: 0, max: 20 }), { nil: null }),
      createdAt: fc.integer({ min: 0, max: 20 }),
      id: fc.constantFrom('a', 'b', 'c'),
    });
    fc.assert(
      fc.property(arb, arb, arb, (a, b, c) => {
        // `+ 0` folds -0 into 0: Object.is tells them apart, and the sign of zero is not the order.
        expect(Math.sign(compareUrgency(a, b)) + 0).toBe(-Math.sign(compareUrgency(b, a)) + 0);
        if (compareUrgency(a, b) < 0 && compareUrgency(b, c) < 0) expect(compareUrgency(a, c)).toBeLessThan(0);
        if (compareUrgency(a, b) === 0) expect(a).toEqual(b);
      }),
    );
  });

  it('the deadline is the earlier of the SLA deadline and the expiry, null with neither', () => {
    expect(queueDeadline(100, 50)).toBe(50);
    expect(queueDeadline(100, null)).toBe(100);
    expect(queueDeadline(null, 70)).toBe(70);
    expect(queueDeadline(null, undefined)).toBeNull();
    expect(queueDeadline(Number.NaN, null)).toBeNull();
  });

  it('the queue (pending) defaults to urgent; anything else is history, newest first', () => {
    expect(defaultListOrder('pending')).toBe('urgent');
    expect(defaultListOrder(undefined)).toBe('newest');
    expect(defaultListOrder('approved')).toBe('newest');
  });
});

describe('list filters', () => {
  it('takes one value or several, comma-separated, collapsing repeats', () => {
    expect(parseListFilter('riskLevel', undefined, RISK_URGENCY)).toBeUndefined();
    expect(parseListFilter('riskLevel', 'high', RISK_URGENCY)).toEqual(['high']);
    expect(parseListFilter('riskLevel', 'critical, high,critical', RISK_URGENCY)).toEqual(['critical', 'high']);
  });

  it('refuses empty items, unknown values, other cases and floods of items, naming the field and the values it takes', () => {
    for (const text of ['', ',', 'high,', 'HIGH', 'severe', 'high;low', Array(20).fill('low').join(','), 'x'.repeat(10_000)]) {
      let error: unknown;
      try {
        parseListFilter('riskLevel', text, RISK_URGENCY);
      } catch (err) {
        error = err;
      }
      expect(error, JSON.stringify(text.slice(0, 30))).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'riskLevel' } });
      expect((error as Error).message).toContain('riskLevel takes one or more of critical, high, medium, low');
      expect((error as Error).message.length).toBeLessThan(300); // a long bad value is cut, not echoed whole
    }
  });
});

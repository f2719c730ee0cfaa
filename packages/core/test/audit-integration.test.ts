import { describe, expect, it } from 'vitest';
import { planIntegration } from '../src/index.ts';

describe('planIntegration', () => {
  it('orders a batch by id and numbers it after the tree, without gaps, whatever the ids', () => {
    const plan = planIntegration(10, [{ id: 42 }, { id: 7 }, { id: 40 }]);
    expect(plan.map((p) => [p.seq, p.entry.id])).toEqual([
      [11, 7],
      [12, 40],
      [13, 42],
    ]);
  });

  it('an empty batch takes no position', () => {
    expect(planIntegration(3, [])).toEqual([]);
  });

  it('refuses a repeated id (one entry never becomes two leaves) and ids or sizes that are not integers', () => {
    expect(() => planIntegration(0, [{ id: 5 }, { id: 5 }])).toThrow(/twice/);
    expect(() => planIntegration(0, [{ id: 1.5 }])).toThrow(/not an integer/);
    expect(() => planIntegration(-1, [{ id: 1 }])).toThrow(/not a size/);
  });

  it('orders and tells apart ids at or above 2^53 exactly (read as bigint), next to small ones', () => {
    const big = 2n ** 53n;
    const plan = planIntegration(0, [{ id: big + 3n }, { id: 5 }, { id: big + 1n }, { id: big + 2n }]);
    expect(plan.map((p) => p.entry.id)).toEqual([5, big + 1n, big + 2n, big + 3n]);
    expect(() => planIntegration(0, [{ id: big + 1n }, { id: big + 1n }])).toThrow(/twice/);
    // As a number, 2^53 + 1 is not representable: refused rather than confused with 2^53.
    expect(() => planIntegration(0, [{ id: 2 ** 53 + 2 }])).toThrow(/not an integer/);
  });
});

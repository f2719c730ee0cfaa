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
});

/**
 * The pre-check caller's budgets (precheck/caller.ts): at MAX_BUDGETS windows the oldest are
 * evicted, never every budget at once (a flood of new keys cannot reset a spent reviewer's budget).
 */
import { describe, expect, it } from 'vitest';
import { MAX_BUDGETS, PrecheckCaller } from '../src/precheck/caller.ts';

describe('pre-check budgets', () => {
  it('keeps a spent budget spent while 10,000 other keys arrive, evicting only the oldest', () => {
    let clock = 1_000_000;
    const caller = new PrecheckCaller({ env: {}, perReviewerPerMinute: 3, now: () => clock });
    caller.reserve('first', 1); // the oldest window: evicted when the map is full
    clock += 1;
    caller.reserve('spent', 3);
    expect(() => caller.reserve('spent', 1)).toThrow(/RATE_LIMITED|3 of 3/);
    for (let i = 0; i < MAX_BUDGETS - 1; i++) caller.reserve(`flood-${i}`, 1);
    // The map filled at the last flood key: only the oldest window ('first') was evicted, not 'spent': still refused.
    let refused: unknown;
    try {
      caller.reserve('spent', 1);
    } catch (err) {
      refused = err;
    }
    expect((refused as { code?: string } | undefined)?.code).toBe('RATE_LIMITED');
    // 'first' was evicted: it starts a new window.
    expect(() => caller.reserve('first', 3)).not.toThrow();
    // A minute later the spent window has ended.
    clock += 60_000;
    expect(() => caller.reserve('spent', 3)).not.toThrow();
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { admitWait, reconnectDelay, DEFAULT_RECONNECT_BACKOFF } from '../src/index.ts';

describe('admitWait', () => {
  const limits = { perPrincipal: 3, total: 5 };
  it('admits below both limits and refuses at either, naming which', () => {
    expect(admitWait(limits, { principal: 2, total: 4 })).toEqual({ admit: true });
    expect(admitWait(limits, { principal: 3, total: 3 })).toMatchObject({ admit: false, scope: 'principal', limit: 3 });
    expect(admitWait(limits, { principal: 0, total: 5 })).toMatchObject({ admit: false, scope: 'server', limit: 5 });
  });
  it('never admits past a limit, whatever the counts', () => {
    fc.assert(
      fc.property(fc.nat(100), fc.nat(100), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 50 }), (principal, total, perPrincipal, all) => {
        const answer = admitWait({ perPrincipal, total: all }, { principal, total });
        expect(answer.admit).toBe(principal < perPrincipal && total < all);
        if (!answer.admit) expect(answer.retryAfterSeconds).toBeGreaterThan(0);
      }),
    );
  });
});

describe('reconnectDelay', () => {
  it('doubles from the base to the cap, with equal jitter', () => {
    expect(reconnectDelay(1, 0)).toBe(50);
    expect(reconnectDelay(1, 1)).toBe(100);
    expect(reconnectDelay(2, 1)).toBe(200);
    expect(reconnectDelay(100, 1)).toBe(DEFAULT_RECONNECT_BACKOFF.capMs);
    expect(reconnectDelay(1e9, 0.5)).toBe(3750);
  });
  it('stays within [cap/2 … cap] for ever and is never negative or NaN', () => {
    fc.assert(
      fc.property(fc.integer({ min: -5, max: 1e6 }), fc.double({ min: -1, max: 2, noNaN: true }), (attempt, random) => {
        const ms = reconnectDelay(attempt, random);
        expect(ms).toBeGreaterThanOrEqual(25);
        expect(ms).toBeLessThanOrEqual(DEFAULT_RECONNECT_BACKOFF.capMs);
      }),
    );
  });
});

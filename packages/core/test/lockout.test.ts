import { describe, expect, it } from 'vitest';
import { DEFAULT_LOCKOUT, checkOperatorChange, credentialStatus, graceEnd, operatorStatus, stepUpLockout } from '../src/index.ts';

const at = (id: string, t: number) => ({ id, at: t });
const MIN = 60_000;

describe('stepUpLockout (issue 13, finding 3)', () => {
  it('four failures leave the operator free; the fifth locks for a minute', () => {
    const four = [1, 2, 3, 4].map((i) => at(`a${i}`, i * 1000));
    expect(stepUpLockout(four, 10_000).locked).toBe(false);
    const five = [...four, at('a5', 5000)];
    expect(stepUpLockout(five, 10_000)).toMatchObject({ locked: true, until: 5000 + MIN, strikes: 1, retryAfterSeconds: 55 });
    expect(stepUpLockout(five, 5000 + MIN).locked).toBe(false);
  });

  it('each further strike doubles the back-off, up to the cap', () => {
    const base = [1, 2, 3, 4, 5].map((i) => at(`a${i}`, i));
    const sixth = [...base, at('a6', 2 * MIN)];
    expect(stepUpLockout(sixth, 2 * MIN + 1)).toMatchObject({ locked: true, strikes: 2, until: 2 * MIN + 2 * MIN });
    const many = Array.from({ length: 20 }, (_, i) => at(`m${String(i).padStart(2, '0')}`, i));
    expect(stepUpLockout(many, 100)).toMatchObject({ locked: true, until: 19 + DEFAULT_LOCKOUT.maxMs });
  });

  it('a patient guesser under the window (4 wrong codes every 15 minutes) is locked at the 20th within a day, and every further one doubles', () => {
    const slow = Array.from({ length: 19 }, (_, i) => at(`p${String(i).padStart(2, '0')}`, Math.floor(i / 4) * 16 * MIN + (i % 4) * 1000));
    const last = slow[slow.length - 1]!.at;
    expect(stepUpLockout(slow, last + 1).locked).toBe(false); // never 5 in 15 minutes
    const twentieth = [...slow, at('p19', last + 16 * MIN)];
    expect(stepUpLockout(twentieth, last + 16 * MIN + 1)).toMatchObject({ locked: true, strikes: 1, until: last + 16 * MIN + MIN });
    const next = [...twentieth, at('p20', last + 20 * MIN)];
    expect(stepUpLockout(next, last + 20 * MIN + 1)).toMatchObject({ locked: true, strikes: 2, until: last + 20 * MIN + 2 * MIN });
    // Older than the look-back, they count no more.
    expect(stepUpLockout(twentieth, last + 16 * MIN + DEFAULT_LOCKOUT.lookbackMs).locked).toBe(false);
  });

  it('failures spread beyond the window never lock; ties in time still count', () => {
    const spread = [0, 4, 8, 12, 16, 20].map((m, i) => at(`s${i}`, m * MIN));
    expect(stepUpLockout(spread, 21 * MIN).locked).toBe(false);
    const tied = [1, 2, 3, 4, 5].map((i) => at(`t${i}`, 1000));
    expect(stepUpLockout(tied, 1000).locked).toBe(true);
  });
});

describe('credential decisions (issue 13, finding 2)', () => {
  it('a bad MAC, removal, revocation, expiry or a disabled operator refuses', () => {
    const ok = { revokedAt: null, expiresAt: null, macValid: true };
    const op = { disabledAt: null, removedAt: null, macValid: true };
    expect(credentialStatus(ok, op, 10)).toEqual({ ok: true });
    expect(credentialStatus({ ...ok, macValid: false }, op, 10)).toEqual({ ok: false, reason: 'integrity' });
    expect(credentialStatus(ok, { ...op, macValid: false }, 10)).toEqual({ ok: false, reason: 'integrity' });
    expect(credentialStatus({ ...ok, revokedAt: 5 }, op, 10)).toEqual({ ok: false, reason: 'revoked' });
    expect(credentialStatus({ ...ok, expiresAt: 10 }, op, 10)).toEqual({ ok: false, reason: 'expired' });
    expect(credentialStatus({ ...ok, expiresAt: 11 }, op, 10)).toEqual({ ok: true });
    expect(credentialStatus(ok, { ...op, disabledAt: 1 }, 10)).toEqual({ ok: false, reason: 'disabled' });
    expect(credentialStatus(ok, { ...op, removedAt: 1 }, 10)).toEqual({ ok: false, reason: 'removed' });
  });

  it('an operator acting without a token in hand (Slack, reassignment, cool-down) gets the same operator checks', () => {
    const op = { disabledAt: null, removedAt: null, macValid: true };
    expect(operatorStatus(op)).toEqual({ ok: true });
    expect(operatorStatus({ ...op, macValid: false })).toEqual({ ok: false, reason: 'integrity' });
    expect(operatorStatus({ ...op, removedAt: 1, disabledAt: 1 })).toEqual({ ok: false, reason: 'removed' });
    expect(operatorStatus({ ...op, disabledAt: 1 })).toEqual({ ok: false, reason: 'disabled' });
  });

  it('the last active admin is never disabled, removed or demoted; non-admins manage nothing', () => {
    const a = { id: 'a', name: 'a', roles: ['admin' as const], active: true };
    const b = { id: 'b', name: 'b', roles: ['admin' as const], active: false };
    expect(() => checkOperatorChange(a, a, { disabled: true }, [a, b])).toThrow(/last active admin/);
    expect(() => checkOperatorChange(a, a, { roles: ['director'] }, [a, b])).toThrow(/last active admin/);
    expect(() => checkOperatorChange(a, a, { removed: true }, [a])).toThrow(/last active admin/);
    expect(() => checkOperatorChange(a, a, { roles: ['admin', 'lead'] }, [a])).not.toThrow();
    expect(() => checkOperatorChange(a, a, { disabled: true }, [a, { ...b, active: true }])).not.toThrow();
    expect(() => checkOperatorChange({ id: 'l', roles: ['director'] }, b, {}, [a, b])).toThrow(/only admins/);
  });

  it('grace periods are whole seconds within a week', () => {
    expect(graceEnd(1000, undefined)).toBe(1000);
    expect(graceEnd(1000, 60)).toBe(61_000);
    expect(() => graceEnd(0, -1)).toThrow();
    expect(() => graceEnd(0, 1.5)).toThrow();
    expect(() => graceEnd(0, 7 * 86_400 + 1)).toThrow();
  });
});

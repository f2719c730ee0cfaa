import { describe, expect, it } from 'vitest';
import { approverVelocity, checkRate, cooldownState, type ApprovalRecord } from '../src/guard/index.ts';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const MIN = 60_000;
const approvals = (minutesAgo: number[], riskLevel: ApprovalRecord['riskLevel'] = 'high'): ApprovalRecord[] =>
  minutesAgo.map((m, i) => ({ requestId: `req_${i}`, at: NOW - m * MIN, riskLevel }));

describe('checkRate', () => {
  it('allows under every limit and names the first window that is full, with its reset time', () => {
    const windows = [
      { name: 'minute', ms: MIN, limit: 3 },
      { name: 'hour', ms: 60 * MIN, limit: 10 },
    ];
    expect(checkRate([NOW - 10_000, NOW - 20_000], NOW, windows)).toMatchObject({ allowed: true, counts: { minute: 2, hour: 2 }, reason: null, resetAt: null });
    const full = checkRate([NOW - 10_000, NOW - 20_000, NOW - 30_000], NOW, windows);
    expect(full).toMatchObject({ allowed: false, reason: '3 in the last minute (limit 3)' });
    expect(full.resetAt).toBe(new Date(NOW - 30_000 + MIN).toISOString());
  });
});

describe('approver velocity (defaults: 10/h, 50/day for high and critical)', () => {
  it('counts only high/critical approvals and blocks the 11th in an hour', () => {
    const ten = approvals([1, 2, 3, 4, 5, 6, 7, 8, 9, 59]);
    const result = approverVelocity(ten, NOW, 'critical');
    expect(result).toMatchObject({ allowed: false, applies: true, counts: { hour: 10, day: 10 }, limits: { hour: 10, day: 50 } });
    expect(result.resetAt).toBe(new Date(NOW - 59 * MIN + 60 * MIN).toISOString());
    expect(approverVelocity(ten, NOW, 'low')).toMatchObject({ allowed: true, applies: false });
    expect(approverVelocity(approvals([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'low'), NOW, 'high')).toMatchObject({ allowed: true, counts: { hour: 0 } });
  });

  it('enforces the daily limit across hours', () => {
    const fifty = approvals(Array.from({ length: 50 }, (_, i) => 61 + i * 20));
    expect(approverVelocity(fifty, NOW, 'high')).toMatchObject({ allowed: false, counts: { hour: 0, day: 50 }, reason: '50 in the last day (limit 50)' });
  });
});

describe('cool-downs (defaults: 5 approvals in 15 min → 30 min)', () => {
  it('starts after the fifth approval inside the window, and ends 30 minutes later', () => {
    const five = approvals([14, 10, 8, 5, 1]);
    const state = cooldownState(five, NOW);
    expect(state).toMatchObject({ active: true, until: new Date(NOW - MIN + 30 * MIN).toISOString() });
    expect(state.triggeredBy).toHaveLength(5);
    expect(cooldownState(five, NOW + 30 * MIN).active).toBe(false);
  });

  it('does not start for approvals spread wider than the window, or for low risk', () => {
    expect(cooldownState(approvals([40, 30, 20, 10, 1]), NOW).active).toBe(false);
    expect(cooldownState(approvals([5, 4, 3, 2, 1], 'low'), NOW).active).toBe(false);
  });

  it('honours a manual cool-down with its reason, and the later end wins', () => {
    const manual = { until: NOW + 60 * MIN, reason: 'paged all night' };
    expect(cooldownState([], NOW, undefined, manual)).toMatchObject({ active: true, reason: 'manual: paged all night' });
    const auto = cooldownState(approvals([5, 4, 3, 2, 1]), NOW, undefined, { until: NOW + MIN, reason: 'short' });
    expect(auto.reason).toContain('5 approvals');
  });
});

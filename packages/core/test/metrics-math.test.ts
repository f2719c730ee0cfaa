/** The metrics math defined once in core: the dashboard summary and Prometheus both use it. */
import { describe, expect, it } from 'vitest';
import { quantile, rate, slaCompliance, withinSla } from '../src/metrics.ts';

describe('metrics math', () => {
  it('quantiles interpolate linearly between sorted values', () => {
    expect(quantile([], 0.9)).toBeNull();
    expect(quantile([1, 3], 0.5)).toBe(2);
    expect(quantile([5, 6, 7], 1)).toBe(7);
  });

  it('a rate of nothing is unknown, not zero', () => {
    expect(rate(0, 0)).toBeNull();
    expect(rate(1, 4)).toBe(0.25);
    expect(slaCompliance(0, 0)).toBeNull();
    expect(slaCompliance(3, 1)).toBe(0.75);
  });

  it('a decision at the due instant meets the SLA; one after misses it; no SLA is neither', () => {
    const due = '2026-01-01T00:00:00.000Z';
    expect(withinSla(Date.parse(due), due)).toBe(true);
    expect(withinSla(Date.parse(due) + 1, due)).toBe(false);
    expect(withinSla(0, null)).toBeNull();
  });
});

/** One score format for the CLI, the dashboard and the channels (issue 11 point 14). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatScore } from '../src/format.ts';
import { formatScore as viaIndex } from '../src/index.ts';

describe('formatScore', () => {
  it('rounds halves up as written in decimal, where toFixed would not', () => {
    expect((0.565).toFixed(2)).toBe('0.56'); // the trap
    expect(formatScore(0.565)).toBe('0.57');
    expect(formatScore(0.705)).toBe('0.71');
    expect(formatScore(0.015)).toBe('0.02');
    expect(formatScore(0.4649)).toBe('0.46');
    expect(formatScore(0)).toBe('0.00');
    expect(formatScore(1)).toBe('1.00');
  });

  it('says "-" for anything that is not a finite number', () => {
    for (const bad of [Number.NaN, Infinity, -Infinity, null, undefined]) expect(formatScore(bad)).toBe('-');
  });

  it('is the same function through the index and the subpath, and agrees with decimal rounding of every 3-digit score', () => {
    expect(viaIndex).toBe(formatScore);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), (thousandths) => {
        const expected = (Math.floor((thousandths + 5) / 10) / 100).toFixed(2);
        expect(formatScore(thousandths / 1000)).toBe(expected);
      }),
      { numRuns: 1001 },
    );
  });
});

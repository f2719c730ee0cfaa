/**
 * The README's policy examples are policies: each ```yaml block loads (a newcomer copies them).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../src/index.ts';

const README = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
const blocks = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

describe('README policy examples', () => {
  it('there are some', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(2);
  });

  it.each(blocks.map((b, i) => [i, b] as const))('block %i loads as a policy', (_i, yaml) => {
    const result = parsePolicy(yaml);
    expect(result.ok ? [] : result.errors).toEqual([]);
  });
});

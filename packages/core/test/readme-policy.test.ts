/**
 * The README's policy examples are policies: each ```yaml block loads (a newcomer copies them).
 * A block that starts with the identity file's keys (`oidc:`, `scim:`, `roleMap:`) is the
 * COUNTERSIGN_IDENTITY_FILE example, and loads as that file instead.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { normalizeActionName, parseIdentityFile, parsePolicy } from '../src/index.ts';

const README = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
const all = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
const isIdentityFile = (yaml: string) => /^(oidc|scim|roleMap):/m.test(yaml) && !/^(rules|levels|escalation|channels):/m.test(yaml);
const blocks = all.filter((b) => !isIdentityFile(b));
const identityBlocks = all.filter(isIdentityFile);

describe('README policy examples', () => {
  it('there are some', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    expect(identityBlocks.length).toBe(1);
  });

  it('the identity file example loads as COUNTERSIGN_IDENTITY_FILE', () => {
    expect(() => parseIdentityFile(identityBlocks[0]!, 'README')).not.toThrow();
  });

  it.each(blocks.map((b, i) => [i, b] as const))('block %i loads as a policy', (_i, yaml) => {
    const result = parsePolicy(yaml);
    expect(result.ok ? [] : result.errors).toEqual([]);
  });
});

describe("README's table of action names in normal form", () => {
  const table = /\| written \| compared as \|\n\| --- \| --- \|\n((?:\|[^\n]*\|\n)+)/.exec(README);
  const rows = (table?.[1] ?? '').trim().split('\n').map((line) => line.split('|').map((c) => c.trim()).filter((c) => c !== ''));
  it('is there', () => {
    expect(rows.length).toBeGreaterThanOrEqual(5);
  });
  it.each(rows.map((r) => [r[0]!, r[1]!] as const))('%s → %s', (written, normal) => {
    const names = [...written.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(normalizeActionName(name)).toBe(normal.replaceAll('`', ''));
  });
});

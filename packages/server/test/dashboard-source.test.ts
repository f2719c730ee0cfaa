/**
 * Agent text must only reach the page as text. This guards the source: no HTML sinks, no
 * markdown renderer, no links built from agent data, no eval-like calls.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', '..', 'dashboard', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : /\.(ts|tsx)$/.test(name) ? [path] : [];
  });
}

const FORBIDDEN: Array<[RegExp, string]> = [
  [/dangerouslySetInnerHTML/, 'dangerouslySetInnerHTML'],
  [/\.(inner|outer)HTML\b/, 'innerHTML / outerHTML'],
  [/insertAdjacentHTML|document\.write|createContextualFragment|DOMParser/, 'HTML parsing sinks'],
  [/\beval\s*\(|new Function\s*\(|setTimeout\(\s*['"`]/, 'eval-like calls'],
  [/from ['"](marked|markdown-it|remark|react-markdown|showdown)/, 'a markdown renderer'],
  [/href=\{(?!requestHref\(|href\b)/, 'a link built from data (only requestHref(id) and fixed routes)'],
];

describe('dashboard source', () => {
  const sources = files(SRC);
  it('has sources to check', () => {
    expect(sources.length).toBeGreaterThan(10);
  });
  it.each(FORBIDDEN)('never uses %s', (pattern) => {
    const offenders = sources.filter((f) => pattern.test(readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });
});

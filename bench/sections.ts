/**
 * BENCHMARKS.md is written by several benchmarks; each owns one section between markers
 * (`<!-- bench:NAME -->` … `<!-- /bench:NAME -->`) and replaces only that, so running one
 * benchmark never erases another's results.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FILE = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));
const HEADER = `# Benchmarks

Written by \`npm run bench\`, which runs each benchmark below in turn; each replaces only its own
section. Numbers come from the machine named in each section, on loopback, with no other
network. They are measurements of one run, not guarantees.
`;
const ORDER = ['http', 'scheduler', 'audit'];

export function writeSection(name: string, markdown: string): void {
  const text = existsSync(FILE) ? readFileSync(FILE, 'utf8') : HEADER;
  const sections = new Map<string, string>();
  for (const match of text.matchAll(/<!-- bench:([a-z]+) -->\n([\s\S]*?)<!-- \/bench:\1 -->/g)) {
    sections.set(match[1]!, match[2]!);
  }
  sections.set(name, `${markdown.trim()}\n`);
  const names = [...ORDER.filter((n) => sections.has(n)), ...[...sections.keys()].filter((n) => !ORDER.includes(n))];
  const body = names.map((n) => `<!-- bench:${n} -->\n${sections.get(n)}<!-- /bench:${n} -->`).join('\n\n');
  writeFileSync(FILE, `${HEADER}\n${body}\n`);
}

/**
 * BENCHMARKS.md is written by several benchmarks; each owns one section between markers
 * (`<!-- bench:NAME -->` … `<!-- /bench:NAME -->`) and replaces only that, in place, so running
 * one benchmark never erases another's results, nor text outside the markers (the screening
 * evaluation keeps its own `screen:eval` section). A new section goes at the end.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FILE = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));
const HEADER = `# Benchmarks

Written by \`npm run bench\`, which runs each benchmark below in turn; each replaces only its own
section. Numbers come from the machine named in each section, on loopback, with no other
network. They are measurements of one run, not guarantees.
`;

export function writeSection(name: string, markdown: string): void {
  if (!/^[a-z]+$/.test(name)) throw new Error(`section names are lower-case letters: ${name}`);
  const text = existsSync(FILE) ? readFileSync(FILE, 'utf8') : HEADER;
  const block = `<!-- bench:${name} -->\n${markdown.trim()}\n<!-- /bench:${name} -->`;
  const own = new RegExp(`<!-- bench:${name} -->\\n[\\s\\S]*?<!-- /bench:${name} -->`);
  const next = own.test(text) ? text.replace(own, () => block) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(FILE, next);
}

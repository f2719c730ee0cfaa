#!/usr/bin/env node
// `countersign`. Installed (from the registry or a packed tarball), the package holds only its
// build, and this runs dist/ with plain node. In a clone of the repository src/ is the truth:
// this runs the TypeScript sources through tsx (tools/dev/register.mjs), the other
// @countersign packages' sources included, so a clone needs no build step.
// `countersign hook …` blocks the tool call (exit 2) on any failure, loading included:
// Claude Code runs a call whose hook failed any other way.
import { existsSync } from 'node:fs';

const sources = new URL('../src/cli/main.ts', import.meta.url);
try {
  if (existsSync(sources)) {
    await import(new URL('../../../tools/dev/register.mjs', import.meta.url).href);
    await import(sources.href);
  } else {
    await import('../dist/cli/main.js');
  }
} catch (err) {
  if (process.argv[2] !== 'hook') throw err;
  process.stderr.write(`Countersign hook: failed to start: ${err?.message ?? err}; the tool call is blocked\n`, () => process.exit(2));
}

#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx, so `npm install` is the only setup step.
// `countersign hook …` blocks the tool call (exit 2) on any failure, loading the sources included:
// Claude Code runs a call whose hook failed any other way.
import { register } from 'tsx/esm/api';

try {
  register();
  await import('../src/cli/main.ts');
} catch (err) {
  if (process.argv[2] !== 'hook') throw err;
  process.stderr.write(`Countersign hook: failed to start: ${err?.message ?? err}; the tool call is blocked\n`, () => process.exit(2));
}

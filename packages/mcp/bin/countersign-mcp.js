#!/usr/bin/env node
// `countersign-mcp`, like the `countersign` binary: dist/ with plain node when installed, the
// TypeScript sources through tsx in a clone (tools/dev/register.mjs). A hook invocation blocks
// the tool call (exit 2) on any failure, including loading the code.
import { existsSync } from 'node:fs';

const hook = process.argv[2] === 'hook';
const sources = new URL('../src/cli.ts', import.meta.url);
try {
  let cli;
  if (existsSync(sources)) {
    await import(new URL('../../../tools/dev/register.mjs', import.meta.url).href);
    cli = await import(sources.href);
  } else {
    cli = await import('../dist/cli.js');
  }
  const { mcpProgram, runHookCli } = cli;
  if (hook) await runHookCli(() => mcpProgram().parseAsync(process.argv));
  else await mcpProgram().parseAsync(process.argv);
} catch (err) {
  if (!hook) {
    if (typeof err?.code === 'string' && err.code.startsWith('commander.')) process.exit(err.exitCode ?? 1);
    throw err;
  }
  process.stderr.write(`Countersign hook: failed to start: ${err?.message ?? err}; the tool call is blocked\n`, () => process.exit(2));
}

#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx, like the `countersign` binary. A hook
// invocation blocks the tool call (exit 2) on any failure, including loading the sources.
import { register } from 'tsx/esm/api';

const hook = process.argv[2] === 'hook';
try {
  register();
  const { mcpProgram, runHookCli } = await import('../src/cli.ts');
  if (hook) await runHookCli(() => mcpProgram().parseAsync(process.argv));
  else await mcpProgram().parseAsync(process.argv);
} catch (err) {
  if (!hook) {
    if (typeof err?.code === 'string' && err.code.startsWith('commander.')) process.exit(err.exitCode ?? 1);
    throw err;
  }
  process.stderr.write(`Countersign hook: failed to start: ${err?.message ?? err}; the tool call is blocked\n`, () => process.exit(2));
}

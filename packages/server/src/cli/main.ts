/**
 * The `countersign` command. Every command has --help and --json; errors print their code and
 * exit non-zero. Commands other than `serve` talk to a server over HTTP
 * (COUNTERSIGN_URL / COUNTERSIGN_TOKEN), exactly as any other client would.
 */
import { CommanderError } from 'commander';
import { CountersignError } from '@countersign/core';
import { isHookInvocation, runHookCli } from '@countersign/mcp/cli';
import { buildProgram } from './program.ts';

const program = buildProgram();

// The Claude Code hook never fails open: any failure blocks the tool call (exit 2), see hook-guard.ts.
if (isHookInvocation(process.argv)) await runHookCli(() => program.parseAsync(process.argv));
else try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode);
  }
  const json = process.argv.includes('--json');
  if (err instanceof CountersignError) {
    if (json) console.error(JSON.stringify(err.toJSON()));
    else console.error(`error ${err.code}: ${err.message}${formatDetails(err.details)}`);
  } else {
    console.error(`error INTERNAL: ${(err as Error).message ?? String(err)}`);
  }
  process.exit(1);
}

function formatDetails(details: unknown): string {
  const hint = (details as { hint?: unknown } | undefined)?.hint;
  if (typeof hint === 'string') return `\n  hint: ${hint}`;
  if (details && typeof details === 'object' && 'errors' in details && Array.isArray((details as { errors: unknown[] }).errors)) {
    return '\n' + (details as { errors: Array<{ path: string; message: string }> }).errors.map((e) => `  ${e.path}: ${e.message}`).join('\n');
  }
  return '';
}

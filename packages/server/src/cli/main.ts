/**
 * The `countersign` command. Every command has --help and --json; errors print their code and
 * exit non-zero. Commands other than `serve` talk to a server over HTTP
 * (COUNTERSIGN_URL / COUNTERSIGN_TOKEN), exactly as any other client would.
 */
import { CommanderError } from 'commander';
import { CountersignError } from '@countersign/core/errors';
import { isHookInvocation, runHookCli } from '@countersign/mcp/cli';
import { errorDetailLines } from './format.ts';
import { buildProgram } from './program.ts';

// `countersign history | head -3`: once the reader has gone, stop quietly, as other Unix tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

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
    else console.error(`error ${err.code}: ${err.message}${errorDetailLines(err.details)}`);
  } else {
    console.error(`error INTERNAL: ${(err as Error).message ?? String(err)}`);
  }
  process.exit(1);
}

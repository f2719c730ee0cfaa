/**
 * The Claude Code hook never fails open. Claude Code reads a hook's exit code 2 as "block this
 * tool call" but any other failure (exit 1, a crash, a bad flag, being stopped) as a non-blocking
 * error — and then runs the call. So whenever the hook cannot give its own answer, for whatever
 * reason, it says why on stderr and exits 2. Both entry points (`countersign hook …` and
 * `countersign-mcp hook …`) run through `runHookCli`.
 */
import { CommanderError } from 'commander';

/** Whether argv (`node script hook …`) invokes the hook. */
export function isHookInvocation(argv: readonly string[]): boolean {
  return argv[2] === 'hook';
}

let blocking = false;

/** Blocks the tool call: the reason on stderr, exit code 2 (stderr is flushed first, with a fallback). */
export function blockToolCall(reason: string): void {
  if (blocking) return;
  blocking = true;
  const exit = () => process.exit(2);
  setTimeout(exit, 1000).unref();
  process.stderr.write(`Countersign hook: ${reason.replace(/\s+/g, ' ').slice(0, 500)}; the tool call is blocked\n`, exit);
}

/** Exits 0 once everything written to stdout (the hook's JSON answer) has been flushed. */
export function exitAfterAnswer(): Promise<never> {
  return new Promise<never>(() => {
    process.stdout.write('', () => process.exit(0));
  });
}

/**
 * Runs the CLI for a hook invocation: a signal, an uncaught error, a bad argument or any throw
 * blocks the call. `--help` and `--version` still exit 0.
 */
export async function runHookCli(parse: () => Promise<unknown>): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(signal, () => blockToolCall(`stopped by ${signal} before Countersign decided`));
  }
  process.on('uncaughtException', (err) => blockToolCall(`failed: ${err.message}`));
  process.on('unhandledRejection', (err) => blockToolCall(`failed: ${err instanceof Error ? err.message : String(err)}`));
  try {
    await parse();
  } catch (err) {
    if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help')) {
      process.exit(0);
    }
    blockToolCall(`failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The `countersign` command tree, built without parsing anything: main.ts parses argv with it,
 * and the snapshot test reads `--help` of every command from it in process.
 */
import { Command } from 'commander';
import { registerServe } from './commands/serve.ts';
import { registerClientCommands } from './commands/index.ts';
import { registerMcpCommands } from '@countersign/mcp/cli';

export function buildProgram(): Command {
  const program = new Command()
    .name('countersign')
    .description('Countersign: a human-in-the-loop approval gateway for AI agents')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  registerServe(program);
  registerClientCommands(program);
  // `countersign mcp serve|proxy` and `countersign hook claude-code` (@countersign/mcp; each loads
  // what it needs only when it runs).
  registerMcpCommands(program);
  return program;
}

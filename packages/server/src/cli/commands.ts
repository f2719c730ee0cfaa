/**
 * The client commands of `countersign` (everything but `serve`). They talk to a server over the
 * HTTP API (COUNTERSIGN_URL / COUNTERSIGN_TOKEN, or --url / --token), exactly as any other
 * client would, and throw CountersignError for main.ts to print.
 *
 *   status · show · approve · reject · history      request-commands.ts
 *   config                                          config-command.ts
 *   operators add|list · keys create · audit tail   admin-commands.ts
 *   keys rotate-encryption (opens the database)    rotate-command.ts
 *   mfa · approvers · agents                        ../guard/cli.ts
 */
import type { Command } from 'commander';
import { registerAdminCommands } from './admin-commands.ts';
import { registerConfigCommand } from './config-command.ts';
import { registerEscalationCommands } from './escalation-commands.ts';
import { registerRequestCommands } from './request-commands.ts';
import { registerGuardCommands } from '../guard/cli.ts';

export function registerClientCommands(program: Command): void {
  registerRequestCommands(program);
  registerConfigCommand(program);
  registerAdminCommands(program);
  registerEscalationCommands(program);
  registerGuardCommands(program);
}

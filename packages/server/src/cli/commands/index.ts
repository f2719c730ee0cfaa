/**
 * The client commands of `countersign` (everything but `serve`). They talk to a server over the
 * HTTP API (COUNTERSIGN_URL / COUNTERSIGN_TOKEN, or --url / --token), exactly as any other
 * client would, and throw CountersignError for main.ts to print.
 *
 *   status · show · approve · reject · history      requests.ts
 *   config                                          config.ts
 *   operators add|list · keys create                admin.ts
 *   audit … · report                                audit.ts
 *   keys rotate-encryption (opens the database)     keys.ts
 *   extend · reassign · escalate · deliveries       escalation.ts
 *   mfa · approvers · agents · roles                guard.ts
 *   screen (and its verdicts, metrics, calibration)  screen.ts
 *   policy check|diff|replay                        policy.ts
 *   agents config get|set                           agents.ts
 *   serve                                           serve.ts (registered by ../program.ts)
 */
import type { Command } from 'commander';
import { registerAdminCommands } from './admin.ts';
import { registerConfigCommand } from './config.ts';
import { registerEscalationCommands } from './escalation.ts';
import { registerRequestCommands } from './requests.ts';
import { registerGuardCommands } from './guard.ts';
import { registerScreenCommands } from './screen.ts';
import { registerPolicyCommands } from './policy.ts';
import { registerAgentConfigCommands } from './agents.ts';

export function registerClientCommands(program: Command): void {
  registerRequestCommands(program);
  registerConfigCommand(program);
  registerAdminCommands(program);
  registerEscalationCommands(program);
  registerGuardCommands(program);
  registerScreenCommands(program);
  registerPolicyCommands(program);
  registerAgentConfigCommands(program); // under guard.ts's `agents`
}

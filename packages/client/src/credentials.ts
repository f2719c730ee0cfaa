/**
 * Which credential agent-side code sends. Agents and operators are different principals: an
 * operator token (`cso_…`) in an agent would file requests as `operator:<name>` (who can then
 * never review them) and, worse, hand a reviewer's credential to code that an adversary may
 * steer. So agent-side code refuses one outright, wherever it came from, and says what to use.
 *
 * Sources, in order: the explicit key; `COUNTERSIGN_AGENT_KEY`; a `csk_` key found in
 * `COUNTERSIGN_TOKEN` (older setups put the agent key there; that variable is now the CLI's
 * operator token, so anything else in it is ignored).
 */
import { CountersignError } from '@countersign/core';

export type Env = Readonly<Record<string, string | undefined>>;

export const AGENT_KEY_PREFIX = 'csk_';
export const OPERATOR_TOKEN_PREFIX = 'cso_';

function refuseOperatorToken(where: string): never {
  throw new CountersignError(
    'UNAUTHENTICATED',
    `${where} is an operator token (cso_…), a reviewer's credential; agent-side code must use an agent key (csk_…): ` +
      'pass apiKey or set COUNTERSIGN_AGENT_KEY (create one with `countersign keys create` or use the bootstrap agent key)',
    { source: where },
  );
}

/** The agent key to send, or a CountersignError (UNAUTHENTICATED) saying what is wrong or missing. */
export function resolveAgentKey(explicit: string | undefined, env: Env): string {
  if (explicit !== undefined && explicit !== '') {
    if (explicit.startsWith(OPERATOR_TOKEN_PREFIX)) refuseOperatorToken('the apiKey passed');
    return explicit;
  }
  const agentKey = env.COUNTERSIGN_AGENT_KEY?.trim();
  if (agentKey) {
    if (agentKey.startsWith(OPERATOR_TOKEN_PREFIX)) refuseOperatorToken('COUNTERSIGN_AGENT_KEY');
    return agentKey;
  }
  const token = env.COUNTERSIGN_TOKEN?.trim();
  if (token?.startsWith(AGENT_KEY_PREFIX)) return token;
  if (token?.startsWith(OPERATOR_TOKEN_PREFIX)) refuseOperatorToken('COUNTERSIGN_TOKEN (the CLI\'s operator token)');
  throw new CountersignError('UNAUTHENTICATED', 'no agent key: pass apiKey or set COUNTERSIGN_AGENT_KEY (csk_…)');
}

/** The process environment when there is one (Node, Bun, Deno's compat), else nothing. */
export function processEnv(): Env {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env ?? {};
}

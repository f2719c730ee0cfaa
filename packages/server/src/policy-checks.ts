/**
 * How the server judges a policy text, in one place: core's `parsePolicy` (every wrong key, with
 * "did you mean"), then the checks that belong to the server's own parts (channel settings and the
 * secrets they name in the environment). Startup, a SIGHUP reload (Engine.activatePolicy),
 * `countersign policy check` and `POST /v1/policy/replay` all refuse through here, with the same
 * POLICY_INVALID error and `details.errors` ([{path, message}]), which the CLI prints with
 * `errorDetailLines`.
 */
import { CountersignError, parsePolicy, type Policy, type PolicyError } from '@countersign/core';
import { channelPolicyCheck } from './channels/config.ts';

export type PolicyCheck = (policy: Policy) => PolicyError[];

/** The server's checks beyond core's, for the environment the server (or the CLI) runs in. */
export function serverPolicyChecks(env: NodeJS.ProcessEnv): PolicyCheck[] {
  return [channelPolicyCheck(env)];
}

/** The policy `text` (from `source`, a path or a description) resolved, or POLICY_INVALID naming every problem. */
export function validatePolicyText(text: string, source: string, checks: readonly PolicyCheck[]): Policy {
  const result = parsePolicy(text);
  if (!result.ok) throw new CountersignError('POLICY_INVALID', `policy from ${source} is invalid`, { errors: result.errors });
  const checkErrors = checks.flatMap((check) => check(result.policy));
  if (checkErrors.length > 0) throw new CountersignError('POLICY_INVALID', `policy from ${source} is invalid`, { errors: checkErrors });
  return result.policy;
}

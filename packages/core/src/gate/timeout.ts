/**
 * Approval by silence (`onFinalTimeout: approve`), decided like any other approval: over the
 * payload that would run, against the policy that is active now (review finding 1). A clock only
 * ever approves the request exactly as the agent asked it. It expires instead when the round's
 * payload is not that original (a reviewer's modification or an alternative was proposed: silence
 * never completes someone else's quorum on other args), or when the active policy blocks the
 * original now. Pure: the shell assesses the original under the active policy and passes it in.
 */
import { payloadKey } from '../canonical.ts';
import type { Assessment } from '../schemas.ts';
import { resolvePayload, type GateRequest } from './gate.ts';

export type TimeoutOutcome = { type: 'timeout_approve'; reason: string } | { type: 'expire'; reason: string };

export function timeoutOutcome(
  request: Pick<GateRequest, 'action' | 'args' | 'alternatives' | 'votes' | 'isAdminChange'>,
  /** The original payload (action and args as asked) assessed under the active policy. */
  originalNow: Pick<Assessment, 'route' | 'matchedRules'>,
  reason: string,
): TimeoutOutcome {
  // Four-eyes: an admin change needs another admin's approval; silence is nobody's.
  if (request.isAdminChange === true) return { type: 'expire', reason: `${reason}; an admin change is never approved by timeout` };
  const round = resolvePayload(request, {});
  if (round.key !== payloadKey(request.action, request.args)) {
    const what = round.alternative !== null ? `the alternative "${round.alternative}"` : "a reviewer's modified arguments";
    return { type: 'expire', reason: `${reason}; not approved by timeout because the payload under review is ${what}, not the request as asked` };
  }
  if (originalNow.route === 'block') {
    const rules = originalNow.matchedRules.filter((m) => m.effects.includes('block')).map((m) => m.name);
    return { type: 'expire', reason: `${reason}; not approved by timeout because the active policy blocks it (${rules.length > 0 ? rules.join(', ') : 'policy'})` };
  }
  return { type: 'timeout_approve', reason };
}

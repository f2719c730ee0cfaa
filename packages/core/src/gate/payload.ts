/**
 * The payload that will run, assessed as a request of its own (issue 12, findings 1 and 2): an
 * alternative, or a reviewer's modification, gets the full policy evaluation — blocks, rules,
 * risk, MFA, quorum and approver stages — with the request's own context, confidence, agent
 * and approvers, since those describe the situation the payload would run in.
 */
import type { EvaluationRequest } from '../policy/evaluate.ts';
import { evaluate } from '../policy/evaluate.ts';
import type { HistoryStats, Policy } from '../policy/types.ts';
import type { Assessment, JsonObject } from '../schemas.ts';

export function assessPayload(
  request: EvaluationRequest,
  payload: { readonly action: string; readonly args: JsonObject; readonly description?: string | undefined },
  policy: Policy,
  history: HistoryStats,
  now: Date,
): Assessment {
  const { alternatives: _alternatives, idempotencyKey: _key, ...rest } = request;
  return evaluate(
    { ...rest, action: payload.action, args: payload.args, ...(payload.description !== undefined ? { description: payload.description } : {}) },
    policy,
    history,
    now,
  );
}

/** Each alternative of a create, assessed; a blocked one is kept (the create is accepted) but marked, with its rules named, and can never be chosen. */
export function assessAlternatives(
  request: EvaluationRequest,
  policy: Policy,
  history: (action: string) => HistoryStats,
  now: Date,
): { name: string; assessment: Assessment; blocked: { rules: string[] } | null }[] {
  return (request.alternatives ?? []).map((alt) => {
    const assessment = assessPayload(request, alt, policy, history(alt.action), now);
    const rules = assessment.route === 'block' ? assessment.matchedRules.filter((m) => m.effects.includes('block')).map((m) => m.name) : [];
    return { name: alt.name, assessment, blocked: assessment.route === 'block' ? { rules: rules.length > 0 ? rules : ['policy'] } : null };
  });
}

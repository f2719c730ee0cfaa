/**
 * Red-team review of escalation by cool-down (issue 18): "a repeat changes nothing: the same
 * cool-down again (lastCooldown.key, a re-run after a crash or on a second server ...)". The
 * state keeps only the LATEST cool-down's key, so once another cool-down has touched the request
 * (here: a lead's manual cool-down that is stranded at level 2, which still overwrites
 * lastCooldown), a re-run of the first cool-down's timer (a crash between the sweep and
 * takeTimer, a lease that ran out on a slow sweep) is no longer recognised: one cool-down moves
 * the request a second level, here straight into the final-authority level.
 */
import { describe, expect, it } from 'vitest';
import {
  EMPTY_HISTORY,
  ESCALATION_REPEAT_MS,
  cooldownEscalation,
  evaluate,
  finalAuthorityOf,
  parsePolicy,
  payloadKey,
  roleAt,
  startEscalation,
  type Assessment,
  type CooldownCandidate,
  type EscalationState,
  type GatePayload,
  type GateRequest,
  type Policy,
  type Reviewer,
} from '../src/index.ts';
import { Assessment as AssessmentSchema, CreateRequestBody } from '../src/schemas.ts';

const T0 = Date.parse('2026-12-03T10:00:00Z');

function policy(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const P = policy(`
levels:
  high: { sla: 10m, approvers: [{ operator: carol }] }
escalation:
  levels:
    - { role: reviewer, operators: [carol], after: sla }
    - { role: lead, after: 20m }
    - { operators: [cfo], after: 30m, finalAuthority: true }
`);

const a: Assessment = AssessmentSchema.parse(evaluate({ ...CreateRequestBody.parse({ action: 'isolate_host', confidence: 0.82, riskLevel: 'high' }), agent: 'bot' }, P, EMPTY_HISTORY, new Date(T0)));
const person = (name: string, roles: Reviewer['roles'] = ['reviewer']): Reviewer => ({ id: `op_${name}`, name, roles, groups: [] });
const carol = person('carol');
const lena = person('lena', ['lead']);
const cfo = person('cfo');

function judge(state: EscalationState, key: string, now: number, setBy?: string) {
  const request: GateRequest = {
    id: 'req_1',
    status: 'pending',
    action: 'isolate_host',
    args: {},
    alternatives: [],
    assessment: a,
    votes: [],
    requesterOperatorId: null,
    isAggregate: false,
    aggregated: null,
    agentPaused: null,
    agentDisabled: false,
    escalation: { level: state.level, startLevel: state.startLevel, levelRole: roleAt(state), assignee: null, extended: false, finalAuthority: finalAuthorityOf(state, P) },
  };
  const payload: GatePayload = { action: request.action, args: request.args, alternative: null, key: payloadKey(request.action, request.args), assessment: null };
  const candidates: CooldownCandidate[] = [
    { reviewer: carol, coolingDown: true },
    { reviewer: lena, coolingDown: false },
    { reviewer: cfo, coolingDown: false },
  ];
  return cooldownEscalation({ request, payload, state, cooled: carol.id, key, ...(setBy ? { setBy } : {}), candidates, riskLevels: ['high', 'critical'], now });
}

describe('review: one cool-down moves a request at most one level', () => {
  it('review-cooldown: a re-run of the same cool-down after another cool-down touched the request does not move it again', () => {
    const s = startEscalation(P, a, T0)!;
    // Carol's automatic cool-down (key A) moves it 1 -> 2.
    const first = judge(s, 'cooldown:auto:op_carol:1', T0 + 1000);
    expect(first.type).toBe('escalate');
    if (first.type !== 'escalate') return;
    // A lead's manual cool-down of carol (key B) a little later: lena may not review it, so it is stranded at 2 (correct)...
    const second = judge(first.up.state, 'cooldown:cool_manual', T0 + 2000, lena.id);
    expect(second).toMatchObject({ type: 'stranded', level: 2 });
    if (second.type !== 'stranded') return;
    // ...but its stranded notice overwrote lastCooldown. Key A's timer runs again (crash before takeTimer, lease ran out):
    const rerun = judge(second.state, 'cooldown:auto:op_carol:1', T0 + 1000 + ESCALATION_REPEAT_MS + 1);
    // The same cool-down already moved it once: it must not move it again (here into the CFO's final-authority level).
    expect(rerun.type).not.toBe('escalate');
  });
});

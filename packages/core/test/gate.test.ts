/** The one gate: every check, every ordering conflict, and issue 12's findings as tests. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_APPROVER_LIMITS,
  DEFAULT_COOLDOWN,
  EMPTY_HISTORY,
  GATE_CHECKS,
  assessAlternatives,
  assessPayload,
  dryRun,
  evaluate,
  eligibility,
  gate,
  parsePolicy,
  payloadKey,
  payloadRequirement,
  precheck,
  resolvePayload,
  type ApprovalRecord,
  type ApprovalStage,
  type Assessment,
  type GateInput,
  type GatePayload,
  type GateRequest,
  type GateResult,
  type GateVote,
  type GuardFacts,
  type Policy,
  type Reviewer,
  type RiskLevel,
  type Role,
  type Vote,
} from '../src/index.ts';
import type { EvaluationRequest } from '../src/policy/evaluate.ts';

const NOW = Date.parse('2026-01-01T12:00:00.000Z');
const AT = new Date(NOW).toISOString();

const person = (name: string, roles: Reviewer['roles'] = ['reviewer'], groups: string[] = []): Reviewer => ({ id: `op_${name}`, name, roles, groups });
const alice = person('alice');
const bob = person('bob');
const carol = person('carol');
const lena = person('lena', ['lead']);
const mia = person('mia', ['manager']);
const cfo = person('cfo', ['director']);
const auditor = person('audrey', ['auditor']);

function assessment(over: { risk?: RiskLevel; stages?: ApprovalStage[]; mfa?: boolean; route?: Assessment['route']; blockedBy?: string[]; deny?: number; second?: boolean } = {}): Assessment {
  const route = over.route ?? 'review';
  return {
    riskScore: 0.5,
    riskLevel: over.risk ?? 'medium',
    factors: [],
    automationLevel: 'advisory',
    route,
    requiresApproval: route === 'review',
    matchedRules: (over.blockedBy ?? []).map((name) => ({ name, reason: 'blocked', effects: ['block'] })),
    approval: route === 'review' ? { stages: over.stages ?? [{ count: 1, label: '1 reviewer' }], deny: over.deny ?? 1, ...(over.second ? { modifiedNeedsSecondReviewer: true } : {}) } : null,
    slaSeconds: route === 'review' ? 900 : null,
    slaDueAt: null,
    mfaRequired: route === 'review' && (over.mfa ?? false),
    reasons: [],
  };
}

function request(over: Partial<GateRequest> = {}): GateRequest {
  return {
    id: 'req_1',
    status: 'pending',
    action: 'wire_transfer',
    args: { to: 'acct-1', amount: 100 },
    alternatives: [{ name: 'hold', action: 'hold_payment', args: { to: 'acct-1' } }],
    assessment: assessment(),
    votes: [],
    requesterOperatorId: null,
    isAggregate: false,
    aggregated: null,
    agentPaused: null,
    agentDisabled: false,
    escalation: null,
    ...over,
  };
}

const guard = (over: Partial<GuardFacts> = {}): GuardFacts => ({
  now: NOW,
  ip: { allowed: true },
  approvals: [],
  manualCooldown: null,
  velocity: DEFAULT_APPROVER_LIMITS,
  cooldown: DEFAULT_COOLDOWN,
  ...over,
});

const approve = (over: Partial<GateVote> = {}): GateVote => ({ verdict: 'approve', totp: 'absent', matchCode: 'absent', at: AT, ...over });
const reject = (over: Partial<GateVote> = {}): GateVote => ({ verdict: 'reject', totp: 'absent', matchCode: 'absent', at: AT, ...over });

/** The input for a vote, with the payload resolved as the engine would (assessment given for non-original payloads). */
function input(req: GateRequest, reviewer: Reviewer, vote: GateVote, g: GuardFacts = guard(), payloadAssessment: Assessment | null = null): GateInput {
  const p = resolvePayload(req, vote);
  const original = p.key === payloadKey(req.action, req.args);
  const payload: GatePayload = { ...p, assessment: original ? null : (payloadAssessment ?? assessment()) };
  return { request: req, payload, reviewer, vote, guard: g };
}

const outcome = (r: GateResult): string => (r.ok ? r.status : r.error.code);
const castVotes = (req: GateRequest, steps: [Reviewer, GateVote, Assessment?][]): { req: GateRequest; last: GateResult } => {
  let cur = req;
  let last: GateResult | undefined;
  for (const [who, vote, a] of steps) {
    last = gate(input(cur, who, vote, guard(), a ?? null));
    if (last.ok) cur = { ...cur, votes: [...cur.votes, last.vote], status: last.status };
  }
  return { req: cur, last: last! };
};

const approvalsAt = (n: number, spacingMs: number, risk: RiskLevel = 'high'): ApprovalRecord[] =>
  Array.from({ length: n }, (_, i) => ({ requestId: `r${i}`, at: NOW - (i + 1) * spacingMs, riskLevel: risk }));

const vote = (who: Reviewer, key: string, stage: number, extra: Partial<Vote> = {}): Vote => ({
  reviewer: { type: 'operator', id: who.id, name: who.name },
  verdict: 'approve',
  reason: null,
  args: null,
  alternative: null,
  payloadKey: key,
  stage,
  at: AT,
  ...extra,
});

const ORIGINAL_KEY = payloadKey('wire_transfer', { to: 'acct-1', amount: 100 });
const high = assessment({ risk: 'high' });
const critical = assessment({ risk: 'critical', stages: [{ count: 2, label: '2 reviewers' }], mfa: true });

describe('every check (table)', () => {
  const cases: [string, GateInput, string][] = [
    ['an eligible approval decides a one-reviewer request', input(request(), alice, approve()), 'approved'],
    ['state: a decided request', input(request({ status: 'approved' }), alice, approve()), 'ALREADY_DECIDED'],
    ['state: an executing request', input(request({ status: 'executing' }), alice, reject()), 'ALREADY_DECIDED'],
    ['state: the payload shown is not the one approved', input(request(), alice, approve({ seenPayloadKey: payloadKey('x', {}) })), 'PAYLOAD_CHANGED'],
    ['state: the payload shown is the one approved', input(request(), alice, approve({ seenPayloadKey: ORIGINAL_KEY })), 'approved'],
    ['identity: an auditor', input(request(), auditor, approve()), 'NOT_ELIGIBLE'],
    ['identity: an auditor cannot reject either', input(request(), auditor, reject()), 'NOT_ELIGIBLE'],
    ['identity: a reviewer at a manager stage', input(request({ assessment: assessment({ stages: [{ count: 1, role: 'manager', label: 'manager' }] }) }), alice, approve()), 'NOT_ELIGIBLE'],
    ['identity: a director at a manager stage', input(request({ assessment: assessment({ stages: [{ count: 1, role: 'manager', label: 'manager' }] }) }), cfo, approve()), 'approved'],
    ['identity: a group stage, not a member', input(request({ assessment: assessment({ stages: [{ count: 1, group: 'payments', label: 'payments' }] }) }), alice, approve()), 'NOT_ELIGIBLE'],
    ['separation: own request', input(request({ requesterOperatorId: alice.id }), alice, approve()), 'SELF_REVIEW'],
    ['separation: own request, rejecting', input(request({ requesterOperatorId: alice.id }), alice, reject()), 'SELF_REVIEW'],
    ['separation: an approval in this round', input(request({ assessment: assessment({ stages: [{ count: 2, label: '2' }] }), votes: [vote(alice, ORIGINAL_KEY, 0)] }), alice, approve()), 'ALREADY_REVIEWED'],
    ['separation: an earlier rejection', input(request({ assessment: assessment({ deny: 2 }), votes: [{ ...vote(alice, ORIGINAL_KEY, 0), verdict: 'reject', payloadKey: null, stage: null }] }), alice, approve()), 'ALREADY_REVIEWED'],
    ['aggregate: a member of an aggregate review', input(request({ aggregated: { aggregateId: 'req_agg', collectingUntil: null } }), alice, approve()), 'AGGREGATED'],
    ['aggregate: rejecting a member alone is allowed', input(request({ aggregated: { aggregateId: 'req_agg', collectingUntil: null } }), alice, reject()), 'rejected'],
    ['aggregate: an aggregate cannot be modified', input(request({ isAggregate: true }), alice, approve({ args: { x: 1 } })), 'VALIDATION_FAILED'],
    ['aggregate: its agent is paused', input(request({ agentPaused: { until: AT, reason: 'slicing' } }), alice, approve()), 'AGENT_PAUSED'],
    ['aggregate: rejecting while paused is allowed', input(request({ agentPaused: { until: AT, reason: 'slicing' } }), alice, reject()), 'rejected'],
    ['aggregate: its agent is disabled (enabled: false)', input(request({ agentDisabled: true }), alice, approve()), 'AGENT_DISABLED'],
    ['aggregate: rejecting while disabled is allowed', input(request({ agentDisabled: true }), alice, reject()), 'rejected'],
    ['ip: outside an allowlist', input(request(), alice, approve(), guard({ ip: { allowed: false, ip: '10.0.0.1', refusedBy: [{ role: 'reviewer' }] } })), 'IP_NOT_ALLOWED'],
    ['ip: rejections are never limited', input(request(), alice, reject(), guard({ ip: { allowed: false, ip: null, refusedBy: [{ operator: 'alice' }] } })), 'rejected'],
    ['limits: cool-down (5 high approvals in 15 min)', input(request({ assessment: high }), alice, approve(), guard({ approvals: approvalsAt(5, 60_000) })), 'COOLDOWN_ACTIVE'],
    ['limits: a manual cool-down', input(request({ assessment: high }), alice, approve(), guard({ manualCooldown: { until: NOW + 60_000, reason: 'lead said so' } })), 'COOLDOWN_ACTIVE'],
    ['limits: velocity (10 high approvals this hour)', input(request({ assessment: high }), alice, approve(), guard({ approvals: approvalsAt(10, 5 * 60_000) })), 'VELOCITY_LIMITED'],
    ['limits: medium risk is not limited', input(request(), alice, approve(), guard({ approvals: approvalsAt(10, 5 * 60_000) })), 'approved'],
    ['limits: off', input(request({ assessment: high }), alice, approve(), guard({ approvals: approvalsAt(10, 5 * 60_000), limitsOff: true })), 'approved'],
    ['limits: rejections are never limited', input(request({ assessment: high }), alice, reject(), guard({ approvals: approvalsAt(10, 5 * 60_000) })), 'rejected'],
    ['stepUp: MFA without a code', input(request({ assessment: assessment({ mfa: true }) }), alice, approve()), 'MFA_REQUIRED'],
    ['stepUp: MFA, not enrolled', input(request({ assessment: assessment({ mfa: true }) }), alice, approve({ totp: 'not_enrolled' })), 'MFA_REQUIRED'],
    ['stepUp: MFA, a wrong code', input(request({ assessment: assessment({ mfa: true }) }), alice, approve({ totp: 'invalid' })), 'MFA_INVALID'],
    ['stepUp: MFA, a used code', input(request({ assessment: assessment({ mfa: true }) }), alice, approve({ totp: 'replayed' })), 'MFA_INVALID'],
    ['stepUp: MFA, a valid code', input(request({ assessment: assessment({ mfa: true }) }), alice, approve({ totp: 'valid' })), 'approved'],
    ['stepUp: rejecting never needs a code', input(request({ assessment: assessment({ mfa: true }) }), alice, reject()), 'rejected'],
    ['stepUp: critical without the match code', input(request({ assessment: critical }), alice, approve({ totp: 'valid' })), 'MATCH_CODE_INVALID'],
    ['stepUp: critical with a wrong match code', input(request({ assessment: critical }), alice, approve({ totp: 'valid', matchCode: 'invalid' })), 'MATCH_CODE_INVALID'],
    ['stepUp: critical with both: one of two approvals', input(request({ assessment: critical }), alice, approve({ totp: 'valid', matchCode: 'valid' })), 'pending'],
    ['requirements: a blocked alternative', input(request(), alice, approve({ alternative: 'hold' }), guard(), assessment({ route: 'block', blockedBy: ['no-holds'] })), 'BLOCKED_BY_POLICY'],
  ];
  it.each(cases)('%s', (_name, inp, expected) => {
    expect(outcome(gate(inp))).toBe(expected);
  });

  it('an unknown alternative is UNKNOWN_ALTERNATIVE, naming the ones offered', () => {
    expect(() => resolvePayload(request(), { alternative: 'nope' })).toThrow(expect.objectContaining({ code: 'UNKNOWN_ALTERNATIVE', details: { alternatives: ['hold'] } }));
  });

  it('fails closed when the engine omits the assessment of a non-original payload', () => {
    const inp = input(request(), alice, approve({ args: { to: 'x' } }));
    expect(() => gate({ ...inp, payload: { ...inp.payload, assessment: null } })).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});

describe('ordering conflicts: the first failing check names the refusal', () => {
  const everything = (over: Partial<GateRequest> = {}) =>
    request({ assessment: critical, requesterOperatorId: alice.id, aggregated: { aggregateId: 'a', collectingUntil: null }, agentPaused: { until: AT, reason: 'p' }, ...over });
  const hostile = guard({ ip: { allowed: false, ip: null, refusedBy: [{ operator: 'x' }] }, approvals: approvalsAt(10, 60_000, 'critical') });
  const cases: [string, GateInput, string][] = [
    ['decided beats everything', input(everything({ status: 'rejected' }), auditor, approve({ totp: 'invalid' }), hostile), 'ALREADY_DECIDED'],
    ['identity before separation (an auditor requester)', input(everything({ requesterOperatorId: auditor.id }), auditor, approve(), hostile), 'NOT_ELIGIBLE'],
    ['finding 8: SELF_REVIEW before MFA_REQUIRED', input(request({ assessment: critical, requesterOperatorId: alice.id }), alice, approve()), 'SELF_REVIEW'],
    ['separation before aggregate, pause, ip, limits and step-up', input(everything(), alice, approve(), hostile), 'SELF_REVIEW'],
    ['aggregate before pause', input(everything({ requesterOperatorId: null }), bob, approve(), hostile), 'AGGREGATED'],
    ['pause before ip', input(everything({ requesterOperatorId: null, aggregated: null }), bob, approve(), hostile), 'AGENT_PAUSED'],
    ['disabled agent before ip', input(everything({ requesterOperatorId: null, aggregated: null, agentPaused: null, agentDisabled: true }), bob, approve(), hostile), 'AGENT_DISABLED'],
    ['ip before limits', input(everything({ requesterOperatorId: null, aggregated: null, agentPaused: null }), bob, approve(), hostile), 'IP_NOT_ALLOWED'],
    ['cool-down before velocity', input(request({ assessment: critical }), bob, approve(), guard({ approvals: approvalsAt(10, 60_000, 'critical') })), 'COOLDOWN_ACTIVE'],
    ['limits before step-up: a wrong code is refused as over the limit, and uses nothing', input(request({ assessment: high }), bob, approve({ totp: 'invalid' }), guard({ approvals: approvalsAt(10, 5 * 60_000) })), 'VELOCITY_LIMITED'],
    ['MFA before the match code', input(request({ assessment: critical }), bob, approve({ totp: 'absent', matchCode: 'invalid' })), 'MFA_REQUIRED'],
    ['step-up before the block', input(request(), bob, approve({ alternative: 'hold' }), guard(), assessment({ route: 'block', blockedBy: ['b'], risk: 'critical' })), 'MATCH_CODE_INVALID'],
    ['a rejection skips aggregate, pause, ip, limits and step-up', input(everything({ requesterOperatorId: null }), bob, reject(), hostile), 'rejected'],
  ];
  it.each(cases)('%s', (_name, inp, expected) => {
    expect(outcome(gate(inp))).toBe(expected);
  });

  it('checks run in the documented order', () => {
    expect(GATE_CHECKS.map((c) => c.name)).toEqual(['state', 'identity', 'separation', 'aggregate', 'ip', 'limits', 'stepUp', 'requirements']);
  });
});

describe('payloadRequirement (the union)', () => {
  const stages = (r: ReturnType<typeof payloadRequirement>) => r.stages.map((s) => `${s.role ?? s.group ?? s.operators?.join() ?? 'any'}×${s.count}`);
  it('every stage of both, the larger quorum, step-up if either, the smaller deny, any block', () => {
    const a = assessment({ stages: [{ count: 1, role: 'manager', label: 'm' }], deny: 2 });
    const b = assessment({ risk: 'critical', stages: [{ count: 2, role: 'manager', label: 'mm' }, { count: 1, operators: ['cfo'], label: 'cfo' }], mfa: true, deny: 1 });
    const r = payloadRequirement(a, b, true);
    expect(stages(r)).toEqual(['manager×2', 'cfo×1']);
    expect(r).toMatchObject({ mfa: true, matchCode: true, deny: 1, riskLevel: 'critical', blockedBy: [] });
    expect(payloadRequirement(a, assessment({ route: 'block', blockedBy: ['x'] }), true).blockedBy).toEqual(['x']);
  });
  it('two identical stages of one side stay two (found by the property test)', () => {
    const twice = assessment({ stages: [{ count: 1, label: 'a' }, { count: 1, label: 'b' }] });
    expect(stages(payloadRequirement(assessment(), twice, true))).toEqual(['any×1', 'any×1']);
    expect(stages(payloadRequirement(twice, assessment(), true))).toEqual(['any×1', 'any×1']);
  });
  it('G4: the payload\'s order is kept and the original\'s stages are merged into it, none lost', () => {
    const st = (...roles: ('lead' | 'manager' | 'director')[]) => assessment({ stages: roles.map((role) => ({ count: 1, role, label: role })) });
    expect(stages(payloadRequirement(st('director'), st('manager', 'director'), true))).toEqual(['manager×1', 'director×1']);
    // Unmatched original stages keep their place relative to the original's matched ones.
    expect(stages(payloadRequirement(st('lead', 'director'), st('manager', 'director'), true))).toEqual(['lead×1', 'manager×1', 'director×1']);
    expect(stages(payloadRequirement(st('manager', 'lead'), st('manager', 'director'), true))).toEqual(['manager×1', 'lead×1', 'director×1']);
    // The original alone keeps its own order.
    expect(stages(payloadRequirement(st('director', 'manager'), null, false))).toEqual(['director×1', 'manager×1']);
  });

  it('G4 (property): the union keeps the payload\'s stages in order and covers every stage of both sides', () => {
    const stageArb = fc.record({ count: fc.integer({ min: 1, max: 3 }), role: fc.constantFrom<Role | undefined>(undefined, 'lead', 'manager', 'director') });
    const side = fc.array(stageArb, { minLength: 1, maxLength: 4 });
    const mk = (xs: { count: number; role: Role | undefined }[]) =>
      assessment({ stages: xs.map((x) => ({ count: x.count, ...(x.role ? { role: x.role } : {}), label: x.role ?? 'any' })) });
    const key = (s: ApprovalStage) => s.role ?? 'any';
    fc.assert(
      fc.property(side, side, (o, p) => {
        const r = payloadRequirement(mk(o), mk(p), true).stages;
        // The payload's stages appear in the union in order, each at least its count (greedy earliest is exact for subsequences).
        let at = -1;
        for (const x of p) {
          const i = r.findIndex((s, j) => j > at && key(s) === (x.role ?? 'any') && s.count >= x.count);
          if (i < 0) return false;
          at = i;
        }
        // Every stage of each side has its own union stage of the same terms and at least its count (per terms, largest first).
        for (const xs of [o, p]) {
          for (const k of new Set(xs.map((x) => x.role ?? 'any'))) {
            const need = xs.filter((x) => (x.role ?? 'any') === k).map((x) => x.count).sort((a, b) => b - a);
            const have = r.filter((s) => key(s) === k).map((s) => s.count).sort((a, b) => b - a);
            if (need.some((n, i) => (have[i] ?? 0) < n)) return false;
          }
        }
        return r.length <= o.length + p.length;
      }),
      { numRuns: 2000, seed: 4 },
    );
  });

  it('a payload that would be auto-approved on its own adds nothing; the original still counts', () => {
    expect(stages(payloadRequirement(assessment({ stages: [{ count: 2, label: '2' }] }), assessment({ route: 'auto_approve' }), true))).toEqual(['any×2']);
  });
});

describe('what an accepted vote records', () => {
  it('an approval counts towards the limits at the payload risk; a valid code marks its step', () => {
    const r = gate(input(request({ assessment: assessment({ risk: 'high', mfa: true }) }), alice, approve({ totp: 'valid' })));
    expect(r.ok && r.record).toEqual({ approval: { requestId: 'req_1', at: NOW, riskLevel: 'high' }, totpStep: true, factor: 'totp', cooldownStarted: null });
  });

  it('WebAuthn: `mfa: webauthn` refuses TOTP and a missing assertion, naming the dashboard; an assertion is judged whatever else is sent', () => {
    const wa = { ...assessment({ risk: 'high', mfa: true }), webauthnRequired: true };
    const totp = gate(input(request({ assessment: wa }), alice, approve({ totp: 'valid' })));
    expect(!totp.ok && totp.error).toMatchObject({ code: 'MFA_REQUIRED', message: expect.stringMatching(/WebAuthn.*dashboard/) });
    const ok = gate(input(request({ assessment: wa }), alice, approve({ webauthn: 'valid' })));
    expect(ok.ok && ok.record).toMatchObject({ totpStep: false, factor: 'webauthn' });
    for (const [fact, code] of [['replayed', 'MFA_INVALID'], ['invalid', 'MFA_INVALID'], ['not_enrolled', 'MFA_REQUIRED']] as const) {
      const r = gate(input(request({ assessment: wa }), alice, approve({ webauthn: fact, totp: 'valid' })));
      expect(!r.ok && r.error.code).toBe(code);
    }
    // `mfa: true`: either factor; a valid assertion does not use a TOTP step.
    const plain = gate(input(request({ assessment: assessment({ risk: 'high', mfa: true }) }), alice, approve({ webauthn: 'valid' })));
    expect(plain.ok && plain.record).toMatchObject({ totpStep: false, factor: 'webauthn' });
    // A modified payload whose own level needs WebAuthn needs it, even when the original did not.
    expect(payloadRequirement(assessment({ mfa: true }), wa, true).webauthn).toBe(true);
    expect(payloadRequirement(assessment({ mfa: true }), null, false).webauthn).toBe(false);
    expect(dryRun({ ...input(request({ assessment: wa }), alice, approve()), at: AT }).stepUp).toEqual({ mfa: true, webauthn: true, matchCode: false });
  });

  it('the approval that reaches the threshold starts the cool-down', () => {
    const r = gate(input(request({ assessment: high }), alice, approve(), guard({ approvals: approvalsAt(4, 60_000) })));
    expect(r.ok && r.record.cooldownStarted).toMatchObject({ active: true, triggeredBy: expect.arrayContaining(['req_1']) });
  });

  it('a refusal records nothing (no velocity slot, no TOTP step)', () => {
    const r = gate(input(request({ assessment: critical }), alice, approve({ totp: 'valid', matchCode: 'invalid' })));
    expect(r.ok).toBe(false);
    expect('record' in r).toBe(false);
  });

  it('a rejection records nothing and decides at the deny threshold', () => {
    const r = gate(input(request(), alice, reject({ reason: 'no' })));
    expect(r.ok && r.record).toEqual({ approval: null, totpStep: false, factor: null, cooldownStarted: null });
    expect(r.ok && r.decision).toMatchObject({ outcome: 'rejected', deciders: [{ id: alice.id }] });
    const two = castVotes(request({ assessment: assessment({ deny: 2 }) }), [[alice, reject()], [bob, reject()]]);
    expect(two.req.votes.length).toBe(2);
    expect(outcome(two.last)).toBe('rejected');
  });
});

describe('the payload that will run', () => {
  const policyYaml = `
contentPatterns:
  customer_data: '/important/'
rules:
  - name: no-code
    when: { action: execute_code }
    then: { block: true }
  - name: customer-data
    when: { contentPattern: customer_data }
    then: { riskAtLeast: critical }
  - name: disks
    when: { action: wipe_disk }
    then: { riskAtLeast: critical, mfa: true }
agents:
  soc-bot: { block: [drop_database] }
`;
  const parsed = parsePolicy(policyYaml);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const policy: Policy = parsed.policy;
  const asked = (body: Partial<EvaluationRequest> & { action: string }): EvaluationRequest => ({ agent: 'soc-bot', args: {}, ...body }) as EvaluationRequest;
  const gateRequest = (ev: EvaluationRequest): GateRequest =>
    request({ action: ev.action, args: ev.args ?? {}, alternatives: ev.alternatives ?? [], assessment: evaluate(ev, policy, EMPTY_HISTORY, new Date(NOW)) });
  /** What the engine does: resolve the payload, assess it as a request of its own, run the gate. */
  const review = (ev: EvaluationRequest, req: GateRequest, who: Reviewer, v: GateVote): GateResult => {
    const p = resolvePayload(req, v);
    const original = p.key === payloadKey(req.action, req.args);
    const a = original ? null : assessPayload(ev, p, policy, EMPTY_HISTORY, new Date(NOW));
    return gate({ request: req, payload: { ...p, assessment: a }, reviewer: who, vote: v, guard: guard() });
  };

  it('finding 1: a blocked action offered as an alternative of send_alert can never be chosen', () => {
    const ev = asked({ action: 'send_alert', riskLevel: 'high', alternatives: [{ name: 'run', action: 'execute_code', args: { code: 'rm -rf /' } }, { name: 'drop', action: 'drop_database', args: {} }] });
    const req = gateRequest(ev);
    expect(req.assessment.route).toBe('review');
    const alts = assessAlternatives(ev, policy, () => EMPTY_HISTORY, new Date(NOW));
    expect(alts.map((a) => a.blocked)).toEqual([{ rules: ['no-code'] }, { rules: ['agent-block'] }]);
    for (const alternative of ['run', 'drop']) {
      const r = review(ev, req, alice, approve({ alternative, totp: 'valid', matchCode: 'valid' }));
      expect(outcome(r), alternative).toBe('BLOCKED_BY_POLICY');
    }
    // A respelled blocked action is blocked too (names in normal form).
    const respelled = asked({ action: 'send_alert', riskLevel: 'high', alternatives: [{ name: 'run', action: 'Execute-Code', args: {} }] });
    expect(outcome(review(respelled, gateRequest(respelled), alice, approve({ alternative: 'run' })))).toBe('BLOCKED_BY_POLICY');
  });

  it("finding 1: an alternative's own MFA, quorum and match code apply", () => {
    const ev = asked({ action: 'send_alert', riskLevel: 'high', alternatives: [{ name: 'wipe', action: 'wipe_disk', args: { disk: 'sda' } }] });
    const req = gateRequest(ev);
    expect(req.assessment).toMatchObject({ riskLevel: 'high', mfaRequired: false });
    expect(outcome(review(ev, req, alice, approve({ alternative: 'wipe' })))).toBe('MFA_REQUIRED');
    expect(outcome(review(ev, req, alice, approve({ alternative: 'wipe', totp: 'valid' })))).toBe('MATCH_CODE_INVALID');
    const first = review(ev, req, alice, approve({ alternative: 'wipe', totp: 'valid', matchCode: 'valid' }));
    expect(outcome(first)).toBe('pending'); // critical: two approvals
  });

  it('finding 2: modified args are re-assessed: /tmp/scratch → /important/customers needs two approvals, TOTP and the match code', () => {
    const ev = asked({ action: 'delete_data', args: { path: '/tmp/scratch' }, confidence: 0.7 });
    const req = gateRequest(ev);
    expect(req.assessment.riskLevel).not.toBe('critical');
    const mod = { path: '/important/customers' };
    expect(outcome(review(ev, req, alice, approve({ args: mod })))).toBe('MFA_REQUIRED');
    expect(outcome(review(ev, req, alice, approve({ args: mod, totp: 'valid' })))).toBe('MATCH_CODE_INVALID');
    const r = review(ev, req, alice, approve({ args: mod, totp: 'valid', matchCode: 'valid' }));
    expect(outcome(r)).toBe('pending');
    expect(r.ok && r.requirement).toMatchObject({ mfa: true, matchCode: true, riskLevel: 'critical' });
    expect(r.ok && r.requirement.stages.reduce((n, s) => n + s.count, 0)).toBeGreaterThanOrEqual(2);
  });

  it('finding 3: a modification restarts the vote, and a plain approval must have been shown the payload it approves', () => {
    const base = request({ assessment: assessment({ stages: [{ count: 2, label: '2 reviewers' }] }) });
    const modified = { to: 'acct-2', amount: 100 };
    // A approves with modified args; B was shown the original.
    const a = castVotes(base, [[alice, approve({ args: modified })]]);
    expect(outcome(a.last)).toBe('pending');
    expect(outcome(gate(input(a.req, bob, approve({ seenPayloadKey: ORIGINAL_KEY }))))).toBe('PAYLOAD_CHANGED');
    // Shown the modified args, B's plain approval approves exactly those.
    const b = gate(input(a.req, bob, approve({ seenPayloadKey: payloadKey('wire_transfer', modified) })));
    expect(b.ok && b.decision).toMatchObject({ outcome: 'approved', args: modified, modified: true, deciders: [{ id: alice.id }, { id: bob.id }] });
    // An approval of the original, then a modification: the earlier approval no longer counts.
    const c = castVotes(base, [[alice, approve()], [bob, approve({ args: modified })]]);
    expect(outcome(c.last)).toBe('pending');
    expect(c.last.ok && c.last.progress).toEqual([1]);
    // ... and alice, whose approval was for other args, may approve the new payload.
    expect(outcome(gate(input(c.req, alice, approve({ seenPayloadKey: payloadKey('wire_transfer', modified) }))))).toBe('approved');
  });

  it('G1: a plain approval without seenPayloadKey cannot complete a quorum on a modified payload', () => {
    const base = request({ assessment: assessment({ stages: [{ count: 2, label: '2 reviewers' }] }) });
    const modified = { to: 'acct-2', amount: 100 };
    const a = castVotes(base, [[alice, approve({ args: modified })]]);
    const b = gate(input(a.req, bob, approve()));
    expect(outcome(b)).toBe('PAYLOAD_CHANGED');
    expect(!b.ok && b.error.message).toMatch(/seenPayloadKey/);
    // An alternative in the round is not the original either.
    const alt = request({ assessment: assessment({ stages: [{ count: 2, label: '2 reviewers' }] }), alternatives: [{ name: 'hold', action: 'hold_payment', args: { to: 'acct-1' } }] });
    const h = castVotes(alt, [[alice, approve({ alternative: 'hold' })]]);
    expect(outcome(gate(input(h.req, bob, approve())))).toBe('PAYLOAD_CHANGED');
    // While the round is the original, seenPayloadKey stays optional.
    expect(outcome(gate(input(request(), alice, approve())))).toBe('approved');
    // dryRun offers the plain approval of what the queue shows (the current payload).
    const d = dryRun({ request: a.req, payload: { ...resolvePayload(a.req, {}), assessment: assessment() }, reviewer: bob, guard: guard(), at: AT });
    expect(d.actionable).toBe(true);
  });

  it("modifiedNeedsSecondReviewer (either side's level) still holds", () => {
    const base = request({ assessment: assessment({ second: true }) });
    const r = castVotes(base, [[alice, approve({ args: { to: 'acct-9' } })]]);
    expect(outcome(r.last)).toBe('pending');
    expect(outcome(gate(input(r.req, bob, approve({ seenPayloadKey: payloadKey('wire_transfer', { to: 'acct-9' }) }))))).toBe('approved');
  });
});

describe('stage eligibility: reassignment and extension never change who may sign a stage that names people', () => {
  const chain = assessment({ stages: [{ count: 1, role: 'lead', label: 'lead' }, { count: 1, operators: ['cfo'], label: 'operator cfo' }] });
  const friend = person('friend', ['reviewer']);
  const afterLead = (escalation: GateRequest['escalation']) => request({ assessment: chain, escalation, votes: [vote(lena, ORIGINAL_KEY, 0)] });

  it("finding 4: the lead's friend, reassigned, cannot sign the CFO's stage", () => {
    const reassigned = { level: 1, startLevel: 1, levelRole: 'lead' as const, assignee: { operator: 'friend', stage: 0 }, extended: true };
    expect(outcome(gate(input(afterLead(reassigned), friend, approve())))).toBe('NOT_ELIGIBLE');
    // Even reassigned at the CFO stage itself: it names a person.
    expect(outcome(gate(input(afterLead({ ...reassigned, assignee: { operator: 'friend', stage: 1 } }), friend, approve())))).toBe('NOT_ELIGIBLE');
    expect(outcome(gate(input(afterLead(reassigned), cfo, approve())))).toBe('approved');
    // Today's escalation eligibility lets the friend in: the gate's does not.
    const today = eligibility({ level: 1, startLevel: 1, enteredAt: 0, dueAt: 0, extension: null, assignee: { operator: 'friend' } as never, plan: { steps: [], slaMs: 1, onFinalTimeout: 'reject' } });
    expect(today(friend, chain.approval!.stages[1]!)).toBe(true);
  });

  it('a group stage is not moved by a reassignment to a group', () => {
    const groupStage = assessment({ stages: [{ count: 1, group: 'treasury', label: 'treasury' }] });
    const esc = { level: 1, startLevel: 1, levelRole: null, assignee: { group: 'friends', stage: 0 }, extended: false };
    expect(outcome(gate(input(request({ assessment: groupStage, escalation: esc }), person('pal', ['manager'], ['friends']), approve())))).toBe('NOT_ELIGIBLE');
    expect(outcome(gate(input(request({ assessment: groupStage, escalation: esc }), person('tess', ['reviewer'], ['treasury']), approve())))).toBe('approved');
  });

  it('G2: escalation by time never lets a stand-in sign a stage that names an operator or a group', () => {
    const esc = { level: 3, startLevel: 1, levelRole: 'director' as const, assignee: null, extended: false };
    expect(outcome(gate(input(afterLead(esc), person('dee', ['director']), approve())))).toBe('NOT_ELIGIBLE');
    expect(outcome(gate(input(afterLead({ ...esc, level: 2, levelRole: 'lead' }), person('lou', ['lead']), approve())))).toBe('NOT_ELIGIBLE');
    expect(outcome(gate(input(afterLead(esc), mia, approve())))).toBe('NOT_ELIGIBLE');
    expect(outcome(gate(input(afterLead(esc), cfo, approve())))).toBe('approved');
    const groupStage = assessment({ stages: [{ count: 1, group: 'treasury', label: 'treasury' }] });
    expect(outcome(gate(input(request({ assessment: groupStage, escalation: esc }), person('dee', ['director']), approve())))).toBe('NOT_ELIGIBLE');
    // Role stages keep their rule: the role or anyone more senior.
    const roleStage = assessment({ stages: [{ count: 1, role: 'manager', label: 'manager' }] });
    expect(outcome(gate(input(request({ assessment: roleStage, escalation: esc }), person('dee', ['director']), approve())))).toBe('approved');
    expect(outcome(gate(input(request({ assessment: roleStage, escalation: esc }), lena, approve())))).toBe('NOT_ELIGIBLE');
  });
});

describe('dryRun: actionable is the same gate', () => {
  it('offers what the gate accepts, with the step-up it will ask for', () => {
    const d = dryRun({ request: request({ assessment: critical }), payload: { ...resolvePayload(request(), {}), assessment: null }, reviewer: alice, guard: guard(), at: AT });
    expect(d).toMatchObject({ actionable: true, reason: null, canReject: true, stepUp: { mfa: true, matchCode: true } });
  });

  it.each<[string, Partial<GateRequest>, Reviewer, Partial<GuardFacts>, string, boolean]>([
    ['own request', { requesterOperatorId: alice.id }, alice, {}, 'SELF_REVIEW', false],
    ['paused agent: reject only', { agentPaused: { until: AT, reason: 'x' } }, alice, {}, 'AGENT_PAUSED', true],
    ['disabled agent: reject only', { agentDisabled: true }, alice, {}, 'AGENT_DISABLED', true],
    ['aggregated: reject only', { aggregated: { aggregateId: null, collectingUntil: AT } }, alice, {}, 'AGGREGATED', true],
    ['cooling down: reject only', { assessment: high }, alice, { approvals: approvalsAt(5, 60_000) }, 'COOLDOWN_ACTIVE', true],
    ['not eligible for the stage', { assessment: assessment({ stages: [{ count: 1, role: 'manager', label: 'manager' }] }) }, alice, {}, 'NOT_ELIGIBLE', false],
    ['already voted', { assessment: assessment({ stages: [{ count: 2, label: '2' }] }), votes: [vote(alice, ORIGINAL_KEY, 0)] }, alice, {}, 'ALREADY_REVIEWED', false],
  ])('%s', (_name, over, who, g, code, canReject) => {
    const req = request(over);
    const d = dryRun({ request: req, payload: { ...resolvePayload(req, {}), assessment: null }, reviewer: who, guard: guard(g), at: AT });
    expect(d.actionable).toBe(false);
    expect(d.reason?.code).toBe(code);
    expect(d.canReject).toBe(canReject);
    // The server would refuse the same vote with the same code.
    expect(outcome(gate(input(req, who, approve({ totp: 'valid', matchCode: 'valid' }), guard(g))))).toBe(code);
  });
});

describe('precheck: the cheap checks before the approver lock (review finding 4)', () => {
  it('refuses what the gate refuses first, with the same code', () => {
    for (const i of [
      input(request({ status: 'approved' }), alice, approve()),
      input(request(), auditor, approve()),
      input(request({ requesterOperatorId: alice.id }), alice, approve()),
      input(request({ assessment: critical, requesterOperatorId: alice.id }), alice, approve()),
    ]) {
      const early = precheck(i);
      const full = gate(i);
      expect(early).not.toBeNull();
      expect(full.ok).toBe(false);
      expect(early?.code).toBe(full.ok ? null : full.error.code);
    }
  });
  it('does not judge guard facts (ip, limits): those wait for the lock, and the full gate still refuses them', () => {
    const ip = input(request(), alice, approve(), guard({ ip: { allowed: false, ip: '10.0.0.1', refusedBy: [{ role: 'reviewer' }] } }));
    const velocity = input(request({ assessment: high }), alice, approve(), guard({ approvals: approvalsAt(10, 5 * 60_000) }));
    expect(precheck(ip)).toBeNull();
    expect(precheck(velocity)).toBeNull();
    expect(gate(ip)).toMatchObject({ ok: false, error: { code: 'IP_NOT_ALLOWED' } });
    expect(gate(velocity)).toMatchObject({ ok: false, error: { code: 'VELOCITY_LIMITED' } });
  });
});

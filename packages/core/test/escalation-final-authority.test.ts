/**
 * Escalation as the seeds describe it (issue 18): levels that name operators and groups, one
 * final-authority level whose people may decide alone (and every way round it we could think
 * of), a start above level 1 per rule or per risk level, and channels told per risk level.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_APPROVER_LIMITS,
  DEFAULT_COOLDOWN,
  EMPTY_HISTORY,
  channelsAtStart,
  channelsSoFar,
  diffPolicies,
  escalateNow,
  escalationTimerAt,
  evaluate,
  finalAuthorityOf,
  gate,
  isFinalAuthority,
  onDue,
  parsePolicy,
  payloadKey,
  publicEscalation,
  reassign,
  resolvePayload,
  startEscalation,
  startedHigher,
  type Assessment,
  type EscalationState,
  type GateInput,
  type GateRequest,
  type GateResult,
  type GateVote,
  type GuardFacts,
  type Policy,
  type PolicyResult,
  type Reviewer,
} from '../src/index.ts';
import { Assessment as AssessmentSchema, CreateRequestBody } from '../src/schemas.ts';

const T0 = Date.parse('2026-11-21T10:00:00Z');
const AT = new Date(T0).toISOString();

function policy(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}
const errorsOf = (r: PolicyResult) => (r.ok ? [] : r.errors);

const CHAIN_YAML = `
levels:
  high: { sla: 2s, approvers: [{ role: lead }, { operator: carol }], notify: [sec-mail] }
  critical: { sla: 2s, startLevel: 2, notify: [pager] }
escalation:
  levels:
    - { role: lead, after: sla, notify: [hook] }
    - { role: manager, groups: [duty-managers], after: 3s, notify: [hook, mail] }
    - { operators: [cfo], groups: [board], after: 4s, notify: [board-mail], finalAuthority: true }
rules:
  - { name: wires-start-at-3, when: { action: wire_money }, then: { startLevel: 3 } }
`;
const CHAIN = policy(CHAIN_YAML);

function assess(p: Policy, action = 'isolate_host', extra: Record<string, unknown> = {}): Assessment {
  return AssessmentSchema.parse(evaluate({ ...CreateRequestBody.parse({ action, confidence: 0.82, ...extra }), agent: 'bot' }, p, EMPTY_HISTORY, new Date(T0)));
}

/** A high-risk request of CHAIN moved up to the final level by the clock. */
function atFinal(): EscalationState {
  let s = startEscalation(CHAIN, assess(CHAIN), T0)!;
  for (;;) {
    const d = onDue(s, CHAIN, s.dueAt);
    if (d.type !== 'escalate') return s;
    s = d.state;
  }
}

const person = (name: string, roles: Reviewer['roles'] = ['reviewer'], groups: string[] = []): Reviewer => ({ id: `op_${name}`, name, roles, groups });
const cfo = person('cfo', ['reviewer']);
const boardMember = person('bea', ['reviewer'], ['board']);
const lena = person('lena', ['lead']);
const director = person('dora', ['director']);
const auditorInBoard = person('aud', ['auditor'], ['board']);

describe('policy: levels name operators and groups; one final authority, the last', () => {
  it('loads operators, groups and finalAuthority, and per-risk notify and startLevel', () => {
    const l = CHAIN.escalation.levels;
    expect(l.map((x) => [x.role, x.operators, x.groups, x.finalAuthority])).toEqual([
      ['lead', [], [], false],
      ['manager', [], ['duty-managers'], false],
      [null, ['cfo'], ['board'], true],
    ]);
    expect(CHAIN.levels.high.notify).toEqual(['sec-mail']);
    expect(CHAIN.levels.critical.startLevel).toBe(2);
    expect(CHAIN.levels.low.notify).toEqual([]);
    expect(CHAIN.levels.low.startLevel).toBeUndefined();
  });

  const bad: Array<[string, string, string, RegExp]> = [
    ['finalAuthority not on the last level', 'escalation:\n  levels:\n    - { operators: [cfo], after: sla, finalAuthority: true }\n    - { role: director, after: 5m }\n', 'escalation.levels[0].finalAuthority', /only the last escalation level/],
    ['finalAuthority with a role alone', 'escalation:\n  levels:\n    - { role: director, after: sla, finalAuthority: true }\n', 'escalation.levels[0].finalAuthority', /must name the people/],
    ['a level naming nobody', 'escalation:\n  levels:\n    - { after: sla }\n', 'escalation.levels[0]', /names a role, operators, groups/],
    ['operators not a list', 'escalation:\n  levels:\n    - { operators: cfo, after: sla }\n', 'escalation.levels[0].operators', /list of operator ids or names/],
    ['an empty group list', 'escalation:\n  levels:\n    - { role: lead, groups: [], after: sla }\n', 'escalation.levels[0].groups', /empty/],
    ['a name listed twice', 'escalation:\n  levels:\n    - { operators: [cfo, cfo], after: sla }\n', 'escalation.levels[0].operators[1]', /listed twice/],
    ['finalAuthority not a boolean', 'escalation:\n  levels:\n    - { operators: [cfo], after: sla, finalAuthority: "yes" }\n', 'escalation.levels[0].finalAuthority', /true or false/],
    ['a misspelt key', 'escalation:\n  levels:\n    - { role: lead, operator: [cfo], after: sla }\n', 'escalation.levels[0].operator', /unknown key \(did you mean "operators"\?\)/],
    ['a risk startLevel past the chain', 'levels: { critical: { startLevel: 4 } }\n', 'levels.critical.startLevel', /3 level\(s\); startLevel 4 does not exist/],
    ['a risk startLevel of 0', 'levels: { critical: { startLevel: 0 } }\n', 'levels.critical.startLevel', /numbered from 1/],
    ['a risk notify that is not a list', 'levels: { high: { notify: pager } }\n', 'levels.high.notify', /list of channel names/],
  ];
  for (const [what, yaml, path, message] of bad) {
    it(`refuses ${what}, naming ${path}`, () => {
      const errors = errorsOf(parsePolicy(yaml));
      const hit = errors.find((e) => e.path === path);
      expect(hit, JSON.stringify(errors)).toBeDefined();
      expect(hit!.message).toMatch(message);
    });
  }
});

describe('policy diff names the new keys', () => {
  it('a final authority, a risk level’s start and its channels are listed in words', () => {
    const before = policy(CHAIN_YAML.replace(', finalAuthority: true', '').replace('startLevel: 2, notify: [pager]', 'notify: []'));
    const texts = diffPolicies(before, CHAIN).map((c) => `${c.path}: ${c.text}`);
    expect(texts).toContain('escalation.levels[2]: escalation level 3: operators cfo; groups board after 4s, notifying board-mail → operators cfo; groups board after 4s, notifying board-mail, with final authority (its people may decide alone)');
    expect(texts).toContain('levels.critical.startLevel: critical-risk reviews start at escalation level 2 instead of 1');
    expect(texts).toContain('levels.critical.notify: critical-risk reviews also notify pager');
  });
});

describe('start level and notification per risk level', () => {
  it('critical starts at level 2 (levels.critical.startLevel), audited as an escalation from 1', () => {
    const a = assess(CHAIN, 'isolate_host', { riskLevel: 'critical' });
    expect(a.riskLevel).toBe('critical');
    expect(a.escalationStartLevel).toBe(2);
    expect(a.reasons.join(' ')).toMatch(/Escalation starts at level 2 \(manager; groups duty-managers\) \(levels\.critical\.startLevel\)/);
    const s = startEscalation(CHAIN, a, T0)!;
    expect(s).toMatchObject({ level: 2, startLevel: 2, dueAt: T0 + 3000 });
    expect(startedHigher(s)).toMatchObject({ from: 1, to: 2, role: 'manager' });
    // The start level's channels and the risk level's, each once; they hear the outcome too.
    expect(channelsAtStart(s)).toEqual(['hook', 'mail', 'pager']);
    expect(channelsSoFar(s).sort()).toEqual(['hook', 'mail', 'pager']);
  });

  it('a rule asking for a higher start than the risk level wins; a start at level 1 is no escalation', () => {
    const a = assess(CHAIN, 'wire_money', { riskLevel: 'critical' });
    expect(a.escalationStartLevel).toBe(3);
    const high = startEscalation(CHAIN, assess(CHAIN), T0)!;
    expect(high.level).toBe(1);
    expect(startedHigher(high)).toBeNull();
    expect(channelsAtStart(high)).toEqual(['hook', 'sec-mail']);
  });

  it('a risk level that does not go to review starts nothing', () => {
    const a = assess(CHAIN, 'block_ip', { confidence: 0.97, context: { threatScore: 0.95 } });
    expect(a.route).toBe('auto_approve');
    expect(a.escalationStartLevel).toBeUndefined();
  });
});

describe('finalAuthorityOf: only at the final level, escalated into, named by both policies', () => {
  it('is null below the final level, and names the level once the clock reaches it', () => {
    const start = startEscalation(CHAIN, assess(CHAIN), T0)!;
    expect(finalAuthorityOf(start, CHAIN)).toBeNull();
    const s = atFinal();
    expect(s.level).toBe(3);
    expect(finalAuthorityOf(s, CHAIN)).toEqual({ level: 3, members: [{ operators: ['cfo'], groups: ['board'] }, { operators: ['cfo'], groups: ['board'] }], excluded: [] });
    expect(publicEscalation(s)).toMatchObject({ level: 3, role: null, operators: ['cfo'], groups: ['board'], finalAuthority: true });
    expect(isFinalAuthority(cfo, finalAuthorityOf(s, CHAIN))).toBe(true);
    expect(isFinalAuthority(boardMember, finalAuthorityOf(s, CHAIN))).toBe(true);
    expect(isFinalAuthority(director, finalAuthorityOf(s, CHAIN))).toBe(false); // seniority is not membership
    expect(isFinalAuthority(auditorInBoard, finalAuthorityOf(s, CHAIN))).toBe(false); // cannot review at all
  });

  it('a request that starts at the final level is decided by its quorum (an agent raising its own risk picks no single approver)', () => {
    const s = startEscalation(CHAIN, assess(CHAIN, 'wire_money'), T0)!;
    expect(s).toMatchObject({ level: 3, startLevel: 3 });
    expect(finalAuthorityOf(s, CHAIN)).toBeNull();
    expect(publicEscalation(s).finalAuthority).toBe(false);
  });

  it('an agent cannot hurry its request up to the final level with a short timeoutSeconds: it expires first', () => {
    const allSla = policy(CHAIN_YAML.replace('after: 3s', 'after: sla').replace('after: 4s', 'after: sla'));
    const a = assess(allSla, 'isolate_host', { timeoutSeconds: 1 });
    expect(a.slaSeconds).toBe(1);
    const s = startEscalation(allSla, a, T0)!;
    // Its own hard deadline (created + timeoutSeconds) is not after level 1's: no escalation timer at all.
    expect(escalationTimerAt(s, T0 + 1000)).toBeNull();
  });

  it('the policy running now must agree: removing a person or the flag takes the power away at once', () => {
    const s = atFinal();
    const withoutCfo = policy(CHAIN_YAML.replace('operators: [cfo], groups: [board]', 'groups: [board]'));
    expect(isFinalAuthority(cfo, finalAuthorityOf(s, withoutCfo))).toBe(false);
    expect(isFinalAuthority(boardMember, finalAuthorityOf(s, withoutCfo))).toBe(true);
    const withoutFlag = policy(CHAIN_YAML.replace(', finalAuthority: true', ''));
    expect(finalAuthorityOf(s, withoutFlag)).toBeNull();
    // Adding someone gives nothing to a request judged before.
    const withLena = policy(CHAIN_YAML.replace('operators: [cfo]', 'operators: [cfo, lena]'));
    expect(isFinalAuthority(lena, finalAuthorityOf(s, withLena))).toBe(false);
  });

  it('whoever escalates by hand into (or towards) it may not use it; a reassignment confers nothing', () => {
    let s = startEscalation(CHAIN, assess(CHAIN), T0)!;
    s = escalateNow(s, 'needs a manager', T0 + 10, undefined, cfo.id).state;
    s = escalateNow(s, 'needs the board', T0 + 20, undefined, lena.id).state;
    expect(s.level).toBe(3);
    expect(s.escalatedBy).toEqual([cfo.id, lena.id]);
    const fa = finalAuthorityOf(s, CHAIN);
    expect(isFinalAuthority(cfo, fa)).toBe(false);
    expect(isFinalAuthority(boardMember, fa)).toBe(true);
    const handed = reassign(s, { operator: 'lena' }, 'she knows it', boardMember.name, T0 + 30, 0);
    expect(isFinalAuthority(lena, finalAuthorityOf(handed, CHAIN))).toBe(false);
  });

  it('never escalates further; at its timeout onFinalTimeout (reject unless both policies say approve) applies', () => {
    const s = atFinal();
    let code: unknown;
    try {
      escalateNow(s, 'higher still', T0);
    } catch (err) {
      code = (err as { details?: { reason?: string } }).details?.reason;
    }
    expect(code).toBe('last_level');
    expect(onDue(s, CHAIN, s.dueAt)).toEqual({ type: 'final', outcome: 'reject', level: 3, reason: 'no decision by the end of escalation level 3 (final authority); onFinalTimeout: reject' });
    // A stored plan whose final-authority level is not last (written by hand) still never moves up.
    const odd: EscalationState = { ...s, level: 2, plan: { ...s.plan, steps: [s.plan.steps[0]!, { ...s.plan.steps[1]!, finalAuthority: true }, s.plan.steps[2]!] } };
    expect(onDue(odd, CHAIN, odd.dueAt).type).toBe('final');
  });
});

describe('the gate: a final authority decides alone, and passes every other check', () => {
  const guard = (over: Partial<GuardFacts> = {}): GuardFacts => ({ now: T0, ip: { allowed: true }, approvals: [], manualCooldown: null, velocity: DEFAULT_APPROVER_LIMITS, cooldown: DEFAULT_COOLDOWN, ...over });
  const approve = (over: Partial<GateVote> = {}): GateVote => ({ verdict: 'approve', totp: 'absent', matchCode: 'absent', at: AT, ...over });

  function request(state: EscalationState, active: Policy = CHAIN, over: Partial<GateRequest> = {}, a: Assessment = assess(CHAIN)): GateRequest {
    return {
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
      escalation: { level: state.level, startLevel: state.startLevel, levelRole: null, assignee: null, extended: false, finalAuthority: finalAuthorityOf(state, active) },
      ...over,
    };
  }
  function input(req: GateRequest, reviewer: Reviewer, vote: GateVote, g: GuardFacts = guard(), payloadAssessment?: Assessment): GateInput {
    const p = resolvePayload(req, vote);
    const original = p.key === payloadKey(req.action, req.args);
    return { request: req, payload: { ...p, assessment: original ? null : (payloadAssessment ?? req.assessment) }, reviewer, vote, guard: g };
  }
  const outcome = (r: GateResult) => (r.ok ? r.status : r.error.code);

  it('the two-stage high-risk request (a lead, then carol) is approved by the CFO alone once at the final level', () => {
    const req = request(atFinal());
    expect(req.assessment.approval!.stages.map((s) => s.label)).toEqual(['lead', 'operator carol']);
    const r = gate(input(req, cfo, approve()));
    expect(outcome(r)).toBe('approved');
    if (!r.ok) throw new Error('unreachable');
    expect(r.finalAuthority).toEqual({ level: 3 });
    expect(r.decision!.deciders.map((d) => d.name)).toEqual(['cfo']);
    // Without the level, the same vote is refused: the CFO is neither a lead nor carol.
    const below = request(startEscalation(CHAIN, assess(CHAIN), T0)!);
    expect(outcome(gate(input(below, cfo, approve())))).toBe('NOT_ELIGIBLE');
  });

  it('anyone else at the final level is held to the stage they could sign (a director cannot sign carol’s stage)', () => {
    const req = request(atFinal());
    const r = gate(input(req, director, approve()));
    expect(outcome(r)).toBe('pending'); // the lead stage, as before
    if (!r.ok) throw new Error('unreachable');
    expect(r.finalAuthority).toBeNull();
    const next = { ...req, votes: [r.vote] };
    expect(outcome(gate(input(next, person('dan', ['director']), approve())))).toBe('NOT_ELIGIBLE');
  });

  it('a final-authority rejection decides at once, whatever the deny count', () => {
    const a = assess(CHAIN);
    const req = request(atFinal(), CHAIN, {}, { ...a, approval: { ...a.approval!, deny: 3 } });
    const r = gate(input(req, boardMember, { ...approve(), verdict: 'reject', reason: 'no' }));
    expect(outcome(r)).toBe('rejected');
    expect(outcome(gate(input(req, lena, { ...approve(), verdict: 'reject', reason: 'no' })))).toBe('pending');
  });

  it('keeps every other check: self-review, MFA, the match code, cool-down, IP, a blocked payload, an admin change', () => {
    const s = atFinal();
    expect(outcome(gate(input(request(s, CHAIN, { requesterOperatorId: cfo.id }), cfo, approve())))).toBe('SELF_REVIEW');
    const crit = { ...assess(CHAIN, 'isolate_host', { riskLevel: 'critical' }), mfaRequired: true };
    const critReq = request(s, CHAIN, {}, crit);
    expect(outcome(gate(input(critReq, cfo, approve({ matchCode: 'valid' }))))).toBe('MFA_REQUIRED');
    expect(outcome(gate(input(critReq, cfo, approve({ totp: 'valid' }))))).toBe('MATCH_CODE_INVALID');
    expect(outcome(gate(input(critReq, cfo, approve({ totp: 'valid', matchCode: 'valid' }))))).toBe('approved');
    const cooled = guard({ manualCooldown: { until: T0 + 60_000, reason: 'a lead paused them' } });
    expect(outcome(gate(input(request(s), cfo, approve(), cooled)))).toBe('COOLDOWN_ACTIVE');
    expect(outcome(gate(input(request(s), cfo, approve(), guard({ ip: { allowed: false, ip: '203.0.113.9', refusedBy: [{ operator: 'cfo' }] } }))))).toBe('IP_NOT_ALLOWED');
    const blocked = { ...assess(CHAIN), route: 'block' as const, matchedRules: [{ name: 'no-prod', reason: 'blocked', effects: ['block'] }] };
    expect(outcome(gate(input(request(s, CHAIN, {}, blocked), cfo, approve())))).toBe('BLOCKED_BY_POLICY');
    // An admin change has its own signers: no final authority (the CFO is then just not eligible).
    expect(outcome(gate(input(request(s, CHAIN, { isAdminChange: true, adminSigners: [cfo.id] }), cfo, approve())))).toBe('NOT_ELIGIBLE');
  });

  it('decides alone only the payload it was shown: its own modification is an ordinary vote', () => {
    const s = atFinal();
    const req = request(s);
    const modified = gate(input(req, cfo, approve({ args: { host: 'other' } })));
    expect(outcome(modified)).toBe('NOT_ELIGIBLE'); // the CFO cannot sign the lead stage of its own proposal
    // Another reviewer's modification, shown to the CFO, is what the CFO decides on.
    const lead = gate(input(req, lena, approve({ args: { host: 'ws-2' } })));
    expect(outcome(lead)).toBe('pending');
    if (!lead.ok) throw new Error('unreachable');
    const next = { ...req, votes: [lead.vote] };
    const key = payloadKey('isolate_host', { host: 'ws-2' });
    const r = gate(input(next, cfo, approve({ seenPayloadKey: key })));
    expect(outcome(r)).toBe('approved');
    if (!r.ok) throw new Error('unreachable');
    expect(r.decision).toMatchObject({ args: { host: 'ws-2' }, modified: true });
    expect(r.decision!.deciders.map((d) => d.name)).toEqual(['lena', 'cfo']);
    // Shown the original while the round moved on: refused, never decided on other args.
    expect(outcome(gate(input(next, cfo, approve({ seenPayloadKey: payloadKey('isolate_host', {}) }))))).toBe('PAYLOAD_CHANGED');
  });

  it('decides alone only a payload that needs no more than the request as asked: judged on the exact payload that will run', () => {
    const s = atFinal();
    const req = request(s);
    const asAsked = req.assessment;
    // Lena (a lead) proposes bigger args whose own evaluation needs more: a director stage, MFA, critical.
    const bigger = { ...asAsked, riskLevel: 'critical' as const, mfaRequired: true, approval: { ...asAsked.approval!, stages: [...asAsked.approval!.stages, { count: 1, label: 'director', role: 'director' as const }] } };
    const proposal = gate(input(req, lena, approve({ args: { host: 'all-prod' }, totp: 'valid', matchCode: 'valid' }), guard(), bigger));
    expect(outcome(proposal)).toBe('pending');
    if (!proposal.ok) throw new Error('unreachable');
    const next = { ...req, votes: [proposal.vote] };
    const key = payloadKey('isolate_host', { host: 'all-prod' });
    // The CFO was shown it; approving it is an ordinary vote (the CFO signs no stage of it), even with every step-up.
    const r = gate(input(next, cfo, approve({ seenPayloadKey: key, totp: 'valid', matchCode: 'valid' }), guard(), bigger));
    expect(outcome(r)).toBe('NOT_ELIGIBLE');
    // A payload that on its own would start at the final level is decided by its quorum there, not by one person.
    const startsAtFinal = { ...asAsked, escalationStartLevel: 3 };
    const lead2 = gate(input(req, lena, approve({ args: { host: 'ws-3' } }), guard(), startsAtFinal));
    if (!lead2.ok) throw new Error('unreachable');
    const next2 = { ...req, votes: [lead2.vote] };
    expect(outcome(gate(input(next2, cfo, approve({ seenPayloadKey: payloadKey('isolate_host', { host: 'ws-3' }) }), guard(), startsAtFinal)))).toBe('NOT_ELIGIBLE');
    // An alternative the agent offered that needs more: the same.
    const withAlt = { ...req, alternatives: [{ name: 'wider', action: 'isolate_subnet', args: { subnet: '10.0.0.0/8' } }] };
    const alt = gate(input(withAlt, lena, approve({ alternative: 'wider', totp: 'valid', matchCode: 'valid' }), guard(), bigger));
    if (!alt.ok) throw new Error('unreachable');
    const altNext = { ...withAlt, votes: [alt.vote] };
    expect(outcome(gate(input(altNext, cfo, approve({ seenPayloadKey: payloadKey('isolate_subnet', { subnet: '10.0.0.0/8' }), totp: 'valid', matchCode: 'valid' }), guard(), bigger)))).toBe('NOT_ELIGIBLE');
    // Rejecting runs nothing: the CFO still rejects it alone.
    expect(outcome(gate(input(next, cfo, { ...approve({ seenPayloadKey: key }), verdict: 'reject', reason: 'too wide' }, guard(), bigger)))).toBe('rejected');
    // With modifiedNeedsSecondReviewer (a modification needs one approval more), the CFO's approval is ordinary too.
    const strict = { ...asAsked, approval: { ...asAsked.approval!, modifiedNeedsSecondReviewer: true } };
    const reqStrict = request(s, CHAIN, {}, strict);
    const l3 = gate(input(reqStrict, lena, approve({ args: { host: 'ws-4' } }), guard(), strict));
    if (!l3.ok) throw new Error('unreachable');
    expect(outcome(gate(input({ ...reqStrict, votes: [l3.vote] }, cfo, approve({ seenPayloadKey: payloadKey('isolate_host', { host: 'ws-4' }) }), guard(), strict)))).not.toBe('approved');
  });

  it('the escalator who carried it up cannot sign alone; without the active policy (null) nobody can', () => {
    let s = startEscalation(CHAIN, assess(CHAIN), T0)!;
    s = onDue(s, CHAIN, s.dueAt).type === 'escalate' ? (onDue(s, CHAIN, s.dueAt) as { state: EscalationState }).state : s;
    s = escalateNow(s, 'board now', T0, undefined, boardMember.id).state;
    expect(outcome(gate(input(request(s), boardMember, approve())))).toBe('NOT_ELIGIBLE');
    expect(outcome(gate(input(request(s), cfo, approve())))).toBe('approved');
    const none = { ...request(s), escalation: { ...request(s).escalation!, finalAuthority: null } };
    expect(outcome(gate(input(none, cfo, approve())))).toBe('NOT_ELIGIBLE');
  });
});

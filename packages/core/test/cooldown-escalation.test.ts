/**
 * Escalation by cool-down (issue 18): who counts as an eligible reviewer, when a cool-down
 * strands a request, what it does at the last and the final-authority level, the repeat guard,
 * and (fast-check) that it never moves a request while an eligible reviewer is free.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_HISTORY,
  ESCALATION_REPEAT_MS,
  cooldownEscalation,
  evaluate,
  finalAuthorityOf,
  mayApproveNow,
  onDue,
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
  type Vote,
} from '../src/index.ts';
import { Assessment as AssessmentSchema, CreateRequestBody } from '../src/schemas.ts';

const T0 = Date.parse('2026-12-03T10:00:00Z');

function policy(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const YAML = `
levels:
  high: { sla: 10m, approvers: [{ operator: carol }] }
escalation:
  levels:
    - { role: reviewer, operators: [carol], after: sla }
    - { role: lead, after: 20m }
    - { operators: [cfo], after: 30m, finalAuthority: true }
rules:
  - { name: role-stage, when: { action: restart_service }, then: { riskAtLeast: high, approvers: [{ role: reviewer }] } }
`;
const P = policy(YAML);

function assess(action = 'isolate_host'): Assessment {
  return AssessmentSchema.parse(evaluate({ ...CreateRequestBody.parse({ action, confidence: 0.82, riskLevel: 'high' }), agent: 'bot' }, P, EMPTY_HISTORY, new Date(T0)));
}

const person = (name: string, roles: Reviewer['roles'] = ['reviewer'], groups: string[] = []): Reviewer => ({ id: `op_${name}`, name, roles, groups });
const carol = person('carol');
const rita = person('rita');
const lena = person('lena', ['lead']);
const cfo = person('cfo');
const req = person('requester', ['lead']);

function gateRequest(state: EscalationState, a: Assessment, over: Partial<GateRequest> = {}): GateRequest {
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
    escalation: { level: state.level, startLevel: state.startLevel, levelRole: roleAt(state), assignee: null, extended: false, finalAuthority: finalAuthorityOf(state, P) },
    ...over,
  };
}
const payloadOf = (r: GateRequest): GatePayload => ({ action: r.action, args: r.args, alternative: null, key: payloadKey(r.action, r.args), assessment: null });
const cand = (reviewer: Reviewer, coolingDown = false): CooldownCandidate => ({ reviewer, coolingDown });

function judge(state: EscalationState, a: Assessment, candidates: CooldownCandidate[], over: Partial<GateRequest> = {}, extra: { cooled?: string; key?: string; setBy?: string; now?: number; riskLevels?: Assessment['riskLevel'][]; action?: string } = {}) {
  const r = gateRequest(state, a, { ...(extra.action ? { action: extra.action } : {}), ...over });
  return cooldownEscalation({
    request: r,
    payload: payloadOf(r),
    state,
    cooled: extra.cooled ?? carol.id,
    key: extra.key ?? 'cool:op_carol:1',
    ...(extra.setBy ? { setBy: extra.setBy } : {}),
    candidates,
    riskLevels: extra.riskLevels ?? ['high', 'critical'],
    now: extra.now ?? T0 + 1000,
  });
}

function at(level: number, a: Assessment): EscalationState {
  let s = startEscalation(P, a, T0)!;
  while (s.level < level) {
    const d = onDue(s, P, s.dueAt);
    if (d.type !== 'escalate') throw new Error('chain ended');
    s = d.state;
  }
  return s;
}

describe('eligible: the gate’s cheap checks for a plain approval now', () => {
  const a = assess();
  const s = startEscalation(P, a, T0)!;
  const r = gateRequest(s, a);
  it('the stage’s named operator is eligible; others, even more senior, are not', () => {
    expect(mayApproveNow(r, payloadOf(r), carol, T0)).toBe(true);
    expect(mayApproveNow(r, payloadOf(r), lena, T0)).toBe(false);
    expect(mayApproveNow(r, payloadOf(r), rita, T0)).toBe(false);
  });
  it('the requester, someone who already rejected, and anyone on a paused agent’s request are not', () => {
    const carolsOwn = gateRequest(s, a, { requesterOperatorId: carol.id });
    expect(mayApproveNow(carolsOwn, payloadOf(carolsOwn), carol, T0)).toBe(false);
    const vote: Vote = { reviewer: { id: carol.id, name: 'carol' }, verdict: 'reject', reason: 'no', at: new Date(T0).toISOString(), payloadKey: null, args: null, alternative: null, stage: null } as unknown as Vote;
    const rejected = gateRequest(s, a, { votes: [vote] });
    expect(mayApproveNow(rejected, payloadOf(rejected), carol, T0)).toBe(false);
    const paused = gateRequest(s, a, { agentPaused: { until: new Date(T0 + 60_000).toISOString(), reason: 'x' } });
    expect(mayApproveNow(paused, payloadOf(paused), carol, T0)).toBe(false);
  });
});

describe('cooldownEscalation', () => {
  const a = assess();
  it('the only eligible reviewer cools down: one level up, the cooled operator (and a setter) recorded in escalatedBy', () => {
    const s = startEscalation(P, a, T0)!;
    const out = judge(s, a, [cand(carol, true), cand(rita), cand(lena)], {}, { setBy: lena.id });
    expect(out.type).toBe('escalate');
    if (out.type !== 'escalate') return;
    expect(out.up).toMatchObject({ from: 1, to: 2, role: 'lead' });
    expect(out.up.state.level).toBe(2);
    expect(out.up.state.escalatedBy).toEqual([carol.id, lena.id]);
    expect(out.up.state.lastCooldown).toMatchObject({ key: 'cool:op_carol:1', operator: carol.id, from: 1, to: 2 });
    expect(out.eligible).toEqual(['carol']);
  });
  it('a role stage with another free reviewer of that role does not move', () => {
    const b = assess('restart_service');
    const s = startEscalation(P, b, T0)!;
    expect(judge(s, b, [cand(carol, true), cand(rita)], {}, { action: 'restart_service' })).toEqual({ type: 'none', why: 'free_reviewer' });
    // Every reviewer of the role cooling: it moves.
    expect(judge(s, b, [cand(carol, true), cand(rita, true)], {}, { action: 'restart_service' }).type).toBe('escalate');
  });
  it('the requester does not count as a free reviewer (they may never approve it)', () => {
    const b = assess('restart_service');
    const s = startEscalation(P, b, T0)!;
    const out = judge(s, b, [cand(carol, true), cand(rita)], { requesterOperatorId: rita.id }, { action: 'restart_service' });
    expect(out.type).toBe('escalate');
  });
  it('someone who cannot approve it cooling changes nothing; nor does a cool-down outside its risk levels, or one already lifted', () => {
    const s = startEscalation(P, a, T0)!;
    expect(judge(s, a, [cand(carol), cand(rita, true)], {}, { cooled: rita.id })).toEqual({ type: 'none', why: 'not_eligible' });
    expect(judge(s, a, [cand(carol, true)], {}, { riskLevels: ['critical'] })).toEqual({ type: 'none', why: 'risk_level' });
    expect(judge(s, a, [cand(carol, false)])).toEqual({ type: 'none', why: 'not_eligible' });
    const r = gateRequest(s, a);
    expect(cooldownEscalation({ request: r, payload: payloadOf(r), state: s, cooled: carol.id, key: 'k', candidates: [cand(carol, true)], riskLevels: ['high'], limitsOff: true, now: T0 })).toEqual({ type: 'none', why: 'limits_off' });
  });
  it('the same cool-down twice moves once; another within a minute of any move does not move it again', () => {
    const s = startEscalation(P, a, T0)!;
    const first = judge(s, a, [cand(carol, true)]);
    if (first.type !== 'escalate') throw new Error(first.type);
    const moved = first.up.state;
    // At level 2 (role lead) the stage is still carol's: she is still the only eligible one.
    expect(judge(moved, a, [cand(carol, true)])).toEqual({ type: 'none', why: 'same_cooldown' });
    expect(judge(moved, a, [cand(carol, true)], {}, { key: 'cool:other', now: T0 + 1000 + ESCALATION_REPEAT_MS - 1 })).toEqual({ type: 'none', why: 'repeat' });
    expect(judge(moved, a, [cand(carol, true)], {}, { key: 'cool:other', now: T0 + 1000 + ESCALATION_REPEAT_MS }).type).toBe('escalate');
  });
  it('at the final-authority level it never escalates: stranded (stays pending), and the final authority counts as eligible', () => {
    const s = at(3, a);
    const now = s.enteredAt + ESCALATION_REPEAT_MS;
    // The CFO is a final authority at level 3: free, so nothing is stranded.
    expect(judge(s, a, [cand(carol, true), cand(cfo)], {}, { now })).toEqual({ type: 'none', why: 'free_reviewer' });
    const out = judge(s, a, [cand(carol, true), cand(cfo, true)], {}, { now });
    expect(out.type).toBe('stranded');
    if (out.type !== 'stranded') return;
    expect(out.level).toBe(3);
    expect(out.state.level).toBe(3);
    expect(out.state.lastCooldown).toMatchObject({ from: 3, to: 3 });
    expect(judge(out.state, a, [cand(carol, true), cand(cfo, true)], {}, { now })).toEqual({ type: 'none', why: 'same_cooldown' });
    // The repeat guard is for moves: a level that cannot move is stranded even right after the chain reached it.
    expect(judge(s, a, [cand(carol, true), cand(cfo, true)], {}, { now: s.enteredAt + 1 }).type).toBe('stranded');
  });
  it('a lead’s manual cool-down never carries a request they may not review into the final-authority level: stranded instead', () => {
    const s = at(2, a);
    const now = s.enteredAt + ESCALATION_REPEAT_MS;
    // lena (lead) may not sign carol's stage: cooling carol strands it at level 2 rather than handing it to the CFO.
    const byLead = judge(s, a, [cand(carol, true), cand(lena)], {}, { setBy: lena.id, now });
    expect(byLead).toMatchObject({ type: 'stranded', level: 2 });
    // Carol's own (automatic) cool-down moves it: she could have escalated it by hand.
    const auto = judge(s, a, [cand(carol, true), cand(lena)], {}, { now });
    expect(auto.type).toBe('escalate');
    if (auto.type === 'escalate') expect(auto.up.to).toBe(3);
  });
  it('a gate that throws (a modified payload without its assessment) is doubt: nothing moves', () => {
    const s = startEscalation(P, a, T0)!;
    const r = gateRequest(s, a);
    const odd: GatePayload = { action: r.action, args: { other: 1 }, alternative: null, key: payloadKey(r.action, { other: 1 }), assessment: null };
    expect(cooldownEscalation({ request: r, payload: odd, state: s, cooled: carol.id, key: 'k', candidates: [cand(carol, true)], riskLevels: ['high'], now: T0 })).toMatchObject({ type: 'none' });
  });
});

describe('properties', () => {
  const people = [carol, rita, lena, cfo, req, person('ann', ['auditor']), person('dan', ['director'])];
  const b = assess('restart_service');
  it('never moves a request while an eligible reviewer is free; moves it (below the last level) exactly when every eligible one cools', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: people.length, maxLength: people.length }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: people.length - 1 }), fc.constantFrom('restart_service', 'isolate_host'), (cooling, level, who, action) => {
        const a = action === 'restart_service' ? b : assess();
        const s = at(level, a);
        const candidates = people.map((p, i) => cand(p, cooling[i]!));
        const r = gateRequest(s, a, { action, requesterOperatorId: req.id });
        const out = cooldownEscalation({ request: r, payload: payloadOf(r), state: s, cooled: people[who]!.id, key: 'k', candidates, riskLevels: ['high'], now: s.enteredAt + ESCALATION_REPEAT_MS });
        const eligible = candidates.filter((c) => mayApproveNow(r, payloadOf(r), c.reviewer, s.enteredAt));
        const stranded = eligible.some((c) => c.reviewer.id === people[who]!.id && c.coolingDown) && eligible.every((c) => c.coolingDown);
        expect(eligible.some((c) => c.reviewer.id === req.id)).toBe(false);
        if (!stranded) expect(out.type).toBe('none');
        else expect(out.type).toBe(level < 3 ? 'escalate' : 'stranded');
        if (out.type === 'escalate') {
          expect(out.up.state.level).toBe(level + 1);
          expect(out.up.state.escalatedBy).toContain(people[who]!.id);
        }
      }),
      { numRuns: 300 },
    );
  });
});

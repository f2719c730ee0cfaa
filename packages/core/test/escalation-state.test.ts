import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CountersignError } from '../src/errors.ts';
import {
  channelsSoFar,
  eligibility,
  escalateNow,
  escalationTimerAt,
  extend,
  maxExtensionMs,
  nextRetryDelay,
  onDue,
  publicEscalation,
  reassign,
  repeatedEscalation,
  startEscalation,
  ESCALATION_REPEAT_MS,
  type EscalationState,
} from '../src/escalation/index.ts';
import { transition, type LifecycleState, type Reviewer } from '../src/lifecycle.ts';
import { defaultPolicy, EMPTY_HISTORY, evaluate, parsePolicy, type Policy } from '../src/policy/index.ts';
import { Assessment, CreateRequestBody, type ApprovalStage, type Role } from '../src/schemas.ts';

const T0 = Date.parse('2026-11-21T10:00:00Z');

function policy(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const CHAIN = policy(`
levels: { high: { sla: 2s } }
escalation:
  levels:
    - { role: lead, after: sla, notify: [hook] }
    - { role: manager, after: 3s, notify: [hook, mail] }
    - { role: director, after: 4s, notify: [pager] }
rules:
  - { name: crit-starts-high, when: { action: drop_table }, then: { startLevel: 2 } }
`);
const APPROVE_CHAIN = policy(`
levels: { high: { sla: 2s } }
escalation:
  levels: [{ role: lead, after: sla }, { role: manager, after: 2s }]
  onFinalTimeout: approve
`);

function assess(p: Policy, action = 'isolate_host', extra: Record<string, unknown> = {}) {
  return Assessment.parse(evaluate({ ...CreateRequestBody.parse({ action, confidence: 0.82, ...extra }), agent: 'bot' }, p, EMPTY_HISTORY, new Date(T0)));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof CountersignError) return err.code;
    throw err;
  }
  return undefined;
}

describe('escalation: a chain runs level by level, then meets onFinalTimeout', () => {
  it('starts at level 1 with the SLA as its deadline and the level-1 channels', () => {
    const s = startEscalation(CHAIN, assess(CHAIN), T0)!;
    expect(s).toMatchObject({ level: 1, startLevel: 1, dueAt: T0 + 2000, extension: null, assignee: null });
    expect(s.plan.steps.map((x) => x.ms)).toEqual([2000, 3000, 4000]);
    expect(publicEscalation(s)).toEqual({
      level: 1,
      levels: 3,
      role: 'lead',
      operators: [],
      groups: [],
      finalAuthority: false,
      dueAt: new Date(T0 + 2000).toISOString(),
      extended: false,
      assignee: null,
      onFinalTimeout: 'reject',
    });
  });

  it('escalates 1 → 2 → 3 with each level’s own period counted from when it fired, then rejects', () => {
    let s = startEscalation(CHAIN, assess(CHAIN), T0)!;
    const late = s.dueAt + 60_000; // the server was down for a minute: one level, not the whole chain
    const first = onDue(s, CHAIN, late);
    expect(first).toMatchObject({ type: 'escalate', from: 1, to: 2, role: 'manager', notify: ['hook', 'mail'] });
    if (first.type !== 'escalate') throw new Error('unreachable');
    expect(first.state.dueAt).toBe(late + 3000);
    s = first.state;
    const second = onDue(s, CHAIN, s.dueAt);
    expect(second).toMatchObject({ type: 'escalate', from: 2, to: 3, role: 'director', notify: ['pager'] });
    if (second.type !== 'escalate') throw new Error('unreachable');
    s = second.state;
    expect(channelsSoFar(s)).toEqual(['hook', 'mail', 'pager']);
    const end = onDue(s, CHAIN, s.dueAt);
    expect(end).toEqual({ type: 'final', outcome: 'reject', level: 3, reason: 'no decision by the end of escalation level 3 (director); onFinalTimeout: reject' });
  });

  it('a rule may start the chain at a higher level', () => {
    const a = assess(CHAIN, 'drop_table');
    expect(a.escalationStartLevel).toBe(2);
    const s = startEscalation(CHAIN, a, T0)!;
    expect(s).toMatchObject({ level: 2, startLevel: 2, dueAt: T0 + 3000 });
    expect(channelsSoFar(s)).toEqual(['hook', 'mail']);
  });

  it('policy-decided requests have no escalation', () => {
    const a = assess(CHAIN, 'block_ip', { confidence: 0.97, context: { threatScore: 0.95 } });
    expect(a.route).toBe('auto_approve');
    expect(startEscalation(CHAIN, a, T0)).toBeNull();
  });

  it('without levels, the SLA still ends in onFinalTimeout (level 0)', () => {
    const p = policy('levels: { high: { sla: 5s } }\nescalation: { levels: [] }\n');
    const s = startEscalation(p, assess(p), T0)!;
    expect(s).toMatchObject({ level: 0, dueAt: T0 + 5000 });
    expect(publicEscalation(s).role).toBeNull();
    expect(onDue(s, p, s.dueAt)).toMatchObject({ type: 'final', outcome: 'reject', level: 0 });
  });

  it('approves by timeout only when both the judging and the active policy say so', () => {
    let s = startEscalation(APPROVE_CHAIN, assess(APPROVE_CHAIN), T0)!;
    const step = onDue(s, APPROVE_CHAIN, s.dueAt);
    if (step.type !== 'escalate') throw new Error('expected escalation');
    s = step.state;
    expect(onDue(s, APPROVE_CHAIN, s.dueAt)).toMatchObject({ type: 'final', outcome: 'approve' });
    expect(onDue(s, defaultPolicy(), s.dueAt)).toMatchObject({ type: 'final', outcome: 'reject', reason: expect.stringContaining('withdrawn') });
    // and the default policy never approves by timeout, whatever the active one says
    const d = startEscalation(defaultPolicy(), assess(defaultPolicy()), T0)!;
    const last = { ...d, level: d.plan.steps.length };
    expect(onDue(last, APPROVE_CHAIN, last.dueAt)).toMatchObject({ type: 'final', outcome: 'reject' });
  });

  it('property: from any start, each due moves one level up, and the chain ends after at most its length', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 5, maxLength: 5 }), (start, lateness) => {
        let s: EscalationState = { ...startEscalation(CHAIN, assess(CHAIN), T0)!, level: start, startLevel: start };
        let steps = 0;
        for (const late of lateness) {
          const now = s.dueAt + late;
          const out = onDue(s, CHAIN, now);
          if (out.type === 'final') {
            expect(s.level).toBe(3);
            expect(steps).toBe(3 - start);
            return;
          }
          expect(out.to).toBe(s.level + 1);
          expect(out.state.dueAt).toBeGreaterThan(now);
          s = out.state;
          steps++;
        }
        throw new Error('the chain did not end');
      }),
    );
  });

  it('does not schedule an escalation at or after the agent’s own hard deadline', () => {
    const s = startEscalation(CHAIN, assess(CHAIN), T0)!;
    expect(escalationTimerAt(s, null)).toBe(s.dueAt);
    expect(escalationTimerAt(s, s.dueAt)).toBeNull();
    expect(escalationTimerAt(s, s.dueAt + 1)).toBe(s.dueAt);
  });
});

describe('escalation: extend once, bounded, with a reason; reassign', () => {
  const s = startEscalation(CHAIN, assess(CHAIN), T0)!;

  it('extends the current deadline once, by at most the level’s own period', () => {
    expect(maxExtensionMs(s)).toBe(2000);
    const e = extend(s, 2000, 'waiting on the host owner', 'alice', T0 + 500);
    expect(e.dueAt).toBe(s.dueAt + 2000);
    expect(e.extension).toEqual({ ms: 2000, reason: 'waiting on the host owner', by: 'alice', at: T0 + 500 });
    expect(publicEscalation(e).extended).toBe(true);
    expect(codeOf(() => extend(e, 1000, 'again', 'bob', T0 + 600))).toBe('ALREADY_EXTENDED');
    expect(codeOf(() => extend(s, 2001, 'too long', 'alice', T0))).toBe('VALIDATION_FAILED');
    expect(codeOf(() => extend(s, 500, 'too short', 'alice', T0))).toBe('VALIDATION_FAILED');
    expect(codeOf(() => extend(s, 1000, '  ', 'alice', T0))).toBe('VALIDATION_FAILED');
  });

  it('reassigns to one operator or one group, with a reason', () => {
    expect(reassign(s, { group: 'ir-oncall' }, 'night shift', 'alice', T0).assignee).toMatchObject({ group: 'ir-oncall', by: 'alice' });
    expect(publicEscalation(reassign(s, { operator: 'bob' }, 'owner', 'alice', T0)).assignee).toEqual({ operator: 'bob' });
    expect(codeOf(() => reassign(s, {}, 'x', 'alice', T0))).toBe('VALIDATION_FAILED');
    expect(codeOf(() => reassign(s, { operator: 'bob', group: 'g' }, 'x', 'alice', T0))).toBe('VALIDATION_FAILED');
    expect(codeOf(() => reassign(s, { operator: 'bob' }, '', 'alice', T0))).toBe('VALIDATION_FAILED');
  });
});

describe('escalation: a reviewer escalates now, exactly as a timeout would', () => {
  const s = startEscalation(CHAIN, assess(CHAIN), T0)!;

  it('moves one level up with the same state a timeout gives, the deadline from now', () => {
    const now = T0 + 700;
    const up = escalateNow(s, 'needs a manager: production host', now);
    expect(up).toEqual(onDue(s, CHAIN, now));
    expect(up).toMatchObject({ from: 1, to: 2, role: 'manager', notify: ['hook', 'mail'] });
    expect(up.state).toMatchObject({ level: 2, startLevel: 1, enteredAt: now, dueAt: now + 3000 });
    expect(escalateNow(up.state, 'still stuck', now + 1, 2).to).toBe(3);
  });

  it('records who escalated by hand and when; the same operator within a minute without fromLevel is a repeat', () => {
    const up = escalateNow(s, 'needs a manager', T0 + 10, undefined, 'op_lena');
    expect(up.state.lastManual).toEqual({ by: 'op_lena', at: T0 + 10, from: 1, to: 2 });
    expect(repeatedEscalation(up.state, 'op_lena', T0 + 10 + ESCALATION_REPEAT_MS - 1)).toEqual(up.state.lastManual);
    expect(repeatedEscalation(up.state, 'op_lena', T0)).toEqual(up.state.lastManual); // a clock behind the writer's
    expect(repeatedEscalation(up.state, 'op_lena', T0 + 10 + ESCALATION_REPEAT_MS)).toBeNull();
    expect(repeatedEscalation(up.state, 'op_rita', T0 + 20)).toBeNull();
    expect(repeatedEscalation(up.state, 'op_lena', T0 + 20, 2)).toBeNull(); // says from where: meant
    expect(repeatedEscalation(s, 'op_lena', T0 + 20)).toBeNull(); // nobody escalated it by hand
    // A timeout keeps the record: the double click after the clock moved it is still a repeat.
    const timedOut = onDue(up.state, CHAIN, up.state.dueAt);
    expect(timedOut.type === 'escalate' && repeatedEscalation(timedOut.state, 'op_lena', T0 + 20)).toEqual(up.state.lastManual);
  });

  it('is refused at the last level (never decides), without a chain, and when the level moved on', () => {
    const last = escalateNow(escalateNow(s, 'a', T0).state, 'b', T0).state;
    expect(last.level).toBe(3);
    expect(codeOf(() => escalateNow(last, 'more', T0))).toBe('ILLEGAL_TRANSITION');
    const none = startEscalation(policy('levels: { high: { sla: 2s } }\nescalation: { levels: [] }\n'), assess(CHAIN), T0)!;
    expect(none.level).toBe(0);
    expect(codeOf(() => escalateNow(none, 'x', T0))).toBe('ILLEGAL_TRANSITION');
    expect(codeOf(() => escalateNow(s, 'x', T0, 2))).toBe('ILLEGAL_TRANSITION');
    expect(escalateNow(s, 'x', T0, 1).to).toBe(2);
  });

  it('needs a reason of one line, 1 to 500 characters', () => {
    for (const bad of ['', '   ', 'two\nlines', 'cr\rhere', 'sep\u2028x', 'x'.repeat(501)]) expect(codeOf(() => escalateNow(s, bad, T0))).toBe('VALIDATION_FAILED');
    expect(escalateNow(s, 'x'.repeat(500), T0).to).toBe(2);
  });
});

describe('escalation: eligibility widens upwards only', () => {
  const who = (id: string, roles: Role[], groups: string[] = []): Reviewer => ({ id, name: id, roles, groups });
  const base = startEscalation(CHAIN, assess(CHAIN), T0)!;
  const atLevel = (level: number): EscalationState => ({ ...base, level });
  const namedStage: ApprovalStage = { count: 1, operators: ['alice'], label: 'operator alice' };
  const directorStage: ApprovalStage = { count: 1, role: 'director', label: 'director' };
  const groupManagerStage: ApprovalStage = { count: 1, role: 'manager', group: 'finance', label: 'manager in finance' };

  it('without escalation state, only the stage’s own filter counts', () => {
    expect(eligibility(null)(who('bob', ['director']), namedStage)).toBe(false);
    expect(eligibility(null)(who('alice', ['reviewer']), namedStage)).toBe(true);
  });

  it('at the start level, the requirement alone decides: that level is told, not deputised', () => {
    expect(eligibility(atLevel(1))(who('lee', ['lead']), namedStage)).toBe(false);
    expect(eligibility(atLevel(1))(who('dee', ['director']), namedStage)).toBe(false);
  });

  it('after escalating, the level’s role stands in for named operators and groups of stages no more senior than it', () => {
    expect(eligibility(atLevel(2))(who('mo', ['manager']), namedStage)).toBe(true);
    expect(eligibility(atLevel(2))(who('lee', ['lead']), namedStage)).toBe(false); // below the level's role
    expect(eligibility(atLevel(2))(who('rita', ['reviewer']), namedStage)).toBe(false);
    expect(eligibility({ ...atLevel(2), startLevel: 2 })(who('mo', ['manager']), namedStage)).toBe(false);
    expect(eligibility(atLevel(2))(who('mo', ['manager']), groupManagerStage)).toBe(true);
    expect(eligibility(atLevel(3))(who('dee', ['director']), groupManagerStage)).toBe(true);
  });

  it('never lowers a role requirement, whatever the level or assignee', () => {
    const assigned = reassign(atLevel(3), { operator: 'rita' }, 'x', 'y', T0);
    expect(eligibility(assigned)(who('rita', ['reviewer']), directorStage)).toBe(false);
    expect(eligibility(atLevel(1))(who('lee', ['lead']), directorStage)).toBe(false);
    expect(eligibility(atLevel(3))(who('aud', ['auditor']), namedStage)).toBe(false);
  });

  it('a reassignee (operator or group member) may act on stages their role meets', () => {
    const toBob = reassign(atLevel(1), { operator: 'bob' }, 'x', 'y', T0);
    expect(eligibility(toBob)(who('bob', ['reviewer']), namedStage)).toBe(true);
    const toGroup = reassign(atLevel(1), { group: 'ir' }, 'x', 'y', T0);
    expect(eligibility(toGroup)(who('ivy', ['reviewer'], ['ir']), namedStage)).toBe(true);
    expect(eligibility(toGroup)(who('ivy', ['reviewer'], ['other']), namedStage)).toBe(false);
  });
});

describe('lifecycle: approval by timeout', () => {
  const state = (votes: LifecycleState['votes'] = []): LifecycleState => ({
    status: 'pending',
    action: 'isolate_host',
    args: { host: 'ws-1' },
    alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: '/x' } }],
    approval: { stages: [{ count: 2, label: '2 reviewers' }], deny: 2 },
    votes,
    requesterOperatorId: null,
  });
  const AT = new Date(T0).toISOString();

  it('approves the request as asked, decided by timeout', () => {
    const t = transition(state(), { type: 'timeout_approve', reason: 'no decision', at: AT });
    expect(t.status).toBe('approved');
    expect(t.kinds).toEqual(['approved']);
    expect(t.decision).toMatchObject({ outcome: 'approved', decidedBy: 'timeout', deciders: [], action: 'isolate_host', args: { host: 'ws-1' }, modified: false });
  });

  it('never approves a payload a reviewer proposed: silence expires it instead (review finding 1)', () => {
    const first = transition(state(), { type: 'review', reviewer: { id: 'a', name: 'a', roles: ['reviewer'], groups: [] }, verdict: 'approve', alternative: 'quarantine', at: AT });
    const t = transition(state([first.vote!]), { type: 'timeout_approve', reason: 'no decision', at: AT });
    expect(t.status).toBe('expired');
    expect(t.decision).toMatchObject({ outcome: 'expired', decidedBy: 'timeout' });
    expect(t.decision?.reason).toContain('other than the request as asked');
  });

  it('expires instead when any reviewer objected', () => {
    const r = transition(state(), { type: 'review', reviewer: { id: 'a', name: 'a', roles: ['reviewer'], groups: [] }, verdict: 'reject', reason: 'no', at: AT });
    expect(r.status).toBe('pending');
    const t = transition(state([r.vote!]), { type: 'timeout_approve', reason: 'no decision', at: AT });
    expect(t.status).toBe('expired');
    expect(t.decision?.reason).toContain('a reviewer voted to reject');
  });

  it('refuses once decided', () => {
    expect(codeOf(() => transition({ ...state(), status: 'rejected' }, { type: 'timeout_approve', reason: 'x', at: AT }))).toBe('ALREADY_DECIDED');
  });
});

describe('delivery retries: exponential backoff with jitter, bounded', () => {
  const policyR = { maxAttempts: 4, baseMs: 1000, capMs: 3000 };
  it('doubles with half of each delay random, caps, and stops at the limit', () => {
    expect(nextRetryDelay(1, policyR, 0)).toBe(500);
    expect(nextRetryDelay(1, policyR, 0.999999)).toBe(1000);
    expect(nextRetryDelay(2, policyR, 0)).toBe(1000);
    expect(nextRetryDelay(3, policyR, 1)).toBe(3000); // capped
    expect(nextRetryDelay(4, policyR, 0.5)).toBeNull();
  });
  it('property: every delay lies within [exp/2, exp]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.double({ min: 0, max: 1, noNaN: true }), (attempts, r) => {
        const p = { maxAttempts: 30, baseMs: 100, capMs: 60_000 };
        const d = nextRetryDelay(attempts, p, r)!;
        const exp = Math.min(p.capMs, p.baseMs * 2 ** (attempts - 1));
        expect(d).toBeGreaterThanOrEqual(Math.floor(exp / 2));
        expect(d).toBeLessThanOrEqual(exp);
      }),
    );
  });
});

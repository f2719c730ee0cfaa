import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CountersignError } from '../src/errors.ts';
import {
  isTerminal,
  transition,
  type LifecycleEvent,
  type LifecycleState,
  type Reviewer,
  type Transition,
} from '../src/lifecycle.ts';
import type { ApprovalRequirement, Role } from '../src/schemas.ts';

const AT = '2026-11-21T10:00:00.000Z';

const reviewer = (id: string, roles: Role[] = ['reviewer'], groups: string[] = []): Reviewer => ({ id, name: id, roles, groups });

function pending(approval: ApprovalRequirement | null = null, extra: Partial<LifecycleState> = {}): LifecycleState {
  return {
    status: 'pending',
    action: 'delete_data',
    args: { path: '/important/data.db' },
    alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: '/important/data.db' } }],
    approval,
    votes: [],
    requesterOperatorId: null,
    ...extra,
  };
}

/** Applies a transition to a state the way the engine persists it. */
function apply(state: LifecycleState, t: Transition): LifecycleState {
  return { ...state, status: t.status, votes: t.vote ? [...state.votes, t.vote] : state.votes };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof CountersignError) return err.code;
    throw err;
  }
}

const approve = (r: Reviewer, extra: Partial<Extract<LifecycleEvent, { type: 'review' }>> = {}): LifecycleEvent => ({
  type: 'review',
  reviewer: r,
  verdict: 'approve',
  at: AT,
  ...extra,
});
const reject = (r: Reviewer, reason = 'no'): LifecycleEvent => ({ type: 'review', reviewer: r, verdict: 'reject', reason, at: AT });

describe('lifecycle: single approver (the default requirement)', () => {
  it('approves as asked on the first approval', () => {
    const t = transition(pending(), approve(reviewer('alice')));
    expect(t.status).toBe('approved');
    expect(t.kinds).toEqual(['reviewed', 'approved']);
    expect(t.decision).toMatchObject({
      outcome: 'approved',
      decidedBy: 'reviewers',
      action: 'delete_data',
      args: { path: '/important/data.db' },
      modified: false,
      alternative: null,
      deciders: [{ type: 'operator', id: 'alice', name: 'alice' }],
    });
  });

  it('approves with modified args, which the decision carries and marks', () => {
    const t = transition(pending(), approve(reviewer('alice'), { args: { path: '/tmp/copy.db' } }));
    expect(t.decision).toMatchObject({ action: 'delete_data', args: { path: '/tmp/copy.db' }, modified: true });
  });

  it('approves an alternative, which swaps the action', () => {
    const t = transition(pending(), approve(reviewer('alice'), { alternative: 'quarantine' }));
    expect(t.decision).toMatchObject({ action: 'quarantine_file', alternative: 'quarantine', modified: false });
  });

  it('refuses an unknown alternative', () => {
    expect(codeOf(() => transition(pending(), approve(reviewer('alice'), { alternative: 'nope' })))).toBe('UNKNOWN_ALTERNATIVE');
  });

  it('rejects on the first rejection, with the reason', () => {
    const t = transition(pending(), reject(reviewer('bob'), 'wrong host'));
    expect(t.status).toBe('rejected');
    expect(t.decision).toMatchObject({ outcome: 'rejected', reason: 'wrong host', action: null, args: null });
  });

  it('refuses self-review, non-reviewers and second votes', () => {
    expect(codeOf(() => transition(pending(null, { requesterOperatorId: 'alice' }), approve(reviewer('alice'))))).toBe('SELF_REVIEW');
    expect(codeOf(() => transition(pending(), approve(reviewer('audrey', ['auditor']))))).toBe('NOT_ELIGIBLE');
  });

  it('cancels and expires only while pending', () => {
    const agent = { type: 'agent' as const, id: 'agt', name: 'bot' };
    expect(transition(pending(), { type: 'cancel', actor: agent, at: AT }).status).toBe('cancelled');
    const expired = transition(pending(), { type: 'expire', at: AT });
    expect(expired.status).toBe('expired');
    expect(expired.decision).toMatchObject({ outcome: 'expired', decidedBy: 'timeout' });
    expect(codeOf(() => transition({ ...pending(), status: 'approved' }, { type: 'cancel', actor: agent, at: AT }))).toBe('ALREADY_DECIDED');
  });

  it('records execution only after the approval was claimed (executing), once', () => {
    const executing = { ...pending(), status: 'executing' as const };
    expect(transition(executing, { type: 'execution', status: 'succeeded', at: AT }).status).toBe('executed');
    expect(transition(executing, { type: 'execution', status: 'failed', at: AT }).status).toBe('execution_failed');
    // An approval not yet claimed takes no report: claim it first (gate/claim.ts).
    expect(codeOf(() => transition({ ...pending(), status: 'approved' }, { type: 'execution', status: 'succeeded', at: AT }))).toBe('ILLEGAL_TRANSITION');
    expect(codeOf(() => transition(pending(), { type: 'execution', status: 'succeeded', at: AT }))).toBe('ILLEGAL_TRANSITION');
    expect(codeOf(() => transition({ ...pending(), status: 'executed' }, { type: 'execution', status: 'succeeded', at: AT }))).toBe('ALREADY_EXECUTED');
    expect(codeOf(() => transition({ ...pending(), status: 'rejected' }, { type: 'execution', status: 'succeeded', at: AT }))).toBe('ALREADY_DECIDED');
    // Nothing but a report moves an executing request: it was decided long ago.
    expect(codeOf(() => transition(executing, { type: 'cancel', actor: { type: 'agent', id: 'a', name: 'a' }, at: AT }))).toBe('ALREADY_DECIDED');
  });
});

describe('lifecycle: quorum and chains, replayed vote by vote', () => {
  const twoOfAny: ApprovalRequirement = { stages: [{ count: 2, label: '2 reviewers' }], deny: 1 };
  const managerThenDirector: ApprovalRequirement = {
    stages: [
      { count: 1, role: 'manager', label: 'manager' },
      { count: 1, role: 'director', label: 'director' },
    ],
    deny: 1,
  };

  const table: Array<{ name: string; requirement: ApprovalRequirement; votes: Array<[LifecycleEvent, string]> }> = [
    {
      name: '2 distinct reviewers',
      requirement: twoOfAny,
      votes: [
        [approve(reviewer('a')), 'pending'],
        [approve(reviewer('a')), 'ALREADY_REVIEWED'],
        [approve(reviewer('b')), 'approved'],
      ],
    },
    {
      name: 'manager then director',
      requirement: managerThenDirector,
      votes: [
        [approve(reviewer('lee', ['lead'])), 'NOT_ELIGIBLE'],
        [approve(reviewer('mia', ['manager'])), 'pending'],
        [approve(reviewer('max', ['manager'])), 'NOT_ELIGIBLE'],
        [approve(reviewer('dan', ['director'])), 'approved'],
      ],
    },
    {
      name: 'a director may fill the manager stage, but not both',
      requirement: managerThenDirector,
      votes: [
        [approve(reviewer('dan', ['director'])), 'pending'],
        [approve(reviewer('dan', ['director'])), 'ALREADY_REVIEWED'],
        [approve(reviewer('dora', ['director'])), 'approved'],
      ],
    },
    {
      name: 'a denial decides at once, mid-chain',
      requirement: managerThenDirector,
      votes: [
        [approve(reviewer('mia', ['manager'])), 'pending'],
        [reject(reviewer('dan', ['director'])), 'rejected'],
      ],
    },
    {
      name: 'modified args restart the count for the new payload',
      requirement: twoOfAny,
      votes: [
        [approve(reviewer('a')), 'pending'],
        [approve(reviewer('b'), { args: { path: '/tmp/x' } }), 'pending'],
        [approve(reviewer('c')), 'approved'],
      ],
    },
    {
      name: 'group-filtered stage',
      requirement: { stages: [{ count: 1, group: 'finance', label: 'finance' }], deny: 1 },
      votes: [
        [approve(reviewer('x', ['reviewer'], ['ops'])), 'NOT_ELIGIBLE'],
        [approve(reviewer('y', ['reviewer'], ['finance'])), 'approved'],
      ],
    },
  ];

  it.each(table)('$name', ({ requirement, votes }) => {
    let state = pending(requirement);
    for (const [event, expected] of votes) {
      const code = codeOf(() => transition(state, event));
      if (code !== undefined) {
        expect(code).toBe(expected);
        continue;
      }
      const t = transition(state, event);
      expect(t.status).toBe(expected);
      state = apply(state, t);
    }
  });

  it('the modified payload is what gets approved, with both deciders of it', () => {
    let state = pending(twoOfAny);
    state = apply(state, transition(state, approve(reviewer('b'), { args: { path: '/tmp/x' } })));
    const t = transition(state, approve(reviewer('c')));
    expect(t.decision).toMatchObject({ args: { path: '/tmp/x' }, modified: true });
    expect(t.decision?.deciders.map((d) => d.id)).toEqual(['b', 'c']);
  });
});

describe('lifecycle properties', () => {
  const reviewers = ['r1', 'r2', 'r3', 'r4'].map((id, i) => reviewer(id, i === 3 ? ['manager'] : ['reviewer']));
  const arbEvent: fc.Arbitrary<LifecycleEvent> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ who: fc.constantFrom(...reviewers), verdict: fc.constantFrom('approve' as const, 'reject' as const), modify: fc.boolean() }).map(
      ({ who, verdict, modify }): LifecycleEvent =>
        verdict === 'approve'
          ? approve(who, modify ? { args: { path: `/tmp/${who.id}` } } : {})
          : reject(who),
    ) },
    { weight: 1, arbitrary: fc.constant<LifecycleEvent>({ type: 'cancel', actor: { type: 'agent', id: 'a', name: 'a' }, at: AT }) },
    { weight: 1, arbitrary: fc.constant<LifecycleEvent>({ type: 'expire', at: AT }) },
    { weight: 2, arbitrary: fc.constantFrom<LifecycleEvent>({ type: 'execution', status: 'succeeded', at: AT }, { type: 'execution', status: 'failed', at: AT }) },
  );
  const arbRequirement = fc.record({ count: fc.integer({ min: 1, max: 3 }), deny: fc.integer({ min: 1, max: 2 }) }).map(
    ({ count, deny }): ApprovalRequirement => ({ stages: [{ count, label: `${count} reviewers` }], deny }),
  );

  function run(requirement: ApprovalRequirement, events: LifecycleEvent[]) {
    let state = pending(requirement);
    const trace: Array<{ before: LifecycleState; event: LifecycleEvent; result: Transition | string }> = [];
    for (const event of events) {
      const before = state;
      const code = codeOf(() => transition(state, event));
      if (code !== undefined) {
        trace.push({ before, event, result: code });
        continue;
      }
      const t = transition(state, event);
      trace.push({ before, event, result: t });
      state = apply(state, t);
    }
    return { state, trace };
  }

  it('terminal states stay terminal: every later event is refused', () => {
    fc.assert(
      fc.property(arbRequirement, fc.array(arbEvent, { maxLength: 20 }), (requirement, events) => {
        const { trace } = run(requirement, events);
        for (const step of trace) {
          if (isTerminal(step.before.status)) expect(typeof step.result).toBe('string');
        }
      }),
    );
  });

  it('exactly one decision: at most one transition decides, and every decided run has one', () => {
    fc.assert(
      fc.property(arbRequirement, fc.array(arbEvent, { maxLength: 20 }), (requirement, events) => {
        const { state, trace } = run(requirement, events);
        const decisions = trace.filter((s) => typeof s.result !== 'string' && s.result.decision !== null);
        expect(decisions.length).toBe(state.status === 'pending' ? 0 : 1);
      }),
    );
  });

  it('quorum is counted per distinct reviewer', () => {
    fc.assert(
      fc.property(arbRequirement, fc.array(arbEvent, { maxLength: 20 }), (requirement, events) => {
        const { trace } = run(requirement, events);
        for (const step of trace) {
          if (typeof step.result === 'string' || step.result.decision?.outcome !== 'approved') continue;
          const deciders = step.result.decision.deciders.map((d) => d.id);
          expect(new Set(deciders).size).toBe(deciders.length);
          expect(deciders.length).toBeGreaterThanOrEqual(requirement.stages[0]!.count);
        }
        // Nobody ever has two votes on one request.
        const final = trace.at(-1);
        if (final) {
          const voters = (typeof final.result === 'string' ? final.before : apply(final.before, final.result)).votes.map((v) => v.reviewer.id);
          expect(new Set(voters).size).toBe(voters.length);
        }
      }),
    );
  });
});

/**
 * The quorum suite: review sequences replayed through `transition`, asserting the state after
 * every review (status, error code, distinct approvals of the payload, deciders). Requirements
 * come either written out or from a policy through `evaluate`, so the same table covers the
 * pure state machine and the policy that feeds it.
 */
import { describe, expect, it } from 'vitest';
import { payloadKey } from '../src/canonical.ts';
import { CountersignError } from '../src/errors.ts';
import { currentPayload, stageProgress, transition, type LifecycleEvent, type LifecycleState, type Reviewer } from '../src/lifecycle.ts';
import { CreateRequestBody, type ApprovalRequirement, type Role } from '../src/schemas.ts';
import { EMPTY_HISTORY, defaultPolicy, evaluate, parsePolicy, type Policy } from '../src/policy/index.ts';

const AT = '2026-11-21T10:00:00.000Z';
const ACTION = 'wire_transfer';
const ARGS = { to: 'acct-42', amount: 20_000 };

const people: Record<string, Reviewer> = {};
function person(id: string, roles: Role[] = ['reviewer'], groups: string[] = []): Reviewer {
  people[id] = { id, name: id, roles, groups };
  return people[id]!;
}
const alice = person('alice');
const bob = person('bob');
const carol = person('carol');
const dave = person('dave');
const erin = person('erin');
const mia = person('mia', ['manager']);
const max = person('max', ['manager']);
const dora = person('dora', ['director']);
const dan = person('dan', ['director']);
const lena = person('lena', ['lead']);
const paula = person('paula', ['reviewer'], ['payments']);
const olivia = person('olivia');
const audrey = person('audrey', ['auditor']);
const requester = person('requester', ['admin']);

const stage = (count: number, extra: { role?: Role; group?: string; operators?: string[] } = {}) => ({ count, label: `${count}`, ...extra });
const req = (stages: ApprovalRequirement['stages'], deny = 1, modifiedNeedsSecondReviewer = false): ApprovalRequirement => ({
  stages,
  deny,
  ...(modifiedNeedsSecondReviewer ? { modifiedNeedsSecondReviewer: true } : {}),
});

function fromPolicy(policy: Policy, body: Record<string, unknown>): ApprovalRequirement {
  const a = evaluate({ ...CreateRequestBody.parse({ confidence: 0.7, ...body }), agent: 'billing-bot' }, policy, EMPTY_HISTORY, new Date(AT));
  if (!a.approval) throw new Error(`expected a review route, got ${a.route}`);
  return a.approval;
}

type Step = {
  who: Reviewer;
  verdict: 'approve' | 'reject';
  args?: Record<string, unknown>;
  alternative?: string;
  /** Expected after this review. */
  status?: 'pending' | 'approved' | 'rejected';
  error?: string;
  /** Distinct approvals counted for the current payload, per stage. */
  progress?: number[];
  deciders?: string[];
  decidedArgs?: Record<string, unknown>;
  decidedAction?: string;
  modified?: boolean;
};

type Scenario = { name: string; requirement: ApprovalRequirement; requesterOperatorId?: string; steps: Step[] };

const policy = defaultPolicy();
const strictPolicy = parsePolicy('levels: { high: { sla: 15m, deny: 2, modifiedNeedsSecondReviewer: true } }');
if (!strictPolicy.ok) throw new Error(JSON.stringify(strictPolicy.errors));

const SCENARIOS: Scenario[] = [
  { name: 'one approval decides the default requirement', requirement: req([stage(1)]), steps: [{ who: alice, verdict: 'approve', status: 'approved', deciders: ['alice'] }] },
  {
    name: 'a requester cannot review their own request (self-review), someone else can',
    requirement: req([stage(1)]),
    requesterOperatorId: 'requester',
    steps: [
      { who: requester, verdict: 'approve', error: 'SELF_REVIEW', status: 'pending', progress: [0] },
      { who: requester, verdict: 'reject', error: 'SELF_REVIEW', status: 'pending' },
      { who: alice, verdict: 'approve', status: 'approved' },
    ],
  },
  {
    name: 'one vote per reviewer: a duplicate approval is refused and not counted',
    requirement: req([stage(2)]),
    steps: [
      { who: alice, verdict: 'approve', status: 'pending', progress: [1] },
      { who: alice, verdict: 'approve', error: 'ALREADY_REVIEWED', progress: [1] },
      { who: alice, verdict: 'reject', error: 'ALREADY_REVIEWED', status: 'pending' },
      { who: bob, verdict: 'approve', status: 'approved', deciders: ['alice', 'bob'] },
    ],
  },
  {
    name: '2-of-N quorum',
    requirement: req([stage(2)]),
    steps: [
      { who: alice, verdict: 'approve', status: 'pending', progress: [1] },
      { who: bob, verdict: 'approve', status: 'approved', progress: [2], deciders: ['alice', 'bob'] },
    ],
  },
  {
    name: '3-of-N quorum stays pending until the third',
    requirement: req([stage(3)]),
    steps: [
      { who: alice, verdict: 'approve', status: 'pending', progress: [1] },
      { who: bob, verdict: 'approve', status: 'pending', progress: [2] },
      { who: carol, verdict: 'approve', status: 'approved', deciders: ['alice', 'bob', 'carol'] },
    ],
  },
  {
    name: 'deny short-circuit: one rejection decides at once, whatever the approvals so far',
    requirement: req([stage(3)]),
    steps: [
      { who: alice, verdict: 'approve', status: 'pending', progress: [1] },
      { who: bob, verdict: 'approve', status: 'pending', progress: [2] },
      { who: carol, verdict: 'reject', status: 'rejected', deciders: ['carol'] },
      { who: dave, verdict: 'approve', error: 'ALREADY_DECIDED', status: 'rejected' },
    ],
  },
  {
    name: 'deny: 2 — the first rejection waits, the second decides',
    requirement: req([stage(3)], 2),
    steps: [
      { who: alice, verdict: 'reject', status: 'pending', progress: [0] },
      { who: bob, verdict: 'approve', status: 'pending', progress: [1] },
      { who: carol, verdict: 'reject', status: 'rejected', deciders: ['alice', 'carol'] },
    ],
  },
  {
    name: 'deny: 2 with approve: 2 — the approval threshold met first wins',
    requirement: req([stage(2)], 2),
    steps: [
      { who: alice, verdict: 'reject', status: 'pending' },
      { who: bob, verdict: 'approve', status: 'pending', progress: [1] },
      { who: carol, verdict: 'approve', status: 'approved', deciders: ['bob', 'carol'] },
    ],
  },
  {
    name: 'role filter: a reviewer cannot fill a manager stage; a manager can',
    requirement: req([stage(1, { role: 'manager' })]),
    steps: [
      { who: alice, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending', progress: [0] },
      { who: lena, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: mia, verdict: 'approve', status: 'approved', deciders: ['mia'] },
    ],
  },
  {
    name: 'role filter: a more senior role (director) fills a manager stage',
    requirement: req([stage(1, { role: 'manager' })]),
    steps: [{ who: dora, verdict: 'approve', status: 'approved', deciders: ['dora'] }],
  },
  {
    name: 'role filter on rejections too: only an eligible reviewer may reject',
    requirement: req([stage(1, { role: 'manager' })]),
    steps: [
      { who: alice, verdict: 'reject', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: max, verdict: 'reject', status: 'rejected', deciders: ['max'] },
    ],
  },
  {
    name: 'group filter: only members of payments count',
    requirement: req([stage(1, { group: 'payments' })]),
    steps: [
      { who: alice, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: paula, verdict: 'approve', status: 'approved', deciders: ['paula'] },
    ],
  },
  {
    name: 'a named operator stage takes only that operator',
    requirement: req([stage(1, { operators: ['olivia'] })]),
    steps: [
      { who: dora, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: olivia, verdict: 'approve', status: 'approved' },
    ],
  },
  {
    name: 'auditors read; they never review',
    requirement: req([stage(1)]),
    steps: [
      { who: audrey, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: audrey, verdict: 'reject', error: 'NOT_ELIGIBLE', status: 'pending' },
    ],
  },
  {
    name: 'chain: manager, then director — stages fill in order',
    requirement: req([stage(1, { role: 'manager' }), stage(1, { role: 'director' })]),
    steps: [
      { who: alice, verdict: 'approve', error: 'NOT_ELIGIBLE', progress: [0, 0] },
      { who: mia, verdict: 'approve', status: 'pending', progress: [1, 0] },
      { who: max, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending', progress: [1, 0] },
      { who: dora, verdict: 'approve', status: 'approved', progress: [1, 1], deciders: ['mia', 'dora'] },
    ],
  },
  {
    name: 'chain: a director may fill the manager stage, but the director stage still needs another director',
    requirement: req([stage(1, { role: 'manager' }), stage(1, { role: 'director' })]),
    steps: [
      { who: dora, verdict: 'approve', status: 'pending', progress: [1, 0] },
      { who: dora, verdict: 'approve', error: 'ALREADY_REVIEWED' },
      { who: dan, verdict: 'approve', status: 'approved', deciders: ['dora', 'dan'] },
    ],
  },
  {
    name: 'multi-level by value (policy): 5,000 needs one reviewer of any role',
    requirement: fromPolicy(policy, { action: ACTION, args: { to: 'acct-42', amount: 5_000 }, context: { value: 5_000 } }),
    steps: [{ who: alice, verdict: 'approve', status: 'approved', deciders: ['alice'] }],
  },
  {
    name: 'multi-level by value (policy): 20,000 needs a manager',
    requirement: fromPolicy(policy, { action: ACTION, args: ARGS, context: { value: 20_000 } }),
    steps: [
      { who: alice, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: mia, verdict: 'approve', status: 'approved', deciders: ['mia'] },
    ],
  },
  {
    name: 'multi-level by value (policy): 60,000 needs a manager and then a director',
    requirement: fromPolicy(policy, { action: ACTION, args: ARGS, context: { value: 60_000 } }),
    steps: [
      { who: mia, verdict: 'approve', status: 'pending', progress: [1, 0] },
      { who: max, verdict: 'approve', error: 'NOT_ELIGIBLE', progress: [1, 0] },
      { who: dora, verdict: 'approve', status: 'approved', deciders: ['mia', 'dora'] },
    ],
  },
  {
    name: "the agent's own approvers only narrow: an extra stage after the policy's",
    requirement: fromPolicy(policy, { action: ACTION, args: ARGS, context: { value: 20_000 }, approvers: [{ operator: 'olivia' }] }),
    steps: [
      { who: olivia, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending', progress: [0, 0] },
      { who: mia, verdict: 'approve', status: 'pending', progress: [1, 0] },
      { who: max, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: olivia, verdict: 'approve', status: 'approved', deciders: ['mia', 'olivia'] },
    ],
  },
  {
    name: 'modified args: the modifying approval covers the modified args',
    requirement: req([stage(1)]),
    steps: [{ who: alice, verdict: 'approve', args: { to: 'acct-42', amount: 2_000 }, status: 'approved', decidedArgs: { to: 'acct-42', amount: 2_000 }, modified: true }],
  },
  {
    name: 'modified args start a new payload: approvals of the old one do not count toward it',
    requirement: req([stage(2)]),
    steps: [
      { who: alice, verdict: 'approve', status: 'pending', progress: [1] },
      { who: bob, verdict: 'approve', args: { to: 'acct-42', amount: 2_000 }, status: 'pending', progress: [1] },
      { who: carol, verdict: 'approve', status: 'approved', deciders: ['bob', 'carol'], decidedArgs: { to: 'acct-42', amount: 2_000 }, modified: true },
    ],
  },
  {
    name: 'modifiedNeedsSecondReviewer: a modification needs someone else to approve it too',
    requirement: req([stage(1)], 1, true),
    steps: [
      { who: alice, verdict: 'approve', args: { to: 'acct-42', amount: 2_000 }, status: 'pending', progress: [1] },
      { who: alice, verdict: 'approve', error: 'ALREADY_REVIEWED', status: 'pending' },
      { who: bob, verdict: 'approve', status: 'approved', deciders: ['alice', 'bob'], decidedArgs: { to: 'acct-42', amount: 2_000 }, modified: true },
    ],
  },
  {
    name: 'modifiedNeedsSecondReviewer leaves an approval as asked alone',
    requirement: req([stage(1)], 1, true),
    steps: [{ who: alice, verdict: 'approve', status: 'approved', decidedArgs: ARGS, modified: false }],
  },
  {
    name: 'modifiedNeedsSecondReviewer covers alternatives as well',
    requirement: req([stage(1)], 1, true),
    steps: [
      { who: alice, verdict: 'approve', alternative: 'hold', status: 'pending' },
      { who: bob, verdict: 'approve', status: 'approved', decidedAction: 'hold_payment', deciders: ['alice', 'bob'] },
    ],
  },
  {
    name: 'modifiedNeedsSecondReviewer with a manager stage: the second approver must be a manager too',
    requirement: req([stage(1, { role: 'manager' })], 1, true),
    steps: [
      { who: mia, verdict: 'approve', args: { to: 'acct-42', amount: 1 }, status: 'pending', progress: [1] },
      { who: alice, verdict: 'approve', error: 'NOT_ELIGIBLE', status: 'pending' },
      { who: max, verdict: 'approve', status: 'approved', deciders: ['mia', 'max'] },
    ],
  },
  {
    name: 'policy levels.high { deny: 2, modifiedNeedsSecondReviewer } reaches the requirement',
    requirement: fromPolicy(strictPolicy.policy, { action: ACTION, args: { to: 'acct-42', amount: 2_000 }, riskLevel: 'high' }),
    steps: [
      { who: alice, verdict: 'reject', status: 'pending' },
      { who: bob, verdict: 'approve', args: { to: 'acct-42', amount: 1 }, status: 'pending', progress: [1] },
      { who: carol, verdict: 'reject', status: 'rejected', deciders: ['alice', 'carol'] },
    ],
  },
];

function state(s: Scenario): LifecycleState {
  return {
    status: 'pending',
    action: ACTION,
    args: ARGS,
    alternatives: [{ name: 'hold', action: 'hold_payment', args: { to: 'acct-42' } }],
    approval: s.requirement,
    votes: [],
    requesterOperatorId: s.requesterOperatorId ?? null,
  };
}

describe('quorum scenarios: the state after each review', () => {
  it('has at least 20 scenarios', () => {
    expect(SCENARIOS.length).toBeGreaterThanOrEqual(20);
  });

  it.each(SCENARIOS.map((s) => [s.name, s] as const))('%s', (_name, scenario) => {
    let current = state(scenario);
    scenario.steps.forEach((step, i) => {
      const where = `step ${i + 1} (${step.who.id} ${step.verdict})`;
      const event: LifecycleEvent = {
        type: 'review',
        reviewer: step.who,
        verdict: step.verdict,
        ...(step.verdict === 'reject' ? { reason: 'no' } : {}),
        ...(step.args ? { args: step.args } : {}),
        ...(step.alternative ? { alternative: step.alternative } : {}),
        at: AT,
      };
      let error: string | undefined;
      try {
        const t = transition(current, event);
        current = { ...current, status: t.status, votes: t.vote ? [...current.votes, t.vote] : current.votes };
        if (t.decision) {
          if (step.deciders) expect(t.decision.deciders.map((d) => d.name), where).toEqual(step.deciders);
          if (step.decidedArgs) expect(t.decision.args, where).toEqual(step.decidedArgs);
          if (step.decidedAction) expect(t.decision.action, where).toBe(step.decidedAction);
          if (step.modified !== undefined) expect(t.decision.modified, where).toBe(step.modified);
        } else {
          expect(step.deciders, `${where}: expected a decision`).toBeUndefined();
        }
      } catch (err) {
        if (!(err instanceof CountersignError)) throw err;
        error = err.code;
      }
      expect(error, where).toBe(step.error);
      if (step.status) expect(current.status, where).toBe(step.status);
      if (step.progress) {
        const key = currentPayload(current).key;
        expect(stageProgress(current.approval!, current.votes, key), where).toEqual(step.progress);
      }
    });
  });

  it('payload keys bind approvals to the exact action and args', () => {
    expect(payloadKey(ACTION, { amount: 20_000, to: 'acct-42' })).toBe(payloadKey(ACTION, ARGS));
    expect(payloadKey(ACTION, { ...ARGS, amount: 20_001 })).not.toBe(payloadKey(ACTION, ARGS));
  });

  it('refuses a deny threshold below 1 in the policy, naming the key', () => {
    const bad = parsePolicy('levels: { critical: { sla: 5m, deny: 0 } }');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(JSON.stringify(bad.errors)).toContain('levels.critical.deny');
  });
});

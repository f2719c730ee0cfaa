import { describe, expect, it } from 'vitest';
import {
  AGGREGATE_ACTION,
  CreateRequestBody,
  EMPTY_HISTORY,
  MAX_AGGREGATE_MEMBERS,
  aggregateRequest,
  assessAggregate,
  evaluate,
  strictestOf,
  memberDecision,
  parsePolicy,
  type Decision,
  type Policy,
  type PolicyResult,
} from '../src/index.ts';

function policyOf(r: PolicyResult): Policy {
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const transfer = (i: number, value = 9_900) => ({ id: `req_${i}`, action: 'wire_transfer', args: { to: `acct-${i}`, amount: value }, value, riskLevel: 'medium' as const });

describe('aggregateRequest', () => {
  it('sums the members\' values, lists each exact action and args, and floors the risk at the highest member', () => {
    const members = [...Array.from({ length: 19 }, (_, i) => transfer(i)), { ...transfer(19), riskLevel: 'high' as const }];
    const body = aggregateRequest(members, 'billing-bot', ['value_aggregation']);
    expect(body.action).toBe(AGGREGATE_ACTION);
    expect(body.context).toEqual({ value: 198_000 });
    expect(body.riskLevel).toBe('high');
    expect(body.args).toMatchObject({ count: 20, totalValue: 198_000, actions: ['wire_transfer'] });
    expect((body.args['requests'] as unknown[])[3]).toEqual({ id: 'req_3', action: 'wire_transfer', args: { to: 'acct-3', amount: 9_900 }, value: 9_900 });
    expect(body.description).toContain('20 requests from agent billing-bot');
  });

  it('lets the policy see the whole: 20 × 9,900 meets a 10,000 wire_transfer rule that no member met, and always goes to review', () => {
    const policy = policyOf(
      parsePolicy('rules:\n  - { name: big-wire, when: { action: wire_transfer, valueAtLeast: 10000 }, then: { approvals: 2, riskAtLeast: high } }'),
    );
    const member = evaluate({ action: 'wire_transfer', args: {}, context: { value: 9_900 }, agent: 'bot' }, policy, EMPTY_HISTORY, new Date(0));
    expect(member.matchedRules.map((r) => r.name)).not.toContain('big-wire');
    const body = aggregateRequest(Array.from({ length: 20 }, (_, i) => transfer(i)), 'bot', ['value_aggregation']);
    const forced = { rule: 'slicing-aggregate:value_aggregation', reason: 'slicing' };
    const whole = assessAggregate(body, 'bot', policy, EMPTY_HISTORY, new Date(0), forced);
    expect(whole.matchedRules.map((r) => r.name)).toEqual(expect.arrayContaining(['big-wire', 'slicing-aggregate:value_aggregation']));
    expect(whole.route).toBe('review');
    expect(whole.riskLevel).toBe('high');
    const approvals = (a: typeof whole) => a.approval?.stages.reduce((n, s) => n + s.count, 0) ?? 0;
    expect(approvals(whole)).toBeGreaterThanOrEqual(2);
    expect(approvals(whole)).toBeGreaterThan(approvals(member));
  });

  it('of mixed actions, the strictest evaluation stands', () => {
    const policy = policyOf(parsePolicy('rules:\n  - { name: deletes, when: { action: delete_rows }, then: { riskAtLeast: critical } }'));
    const body = aggregateRequest(
      [
        { id: 'a', action: 'send_alert', args: {}, riskLevel: 'low' },
        { id: 'b', action: 'delete_rows', args: { from: 0 }, riskLevel: 'low' },
      ],
      'bot',
      ['pattern_repetition'],
    );
    const whole = assessAggregate(body, 'bot', policy, EMPTY_HISTORY, new Date(0), { rule: 'slicing-aggregate:x', reason: 'x' });
    expect(whole.riskLevel).toBe('critical');
    expect(whole.matchedRules.map((r) => r.name)).toContain('deletes');
  });

  it('is never easier to approve than any member was alone: MFA, a required group and quorum all carry over', () => {
    const policy = policyOf(
      parsePolicy(
        'rules:\n  - { name: code, when: { action: execute_code }, then: { mfa: true, approvers: [{ group: security }] } }\n  - { name: wires, when: { action: wire_transfer }, then: { approvals: 2 } }',
      ),
    );
    const alone = (action: string) => evaluate({ action, args: {}, agent: 'bot' }, policy, EMPTY_HISTORY, new Date(0));
    const members = [alone('execute_code'), alone('wire_transfer'), alone('wire_transfer')];
    expect(members[0]!.mfaRequired).toBe(true);
    const body = aggregateRequest(
      [
        { id: 'a', action: 'execute_code', args: {}, riskLevel: members[0]!.riskLevel },
        { id: 'b', action: 'wire_transfer', args: {}, riskLevel: members[1]!.riskLevel },
        { id: 'c', action: 'wire_transfer', args: {}, riskLevel: members[2]!.riskLevel },
      ],
      'bot',
      ['pattern_repetition'],
    );
    const whole = assessAggregate(body, 'bot', policy, EMPTY_HISTORY, new Date(0), { rule: 'slicing-aggregate:x', reason: 'x' }, members);
    expect(whole.mfaRequired).toBe(true);
    expect(whole.approval?.stages).toContainEqual(expect.objectContaining({ group: 'security', count: 2 }));
    expect(whole.matchedRules.map((r) => r.name)).toEqual(expect.arrayContaining(['code', 'wires']));
  });

  it('an agent naming one approver cannot shrink the quorum: the generic stage stays beside a named operator', () => {
    const policy = policyOf(parsePolicy('rules:\n  - { name: wires, when: { action: wire_transfer }, then: { approvals: 2 } }'));
    const alone = evaluate({ action: 'wire_transfer', args: {}, approvers: [{ operator: 'bob' }], agent: 'bot' }, policy, EMPTY_HISTORY, new Date(0));
    expect(alone.approval?.stages).toEqual([expect.objectContaining({ count: 2 }), expect.objectContaining({ operators: ['bob'] })]);
    const body = aggregateRequest([{ id: 'a', action: 'wire_transfer', args: {}, riskLevel: alone.riskLevel }], 'bot', ['value_aggregation']);
    const whole = assessAggregate(body, 'bot', policy, EMPTY_HISTORY, new Date(0), { rule: 'slicing-aggregate:x', reason: 'x' }, [alone]);
    expect(whole.approval?.stages).toEqual([{ count: 2, label: '2 reviewers' }, expect.objectContaining({ count: 1, operators: ['bob'] })]);
  });

  it('strictestOf keeps the highest risk, a block, the shortest SLA, the latest start level and the smallest deny', () => {
    const policy = policyOf(parsePolicy(''));
    const low = evaluate({ action: 'send_alert', args: {}, confidence: 0.99, agent: 'bot' }, policy, EMPTY_HISTORY, new Date(0));
    const high = evaluate({ action: 'isolate_host', args: {}, riskLevel: 'high', agent: 'bot' }, policy, EMPTY_HISTORY, new Date(0));
    const s = strictestOf([{ ...low, escalationStartLevel: 2, approval: { stages: [{ count: 1, role: 'manager', label: 'manager' }], deny: 1 } }, { ...high, approval: { stages: [{ count: 3, label: '3 reviewers' }], deny: 2 } }]);
    expect(s.riskLevel).toBe('high');
    expect(s.route).toBe('review');
    expect(s.escalationStartLevel).toBe(2);
    expect(s.slaSeconds).toBe(Math.min(low.slaSeconds ?? Infinity, high.slaSeconds ?? Infinity));
    expect(s.approval).toEqual({ stages: [{ count: 3, role: 'manager', label: 'manager (3 needed)' }], deny: 1 });
    expect(strictestOf([high, { ...low, route: 'block' }]).route).toBe('block');
  });

  it('without values there is no context value and no total', () => {
    const body = aggregateRequest([{ id: 'a', action: 'delete_rows', args: { from: 0 }, riskLevel: 'low' }, { id: 'b', action: 'delete_rows', args: { from: 100 }, riskLevel: 'low' }], 'bot', ['pattern_repetition']);
    expect(body.context).toBeUndefined();
    expect(body.args['totalValue']).toBeNull();
  });

  it('needs 1 to MAX_AGGREGATE_MEMBERS members', () => {
    expect(() => aggregateRequest([], 'bot', [])).toThrow(RangeError);
    expect(() => aggregateRequest(Array.from({ length: MAX_AGGREGATE_MEMBERS + 1 }, (_, i) => transfer(i)), 'bot', [])).toThrow(RangeError);
    expect(aggregateRequest([transfer(1)], 'bot', []).args['count']).toBe(1);
  });

  it('counts what the agent asked for earlier in the hold, so pacing requests one at a time does not hide the total', () => {
    const body = aggregateRequest([transfer(9)], 'bot', ['value_aggregation'], { count: 4, value: 39_600 });
    expect(body.context).toEqual({ value: 49_500 });
    expect(body.args).toMatchObject({ count: 1, value: 9_900, totalValue: 49_500, earlierInHold: { count: 4, value: 39_600 } });
    expect(body.description).toContain('4 more earlier in this hold');
    const policy = policyOf(parsePolicy(''));
    const whole = assessAggregate(body, 'bot', policy, EMPTY_HISTORY, new Date(0), { rule: 'slicing-aggregate:x', reason: 'x' });
    expect(whole.matchedRules.map((r) => r.name)).toContain('large-value');
  });

  it('agents may not name an action in the countersign.* namespace', () => {
    const r = CreateRequestBody.safeParse({ action: AGGREGATE_ACTION, args: {} });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]).toMatchObject({ path: ['action'], message: expect.stringContaining('reserved') });
    expect(CreateRequestBody.safeParse({ action: 'Countersign.Anything' }).success).toBe(false);
    expect(CreateRequestBody.safeParse({ action: 'countersigned_doc' }).success).toBe(true);
  });
});

describe('memberDecision', () => {
  const aggregate: Decision = {
    outcome: 'approved',
    decidedBy: 'reviewers',
    deciders: [{ type: 'operator', id: 'op_1', name: 'rita' }],
    reason: 'checked the ledger',
    at: '2026-01-01T00:00:00.000Z',
    action: AGGREGATE_ACTION,
    args: { count: 2 },
    alternative: null,
    modified: false,
    receipt: { version: 1, requestId: 'req_agg', outcome: 'approved', decidedBy: 'reviewers', deciders: [], decidedAt: '', payloadHash: 'x', keyId: 'k', signature: 's' },
  };

  it('binds an approval to the member\'s own action and args, keeps who decided, and drops the aggregate\'s receipt', () => {
    const d = memberDecision('req_agg', aggregate, { action: 'wire_transfer', args: { amount: 9_900 } });
    expect(d).toEqual({
      outcome: 'approved',
      decidedBy: 'reviewers',
      deciders: aggregate.deciders,
      reason: 'decided with aggregate review req_agg: checked the ledger',
      at: aggregate.at,
      action: 'wire_transfer',
      args: { amount: 9_900 },
      alternative: null,
      modified: false,
    });
  });

  it('a rejection or expiry carries nothing that may run', () => {
    for (const outcome of ['rejected', 'expired', 'cancelled'] as const) {
      const d = memberDecision('req_agg', { ...aggregate, outcome, reason: null }, { action: 'wire_transfer', args: {} });
      expect(d).toMatchObject({ outcome, action: null, args: null, reason: 'decided with aggregate review req_agg' });
    }
  });
});

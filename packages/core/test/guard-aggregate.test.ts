import { describe, expect, it } from 'vitest';
import {
  AGGREGATE_ACTION,
  CreateRequestBody,
  EMPTY_HISTORY,
  MAX_AGGREGATE_MEMBERS,
  aggregateRequest,
  assessAggregate,
  evaluate,
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

  it('without values there is no context value and no total', () => {
    const body = aggregateRequest([{ id: 'a', action: 'delete_rows', args: { from: 0 }, riskLevel: 'low' }, { id: 'b', action: 'delete_rows', args: { from: 100 }, riskLevel: 'low' }], 'bot', ['pattern_repetition']);
    expect(body.context).toBeUndefined();
    expect(body.args['totalValue']).toBeNull();
  });

  it('needs 2 to MAX_AGGREGATE_MEMBERS members', () => {
    expect(() => aggregateRequest([transfer(1)], 'bot', [])).toThrow(RangeError);
    expect(() => aggregateRequest(Array.from({ length: MAX_AGGREGATE_MEMBERS + 1 }, (_, i) => transfer(i)), 'bot', [])).toThrow(RangeError);
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

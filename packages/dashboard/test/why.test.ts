/** Words for data: why a request is not actionable, audit entries, past outcomes, card origins. */
import type { ApprovalRequest, AuditLeaf } from '@countersign/core';
import { describe, expect, it } from 'vitest';
import { nextRoute, parseRoute } from '../src/router.ts';
import { clock, cooldownSentence, describeEntry, outcomesText, pastOutcomes, whyNotActionable, type CooldownInfo } from '../src/why.ts';

const NOW = new Date(2026, 11, 1, 18, 40).getTime();
const at = (h: number, m: number) => new Date(2026, 11, 1, h, m).toISOString();

function request(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return {
    id: 'req_1',
    agentId: 'agt_1',
    agentName: 'soc-bot',
    status: 'pending',
    action: 'isolate_host',
    args: {},
    description: null,
    confidence: 0.8,
    riskHint: null,
    context: {},
    alternatives: [],
    approvers: [],
    idempotencyKey: null,
    assessment: { riskLevel: 'high', approval: { stages: [{ count: 1, label: '1 reviewer' }], deny: 1 } } as unknown as ApprovalRequest['assessment'],
    policyVersion: 1,
    reviews: [],
    decision: null,
    execution: null,
    createdAt: at(18, 0),
    updatedAt: at(18, 0),
    expiresAt: null,
    actionable: false,
    ...over,
  };
}

const rita = { id: 'op_rita', name: 'rita', roles: ['reviewer'] };
const AUTO: CooldownInfo = { active: true, until: at(19, 8), reason: '5 approvals of high/critical risk within 15 min', config: { threshold: 5, windowMinutes: 15, durationMinutes: 30, riskLevels: ['high', 'critical'] } };
const none = { cooldown: null, velocity: null };

describe('why a request is not actionable', () => {
  it('names a cool-down exactly, with its end and cause', () => {
    expect(cooldownSentence(AUTO, NOW)).toBe('You are cooling down until 19:08 (5 high/critical-risk approvals in 15 minutes)');
    expect(cooldownSentence({ ...AUTO, reason: 'manual: long shift' }, NOW)).toBe('You are cooling down until 19:08 (set by a lead: long shift)');
    expect(cooldownSentence({ ...AUTO, active: false }, NOW)).toBeNull();
    const why = whyNotActionable(request(), rita, { cooldown: AUTO, velocity: null }, NOW);
    expect(why.code).toBe('cooldown');
    expect(why.text).toContain('You are cooling down until 19:08 (5 high/critical-risk approvals in 15 minutes)');
    expect(why.text).toContain('cool-down');
  });

  it('does not blame a cool-down for a risk level it does not cover', () => {
    expect(whyNotActionable(request({ assessment: { ...request().assessment, riskLevel: 'medium' } }), rita, { cooldown: AUTO, velocity: null }, NOW).code).toBe('stage');
  });

  it('prefers the most specific cause: pause, aggregate, own request, earlier vote, auditor', () => {
    expect(whyNotActionable(request({ agentPaused: { until: at(19, 0), reason: 'x' } }), rita, { cooldown: AUTO, velocity: null }, NOW).code).toBe('agent_paused');
    expect(whyNotActionable(request({ aggregate: { id: null, collectingUntil: null } }), rita, none, NOW).code).toBe('aggregated');
    expect(whyNotActionable(request({ agentName: 'operator:rita' }), rita, { cooldown: AUTO, velocity: null }, NOW).code).toBe('own_request');
    const vote = { id: 'rev_1', requestId: 'req_1', reviewer: { type: 'operator', id: 'op_rita', name: 'rita' }, verdict: 'approve', reason: null, args: null, alternative: null, at: at(18, 1) } as ApprovalRequest['reviews'][number];
    expect(whyNotActionable(request({ reviews: [vote] }), rita, none, NOW).text).toBe('You already voted (approved); it needs another reviewer.');
    expect(whyNotActionable(request(), { ...rita, roles: ['auditor'] }, none, NOW).code).toBe('auditor');
  });

  it("says an agent switched off is why, in the server's words, and that rejecting still works", () => {
    const off = request({ notActionable: { code: 'AGENT_DISABLED', message: 'agent billing-bot is disabled (enabled: false)' } });
    const why = whyNotActionable(off, rita, none, NOW);
    expect(why.code).toBe('agent_disabled');
    expect(why.text).toBe('agent billing-bot is disabled (enabled: false). You can still reject it.');
  });

  it('names a velocity limit and an escalation that left the viewer behind', () => {
    const velocity = { allowed: false, reason: '10 in the last hour (limit 10)', resetAt: at(19, 30), riskLevels: ['high', 'critical'] };
    const escalated = request({ escalation: { level: 2, levels: 3, role: 'manager', operators: [], groups: [], finalAuthority: false, dueAt: at(19, 0), extended: false, assignee: null, onFinalTimeout: 'reject' } });
    const why = whyNotActionable(escalated, rita, { cooldown: null, velocity }, NOW);
    expect(why.code).toBe('velocity');
    expect(why.text).toContain('(10 in the last hour (limit 10)) until 19:30');
    expect(why.text).toContain('moved to escalation level 2 (manager or more senior)');
    expect(whyNotActionable(escalated, rita, none, NOW).text).toContain('It needs 1 reviewer (now at escalation level 2: manager or more senior)');
  });

  it('shows another day with its date', () => {
    expect(clock(new Date(2026, 11, 2, 9, 5).toISOString(), NOW)).toBe('2 Dec 09:05');
    expect(clock(null, NOW)).toBe('an unknown time');
  });
});

describe('past outcomes', () => {
  it('counts as the history risk factor does, over the requests before this one', () => {
    const mk = (status: ApprovalRequest['status'], minute: number) => request({ id: `req_${status}_${minute}`, status, createdAt: at(17, minute) });
    const items = [mk('executed', 1), mk('executed', 2), mk('approved', 3), mk('rejected', 4), mk('expired', 5), mk('execution_failed', 6), mk('pending', 7), mk('cancelled', 8)];
    const later = request({ id: 'req_later', status: 'rejected', createdAt: at(18, 30) });
    const t = pastOutcomes([...items, later, request()], request());
    expect(t).toEqual({ requests: 8, outcomes: 9, approved: 4, rejected: 2, succeeded: 2, failed: 1, pending: 1 });
    expect(outcomesText(t)).toBe('9 past outcomes (4 approved, 2 rejected, 2 succeeded, 1 failed)');
    expect(outcomesText(pastOutcomes([], request()))).toBe('no history for this agent and action');
  });
});

describe('audit entries in words', () => {
  const leaf = (type: string, data: Record<string, unknown>, actor: AuditLeaf['actor'] = { type: 'system', id: 'system', name: 'countersign' }) =>
    ({ seq: 1, at: at(18, 0), type, requestId: 'req_1', actor, data }) as unknown as AuditLeaf;

  it('says what happened and keeps the rest under details, without hashes', () => {
    const created = describeEntry(leaf('created', { action: 'isolate_host', agentId: 'agt_1', policyVersion: 3, riskScore: 0.514, riskLevel: 'high', automationLevel: 'advisory', route: 'review', matchedRules: ['destructive-verbs'], payloadHash: 'ab'.repeat(32) }, { type: 'agent', id: 'agt_1', name: 'soc-bot' }), NOW);
    expect(created.summary).toBe('Proposed: high risk (0.51), automation level advisory, routed to review by policy v3');
    expect(created.notes).toEqual([{ label: 'Matched rules', text: 'destructive-verbs' }]);
    expect(created.rest).toBeNull();
    const vote = describeEntry(leaf('reviewed', { verdict: 'reject', reason: 'wrong host', modifiedArgs: false, alternative: null, stage: null }, { type: 'operator', id: 'op_1', name: 'rita' }), NOW);
    expect(vote).toMatchObject({ summary: 'Voted to reject', showActor: true, notes: [{ label: 'Reason', text: 'wrong host' }] });
    expect(describeEntry(leaf('escalated', { from: 1, to: 2, role: 'manager', cause: 'cooldown', operator: 'rita', dueAt: at(19, 0), notify: [] }), NOW).summary).toBe(
      'Escalated from level 1 to level 2 (manager), because rita is cooling down and nobody else who may approve it is free',
    );
    const cooled = describeEntry(leaf('escalated', { from: 1, to: 2, role: 'lead', reason: 'cooldown', operatorId: 'op_r', operator: 'rita', cooldownUntil: at(19, 30), setBy: 'op_l', eligible: ['rita'], dueAt: at(19, 0), notify: ['hook'] }), NOW);
    expect(cooled).toMatchObject({ summary: 'Escalated from level 1 to level 2 (lead), because rita is cooling down and nobody else who may approve it is free', rest: null });
    expect(cooled.notes.map((n) => n.label)).toEqual(['Cooling down until', 'Everyone who may approve it, all cooling', 'Told']);
    const stranded = describeEntry(leaf('cooldown_stranded', { level: 3, operatorId: 'op_c', operator: 'cfo', cooldownUntil: at(19, 30), eligible: ['carol', 'cfo'], notify: ['hook'] }), NOW);
    expect(stranded.summary).toMatch(/^Nobody free to approve it at level 3, the last it can reach: cfo is cooling down until .+; it stays pending$/);
    expect(stranded.rest).toBeNull();
    const manual = describeEntry(leaf('escalated', { from: 1, to: 2, role: 'manager', reason: 'manual', by: 'rita', text: 'prod host', dueAt: at(19, 0), notify: ['hook'] }, { type: 'operator', id: 'op_1', name: 'rita' }), NOW);
    expect(manual).toMatchObject({ summary: 'Escalated from level 1 to level 2 (manager) by a reviewer', showActor: true, notes: [{ label: 'Reason', text: 'prod host' }, { label: 'Told', text: 'hook' }], rest: null });
    expect(describeEntry(leaf('escalated', { from: 2, to: 3, role: 'director', reason: 'sla_timeout', dueAt: at(19, 0), notify: [], lateMs: 0 }), NOW)).toMatchObject({
      summary: 'Escalated from level 2 to level 3 (director): no decision in time',
      showActor: false,
    });
    const unknown = describeEntry(leaf('something_new', { reason: 'r', extra: 1 }), NOW);
    expect(unknown).toMatchObject({ summary: 'Something new', notes: [{ label: 'Reason', text: 'r' }], rest: { extra: 1 } });
  });
});

describe('where a card goes back to', () => {
  const id = 'req_01hzzzzzzzzzzzzzzzzzzzzzzz';
  it('remembers History and Supervised, keeps the origin across cards, and defaults to the queue', () => {
    expect(nextRoute(parseRoute('#/history'), `#/requests/${id}`)).toMatchObject({ name: 'request', from: 'history' });
    expect(nextRoute({ name: 'request', id, choose: null, from: 'supervised' }, `#/requests/${id}`)).toMatchObject({ from: 'supervised' });
    expect(nextRoute(parseRoute('#/queue'), `#/requests/${id}`)).toMatchObject({ from: undefined });
    expect(nextRoute(null, `#/requests/${id}`)).toMatchObject({ from: undefined });
    expect(nextRoute(parseRoute('#/metrics'), '#/account')).toEqual({ name: 'account' });
  });
});

/**
 * Issue 12's numbered findings, each as an attack on the server's review path, on both
 * databases (real SQLite files and real PostgreSQL). Each of these passed on main f2eb13c as the
 * attacker wanted; now the gate (core gate/, server engine/decisions.ts) refuses it. Finding 5
 * (limits racing on PostgreSQL) is gate-concurrency.test.ts, with two server processes;
 * finding 9 (receipts) is the claim contract's, built on another branch.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateRequestBody, canonicalJson, type ApprovalRequest } from '@countersign/core';
import type { Principal } from '../src/engine/principal.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { openTestEngine, type TestEngine } from './support/engine.ts';
import { totpCode } from '../src/guard/totp.ts';

const POLICY = `
agents:
  blocked-bot: { block: [drop_database] }
contentPatterns:
  important_path: "/important/"
rules:
  - name: no-wipes
    when: { action: [wipe_disk] }
    then: { block: true }
  - name: no-wire
    when: { action: [wire_transfer_blocked] }
    then: { block: true }
  - name: alerts-reviewed
    when: { action: [send_alert] }
    then: { review: true }
  - name: scratch-delete
    when: { action: [delete_data] }
    then: { review: true }
  - name: important-delete
    when: { action: [delete_data], contentPattern: [important_path] }
    then: { riskAtLeast: critical, approvals: 2, mfa: true }
  - name: two-reviewers
    when: { action: [rotate_keys] }
    then: { approvals: 2 }
  - name: lead-then-cfo
    when: { action: [pay_vendor] }
    then: { approvers: [{ role: lead }, { operator: cfo }] }
  - name: huge-payment
    when: { action: [pay], valueAtLeast: 250000 }
    then: { approvers: [{ role: manager }, { role: director }] }
  - name: blocked-names
    when: { action: [wire_transfer] }
    then: { block: true }
`;

const hash = (action: string, args: Record<string, unknown>) => createHash('sha256').update(canonicalJson({ action, args })).digest('hex');

describe.each(ENGINES)('issue 12 findings through the server ($name)', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;
  let n = 0;
  const create = (by: Principal, body: Record<string, unknown>) => t.engine.createRequest(by, CreateRequestBody.parse({ confidence: 0.9, ...body, idempotencyKey: `k${n++}` }));
  const op = (name: string, roles: Parameters<TestEngine['operator']>[1] = ['reviewer'], groups: string[] = []) => t.operator(`${name}-${n++}`, roles, groups);

  beforeAll(async () => {
    database = make();
    t = await openTestEngine(database.url, POLICY);
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('finding 1: a blocked alternative is accepted (201), marked with its rule, and can never be chosen', async () => {
    const { request } = await create(t.agent, {
      action: 'send_alert',
      args: { to: 'ops' },
      alternatives: [
        { name: 'wipe', action: 'wipe_disk', args: { disk: '/dev/sda' } },
        { name: 'page', action: 'page_oncall', args: { team: 'sre' } },
      ],
    });
    expect(request.status).toBe('pending');
    const read = await t.engine.getRequest(t.admin, request.id);
    expect(read.alternatives.find((a) => a.name === 'wipe')?.blocked).toEqual({ rules: ['no-wipes'] });
    expect(read.alternatives.find((a) => a.name === 'page')?.blocked).toBeUndefined();
    const rev = await op('ann');
    await expect(t.engine.review(rev, request.id, { verdict: 'approve', alternative: 'wipe' })).rejects.toMatchObject({ code: 'BLOCKED_BY_POLICY', details: { blockedBy: ['no-wipes'] } });
    expect((await t.engine.getRequest(t.admin, request.id)).status).toBe('pending');
    // An agent-level block (agents.<name>.block) is a block too.
    const bot = await t.agentNamed(`blocked-bot`);
    const second = await create(bot, { action: 'send_alert', args: {}, alternatives: [{ name: 'drop', action: 'drop_database', args: {} }] });
    expect((await t.engine.getRequest(t.admin, second.request.id)).alternatives[0]!.blocked).toBeDefined();
    await expect(t.engine.review(rev, second.request.id, { verdict: 'approve', alternative: 'drop' })).rejects.toMatchObject({ code: 'BLOCKED_BY_POLICY' });
    // The harmless alternative still works, with its own evaluation.
    const ok = await t.engine.review(rev, request.id, { verdict: 'approve', alternative: 'page' });
    expect(ok.status).toBe('approved');
    expect(ok.decision).toMatchObject({ action: 'page_oncall', alternative: 'page' });
  });

  it('finding 2: a modification is assessed as its own request: /tmp/scratch → /important/customers needs two approvals and TOTP', async () => {
    const { request } = await create(t.agent, { action: 'delete_data', args: { path: '/tmp/scratch' } });
    expect(request.assessment.riskLevel).not.toBe('critical');
    const rev = await op('bo');
    // Alone, without a code: refused for the step-up the modified payload needs.
    await expect(t.engine.review(rev, request.id, { verdict: 'approve', args: { path: '/important/customers' } })).rejects.toMatchObject({ code: 'MFA_REQUIRED' });
    const after = await t.engine.getRequest(t.admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.reviews).toEqual([]);
  });

  it('finding 2, the way through: the card shows the match code on any pending request, so a modification that makes it critical can complete its step-up', async () => {
    const { request } = await create(t.agent, { action: 'delete_data', args: { path: '/tmp/scratch' } });
    const rev = await op('bea');
    const { secret } = await t.engine.guard.enrolTotp(rev);
    await t.engine.guard.confirmTotp(rev, totpCode(secret, Date.now() - 30_000));
    const card = await t.engine.getRequest(rev, request.id);
    expect(card.assessment.riskLevel).not.toBe('critical');
    // Before: the code was shown only when the stored request was critical, and this approval could never pass.
    expect(card.matchCode).toMatch(/^\d{2}$/);
    const modified = { verdict: 'approve' as const, args: { path: '/important/customers' }, totp: totpCode(secret, Date.now()) };
    await expect(t.engine.review(rev, request.id, modified)).rejects.toMatchObject({ code: 'MATCH_CODE_INVALID' });
    const voted = await t.engine.review(rev, request.id, { ...modified, matchCode: card.matchCode });
    expect(voted.status).toBe('pending'); // the critical payload needs a second approval
    expect(voted.reviews).toHaveLength(1);
    // Only an operator reading the request sees it: never the agent.
    expect((await t.engine.getRequest(t.agent, request.id)).matchCode).toBeUndefined();
  });

  it('finding 3: a modification restarts the vote, and a plain approval must name the payload it saw', async () => {
    const { request } = await create(t.agent, { action: 'rotate_keys', args: { scope: 'staging' } });
    const a = await op('cy');
    const b = await op('di');
    const c = await op('ed');
    const original = hash('rotate_keys', { scope: 'staging' });
    expect((await t.engine.getRequest(b, request.id)).payload).toMatchObject({ payloadHash: original, args: { scope: 'staging' } });
    await t.engine.review(a, request.id, { verdict: 'approve', args: { scope: 'production' } });
    // B's card from before: its plain approval would approve A's args, which B never saw.
    await expect(t.engine.review(b, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'PAYLOAD_CHANGED' });
    await expect(t.engine.review(b, request.id, { verdict: 'approve', seenPayloadHash: original })).rejects.toMatchObject({ code: 'PAYLOAD_CHANGED' });
    // Read again: the card shows A's args as what will run.
    const seen = (await t.engine.getRequest(b, request.id)).payload!;
    expect(seen).toMatchObject({ args: { scope: 'production' }, payloadHash: hash('rotate_keys', { scope: 'production' }) });
    const mid = await t.engine.review(b, request.id, { verdict: 'approve', seenPayloadHash: seen.payloadHash });
    expect(mid.status).toBe('approved');
    expect(mid.decision).toMatchObject({ args: { scope: 'production' }, modified: true });
    expect(mid.decision!.deciders.map((d) => d.id).sort()).toEqual([a, b].map((p) => (p.kind === 'operator' ? p.operatorId : '')).sort());
    // And a later modification by C restarts it: A's approval of other args no longer counts.
    const { request: r2 } = await create(t.agent, { action: 'rotate_keys', args: { scope: 'qa' } });
    await t.engine.review(a, r2.id, { verdict: 'approve' });
    const restarted = await t.engine.review(c, r2.id, { verdict: 'approve', args: { scope: 'qa-2' } });
    expect(restarted.status).toBe('pending');
    const next = await t.engine.getRequest(a, r2.id);
    expect(next.actionable).toBe(true); // A may vote again, on the new args
  });

  it('finding 4: a reassignment never grants a stage that names an operator', async () => {
    const lead = await op('lead', ['lead']);
    const friend = await op('friend', ['reviewer']);
    const cfo = await t.operator('cfo', ['reviewer']);
    const { request } = await create(t.agent, { action: 'pay_vendor', args: { vendor: 'acme', amount: 10 } });
    await t.engine.reassign(lead, request.id, { operator: friend.kind === 'operator' ? friend.name : '', reason: 'please take it' });
    await t.engine.review(lead, request.id, { verdict: 'approve' });
    await expect(t.engine.review(friend, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'NOT_ELIGIBLE' });
    const view = await t.engine.getRequest(friend, request.id);
    expect(view.actionable).toBe(false);
    expect(view.notActionable).toMatchObject({ code: 'NOT_ELIGIBLE' });
    expect((await t.engine.review(cfo, request.id, { verdict: 'approve' })).status).toBe('approved');
  });

  it('finding 6: action names in any spelling meet the rule; history is one action in any spelling', async () => {
    for (const action of ['Wire_Transfer', 'WIRE_TRANSFER', 'wire-transfer', 'wireTransfer']) {
      const { request } = await create(t.agent, { action, args: { to: 'x' } });
      expect(request.status, action).toBe('rejected');
    }
    const agentId = t.agent.kind === 'agent' ? t.agent.agentId : '';
    expect((await t.engine.store.historyCounts(agentId, 'wire_transfer')).total).toBe(4);
  });

  it('finding 7: the value in args counts: 500,000 in args.amount needs a manager then a director', async () => {
    const { request } = await create(t.agent, { action: 'pay', args: { amount: '500000', to: 'x' } });
    expect(request.assessment.value?.amount).toBe(500_000);
    expect(request.assessment.approval?.stages.map((s) => s.role)).toEqual(['manager', 'director']);
  });

  it('finding 8: a requester approving their own critical request is refused SELF_REVIEW (before step-up), and audited so', async () => {
    const me = await op('self', ['admin']);
    const { request } = await create(me, { action: 'delete_data', args: { path: '/important/x' } });
    expect(request.assessment.riskLevel).toBe('critical');
    await expect(t.engine.review(me, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'SELF_REVIEW' });
    const audit = await t.engine.auditForRequest(t.admin, request.id);
    expect(audit.filter((e) => e.type === 'review_refused').map((e) => (e.data as { code: string }).code)).toEqual(['SELF_REVIEW']);
  });

  it('actionable is the dry run: a refused approval gets the same code the card names, and changes nothing', async () => {
    const { request } = await create(t.agent, { action: 'delete_data', args: { path: '/important/y' } });
    const rev = await op('fay');
    const view: ApprovalRequest = await t.engine.getRequest(rev, request.id);
    expect(view.payload).toMatchObject({ mfaRequired: true, matchCodeRequired: true });
    await expect(t.engine.review(rev, request.id, { verdict: 'approve', totp: '123456', matchCode: '00' })).rejects.toMatchObject({ code: 'MFA_REQUIRED' });
    const after = await t.engine.getRequest(t.admin, request.id);
    expect(after.escalation?.level).toBe(view.escalation?.level); // a refusal never escalates
    expect(after.reviews).toEqual([]);
  });
});

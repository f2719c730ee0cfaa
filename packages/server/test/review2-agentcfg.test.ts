/**
 * Second red-team review of branch `agentcfg` (issue 18: per-agent configuration and four-eyes on
 * admin power). Each test asserts the secure behaviour, so it FAILS on `agentcfg`; the comment on
 * each names the finding, its severity and the attack. Real SQLite and PostgreSQL, the real engine.
 */
import { AGGREGATE_ACTION, CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const LOW = CreateRequestBody.parse({ action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 });
const HIGH = CreateRequestBody.parse({ action: 'wire_transfer', args: { to: 'acct-1', amount: 500 }, confidence: 0.9, riskLevel: 'high' });
const opId = (p: Principal) => (p.kind === 'operator' ? p.operatorId : '');

describe.each(ENGINES)('second red-team review of agentcfg ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  afterEach(async () => {
    await engine.close();
    await database.drop();
  });

  async function setup(policy = DEFAULT_POLICY_YAML) {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
    await engine.activatePolicy(policy, 'test');
    const boot = (await engine.bootstrap())!;
    const root = (await engine.authenticate(boot.adminToken))!;
    const as = async (token: string) => (await engine.authenticate(token))!;
    const admin = async (by: Principal, who: string) => as((await engine.createOperator(by, { name: who, roles: ['admin'] })).token);
    const bot = await as((await engine.createAgentKey(root, 'billing-bot')).key);
    const vote = (p: Principal, id: string) => engine.review(p, id, { verdict: 'approve' }).then((r) => r.status as string, (e: { code?: string }) => e.code ?? 'thrown');
    return { root, as, admin, bot, vote };
  }

  // FINDING 1 (critical): lineage is checked in one direction only. `adminChangeSigners` drops the
  // admins the *proposer* stands behind, never an admin who stands behind the proposer. So a rogue
  // admin (mallory, who created nobody) rotates an honest admin's token (carol's; she now holds
  // the only working token of carol), files the loosening *as carol*, and approves it as herself:
  // mallory is "another admin" for carol's change. One person, three API calls, four-eyes gone:
  // the agent the security team switched off is on again.
  it('F1: an admin who rotated another admin\'s token cannot sign a change filed under that admin\'s identity', async () => {
    const { root, as, admin, bot, vote } = await setup();
    const mallory = await admin(root, 'mallory');
    const carol = await admin(root, 'carol');
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false }); // the kill switch (a tightening, applied at once)
    await expect(engine.createRequest(bot, LOW)).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
    const stolen = await as((await engine.credentials.rotateToken(mallory, opId(carol))).token);
    const proposed = await engine.agentConfigs.put(stolen, 'billing-bot', { enabled: true });
    expect(proposed).toMatchObject({ status: 'pending_approval' });
    const id = (proposed as { requestId: string }).requestId;
    // Secure behaviour: mallory holds the proposer's token, so she must not count as its second admin.
    expect(await vote(mallory, id)).toBe('SELF_REVIEW'); // on the branch: 'executed'
    expect((proposed as { approvers: readonly { name: string }[] }).approvers.map((a) => a.name)).not.toContain('mallory');
    await expect(engine.createRequest(bot, LOW)).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
  });

  // FINDING 1b (critical, the same root cause): an admin who creates a second admin holds that
  // admin's first token; filing the loosening as the new admin and signing it as the creator is
  // accepted (the branch's own attack test even expects the creator to sign). The README's advice
  // ("do day-to-day admin work from the admins it created") is exactly this position. Not the
  // documented "two minted admins" limit: one minted admin is enough.
  it('F1b: an admin cannot sign a change filed by an admin they created (they hold its first token)', async () => {
    const { root, admin, bot, vote } = await setup();
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    const sock = await admin(root, 'sock'); // root's own second identity
    const proposed = await engine.agentConfigs.put(sock, 'billing-bot', { enabled: true });
    const id = (proposed as { requestId: string }).requestId;
    expect(await vote(root, id)).toBe('SELF_REVIEW');
    await expect(engine.createRequest(bot, LOW)).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
  });

  // FINDING 2 (medium): `enabled: false` stops new requests and the clock (onFinalTimeout), but a
  // reviewer can still approve the agent's pending requests, and the agent can then claim and run
  // them. A *paused* agent's approvals are refused (AGENT_PAUSED); a *disabled* one, the stronger
  // switch, is not gated at all on the vote path (Decisions.vote never asks agentEnabled).
  it('F2: an approval of a pending request of an agent that has since been disabled is refused', async () => {
    const { root, admin, bot, vote } = await setup();
    const pending = await engine.createRequest(bot, HIGH);
    expect(pending.request.status).toBe('pending');
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    const approver = await admin(root, 'dave');
    const lead = await engine.authenticate((await engine.createOperator(root, { name: 'lead-1', roles: ['lead', 'manager', 'director'] })).token);
    const outcomes = [await vote(lead!, pending.request.id), await vote(approver, pending.request.id)];
    expect(outcomes).not.toContain('approved');
    expect((await engine.getRequest(root, pending.request.id)).status).toBe('pending');
  });

  // FINDING 3 (medium): an aggregate review (onSlicing: aggregate) is assessed and escalated under
  // the policy file alone (Engine.insertAggregate: assessAggregate / startEscalation with
  // `this.policy.policy`), never the agent's overlay. The same `block` written in the file blocks
  // the aggregate and rejects every member; written through the API (a tightening one admin
  // applies at once, after the slicing started) it is ignored: the sliced wire transfers go before
  // a reviewer as one approvable review. Likewise overlay levels (mfa, sla) and escalation.
  it('F3: an aggregate review of an agent is judged by its overlay too (an overlay block blocks the aggregate, as the file\'s does)', async () => {
    const POLICY = DEFAULT_POLICY_YAML.replace('agents: {}', 'agents:\n  slicer-bot: { onSlicing: aggregate }').replace('  slicing: { hold: 1h, collect: 1m }', '  slicing: { hold: 30m, collect: 2m }');
    database = make();
    let clock = Date.UTC(2026, 0, 20, 9, 0, 0);
    engine = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET, now: () => clock });
    await engine.activatePolicy(POLICY, 'test');
    const root = (await engine.authenticate((await engine.bootstrap())!.adminToken))!;
    const bot = (await engine.authenticate((await engine.createAgentKey(root, 'slicer-bot')).key))!;
    const started = async () => (await engine.listAudit(root, { type: 'aggregation_started', limit: 100 })).length;
    for (let i = 0; i < 10 && (await started()) === 0; i++) {
      clock += 90_000;
      await engine.createRequest(bot, CreateRequestBody.parse({ action: 'wire_transfer', args: { to: `acct-${i}`, amount: 9_900 }, confidence: 0.9, riskLevel: 'high', context: { value: 9_900 } }));
    }
    expect(await started()).toBe(1);
    // The security team blocks wire transfers for this agent through the API (a tightening: applied at once).
    expect(await engine.agentConfigs.put(root, 'slicer-bot', { block: ['wire_transfer'] })).toMatchObject({ status: 'applied' });
    clock += 2 * 60_000 + 1;
    const scheduler = new Scheduler(engine, { intervalMs: 60_000 });
    await scheduler.tick();
    await scheduler.stop();
    const aggregate = (await engine.listRequests(root, { limit: 100 })).items.find((r) => r.action === AGGREGATE_ACTION);
    expect(aggregate).toBeDefined();
    expect(aggregate!.assessment.route).toBe('block'); // on the branch: 'review' (approvable as one)
  });
});


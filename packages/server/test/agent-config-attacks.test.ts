/**
 * Attacks on the fixes for the agentcfg review (F1–F5) and the second review (F1–F3), kept as
 * tests. Real SQLite and PostgreSQL, the real engine. Four-eyes: the proposer rotating the only
 * eligible admin's token, a chain of minted admins (whose creator does not sign either), an admin
 * made after the proposal, two admins approving at once on two engines (PostgreSQL). Merge: an approved loosening against a policy file that tightens
 * between proposal and approval, and after.
 */
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const withAgent = (agent: string) => DEFAULT_POLICY_YAML.replace('agents: {}', `agents:\n  ${agent}\n`);
const LOW = CreateRequestBody.parse({ action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 });

async function open(url: string, policy = DEFAULT_POLICY_YAML) {
  const engine = await Engine.open({ connection: await connect(url), serverSecret: TEST_SERVER_SECRET });
  await engine.activatePolicy(policy, 'test');
  return engine;
}

describe.each(ENGINES)('attacks on the agentcfg fixes ($name)', ({ name, make }) => {
  let database: TestDatabase;
  const engines: Engine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
    await database.drop();
  });

  async function setup(policy = DEFAULT_POLICY_YAML) {
    database = make();
    const engine = await open(database.url, policy);
    engines.push(engine);
    const boot = (await engine.bootstrap())!;
    const root = (await engine.authenticate(boot.adminToken))!;
    const as = async (token: string) => (await engine.authenticate(token))!;
    const admin = async (by: Principal, who: string) => as((await engine.createOperator(by, { name: who, roles: ['admin'] })).token);
    const bot = await as((await engine.createAgentKey(root, 'billing-bot')).key);
    // An admin who then rotates their own token: nobody else holds its credential (how four-eyes is set up).
    const independent = async (by: Principal, who: string) => as((await engine.credentials.rotateToken(await admin(by, who), 'me')).token);
    const vote = (p: Principal, id: string) => engine.review(p, id, { verdict: 'approve' }).then((r) => r.status as string, (e: { code?: string }) => e.code ?? 'thrown');
    return { engine, root, as, admin, independent, bot, vote };
  }

  it('the proposer rotates the eligible admin\'s token after proposing: that admin no longer signs (the proposer holds its token)', async () => {
    const { engine, root, as, independent, bot, vote } = await setup();
    const bob = await independent(root, 'bob');
    const carol = await independent(root, 'carol');
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    const proposed = await engine.agentConfigs.put(bob, 'billing-bot', { enabled: true });
    expect(proposed).toMatchObject({ status: 'pending_approval', approvers: [{ name: 'carol' }] });
    const id = (proposed as { requestId: string }).requestId;
    const stolen = await engine.credentials.rotateToken(bob, carol.kind === 'operator' ? carol.operatorId : '');
    const carolNow = await as(stolen.token);
    expect(await vote(carolNow, id)).toBe('SELF_REVIEW');
    expect((await engine.getRequest(carolNow, id)).actionable).toBe(false);
    await expect(engine.createRequest(bot, LOW)).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
  });

  it('review2 F1 with one more step: an admin who rotated another admin\'s token, then did that admin\'s "own" rotation, still cannot sign as its second admin', async () => {
    const { engine, root, as, independent, bot, vote } = await setup();
    const mallory = await independent(root, 'mallory');
    const carol = await independent(root, 'carol');
    await independent(root, 'ivy');
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    const stolen = await as((await engine.credentials.rotateToken(mallory, carol.kind === 'operator' ? carol.operatorId : '')).token);
    const laundered = await as((await engine.credentials.rotateToken(stolen, 'me')).token);
    const proposed = await engine.agentConfigs.put(laundered, 'billing-bot', { enabled: true });
    expect((proposed as { approvers: readonly { name: string }[] }).approvers.map((a) => a.name)).toEqual(['ivy']);
    expect(await vote(mallory, (proposed as { requestId: string }).requestId)).toBe('SELF_REVIEW');
    await expect(engine.createRequest(bot, LOW)).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
  });

  it('an operator the proposer created as a non-admin, made admin by someone else, then rotated "its own" token (by the proposer): still the proposer\'s', async () => {
    const { engine, root, as, independent, vote } = await setup();
    const mallory = await independent(root, 'mallory');
    const bob = await independent(root, 'bob');
    const made = await engine.createOperator(mallory, { name: 'x', roles: ['reviewer'] });
    await engine.credentials.updateOperator(bob, made.id, { roles: ['admin'] });
    const x = await as((await engine.credentials.rotateToken(await as(made.token), 'me')).token);
    const proposed = await engine.agentConfigs.put(x, 'billing-bot', { limits: { perMinute: 100000 } });
    expect((proposed as { approvers: readonly { name: string }[] }).approvers.map((a) => a.name)).toEqual([]);
    expect(await vote(mallory, (proposed as { requestId: string }).requestId)).toBe('SELF_REVIEW');
  });

  it('a chain of minted admins (root → bob → carl → dan) never signs bob\'s change, either way, even after rotating their own tokens; an admin made after the proposal does not either', async () => {
    const { engine, root, as, admin, independent, bot, vote } = await setup();
    const bob = await independent(root, 'bob');
    const ivy = await independent(root, 'ivy');
    const carl = await admin(bob, 'carl');
    const dan = await admin(carl, 'dan');
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    const proposed = await engine.agentConfigs.put(bob, 'billing-bot', { enabled: true });
    // Not root: root made bob an admin (review2 F1b: root held bob's first token, and may have rotated "bob's own" too).
    expect((proposed as { approvers: readonly { name: string }[] }).approvers.map((a) => a.name)).toEqual(['ivy']);
    const id = (proposed as { requestId: string }).requestId;
    expect(await vote(root, id)).toBe('SELF_REVIEW');
    expect(await vote(carl, id)).toBe('SELF_REVIEW');
    expect(await vote(dan, id)).toBe('SELF_REVIEW');
    // Rotating their own token ends bob's hold on carl's credential, not that bob made carl an admin.
    const carlOwn = await as((await engine.credentials.rotateToken(carl, 'me')).token);
    expect(await vote(carlOwn, id)).toBe('SELF_REVIEW');
    const erin = await independent(root, 'erin'); // made after the proposal, by someone else
    expect(await vote(erin, id)).toBe('SELF_REVIEW');
    await expect(engine.createRequest(bot, LOW)).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
    // The one admin who was eligible when it was proposed, and still is, signs it.
    expect(await vote(ivy, id)).toBe('executed');
    expect((await engine.createRequest(bot, LOW)).request.status).toBe('approved');
  });

  it('granting admin to an operator the proposer did not create also counts: that operator never signs their change', async () => {
    const { engine, root, as, independent, vote } = await setup();
    const bob = await independent(root, 'bob');
    await independent(root, 'ivy');
    const made = await engine.createOperator(root, { name: 'rae', roles: ['reviewer'] });
    await engine.credentials.updateOperator(bob, made.id, { roles: ['admin'] });
    // rae rotates her own token once an admin: root's hold ends, bob's grant does not.
    const rae = await as((await engine.credentials.rotateToken(await as(made.token), 'me')).token);
    const proposed = await engine.agentConfigs.put(bob, 'billing-bot', { limits: { perMinute: 100000 } });
    expect((proposed as { approvers: readonly { name: string }[] }).approvers.map((a) => a.name)).toEqual(['ivy']);
    expect(await vote(rae, (proposed as { requestId: string }).requestId)).toBe('SELF_REVIEW');
  });

  it('a disabled agent\'s pending request: the dry run says AGENT_DISABLED, as the vote does; a rejection still decides it', async () => {
    const { engine, root, admin, bot, vote } = await setup();
    const made = await engine.createRequest(bot, CreateRequestBody.parse({ action: 'wire_transfer', args: { to: 'acct-1', amount: 500 }, confidence: 0.9, riskLevel: 'high' }));
    const dave = await admin(root, 'dave');
    expect((await engine.getRequest(dave, made.request.id)).actionable).toBe(true);
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    expect(await engine.getRequest(dave, made.request.id)).toMatchObject({ actionable: false, notActionable: { code: 'AGENT_DISABLED' } });
    expect(await vote(dave, made.request.id)).toBe('AGENT_DISABLED');
    expect((await engine.review(dave, made.request.id, { verdict: 'reject', reason: 'switched off' })).status).toBe('rejected');
  });

  it('a disabled agent cannot claim an approval it got before: AGENT_DISABLED (audited), the request stays approved', async () => {
    const { engine, root, admin, bot } = await setup();
    const dave = await admin(root, 'dave');
    const made = await engine.createRequest(bot, CreateRequestBody.parse({ action: 'wire_transfer', args: { to: 'acct-1', amount: 500 }, confidence: 0.9, riskLevel: 'high' }));
    const lead = (await engine.authenticate((await engine.createOperator(root, { name: 'lead-1', roles: ['lead', 'manager', 'director'] })).token))!;
    for (const p of [lead, dave]) if ((await engine.getRequest(root, made.request.id)).status === 'pending') await engine.review(p, made.request.id, { verdict: 'approve' });
    const approved = await engine.getRequest(bot, made.request.id);
    expect(approved.status).toBe('approved');
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    await expect(engine.reportExecution(bot, made.request.id, { status: 'started', receipt: approved.decision!.receipt! })).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
    expect((await engine.getRequest(root, made.request.id)).status).toBe('approved');
    expect((await engine.listAudit(root, { type: 'claim_refused', limit: 10 })).map((e) => (e.data as { code?: string }).code)).toEqual(['AGENT_DISABLED']);
  });

  it('an approved loosening is judged against the file when proposed: a file that tightens before approval, or after, wins', async () => {
    const { engine, root, independent, bot, vote } = await setup(withAgent('billing-bot: { limits: { perMinute: 3 } }'));
    const bob = await independent(root, 'bob');
    const carol = await independent(root, 'carol');
    const proposed = await engine.agentConfigs.put(bob, 'billing-bot', { limits: { perMinute: 5 } });
    expect(proposed).toMatchObject({ status: 'pending_approval', loosens: [{ key: 'limits.perMinute' }] });
    // The file tightens to 2 while the change waits; then it is approved.
    await engine.activatePolicy(withAgent('billing-bot: { limits: { perMinute: 2 } }'), 'tighten');
    expect(await vote(carol, (proposed as { requestId: string }).requestId)).toBe('executed');
    const view = await engine.agentConfigs.view(root, 'billing-bot');
    expect(view.baselines).toEqual({ 'limits.perMinute': 3 });
    expect(view.effective.find((s) => s.key === 'limits.perMinute')).toMatchObject({ value: 2, overlay: { value: 5, applies: false } });
    const made = [];
    for (let i = 0; i < 4; i++) made.push(await engine.createRequest(bot, { ...LOW, args: { to: `soc-${i}` } }).then(() => 'ok', (e: { code?: string }) => e.code));
    expect(made).toEqual(['ok', 'ok', 'RATE_LIMITED', 'RATE_LIMITED']);
    // Back to the baseline: the approved loosening applies again; a file stricter than it wins again.
    await engine.activatePolicy(withAgent('billing-bot: { limits: { perMinute: 3 } }'), 'back');
    expect((await engine.agentConfigs.view(root, 'billing-bot')).effective.find((s) => s.key === 'limits.perMinute')).toMatchObject({ value: 5, source: 'overlay' });
    // Re-sending the same overlay against the tightened file is a loosening again: it needs another admin.
    await engine.activatePolicy(withAgent('billing-bot: { limits: { perMinute: 1 } }'), 'tighter');
    expect(await engine.agentConfigs.put(root, 'billing-bot', { limits: { perMinute: 5 } })).toMatchObject({ status: 'pending_approval' });
  });

  it.runIf(name === 'postgres')('two admins approve one change at once on two engines: it is applied exactly once', async () => {
    const { engine, root, admin, independent } = await setup();
    const bob = await independent(root, 'bob');
    const carol = await independent(root, 'carol');
    const dave = await admin(root, 'dave');
    const second = await open(database.url);
    engines.push(second);
    await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
    // dave's own rotation, through the second engine: his new token is his alone (two eligible signers, carol and dave).
    const dave2 = (await second.authenticate((await second.credentials.rotateToken(dave, 'me')).token))!;
    const proposed = await engine.agentConfigs.put(bob, 'billing-bot', { enabled: true });
    expect((proposed as { approvers: readonly { name: string }[] }).approvers.map((a) => a.name).sort()).toEqual(['carol', 'dave']);
    const id = (proposed as { requestId: string }).requestId;
    const outcomes = await Promise.all([
      engine.review(carol, id, { verdict: 'approve' }).then((r) => r.status as string, (e: { code?: string }) => e.code ?? 'thrown'),
      second.review(dave2, id, { verdict: 'approve' }).then((r) => r.status as string, (e: { code?: string }) => e.code ?? 'thrown'),
    ]);
    expect(outcomes.filter((o) => o === 'executed')).toHaveLength(1);
    expect(outcomes.filter((o) => o !== 'executed')).toEqual(['ALREADY_DECIDED']);
    const view = await engine.agentConfigs.view(root, 'billing-bot');
    expect(view.version).toBe(2);
    expect(view.versions.filter((v) => v.requestId === id)).toHaveLength(1);
  });
});

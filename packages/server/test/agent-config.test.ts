/**
 * Per-agent configuration through the API and four-eyes on loosening it (issue 18), over HTTP on
 * both databases. Attackers: a single rogue admin (cannot enable an agent or lift its limits
 * alone, cannot approve their own change, cannot apply it twice), an agent (cannot read or write
 * configs, cannot file or smuggle a countersign.* action), a database writer (an edited overlay
 * row refuses the agent; edited args of a pending change are not applied).
 */
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const POLICY = DEFAULT_POLICY_YAML.replace('agents: {}', 'agents:\n  billing-bot: { requireApproval: [send_external_email], limits: { perMinute: 60 } }');
const LOW = { action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 } as const;
const HIGH = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82, riskLevel: 'high' } as const;
const raw = (engine: Engine) => (engine.store as unknown as { db: Kysely<any> }).db;

describe.each(ENGINES)('agent config over HTTP: $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let alice = ''; // admin (bootstrap)
  let bob = ''; // a second admin (made by alice, then rotated their own token)
  let carol = ''; // a third, likewise: independent of bob, so each signs the other's changes
  let dora = ''; // a director: senior, but not an admin
  let billingKey = '';
  let otherKey = '';

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const create = (key: string, body: unknown) => call(key, 'POST', '/v1/requests', body);
  const put = (token: string, agent: string, config: unknown) => call(token, 'PUT', `/v1/agents/${agent}/config`, config);
  const get = (token: string, agent: string) => call(token, 'GET', `/v1/agents/${agent}/config`);
  const audit = async (type: string) => (await engine.listAudit((await engine.authenticate(alice))!, { type, limit: 1000 })).map((e) => e.data as any);

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
    await engine.activatePolicy(POLICY, 'test');
    const boot = (await engine.bootstrap())!;
    alice = boot.adminToken;
    otherKey = boot.agentKey;
    app = createApp({ engine, log: () => {} });
    // Four-eyes as the README sets it up: alice makes two admins, each rotates their own token (a
    // token alice never held), so bob and carol sign each other's changes; alice signs neither's.
    bob = (await call(alice, 'POST', '/v1/operators', { name: 'bob', roles: ['admin'] })).json.token;
    carol = (await call(alice, 'POST', '/v1/operators', { name: 'carol', roles: ['admin'] })).json.token;
    bob = (await call(bob, 'POST', '/v1/operators/me/token')).json.token;
    carol = (await call(carol, 'POST', '/v1/operators/me/token')).json.token;
    dora = (await call(alice, 'POST', '/v1/operators', { name: 'dora', roles: ['director'] })).json.token;
    billingKey = (await call(alice, 'POST', '/v1/keys', { agent: 'billing-bot' })).json.key;
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('GET shows every effective setting and where it came from', async () => {
    const r = await get(alice, 'billing-bot');
    expect(r.status).toBe(200);
    const rows = new Map((r.json.effective as any[]).map((s) => [s.key, s]));
    expect(rows.get('requireApproval')).toMatchObject({ value: ['send_external_email'], source: 'agent', from: 'agents.billing-bot.requireApproval' });
    expect(rows.get('limits.perMinute')).toMatchObject({ value: 60, source: 'agent' });
    expect(rows.get('levels.medium.autoApprove')).toMatchObject({ value: true, source: 'policy', from: 'levels.medium.autoApprove' });
    expect(rows.get('enabled')).toMatchObject({ value: true, source: 'default' });
    expect(r.json).toMatchObject({ version: 0, integrity: 'ok', overlay: {}, singleAdmin: false });
    // By id as well as by name.
    expect((await get(alice, r.json.agent.id)).json.agent.name).toBe('billing-bot');
    expect((await get(alice, 'no-such-bot')).status).toBe(404);
  });

  it('a bad config is refused as the policy file would be, naming every wrong key, and changes nothing', async () => {
    const r = await put(alice, 'billing-bot', { enabeld: false, levels: { critical: { autoApprove: true } }, limits: { perMinute: -1 } });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('POLICY_INVALID');
    const paths = r.json.error.details.errors.map((e: any) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['agents.billing-bot.enabeld', 'agents.billing-bot.levels.critical.autoApprove', 'agents.billing-bot.limits.perMinute']));
    expect((await get(alice, 'billing-bot')).json.version).toBe(0);
  });

  it('agents can neither read nor write configs, nor file a countersign.* action or alternative', async () => {
    expect((await get(billingKey, 'billing-bot')).json.error.code).toBe('FORBIDDEN');
    expect((await put(billingKey, 'billing-bot', { enabled: true })).json.error.code).toBe('FORBIDDEN');
    expect((await put(dora, 'billing-bot', { enabled: false })).json.error.code).toBe('FORBIDDEN');
    const own = await create(billingKey, { action: 'countersign.agent_config', args: { agent: 'billing-bot', config: {} } });
    expect(own.status).toBe(400);
    expect(own.json.error.message).toContain('reserved');
    const smuggled = await create(billingKey, { ...LOW, alternatives: [{ name: 'enable me', action: 'Countersign.Agent_Config', args: { agent: 'billing-bot', config: { enabled: true } } }] });
    expect(smuggled.status).toBe(400);
    expect(JSON.stringify(smuggled.json.error)).toContain('reserved');
  });

  it('tightening applies at once: enabled: false refuses every request from that agent with AGENT_DISABLED', async () => {
    expect((await create(billingKey, LOW)).status).toBe(201);
    const r = await put(alice, 'billing-bot', { enabled: false });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: 'applied', version: 1, loosens: [] });
    const refused = await create(billingKey, LOW);
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'AGENT_DISABLED', details: { agent: 'billing-bot', source: 'overlay' } });
    expect((await create(otherKey, LOW)).status).toBe(201);
    const changed = await audit('agent_config_changed');
    expect(changed.at(-1)).toMatchObject({ agent: 'billing-bot', version: 1, previousVersion: 0, config: { enabled: false } });
    expect((await audit('create_refused')).some((d) => d.code === 'AGENT_DISABLED')).toBe(true);
    const view = await get(alice, 'billing-bot');
    expect(view.json.effective.find((s: any) => s.key === 'enabled')).toMatchObject({ value: false, source: 'overlay' });
    expect(view.json.versions[0]).toMatchObject({ version: 1, setBy: 'admin', requestId: null });
  });

  it('one admin cannot enable it alone: the change waits for another admin, who approves exactly it, once', async () => {
    // bob proposes: carol may sign (alice made both, but holds neither's token now); alice may not (she made bob an admin).
    const proposed = await put(bob, 'billing-bot', { enabled: true });
    expect(proposed.status).toBe(202);
    expect(proposed.json.status).toBe('pending_approval');
    expect(proposed.json.loosens.map((l: any) => l.key)).toContain('enabled');
    expect(proposed.json.approvers.map((a: any) => a.name)).toEqual(['carol']);
    const id = proposed.json.requestId as string;
    // Nothing changed yet.
    expect((await create(billingKey, LOW)).json.error.code).toBe('AGENT_DISABLED');
    const request = await call(carol, 'GET', `/v1/requests/${id}`);
    expect(request.json).toMatchObject({ action: 'countersign.agent_config', status: 'pending', args: { agent: 'billing-bot', config: { enabled: true }, baseVersion: 1 } });
    expect(request.json.actionable).toBe(true);
    expect((await call(alice, 'GET', `/v1/requests/${id}`)).json).toMatchObject({ actionable: false, notActionable: { code: 'SELF_REVIEW' } });
    expect((await call(alice, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('SELF_REVIEW');
    expect((await call(bob, 'GET', `/v1/requests/${id}`)).json.actionable).toBe(false);

    expect((await call(bob, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('SELF_REVIEW');
    expect((await call(dora, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('NOT_ELIGIBLE');
    expect((await call(billingKey, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('FORBIDDEN');
    const modified = await call(carol, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve', args: { agent: 'billing-bot', agentId: request.json.args.agentId, config: { enabled: true, limits: { perMinute: 100000 } }, baseVersion: 1, loosens: [] } });
    expect(modified.json.error.code).toBe('VALIDATION_FAILED');

    const approved = await call(carol, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' });
    expect(approved.status).toBe(200);
    expect(approved.json.status).toBe('executed');
    expect((await create(billingKey, LOW)).status).toBe(201);
    const view = await get(alice, 'billing-bot');
    expect(view.json).toMatchObject({ version: 2, overlay: { enabled: true } });
    expect(view.json.versions[0]).toMatchObject({ version: 2, requestId: id });
    expect((await audit('agent_config_changed')).at(-1)).toMatchObject({ version: 2, requestId: id, approvedBy: ['carol'] });
    // Once: a second approval is refused and applies nothing.
    expect((await call(bob, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('ALREADY_DECIDED');
    expect((await get(alice, 'billing-bot')).json.version).toBe(2);
  });

  it('lifting a limit also needs another admin; an empty list cannot drop the file\'s required approval; a rejection applies nothing', async () => {
    const lifted = await put(bob, 'billing-bot', { enabled: true, limits: { perMinute: 100000 }, requireApproval: [] });
    expect(lifted.status).toBe(202);
    // requireApproval is the union of file and overlay: [] drops nothing, so it is no loosening.
    expect(lifted.json.loosens.map((l: any) => l.key).sort()).toEqual(['limits.perMinute']);
    expect((await call(alice, 'POST', `/v1/requests/${lifted.json.requestId}/reviews`, { verdict: 'reject', reason: 'no' })).json.status).toBe('rejected');
    expect((await get(alice, 'billing-bot')).json.version).toBe(2);
  });

  it('the admin who made the other admins cannot have them sign their change (review F4, minted before proposing): nobody is eligible, so it waits', async () => {
    const proposed = await put(alice, 'billing-bot', { enabled: true, limits: { perMinute: 100000 } });
    expect(proposed.status).toBe(202);
    expect(proposed.json.approvers).toEqual([]);
    const id = proposed.json.requestId as string;
    expect((await call(bob, 'GET', `/v1/requests/${id}`)).json).toMatchObject({ actionable: false, notActionable: { code: 'SELF_REVIEW' } });
    expect((await call(bob, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('SELF_REVIEW');
    // bob may still reject it; a rejection applies nothing.
    expect((await call(bob, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'reject', reason: 'not mine to sign' })).json.status).toBe('rejected');
    expect((await get(alice, 'billing-bot')).json.version).toBe(2);
  });

  it('an approved change whose base moved meanwhile is not applied (execution_failed), so it cannot undo a later tightening', async () => {
    const loosen = await put(bob, 'billing-bot', { enabled: true, levels: { medium: { autoApprove: true } }, whilePaused: 'hold' });
    expect(loosen.status).toBe(202);
    const tighten = await put(alice, 'billing-bot', { enabled: false });
    expect(tighten.json).toMatchObject({ status: 'applied', version: 3 });
    const approved = await call(carol, 'POST', `/v1/requests/${loosen.json.requestId}/reviews`, { verdict: 'approve' });
    expect(approved.json.status).toBe('execution_failed');
    expect((await get(alice, 'billing-bot')).json).toMatchObject({ version: 3, overlay: { enabled: false } });
    expect((await audit('agent_config_refused')).at(-1)).toMatchObject({ baseVersion: 2, currentVersion: 3 });
  });

  it('a database writer who edits a pending change\'s args gets it refused at approval; one who edits the overlay row disables the agent', async () => {
    const proposed = await put(bob, 'billing-bot', { enabled: true });
    const id = proposed.json.requestId as string;
    const row = await raw(engine).selectFrom('requests').select('args').where('id', '=', id).executeTakeFirstOrThrow();
    const args = JSON.parse(row.args);
    args.config = { enabled: true, requireApproval: [], limits: { perMinute: 100000 } };
    await raw(engine).updateTable('requests').set({ args: JSON.stringify(args) }).where('id', '=', id).execute();
    const approved = await call(carol, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' });
    expect(approved.json.status).toBe('execution_failed');
    expect((await get(alice, 'billing-bot')).json).toMatchObject({ version: 3, overlay: { enabled: false } });

    // The overlay row itself: enabled removed, hash recomputed — the MAC still fails.
    const { createHash } = await import('node:crypto');
    const text = '{}';
    await raw(engine).updateTable('agent_configs').set({ config: text, hash: createHash('sha256').update(text).digest('hex') }).execute();
    const refused = await create(billingKey, LOW);
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'AGENT_DISABLED', details: { source: 'integrity' } });
    expect((await get(alice, 'billing-bot')).json.integrity).toBe('failed');
    // Replacing an untrusted row is judged as enabling, so it too needs another admin.
    const replace = await put(bob, 'billing-bot', { requireApproval: ['send_external_email'] });
    expect(replace.status).toBe(202);
    expect((await call(carol, 'POST', `/v1/requests/${replace.json.requestId}/reviews`, { verdict: 'approve' })).json.status).toBe('executed');
    expect((await create(billingKey, LOW)).status).toBe(201);
  });

  it('per-agent approver velocity: this agent\'s high-risk requests take one approval per approver an hour, others the global ten', async () => {
    expect((await put(alice, 'billing-bot', { requireApproval: ['send_external_email'], velocity: { perHour: 1 } })).json.status).toBe('applied');
    const rae = (await call(alice, 'POST', '/v1/operators', { name: 'rae', roles: ['reviewer'] })).json.token;
    const mine = [await create(billingKey, { ...HIGH, args: { host: 'a' } }), await create(billingKey, { ...HIGH, args: { host: 'b' } })];
    const theirs = [await create(otherKey, { ...HIGH, args: { host: 'c' } }), await create(otherKey, { ...HIGH, args: { host: 'd' } })];
    expect((await call(rae, 'POST', `/v1/requests/${theirs[0]!.json.id}/reviews`, { verdict: 'approve' })).status).toBe(200);
    expect((await call(rae, 'POST', `/v1/requests/${mine[0]!.json.id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('VELOCITY_LIMITED');
    expect((await call(rae, 'POST', `/v1/requests/${theirs[1]!.json.id}/reviews`, { verdict: 'approve' })).status).toBe(200);
  });

  it('per-agent levels: auto-approval off for this agent only; its created entry names the overlay version', async () => {
    const r = await put(alice, 'billing-bot', { requireApproval: ['send_external_email'], velocity: { perHour: 1 }, levels: { low: { autoApprove: false }, medium: { autoApprove: false } } });
    expect(r.json.status).toBe('applied');
    const mine = await create(billingKey, LOW);
    const theirs = await create(otherKey, LOW);
    expect(theirs.json.status).toBe('approved');
    expect(mine.json.status).toBe('pending');
    const created = (await audit('created')).filter((d) => d.agentId === mine.json.agentId && d.route === 'review').at(-1);
    expect(created?.agentConfigVersion).toBe(r.json.version);
  });

  it('with admin.singleAdmin: true one admin\'s loosening applies at once', async () => {
    await engine.activatePolicy(`${POLICY}\n`.replace('  singleAdmin: false', '  singleAdmin: true'), 'test-single');
    expect(engine.policy.policy.admin.singleAdmin).toBe(true);
    const r = await put(alice, 'billing-bot', {});
    expect(r.status).toBe(200);
    expect(r.json.status).toBe('applied');
    expect(r.json.loosens.length).toBeGreaterThan(0);
    await engine.activatePolicy(POLICY, 'test');
  });

  it('CreateRequestBody refuses reserved actions for everyone (operators filing as agents too)', async () => {
    const r = await create(alice, CreateRequestBody.parse(LOW));
    expect(r.status).toBe(201);
    expect((await create(alice, { action: 'countersign.agent_config', args: {} })).status).toBe(400);
  });
});

/**
 * A paused agent's requests, per policy (`guard.whilePaused` and `agents.<name>.whilePaused`):
 * refused with AGENT_PAUSED, or held — kept for human review whatever the policy would have
 * automated, rejectable at once and approvable only once the pause ends. Approvals of any of a
 * paused agent's pending requests wait for the pause; a clock (`onFinalTimeout: approve`) never
 * approves one. Both databases, with a controlled clock.
 */
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, sqliteDatabase, type TestDatabase } from './support/databases.ts';

const MINUTE = 60_000;
/** Low risk, full automation: the policy approves it on its own when the agent is not paused. */
const LOW = { action: 'send_alert', args: { to: 'ops' }, confidence: 0.97 } as const;
const HIGH = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82, riskLevel: 'high' } as const;
const POLICY = DEFAULT_POLICY_YAML.replace('agents: {}', 'agents:\n  holding-bot: { whilePaused: hold }');

describe.each(ENGINES)('whilePaused: $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let clock = Date.UTC(2026, 0, 12, 9, 0, 0);
  let adminToken = '';

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const create = (key: string, body: unknown) => call(key, 'POST', '/v1/requests', CreateRequestBody.parse(body));
  const keyFor = async (agent: string) => (await call(adminToken, 'POST', '/v1/keys', { agent })).json.key as string;
  const audit = async (type: string) => (await engine.listAudit((await engine.authenticate(adminToken))!, { type, limit: 1000 })).map((e) => ({ requestId: e.requestId, data: e.data as any }));

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    await engine.activatePolicy(POLICY, 'test');
    adminToken = (await engine.bootstrap())!.adminToken;
    app = createApp({ engine, log: () => {} });
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('holds a paused agent\'s requests for review (never automated), audited as held; another agent\'s policy still refuses', async () => {
    const holding = await keyFor('holding-bot');
    const refusing = await keyFor('refusing-bot');
    expect((await create(holding, LOW)).json.status).toBe('approved'); // not paused: the policy approves it alone

    for (const agent of ['holding-bot', 'refusing-bot']) {
      expect((await call(adminToken, 'POST', `/v1/agents/${agent}/pause`, { minutes: 30, reason: 'odd traffic' })).status).toBe(200);
    }
    const held = await create(holding, { ...LOW, args: { to: 'held' } });
    expect(held.status).toBe(201);
    expect(held.json.status).toBe('pending');
    expect(held.json.assessment.route).toBe('review');
    expect(held.json.assessment.matchedRules).toContainEqual(
      expect.objectContaining({ name: 'agent-paused', effects: ['review'], reason: expect.stringContaining('whilePaused: hold') }),
    );
    const refused = await create(refusing, LOW);
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'AGENT_PAUSED', details: { reason: 'odd traffic' } });

    const entries = await audit('held');
    expect(entries).toEqual([{ requestId: held.json.id, data: expect.objectContaining({ agent: 'holding-bot', reason: 'odd traffic' }) }]);
    expect(await audit('create_refused')).toEqual(expect.arrayContaining([expect.objectContaining({ data: expect.objectContaining({ code: 'AGENT_PAUSED' }) })]));
  });

  it('a held request can be rejected now and approved only after the pause ends; the refused approval is audited and changes nothing', async () => {
    const holding = await keyFor('holding-bot');
    const rev = (await call(adminToken, 'POST', '/v1/operators', { name: 'hana', roles: ['reviewer'] })).json.token as string;
    const first = (await create(holding, { ...LOW, args: { to: 'a' } })).json;
    const second = (await create(holding, { ...LOW, args: { to: 'b' } })).json;
    expect([first.status, second.status]).toEqual(['pending', 'pending']);

    // Its card says why approvals wait; no queue offers it as something to act on now.
    const card = (await call(rev, 'GET', `/v1/requests/${first.id}`)).json;
    expect(card.agentPaused).toEqual({ until: expect.any(String), reason: 'odd traffic' });
    expect(card.actionable).toBe(false);
    const queued = (await call(rev, 'GET', '/v1/requests?status=pending&limit=500')).json.items as any[];
    expect(queued.find((r) => r.id === first.id)?.actionable).toBe(false);

    const early = await call(rev, 'POST', `/v1/requests/${first.id}/reviews`, { verdict: 'approve' });
    expect(early.status).toBe(403);
    expect(early.json.error).toMatchObject({ code: 'AGENT_PAUSED', message: expect.stringContaining('approved once the pause ends') });
    expect((await call(rev, 'GET', `/v1/requests/${first.id}`)).json.status).toBe('pending');
    expect((await audit('review_refused')).some((e) => e.requestId === first.id && e.data.code === 'AGENT_PAUSED')).toBe(true);

    const no = await call(rev, 'POST', `/v1/requests/${second.id}/reviews`, { verdict: 'reject', reason: 'not while paused' });
    expect(no.json.status).toBe('rejected');

    clock += 31 * MINUTE; // the pause runs out
    const after = (await call(rev, 'GET', `/v1/requests/${first.id}`)).json;
    expect(after.agentPaused).toBeUndefined();
    expect(after.actionable).toBe(true);
    const yes = await call(rev, 'POST', `/v1/requests/${first.id}/reviews`, { verdict: 'approve' });
    expect(yes.status).toBe(200);
    expect(yes.json.status).toBe('approved');
    // Not paused any more: the policy decides alone again.
    expect((await create(holding, { ...LOW, args: { to: 'c' } })).json.status).toBe('approved');
  });

  it('pausing an agent also stops approvals of requests it made before the pause (any whilePaused); resuming lets them through', async () => {
    const key = await keyFor('refusing-bot');
    const rev = (await call(adminToken, 'POST', '/v1/operators', { name: 'ivo', roles: ['reviewer'] })).json.token as string;
    const before = (await create(key, HIGH)).json;
    expect(before.status).toBe('pending');
    await call(adminToken, 'POST', '/v1/agents/refusing-bot/pause', { minutes: 30, reason: 'investigating' });
    expect((await call(rev, 'POST', `/v1/requests/${before.id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('AGENT_PAUSED');
    await call(adminToken, 'POST', '/v1/agents/refusing-bot/resume', { reason: 'cleared' });
    expect((await call(rev, 'POST', `/v1/requests/${before.id}/reviews`, { verdict: 'approve' })).json.status).toBe('approved');
  });
});

describe('a clock never approves a paused agent\'s request', () => {
  it('onFinalTimeout: approve expires the request instead while its agent is paused', async () => {
    const database = sqliteDatabase();
    let clock = Date.UTC(2026, 0, 13, 9, 0, 0);
    const policy = DEFAULT_POLICY_YAML.replace('onFinalTimeout: reject', 'onFinalTimeout: approve');
    const engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    const scheduler = new Scheduler(engine, { intervalMs: 60_000 });
    try {
      await engine.activatePolicy(policy, 'test');
      const boot = (await engine.bootstrap())!;
      const admin = (await engine.authenticate(boot.adminToken))!;
      const agent = (await engine.authenticate(boot.agentKey))!;
      const other = (await engine.authenticate((await engine.createAgentKey(admin, 'other-bot')).key))!;
      const paused = (await engine.createRequest(agent, CreateRequestBody.parse(HIGH))).request;
      const free = (await engine.createRequest(other, CreateRequestBody.parse(HIGH))).request;
      // Through every level (15m SLA, then 10m, 10m); the first agent is paused before the last deadline.
      for (const step of [16, 11]) {
        clock += step * MINUTE;
        await scheduler.tick();
      }
      await engine.guard.pause(admin, agent.kind === 'agent' ? agent.agentName : '', { minutes: 30, reason: 'suspected' });
      clock += 11 * MINUTE;
      await scheduler.tick();
      const decided = await engine.getRequest(admin, paused.id);
      expect(decided.status).toBe('expired');
      expect(decided.decision?.reason).toContain('the agent is paused');
      // The other agent is not paused: the policy's explicit approve applies, flagged as a timeout.
      const approved = await engine.getRequest(admin, free.id);
      expect(approved.status).toBe('approved');
      expect(approved.decision?.decidedBy).toBe('timeout');
    } finally {
      await scheduler.stop();
      await engine.close();
      await database.drop();
    }
  });
});

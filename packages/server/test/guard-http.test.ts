/**
 * Protecting reviewers over HTTP (both databases, with a controlled clock): approver velocity limits and
 * automatic cool-downs on high/critical approvals, manual cool-downs by a lead, per-agent
 * request limits from the policy, agent pauses, and the slicing report, each with its audit.
 */
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { guardOptionsFromEnv } from '../src/guard/service.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, sqliteDatabase, type TestDatabase } from './support/databases.ts';

const MINUTE = 60_000;
const HIGH = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82, riskLevel: 'high' } as const;
const MEDIUM = { action: 'block_ip', args: { ip: '192.0.2.7' }, confidence: 0.7, riskLevel: 'medium' } as const;
const POLICY = DEFAULT_POLICY_YAML.replace(
  'agents: {}',
  'agents:\n  fast-bot: { limits: { perMinute: 3, perHour: 5 } }\n  greedy-bot: { onSlicing: pause }\n  noisy-bot: { onSlicing: alert }',
);

describe.each(ENGINES)('guard over HTTP: $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let clock = Date.UTC(2026, 0, 5, 9, 0, 0);
  let adminToken = '';
  let agentKey = '';

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const create = (key: string, body: unknown) => call(key, 'POST', '/v1/requests', CreateRequestBody.parse(body));
  const operator = async (name: string, roles: string[]) => (await call(adminToken, 'POST', '/v1/operators', { name, roles })).json.token as string;
  const auditTypes = async (type: string) => (await engine.listAudit((await engine.authenticate(adminToken))!, { type, limit: 1000 })).map((e) => e.data as any);

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    await engine.activatePolicy(POLICY, 'test');
    const boot = (await engine.bootstrap())!;
    adminToken = boot.adminToken;
    agentKey = boot.agentKey;
    app = createApp({ engine, log: () => {} });
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('starts a cool-down after 5 high approvals within 15 minutes; medium approvals still pass', async () => {
    const rita = await operator('rita', ['reviewer']);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const created = await create(agentKey, { ...HIGH, args: { host: `ws-${i}` } });
      expect(created.json.assessment.riskLevel).toBe('high');
      ids.push(created.json.id);
    }
    for (let i = 0; i < 5; i++) {
      clock += 2 * MINUTE;
      const r = await call(rita, 'POST', `/v1/requests/${ids[i]}/reviews`, { verdict: 'approve' });
      expect(r.status).toBe(200);
    }
    const cooldown = await call(rita, 'GET', '/v1/approvers/rita/cooldown');
    expect(cooldown.json).toMatchObject({ active: true, triggeredBy: ids.slice(0, 5) });
    expect(new Date(cooldown.json.until).getTime()).toBe(clock + 30 * MINUTE);
    const refused = await call(rita, 'POST', `/v1/requests/${ids[5]}/reviews`, { verdict: 'approve' });
    expect(refused.status).toBe(403);
    expect(refused.json.error.code).toBe('COOLDOWN_ACTIVE');
    // Saying no is never held back, and lower-risk work goes on.
    const medium = await create(agentKey, MEDIUM);
    expect(medium.json.assessment.riskLevel).toBe('medium');
    expect((await call(rita, 'POST', `/v1/requests/${medium.json.id}/reviews`, { verdict: 'approve' })).status).toBe(200);
    expect((await auditTypes('cooldown_started')).some((d) => d.operator === 'rita' && d.triggeredBy.length === 5)).toBe(true);
    expect((await auditTypes('review_refused')).some((d) => d.code === 'COOLDOWN_ACTIVE')).toBe(true);
    clock += 31 * MINUTE;
    expect((await call(rita, 'GET', '/v1/approvers/rita/cooldown')).json.active).toBe(false);
    expect((await call(rita, 'POST', `/v1/requests/${ids[5]}/reviews`, { verdict: 'approve' })).status).toBe(200);
  });

  it('limits an approver to 10 high/critical approvals an hour (spread out, so no cool-down), and reports it', async () => {
    const sam = await operator('sam', ['reviewer']);
    for (let i = 0; i < 10; i++) {
      const created = await create(agentKey, { ...HIGH, args: { host: `v-${i}` } });
      clock += 4 * MINUTE; // 5 approvals span 16 minutes: never 5 within 15
      expect((await call(sam, 'POST', `/v1/requests/${created.json.id}/reviews`, { verdict: 'approve' })).status).toBe(200);
    }
    const velocity = await call(sam, 'GET', '/v1/approvers/sam/velocity');
    expect(velocity.json).toMatchObject({ operator: 'sam', counts: { hour: 10, day: 10 }, limits: { hour: 10, day: 50 }, allowed: false });
    expect(velocity.json.resetAt).not.toBeNull();
    const eleventh = await create(agentKey, { ...HIGH, args: { host: 'v-10' } });
    clock += 4 * MINUTE;
    const refused = await call(sam, 'POST', `/v1/requests/${eleventh.json.id}/reviews`, { verdict: 'approve' });
    expect(refused.status).toBe(429);
    expect(refused.json.error.code).toBe('VELOCITY_LIMITED');
    expect(refused.json.error.details.limits).toEqual({ hour: 10, day: 50 });
  });

  it('lets a lead (not a reviewer) send an approver to cool down, with a reason', async () => {
    const tess = await operator('tess', ['reviewer']);
    const lead = await operator('leah', ['lead']);
    const byPeer = await call(tess, 'POST', '/v1/approvers/tess/cooldown', { minutes: 20, reason: 'tired' });
    expect(byPeer.json.error.code).toBe('FORBIDDEN');
    expect((await call(lead, 'POST', '/v1/approvers/tess/cooldown', { minutes: 20 })).json.error.code).toBe('VALIDATION_FAILED');
    const set = await call(lead, 'POST', '/v1/approvers/tess/cooldown', { minutes: 20, reason: 'eight hours on call' });
    expect(set.status).toBe(200);
    expect(set.json).toMatchObject({ active: true, reason: 'manual: eight hours on call' });
    const created = await create(agentKey, { ...HIGH, args: { host: 'm-1' } });
    expect((await call(tess, 'POST', `/v1/requests/${created.json.id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('COOLDOWN_ACTIVE');
    expect((await auditTypes('cooldown_started')).some((d) => d.operator === 'tess' && d.manual === true)).toBe(true);
    expect((await call(lead, 'GET', '/v1/approvers/nobody/cooldown')).status).toBe(404);

    // The queue routes high-risk work to others while she cools down: not hers to act on now.
    const mine = async (id: string) => ((await call(tess, 'GET', '/v1/requests?status=pending&limit=500')).json.items as any[]).find((r) => r.id === id)?.actionable;
    expect(await mine(created.json.id)).toBe(false);
    expect((await call(tess, 'GET', `/v1/requests/${created.json.id}`)).json.actionable).toBe(false);
    const leads = (await call(lead, 'GET', '/v1/requests?status=pending&limit=500')).json.items as any[];
    expect(leads.find((r) => r.id === created.json.id)?.actionable).toBe(true); // another reviewer's queue has it
    clock += 21 * MINUTE;
    expect(await mine(created.json.id)).toBe(true);
  });

  it("enforces the policy's per-agent limits on create (RATE_LIMITED, 429) and frees a slot as the window slides", async () => {
    const key = (await call(adminToken, 'POST', '/v1/keys', { agent: 'fast-bot' })).json.key as string;
    for (let i = 0; i < 3; i++) expect((await create(key, { ...MEDIUM, args: { n: i } })).status).toBe(201);
    const limited = await create(key, { ...MEDIUM, args: { n: 3 } });
    expect(limited.status).toBe(429);
    expect(limited.json.error).toMatchObject({ code: 'RATE_LIMITED', details: { counts: { minute: 3 }, limits: { minute: 3, hour: 5 } } });
    clock += 61 * MINUTE / 60; // 61 s
    expect((await create(key, { ...MEDIUM, args: { n: 4 } })).status).toBe(201);
    expect((await create(key, { ...MEDIUM, args: { n: 5 } })).status).toBe(201);
    clock += 61_000;
    expect((await create(key, { ...MEDIUM, args: { n: 6 } })).json.error.details.counts.hour).toBe(5);
    // Other agents are not limited by fast-bot's entry.
    expect((await create(agentKey, MEDIUM)).status).toBe(201);
    expect((await auditTypes('create_refused')).filter((d) => d.code === 'RATE_LIMITED').length).toBeGreaterThanOrEqual(1);
  });

  it('pauses an agent (lead or more senior): its creates are refused with AGENT_PAUSED until resumed', async () => {
    const key = (await call(adminToken, 'POST', '/v1/keys', { agent: 'paused-bot' })).json.key as string;
    const rev = await operator('ursula', ['reviewer']);
    expect((await call(rev, 'POST', '/v1/agents/paused-bot/pause', { minutes: 60, reason: 'x' })).json.error.code).toBe('FORBIDDEN');
    const paused = await call(adminToken, 'POST', '/v1/agents/paused-bot/pause', { minutes: 60, reason: 'slicing suspected' });
    expect(paused.json).toMatchObject({ paused: true, reason: 'slicing suspected' });
    const refused = await create(key, MEDIUM);
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'AGENT_PAUSED', details: { reason: 'slicing suspected' } });
    expect((await create(agentKey, MEDIUM)).status).toBe(201); // only that agent
    expect((await call(adminToken, 'POST', '/v1/agents/paused-bot/resume', { reason: 'checked' })).json.paused).toBe(false);
    expect((await create(key, MEDIUM)).status).toBe(201);
    expect((await call(adminToken, 'POST', '/v1/agents/paused-bot/resume', { reason: 'again' })).json.error.code).toBe('ILLEGAL_TRANSITION');
    // A pause also ends by itself.
    await call(adminToken, 'POST', '/v1/agents/paused-bot/pause', { minutes: 5, reason: 'short' });
    expect((await create(key, { ...MEDIUM, args: { a: 1 } })).status).toBe(403);
    clock += 5 * MINUTE + 1;
    expect((await create(key, { ...MEDIUM, args: { a: 2 } })).status).toBe(201);
    expect((await auditTypes('agent_paused')).map((d) => d.reason)).toEqual(['slicing suspected', 'short']);
    expect((await auditTypes('agent_resumed')).map((d) => d.reason)).toEqual(['checked']);
    expect((await auditTypes('create_refused')).filter((d) => d.code === 'AGENT_PAUSED')).toHaveLength(2);
  });

  it('applies the policy response to slicing after creates: pause (greedy-bot) or only an alert (noisy-bot)', async () => {
    const greedy = (await call(adminToken, 'POST', '/v1/keys', { agent: 'greedy-bot' })).json.key as string;
    const noisy = (await call(adminToken, 'POST', '/v1/keys', { agent: 'noisy-bot' })).json.key as string;
    const transfer = { action: 'wire_transfer', args: { to: 'acct-9', amount: 9_900 }, confidence: 0.9, context: { value: 9_900 } };
    let pausedAfter = 0;
    for (let i = 1; i <= 20 && pausedAfter === 0; i++) {
      clock += 90_000;
      const r = await create(greedy, transfer);
      if (r.status === 403) {
        expect(r.json.error.code).toBe('AGENT_PAUSED');
        expect(r.json.error.details.reason).toContain('value_aggregation');
        pausedAfter = i - 1;
      }
    }
    // The running total crosses the policy's 10,000 threshold on the second transfer, and that create is the one caught (finding 7).
    expect(pausedAfter).toBe(2);
    for (let i = 0; i < 8; i++) {
      clock += 90_000;
      expect((await create(noisy, transfer)).status).toBe(201);
    }
    const alerts = await auditTypes('slicing_alert');
    expect(alerts.filter((a) => a.agent === 'greedy-bot' && a.response === 'pause')).toHaveLength(1);
    expect(alerts.filter((a) => a.agent === 'noisy-bot' && a.response === 'alert').length).toBeGreaterThanOrEqual(1);
    expect(alerts.find((a) => a.agent === 'noisy-bot')?.alerts[0]).toMatchObject({ type: 'value_aggregation' });
    expect((await auditTypes('agent_paused')).filter((d) => d.agent === 'greedy-bot')).toHaveLength(1);
    expect((await call(adminToken, 'GET', '/v1/agents/noisy-bot/pause')).json.paused).toBe(false);
  });

  it("reports slicing over an agent's history: 20 transfers just under 10,000 raise value aggregation; steady varied traffic raises nothing", async () => {
    const slicer = (await call(adminToken, 'POST', '/v1/keys', { agent: 'slicer-bot' })).json.key as string;
    const steady = (await call(adminToken, 'POST', '/v1/keys', { agent: 'steady-bot' })).json.key as string;
    for (let i = 0; i < 20; i++) {
      clock += 90_000;
      await create(slicer, { action: 'wire_transfer', args: { to: 'acct-77', amount: 9_900 }, confidence: 0.9, context: { value: 9_900 } });
      if (i % 4 === 0) await create(steady, { action: 'block_ip', args: { ip: `198.51.100.${i}` }, confidence: 0.9 });
    }
    const report = await call(adminToken, 'GET', '/v1/agents/slicer-bot/slicing?windowMinutes=60');
    expect(report.status).toBe(200);
    expect(report.json.attackDetected).toBe(true);
    const aggregation = report.json.alerts.find((a: any) => a.type === 'value_aggregation');
    expect(aggregation.evidence.requestIds.length).toBeGreaterThanOrEqual(3);
    expect(typeof aggregation.description).toBe('string');
    const calm = await call(adminToken, 'GET', '/v1/agents/steady-bot/slicing');
    expect(calm.json).toMatchObject({ attackDetected: false, alerts: [] });
    expect((await call(agentKey, 'GET', '/v1/agents/slicer-bot/slicing')).json.error.code).toBe('FORBIDDEN');
    expect((await call(adminToken, 'GET', '/v1/agents/slicer-bot/slicing?windowMinutes=0')).json.error.code).toBe('VALIDATION_FAILED');
    expect((await call(adminToken, 'GET', '/v1/agents/ghost/slicing')).status).toBe(404);
    // Agents without onSlicing are only reported on, never acted on.
    expect((await auditTypes('slicing_alert')).some((a) => a.agent === 'slicer-bot')).toBe(false);
    expect((await call(adminToken, 'GET', '/v1/agents/slicer-bot/pause')).json.paused).toBe(false);
  });

  it("sets a role's approval IP allowlist (admin only, validated, audited); it binds everyone holding the role", async () => {
    const mona = await operator('mona', ['manager']);
    const lead = await operator('lars', ['lead']);
    const roleEntries = async () => (await auditTypes('ip_allowlist_set')).filter((d) => d.role !== undefined);
    const listOf = async (role: string) => (await call(mona, 'GET', `/v1/roles/${role}/ip-allowlist`)).json;
    expect(await listOf('manager')).toEqual({ role: 'manager', cidrs: [] });

    const byLead = await call(lead, 'PUT', '/v1/roles/manager/ip-allowlist', { cidrs: ['10.0.0.0/8'] });
    expect(byLead.status).toBe(403);
    expect(byLead.json.error.code).toBe('FORBIDDEN');
    for (const [role, cidrs] of [['manager', ['10.0.0.0/8', '10.0.0.0/33']], ['managers', ['10.0.0.0/8']], ['admin ', ['10.0.0.0/8']]] as const) {
      const bad = await call(adminToken, 'PUT', `/v1/roles/${encodeURIComponent(role)}/ip-allowlist`, { cidrs });
      expect(bad.status).toBe(400);
      expect(bad.json.error.code).toBe('VALIDATION_FAILED');
    }
    expect((await call(mona, 'GET', '/v1/roles/managers/ip-allowlist')).json.error).toMatchObject({ code: 'VALIDATION_FAILED', message: 'unknown role "managers"' });
    expect(await listOf('manager')).toEqual({ role: 'manager', cidrs: [] });
    expect(await roleEntries()).toEqual([]);

    expect((await call(adminToken, 'PUT', '/v1/roles/manager/ip-allowlist', { cidrs: ['10.0.0.0/8'] })).json).toEqual({ role: 'manager', cidrs: ['10.0.0.0/8'] });
    expect(await roleEntries()).toEqual([{ role: 'manager', cidrs: ['10.0.0.0/8'] }]);
    const entry = (await engine.listAudit((await engine.authenticate(adminToken))!, { type: 'ip_allowlist_set', limit: 1000 })).at(-1)!;
    expect(entry.actor).toMatchObject({ type: 'operator', name: 'admin' });
    // A refused change leaves the list as it was.
    expect((await call(adminToken, 'PUT', '/v1/roles/manager/ip-allowlist', { cidrs: ['192.0.2.0/24', 'nope'] })).status).toBe(400);
    expect((await listOf('manager')).cidrs).toEqual(['10.0.0.0/8']);
    expect(await roleEntries()).toHaveLength(1);

    // In-process requests carry no address: an applying role list refuses them (fail closed).
    const created = await create(agentKey, { ...HIGH, args: { host: 'role-1' } });
    const refused = await call(mona, 'POST', `/v1/requests/${created.json.id}/reviews`, { verdict: 'approve' });
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'IP_NOT_ALLOWED', details: { ip: null, refusedBy: [{ role: 'manager' }] } });
    expect((await auditTypes('review_refused')).some((d) => d.code === 'IP_NOT_ALLOWED' && d.message.includes('role manager'))).toBe(true);
    // Another role's list does not bind a manager.
    await call(adminToken, 'PUT', '/v1/roles/manager/ip-allowlist', { cidrs: [] });
    await call(adminToken, 'PUT', '/v1/roles/director/ip-allowlist', { cidrs: ['10.0.0.0/8'] });
    expect((await call(mona, 'POST', `/v1/requests/${created.json.id}/reviews`, { verdict: 'approve' })).status).toBe(200);
    expect((await call(adminToken, 'PUT', '/v1/roles/director/ip-allowlist', { cidrs: [] })).json.cidrs).toEqual([]);
    expect((await roleEntries()).map((d) => [d.role, d.cidrs.length])).toEqual([['manager', 1], ['manager', 0], ['director', 1], ['director', 0]]);
  });
});

describe('COUNTERSIGN_REVIEWER_LIMITS', () => {
  it('off lifts the automatic limits, keeps manual cool-downs; anything but on/off is refused', async () => {
    expect(() => guardOptionsFromEnv({ COUNTERSIGN_REVIEWER_LIMITS: 'maybe' })).toThrow(/"on" or "off"/);
    expect(guardOptionsFromEnv({}).cooldown).toBeUndefined();
    const database = sqliteDatabase();
    const engine = await Engine.open({ connection: await connect(database.url), guard: guardOptionsFromEnv({ COUNTERSIGN_REVIEWER_LIMITS: 'off' }) });
    try {
      await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      const boot = (await engine.bootstrap())!;
      const admin = (await engine.authenticate(boot.adminToken))!;
      const agent = (await engine.authenticate(boot.agentKey))!;
      const director = (await engine.authenticate((await engine.createOperator(admin, { name: 'dee', roles: ['director'] })).token))!;
      for (let i = 0; i < 12; i++) {
        const { request } = await engine.createRequest(agent, CreateRequestBody.parse({ ...HIGH, args: { host: `off-${i}` } }));
        expect((await engine.review(director, request.id, { verdict: 'approve' })).status).toBe('approved');
      }
      // A manual cool-down still applies (set by someone who outranks the approver: issue 13, finding 6).
      await engine.guard.setCooldown(admin, 'dee', { minutes: 10, reason: 'break' });
      const { request } = await engine.createRequest(agent, CreateRequestBody.parse({ ...HIGH, args: { host: 'off-x' } }));
      await expect(engine.review(director, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'COOLDOWN_ACTIVE' });
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

describe('policy guard: thresholds', () => {
  it('a changed cool-down and velocity threshold takes effect when the policy is activated', async () => {
    const database = sqliteDatabase();
    let clock = Date.UTC(2026, 0, 6, 9, 0, 0);
    const engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    try {
      await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      const boot = (await engine.bootstrap())!;
      const admin = (await engine.authenticate(boot.adminToken))!;
      const agent = (await engine.authenticate(boot.agentKey))!;
      const approveHigh = async (host: string) => {
        const { request } = await engine.createRequest(agent, CreateRequestBody.parse({ ...HIGH, args: { host } }));
        return engine.review(admin, request.id, { verdict: 'approve' });
      };
      // Defaults: two approvals start nothing.
      for (const h of ['a1', 'a2']) expect((await approveHigh(h)).status).toBe('approved');
      expect((await engine.guard.cooldown(admin, 'admin')).active).toBe(false);

      await engine.activatePolicy(`${DEFAULT_POLICY_YAML}\n`.replace('cooldown: { threshold: 5, window: 15m, duration: 30m', 'cooldown: { threshold: 3, window: 15m, duration: 45m'), 'test');
      expect((await engine.guard.cooldown(admin, 'admin')).config).toMatchObject({ threshold: 3, durationMinutes: 45 });
      clock += MINUTE;
      expect((await approveHigh('a3')).status).toBe('approved'); // the third within 15 min starts a 45-minute cool-down
      const cool = await engine.guard.cooldown(admin, 'admin');
      expect(cool.active).toBe(true);
      expect(new Date(cool.until!).getTime()).toBe(clock + 45 * MINUTE);
      await expect(approveHigh('a4')).rejects.toMatchObject({ code: 'COOLDOWN_ACTIVE' });

      clock += 90 * MINUTE; // cool-down over, and the last hour empty
      await engine.activatePolicy(DEFAULT_POLICY_YAML.replace('velocity: { perHour: 10', 'velocity: { perHour: 1'), 'test');
      expect((await engine.guard.velocity(admin, 'admin')).limits).toMatchObject({ hour: 1 });
      expect((await approveHigh('a5')).status).toBe('approved');
      await expect(approveHigh('a6')).rejects.toMatchObject({ code: 'VELOCITY_LIMITED' });
    } finally {
      await engine.close();
      await database.drop();
    }
  });

  it('guard.notify must name configured channels', async () => {
    const database = sqliteDatabase();
    const engine = await Engine.open({ connection: await connect(database.url) });
    try {
      const { channelPolicyCheck } = await import('../src/channels/config.ts');
      engine.addPolicyCheck(channelPolicyCheck({}));
      await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      await expect(engine.activatePolicy(DEFAULT_POLICY_YAML.replace('  notify: []\n  velocity', '  notify: [nowhere]\n  velocity'), 'test')).rejects.toMatchObject({
        code: 'POLICY_INVALID',
        details: { errors: [{ path: 'guard.notify[0]', message: expect.stringContaining('no channel named "nowhere"') }] },
      });
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

describe('a cool-down routes work on', () => {
  it('an approval refused for a cool-down changes nothing: the request is not escalated (issue 12: a refusal never moves a request)', async () => {
    const database = sqliteDatabase();
    const clock = Date.UTC(2026, 0, 7, 9, 0, 0);
    const engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    try {
      const chain = '    - { role: lead,     after: sla, notify: [] }\n    - { role: manager,  after: 10m, notify: [] }\n    - { role: director, after: 10m, notify: [] }';
      expect(DEFAULT_POLICY_YAML).toContain(chain);
      await engine.activatePolicy(DEFAULT_POLICY_YAML.replace('cooldown: { threshold: 5', 'cooldown: { threshold: 2'), 'test');
      const boot = (await engine.bootstrap())!;
      const admin = (await engine.authenticate(boot.adminToken))!;
      const agent = (await engine.authenticate(boot.agentKey))!;
      const high = (host: string) => engine.createRequest(agent, CreateRequestBody.parse({ ...HIGH, args: { host } }));
      for (const h of ['c1', 'c2']) await engine.review(admin, (await high(h)).request.id, { verdict: 'approve' });

      const { request } = await high('c3');
      expect((await engine.requestById(request.id))!.escalation).toMatchObject({ level: 1, role: 'lead' });
      await expect(engine.review(admin, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'COOLDOWN_ACTIVE' });
      await expect(engine.review(admin, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'COOLDOWN_ACTIVE' });
      expect((await engine.requestById(request.id))!.escalation).toMatchObject({ level: 1, role: 'lead' });
      const audit = await engine.auditForRequest(admin, request.id);
      expect(audit.filter((e) => e.type === 'escalated')).toEqual([]);
      expect(audit.filter((e) => e.type === 'review_refused').map((e) => (e.data as { code: string }).code)).toEqual(['COOLDOWN_ACTIVE', 'COOLDOWN_ACTIVE']);
      // The reader is told why, and until when.
      const view = await engine.getRequest(admin, request.id);
      expect(view.actionable).toBe(false);
      expect(view.notActionable).toMatchObject({ code: 'COOLDOWN_ACTIVE', retryAt: new Date(clock + 30 * MINUTE).toISOString() });
      expect(view.notActionable!.message).toContain('cool-down until');
      expect((await engine.requestById(request.id))!.status).toBe('pending');
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

describe('onSlicing: review', () => {
  it("routes the agent's next requests to review, with a matched rule naming the alert, for an hour", async () => {
    const database = sqliteDatabase();
    let clock = Date.UTC(2026, 0, 8, 9, 0, 0);
    const engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    try {
      await engine.activatePolicy(DEFAULT_POLICY_YAML.replace('agents: {}', 'agents:\n  demo-agent: { onSlicing: review }'), 'test');
      const boot = (await engine.bootstrap())!;
      const admin = (await engine.authenticate(boot.adminToken))!;
      const agent = (await engine.authenticate(boot.agentKey))!;
      const alert = CreateRequestBody.parse({ action: 'send_alert', args: { to: 'ops', amount: 9_900 }, confidence: 0.97, context: { value: 9_900 } });
      const first = await engine.createRequest(agent, alert);
      expect(first.request.status).toBe('approved'); // low risk, full automation: no human normally
      let forced: Awaited<ReturnType<typeof engine.createRequest>>['request'] | undefined;
      for (let i = 0; i < 20 && !forced; i++) {
        clock += 90_000;
        const { request } = await engine.createRequest(agent, alert);
        if (request.status === 'pending') forced = request;
      }
      expect(forced).toBeDefined();
      expect(forced!.assessment.route).toBe('review');
      const rule = forced!.assessment.matchedRules.find((r) => r.name.startsWith('slicing-alert:'));
      expect(rule).toMatchObject({ name: expect.stringContaining('value_aggregation'), effects: ['review'], reason: expect.stringContaining('onSlicing: review') });
      clock += 1_000; // the next one, a different action, is held too
      const next = await engine.createRequest(agent, CreateRequestBody.parse({ action: 'collect_logs', args: { host: 'ws-1' }, confidence: 0.97 }));
      expect(next.request.assessment.route).toBe('review');
      const audit = await engine.listAudit(admin, { type: 'review_forced', limit: 10 });
      expect(audit.length).toBeGreaterThanOrEqual(1); // each new set of alerts renews the hour
      for (const e of audit) expect(e.data).toMatchObject({ agent: 'demo-agent', alerts: expect.arrayContaining(['value_aggregation']) });
      const until = Math.max(...audit.map((e) => Date.parse((e.data as { until: string }).until)));
      expect(until).toBeLessThanOrEqual(clock + 60 * MINUTE);

      // After the hold, with no new alert (a different, unsuspicious action), the policy decides alone again.
      clock = until + 1;
      const later = await engine.createRequest(agent, CreateRequestBody.parse({ action: 'collect_logs', args: { host: 'ws-1' }, confidence: 0.97 }));
      expect(later.request.assessment.matchedRules.some((r) => r.name.startsWith('slicing-alert:'))).toBe(false);
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

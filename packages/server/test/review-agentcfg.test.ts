/**
 * Red-team review of branch `agentcfg` (issue 18: per-agent configuration and four-eyes on admin
 * power). Each test asserts the secure behaviour, so it FAILS on `agentcfg`; the comment on each
 * names the finding it shows. Real SQLite and PostgreSQL, the real engine and scheduler.
 */
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

async function clocked(url: string, policy: string) {
  const clock = { now: Date.now() };
  const engine = await Engine.open({ connection: await connect(url), serverSecret: TEST_SERVER_SECRET, now: () => clock.now });
  await engine.activatePolicy(policy, 'test');
  const boot = (await engine.bootstrap())!;
  const admin = (await engine.authenticate(boot.adminToken))!;
  let n = 0;
  return {
    engine,
    admin,
    clock,
    async op(name: string, roles: Array<'reviewer' | 'lead' | 'manager' | 'director' | 'admin'>): Promise<Principal> {
      const { token } = await engine.createOperator(admin, { name: `${name}-${n++}`, roles });
      return (await engine.authenticate(token))!;
    },
    async agent(name: string): Promise<Principal> {
      const { key } = await engine.createAgentKey(admin, name);
      return (await engine.authenticate(key))!;
    },
    /** Ticks the scheduler a day at a time until the request is decided (or six days pass). */
    async settle(id: string) {
      const scheduler = new Scheduler(engine);
      let done = await engine.getRequest(admin, id);
      for (let i = 0; i < 6 && done.status === 'pending'; i++) {
        clock.now += 24 * 3600_000;
        await scheduler.tick();
        done = await engine.getRequest(admin, id);
      }
      return done;
    },
  };
}

const withAgents = (agents: string) => DEFAULT_POLICY_YAML.replace('agents: {}', `agents:\n${agents}`);

describe.each(ENGINES)('red-team review of agentcfg ($name)', ({ make }) => {
  let database: TestDatabase;
  let t: Awaited<ReturnType<typeof clocked>>;
  afterEach(async () => {
    await t.engine.close();
    await database.drop();
  });

  // FINDING 1 (high): an overlay that repeats the file's value is "no loosening", so one admin
  // writes it alone; it then pins that value against every later tightening of the policy file.
  // Here the rogue admin pins `enabled: true`; the security team's kill switch in the file
  // (`agents.billing-bot.enabled: false`, activated by reload) no longer stops the agent.
  it('F1: a no-op overlay `enabled: true`, set by one admin, must not override the policy file disabling the agent later', async () => {
    const FILE = withAgents('  billing-bot: { limits: { perMinute: 60 } }\n  twin-bot: { limits: { perMinute: 60 } }');
    database = make();
    t = await clocked(database.url, FILE);
    const bot = await t.agent('billing-bot');
    const twin = await t.agent('twin-bot'); // the control: the same, without an overlay
    const pinned = await t.engine.agentConfigs.put(t.admin, 'billing-bot', { enabled: true });
    expect(pinned).toMatchObject({ status: 'applied', loosens: [] }); // one admin, no second look
    // Later, the policy file (reviewed, in git) disables the agent.
    await t.engine.activatePolicy(withAgents('  billing-bot: { enabled: false, limits: { perMinute: 60 } }\n  twin-bot: { enabled: false, limits: { perMinute: 60 } }'), 'kill-switch');
    await expect(t.engine.createRequest(twin, CreateRequestBody.parse({ action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 }))).rejects.toMatchObject({ code: 'AGENT_DISABLED' });
    const after = await t.engine.createRequest(bot, CreateRequestBody.parse({ action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 })).then(
      (r) => ({ status: r.request.status, code: null as string | null }),
      (e: { code?: string }) => ({ status: null, code: e.code ?? 'thrown' }),
    );
    expect(after).toEqual({ status: null, code: 'AGENT_DISABLED' });
  });

  // FINDING 1b (high): the same pin on a list. Lists replace, so an overlay that repeats the
  // file's `requireApproval` (no loosening, applied by one admin) silently drops every entry the
  // file adds later: the agent's export_ledger is auto-approved though the file requires approval.
  it('F1b: a no-op overlay `requireApproval` must not mask an entry the policy file adds later', async () => {
    database = make();
    t = await clocked(database.url, withAgents('  billing-bot: { requireApproval: [send_external_email] }\n  twin-bot: { requireApproval: [send_external_email] }'));
    const bot = await t.agent('billing-bot');
    const twin = await t.agent('twin-bot'); // the control: the same, without an overlay
    expect(await t.engine.agentConfigs.put(t.admin, 'billing-bot', { requireApproval: ['send_external_email'] })).toMatchObject({ status: 'applied', loosens: [] });
    await t.engine.activatePolicy(withAgents('  billing-bot: { requireApproval: [send_external_email, export_ledger] }\n  twin-bot: { requireApproval: [send_external_email, export_ledger] }'), 'tighten');
    expect((await t.engine.createRequest(twin, CreateRequestBody.parse({ action: 'export_ledger', args: { to: 'acme' }, confidence: 0.99 }))).request.status).toBe('pending');
    const { request } = await t.engine.createRequest(bot, CreateRequestBody.parse({ action: 'export_ledger', args: { to: 'acme' }, confidence: 0.99 }));
    expect(request.status).toBe('pending');
  });

  // FINDING 2 (high, with onFinalTimeout: approve): the final-timeout re-assessment reads the
  // file policy without the agent's overlay. An admin blocks an action for this agent (a
  // tightening, applied at once), exactly as a file policy that starts blocking it would — the
  // file's block makes the timeout expire it (gate-attacks A2), the overlay's does not: silence
  // approves an action this agent is now blocked from.
  it('F2: an action the overlay blocks after creation must not be approved by the final timeout', async () => {
    const FILE = `
escalation:
  onFinalTimeout: approve
  levels:
    - { role: lead, after: 2s }
rules:
  - { name: two, when: { action: rotate_keys }, then: { review: true } }
`;
    database = make();
    t = await clocked(database.url, FILE);
    const bot = await t.agent('ops-bot');
    const twin = await t.agent('twin-bot'); // the control: blocked the same way, in the file
    const { request } = await t.engine.createRequest(bot, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'prod' }, confidence: 0.9 }));
    const control = (await t.engine.createRequest(twin, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'prod' }, confidence: 0.9 }))).request;
    expect([request.status, control.status]).toEqual(['pending', 'pending']);
    expect(await t.engine.agentConfigs.put(t.admin, 'ops-bot', { block: ['rotate_keys'] })).toMatchObject({ status: 'applied' });
    await t.engine.activatePolicy(`${FILE}agents:\n  twin-bot: { block: [rotate_keys] }\n`, 'block-twin');
    const done = await t.settle(request.id);
    expect((await t.settle(control.id)).status).toBe('expired');
    expect({ status: done.status, decidedBy: done.decision?.decidedBy }).toMatchObject({ status: 'expired' });
  }, 60_000);

  // FINDING 3 (medium, with onFinalTimeout: approve): `enabled: false` is the per-agent kill
  // switch, but a disabled agent's pending request is still approved by silence (a paused agent's
  // never is: engine.ts "a paused agent's request is never approved by a clock").
  it('F3: a request of an agent disabled through its overlay must not be approved by the final timeout', async () => {
    const FILE = `
escalation:
  onFinalTimeout: approve
  levels:
    - { role: lead, after: 2s }
rules:
  - { name: two, when: { action: rotate_keys }, then: { review: true } }
`;
    database = make();
    t = await clocked(database.url, FILE);
    const bot = await t.agent('ops-bot');
    const { request } = await t.engine.createRequest(bot, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'prod' }, confidence: 0.9 }));
    expect(await t.engine.agentConfigs.put(t.admin, 'ops-bot', { enabled: false })).toMatchObject({ status: 'applied' });
    const done = await t.settle(request.id);
    expect(done.status).toBe('expired');
  }, 60_000);

  // FINDING 4 (high; the branch lists role grants as not four-eyes yet): four-eyes is one API call
  // deep. The admin whose change waits mints a second admin operator (applied at once, no second
  // admin) and approves their own loosening with it: `enabled: true` applied by one person.
  it('F4: the admin who proposed a loosening cannot approve it through an admin operator they just created', async () => {
    database = make();
    t = await clocked(database.url, DEFAULT_POLICY_YAML);
    const bot = await t.agent('billing-bot');
    expect(await t.engine.agentConfigs.put(t.admin, 'billing-bot', { enabled: false })).toMatchObject({ status: 'applied', version: 1 });
    const proposed = await t.engine.agentConfigs.put(t.admin, 'billing-bot', { enabled: true });
    expect(proposed.status).toBe('pending_approval');
    const id = (proposed as { requestId: string }).requestId;
    // The same person, a second identity.
    const sock = await t.op('alice-2', ['admin']).catch(() => null);
    const vote = sock ? await t.engine.review(sock, id, { verdict: 'approve' }).then((r) => r.status, (e: { code?: string }) => e.code) : 'refused';
    expect(vote).not.toBe('executed');
    const still = await t.engine.createRequest(bot, CreateRequestBody.parse({ action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 })).then(
      () => 'created',
      (e: { code?: string }) => e.code,
    );
    expect(still).toBe('AGENT_DISABLED');
  });
  // FINDING 5 (low; listed as not done): the reviewer's dry run (`actionable`) ignores the agent's
  // overlay, so the queue tells a reviewer they may approve what the gate then refuses: a per-agent
  // approver velocity of 1 an hour, one approval spent, and the second request still reads
  // `actionable: true` (the vote is VELOCITY_LIMITED).
  it('F5: the dry run must judge a per-agent approver velocity as the vote does', async () => {
    database = make();
    t = await clocked(database.url, DEFAULT_POLICY_YAML);
    const bot = await t.agent('risky-bot');
    expect(await t.engine.agentConfigs.put(t.admin, 'risky-bot', { velocity: { perHour: 1 } })).toMatchObject({ status: 'applied' });
    const rae = await t.op('rae', ['reviewer']);
    const high = (host: string) => CreateRequestBody.parse({ action: 'isolate_host', args: { host }, confidence: 0.82, riskLevel: 'high' });
    const first = (await t.engine.createRequest(bot, high('a'))).request;
    const second = (await t.engine.createRequest(bot, high('b'))).request;
    expect((await t.engine.review(rae, first.id, { verdict: 'approve' })).status).toBe('approved');
    const vote = await t.engine.review(rae, second.id, { verdict: 'approve' }).then(
      (r) => r.status,
      (e: { code?: string }) => e.code,
    );
    expect(vote).toBe('VELOCITY_LIMITED');
    const view = await t.engine.getRequest(rae, second.id);
    expect({ actionable: view.actionable, code: view.notActionable?.code }).toEqual({ actionable: false, code: 'VELOCITY_LIMITED' });
  });
});

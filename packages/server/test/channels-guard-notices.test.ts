/**
 * Guard notices end to end (engine → deliveries/timers → scheduler → notifier → channel → local
 * receiver): every slicing alert, agent pause and resume, and approver cool-down (manual and
 * automatic) reaches the channels in the policy's `guard.notify`, through the durable delivery
 * path (retried with backoff, recorded, audited). Webhook bodies are verified with the
 * `standardwebhooks` library; text from operators and agent-influenced alert text stays
 * escaped (JSON, Slack plain_text).
 */
import { Webhook } from 'standardwebhooks';
import { CreateRequestBody } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { Notifier } from '../src/channels/notifier.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { slackApi, webhookReceiver, type StandIn } from './support/channel-standins.ts';
import { sqliteDatabase } from './support/databases.ts';

const SECRET = `whsec_${Buffer.from('guard-notices-32-byte-signing-k!').toString('base64')}`;
const SLACK_TOKEN = 'xoxb-guard-notices';
const HOSTILE = 'tired <!channel> <https://evil.example|click> *bold* "quoted" & more';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function standIn<T extends StandIn<unknown>>(make: Promise<T>): Promise<T> {
  const s = await make;
  cleanup.push(s.close);
  return s;
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A clock that runs in real time but can be moved forward (slicing needs requests spread over minutes). */
async function setup(policy: string, env: Record<string, string>) {
  let offset = 0;
  const database = sqliteDatabase();
  const engine = await Engine.open({ connection: await connect(database.url), now: () => Date.now() + offset });
  engine.addPolicyCheck(channelPolicyCheck(env));
  await engine.activatePolicy(policy, 'test');
  const boot = (await engine.bootstrap())!;
  const channels = new ChannelRegistry(engine, env);
  const notifier = new Notifier(engine, channels, { reviewBase: 'https://cs.example.com' });
  const scheduler = new Scheduler(engine, { intervalMs: 20, deliver: notifier.deliver, onError: (e) => console.error(e) });
  scheduler.start();
  cleanup.push(async () => {
    await scheduler.stop();
    await channels.close();
    await engine.close();
    await database.drop();
  });
  const agent = (await engine.authenticate(boot.agentKey))!;
  return {
    engine,
    agent,
    agentName: agent.kind === 'agent' ? agent.agentName : '',
    admin: (await engine.authenticate(boot.adminToken))!,
    adminToken: boot.adminToken,
    advance: (ms: number) => {
      offset += ms;
    },
  };
}

type Received = { headers: Record<string, unknown>; body: string };
function verified(r: Received): { type: string; data: any } {
  const h = (k: string) => String(r.headers[k]);
  return new Webhook(SECRET).verify(r.body, { 'webhook-id': h('webhook-id'), 'webhook-timestamp': h('webhook-timestamp'), 'webhook-signature': h('webhook-signature') }) as { type: string; data: any };
}

const policyWith = (hookUrl: string, extra = '') =>
  `channels:\n  hook: { type: webhook, url: "${hookUrl}", retry: { attempts: 4, backoff: 50ms } }\n${extra}guard:\n  notify: [hook]\n`;

describe('guard notices through the webhook channel', () => {
  it('a manual pause, resume and cool-down each reach the webhook, signed, retried, recorded and audited', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    hook.failNext(503);
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 30, reason: HOSTILE });
    const paused = await until('agent_paused delivered', () => hook.received.find((r) => verified(r).type === 'countersign.guard.agent_paused' && hook.received.length >= 2));
    const body = verified(paused);
    expect(body.data).toMatchObject({ kind: 'agent_paused', agent: s.agentName, by: 'admin', reason: HOSTILE, title: `Agent paused: ${s.agentName}` });
    expect(JSON.parse(paused.body).data.reason).toBe(HOSTILE);

    const [delivery] = await until('recorded', async () => {
      const page = await s.engine.listDeliveries(s.admin, { channel: 'hook', status: 'delivered' });
      return page.items.length > 0 ? page.items : undefined;
    });
    expect(delivery).toMatchObject({ requestId: null, event: 'guard.agent_paused', attempts: 2, lastError: expect.stringContaining('HTTP 503') });
    expect(new Set(hook.received.map((r) => r.headers['webhook-id']))).toEqual(new Set([delivery!.id])); // one id across the retry
    const listed = await createApp({ engine: s.engine, log: () => {} }).request('/v1/deliveries?channel=hook', { headers: { authorization: `Bearer ${s.adminToken}` } });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { items: unknown[] }).items).toEqual([expect.objectContaining({ id: delivery!.id, requestId: null, event: 'guard.agent_paused', status: 'delivered' })]);

    await s.engine.guard.resume(s.admin, s.agentName, { reason: 'checked' });
    await s.engine.guard.setCooldown(s.admin, 'admin', { minutes: 20, reason: 'eight hours on call' });
    const types = await until('resume and cool-down', () => {
      const t = hook.received.map((r) => verified(r).type);
      return t.includes('countersign.guard.agent_resumed') && t.includes('countersign.guard.cooldown_started') ? t : undefined;
    });
    expect(types.filter((t) => t === 'countersign.guard.agent_paused')).toHaveLength(2); // the failed attempt and its retry
    const cool = hook.received.map(verified).find((b) => b.type === 'countersign.guard.cooldown_started')!;
    expect(cool.data).toMatchObject({ operator: 'admin', by: 'admin', reason: 'manual: eight hours on call', agent: null });

    const notified = await until('audited', async () => {
      const entries = (await s.engine.listAudit(s.admin, { type: 'notified', limit: 100 })).filter((e) => (e.data as any).event?.startsWith('guard.'));
      return entries.length >= 3 ? entries : undefined;
    });
    expect(notified.map((e) => (e.data as any).event).sort()).toEqual(['guard.agent_paused', 'guard.agent_resumed', 'guard.cooldown_started']);
  });

  it('an automatic cool-down is told once, when the approval that starts it commits', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url).replace('  notify: [hook]\n', '  notify: [hook]\n  cooldown: { threshold: 2 }\n'), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    for (const host of ['h1', 'h2']) {
      const { request } = await s.engine.createRequest(s.agent, CreateRequestBody.parse({ action: 'isolate_host', args: { host }, confidence: 0.82, riskLevel: 'high' }));
      await s.engine.review(s.admin, request.id, { verdict: 'approve' });
    }
    const { request } = await s.engine.createRequest(s.agent, CreateRequestBody.parse({ action: 'isolate_host', args: { host: 'h3' }, confidence: 0.82, riskLevel: 'high' }));
    await expect(s.engine.review(s.admin, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'COOLDOWN_ACTIVE' });
    const got = await until('cooldown_started', () => hook.received.map(verified).find((b) => b.type === 'countersign.guard.cooldown_started'));
    expect(got.data).toMatchObject({ operator: 'admin', by: 'countersign', reason: expect.stringContaining('2 approvals') });
    await new Promise((r) => setTimeout(r, 200));
    expect(hook.received.map(verified).filter((b) => b.type === 'countersign.guard.cooldown_started')).toHaveLength(1);
  });

  it('a slicing alert and the pause it causes are both told; alert text sits under agentSupplied', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url, 'agents:\n  demo-agent: { onSlicing: pause }\n'), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    const transfer = CreateRequestBody.parse({ action: 'wire_transfer', args: { to: 'acct-9', amount: 9_900 }, confidence: 0.9, context: { value: 9_900 } });
    for (let i = 0; i < 20; i++) {
      s.advance(90_000);
      try {
        await s.engine.createRequest(s.agent, transfer);
      } catch (err) {
        expect(err).toMatchObject({ code: 'AGENT_PAUSED' });
        break;
      }
    }
    const bodies = await until('alert and pause', () => {
      const b = hook.received.map(verified);
      return b.some((x) => x.type === 'countersign.guard.slicing_alert') && b.some((x) => x.type === 'countersign.guard.agent_paused') ? b : undefined;
    });
    const alert = bodies.find((b) => b.type === 'countersign.guard.slicing_alert')!;
    expect(alert.data).toMatchObject({ agent: s.agentName, response: 'pause', by: 'countersign', agentSuppliedLabel: 'Agent-supplied (unverified)' });
    expect(alert.data.agentSupplied.alerts.map((a: { type: string }) => a.type)).toContain('value_aggregation');
    expect(bodies.find((b) => b.type === 'countersign.guard.agent_paused')!.data.reason).toContain('value_aggregation');
  });
});

describe('guard notices through Slack, and configuration', () => {
  it('Slack gets a card with operator text as plain_text (never parsed) and no approve buttons', async () => {
    const api = await standIn(slackApi(SLACK_TOKEN));
    const s = await setup(`channels:\n  slack: { channel: C0123456789, apiUrl: "${api.apiUrl}" }\nguard:\n  notify: [slack]\n`, {
      COUNTERSIGN_SLACK_BOT_TOKEN: SLACK_TOKEN,
      COUNTERSIGN_SLACK_SIGNING_SECRET: 'unused-signing-secret',
    });
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 30, reason: HOSTILE });
    const call = await until('posted', () => api.received.find((c) => c.method === 'chat.postMessage'));
    const blocks = call.blocks as Array<{ type: string; text?: { type: string; text: string }; elements?: Array<{ action_id?: string }> }>;
    const reason = blocks.find((b) => b.text?.text.startsWith('Reason: '))!;
    expect(reason.text).toEqual({ type: 'plain_text', text: `Reason: ${HOSTILE}`, emoji: false });
    expect(JSON.stringify(blocks.filter((b) => b.text?.type === 'mrkdwn' || b.type === 'context'))).not.toContain('<!channel>');
    const buttons = blocks.flatMap((b) => b.elements ?? []).map((e) => e.action_id);
    expect(buttons).toEqual(['open']);
  });

  it('guard.notify may name only webhook or slack channels', async () => {
    const database = sqliteDatabase();
    const engine = await Engine.open({ connection: await connect(database.url) });
    cleanup.push(async () => {
      await engine.close();
      await database.drop();
    });
    engine.addPolicyCheck(channelPolicyCheck({ COUNTERSIGN_PAGERDUTY_ROUTING_KEY: 'R0UTINGKEY00000000000000000000000' }));
    await expect(engine.activatePolicy('channels:\n  pd: { type: pagerduty }\nguard:\n  notify: [pd]\n', 'test')).rejects.toMatchObject({
      code: 'POLICY_INVALID',
      details: { errors: [{ path: 'guard.notify[0]', message: expect.stringContaining('guard notices go to webhook or slack') }] },
    });
  });
});

describe('migration 005_guard_notices', () => {
  it('keeps the deliveries of a database made before it and then accepts guard notices (SQLite table rebuild)', async () => {
    const { default: Database } = await import('better-sqlite3');
    const { Kysely, Migrator, SqliteDialect } = await import('kysely');
    const { MIGRATIONS } = await import('../src/store/migrations.ts');
    const database = sqliteDatabase();
    const file = database.url.slice('sqlite:'.length);
    const raw = new Database(file);
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) });
    const before = Object.fromEntries(Object.entries(MIGRATIONS).filter(([name]) => name !== '005_guard_notices'));
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => before },
      migrationTableName: 'countersign_migrations',
      migrationLockTableName: 'countersign_migrations_lock',
      allowUnorderedMigrations: true,
    });
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    // One agent, one request (every NOT NULL column filled generically) and one delivery about it.
    const fill = (table: string, given: Record<string, unknown>) => {
      const cols = raw.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string; type: string; notnull: number }>;
      const row = Object.fromEntries(cols.filter((c) => c.notnull === 1).map((c) => [c.name, /int/i.test(c.type) ? 0 : 'x']));
      return { ...row, ...given };
    };
    await db.insertInto('agents').values(fill('agents', { id: 'agt_old', name: 'old-bot' })).execute();
    await db.insertInto('requests').values(fill('requests', { id: 'req_old', agent_id: 'agt_old' })).execute();
    await db
      .insertInto('deliveries')
      .values({ id: 'dlv_old', request_id: 'req_old', channel: 'hook', event: 'requested', status: 'delivered', attempts: 1, last_error: null, response: null, attempt_log: '[]', data: '{}', created_at: 1, updated_at: 1, finished_at: 1 })
      .execute();
    await expect(db.insertInto('deliveries').values({ id: 'dlv_null', request_id: null, channel: 'hook', event: 'guard.agent_paused', status: 'pending', attempts: 0, last_error: null, response: null, attempt_log: '[]', data: '{}', created_at: 1, updated_at: 1, finished_at: null }).execute()).rejects.toThrow(/NOT NULL/);
    await db.destroy();

    const engine = await Engine.open({ connection: await connect(database.url) });
    try {
      const kept = await engine.store.timers.getDelivery('dlv_old');
      expect(kept).toMatchObject({ request_id: 'req_old', channel: 'hook', status: 'delivered' });
      await engine.store.timers.insertDeliveries([{ ...kept!, id: 'dlv_guard', request_id: null, event: 'guard.agent_paused' }]);
      expect((await engine.store.timers.getDelivery('dlv_guard'))?.request_id).toBeNull();
      expect(await engine.store.timers.listDeliveries({ requestId: 'req_old', limit: 10 })).toHaveLength(1);
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

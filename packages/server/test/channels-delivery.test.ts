/**
 * Deliveries end to end, in process: engine → timers → scheduler → notifier → channel →
 * stand-in. Durable retries with backoff (a receiver failing three times gets one delivery,
 * with every attempt recorded), a channel that is down (creation unaffected, the delivery ends
 * failed and visible), notifications following escalation and decision, and Slack button
 * clicks (signature, tolerance, replay, user mapping, the card updated after the decision).
 */
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Command } from 'commander';
import { Webhook } from 'standardwebhooks';
import { CreateRequestBody, type ApprovalRequest } from '@countersign/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { registerClientCommands } from '../src/cli/commands/index.ts';
import { Notifier } from '../src/channels/notifier.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { slackSignature } from '../src/channels/slack-actions.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { createApp } from '../src/http/app.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { slackApi, webhookReceiver, type StandIn } from './support/channel-standins.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';

const SECRET = `whsec_${Buffer.from('another-32-byte-signing-key-here').toString('base64')}`;
const SLACK_TOKEN = 'xoxb-delivery-test';
const SIGNING = 'slack-signing-secret-for-tests';
const QUEUED = CreateRequestBody.parse({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 });

interface Setup {
  engine: Engine;
  scheduler: Scheduler;
  channels: ChannelRegistry;
  agent: Principal;
  admin: Principal;
  adminToken: string;
  database: TestDatabase;
}

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup(policy: string, env: Record<string, string>): Promise<Setup> {
  const database = sqliteDatabase();
  const engine = await Engine.open({ connection: await connect(database.url) });
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
  return {
    engine,
    scheduler,
    channels,
    database,
    agent: (await engine.authenticate(boot.agentKey))!,
    admin: (await engine.authenticate(boot.adminToken))!,
    adminToken: boot.adminToken,
  };
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

async function standIn<T extends StandIn<unknown>>(make: Promise<T>): Promise<T> {
  const s = await make;
  cleanup.push(s.close);
  return s;
}

describe('webhook deliveries: signed, durable, retried with backoff', () => {
  it('a receiver answering 500 three times then 200 gets one delivery; the retries are recorded', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(
      `escalation:\n  levels: [{ role: lead, after: sla, notify: [hook] }]\nchannels:\n  hook: { type: webhook, url: "${hook.url}", retry: { attempts: 5, backoff: 100ms } }\n`,
      { COUNTERSIGN_WEBHOOK_SECRET: SECRET },
    );
    hook.failNext(500, 500, 500);
    const { request } = await s.engine.createRequest(s.agent, QUEUED);
    const [delivery] = await until('delivered', async () => {
      const page = await s.engine.listDeliveries(s.admin, { requestId: request.id, status: 'delivered' });
      return page.items.length > 0 ? page.items : undefined;
    });
    expect(delivery).toMatchObject({ channel: 'hook', event: 'requested', status: 'delivered', attempts: 4, lastError: 'webhook hook answered HTTP 500: server error' });
    expect(delivery!.attemptLog.map((a) => a.ok)).toEqual([false, false, false, true]);

    expect(hook.received).toHaveLength(4);
    const ids = new Set(hook.received.map((r) => r.headers['webhook-id']));
    expect(ids).toEqual(new Set([delivery!.id])); // one id across retries: receivers can drop duplicates
    for (const r of hook.received) {
      const headers = { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
      const payload = new Webhook(SECRET).verify(r.body, headers) as { type: string; data: { requestId: string } };
      expect(payload).toMatchObject({ type: 'countersign.request.requested', data: { requestId: request.id } });
    }
    expect(() => new Webhook(SECRET).verify(hook.received[0]!.body.replace('isolate_host', 'delete_data'), {
      'webhook-id': String(hook.received[0]!.headers['webhook-id']),
      'webhook-timestamp': String(hook.received[0]!.headers['webhook-timestamp']),
      'webhook-signature': String(hook.received[0]!.headers['webhook-signature']),
    })).toThrow();
    // Backoff: each wait at least half the doubled delay (100, 200, 400 ms → ≥ 50, 100, 200).
    const gaps = hook.received.slice(1).map((r, i) => r.at - hook.received[i]!.at);
    expect(gaps[0]).toBeGreaterThanOrEqual(45);
    expect(gaps[1]).toBeGreaterThanOrEqual(95);
    expect(gaps[2]).toBeGreaterThanOrEqual(195);

    const audit = (await s.engine.auditForRequest(s.admin, request.id)).filter((e) => e.type === 'notified' || e.type === 'delivery_failed');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ type: 'notified', actor: { type: 'system' }, data: { channel: 'hook', event: 'requested', attempts: 4 } });
  });

  it('a channel that is down never holds up or fails creation; the delivery ends failed and visible', async () => {
    const gone = await webhookReceiver();
    await gone.close(); // a port nothing listens on any more
    const s = await setup(
      `escalation:\n  levels: [{ role: lead, after: sla, notify: [down] }]\nchannels:\n  down: { type: webhook, url: "${gone.url}", retry: { attempts: 3, backoff: 50ms }, timeout: 1s }\n`,
      { COUNTERSIGN_WEBHOOK_SECRET: SECRET },
    );
    const started = Date.now();
    const { request } = await s.engine.createRequest(s.agent, QUEUED);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(request.status).toBe('pending');
    const [failed] = await until('failed', async () => {
      const page = await s.engine.listDeliveries(s.admin, { status: 'failed' });
      return page.items.length > 0 ? page.items : undefined;
    });
    expect(failed).toMatchObject({ requestId: request.id, channel: 'down', status: 'failed', attempts: 3 });
    expect(failed!.lastError).toMatch(/webhook down: (ECONNREFUSED|timed out)/);
    const types = (await s.engine.auditForRequest(s.admin, request.id)).map((e) => e.type);
    expect(types).toEqual(['created', 'queued', 'delivery_failed']);
    expect((await s.engine.getRequest(s.admin, request.id)).status).toBe('pending');

    // …and the CLI lists it, over HTTP like any client.
    const app = createApp({ engine: s.engine, channels: s.channels, log: () => {} });
    const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise((r) => server.once('listening', r));
    cleanup.push(() => new Promise((r) => server.close(() => r())));
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += chunk.toString()), true));
    try {
      const cli = new Command().name('countersign').exitOverride();
      registerClientCommands(cli);
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      await cli.parseAsync(['node', 'countersign', 'deliveries', '--status', 'failed', '--url', url, '--token', s.adminToken]);
    } finally {
      spy.mockRestore();
    }
    const [header, row] = out.split('\n');
    expect(header).toMatch(/^ID\s+REQUEST\s+CHANNEL\s+EVENT\s+STATUS\s+TRIES\s+WHEN\s+LAST ERROR$/);
    expect(row).toMatch(new RegExp(`^${failed!.id}\\s+${request.id}\\s+down\\s+requested\\s+FAILED\\s+3\\s+.*webhook down`));
  });

  it('escalation tells the next level’s channels; the decision reaches every channel told so far', async () => {
    const leads = await standIn(webhookReceiver());
    const managers = await standIn(webhookReceiver());
    const s = await setup(
      `levels: { high: { sla: 1s } }\nescalation:\n  levels:\n    - { role: lead, after: sla, notify: [leads] }\n    - { role: manager, after: 1h, notify: [managers] }\nchannels:\n  leads: { type: webhook, url: "${leads.url}" }\n  managers: { type: webhook, url: "${managers.url}" }\n`,
      { COUNTERSIGN_WEBHOOK_SECRET: SECRET },
    );
    const { request } = await s.engine.createRequest(s.agent, QUEUED);
    const type = (r: { body: string }) => (JSON.parse(r.body) as { type: string }).type;
    await until('escalated to managers', () => managers.received.length === 1 || undefined, 5_000);
    expect(type(managers.received[0]!)).toBe('countersign.request.escalated');
    expect(leads.received.map(type)).toEqual(['countersign.request.requested']);
    await s.engine.review(s.admin, request.id, { verdict: 'reject', reason: 'wrong host' });
    await until('decided everywhere', () => (leads.received.length === 2 && managers.received.length === 2) || undefined);
    for (const r of [leads.received[1]!, managers.received[1]!]) {
      expect(JSON.parse(r.body)).toMatchObject({ type: 'countersign.request.decided', data: { status: 'rejected', actions: [], decision: { outcome: 'rejected', by: 'admin', reason: 'wrong host' } } });
    }
  });

  it('refuses a policy whose channels are wrong, naming each key', async () => {
    const s = await setup('escalation:\n  levels: [{ role: lead, after: sla }]\n', {});
    const err = await s.engine
      .activatePolicy(
        `escalation:\n  levels: [{ role: lead, after: sla, notify: [hook, nowhere] }]\nchannels:\n  hook: { type: webhook, url: "ftp://x", secret: whsec_abc }\n  mystery: { url: "https://x" }\n`,
        'bad.yaml',
      )
      .catch((e: { code: string; details: { errors: Array<{ path: string }> } }) => e);
    expect((err as { code: string }).code).toBe('POLICY_INVALID');
    expect((err as { details: { errors: Array<{ path: string }> } }).details.errors.map((e) => e.path).sort()).toEqual(
      ['channels.hook.secret', 'channels.hook.url', 'channels.mystery.type', 'escalation.levels[0].notify[1]'].sort(),
    );
  });
});

describe('Slack: card, signed button clicks, card updated after the decision', () => {
  async function slackSetup() {
    const api = await standIn(slackApi(SLACK_TOKEN));
    const s = await setup(
      `escalation:\n  levels: [{ role: lead, after: sla, notify: [slack] }]\nchannels:\n  slack: { channel: C0123456789, apiUrl: "${api.apiUrl}", users: { U0ALICE1: alice, U0GHOST1: ghost } }\n`,
      { COUNTERSIGN_SLACK_BOT_TOKEN: SLACK_TOKEN, COUNTERSIGN_SLACK_SIGNING_SECRET: SIGNING },
    );
    await s.engine.createOperator(s.admin, { name: 'alice', roles: ['lead'] });
    const app = createApp({ engine: s.engine, channels: s.channels, log: () => {} });
    const click = (body: string, ts = Math.floor(Date.now() / 1000), signature = slackSignature(SIGNING, String(ts), body)) =>
      app.request('/v1/integrations/slack/actions', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': String(ts), 'x-slack-signature': signature },
        body,
      });
    const form = (user: string, actionId: string, requestId: string) =>
      new URLSearchParams({
        payload: JSON.stringify({
          type: 'block_actions',
          user: { id: user, username: user.toLowerCase(), team_id: 'T0TEAM' },
          container: { type: 'message', channel_id: 'C0123456789' },
          actions: [{ type: 'button', action_id: actionId, block_id: `countersign:${requestId}`, value: requestId, action_ts: String(Date.now() / 1000) }],
        }),
      }).toString();
    return { api, s, click, form };
  }

  it('refuses bad, stale and replayed signatures and unmapped users (nothing changes); a valid click decides as the mapped operator', async () => {
    const { api, s, click, form } = await slackSetup();
    const { request } = await s.engine.createRequest(s.agent, QUEUED);
    const posted = await until('card posted', () => api.received.find((c) => c.method === 'chat.postMessage'));
    expect(posted.args['channel']).toBe('C0123456789');
    const approve = form('U0ALICE1', 'approve', request.id);

    const bad = await click(approve, undefined, 'v0=' + '0'.repeat(64));
    expect(bad.status).toBe(401);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('BAD_SIGNATURE');
    const tampered = await click(approve.replace('approve', 'reject'), undefined, slackSignature(SIGNING, String(Math.floor(Date.now() / 1000)), approve));
    expect(tampered.status).toBe(401);
    const stale = await click(approve, Math.floor(Date.now() / 1000) - 301);
    expect(stale.status).toBe(401);
    const future = await click(approve, Math.floor(Date.now() / 1000) + 301);
    expect(future.status).toBe(401);
    const nobody = await click(form('U0NOBODY', 'approve', request.id));
    expect(nobody.status).toBe(403);
    const ghost = await click(form('U0GHOST1', 'approve', request.id));
    expect(ghost.status).toBe(403); // mapped to an operator who does not exist
    expect((await s.engine.getRequest(s.admin, request.id)).status).toBe('pending');
    expect((await s.engine.auditForRequest(s.admin, request.id)).map((e) => e.type)).not.toContain('reviewed');

    const ts = Math.floor(Date.now() / 1000);
    const ok = await click(approve, ts);
    expect(ok.status).toBe(200);
    const decided = await s.engine.getRequest(s.admin, request.id);
    expect(decided.status).toBe('approved');
    expect(decided.decision?.deciders.map((d) => d.name)).toEqual(['alice']);
    const reviewed = (await s.engine.auditForRequest(s.admin, request.id)).find((e) => e.type === 'reviewed')!;
    expect(reviewed).toMatchObject({ actor: { type: 'operator', name: 'alice' }, data: { verdict: 'approve', reason: 'via Slack (user U0ALICE1)' } });

    const replay = await click(approve, ts);
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { error: { message: string } }).error.message).toContain('replay');

    const update = await until('card updated', () => api.received.find((c) => c.method === 'chat.update'));
    expect(update.args['ts']).toBe('1700000000.000001');
    expect(update.args['channel']).toBe('C0123456789');
    expect(JSON.stringify(update.blocks)).toContain('approved by alice');
    expect(update.blocks.some((b) => b.type === 'actions' && (b.elements as unknown[]).length > 1)).toBe(false);
  });

  it('reject and alternatives go through the same engine path (eligibility included)', async () => {
    const { s, click, form } = await slackSetup();
    const withAlt = CreateRequestBody.parse({ ...QUEUED, alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: '/tmp/x' } }] });
    const one = (await s.engine.createRequest(s.agent, withAlt)).request;
    expect((await click(form('U0ALICE1', 'alternative:quarantine', one.id))).status).toBe(200);
    const after: ApprovalRequest = await s.engine.getRequest(s.admin, one.id);
    expect(after.decision).toMatchObject({ outcome: 'approved', alternative: 'quarantine', action: 'quarantine_file' });

    const two = (await s.engine.createRequest(s.agent, { ...QUEUED, args: { host: 'ws-2' } })).request;
    expect((await click(form('U0ALICE1', 'reject', two.id))).status).toBe(200);
    expect((await s.engine.getRequest(s.admin, two.id)).decision).toMatchObject({ outcome: 'rejected', reason: 'rejected in Slack; via Slack (user U0ALICE1)' });

    const again = await click(form('U0ALICE1', 'approve', two.id));
    expect(again.status).toBe(409);
  });
});

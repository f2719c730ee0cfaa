/**
 * Red-team review of the ticketing decisions (issue 18, branch itsm). Each test is a defect
 * found in review and fails until it is fixed; see the report for severity.
 *
 * 1. Attribution: a ticket's state is judged from the whole record / issue as it is now, and the
 *    acting user is whoever touched it last (`sys_updated_by`, the webhook's `user`). So a state
 *    set by someone who is not mapped (refused, nothing claimed) becomes an approval by the next
 *    mapped operator who edits anything else on that ticket — a work note, a description. The
 *    operator never approved.
 * 2. Polling stalls: `sys_updated_on>=cursor` with 100 rows a round and the cursor advanced only
 *    to the newest row seen; 100 records with a correlation id `req_…` updated in the same second
 *    pin the cursor there forever, and no later change (a real approval) is ever seen by polling.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { Notifier } from '../src/channels/notifier.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { jiraSignature, serviceNowSignature, ServiceNowPoller } from '../src/channels/tickets.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { createApp } from '../src/http/app.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { jiraCloud, serviceNowTable, snTime, type JiraStandIn, type ServiceNowStandIn } from './support/itsm-standins.ts';

const SN_SECRET = 'servicenow-callback-secret-for-review';
const JIRA_SECRET = 'jira-webhook-secret-for-review';
const JIRA_ALICE = '5b10ac8d82e05b22cc7d4ef5';
const JIRA_MALLORY = '712020:mallory-not-mapped';
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: 1e9, perDay: 1e9 }, cooldown: { ...DEFAULT_COOLDOWN, threshold: 1e9 } };

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('review: ticket decisions (itsm)', () => {
  let database: TestDatabase;
  let engine: Engine;
  let channels: ChannelRegistry;
  let scheduler: Scheduler;
  let sn: ServiceNowStandIn;
  let jira: JiraStandIn;
  let server: ServerType;
  let base: string;
  let admin: Principal;
  let agent: Principal;
  let n = 0;
  let hookSeq = 0;

  const create = async (body: Record<string, unknown> = {}) =>
    (await engine.createRequest(agent, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: `r${n}` }, confidence: 0.9, ...body, idempotencyKey: `rk${n++}-${Date.now()}` }))).request;
  const ticketOf = async (requestId: string, channel: string) =>
    until(`${channel} ticket for ${requestId}`, async () => {
      const rows = await engine.store.timers.listDeliveries({ requestId, channel, status: 'delivered', limit: 10 });
      const opened = rows.map((d) => (d.response === null ? null : (JSON.parse(d.response) as { ticket?: { id: string; key: string } }))).find((r) => r?.ticket);
      return opened?.ticket;
    });
  const jiraHook = async (channel: string, payload: Record<string, unknown>, options: { raw?: string; identifier?: string } = {}) => {
    const body = options.raw ?? JSON.stringify(payload);
    const res = await fetch(`${base}/v1/integrations/jira/${channel}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hub-signature': jiraSignature(JIRA_SECRET, body), 'x-atlassian-webhook-identifier': options.identifier ?? `rv-${++hookSeq}-${Date.now()}` },
      body,
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  /** The business rule's signed POST of the record (tickets.ts: `sha256=` HMAC of "{timestamp}.{body}"). */
  const snCallback = async (record: Record<string, string>) => {
    const body = JSON.stringify(record);
    const ts = String(Math.floor(Date.now() / 1000));
    const res = await fetch(`${base}/v1/integrations/servicenow/snow`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-countersign-timestamp': ts, 'x-countersign-signature': serviceNowSignature(SN_SECRET, ts, body) },
      body,
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  /** Jira Cloud's `jira:issue_updated`: the issue as it is now, who made this change, and what this change was (changelog). */
  const issueUpdated = (issue: { id: string; key: string }, status: string, requestId: string, accountId: string, items: Array<Record<string, string>>, updated: string) => ({
    timestamp: Date.now(),
    webhookEvent: 'jira:issue_updated',
    issue_event_type_name: 'issue_generic',
    user: { accountId, accountType: 'atlassian' },
    issue: { id: issue.id, key: issue.key, fields: { status: { name: status }, labels: ['countersign', `countersign-${requestId}`], updated } },
    changelog: { id: String(1000 + hookSeq), items },
  });

  beforeAll(async () => {
    sn = await serviceNowTable({ user: 'countersign.integration', password: 'sn-password' });
    jira = await jiraCloud({ email: 'bot@example.com', apiToken: 'jira-api-token' });
    const env = {
      COUNTERSIGN_SERVICENOW_USER: 'countersign.integration',
      COUNTERSIGN_SERVICENOW_PASSWORD: 'sn-password',
      COUNTERSIGN_SERVICENOW_CALLBACK_SECRET: SN_SECRET,
      COUNTERSIGN_JIRA_EMAIL: 'bot@example.com',
      COUNTERSIGN_JIRA_API_TOKEN: 'jira-api-token',
      COUNTERSIGN_JIRA_WEBHOOK_SECRET: JIRA_SECRET,
    };
    const policy = `
escalation:
  levels: [{ role: lead, after: sla, notify: [snow, jira] }]
channels:
  snow: { type: servicenow, instanceUrl: "${sn.url}", table: change_request, poll: 1h, users: { jdoe: alice }, decide: { approve: [approved], reject: [rejected] } }
  jira: { type: jira, url: "${jira.url}", project: SEC, users: { "${JIRA_ALICE}": alice }, decide: { approve: [Done], reject: ["Won't Do"] } }
rules:
  - name: keys-reviewed
    when: { action: [rotate_keys] }
    then: { review: true }
`;
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS });
    engine.addPolicyCheck(channelPolicyCheck(env));
    await engine.activatePolicy(policy, 'test');
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
    await engine.createOperator(admin, { name: 'alice', roles: ['lead'] });
    channels = new ChannelRegistry(engine, env);
    scheduler = new Scheduler(engine, { intervalMs: 20, deliver: new Notifier(engine, channels, { reviewBase: 'https://cs.example.com' }).deliver, onError: (e) => console.error(e) });
    scheduler.start();
    const app = createApp({ engine, channels, log: () => {} });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await scheduler.stop();
    await channels.close();
    await engine.close();
    await database.drop();
    await sn.close();
    await jira.close();
  });

  it('Jira: an unmapped user moves the issue to Done (refused); alice then edits only its description — that is not an approval by alice', async () => {
    const request = await create();
    const issue = await ticketOf(request.id, 'jira');
    const t0 = Date.now();
    // Mallory (not mapped) makes the deciding transition: refused, as it should be.
    const byMallory = await jiraHook('jira', issueUpdated(issue, 'Done', request.id, JIRA_MALLORY, [{ field: 'status', fieldtype: 'jira', fromString: 'To Do', toString: 'Done' }], new Date(t0).toISOString()));
    expect(byMallory.status).toBe(403);
    // Alice fixes a typo in the description. The issue's status is still Done, but this change is not a status change.
    const byAlice = await jiraHook('jira', issueUpdated(issue, 'Done', request.id, JIRA_ALICE, [{ field: 'description', fieldtype: 'jira', fromString: 'old', toString: 'new' }], new Date(t0 + 5_000).toISOString()));
    expect(byAlice.json.decided).not.toBe(true);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.reviews).toEqual([]);
  });

  it('ServiceNow polling: an unmapped user approves the change (refused); jdoe then only adds a work note — that is not an approval by alice', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    const errors: string[] = [];
    const watched = new ServiceNowPoller(engine, channels, (e) => errors.push((e as Error).message));
    const now = Date.now();
    sn.update(change.id, { approval: 'approved' }, 'mallory', now);
    await watched.round(true);
    expect(errors.join('\n')).toContain('mallory'); // refused: mallory is not mapped
    expect((await engine.getRequest(admin, request.id)).status).toBe('pending');
    // jdoe comments on the change request; its approval field is untouched (still mallory's "approved").
    sn.update(change.id, { work_notes_log: 'looking into this\n' }, 'jdoe', now + 2_000);
    await watched.round(true);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.reviews).toEqual([]);
  });

  it('ServiceNow callback: an unmapped user approves (refused); the business rule then posts the record after jdoe only adds a work note — not an approval by alice', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    const now = Date.now();
    const pick = (r: Record<string, string>) => ({ sys_id: r['sys_id']!, number: r['number']!, correlation_id: r['correlation_id']!, approval: r['approval']!, sys_updated_on: r['sys_updated_on']!, sys_updated_by: r['sys_updated_by']! });
    const byMallory = await snCallback(pick(sn.update(change.id, { approval: 'approved' }, 'mallory', now)));
    expect(byMallory.status).toBe(403);
    const byJdoe = await snCallback(pick(sn.update(change.id, { work_notes_log: 'checking\n' }, 'jdoe', now + 2_000)));
    expect(byJdoe.json.decided).not.toBe(true);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.reviews).toEqual([]);
  });

  it('Jira: the same signed webhook body sent again under a new X-Atlassian-Webhook-Identifier (an unsigned header) is refused as a replay', async () => {
    const request = await create();
    const issue = await ticketOf(request.id, 'jira');
    // A non-deciding change, so the state claim in ticketState is not what stops the second one.
    const raw = JSON.stringify(issueUpdated(issue, 'In Progress', request.id, JIRA_ALICE, [{ field: 'status', fieldtype: 'jira', fromString: 'To Do', toString: 'In Progress' }], new Date().toISOString()));
    const first = await jiraHook('jira', {}, { raw, identifier: 'atl-delivery-1' });
    expect(first.status).toBe(200);
    const again = await jiraHook('jira', {}, { raw, identifier: 'atl-delivery-2-attacker-chosen' });
    expect(again.status).toBe(401);
  });

  it('ServiceNow polling: 100 correlation-id records updated in one second do not stop polling from ever seeing a later approval', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    const poller = new ServiceNowPoller(engine, channels);
    // Any ServiceNow user who can write change requests (or a bulk update) stamps 100 of them in the same second.
    const burst = snTime(Date.now() - 30_000);
    for (let i = 0; i < 100; i++) {
      const id = randomBytes(16).toString('hex');
      sn.records.set(id, { sys_id: id, number: `CHG9${String(i).padStart(6, '0')}`, sys_class_name: 'change_request', approval: 'requested', correlation_id: `req_${'0'.repeat(20)}${String(i).padStart(6, '0')}`, sys_updated_on: burst, sys_updated_by: 'bulk.script' });
    }
    await poller.round(true);
    // Then jdoe (alice) approves the real change request, a few seconds later.
    sn.update(change.id, { approval: 'approved' }, 'jdoe', Date.now());
    for (let i = 0; i < 3; i++) await poller.round(true);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('approved');
    for (const [id, r] of sn.records) if (r['sys_updated_by'] === 'bulk.script') sn.records.delete(id);
  });
});

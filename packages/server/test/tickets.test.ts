/**
 * Ticketing (issue 18), end to end on SQLite and PostgreSQL with the real scheduler, notifier and
 * HTTP listener: a request opens a ServiceNow change request and a Jira issue through the
 * durable deliveries; the decision is written back (PATCH with approval and a work note; a Jira
 * transition with a comment); ticket state comes back through ServiceNow's signed callback, its
 * polling by sys_updated_on, and Jira's webhook (X-Hub-Signature). A ticket decides only when the
 * channel's `decide:` allows it and the acting user maps to an operator, and then only through
 * the gate. Attacks: bad and stale signatures, replays, unmapped users, a ticket of another
 * request, a ticket "approved" on a mirror-only channel, oversized bodies.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
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
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { jiraCloud, serviceNowTable, type JiraStandIn, type ServiceNowStandIn } from './support/itsm-standins.ts';

const SN_SECRET = 'servicenow-callback-secret-for-tests';
const JIRA_SECRET = 'jira-webhook-secret-for-tests';
const JIRA_ALICE = '5b10ac8d82e05b22cc7d4ef5';
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

describe.each(ENGINES)('ticketing on $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let channels: ChannelRegistry;
  let scheduler: Scheduler;
  let poller: ServiceNowPoller;
  let sn: ServiceNowStandIn;
  let jira: JiraStandIn;
  let server: ServerType;
  let base: string;
  let admin: Principal;
  let agent: Principal;
  let bob: Principal;
  let n = 0;
  let hookSeq = 0;

  const create = async (body: Record<string, unknown> = {}) =>
    (await engine.createRequest(agent, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: `s${n}` }, confidence: 0.9, ...body, idempotencyKey: `k${n++}-${Date.now()}` }))).request;
  const ticketOf = async (requestId: string, channel: string) =>
    until(`${channel} ticket for ${requestId}`, async () => {
      const rows = await engine.store.timers.listDeliveries({ requestId, channel, status: 'delivered', limit: 10 });
      const opened = rows.map((d) => (d.response === null ? null : (JSON.parse(d.response) as { ticket?: { id: string; key: string } }))).find((r) => r?.ticket);
      return opened?.ticket;
    });
  const snCallback = async (channel: string, record: Record<string, string>, options: { secret?: string; ts?: number; raw?: string; signature?: string } = {}) => {
    const body = options.raw ?? JSON.stringify(record);
    const ts = String(options.ts ?? Math.floor(Date.now() / 1000));
    const res = await fetch(`${base}/v1/integrations/servicenow/${channel}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-countersign-timestamp': ts, 'x-countersign-signature': options.signature ?? serviceNowSignature(options.secret ?? SN_SECRET, ts, body) },
      body,
    });
    return { status: res.status, json: (await res.json()) as any, signature: options.signature ?? serviceNowSignature(options.secret ?? SN_SECRET, ts, body), ts };
  };
  const jiraHook = async (channel: string, payload: Record<string, unknown>, options: { secret?: string; identifier?: string; raw?: string } = {}) => {
    const body = options.raw ?? JSON.stringify(payload);
    const res = await fetch(`${base}/v1/integrations/jira/${channel}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hub-signature': jiraSignature(options.secret ?? JIRA_SECRET, body), 'x-atlassian-webhook-identifier': options.identifier ?? `wh-${++hookSeq}-${Date.now()}` },
      body,
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const issueUpdated = (issue: { id: string; key: string }, status: string, requestId: string, accountId = JIRA_ALICE) => ({
    timestamp: Date.now(),
    webhookEvent: 'jira:issue_updated',
    issue_event_type_name: 'issue_generic',
    user: { accountId, displayName: 'Alice', accountType: 'atlassian' },
    issue: { id: issue.id, key: issue.key, fields: { status: { name: status }, labels: ['countersign', `countersign-${requestId}`], updated: new Date().toISOString() } },
    changelog: { id: String(hookSeq), items: [{ field: 'status', fieldtype: 'jira', fromString: 'To Do', toString: status }] },
  });
  /** `user` sets the change request's approval in ServiceNow (so sys_audit records who did), and the business rule's record of it. */
  const snRecord = (requestId: string, ticket: { id: string; key: string }, approval: string, user = 'jdoe') => {
    const record = sn.update(ticket.id, { approval }, user);
    return { sys_id: ticket.id, number: ticket.key, correlation_id: requestId, approval, sys_updated_on: record['sys_updated_on']!, sys_updated_by: user };
  };
  const unchanged = async (id: string) => {
    const after = await engine.getRequest(admin, id);
    expect(after.status).toBe('pending');
    expect(after.reviews).toEqual([]);
  };

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
  levels: [{ role: lead, after: sla, notify: [snow, snowmirror, jira, jiramirror] }]
channels:
  snow: { type: servicenow, instanceUrl: "${sn.url}", table: change_request, poll: 1h, users: { jdoe: alice, ghost.user: ghost }, decide: { approve: [approved], reject: [rejected] } }
  snowmirror: { type: servicenow, instanceUrl: "${sn.url}", users: { jdoe: alice } }
  jira: { type: jira, url: "${jira.url}", project: SEC, users: { "${JIRA_ALICE}": alice }, decide: { approve: [Done], reject: ["Won't Do"] } }
  jiramirror: { type: jira, url: "${jira.url}", project: SEC, users: { "${JIRA_ALICE}": alice } }
rules:
  - name: keys-reviewed
    when: { action: [rotate_keys] }
    then: { review: true }
  - name: two-for-wipes
    when: { action: [wipe_cache] }
    then: { approvals: 2 }
  - name: critical-delete
    when: { action: [delete_data] }
    then: { riskAtLeast: critical }
`;
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS });
    engine.addPolicyCheck(channelPolicyCheck(env));
    await engine.activatePolicy(policy, 'test');
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
    await engine.createOperator(admin, { name: 'alice', roles: ['lead'] });
    bob = (await engine.authenticate((await engine.createOperator(admin, { name: 'bob', roles: ['lead'] })).token))!;
    channels = new ChannelRegistry(engine, env);
    scheduler = new Scheduler(engine, { intervalMs: 20, deliver: new Notifier(engine, channels, { reviewBase: 'https://cs.example.com' }).deliver, onError: (e) => console.error(e) });
    scheduler.start();
    poller = new ServiceNowPoller(engine, channels);
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

  it('a request opens a change request and a Jira issue; a ServiceNow approval by a mapped user decides through the gate; the decision is written back to both', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    const issue = await ticketOf(request.id, 'jira');
    expect(sn.records.get(change.id)).toMatchObject({ sys_class_name: 'change_request', correlation_id: request.id, approval: 'requested' });
    expect(jira.issues.get(issue.key)!.fields['labels']).toContain(`countersign-${request.id}`);

    // The ServiceNow user jdoe approves the change; the business rule posts the record, signed.
    const record = sn.update(change.id, { approval: 'approved' }, 'jdoe');
    const res = await snCallback('snow', record);
    expect(res).toMatchObject({ status: 200, json: { decided: true, requestId: request.id, status: 'approved' } });
    const after = await engine.getRequest(admin, request.id);
    expect(after.reviews).toMatchObject([{ reviewer: { name: 'alice' }, verdict: 'approve', reason: `via ServiceNow ${change.key} (user jdoe)` }]);

    // Written back: the change request's approval and a work note; the Jira issue transitioned with a comment.
    await until('work note', () => sn.records.get(change.id)!['work_notes_log']?.includes('approved by alice'));
    await until('jira transition', () => jira.issues.get(issue.key)!.status === 'Done');
    expect(sn.calls.find((c) => c.method === 'PATCH' && c.path.endsWith(change.id))!.body).toMatchObject({ approval: 'approved' });
    expect(JSON.stringify(jira.issues.get(issue.key)!.comments)).toContain('approved by alice');
  });

  it('a Jira status change by a mapped user decides through the gate (reject)', async () => {
    const request = await create();
    const issue = await ticketOf(request.id, 'jira');
    const res = await jiraHook('jira', issueUpdated(issue, "Won't Do", request.id));
    expect(res).toMatchObject({ status: 200, json: { decided: true, status: 'rejected' } });
    const after = await engine.getRequest(admin, request.id);
    expect(after.reviews[0]).toMatchObject({ verdict: 'reject', reason: `rejected in Jira; via Jira ${issue.key} (user ${JIRA_ALICE})` });
  });

  it('polling sys_updated_on follows a change made in ServiceNow, and acts on it once', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    sn.update(change.id, { approval: 'rejected' }, 'jdoe');
    await poller.round(true);
    await poller.round(true); // the same change seen again: no second vote, no refusal
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('rejected');
    expect(after.reviews).toHaveLength(1);
    expect(sn.calls.some((c) => c.method === 'GET' && decodeURIComponent(c.query).includes('sys_updated_on>'))).toBe(true);
    // Credited to who set the approval, as sys_audit records it (not whoever edited the record last).
    expect(sn.calls.some((c) => c.method === 'GET' && c.path.endsWith('/sys_audit') && decodeURIComponent(c.query).includes(`documentkey=${change.id}^fieldname=approval`))).toBe(true);
    const refused = (await engine.listAudit(admin, { limit: 1000, type: 'review_refused' })) as unknown as { items?: unknown[] } | unknown[];
    expect(JSON.stringify(refused)).not.toContain(request.id);
  });

  it('a ticket "approved" on a channel whose policy does not let tickets decide changes nothing', async () => {
    const request = await create();
    const mirror = await ticketOf(request.id, 'snowmirror');
    const res = await snCallback('snowmirror', { ...snRecord(request.id, mirror, 'approved'), state: '3' }, { secret: SN_SECRET });
    expect(res.status).toBe(200);
    expect(res.json.decided).toBe(false);
    expect(res.json.why).toContain('mirrors only');
    const issue = await ticketOf(request.id, 'jiramirror');
    const hook = await jiraHook('jiramirror', issueUpdated(issue, 'Done', request.id));
    expect(hook.json).toMatchObject({ decided: false });
    await unchanged(request.id);
  });

  it('refuses bad signatures, stale timestamps and replays (401), changing nothing', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    const issue = await ticketOf(request.id, 'jira');
    const approve = snRecord(request.id, change, 'approved');
    expect((await snCallback('snow', approve, { secret: 'not-the-secret' })).json.error.code).toBe('BAD_SIGNATURE');
    expect((await snCallback('snow', approve, { ts: Math.floor(Date.now() / 1000) - 600 })).status).toBe(401);
    // The body changed after signing:
    const signed = await snCallback('snow', { ...approve, approval: 'requested' });
    expect(signed.json.decided).toBe(false);
    const tampered = await snCallback('snow', approve, { signature: signed.signature, ts: Number(signed.ts) });
    expect(tampered.status).toBe(401);
    // The same signed callback twice:
    const replayed = await snCallback('snow', { ...approve, approval: 'requested' }, { signature: signed.signature, ts: Number(signed.ts) });
    expect(replayed).toMatchObject({ status: 401, json: { error: { code: 'BAD_SIGNATURE' } } });
    expect(replayed.json.error.message).toContain('replay');

    const payload = issueUpdated(issue, 'Done', request.id);
    expect((await jiraHook('jira', payload, { secret: 'wrong' })).status).toBe(401);
    expect((await jiraHook('jira', { ...payload, timestamp: Date.now() - 2 * 3600_000 })).status).toBe(401);
    // A non-deciding change (the changelog moves the status to In Progress), then the same signed body again:
    // a replay whatever X-Atlassian-Webhook-Identifier (unsigned) says.
    const progress = JSON.stringify({ ...payload, issue: { ...payload.issue, fields: { ...payload.issue.fields, status: { name: 'In Progress' } } }, changelog: { id: 'cl-progress', items: [{ field: 'status', fieldtype: 'jira', fromString: 'To Do', toString: 'In Progress' }] } });
    const once = await jiraHook('jira', {}, { raw: progress, identifier: 'wh-fixed-1' });
    expect(once.json.decided).toBe(false);
    const again = await jiraHook('jira', {}, { raw: progress, identifier: 'wh-fixed-2' });
    expect(again.status).toBe(401);
    expect(again.json.error.message).toContain('replay');
    await unchanged(request.id);
  });

  it('refuses unmapped users, operators who do not exist, and a ticket of another request (403)', async () => {
    const request = await create();
    const other = await create();
    const change = await ticketOf(request.id, 'snow');
    const issue = await ticketOf(request.id, 'jira');
    expect((await snCallback('snow', snRecord(request.id, change, 'approved', 'mallory'))).json.error.code).toBe('FORBIDDEN');
    expect((await snCallback('snow', snRecord(request.id, change, 'approved', 'ghost.user'))).json.error.code).toBe('FORBIDDEN');
    expect((await jiraHook('jira', issueUpdated(issue, 'Done', request.id, '712020:stranger'))).json.error.code).toBe('FORBIDDEN');
    // This request's ticket, relabelled for another request: not the ticket that request opened.
    const moved = await snCallback('snow', snRecord(other.id, change, 'approved'));
    expect(moved).toMatchObject({ status: 403, json: { error: { code: 'FORBIDDEN' } } });
    expect(moved.json.error.message).toContain('was not opened by channel snow');
    expect((await jiraHook('jira', issueUpdated(issue, 'Done', other.id))).status).toBe(403);
    await unchanged(request.id);
    await unchanged(other.id);
  });

  it('ServiceNow: when sys_audit does not show who set the approval (no row for it, or unreadable), nothing is decided', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    // The field changed without an audit row (an unaudited field or a script with setWorkflow(false)/autoSysFields(false)).
    const record = sn.records.get(change.id)!;
    record['approval'] = 'approved';
    record['sys_updated_by'] = 'jdoe';
    const pick = { sys_id: change.id, number: change.key, correlation_id: request.id, approval: 'approved', sys_updated_on: record['sys_updated_on']!, sys_updated_by: 'jdoe' };
    const unaudited = await snCallback('snow', pick);
    expect(unaudited).toMatchObject({ status: 200, json: { decided: false } });
    expect(unaudited.json.why).toContain('sys_audit');
    // The audit cannot be read (ServiceNow answers 503 to that call): fail closed.
    sn.update(change.id, { approval: 'rejected' }, 'jdoe');
    sn.update(change.id, { approval: 'approved' }, 'jdoe');
    sn.failNext(503);
    const unreadable = await snCallback('snow', { ...pick, sys_updated_on: sn.records.get(change.id)!['sys_updated_on']!, sys_mod_count: sn.records.get(change.id)!['sys_mod_count']! });
    expect(unreadable).toMatchObject({ status: 200, json: { decided: false } });
    expect(unreadable.json.why).toContain('cannot be read from sys_audit');
    await unchanged(request.id);
  });

  it('a critical request is not approved by a ticket: the gate asks for the match code', async () => {
    const request = await create({ action: 'delete_data', args: { path: '/srv/customers' } });
    expect(request.assessment.riskLevel).toBe('critical');
    const change = await ticketOf(request.id, 'snow');
    const res = await snCallback('snow', snRecord(request.id, change, 'approved'));
    expect(['MATCH_CODE_INVALID', 'MFA_REQUIRED']).toContain(res.json.error?.code);
    await unchanged(request.id);
  });

  it('a ticket approves what it showed: after another reviewer modified the args, its approval is refused (PAYLOAD_CHANGED)', async () => {
    const request = await create({ action: 'wipe_cache', args: { scope: 'staging' } });
    const change = await ticketOf(request.id, 'snow');
    await engine.review(bob, request.id, { verdict: 'approve', args: { scope: 'production' } });
    const res = await snCallback('snow', snRecord(request.id, change, 'approved'));
    expect(res.json.error?.code).toBe('PAYLOAD_CHANGED');
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.reviews.map((r) => r.reviewer.name)).toEqual(['bob']);
  });

  it('refuses oversized callback bodies (413)', async () => {
    const request = await create();
    const change = await ticketOf(request.id, 'snow');
    const big = JSON.stringify({ ...snRecord(request.id, change, 'approved'), padding: 'x'.repeat(70 * 1024) });
    expect((await snCallback('snow', {}, { raw: big })).status).toBe(413);
    const huge = JSON.stringify({ timestamp: Date.now(), padding: 'x'.repeat(600 * 1024) });
    expect((await jiraHook('jira', {}, { raw: huge })).status).toBe(413);
    await unchanged(request.id);
  });
});

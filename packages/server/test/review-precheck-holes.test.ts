/**
 * Red-team review of governance pre-checks (issue 18): failing tests for real holes.
 *
 * F1: an aggregate review (onSlicing: aggregate) approves its members without the validators
 * configured at the vote judging any member's payload: a deny-all validator added after the
 * members were created (a policy reload) does not stop them; a direct vote on a member would.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AGGREGATE_ACTION, CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { PrecheckCaller } from '../src/precheck/caller.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const MINUTE = 60_000;
const BASE = DEFAULT_POLICY_YAML.replace('agents: {}', 'agents:\n  slicer-bot: { onSlicing: aggregate }').replace('  slicing: { hold: 1h, collect: 1m }', '  slicing: { hold: 30m, collect: 2m }');
const transfer = (i: number) => ({ action: 'wire_transfer', args: { to: `acct-${i}`, amount: 9_900 }, confidence: 0.9, riskLevel: 'high', context: { value: 9_900 } });

describe.each(ENGINES)('review: pre-check holes ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let scheduler: Scheduler;
  let app: ReturnType<typeof createApp>;
  let clock = Date.UTC(2026, 0, 20, 9, 0, 0);
  let adminToken = '';
  let validator: http.Server;
  let url = '';
  let calls = 0;

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: res.status, json: (await res.json()) as any };
  };
  const audit = async (type: string) => (await engine.listAudit((await engine.authenticate(adminToken))!, { type, limit: 1000 })).map((e) => ({ requestId: e.requestId, data: e.data as any }));

  beforeAll(async () => {
    validator = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        calls++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ allow: false, reasons: ['deny-all: change freeze'] }));
      });
    });
    await new Promise<void>((r) => validator.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(validator.address() as AddressInfo).port}/deny`;
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock, prechecks: new PrecheckCaller({ env: {} }) });
    await engine.activatePolicy(BASE, 'test');
    adminToken = (await engine.bootstrap())!.adminToken;
    app = createApp({ engine, log: () => {} });
    scheduler = new Scheduler(engine, { intervalMs: 60_000 });
  });
  afterAll(async () => {
    await scheduler?.stop();
    await engine?.close();
    await database?.drop();
    await new Promise<void>((r) => validator.close(() => r()));
  });

  it('F1: a deny-all validator added after the members were created does not stop an aggregate approval from approving them', async () => {
    const key = (await call(adminToken, 'POST', '/v1/keys', { agent: 'slicer-bot' })).json.key as string;
    const sent: any[] = [];
    for (let i = 0; i < 10 && (await audit('aggregation_started')).length === 0; i++) {
      clock += 90_000;
      sent.push((await call(key, 'POST', '/v1/requests', CreateRequestBody.parse(transfer(i)))).json);
    }
    expect((await audit('aggregation_started')).length).toBe(1);
    clock += 2 * MINUTE + 1;
    expect(await scheduler.tick()).toMatchObject({ errors: 0 });
    const aggregate = (await call(adminToken, 'GET', '/v1/requests?limit=500')).json.items.find((r: any) => r.action === AGGREGATE_ACTION);
    expect(aggregate?.status).toBe('pending');
    const members: string[] = aggregate.args.requests.map((r: any) => r.id);

    // The policy is reloaded with a validator that denies everything (a change freeze).
    await engine.activatePolicy(`${BASE}\nprechecks:\n  - { name: freeze, kind: http, url: "${url}" }\n`, 'test');
    // A fresh transfer is now blocked by it, as designed.
    const fresh = (await call(key, 'POST', '/v1/requests', CreateRequestBody.parse({ ...transfer(99), idempotencyKey: 'fresh-1' }))).json;
    expect(fresh.status).toBe('rejected');
    expect(calls).toBe(1);
    calls = 0;

    let n = 0;
    for (const stage of aggregate.assessment.approval.stages as Array<{ count: number; role?: string }>) {
      for (let i = 0; i < stage.count; i++) {
        const token = (await call(adminToken, 'POST', '/v1/operators', { name: `approver-${n++}`, roles: [stage.role ?? 'reviewer'] })).json.token as string;
        await call(token, 'POST', `/v1/requests/${aggregate.id}/reviews`, { verdict: 'approve' });
      }
    }
    // Fixed: the aggregate's approval asked the validator about each member's own payload once
    // (later approvers reuse the stored results: same payload, same validator identity).
    expect(calls).toBe(members.length);
    // Fails closed: no member payload the validators configured now deny may be approved; each is
    // rejected with a reason naming the validator.
    for (const id of members) {
      const member = (await call(key, 'GET', `/v1/requests/${id}`)).json;
      expect(member.status).toBe('rejected');
      expect(member.decision.reason).toContain('denied by validator freeze');
    }
    expect((await audit('prechecked')).filter((e) => members.includes(e.requestId!) && e.data.stage === 'vote')).toHaveLength(members.length);
  });
  it('an agent over its own request limit is refused before any validator is called', async () => {
    await engine.activatePolicy(`${BASE.replace('agents:\n', 'agents:\n  limit-bot: { limits: { perMinute: 1 } }\n')}\nprechecks:\n  - { name: freeze, kind: http, url: "${url}" }\n`, 'test');
    const key = (await call(adminToken, 'POST', '/v1/keys', { agent: 'limit-bot' })).json.key as string;
    clock += 5 * MINUTE;
    calls = 0;
    const first = await call(key, 'POST', '/v1/requests', CreateRequestBody.parse({ ...transfer(1), idempotencyKey: 'limit-1' }));
    expect(first.json.status).toBe('rejected'); // the freeze denies it: one call, one counted create
    expect(calls).toBe(1);
    const second = await call(key, 'POST', '/v1/requests', CreateRequestBody.parse({ ...transfer(2), idempotencyKey: 'limit-2' }));
    expect(second.status).toBe(429);
    expect(second.json.error?.code ?? second.json.code).toBe('RATE_LIMITED');
    expect(calls).toBe(1); // no validator called for the refused create
  });
});

/**
 * Policy tooling end to end: a real history (auto-approved, reviewed — one rejected — and blocked
 * requests) filed through the HTTP API, then `POST /v1/policy/replay` under a stricter and a
 * looser candidate, on SQLite and PostgreSQL (the paged read is the store's); and the three
 * `countersign policy` commands through the real binary against a real server.
 */
import { serve as listen, type ServerType } from '@hono/node-server';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApprovalRequest, ReplayReport } from '@countersign/core';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Database } from '../src/store/schema.ts';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const BASE = `
rules:
  - name: no-drop
    when: { action: drop_table }
    then: { block: true }
`;

const STRICTER = `${BASE}
  - name: no-code
    when: { action: execute_code }
    then: { block: true }
levels:
  medium: { autoApprove: false }
  high: { mfa: true }
  critical: { approvals: 3 }
actions:
  send_alert: { weight: 0.1, category: notification, args: { channel: { type: string, required: true } } }
`;

const LOOSER = `${BASE}
automation: { full: 0.85, supervised: 0.7, advisory: 0.5 }
riskThresholds: { medium: 0.25, high: 0.6, critical: 0.85 }
`;

const HISTORY = [
  { action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 },
  { action: 'send_alert', args: { to: 'it' }, confidence: 0.99 },
  { action: 'block_ip', args: { ip: '203.0.113.9' }, confidence: 0.97 },
  { action: 'block_ip', args: { ip: '203.0.113.10' }, confidence: 0.97 },
  { action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.9, description: 'beaconing to a known C2' },
  { action: 'wire_transfer', args: { amount: 20000, to: 'acme' }, confidence: 0.9 },
  { action: 'delete_data', args: { path: '/important/x' }, confidence: 0.5, riskLevel: 'critical' },
  { action: 'execute_code', args: { code: 'ls' }, confidence: 0.9 },
  { action: 'drop_table', args: { table: 'users' }, confidence: 0.9 },
];

type Report = ReplayReport & { candidate: { hash: string; rules: number } };

/** Files HISTORY with the agent key; rejects the isolate_host request as a reviewer would. Returns the requests by action. */
async function fileHistory(url: string, agentKey: string, admin: string): Promise<Map<string, ApprovalRequest[]>> {
  const byAction = new Map<string, ApprovalRequest[]>();
  for (const body of HISTORY) {
    const res = await api<ApprovalRequest>(url, agentKey, '/v1/requests', { body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    byAction.set(body.action, [...(byAction.get(body.action) ?? []), res.body]);
  }
  const isolate = byAction.get('isolate_host')![0]!;
  const rejected = await api(url, admin, `/v1/requests/${isolate.id}/reviews`, { body: { verdict: 'reject', reason: 'not this host' } });
  expect(rejected.status, JSON.stringify(rejected.body)).toBe(200);
  return byAction;
}

const pairs = (r: Report, dim: 'routes' | 'riskLevels') => Object.fromEntries(r[dim].changes.map((c) => [`${c.from}>${c.to}`, c]));

describe.each(ENGINES)('POST /v1/policy/replay ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let server: ServerType;
  let url = '';
  let admin = '';
  let auditor = '';
  let reviewer = '';
  let requests: Map<string, ApprovalRequest[]>;
  const ids = (action: string) => requests.get(action)!.map((r) => r.id);
  const replay = (token: string, body: unknown) => api<Report & { error?: { code: string; details?: { errors: Array<{ path: string; message: string }> } } }>(url, token, '/v1/policy/replay', { body });

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url) });
    await engine.activatePolicy(BASE, 'base.yaml');
    const boot = (await engine.bootstrap())!;
    admin = boot.adminToken;
    const app = createApp({ engine, log: () => {} });
    server = await new Promise<ServerType>((resolve) => {
      const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    auditor = (await api<{ token: string }>(url, admin, '/v1/operators', { body: { name: 'aud', roles: ['auditor'] } })).body.token;
    reviewer = (await api<{ token: string }>(url, admin, '/v1/operators', { body: { name: 'rev', roles: ['reviewer'] } })).body.token;
    requests = await fileHistory(url, boot.agentKey, admin);
    // The history is what the test says it is.
    expect(requests.get('send_alert')!.every((r) => r.assessment.route === 'auto_approve')).toBe(true);
    expect(requests.get('block_ip')!.every((r) => r.assessment.route === 'auto_approve')).toBe(true);
    expect(requests.get('drop_table')![0]!.status).toBe('rejected');
    expect(requests.get('delete_data')![0]!.assessment.riskLevel).toBe('critical');
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await engine?.close();
    await database?.drop();
  });

  it('the active policy as candidate changes nothing, and every request reproduces', async () => {
    const res = await replay(admin, { policy: BASE, since: '1d' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.replayed).toBe(HISTORY.length);
    expect(res.body.changed).toBe(0);
    expect(res.body.routes.before).toEqual({ auto_approve: 4, review: 4, block: 1 });
    expect(res.body.reproduced).toMatchObject({ checked: HISTORY.length, differed: 0, unchecked: 0 });
  });

  it('a stricter candidate: more review, more blocks, refused args, a larger quorum, more step-up', async () => {
    const res = await replay(auditor, { policy: STRICTER, since: '1d' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const r = res.body;
    expect(r.routes.before).toEqual({ auto_approve: 4, review: 4, block: 1 });
    expect(r.routes.after).toEqual({ auto_approve: 0, review: 5, block: 2, refused: 2 });
    const routes = pairs(r, 'routes');
    expect(routes['auto_approve>review']).toMatchObject({ count: 2 });
    expect(routes['auto_approve>review']!.examples.map((e) => e.id).sort()).toEqual(ids('block_ip').sort());
    expect(routes['auto_approve>refused']!.examples.map((e) => e.id).sort()).toEqual(ids('send_alert').sort());
    expect(routes['review>block']!.examples).toEqual([{ id: ids('execute_code')[0], agent: 'demo-agent', action: 'execute_code', from: 'review', to: 'block' }]);
    expect(r.approvers.changes.find((c) => c.examples.some((e) => e.id === ids('delete_data')[0]))).toMatchObject({ from: '2 reviewers', to: '3 reviewers', count: 1 });
    expect(r.stepUp).toMatchObject({ before: 1, after: 3 });
    expect(r.reviewLoad.before).toMatchObject({ reviews: 4, approvals: 5 });
    expect(r.reviewLoad.after).toMatchObject({ reviews: 5, approvals: 7 });
    expect(r.rules).toContainEqual({ name: 'no-code', before: 0, after: 1 });
    expect(r.caveats.some((c) => c.includes('not replayed'))).toBe(true);
  });

  it('a looser candidate moves reviewed requests (the rejected one included) to auto-approval', async () => {
    const res = await replay(admin, { policy: LOOSER, since: '1d' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const r = res.body;
    const toAuto = pairs(r, 'routes')['review>auto_approve'];
    expect(toAuto!.examples.map((e) => e.id)).toContain(ids('isolate_host')[0]);
    expect(pairs(r, 'riskLevels')['high>medium']!.examples.map((e) => e.id)).toContain(ids('isolate_host')[0]);
    expect(r.reviewLoad.after.reviews).toBeLessThan(r.reviewLoad.before.reviews);
    expect(r.routes.after.block).toBe(1); // no-drop still blocks
    expect(pairs(r, 'routes')['auto_approve>review']).toBeUndefined();
  });

  it('is bounded: --limit scans the newest N and says the rest was not reached', async () => {
    const res = await replay(admin, { policy: STRICTER, since: '1d', limit: 3 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ scanned: 3, replayed: 3, limit: 3, limitReached: true });
    // The newest three: execute_code, drop_table and delete_data.
    const seen = new Set(res.body.routes.changes.flatMap((c) => c.examples.map((e) => e.action)));
    expect([...seen].every((a) => ['execute_code', 'drop_table', 'delete_data'].includes(a))).toBe(true);
    expect(res.body.caveats.join(' ')).toContain('limit of 3');
    const all = await replay(admin, { policy: STRICTER, since: '1d', limit: HISTORY.length });
    expect(all.body).toMatchObject({ scanned: HISTORY.length, limitReached: false });
  });

  it('refuses a candidate that does not validate, with the same details as startup', async () => {
    const res = await replay(admin, { policy: 'levels:\n  critical: { aprovals: 3 }\nescalaton: {}\n', since: '1d' });
    expect(res.status).toBe(400);
    expect(res.body.error!.code).toBe('POLICY_INVALID');
    let startup: unknown;
    try {
      await engine.activatePolicy('levels:\n  critical: { aprovals: 3 }\nescalaton: {}\n', 'the candidate');
    } catch (err) {
      startup = (err as { details: unknown }).details;
    }
    expect(res.body.error!.details).toEqual(startup);
    expect(res.body.error!.details!.errors.map((e) => e.message)).toContain('unknown key (did you mean "approvals"?)');
    expect(engine.policy.source).toBe('base.yaml'); // nothing was activated
  });

  it('a row that does not read back (a database edited by hand) is skipped and counted, never guessed', async () => {
    const db = (engine.store as unknown as { connection: { db: Kysely<Database> } }).connection.db;
    await db.updateTable('requests').set({ assessment: 'not json' }).where('id', '=', ids('wire_transfer')[0]!).execute();
    const res = await replay(admin, { policy: STRICTER, since: '1d' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ scanned: HISTORY.length, replayed: HISTORY.length - 1, skipped: 1 });
    expect(res.body.routes.changes.flatMap((c) => c.examples.map((e) => e.id))).not.toContain(ids('wire_transfer')[0]);
  });

  it('refuses other roles, agents, and bad since / limit', async () => {
    expect((await replay(reviewer, { policy: BASE, since: '1d' })).status).toBe(403);
    const agentKey = (await api<{ key: string }>(url, admin, '/v1/keys', { body: { agent: 'other-bot' } })).body.key;
    expect((await replay(agentKey, { policy: BASE, since: '1d' })).status).toBe(403);
    for (const body of [{ policy: BASE, since: 'last tuesday' }, { policy: BASE, since: '1d', limit: 0 }, { policy: BASE, since: '1d', limit: 100_001 }, { policy: BASE, since: '1d', extra: 1 }, { policy: BASE, since: '5000d' }]) {
      const res = await replay(admin, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
  });
});

describe('countersign policy check | diff | replay, through the binary', () => {
  let server: ServerProcess;
  let dir = '';
  let env: Record<string, string> = {};
  let database: TestDatabase;
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'countersign-policy-cli-'));
    database = sqliteDatabase();
    server = await startServerProcess(database.url, { COUNTERSIGN_POLICY: file('base.yaml', BASE) });
    env = { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: server.bootstrap!.adminToken };
    await fileHistory(server.url, server.bootstrap!.agentKey, server.bootstrap!.adminToken);
  });

  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('check: exit 0 and one line on a valid file; exit 1 naming every bad key as startup does', async () => {
    const good = await runCli(['policy', 'check', file('strict.yaml', STRICTER)]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout.trim().split('\n')).toHaveLength(1);
    expect(good.stdout).toMatch(/strict\.yaml is valid: 7 rules, .*escalation levels/);
    const bad = file('bad.yaml', 'levels:\n  critical: { sla: 5m, aprovals: 3 }\nescalaton: {}\nchannels:\n  ops: { type: slack, webhookUrl: https://hooks.example/x }\n');
    const res = await runCli(['policy', 'check', bad]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`error POLICY_INVALID: policy from ${bad} is invalid`);
    expect(res.stderr).toContain('  levels.critical.aprovals: unknown key (did you mean "approvals"?)');
    expect(res.stderr).toContain('  escalaton: unknown key (did you mean "escalation"?)');
    // The same file at startup: the same lines.
    const startup = await runCli(['serve', '--database', `sqlite:${join(dir, 'startup.db')}`, '--port', '0', '--policy', bad]);
    expect(startup.code).toBe(1);
    expect(startup.stderr.trim()).toBe(res.stderr.trim());
    const json = await runCli(['policy', 'check', bad, '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stderr).error.details.errors.length).toBe(res.stderr.trim().split('\n').length - 1);
    const goodJson = JSON.parse((await runCli(['policy', 'check', file('strict.yaml', STRICTER), '--json'])).stdout);
    expect(goodJson).toMatchObject({ valid: true, rules: 7 });
  });

  it('diff: two files, or the active policy and a file, in words', async () => {
    const two = await runCli(['policy', 'diff', file('base.yaml', BASE), file('strict.yaml', STRICTER)]);
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout).toContain('critical-risk reviews need 3 approval(s) instead of 2');
    expect(two.stdout).toContain('+ new rule no-code: when action execute_code then block');
    const active = await runCli(['policy', 'diff', file('strict.yaml', STRICTER)], env);
    expect(active.code, active.stderr).toBe(0);
    expect(active.stdout.split('\n').slice(1).join('\n')).toBe(two.stdout.split('\n').slice(1).join('\n'));
    expect(active.stdout).toMatch(/^\d+ changes from active policy v1 to /);
    const same = await runCli(['policy', 'diff', file('base.yaml', BASE)], env);
    expect(same.stdout).toMatch(/^no effective change/);
    const json = JSON.parse((await runCli(['policy', 'diff', file('strict.yaml', STRICTER), '--json'], env)).stdout);
    expect(json.changes.some((c: { path: string }) => c.path === 'levels.critical.approvals')).toBe(true);
  });

  it('replay: the report in words and as JSON', async () => {
    const text = await runCli(['policy', 'replay', file('strict.yaml', STRICTER), '--since', '30d'], env);
    expect(text.code, text.stderr).toBe(0);
    console.log(`\n----- countersign policy replay strict.yaml --since 30d -----\n${text.stdout}`);
    expect(text.stdout).toContain('over 9 stored requests');
    expect(text.stdout).toMatch(/auto-approved\s+4\s+0/);
    expect(text.stdout).toMatch(/blocked\s+1\s+2/);
    expect(text.stdout).toContain('auto-approved → to review: 2');
    expect(text.stdout).toContain('2 reviewers → 3 reviewers: 1');
    expect(text.stdout).toContain('reviews:   4 → 5');
    expect(text.stdout).toContain('Not replayed exactly:');
    const json = JSON.parse((await runCli(['policy', 'replay', file('strict.yaml', STRICTER), '--since', '30d', '--limit', '5', '--json'], env)).stdout) as Report;
    expect(json).toMatchObject({ scanned: 5, limitReached: true });
    const invalid = await runCli(['policy', 'replay', file('bad2.yaml', 'levls: {}\n'), '--since', '30d'], env);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('levls: unknown key (did you mean "levels"?)');
  });
});

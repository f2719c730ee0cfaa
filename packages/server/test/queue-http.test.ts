/**
 * A flood-proof queue (issue 13 point 5), over real HTTP on a real listener, on SQLite and
 * PostgreSQL: 2,000 junk low-risk pending requests, then one critical — the critical one is
 * first, and the counts, the total and the "N more" are exact; paging is stable under inserts;
 * every filter takes what the contract says (an agent's id or name, any spelling of an action,
 * several risk levels) and refuses a bad value with VALIDATION_FAILED; a cursor is bound to its
 * filters and order; the deadline order follows an extended SLA. Query plans and migration 012
 * are in queue-index.test.ts.
 */
import { serve as listen, type ServerType } from '@hono/node-server';
import { compareUrgency, type ApprovalRequest, type RiskLevel } from '@countersign/core';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { api } from './support/server-process.ts';
import { FLOOD_POLICY, pool } from './support/flood.ts';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

const JUNK = 2_000;
const AGENTS = 10;

interface Page {
  items: ApprovalRequest[];
  nextCursor: string | null;
  order: string;
  counts: { total: number; critical: number; high: number; medium: number; low: number };
  remaining: number;
}

const key = (r: ApprovalRequest) => ({
  riskLevel: r.assessment.riskLevel as RiskLevel,
  dueAt: minTime(r.escalation?.dueAt ?? null, r.expiresAt),
  createdAt: Date.parse(r.createdAt),
  id: r.id,
});
function minTime(...isos: Array<string | null | undefined>): number | null {
  const ms = isos.filter((v): v is string => typeof v === 'string').map((v) => Date.parse(v));
  return ms.length === 0 ? null : Math.min(...ms);
}

describe.each(ENGINES)('the queue under a flood ($name)', ({ name, make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let server: ServerType;
  let url = '';
  let admin = '';
  let reviewer = '';
  const agents: Array<{ id: string; name: string; key: string }> = [];
  let critical: ApprovalRequest;

  const list = (token: string, query: string) => api<Page>(url, token, `/v1/requests?${query}`);
  const create = async (keyText: string, body: unknown) => {
    const res = await api<ApprovalRequest>(url, keyText, '/v1/requests', { body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body;
  };

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url) });
    await engine.activatePolicy(FLOOD_POLICY, 'flood-test');
    const boot = (await engine.bootstrap())!;
    admin = boot.adminToken;
    const app = createApp({ engine, log: () => {} });
    server = await new Promise<ServerType>((resolve) => {
      const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    reviewer = (await api<{ token: string }>(url, admin, '/v1/operators', { body: { name: 'rev', roles: ['reviewer'] } })).body.token;
    for (let i = 0; i < AGENTS; i++) {
      const made = await api<{ agentId: string; key: string }>(url, admin, '/v1/keys', { body: { agent: `flood-bot-${i}` } });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      agents.push({ id: made.body.agentId, name: `flood-bot-${i}`, key: made.body.key });
    }
    // The flood: 2,000 junk low-risk pending requests from ten agents (each within any per-agent limit), then one critical.
    const junk = await pool(
      Array.from({ length: JUNK }, (_, i) => i),
      16,
      (i) => create(agents[i % AGENTS]!.key, { action: 'junk_ping', args: { n: i }, confidence: 0.9, description: `junk ${i}` }),
    );
    expect(junk.every((r) => r.status === 'pending' && r.assessment.riskLevel === 'low')).toBe(true);
    critical = await create(boot.agentKey, {
      action: 'delete_data',
      args: { path: '/important/customers.db' },
      confidence: 0.3,
      description: 'Free disk space on the database host',
    });
    expect(critical.status).toBe('pending');
    expect(critical.assessment.riskLevel).toBe('critical');
    if (name === 'postgres') await sql`analyze requests`.execute(db());
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await engine?.close();
    await database?.drop();
  });

  const db = () => (engine.store as unknown as { connection: { db: Kysely<unknown> } }).connection.db;

  it('puts the critical request first, with exact counts and "N more"', async () => {
    const res = await list(reviewer, 'status=pending&limit=50');
    expect(res.status).toBe(200);
    const page = res.body;
    expect(page.order).toBe('urgent');
    expect(page.items[0]!.id).toBe(critical.id);
    expect(page.items).toHaveLength(50);
    expect(page.counts).toEqual({ total: JUNK + 1, critical: 1, high: 0, medium: 0, low: JUNK });
    expect(page.remaining).toBe(JUNK + 1 - 50);
    expect(page.nextCursor).not.toBeNull();
    // The reviewer's own view of each row is there (actionable), not the feed's.
    expect(page.items[0]!.actionable).toBe(true);
  });

  it('pages through every pending request exactly once, in the one urgency order, "N more" counting down', async () => {
    const seen: ApprovalRequest[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: Page } = await list(admin, `status=pending&limit=500${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...res.body.items);
      expect(res.body.remaining).toBe(JUNK + 1 - seen.length);
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor && pages < 20);
    expect(seen).toHaveLength(JUNK + 1);
    expect(new Set(seen.map((r) => r.id)).size).toBe(JUNK + 1);
    for (let i = 1; i < seen.length; i++) expect(compareUrgency(key(seen[i - 1]!), key(seen[i]!))).toBeLessThan(0);
  });

  it('keeps a cursor stable under inserts: nothing skipped or repeated, a new critical shows on a fresh first page', async () => {
    const first = (await list(admin, 'status=pending&riskLevel=low&limit=10')).body;
    const late = await create(agents[0]!.key, { action: 'junk_ping', args: { n: 'late' }, confidence: 0.9 });
    const second = await create(agents[1]!.key, { action: 'delete_data', args: { path: '/second' }, confidence: 0.3 });
    const next = (await list(admin, `status=pending&riskLevel=low&limit=10&cursor=${first.nextCursor}`)).body;
    const all = (await list(admin, 'status=pending&riskLevel=low&limit=20')).body.items.map((r) => r.id);
    expect([...first.items, ...next.items].map((r) => r.id)).toEqual(all);
    expect(all).not.toContain(late.id); // the newest junk sorts last
    const top = (await list(reviewer, 'status=pending&limit=5')).body;
    expect(top.items.map((r) => r.id).slice(0, 2)).toEqual([critical.id, second.id]);
    expect(top.counts.critical).toBe(2);
    expect(top.counts.total).toBe(JUNK + 3);
    for (const id of [late.id, second.id]) expect((await api(url, admin, `/v1/requests/${id}/reviews`, { body: { verdict: 'reject', reason: 'test cleanup' } })).status).toBe(200);
  });

  it('filters by an agent id or name (the same rows), any spelling of an action, several risk levels', async () => {
    const bot = agents[3]!;
    const byName = (await list(admin, `status=pending&agentId=${bot.name}&limit=500`)).body;
    const byId = (await list(admin, `status=pending&agentId=${bot.id}&limit=500`)).body;
    expect(byName.items.length).toBe(JUNK / AGENTS);
    expect(byName.items.map((r) => r.id)).toEqual(byId.items.map((r) => r.id));
    expect(byName.items.every((r) => r.agentId === bot.id)).toBe(true);
    expect(byName.counts).toEqual({ total: JUNK / AGENTS, critical: 0, high: 0, medium: 0, low: JUNK / AGENTS });
    for (const spelling of ['junk_ping', 'JunkPing', 'junk-ping', 'JUNK_PING']) {
      const page = (await list(admin, `status=pending&action=${spelling}&limit=1`)).body;
      expect(page.counts.total, spelling).toBe(JUNK);
    }
    const severe = (await list(admin, 'status=pending&riskLevel=critical,high')).body;
    expect(severe.items.map((r) => r.id)).toEqual([critical.id]);
    // The per-level counts ignore the risk filter (they label the chips); the total does not.
    expect(severe.counts).toEqual({ total: 1, critical: 1, high: 0, medium: 0, low: JUNK });
    expect(severe.remaining).toBe(0);
    expect(severe.nextCursor).toBeNull();
  });

  it('refuses bad filter values and foreign cursors with VALIDATION_FAILED, naming the field', async () => {
    const firstPage = (await list(admin, 'status=pending&limit=5')).body;
    const history = (await list(admin, 'limit=5')).body;
    const cases: Array<[string, string]> = [
      ['status=bogus', 'status'],
      ['riskLevel=bogus', 'riskLevel'],
      ['riskLevel=', 'riskLevel'],
      ['riskLevel=high,,low', 'riskLevel'],
      ['riskLevel=HIGH', 'riskLevel'],
      ['agentId=nobody-by-that-name', 'agentId'],
      ['agentId=', 'agentId'],
      ['action=', 'action'],
      ['action=%20%20', 'action'],
      ['order=sideways', 'order'],
      ['limit=0', 'limit'],
      ['limit=501', 'limit'],
      ['cursor=garbage', 'cursor'],
      [`cursor=${'A'.repeat(201)}`, 'cursor'],
      [`status=pending&riskLevel=low&cursor=${firstPage.nextCursor}`, 'cursor'], // other filters
      [`status=pending&order=oldest&cursor=${firstPage.nextCursor}`, 'cursor'], // another order
      [`status=pending&cursor=${history.nextCursor}`, 'cursor'], // a history cursor in the queue
      [`status=pending&cursor=${Buffer.from('c1|urgent|xxxxxxxxxxxx|low|1|1|req_1').toString('base64url')}`, 'cursor'], // forged digest
    ];
    for (const [query, field] of cases) {
      const res = await api<{ error: { code: string; message: string; details?: { field?: string } } }>(url, admin, `/v1/requests?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code, query).toBe('VALIDATION_FAILED');
      expect(res.body.error.message.length, query).toBeGreaterThan(0);
      if (res.body.error.details?.field !== undefined) expect(res.body.error.details.field, query).toBe(field);
      else expect(JSON.stringify(res.body.error), query).toContain(field);
    }
    const unknownAgent = await api<{ error: { message: string } }>(url, admin, '/v1/requests?agentId=nobody-by-that-name');
    expect(unknownAgent.body.error.message).toContain('no agent has the id or name "nobody-by-that-name"');
    // An agent key cannot list the queue at all.
    expect((await list(agents[0]!.key, 'status=pending')).status).toBe(403);
  });

  it('sorts by the SLA deadline within a risk level, and follows a deadline that moves (extend)', async () => {
    const bot = agents[5]!;
    const older = await create(bot.key, { action: 'delete_data', args: { path: '/a' }, confidence: 0.3 });
    const newer = await create(bot.key, { action: 'delete_data', args: { path: '/b' }, confidence: 0.3 });
    const soon = await create(bot.key, { action: 'delete_data', args: { path: '/c' }, confidence: 0.3, timeoutSeconds: 60 });
    const order = async () => (await list(admin, `status=pending&riskLevel=critical&agentId=${bot.name}`)).body.items.map((r) => r.id);
    expect(await order()).toEqual([soon.id, older.id, newer.id]);
    const extended = await api(url, admin, `/v1/requests/${older.id}/extend`, { body: { seconds: 240, reason: 'waiting on the owner' } });
    expect(extended.status, JSON.stringify(extended.body)).toBe(200);
    expect(await order()).toEqual([soon.id, newer.id, older.id]);
    for (const r of [older, newer, soon]) await api(url, admin, `/v1/requests/${r.id}/reviews`, { body: { verdict: 'reject', reason: 'test cleanup' } });
  });
});

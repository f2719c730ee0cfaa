/**
 * Operator views (issue 18): `GET /v1/requests?actionableBy=me`, `GET /v1/requests/count` and
 * `GET /v1/me/dashboard`, over HTTP in process, on SQLite and PostgreSQL. The oracle for
 * "actionable" is the plain listing, which marks each row with the gate's dry run for its reader.
 */
import { CreateRequestBody, type ApprovalRequest } from '@countersign/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { readActionableListing } from '../src/engine/queue.ts';
import type { Principal } from '../src/engine/principal.ts';
import { createApp } from '../src/http/app.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

// Up to 140 creates and 20 pages of per-row dry runs per test: slow on a loaded machine, never a timing assertion.
vi.setConfig({ testTimeout: 120_000 });

type Page = { items: ApprovalRequest[]; nextCursor: string | null; counts: { total: number }; remaining: number };

describe.each(ENGINES)('operator views ($name)', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;
  afterEach(async () => {
    await t.engine.close();
    await database.drop();
  });

  async function setup() {
    database = make();
    t = await openTestEngine(database.url);
    const app = createApp({ engine: t.engine, log: () => {} });
    const alice = await t.engine.createOperator(t.admin, { name: 'alice', roles: ['reviewer'] });
    const bob = await t.engine.createOperator(t.admin, { name: 'bob', roles: ['reviewer'] });
    const agentKey = (await t.engine.createAgentKey(t.admin, 'ops-bot')).key;
    const as = (token: string) => ({
      get: async (path: string) => app.request(path, { headers: { authorization: `Bearer ${token}` } }),
      json: async <T>(path: string): Promise<T> => {
        const res = await app.request(path, { headers: { authorization: `Bearer ${token}` } });
        expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
        return (await res.json()) as T;
      },
    });
    const aliceP = (await t.engine.authenticate(alice.token))!;
    const file = async (by: Principal, n: number, tag: string) => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        const { request } = await t.engine.createRequest(by, CreateRequestBody.parse({ ...QUEUED, args: { host: `${tag}-${i}` } }));
        expect(request.status).toBe('pending');
        ids.push(request.id);
      }
      return ids;
    };
    return { app, alice: as(alice.token), bob: as(bob.token), agent: as(agentKey), aliceP, agentP: (await t.engine.authenticate(agentKey))!, file, bobToken: bob.token };
  }

  /** Every page of a listing, following nextCursor. */
  async function walk(get: <T>(path: string) => Promise<T>, query: string) {
    const seen: ApprovalRequest[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: Page = await get<Page>(`/v1/requests?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      seen.push(...page.items);
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 500);
    return { seen, pages };
  }

  it('actionableBy=me lists exactly what the reader may approve now, past a flood of what they may not, across pages', async () => {
    const s = await setup();
    const early = await s.file(s.agentP, 3, 'early');
    const own = await s.file(s.aliceP, 110, 'own'); // alice's own requests: SELF_REVIEW for her, fine for bob
    const late = await s.file(s.agentP, 2, 'late');

    // The oracle: the plain listing marks each pending row with the reader's dry run.
    const plain = await s.alice.json<Page>('/v1/requests?status=pending&limit=500');
    expect(plain.items).toHaveLength(115);
    const oracle = plain.items.filter((r) => r.actionable === true).map((r) => r.id);
    expect(new Set(oracle)).toEqual(new Set([...early, ...late]));
    expect(plain.items.filter((r) => own.includes(r.id)).map((r) => r.notActionable?.code)).toEqual(own.map(() => 'SELF_REVIEW'));

    const mine = await s.alice.json<Page>('/v1/requests?actionableBy=me&limit=50');
    expect(mine.items.map((r) => r.id)).toEqual(plain.items.filter((r) => r.actionable === true).map((r) => r.id)); // same order
    expect(mine.items.every((r) => r.actionable === true)).toBe(true);
    expect(mine.nextCursor).toBeNull();
    expect(mine.counts.total).toBe(115); // counts are of every pending request matching the filters
    expect(mine.remaining).toBe(0);

    // Bob may act on all 115; pages of 7 give each exactly once, in the plain listing's order.
    const bobPlain = await s.bob.json<Page>('/v1/requests?status=pending&limit=500');
    const { seen, pages } = await walk(s.bob.json, 'actionableBy=me&limit=7');
    expect(seen.map((r) => r.id)).toEqual(bobPlain.items.map((r) => r.id));
    expect(pages).toBe(Math.ceil(115 / 7));
    const first = await s.bob.json<Page>('/v1/requests?actionableBy=me&limit=7');
    expect(first.remaining).toBe(115 - 7);

    // Alice's name and id name her too; someone else's does not.
    expect((await s.alice.json<Page>('/v1/requests?actionableBy=alice')).items).toHaveLength(5);
    const other = await s.alice.get('/v1/requests?actionableBy=bob');
    expect(other.status).toBe(400);
    expect(((await other.json()) as { error: { code: string; details?: { field?: string } } }).error).toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('actionableBy refuses what it cannot mean: another status, a plain listing cursor, an agent key', async () => {
    const s = await setup();
    await s.file(s.agentP, 3, 'x');
    const approved = await s.alice.get('/v1/requests?actionableBy=me&status=approved');
    expect(approved.status).toBe(400);
    expect(((await approved.json()) as { error: { code: string } }).error.code).toBe('VALIDATION_FAILED');

    // A cursor is bound to the listing that issued it, both ways.
    const plain = await s.alice.json<Page>('/v1/requests?status=pending&limit=1');
    expect(plain.nextCursor).not.toBeNull();
    const mixed = await s.alice.get(`/v1/requests?actionableBy=me&limit=1&cursor=${encodeURIComponent(plain.nextCursor!)}`);
    expect(mixed.status).toBe(400);
    const mine = await s.alice.json<Page>('/v1/requests?actionableBy=me&limit=1');
    expect(mine.nextCursor).not.toBeNull();
    const back = await s.alice.get(`/v1/requests?status=pending&limit=1&cursor=${encodeURIComponent(mine.nextCursor!)}`);
    expect(back.status).toBe(400);

    expect((await s.agent.get('/v1/requests?actionableBy=me')).status).toBe(403);
    expect((await s.agent.get('/v1/requests/count')).status).toBe(403);
    expect((await s.agent.get('/v1/me/dashboard')).status).toBe(403);
  });

  it('one actionableBy page examines at most its budget of rows, and its cursor goes on from the last one examined', async () => {
    const s = await setup();
    const ids = await s.file(s.agentP, 12, 'b');
    const examined: string[] = [];
    const keepNone = async (rows: readonly { id: string }[]) => rows.map((r) => (examined.push(r.id), false));
    const first = await readActionableListing(t.engine.store, { limit: 5 }, keepNone, 5);
    expect(first.rows).toEqual([]);
    expect(examined).toHaveLength(5);
    expect(first.nextCursor).not.toBeNull();
    expect(first.remaining).toBe(7);
    // Keeping every other row from the cursor on: the page starts right after the 5 examined.
    const keepEven = async (rows: readonly { id: string }[]) => rows.map((r) => ids.indexOf(r.id) % 2 === 0);
    const second = await readActionableListing(t.engine.store, { limit: 2, cursor: first.nextCursor! }, keepEven, 100);
    const order = (await t.engine.listRequests(t.admin, { status: 'pending', limit: 50 })).items.map((r) => r.id);
    const after = order.slice(5).filter((id) => ids.indexOf(id) % 2 === 0);
    expect(second.rows.map((r) => r.id)).toEqual(after.slice(0, 2));
    expect(second.nextCursor).not.toBeNull();
  });

  it('/v1/requests/count counts by status and risk level, with the listing filters', async () => {
    const s = await setup();
    const other = (await t.engine.authenticate((await t.engine.createAgentKey(t.admin, 'other-bot')).key))!;
    const mine = await s.file(s.agentP, 6, 'c');
    await s.file(other, 2, 'o');
    const bob = (await t.engine.authenticate(s.bobToken))!;
    await t.engine.review(bob, mine[0]!, { verdict: 'approve' });
    await t.engine.review(bob, mine[1]!, { verdict: 'reject', reason: 'not now' });

    // The oracle: the history listing, every row.
    const all = (await t.engine.listRequests(t.admin, { limit: 500 })).items;
    const expectFor = (rows: ApprovalRequest[]) => {
      const byStatus: Record<string, number> = {};
      const byRisk: Record<string, number> = {};
      for (const r of rows) {
        byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
        byRisk[r.assessment.riskLevel] = (byRisk[r.assessment.riskLevel] ?? 0) + 1;
      }
      return { byStatus, byRisk };
    };
    const nonZero = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).filter(([, n]) => n > 0));

    const everything = await s.alice.json<{ total: number; byStatus: Record<string, number>; byRisk: Record<string, number>; byStatusAndRisk: Record<string, Record<string, number>> }>('/v1/requests/count');
    const want = expectFor(all);
    expect(everything.total).toBe(all.length);
    expect(nonZero(everything.byStatus)).toEqual(want.byStatus);
    expect(nonZero(everything.byRisk)).toEqual(want.byRisk);
    expect(everything.byStatus).toHaveProperty('expired', 0); // every status is named
    const level = all[0]!.assessment.riskLevel;
    expect(everything.byStatusAndRisk.pending?.[level]).toBe(all.filter((r) => r.status === 'pending' && r.assessment.riskLevel === level).length);

    const byAgent = await s.alice.json<{ total: number; byStatus: Record<string, number> }>('/v1/requests/count?agentId=ops-bot');
    const agentRows = all.filter((r) => r.agentName === 'ops-bot');
    expect(byAgent.total).toBe(agentRows.length);
    expect(nonZero(byAgent.byStatus)).toEqual(expectFor(agentRows).byStatus);

    const pendingHere = await s.alice.json<{ total: number; byRisk: Record<string, number> }>(`/v1/requests/count?status=pending&riskLevel=${level}`);
    expect(pendingHere.total).toBe(all.filter((r) => r.status === 'pending' && r.assessment.riskLevel === level).length);

    const bad = await s.alice.get('/v1/requests/count?riskLevel=severe');
    expect(bad.status).toBe(400);
    const unknown = await s.alice.get('/v1/requests/count?agentId=nobody');
    expect(unknown.status).toBe(400);
  });

  it('/v1/me/dashboard: what I may approve now, my metrics, my own recent actions only', async () => {
    const s = await setup();
    const ids = await s.file(s.agentP, 14, 'd');
    await s.file(s.aliceP, 3, 'own');
    const bob = (await t.engine.authenticate(s.bobToken))!;
    await t.engine.review(bob, ids[0]!, { verdict: 'approve' });
    await t.engine.review(s.aliceP, ids[1]!, { verdict: 'reject', reason: 'no' });

    const board = await s.alice.json<{
      operator: { name: string; roles: string[] };
      pending: Page;
      metrics: { operator: { name: string }; decisionsReviewed: number; rejections: number };
      recent: Array<{ type: string; requestId: string | null }>;
    }>('/v1/me/dashboard');
    expect(board.operator).toMatchObject({ name: 'alice', roles: ['reviewer'] });
    const oracle = (await s.alice.json<Page>('/v1/requests?actionableBy=me&limit=10')).items.map((r) => r.id);
    expect(board.pending.items.map((r) => r.id)).toEqual(oracle);
    expect(board.pending.items).toHaveLength(10);
    expect(board.pending.nextCursor).not.toBeNull(); // 12 remain pending from the agent, 2 more than the page
    expect(board.metrics.operator.name).toBe('alice');
    expect(board.metrics).toMatchObject({ decisionsReviewed: 1, rejections: 1 });
    // Her own actions (the reject, her own requests' creation), never bob's approval.
    expect(board.recent.some((e) => e.requestId === ids[1])).toBe(true);
    expect(board.recent.some((e) => e.requestId === ids[0])).toBe(false);
    expect(Object.keys(board.recent[0]!).sort()).toEqual(['at', 'requestId', 'seq', 'type']);

    const badPeriod = await s.alice.get('/v1/me/dashboard?period=forever');
    expect(badPeriod.status).toBe(400);
  });
});

/**
 * The queue stays index-backed (issue 13 point 5; issue 19 builds on it): with 12,000 requests of
 * which 1,000 are pending, the queue's page, its counts per risk level and its "N more" are each
 * planned by the database itself (EXPLAIN) as a walk of `requests_queue`, on SQLite and
 * PostgreSQL. Migration 012 fills in `queue_due_at` and `action_key` on a database made before it.
 */
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/store/connect.ts';
import { NO_DEADLINE } from '../src/store/queue.ts';
import { Store, type RequestRow } from '../src/store/store.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { openTestEngine } from './support/engine.ts';

const TOTAL = 12_000;
const PENDING_EVERY = 12; // 1,000 pending
const LEVELS = ['low', 'low', 'low', 'medium', 'high', 'critical'];

function row(i: number): RequestRow {
  const pending = i % PENDING_EVERY === 0;
  const at = 1_700_000_000_000 + i * 1000;
  return {
    id: `req_${String(i).padStart(26, '0')}`,
    agent_id: `agt_${i % 7}`,
    requester_operator_id: null,
    idempotency_key: null,
    body_hash: 'h',
    action: i % 3 === 0 ? 'wireTransfer' : 'block_ip',
    args: '{}',
    description: null,
    confidence: 0.9,
    risk_hint: null,
    context: '{}',
    alternatives: '[]',
    approvers: '[]',
    timeout_seconds: null,
    status: pending ? 'pending' : 'approved',
    risk_score: 0.5,
    risk_level: LEVELS[i % LEVELS.length]!,
    automation_level: 'advisory',
    route: pending ? 'review' : 'auto_approve',
    assessment: '{}',
    policy_version: 1,
    decision: null,
    execution: null,
    created_at: at,
    updated_at: at,
    decided_at: pending ? null : at,
    expires_at: null,
    queue_due_at: pending ? at + 900_000 : NO_DEADLINE,
    action_key: i % 3 === 0 ? 'wire_transfer' : 'block_ip',
    claim_nonce: null,
    claim_expires_at: null,
    claimed_at: null,
  };
}

describe.each(ENGINES)('the queue query plans ($name)', ({ name, make }) => {
  let database: TestDatabase;
  let store: Store;
  const db = () => (store as unknown as { connection: { db: Kysely<unknown> } }).connection.db;

  beforeAll(async () => {
    database = make();
    store = new Store(await connect(database.url));
    for (let a = 0; a < 7; a++) await store.insertAgent({ id: `agt_${a}`, name: `agent-${a}`, created_at: 1 });
    const rows = Array.from({ length: TOTAL }, (_, i) => row(i));
    for (let i = 0; i < rows.length; i += 500) await store.transaction(async (tx) => { for (const r of rows.slice(i, i + 500)) await tx.insertRequest(r); });
    if (name === 'postgres') await sql`analyze requests`.execute(db());
  }, 240_000);
  afterAll(async () => {
    await store.close();
    await database.drop();
  });

  async function plan(compiled: { sql: string; parameters: readonly unknown[]; query: unknown }): Promise<string> {
    if (name === 'sqlite') {
      const rows = (await db().executeQuery({ ...compiled, sql: `EXPLAIN QUERY PLAN ${compiled.sql}` } as never)).rows as Array<{ detail: string }>;
      return rows.map((r) => r.detail).join('\n');
    }
    const rows = (await db().executeQuery({ ...compiled, sql: `EXPLAIN ${compiled.sql}` } as never)).rows as Array<{ 'QUERY PLAN': string }>;
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  }

  it('plans the page, the counts and the "N more" as walks of requests_queue, never a sort or a table scan', async () => {
    const list = store.list;
    const filter = { status: 'pending' };
    const after = { dueAt: 1_700_000_000_000, createdAt: 1_700_000_000_000, id: 'req_1' };
    const queries = {
      page: list.urgentQuery(filter, 'low', after, 51).compile(),
      nextPage: list.urgentQuery(filter, 'critical', undefined, 51).compile(),
      counts: list.countsQuery(filter).compile(),
      more: list.countAfterQuery(filter, { order: 'urgent', riskLevel: 'low', ...after }).compile(),
    };
    for (const [what, compiled] of Object.entries(queries)) {
      const text = await plan(compiled);
      console.log(`${name} ${what} plan:\n  ${text.replaceAll('\n', '\n  ')}`);
      if (name === 'sqlite') {
        expect(text, what).toMatch(/SEARCH requests USING (COVERING )?INDEX requests_queue \(status=\?/);
        expect(text, what).not.toMatch(/TEMP B-TREE FOR ORDER BY/);
        expect(text, what).not.toMatch(/^SCAN requests\b/m);
      } else {
        // Counting may take either pending-only index (a bitmap of requests_pending_expiry is as good): never the table.
        expect(text, what).toMatch(what === 'counts' || what === 'more' ? /Index (Only )?Scan (using|on) requests_(queue|pending_expiry)/ : /Index (Only )?Scan using requests_queue on requests/);
        expect(text, what).not.toMatch(/Seq Scan on requests/);
        expect(text, what).not.toMatch(/\bSort\b/);
      }
    }
    expect(await plan(queries.page)).toMatch(name === 'sqlite' ? /\(queue_due_at,created_at,id\)>\(\?,\?,\?\)/ : /ROW\(queue_due_at, created_at, id\) > ROW/);
  });

  it('counts what the page lists: per level, after a position, with an action filter', async () => {
    const counts = await store.list.countsByRisk({ status: 'pending' });
    const expected: Record<string, number> = {};
    for (let i = 0; i < TOTAL; i += PENDING_EVERY) expected[LEVELS[i % LEVELS.length]!] = (expected[LEVELS[i % LEVELS.length]!] ?? 0) + 1;
    expect(counts).toEqual(expected);
    const wires = await store.list.countsByRisk({ status: 'pending', actionKey: 'wire_transfer' });
    expect(Object.values(wires).reduce((a, b) => a + b, 0)).toBe(Array.from({ length: TOTAL / PENDING_EVERY }, (_, k) => k * PENDING_EVERY).filter((i) => i % 3 === 0).length);
    const lows = await store.list.page({ status: 'pending' }, 'urgent', { order: 'urgent', riskLevel: 'critical', dueAt: NO_DEADLINE, createdAt: 0, id: 'z' }, 10_000);
    expect(lows.every((r) => r.risk_level !== 'critical')).toBe(true);
    expect(lows.length).toBe(TOTAL / PENDING_EVERY - (expected.critical ?? 0));
  });
});

describe.each(ENGINES)('migration 012_queue on a database made before it ($name)', ({ make }) => {
  it('fills in each row’s action key and each pending row’s deadline (escalation, expiry, or none)', async () => {
    const database = make();
    try {
      const t = await openTestEngine(database.url);
      const body = (extra: Record<string, unknown>) => ({ action: 'isolateHost', args: { host: 'ws-1' }, confidence: 0.82, ...extra });
      const { CreateRequestBody } = await import('@countersign/core');
      const withSla = (await t.engine.createRequest(t.agent, CreateRequestBody.parse(body({})))).request;
      const withExpiry = (await t.engine.createRequest(t.agent, CreateRequestBody.parse(body({ timeoutSeconds: 30 })))).request;
      const auto = (await t.engine.createRequest(t.agent, CreateRequestBody.parse({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } }))).request;
      const before = new Map((await t.engine.store.listRequests({ limit: 10, order: 'oldest' })).map((r) => [r.id, r]));
      await t.engine.close();
      expect(before.get(withSla.id)!.queue_due_at).toBe(Date.parse(withSla.escalation!.dueAt as unknown as string));
      expect(before.get(withExpiry.id)!.queue_due_at).toBe(Date.parse(withExpiry.expiresAt!));
      expect(before.get(withSla.id)!.action_key).toBe('isolate_host');

      const old = await connect(database.url);
      await old.db.schema.dropIndex('requests_queue').execute();
      await old.db.schema.alterTable('requests').dropColumn('queue_due_at').execute();
      // (requests.action_key is migration 009_gate's, with its own backfill: it stays.)
      await sql`delete from countersign_migrations where name = '012_queue'`.execute(old.db);
      await old.destroy();

      const upgraded = await connect(database.url);
      try {
        expect(upgraded.migrations.applied).toEqual(['012_queue']);
        const after = new Map((await new Store(upgraded).listRequests({ limit: 10, order: 'oldest' })).map((r) => [r.id, r]));
        for (const id of [withSla.id, withExpiry.id]) expect(after.get(id)!.queue_due_at, id).toBe(before.get(id)!.queue_due_at);
        expect(after.get(auto.id)!.queue_due_at).toBe(NO_DEADLINE);
        for (const r of after.values()) expect(r.action_key).toBe(r.action === 'isolateHost' ? 'isolate_host' : r.action);
      } finally {
        await upgraded.destroy();
      }
    } finally {
      await database.drop();
    }
  }, 120_000);
});

/**
 * Migration 019_rollups both ways on a populated database, both engines: down drops the fact
 * columns and keeps the rows; up fills the columns in from each row's JSON (the
 * same as the store writes for a new row), and a decision sealed at rest waits for the key
 * (`requests_facts_unread`) until `backfillFacts` opens it.
 */
import { randomBytes } from 'node:crypto';
import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, parseDatabaseUrl, sql } from '../src/store/connect.ts';
import { requestFactColumns } from '../src/store/history.ts';
import { migrationProvider } from '../src/store/migrations/index.ts';
import { Sealer } from '../src/store/sealing.ts';
import { Store, type RequestRow } from '../src/store/store.ts';
import { ENGINES, PG_BASE_URL, type TestDatabase } from './support/databases.ts';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import { MIGRATIONS } from '../src/store/migrations/index.ts';

/** One statement on the database itself, without connect() (which would migrate it). */
async function raw(url: string, text: string): Promise<void> {
  const parsed = parseDatabaseUrl(url);
  if (parsed.dialect === 'sqlite') {
    const db = new SqliteDatabase(parsed.target);
    try {
      db.prepare(text).run();
    } finally {
      db.close();
    }
    return;
  }
  const client = new pg.Client({ connectionString: PG_BASE_URL });
  await client.connect();
  try {
    await client.query(`set search_path = ${parsed.schema}`);
    await client.query(text);
  } finally {
    await client.end();
  }
}

const FACTS = ['decided_by', 'outcome', 'modified', 'chose_alternative', 'self_approved', 'sla_due_at', 'sla_seconds', 'requires_approval'] as const;

function row(i: number, over: Partial<RequestRow>): RequestRow {
  return {
    id: `req_${String(i).padStart(4, '0')}`,
    agent_id: 'agt_1',
    requester_operator_id: null,
    idempotency_key: null,
    body_hash: 'h',
    action: 'block_ip',
    args: '{}',
    description: null,
    confidence: null,
    risk_hint: null,
    context: '{}',
    alternatives: '[]',
    approvers: '[]',
    timeout_seconds: null,
    status: 'pending',
    risk_score: 0.5,
    risk_level: 'high',
    automation_level: 'advisory',
    route: 'review',
    assessment: JSON.stringify({ requiresApproval: i % 2 === 0, slaSeconds: i % 3 === 0 ? null : 900, slaDueAt: i % 3 === 0 ? null : new Date(1_700_000_000_000 + i * 1000 + 900_000).toISOString() }),
    policy_version: 1,
    decision: null,
    execution: null,
    created_at: 1_700_000_000_000 + i * 1000,
    updated_at: 1_700_000_000_000 + i * 1000,
    decided_at: null,
    expires_at: null,
    queue_due_at: 8_640_000_000_000_000,
    action_key: 'block_ip',
    claim_nonce: null,
    claim_expires_at: null,
    claimed_at: null,
    ...over,
  };
}

const decision = (i: number) =>
  JSON.stringify({
    outcome: ['approved', 'rejected', 'expired', 'cancelled'][i % 4],
    decidedBy: ['reviewers', 'policy', 'timeout', 'agent'][i % 3],
    deciders: [{ type: 'operator', id: `op_${i % 5}`, name: 'x' }],
    reason: null,
    at: 'x',
    action: null,
    args: null,
    alternative: i % 7 === 0 ? 'alt' : null,
    modified: i % 2 === 1,
  });

function migrator(db: ConstructorParameters<typeof Migrator>[0]['db'], url: string): Migrator {
  const parsed = parseDatabaseUrl(url);
  return new Migrator({
    db,
    provider: migrationProvider,
    migrationTableName: 'countersign_migrations',
    migrationLockTableName: 'countersign_migrations_lock',
    allowUnorderedMigrations: true,
    ...(parsed.dialect === 'postgres' ? { migrationTableSchema: parsed.schema ?? 'public' } : {}),
  });
}

/** The migration 019 follows, and those from 019 on (a start after migrating down to BEFORE_019 applies them again, in order). */
const BEFORE_019 = '018_gatefin2';
const AFTER_018 = Object.keys(MIGRATIONS).filter((k) => k > BEFORE_019).sort();

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

describe.each(ENGINES)('migration 019_rollups: $name', ({ make }) => {
  it('down and up again on a populated database: the columns are filled in from the JSON; sealed decisions wait for the key', async () => {
    const database: TestDatabase = make();
    cleanup.push(() => database.drop());
    const sealer = Sealer.fromKey(randomBytes(32).toString('hex'));
    const first = await connect(database.url);
    const plainStore = new Store(first, undefined, { pollMs: 3_600_000 });
    await plainStore.insertAgent({ id: 'agt_1', name: 'agent', created_at: 1 });
    const rows = Array.from({ length: 60 }, (_, i) =>
      row(i, i % 5 === 4 ? {} : { status: 'decided', decision: decision(i), decided_at: 1_700_000_000_000 + i * 1000 + 5000, requester_operator_id: i % 4 === 0 ? `op_${i % 5}` : null }),
    );
    await plainStore.insertRequests(rows.slice(0, 50));
    // Ten decided under encryption at rest: their decision column is ciphertext.
    await new Store(first, sealer, { pollMs: 3_600_000 }).insertRequests(rows.slice(50));
    const expected = new Map(rows.map((r) => [r.id, requestFactColumns(r)]));
    const read = async () =>
      new Map((await first.db.selectFrom('requests').select(['id', ...FACTS]).execute()).map((r) => [r.id, Object.fromEntries(FACTS.map((f) => [f, r[f] === null ? null : Number.isNaN(Number(r[f])) ? r[f] : Number(r[f])]))]));
    const norm = (m: Map<string, ReturnType<typeof requestFactColumns>>) => new Map([...m].map(([k, v]) => [k, Object.fromEntries(FACTS.map((f) => [f, v[f] === null ? null : Number.isNaN(Number(v[f])) ? v[f] : Number(v[f])]))]));
    expect(await read()).toEqual(norm(expected));

    // Down to the migration before 019 (the later ones go down first): the columns go, the rows stay.
    const down = await migrator(first.db, database.url).migrateTo(BEFORE_019);
    expect(down.error).toBeUndefined();
    expect(down.results?.find((r) => r.migrationName === '019_rollups')).toMatchObject({ migrationName: '019_rollups', direction: 'Down', status: 'Success' });
    await expect(sql`select decided_by from requests`.execute(first.db)).rejects.toThrow();
    expect(Number((await sql<{ n: number }>`select count(*) as n from requests`.execute(first.db)).rows[0]!.n)).toBe(60);
    await first.destroy();

    // Up again (a server starting): filled in from the JSON, except the sealed decisions.
    const second = await connect(database.url);
    expect(second.migrations.applied).toEqual(AFTER_018);
    const again = new Map((await second.db.selectFrom('requests').select(['id', ...FACTS]).execute()).map((r) => [r.id, r]));
    for (const r of rows) {
      const got = again.get(r.id)!;
      const want = expected.get(r.id)!;
      expect(Number(got.requires_approval)).toBe(want.requires_approval);
      expect(got.sla_due_at === null ? null : Number(got.sla_due_at)).toBe(want.sla_due_at);
      if (rows.indexOf(r) >= 50 && r.decision !== null) expect(got.decided_by).toBeNull();
      else expect([got.decided_by, got.outcome, Number(got.self_approved), Number(got.modified), Number(got.chose_alternative)]).toEqual([want.decided_by, want.outcome, want.self_approved, want.modified, want.chose_alternative]);
    }
    // With the key, the store opens them (the engine does this when it opens).
    const store = new Store(second, sealer, { pollMs: 3_600_000 });
    expect(await store.history.backfillFacts(3)).toBe(rows.slice(50).filter((r) => r.decision !== null).length);
    expect(await store.history.backfillFacts()).toBe(0);
    const final = new Map((await second.db.selectFrom('requests').select(['id', ...FACTS]).execute()).map((r) => [r.id, Object.fromEntries(FACTS.map((f) => [f, r[f] === null ? null : Number.isNaN(Number(r[f])) ? r[f] : Number(r[f])]))]));
    expect(final).toEqual(norm(expected));
    await store.close();
  });
});

describe.each(ENGINES)('migration 019_rollups interrupted: $name', ({ name, make }) => {
  it('a run that fails half-way leaves the database as before, and the next start migrates it', async () => {
    const database: TestDatabase = make();
    cleanup.push(() => database.drop());
    const first = await connect(database.url);
    const store = new Store(first, undefined, { pollMs: 3_600_000 });
    await store.insertAgent({ id: 'agt_1', name: 'agent', created_at: 1 });
    const rows = Array.from({ length: 40 }, (_, i) => row(i, i % 5 === 4 ? {} : { status: 'decided', decision: decision(i), decided_at: 1_700_000_000_000 + i * 1000 + 5000 }));
    await store.insertRequests(rows);
    const expected = new Map(rows.map((r) => [r.id, requestFactColumns(r)]));
    expect((await migrator(first.db, database.url).migrateTo(BEFORE_019)).error).toBeUndefined();
    // The 31st row's update fails (a disk that fills, a process killed): the migration stops half-way.
    if (name === 'sqlite') {
      await sql`create trigger boom before update on requests when old.id = 'req_0030' begin select raise(abort, 'boom'); end`.execute(first.db);
    } else {
      await sql`create function boom() returns trigger language plpgsql as $$ begin raise exception 'boom'; end $$`.execute(first.db);
      await sql`create trigger boom before update on requests for each row when (old.id = 'req_0030') execute function boom()`.execute(first.db);
    }
    await first.destroy();
    await expect(connect(database.url)).rejects.toThrow(/019_rollups failed: .*boom/);

    // Nothing of it stayed: no fact column (the next start would otherwise trip over them).
    await expect(raw(database.url, 'select decided_by from requests')).rejects.toThrow();
    await raw(database.url, name === 'sqlite' ? 'drop trigger boom' : 'drop trigger boom on requests');

    // The next start migrates it in full.
    const again = await connect(database.url);
    expect(again.migrations.applied).toEqual(AFTER_018);
    const got = new Map((await again.db.selectFrom('requests').select(['id', ...FACTS]).execute()).map((r) => [r.id, Object.fromEntries(FACTS.map((f) => [f, r[f] === null ? null : Number.isNaN(Number(r[f])) ? r[f] : Number(r[f])]))]));
    expect(got).toEqual(new Map([...expected].map(([k, v]) => [k, Object.fromEntries(FACTS.map((f) => [f, v[f] === null ? null : Number.isNaN(Number(v[f])) ? v[f] : Number(v[f])]))])));
    await again.destroy();
  });
});

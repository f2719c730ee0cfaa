/**
 * Red-team review of the audit integrator (issue 14, branch integrator). Each test here failed on
 * the reviewed commit: it states a property the design claims (docs/ARCHITECTURE.md, "The tree
 * lives in the database and grows by integration") and shows an attack that breaks it. Real
 * PostgreSQL (two connections) and real SQLite files.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, QueryResult, RootOperationNode, UnknownRow } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { ephemeralAuditKey } from '../src/audit/crypto.ts';
import { AuditService } from '../src/audit/service.ts';
import { memorySignerState } from '../src/audit/signer-state.ts';
import { connect } from '../src/store/connect.ts';
import { Queries, Store, type NewAuditEntry } from '../src/store/store.ts';
import { TrailQueries } from '../src/store/trail.ts';
import { PG_BASE_URL, postgresDatabase, sqliteDatabase, type TestDatabase } from './support/databases.ts';

const entry = (i: number, type = 'test', requestId = `req_${i}`): NewAuditEntry => ({
  at: 1_700_000_000_000 + i,
  type,
  request_id: requestId,
  actor_type: 'system',
  actor_id: 'system',
  actor_name: 'test',
  data: JSON.stringify({ i }),
});

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

async function open(db: TestDatabase, options?: ConstructorParameters<typeof Store>[2]): Promise<Store> {
  const store = new Store(await connect(db.url), undefined, options);
  cleanup.push(() => store.close());
  return store;
}

/**
 * Pauses, once, right after the first SELECT from `table` returned its rows: the statement has
 * run (its snapshot is taken and gone), the next statement of the same method has not started.
 */
function pauseAfterSelectFrom(table: string): { plugin: KyselyPlugin; paused: Promise<void>; resume: () => void } {
  let onPaused!: () => void;
  const paused = new Promise<void>((r) => (onPaused = r));
  let resume!: () => void;
  const gate = new Promise<void>((r) => (resume = r));
  const marked = new WeakSet<object>();
  let armed = true;
  const plugin: KyselyPlugin = {
    transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
      const node = args.node as { kind: string; from?: { froms: Array<{ kind: string; table?: { identifier?: { name?: string } } }> } };
      const from = node.kind === 'SelectQueryNode' ? node.from?.froms[0] : undefined;
      if (armed && from?.table?.identifier?.name === table) {
        armed = false;
        marked.add(args.queryId);
      }
      return args.node;
    },
    async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
      if (marked.has(args.queryId)) {
        onPaused();
        await gate;
      }
      return args.result;
    },
  };
  return { plugin, paused, resume };
}

describe('PostgreSQL (READ COMMITTED): a reader of both tables races the integrator', () => {
  it('auditHas (the claim-once check) finds an entry the integrator moves from audit_pending to audit_log between its two reads', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db, { pollMs: 3_600_000 });
    await store.integrator.stop();
    // The first claim committed its execution_started entry; it is not integrated yet.
    await store.transaction((tx) => tx.appendAudit([entry(1, 'execution_started', 'req_claimed')]));

    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    const { plugin, paused, resume } = pauseAfterSelectFrom('audit_log');
    const reader = raw.db.withPlugin(plugin);
    // The second claim's check, inside its transaction as in engine/execution.ts.
    const found = reader.transaction().execute((trx) => new Queries(trx, raw.capabilities).auditHas('req_claimed', 'execution_started'));
    await paused;
    // Between the audit_log read and the audit_pending read, a batch integrates the entry.
    const other = await connect(db.url);
    cleanup.push(() => other.destroy());
    const batch = await other.db.transaction().execute((trx) => new TrailQueries(trx).integrateBatch(100, true));
    expect(batch).toMatchObject({ taken: 1 });
    resume();
    expect(await found, 'the claim is recorded: auditHas must not say it is not').toBe(true);
  });

  it("a request's audit (Store.auditFor, GET /v1/requests/{id}/audit) does not lose an entry the integrator moves during the read", async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const writer = await open(db, { pollMs: 3_600_000 });
    await writer.integrator.stop();
    await writer.transaction((tx) => tx.appendAudit([entry(1, 'created', 'req_r')]));
    await writer.transaction((tx) => tx.appendAudit([entry(2, 'approved', 'req_r')]));
    // Only the first is integrated; the second is pending when the read starts.
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    await raw.db.transaction().execute((trx) => new TrailQueries(trx).integrateBatch(1, true));

    const { plugin, paused, resume } = pauseAfterSelectFrom('audit_log');
    const reader = new Queries(raw.db.withPlugin(plugin), raw.capabilities);
    const rows = reader.auditFor('req_r');
    await paused;
    const other = await connect(db.url);
    cleanup.push(() => other.destroy());
    await other.db.transaction().execute((trx) => new TrailQueries(trx).integrateBatch(100, true));
    resume();
    expect((await rows).map((r) => r.type)).toEqual(['created', 'approved']);
  });
});

describe.each([
  { name: 'postgres', make: postgresDatabase },
  { name: 'sqlite', make: sqliteDatabase },
])('a database writer poisons the pending queue ($name)', ({ make }) => {
  it('one planted row with an id at or above 2^53 does not stop every later genuine entry from being integrated', async () => {
    const db = make();
    cleanup.push(() => db.drop());
    const store = await open(db);
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    // A bigint id the integrator reads back as an unsafe JavaScript number (SQLite's AUTOINCREMENT
    // also moves past it, so every genuine id after it is unsafe too).
    await raw.db.insertInto('audit_pending').values({ id: 2 ** 53 /* 9,007,199,254,740,992: the first id a JavaScript number cannot count past */, ...entry(0, 'poison') } as never).execute();
    await store.transaction((tx) => tx.appendAudit([entry(1), entry(2)]));
    expect(await store.settleAudit(3000), 'the trail must not stall on one planted row').toBe(true);
    const rows = await store.trail.entries(1, (await store.trail.head()).size);
    expect(rows.filter((r) => r.type === 'test')).toHaveLength(2);
  });
});

describe('PostgreSQL: settleAudit is bounded', () => {
  it('a session holding a row lock on a pending entry does not make settleAudit (every audit read) wait past its timeout', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db, { pollMs: 3_600_000 });
    // Committed by another process (no wake here), so it is still pending when the lock is taken.
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    await raw.db.insertInto('audit_pending').values(entry(1)).execute();
    const schema = new URL(db.url).searchParams.get('schema')!;
    const holder = new pg.Client({ connectionString: PG_BASE_URL, options: `-c search_path=${schema}` });
    await holder.connect();
    cleanup.push(async () => {
      await holder.query('rollback').catch(() => {});
      await holder.end();
    });
    await holder.query('begin');
    await holder.query('select id from audit_pending for update');
    const started = Date.now();
    const settled = await Promise.race([store.settleAudit(1000), sleep(6000).then(() => 'still waiting' as const)]);
    expect(settled, 'settleAudit(1000) must answer (false) within about its timeout').toBe(false);
    expect(Date.now() - started).toBeLessThan(3000);
  }, 20_000);
});

describe('PostgreSQL: a session holding the integrator lock', () => {
  it('cannot make the signer sign, silently, a checkpoint that leaves out entries committed before it was asked for', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db);
    await store.transaction((tx) => tx.appendAudit([entry(1)]));
    const service = new AuditService(store, ephemeralAuditKey(), Date.now, memorySignerState());
    expect((await service.checkpoint()).treeSize).toBe(1);
    // A database writer takes the integrator's lock and keeps it: entries stay in audit_pending,
    // mutable, while changes go on committing.
    const schema = new URL(db.url).searchParams.get('schema')!;
    const holder = new pg.Client({ connectionString: PG_BASE_URL });
    await holder.connect();
    cleanup.push(() => holder.end());
    await holder.query(`select pg_advisory_lock(hashtext($1 || ':countersign:audit-integrator'))`, [schema]);
    await store.transaction((tx) => tx.appendAudit([entry(2, 'execution_started', 'req_x')]));
    // The pending entry can now be deleted (or edited) with nothing to show for it …
    // … and the signer's next checkpoint, asked for after the commit, must either cover it or fail.
    let outcome: string;
    try {
      const cp = await service.checkpoint();
      outcome = cp.treeSize >= 2 ? 'covered' : `signed tree size ${cp.treeSize} without the committed entry`;
    } catch {
      outcome = 'refused';
    }
    expect(['covered', 'refused']).toContain(outcome);
    await holder.query(`select pg_advisory_unlock(hashtext($1 || ':countersign:audit-integrator'))`, [schema]);
  }, 20_000);
});

describe.each([
  { name: 'postgres', make: postgresDatabase },
  { name: 'sqlite', make: sqliteDatabase },
])('lows of the review ($name)', ({ make }) => {
  it('retention keeps from the smallest seq at or after the cutoff, not from the earliest entry by time', async () => {
    const db = make();
    cleanup.push(() => db.drop());
    const store = await open(db);
    // Integrated in id order, but times need not follow seqs (each keeps its transaction's time).
    await store.transaction((tx) => tx.appendAudit([{ ...entry(1), at: 5_000 }]));
    await store.transaction((tx) => tx.appendAudit([{ ...entry(2), at: 1_000 }]));
    await store.transaction((tx) => tx.appendAudit([{ ...entry(3), at: 10_000 }]));
    expect(await store.settleAudit(3000)).toBe(true);
    // Seq 1 (at 5000) is within retention for a cutoff of 1000: nothing before it may go.
    expect(await store.trail.firstSeqAtOrAfter(1_000)).toBe(1);
    expect(await store.trail.firstSeqAtOrAfter(6_000)).toBe(3);
    expect(await store.trail.firstSeqAtOrAfter(20_000)).toBeUndefined();
  });

  it("auditByEntryId does not return another entry's row for a planted duplicate entry_id", async () => {
    const db = make();
    cleanup.push(() => db.drop());
    const store = await open(db);
    const [id] = await store.transaction((tx) => tx.appendAudit([entry(1, 'feedback')]));
    expect(await store.settleAudit(3000)).toBe(true);
    expect((await store.auditByEntryId(id!))?.type).toBe('feedback');
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    // A database writer plants a row with the same entry_id (and an earlier seq would sort first).
    await raw.db.insertInto('audit_log').values({ seq: 0, entry_id: id!, ...entry(9, 'planted') }).execute();
    expect(await store.auditByEntryId(id!)).toBeUndefined();
  });
});

describe('SQLite: a change watcher after a planted id at or above 2^53', () => {
  it('walks every genuine entry after it, one by one, without skipping one whose id rounds onto the next', async () => {
    const db = sqliteDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db, { pollMs: 3_600_000 });
    await store.integrator.stop();
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    await raw.db.insertInto('audit_pending').values({ id: 2 ** 53, ...entry(0, 'poison', 'req_poison') } as never).execute();
    const start = await store.auditLastEntryId();
    // Every id after the planted one is drawn above 2^53 (AUTOINCREMENT), where numbers round.
    for (const r of ['req_a', 'req_b', 'req_c', 'req_d', 'req_e']) await store.transaction((tx) => tx.appendAudit([entry(1, 'test', r)]));
    const seen: string[] = [];
    let last = start;
    // Bounded: a watcher whose ids round can go round in circles (it did, before ids were exact).
    for (let step = 0; step < 20; step++) {
      const [row] = await store.auditRequestsAfterEntry(last, 1);
      if (!row) break;
      last = row.id;
      seen.push(row.request_id!);
    }
    expect(seen).toEqual(['req_a', 'req_b', 'req_c', 'req_d', 'req_e']);
  });
});

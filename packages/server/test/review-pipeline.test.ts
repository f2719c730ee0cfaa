/**
 * Red-team review of branch `createperf` (store/pipeline.ts): PostgreSQL transactions whose
 * `begin` and `deferred` statements go out with the next answered statement. Real PostgreSQL
 * (a fresh schema per file), the real driver wrapper, the real engine.
 *
 * Tests named FINDING n fail on the branch as reviewed; the others are attacks that held.
 */
import { sql, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateRequestBody } from '@countersign/core';
import { connect, type Connection } from '../src/store/connect.ts';
import { deferred, pipelinedDialect } from '../src/store/pipeline.ts';
import { isStoreUnavailable } from '../src/store/unavailable.ts';
import { PG_BASE_URL, postgresDatabase } from './support/databases.ts';
import { openTestEngine, QUEUED, type TestEngine } from './support/engine.ts';

const database = postgresDatabase();
const schema = new URL(database.url).searchParams.get('schema')!;
const clientConfig = { connectionString: PG_BASE_URL, options: `-c search_path=${schema}` };

let connection: Connection;
let small: Kysely<any>;
let smallPool: pg.Pool;

beforeAll(async () => {
  connection = await connect(database.url);
  await sql`create table rv_t (id int primary key, n int not null check (n >= 0))`.execute(connection.db);
  // A pool of 2, as connect.ts builds it (pipeline: true, the wrapped dialect).
  smallPool = new pg.Pool({ ...clientConfig, max: 2, pipeline: true } as pg.PoolConfig);
  smallPool.on('connect', (client) => client.on('error', () => {}));
  smallPool.on('error', () => {});
  small = new Kysely<any>({ dialect: pipelinedDialect(new PostgresDialect({ pool: smallPool })) });
});

afterAll(async () => {
  await small.destroy();
  await connection.destroy();
  await database.drop();
});

const count = async (where = sql`true`) => (await sql<{ n: number }>`select count(*)::int as n from rv_t where ${where}`.execute(connection.db)).rows[0]!.n;

describe('error surfacing', () => {
  it('a deferred check-constraint violation fails the transaction with 23514, not 25P02, and keeps nothing', async () => {
    const tx = connection.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferred(sql`insert into rv_t values (100, 1)`.compile(trx)));
      await trx.executeQuery(deferred(sql`insert into rv_t values (101, -1)`.compile(trx)));
      await sql`select 1`.execute(trx);
      await sql`select 2`.execute(trx);
    });
    await expect(tx).rejects.toMatchObject({ code: '23514' });
    expect(await count(sql`id in (100, 101)`)).toBe(0);
  });

  it('a deadlock between two deferred updates surfaces as 40P01 on one side; the other commits', async () => {
    await sql`insert into rv_t values (200, 0), (201, 0)`.execute(connection.db);
    const a = new pg.Client(clientConfig);
    await a.connect();
    try {
      await a.query('begin');
      await a.query('update rv_t set n = n + 1 where id = 200');
      const b = connection.db.transaction().execute(async (trx) => {
        await trx.executeQuery(deferred(sql`update rv_t set n = n + 10 where id = 201`.compile(trx)));
        await trx.executeQuery(deferred(sql`update rv_t set n = n + 10 where id = 200`.compile(trx))); // waits for a
      });
      const bSettled = b.then(() => 'ok', (e: { code?: string }) => e.code);
      await new Promise((r) => setTimeout(r, 300));
      const aOutcome = await a.query('update rv_t set n = n + 1 where id = 201').then(() => 'ok', (e: { code?: string }) => e.code);
      if (aOutcome === 'ok') await a.query('commit');
      else await a.query('rollback');
      const outcomes = [aOutcome, await bSettled].sort();
      expect(outcomes).toEqual(['40P01', 'ok']);
    } finally {
      await a.end();
    }
  });

  it('a backend terminated while a deferred batch waits fails the commit as STORE_UNAVAILABLE, and the pool recovers', async () => {
    await sql`insert into rv_t values (300, 0)`.execute(connection.db);
    const holder = new pg.Client(clientConfig);
    await holder.connect();
    const killer = new pg.Client(clientConfig);
    await killer.connect();
    try {
      await holder.query('begin');
      await holder.query('select * from rv_t where id = 300 for update');
      let pid = 0;
      const tx = connection.db.transaction().execute(async (trx) => {
        pid = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!.pid;
        await trx.executeQuery(deferred(sql`insert into rv_t values (301, 0)`.compile(trx)));
        await trx.executeQuery(deferred(sql`update rv_t set n = 1 where id = 300`.compile(trx))); // blocks on holder
        await trx.executeQuery(deferred(sql`select pg_notify('rv', 'x')`.compile(trx)));
      });
      const settled = tx.then(() => null, (e: unknown) => e);
      await new Promise((r) => setTimeout(r, 300));
      await killer.query('select pg_terminate_backend($1)', [pid]);
      const err = await Promise.race([settled, new Promise((r) => setTimeout(() => r('hung'), 5_000))]);
      expect(err).not.toBe('hung');
      expect(err).not.toBeNull();
      expect(isStoreUnavailable(err)).toBe(true);
      await holder.query('rollback');
      expect(await count(sql`id = 301`)).toBe(0);
      for (let i = 0; i < 12; i++) expect((await sql<{ x: number }>`select 1 as x`.execute(connection.db)).rows[0]!.x).toBe(1);
    } finally {
      await holder.end();
      await killer.end();
    }
  });
});

describe('ordering', () => {
  it('read-your-write: a deferred update, then an answered read of the same row, in order, many times', async () => {
    await sql`insert into rv_t values (400, 0)`.execute(connection.db);
    const seen = await connection.db.transaction().execute(async (trx) => {
      const out: number[] = [];
      for (let i = 1; i <= 5; i++) {
        await trx.executeQuery(deferred(sql`update rv_t set n = n + 1 where id = 400`.compile(trx)));
        await trx.executeQuery(deferred(sql`update rv_t set n = n * 2 where id = 400`.compile(trx)));
        out.push((await sql<{ n: number }>`select n from rv_t where id = 400`.execute(trx)).rows[0]!.n);
      }
      return out;
    });
    expect(seen).toEqual([2, 6, 14, 30, 62]);
  });
});

describe('pg_notify sent with the commit', () => {
  it('a listener woken by it sees the committed row at once, and a rolled-back transaction wakes nobody', async () => {
    const listener = new pg.Client(clientConfig);
    const reader = new pg.Client(clientConfig);
    await listener.connect();
    await reader.connect();
    try {
      await listener.query('listen rv_wake');
      const seen: Array<{ payload: string; visible: number }> = [];
      const woken = new Promise<void>((resolve) => {
        listener.on('notification', async (m) => {
          const r = await reader.query('select count(*)::int as n from rv_t where id = $1', [Number(m.payload)]);
          seen.push({ payload: m.payload!, visible: r.rows[0].n });
          if (m.payload === '901') resolve();
        });
      });
      await connection.db.transaction().execute(async (trx) => {
        await trx.executeQuery(deferred(sql`insert into rv_t values (900, 0)`.compile(trx)));
        await trx.executeQuery(deferred(sql`select pg_notify('rv_wake', '900')`.compile(trx)));
        throw new Error('rolled back');
      }).catch(() => {});
      await connection.db.transaction().execute(async (trx) => {
        await sql`select 1`.execute(trx);
        await trx.executeQuery(deferred(sql`insert into rv_t values (901, 0)`.compile(trx)));
        await trx.executeQuery(deferred(sql`select pg_notify('rv_wake', '901')`.compile(trx)));
      });
      await woken;
      expect(seen).toEqual([{ payload: '901', visible: 1 }]);
    } finally {
      await listener.end();
      await reader.end();
    }
  });
});

describe('a pool of 2 after 200 alternating failing and succeeding transactions', () => {
  it('every result is right, nothing held leaks into the next checkout, the pipeline stays in step', async () => {
    await sql`insert into rv_t values (500, 0)`.execute(connection.db);
    const runs = Array.from({ length: 200 }, (_, i) => i);
    const results = await Promise.all(
      runs.map(async (i) => {
        try {
          const value = await small.transaction().execute(async (trx) => {
            const id = 1000 + i;
            await trx.executeQuery(deferred(sql`insert into rv_t values (${id}, ${i})`.compile(trx)));
            switch (i % 4) {
              case 0: // succeeds; reads its own write
                return (await sql<{ n: number }>`select n from rv_t where id = ${id}`.execute(trx)).rows[0]!.n;
              case 1: // the callback throws with statements held
                await trx.executeQuery(deferred(sql`insert into rv_t values (${id + 10_000}, 0)`.compile(trx)));
                throw new Error(`thrown ${i}`);
              case 2: // a deferred duplicate fails at commit
                await trx.executeQuery(deferred(sql`insert into rv_t values (500, 0)`.compile(trx)));
                return -1;
              default: // a sent read, then the callback throws with a write held
                await sql`select 1`.execute(trx);
                await trx.executeQuery(deferred(sql`insert into rv_t values (${id + 10_000}, 0)`.compile(trx)));
                throw new Error(`thrown ${i}`);
            }
          });
          return { i, ok: true as const, value };
        } catch (e) {
          return { i, ok: false as const, code: (e as { code?: string }).code, message: (e as Error).message };
        }
      }),
    );
    for (const r of results) {
      if (r.i % 4 === 0) expect(r).toEqual({ i: r.i, ok: true, value: r.i });
      else if (r.i % 4 === 2) expect(r).toMatchObject({ ok: false, code: '23505' });
      else expect(r).toMatchObject({ ok: false, message: `thrown ${r.i}` });
    }
    const kept = (await sql<{ id: number }>`select id from rv_t where id >= 1000 order by id`.execute(connection.db)).rows.map((r) => r.id);
    expect(kept).toEqual(runs.filter((i) => i % 4 === 0).map((i) => 1000 + i));
    // Both clients: idle, not in a transaction, and answer the right rows.
    for (let k = 0; k < 10; k++) {
      const [x, y] = await Promise.all([sql<{ v: number; s: string }>`select ${k}::int as v, pg_current_xact_id_if_assigned()::text as s`.execute(small), sql<{ v: number }>`select ${k + 100}::int as v`.execute(small)]);
      expect(x.rows[0]!.v).toBe(k);
      expect(x.rows[0]!.s).toBeNull();
      expect(y.rows[0]!.v).toBe(k + 100);
    }
  }, 60_000);
});

describe('outside a transaction', () => {
  it('a deferred statement runs at once', async () => {
    await small.executeQuery(deferred(sql`insert into rv_t values (600, 0)`.compile(small)));
    expect(await count(sql`id = 600`)).toBe(1);
  });
});

describe('the create path on PostgreSQL (engine)', () => {
  let t: TestEngine;
  const engineDb = postgresDatabase();
  beforeAll(async () => {
    t = await openTestEngine(engineDb.url);
  });
  afterAll(async () => {
    await t.engine.close();
    await engineDb.drop();
  });

  it('eight concurrent creates under one idempotency key: one request, seven replays, no error', async () => {
    const body = CreateRequestBody.parse({ ...QUEUED, idempotencyKey: 'rv-race-1' });
    const outcomes = await Promise.all(Array.from({ length: 8 }, () => t.engine.createRequest(t.agent, body).then((r) => ({ id: r.request.id, replayed: r.replayed }), (e: { code?: string; message?: string }) => ({ error: e.code ?? e.message }))));
    expect(outcomes.filter((o) => 'error' in o)).toEqual([]);
    const ids = new Set(outcomes.map((o) => (o as { id: string }).id));
    expect(ids.size).toBe(1);
    expect(outcomes.filter((o) => (o as { replayed: boolean }).replayed === false)).toHaveLength(1);
  });

  it('two creates under one key, both past the pre-check and held at the agent lock: the loser\'s deferred insert fails at commit and it replays the winner', async () => {
    const agentId = (t.agent as unknown as { agentId: string }).agentId;
    expect(agentId).toBeTruthy();
    const holder = new pg.Client({ connectionString: PG_BASE_URL });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query(`select pg_advisory_xact_lock(hashtextextended($1, 0))`, [`agent:${agentId}`]);
      const body = CreateRequestBody.parse({ ...QUEUED, args: { host: 'rv-race-2' }, idempotencyKey: 'rv-race-2' });
      const both = Promise.all([0, 1].map(() => t.engine.createRequest(t.agent, body).then((r) => ({ id: r.request.id, replayed: r.replayed }), (e: { code?: string; message?: string }) => ({ error: e.code ?? e.message }))));
      let settled = false;
      void both.then(() => (settled = true));
      await new Promise((r) => setTimeout(r, 400)); // both are waiting on the lock by now
      expect(settled).toBe(false); // the lock really holds them (so both passed the pre-check)
      await holder.query('commit');
      const outcomes = await both;
      expect(outcomes.filter((o) => 'error' in o)).toEqual([]);
      expect(new Set(outcomes.map((o) => (o as { id: string }).id)).size).toBe(1);
      expect(outcomes.map((o) => (o as { replayed: boolean }).replayed).sort()).toEqual([false, true]);
    } finally {
      await holder.end();
    }
  });

  it('the audit entry commits with the request: the race losers, whose audit entries were deferred, left none; the winner exactly one', async () => {
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, args: { host: 'rv-audit' } }));
    await t.engine.store.settleAudit();
    const trail = await t.engine.store.auditFor(request.id);
    expect(trail.filter((r) => r.type === 'created')).toHaveLength(1);
    const engineSchema = new URL(engineDb.url).searchParams.get('schema')!;
    const c = new pg.Client({ connectionString: PG_BASE_URL, options: `-c search_path=${engineSchema}` });
    await c.connect();
    try {
      const created = await c.query(`select count(*)::int as n, count(distinct request_id)::int as d from (select request_id from audit_log where type = 'created' union all select request_id from audit_pending where type = 'created') x`);
      const requests = await c.query('select count(*)::int as n from requests');
      const orphans = await c.query(`select count(*)::int as n from (select request_id from audit_log union all select request_id from audit_pending) x where request_id is not null and request_id not in (select id from requests)`);
      expect(created.rows[0]).toEqual({ n: requests.rows[0].n, d: requests.rows[0].n });
      expect(orphans.rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
  });
});

describe('FINDING 1 (medium): a deferred failure whose error lands on a statement the callback catches is lost; commit resolves but the server rolled back', () => {
  // The wrapper throws a held statement's error from the next answered statement. A callback
  // that catches that statement's error (a probe it treats as optional) swallows the write's
  // failure; `commit` then goes out alone on an aborted transaction, PostgreSQL answers it with
  // ROLLBACK (no error), and `transaction().execute` resolves: acknowledged, nothing stored.
  // Unpipelined, the write threw at its own await, outside the probe's catch. Fail closed: the
  // wrapper should remember a failure in the transaction and make commit throw it.
  it('commit must not resolve after a held statement failed', async () => {
    await sql`insert into rv_t values (700, 0)`.execute(connection.db);
    const outcome = await connection.db
      .transaction()
      .execute(async (trx) => {
        await trx.executeQuery(deferred(sql`insert into rv_t values (701, 0)`.compile(trx)));
        await trx.executeQuery(deferred(sql`insert into rv_t values (700, 0)`.compile(trx))); // duplicate
        // An optional probe whose failure the caller tolerates (e.g. a cast on untrusted text).
        await sql`select 'x'::int`.execute(trx).catch(() => undefined);
        return 'committed';
      })
      .then((v) => v, (e: { code?: string }) => e.code);
    const stored = await count(sql`id in (701)`);
    // Either the transaction fails (with the duplicate's 23505) or its writes are there.
    expect({ outcome, stored }).toEqual({ outcome: '23505', stored: 0 });
  });
});

describe('FINDING 2 (medium): a deferred statement that fails in the client (its parameters cannot be encoded) never reaches the server, so it does not abort the transaction: the commit sent with it goes through, the caller gets an error, the other writes are kept', () => {
  // node-postgres encodes parameters at send time (utils.prepareValue); one that throws (an object
  // holding a BigInt, a circular object, a throwing toPostgres) fails that query locally, and the
  // server never sees it. Unpipelined, the failure came at the write's own await and the callback
  // rolled back. Pipelined with `commit`, the server commits everything else while `send` throws
  // the local failure: the transaction is reported failed but is half-applied (on the create path
  // this would be a request row without its audit entry, answered 500). Fix: encode (or at least
  // check) held statements' parameters before queueing the batch, or never batch `commit` with
  // deferred statements: send them with a cheap answered `select` first, then commit on success.
  it('either everything is kept and the transaction resolves, or nothing is kept and it rejects', async () => {
    const outcome = await connection.db
      .transaction()
      .execute(async (trx) => {
        await trx.executeQuery(deferred(sql`insert into rv_t values (800, 0)`.compile(trx)));
        await trx.executeQuery(deferred(sql`insert into rv_t values (801, ${{ n: 1n } as unknown as number})`.compile(trx)));
        await trx.executeQuery(deferred(sql`insert into rv_t values (802, 0)`.compile(trx)));
        return 'committed';
      })
      .then((v) => v, () => 'failed');
    const stored = await count(sql`id in (800, 801, 802)`);
    // On the branch: { outcome: 'failed', stored: 2 } (800 and 802 committed).
    expect({ outcome, stored }).toEqual(outcome === 'committed' ? { outcome, stored: 3 } : { outcome, stored: 0 });
  });
});

/**
 * PostgreSQL transactions send what they need no answer to with the next statement
 * (store/pipeline.ts): `begin` with the first statement, `deferred` writes with the next read or
 * with `commit`. These check that it saves the round trips and changes nothing else: a lock sent
 * ahead of a read still makes the read wait and see what the holder committed; a deferred write
 * that fails fails its transaction with its own error and leaves nothing behind.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Connection } from '../src/store/connect.ts';
import { deferred } from '../src/store/pipeline.ts';
import { postgresDatabase } from './support/databases.ts';

/**
 * Statements handed to pg clients while `fn` runs, and round trips on the wire: a write to a
 * client's socket after it last read (or before its first read) starts one.
 */
async function roundTrips(fn: () => Promise<unknown>): Promise<{ statements: number; roundTrips: number }> {
  const original = pg.Client.prototype.query;
  const watched = new WeakSet<object>();
  let statements = 0;
  let trips = 0;
  let counting = true;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    statements++;
    const stream = (this as unknown as { connection: { stream: NodeJS.WritableStream & NodeJS.EventEmitter } }).connection.stream;
    if (!watched.has(stream)) {
      watched.add(stream);
      let read = true;
      const write = stream.write.bind(stream);
      stream.write = ((...w: Parameters<typeof write>) => {
        if (read && counting) trips++;
        read = false;
        return write(...w);
      }) as typeof stream.write;
      stream.on('data', () => (read = true));
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  try {
    await fn();
  } finally {
    counting = false;
    pg.Client.prototype.query = original;
  }
  return { statements, roundTrips: trips };
}

describe('PostgreSQL pipelined transactions', () => {
  const database = postgresDatabase();
  let connection: Connection;
  let other: pg.Client;

  beforeAll(async () => {
    connection = await connect(database.url);
    await sql`create table pipe_t (id int primary key, note text)`.execute(connection.db);
    other = new pg.Client({ connectionString: database.url.replace(/\?schema=.*$/, ''), options: `-c search_path=${new URL(database.url).searchParams.get('schema')}` });
    await other.connect();
  });
  afterAll(async () => {
    await other.end();
    await connection.destroy();
    await database.drop();
  });

  it('begin, deferred writes and commit share round trips: 2 statements answered, 6 sent', async () => {
    const counted = await roundTrips(() =>
      connection.db.transaction().execute(async (trx) => {
        await trx.executeQuery(deferred(sql`insert into pipe_t values (1, 'a')`.compile(trx)));
        const seen = await sql<{ n: number }>`select count(*)::int as n from pipe_t`.execute(trx);
        expect(seen.rows[0]!.n).toBe(1); // the read runs after the write it was sent with
        await trx.executeQuery(deferred(sql`insert into pipe_t values (2, 'b')`.compile(trx)));
        await trx.executeQuery(deferred(sql`select pg_notify('pipe_t', 'x')`.compile(trx)));
      }),
    );
    expect(counted).toEqual({ statements: 6, roundTrips: 2 }); // [begin, insert, select], [insert, notify, commit]
    const rows = await sql<{ id: number }>`select id from pipe_t order by id`.execute(connection.db);
    expect(rows.rows.map((r) => r.id)).toEqual([1, 2]);
  });

  it('a deferred write that fails fails the transaction with its own error; nothing of it is kept', async () => {
    const failing = connection.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferred(sql`insert into pipe_t values (10, 'kept?')`.compile(trx)));
      await trx.executeQuery(deferred(sql`insert into pipe_t values (1, 'duplicate')`.compile(trx)));
    });
    await expect(failing).rejects.toMatchObject({ code: '23505' });
    const after = await sql<{ id: number }>`select id from pipe_t where id = 10`.execute(connection.db);
    expect(after.rows).toEqual([]);
    // The same failure before a read: the read's "transaction aborted" is not what is thrown.
    const beforeRead = connection.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferred(sql`insert into pipe_t values (1, 'duplicate')`.compile(trx)));
      await sql`select 1`.execute(trx);
    });
    await expect(beforeRead).rejects.toMatchObject({ code: '23505' });
    // The pooled connection is usable afterwards.
    expect((await sql<{ n: number }>`select count(*)::int as n from pipe_t`.execute(connection.db)).rows[0]!.n).toBe(2);
  });

  it('a lock sent ahead of a read makes the read wait for the holder, and see what it committed', async () => {
    await other.query('begin');
    await other.query(`select pg_advisory_xact_lock(hashtextextended('pipe-lock', 0))`);
    await other.query(`insert into pipe_t values (20, 'by the holder')`);
    const reading = connection.db.transaction().execute(async (trx) => {
      await trx.executeQuery(deferred(sql`select pg_advisory_xact_lock(hashtextextended('pipe-lock', 0))`.compile(trx)));
      return (await sql<{ n: number }>`select count(*)::int as n from pipe_t where id = 20`.execute(trx)).rows[0]!.n;
    });
    let settled = false;
    void reading.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false); // waiting on the lock
    await other.query('commit');
    expect(await reading).toBe(1); // its snapshot was taken after the lock: the holder's row is seen
  });

  it('a transaction that sends nothing costs no round trip, and one that throws before sending sends nothing', async () => {
    expect(await roundTrips(() => connection.db.transaction().execute(async () => 1))).toEqual({ statements: 0, roundTrips: 0 });
    const thrown = await roundTrips(() =>
      connection.db
        .transaction()
        .execute(async (trx) => {
          await trx.executeQuery(deferred(sql`insert into pipe_t values (30, 'never')`.compile(trx)));
          throw new Error('changed my mind');
        })
        .catch(() => {}),
    );
    expect(thrown).toEqual({ statements: 0, roundTrips: 0 });
    expect((await sql<{ n: number }>`select count(*)::int as n from pipe_t where id = 30`.execute(connection.db)).rows[0]!.n).toBe(0);
  });
});

/**
 * Waiting for SQLite's write lock without blocking the event loop (store/sqlite-busy.ts), on a
 * real SQLite file with a second real connection holding `BEGIN EXCLUSIVE`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, type Connection } from '../src/store/connect.ts';
import { BACKGROUND_BUSY_BUDGET_MS, inBackground, isSqliteBusy, retryableWhenBusy, withBusyBudget, withBusyRetry } from '../src/store/sqlite-busy.ts';

describe('retryableWhenBusy (pure)', () => {
  it('repeats a begin, or any statement outside a transaction; nothing else inside one', () => {
    expect(retryableWhenBusy('begin immediate', false)).toBe(true);
    expect(retryableWhenBusy('  BEGIN', true)).toBe(true);
    expect(retryableWhenBusy('insert into t values (1)', false)).toBe(true);
    expect(retryableWhenBusy('insert into t values (1)', true)).toBe(false);
    expect(retryableWhenBusy('commit', true)).toBe(false);
    expect(retryableWhenBusy('beginning', false)).toBe(true); // outside a transaction anyway
    expect(retryableWhenBusy('beginning_table_update', true)).toBe(false);
  });

  it('withBusyRetry stops at the budget and rethrows the busy error; other errors are not retried', async () => {
    const busy = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    let calls = 0;
    const started = Date.now();
    await expect(withBusyRetry(async () => (calls++, Promise.reject(busy)), () => true, { budgetMs: 60 })).rejects.toBe(busy);
    expect(calls).toBeGreaterThan(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    calls = 0;
    const other = new Error('no such table');
    await expect(withBusyRetry(async () => (calls++, Promise.reject(other)), () => true, { budgetMs: 1000 })).rejects.toBe(other);
    expect(calls).toBe(1);
    calls = 0;
    await expect(withBusyRetry(async () => (calls++, Promise.reject(busy)), () => false, { budgetMs: 1000 })).rejects.toBe(busy);
    expect(calls).toBe(1);
    expect(isSqliteBusy({ code: 'SQLITE_BUSY_SNAPSHOT' })).toBe(true);
    expect(isSqliteBusy({ code: 'SQLITE_LOCKED' })).toBe(false);
    expect(isSqliteBusy(null)).toBe(false);
  });
});

describe('a store connection while another process holds the write lock', () => {
  let dir: string;
  let file: string;
  let connection: Connection;
  let other: SqliteDatabase.Database;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'countersign-busy-'));
    file = join(dir, 'busy.db');
    connection = await connect(`sqlite:${file}`);
    await sql`create table t (n integer)`.execute(connection.db);
    other = new SqliteDatabase(file);
  });

  afterEach(async () => {
    if (other.inTransaction) other.exec('ROLLBACK');
    other.close();
    await connection.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Counts event-loop turns while `work` runs: a synchronous busy wait would leave it near 0. */
  async function turnsDuring<T>(work: Promise<T>): Promise<{ turns: number; result: PromiseSettledResult<T> }> {
    let turns = 0;
    const timer = setInterval(() => turns++, 10);
    const [result] = await Promise.allSettled([work]);
    clearInterval(timer);
    return { turns, result };
  }

  it('a write waits asynchronously (the event loop runs on) and succeeds once the lock is released', async () => {
    other.exec('BEGIN EXCLUSIVE');
    setTimeout(() => other.exec('ROLLBACK'), 400);
    const started = Date.now();
    const { turns, result } = await turnsDuring(sql`insert into t values (1)`.execute(connection.db));
    expect(result.status).toBe('fulfilled');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(turns).toBeGreaterThanOrEqual(10);
    const rows = await sql<{ n: number }>`select n from t`.execute(connection.db);
    expect(rows.rows).toEqual([{ n: 1 }]);
  });

  it('a `begin immediate` (the store’s group commit) waits the same way, and a lock held past the budget fails with SQLITE_BUSY, writing nothing', async () => {
    other.exec('BEGIN EXCLUSIVE');
    const started = Date.now();
    const { turns, result } = await turnsDuring(
      withBusyBudget(500, () =>
        connection.db.connection().execute(async (conn) => {
          await sql`begin immediate`.execute(conn);
          await sql`insert into t values (2)`.execute(conn);
          await sql`commit`.execute(conn);
        }),
      ),
    );
    expect(result.status).toBe('rejected');
    expect(isSqliteBusy((result as PromiseRejectedResult).reason)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(turns).toBeGreaterThanOrEqual(15);
    other.exec('ROLLBACK');
    expect((await sql<{ c: number }>`select count(*) as c from t`.execute(connection.db)).rows[0]!.c).toBe(0);
  });

  it('a Kysely transaction (the migrator’s) begins immediate: it waits for the lock at its start instead of failing at its first write', async () => {
    other.exec('BEGIN EXCLUSIVE');
    setTimeout(() => other.exec('ROLLBACK'), 300);
    const { turns, result } = await turnsDuring(connection.db.transaction().execute(async (trx) => sql`insert into t values (4)`.execute(trx)));
    expect(result.status).toBe('fulfilled');
    expect(turns).toBeGreaterThanOrEqual(10);
    expect((await sql<{ n: number }>`select n from t`.execute(connection.db)).rows).toEqual([{ n: 4 }]);
  });

  it('inside a transaction a busy statement is not repeated (only the whole transaction could be)', async () => {
    // A deferred reader that another connection's commit made stale cannot upgrade: SQLITE_BUSY_SNAPSHOT, at once.
    await sql`insert into t values (5)`.execute(connection.db);
    const started = Date.now();
    const outcome = connection.db.connection().execute(async (conn) => {
      await sql`begin`.execute(conn);
      try {
        await sql`select count(*) from t`.execute(conn);
        other.exec('INSERT INTO t VALUES (6)');
        await sql`insert into t values (7)`.execute(conn);
      } finally {
        await sql`rollback`.execute(conn);
      }
    });
    await expect(outcome).rejects.toSatisfy(isSqliteBusy);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('background work gives up after its short budget', async () => {
    other.exec('BEGIN EXCLUSIVE');
    const started = Date.now();
    await expect(inBackground(() => sql`insert into t values (3)`.execute(connection.db))).rejects.toSatisfy(isSqliteBusy);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(BACKGROUND_BUSY_BUDGET_MS - 20);
    // Well under the request path's 5 s: the point is that it does not wait as long.
    expect(took).toBeLessThan(3000);
  });
});

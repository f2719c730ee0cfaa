/**
 * Waiting for SQLite's write lock without blocking the event loop.
 *
 * better-sqlite3 is synchronous: with `busy_timeout = N`, a statement that finds another process
 * holding the write lock sleeps inside SQLite for up to N ms, and the whole server (every request,
 * stream and timer) sleeps with it. A scheduler tick, a credential's last-used touch and a create
 * each waited 5 s in turn, so one outside `BEGIN EXCLUSIVE` froze the server for 30 s and more.
 *
 * Here the connection's own busy timeout is 0 and a statement that gets SQLITE_BUSY is tried again
 * after an asynchronous sleep (doubling from 2 ms to 50 ms, jittered), for at most `budgetMs` in
 * all (`currentBusyBudget`: less for background work); then the last error is thrown (the HTTP layer answers 503 STORE_UNAVAILABLE). Only what is
 * safe to repeat is repeated: a `begin …` (nothing happened yet), and any statement run outside a
 * transaction (autocommit: SQLITE_BUSY means it did not run). Inside a transaction a busy
 * statement is not repeated — in WAL mode that is a deferred reader that may not upgrade, and only
 * the whole transaction can be tried again — so it fails at once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type SqliteDatabase from 'better-sqlite3';
import { CompiledQuery, SqliteDialect, type DatabaseConnection, type Driver, type QueryResult, type TransactionSettings } from 'kysely';

/** How long one statement may wait, in all, for another connection's write lock. */
export const SQLITE_BUSY_BUDGET_MS = 5000;

/**
 * The budget of background work (scheduler ticks, audit integration and checkpoints, a
 * credential's last-used touch): it runs again soon anyway, and while it waits on the one SQLite
 * connection, requests queue behind it. So it gives up quickly and leaves the connection to them.
 */
export const BACKGROUND_BUSY_BUDGET_MS = 200;

const budget = new AsyncLocalStorage<number>();

/** The busy budget of the work in progress: the request path's unless inside `inBackground`. */
export function currentBusyBudget(): number {
  return budget.getStore() ?? SQLITE_BUSY_BUDGET_MS;
}

/** Runs `fn` (and everything it starts) with the busy budget `ms`. */
export function withBusyBudget<T>(ms: number, fn: () => T): T {
  return budget.run(ms, fn);
}

/** Runs background work with the short busy budget (above); a no-op on PostgreSQL, which never reads it. */
export function inBackground<T>(fn: () => T): T {
  return budget.run(BACKGROUND_BUSY_BUDGET_MS, fn);
}

export function isSqliteBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
}

/** The pure part: may this statement be tried again after SQLITE_BUSY? */
export function retryableWhenBusy(sqlText: string, inTransaction: boolean): boolean {
  return !inTransaction || /^\s*begin\b/i.test(sqlText);
}

export interface BusyOptions {
  budgetMs?: number;
  /** Test seam: the clock the budget is measured on. */
  now?: () => number;
}

/** Runs `attempt`, trying again after SQLITE_BUSY while `retryable()` and the budget allow. */
export async function withBusyRetry<T>(attempt: () => Promise<T>, retryable: () => boolean, options: BusyOptions = {}): Promise<T> {
  const now = options.now ?? Date.now;
  const deadline = now() + (options.budgetMs ?? currentBusyBudget());
  let delay = 2;
  for (;;) {
    const canRetry = retryable();
    try {
      return await attempt();
    } catch (err) {
      if (!isSqliteBusy(err) || !canRetry) throw err;
      const left = deadline - now();
      if (left <= 0) throw err;
      await sleep(Math.min(left, delay / 2 + Math.random() * (delay / 2)));
      delay = Math.min(delay * 2, 50);
    }
  }
}

class BusyRetryingConnection implements DatabaseConnection {
  constructor(
    readonly inner: DatabaseConnection,
    private readonly database: SqliteDatabase.Database,
    private readonly options: BusyOptions,
  ) {}

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    return withBusyRetry(
      () => this.inner.executeQuery<R>(compiled),
      () => retryableWhenBusy(compiled.sql, this.database.inTransaction),
      this.options,
    );
  }

  streamQuery<R>(compiled: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(compiled, chunkSize);
  }
}

class BusyRetryingDriver implements Driver {
  #wrapped = new WeakMap<DatabaseConnection, BusyRetryingConnection>();

  constructor(
    private readonly inner: Driver,
    private readonly database: SqliteDatabase.Database,
    private readonly options: BusyOptions,
  ) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const conn = await this.inner.acquireConnection();
    let wrapped = this.#wrapped.get(conn);
    if (!wrapped) {
      wrapped = new BusyRetryingConnection(conn, this.database, this.options);
      this.#wrapped.set(conn, wrapped);
    }
    return wrapped;
  }

  /**
   * `begin immediate`, not Kysely's deferred `begin`: the write lock is taken (and waited for,
   * above) at the start, where waiting is safe, instead of at the first write, where a busy
   * deferred transaction can only fail. (On SQLite the store's own writes use the group commit;
   * this is the migrator's and the tools'.)
   */
  async beginTransaction(conn: DatabaseConnection, _settings: TransactionSettings): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  commitTransaction(conn: DatabaseConnection): Promise<void> {
    return this.inner.commitTransaction(conn);
  }

  rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    return this.inner.rollbackTransaction(conn);
  }

  savepoint(conn: DatabaseConnection, name: string, compile: Parameters<NonNullable<Driver['savepoint']>>[2]): Promise<void> {
    return this.inner.savepoint!(conn, name, compile);
  }

  rollbackToSavepoint(conn: DatabaseConnection, name: string, compile: Parameters<NonNullable<Driver['rollbackToSavepoint']>>[2]): Promise<void> {
    return this.inner.rollbackToSavepoint!(conn, name, compile);
  }

  releaseSavepoint(conn: DatabaseConnection, name: string, compile: Parameters<NonNullable<Driver['releaseSavepoint']>>[2]): Promise<void> {
    return this.inner.releaseSavepoint!(conn, name, compile);
  }

  releaseConnection(conn: DatabaseConnection): Promise<void> {
    return this.inner.releaseConnection((conn as BusyRetryingConnection).inner ?? conn);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

/**
 * Kysely's SQLite dialect over `database`, with the connection's busy timeout at 0 and busy
 * statements retried asynchronously (above). The transaction commands Kysely sends go through
 * the wrapped connection it is handed, so `begin` is retried too.
 */
export class BusyRetryingSqliteDialect extends SqliteDialect {
  readonly #database: SqliteDatabase.Database;
  readonly #options: BusyOptions;

  constructor(database: SqliteDatabase.Database, options: BusyOptions = {}) {
    super({ database });
    database.pragma('busy_timeout = 0');
    this.#database = database;
    this.#options = options;
  }

  override createDriver(): Driver {
    return new BusyRetryingDriver(super.createDriver(), this.#database, this.#options);
  }
}

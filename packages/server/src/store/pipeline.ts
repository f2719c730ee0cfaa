/**
 * Fewer round trips per PostgreSQL transaction (issue 14, performance): the pool's clients run
 * in node-postgres pipeline mode, and this driver wrapper holds back what a transaction need not
 * wait for, sending it in the same write as the next statement that must be answered:
 *
 * - `begin` goes out with the transaction's first statement (nothing can run between them);
 * - a statement marked `deferred` (a write whose result nobody reads: an insert, a lock) goes out
 *   with the next statement, or with `commit`.
 *
 * The server runs pipelined statements one after another, in order, each with its own snapshot
 * (READ COMMITTED), exactly as if each had been awaited: a read sent after `pg_advisory_xact_lock`
 * still starts only once the lock is granted. What changes is only when an error is seen: a
 * deferred statement that fails aborts the transaction, so every statement after it fails and
 * `commit` turns into a rollback; the wrapper throws the deferred statement's own error from the
 * next answered statement (or from `commit`), so the transaction fails, as it would have. Outside
 * a transaction nothing is held back (a deferred statement is simply executed). Savepoints are
 * not offered (the driver has none; nothing on PostgreSQL uses them).
 */
import { CompiledQuery, type DatabaseConnection, type Dialect, type Driver, type QueryResult, type TransactionSettings } from 'kysely';
import pg from 'pg';

const DEFERRED = Symbol('countersign.deferred');

/** `query`, marked so that inside a PostgreSQL transaction it is sent with the next answered statement instead of on its own. */
export function deferred(query: CompiledQuery): CompiledQuery {
  return { ...query, [DEFERRED]: true } as CompiledQuery;
}

const isDeferred = (query: CompiledQuery) => (query as { [DEFERRED]?: boolean })[DEFERRED] === true;

const BEGIN = CompiledQuery.raw('begin');
const NO_ROWS: QueryResult<never> = Object.freeze({ rows: Object.freeze([]) as unknown as never[] });

/**
 * A held statement's parameters, encoded now as node-postgres will encode them when it sends
 * (`utils.prepareValue`): a value it cannot encode (a BigInt inside an object, a cycle, a
 * `toPostgres` that throws) fails at the statement's own `await`, as without pipelining, instead
 * of failing on the client while the rest of its batch — `commit` included — reaches the server
 * (review of the pipeline, finding 2).
 */
function checkEncodable(query: CompiledQuery): void {
  for (const value of query.parameters) pgUtils.prepareValue(value);
}

/** node-postgres's own value encoder (`pg.utils`, at run time; @types/pg does not declare it). */
const pgUtils = (pg as unknown as { utils: { prepareValue(value: unknown): unknown } }).utils;

class PipelinedConnection implements DatabaseConnection {
  /** Inside a transaction: `begin` not yet sent, and statements held back, in order. */
  inTransaction = false;
  held: CompiledQuery[] = [];
  /**
   * The first failure seen in this transaction. Once a statement failed the server has aborted
   * the transaction, so every later statement and the commit throw this same error: a caller that
   * catches one statement's error cannot go on to a commit that PostgreSQL silently turns into a
   * rollback (review of the pipeline, finding 1), and the error seen is the cause, not 25P02.
   */
  failure: { error: unknown } | null = null;

  constructor(readonly inner: DatabaseConnection) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    if (!this.inTransaction) return this.inner.executeQuery<R>(query);
    if (this.failure) throw this.failure.error;
    if (isDeferred(query)) {
      checkEncodable(query);
      this.held.push(query);
      return NO_ROWS as QueryResult<R>;
    }
    return this.send<R>(query);
  }

  /** Sends what is held, then `query`, in one write; answers `query`, or throws the first failure among them. */
  async send<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    if (this.failure) throw this.failure.error;
    const before = this.held.splice(0);
    try {
      if (before.length === 0) return await this.inner.executeQuery<R>(query);
      // Each executeQuery hands its statement to the pipelined client at once, in this order.
      const answers = before.map((q) => this.inner.executeQuery(q));
      const last = this.inner.executeQuery<R>(query);
      const settled = await Promise.allSettled([...answers, last]);
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return (settled[settled.length - 1] as PromiseFulfilledResult<QueryResult<R>>).value;
    } catch (error) {
      this.failure ??= { error };
      throw error;
    }
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    if (this.inTransaction && this.held.length > 0) throw new Error('pipeline: a stream cannot follow held statements');
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

class PipelinedDriver implements Driver {
  readonly #inner: Driver;
  readonly #wrapped = new WeakMap<DatabaseConnection, PipelinedConnection>();

  constructor(inner: Driver) {
    this.#inner = inner;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const inner = await this.#inner.acquireConnection();
    let connection = this.#wrapped.get(inner);
    if (!connection) {
      connection = new PipelinedConnection(inner);
      this.#wrapped.set(inner, connection);
    }
    connection.inTransaction = false;
    connection.held = [];
    connection.failure = null;
    return connection;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const c = connection as PipelinedConnection;
    if (settings.isolationLevel || settings.accessMode) return this.#inner.beginTransaction(c.inner, settings);
    // Held: goes out with the first statement of the transaction.
    c.inTransaction = true;
    c.held = [BEGIN];
    c.failure = null;
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as PipelinedConnection;
    const nothingSent = c.held[0] === BEGIN;
    if (nothingSent && c.held.length === 1) {
      c.inTransaction = false;
      c.held = [];
      return; // an empty transaction: nothing to commit
    }
    try {
      // After a failure (even one the transaction's code caught) this throws it: never a commit
      // that the server, its transaction aborted, would answer as a silent rollback.
      await c.send(CompiledQuery.raw('commit'));
    } finally {
      c.inTransaction = false;
      c.held = [];
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as PipelinedConnection;
    const nothingSent = c.held[0] === BEGIN;
    c.inTransaction = false;
    c.held = [];
    c.failure = null;
    // Held statements were never sent; a transaction the server never saw has nothing to undo.
    // After a failed commit the server has already ended it (a rollback then only warns).
    if (nothingSent) return;
    await c.inner.executeQuery(CompiledQuery.raw('rollback'));
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    const c = connection as PipelinedConnection;
    c.inTransaction = false;
    c.held = [];
    c.failure = null;
    return this.#inner.releaseConnection(c.inner);
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}

/** `dialect` with its driver wrapped (see the top of this file). The pool's clients must be created with `pipeline: true`. */
export function pipelinedDialect(dialect: Dialect): Dialect {
  return {
    createAdapter: () => dialect.createAdapter(),
    createDriver: () => new PipelinedDriver(dialect.createDriver()),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createQueryCompiler: () => dialect.createQueryCompiler(),
  };
}

/**
 * Opens a store from a `COUNTERSIGN_DATABASE_URL`: `sqlite:PATH`, `sqlite::memory:` or
 * `postgres://…` (an optional `?schema=NAME` query parameter puts every table in that schema,
 * which the tests use to isolate runs). Dialect differences are capability flags here, never
 * `if`s scattered through the engine.
 */
import { chmodSync, closeSync, constants, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, type Migration, type MigrationProvider, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { CountersignError } from '@countersign/core';
import { listenResilient } from './listener.ts';
import { migrationProvider } from './migrations/index.ts';
import { pipelinedDialect } from './pipeline.ts';
import { BusyRetryingSqliteDialect } from './sqlite-busy.ts';
import type { Database } from './schema.ts';

export interface Capabilities {
  dialect: 'sqlite' | 'postgres';
  /** Row locks (`SELECT … FOR UPDATE`) so concurrent processes serialise on one request. */
  rowLocks: boolean;
  /** `FOR UPDATE SKIP LOCKED`, for sharing due work between processes. */
  skipLocked: boolean;
  /** Cross-process wake-ups through LISTEN/NOTIFY. */
  listenNotify: boolean;
  /** One writer connection: concurrent transactions are grouped under one commit. */
  groupCommit: boolean;
}

export interface Connection {
  db: Kysely<Database>;
  capabilities: Capabilities;
  /**
   * Subscribe to cross-process notifications (PostgreSQL only). The subscription survives a lost
   * connection (store/listener.ts); `onReconnect` is called each time it is back, since
   * notifications sent meanwhile were missed.
   */
  listen?: (channel: string, onMessage: (payload: string) => void, onReconnect?: () => void) => Promise<() => Promise<void>>;
  /**
   * SQLite files only: `PRAGMA data_version`, which changes when another connection (another
   * process on the same file) commits, and never for this connection's own commits. A cheap,
   * synchronous read; the engine polls it for cross-process wake-ups (engine/external-changes.ts).
   */
  dataVersion?: () => number;
  destroy(): Promise<void>;
}

export interface ParsedUrl {
  dialect: 'sqlite' | 'postgres';
  /** The file path, `:memory:`, or the PostgreSQL connection string without our own parameters. */
  target: string;
  schema?: string;
}

export function parseDatabaseUrl(url: string): ParsedUrl {
  if (url.startsWith('sqlite:')) {
    const target = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!target) throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_DATABASE_URL: sqlite: needs a path or :memory:');
    return { dialect: 'sqlite', target };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const parsed = new URL(url);
    const schema = parsed.searchParams.get('schema') ?? undefined;
    parsed.searchParams.delete('schema');
    if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
      throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_DATABASE_URL: bad schema name "${schema}"`);
    }
    return { dialect: 'postgres', target: parsed.toString(), ...(schema ? { schema } : {}) };
  }
  throw new CountersignError(
    'VALIDATION_FAILED',
    `COUNTERSIGN_DATABASE_URL must start with sqlite: or postgres:// (got "${url.split(':')[0]}:")`,
  );
}

function openSqlite(target: string): Connection {
  const file = target === ':memory:' ? null : resolve(target);
  if (file) createPrivately(file);
  const database = new SqliteDatabase(target);
  database.pragma('journal_mode = WAL');
  if (file) for (const side of [`${file}-wal`, `${file}-shm`]) tighten(side);
  // FULL: a 2xx means the commit is on disk, even across power loss, not only a process crash.
  database.pragma('synchronous = FULL');
  database.pragma('foreign_keys = ON');
  // No busy wait inside SQLite (it would block the event loop): store/sqlite-busy.ts waits asynchronously.
  cachePreparedStatements(database);
  const db = new Kysely<Database>({ dialect: new BusyRetryingSqliteDialect(database) });
  return {
    db,
    capabilities: { dialect: 'sqlite', rowLocks: false, skipLocked: false, listenNotify: false, groupCommit: true },
    // An in-memory database has no other connection to hear from.
    ...(target === ':memory:' ? {} : { dataVersion: () => Number(database.pragma('data_version', { simple: true })) }),
    destroy: () => db.destroy(),
  };
}

/**
 * The database holds requests, reviews and (sealed or not) TOTP seeds: only the server's user may
 * read it. SQLite creates its -wal and -shm files with the mode of the database file, so creating
 * that file 0600 (exclusively, before SQLite opens it; umask can only narrow it) covers all three;
 * a file made by an older version with wider bits is narrowed to 0600 at open. A new directory is 0700.
 */
function createPrivately(file: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  try {
    closeSync(openSync(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  tighten(file);
}

function tighten(file: string): void {
  try {
    const mode = statSync(file).mode;
    if ((mode & 0o077) !== 0) chmodSync(file, mode & 0o700);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Kysely prepares every query anew; better-sqlite3 statements are reusable, and the engine's
 * hot path issues the same few SQL texts over and over. Keep the most recent ones.
 */
function cachePreparedStatements(database: SqliteDatabase.Database, max = 256): void {
  const prepare = database.prepare.bind(database);
  const cache = new Map<string, SqliteDatabase.Statement>();
  database.prepare = ((source: string) => {
    let statement = cache.get(source);
    if (!statement) {
      statement = prepare(source);
      if (cache.size >= max) cache.delete(cache.keys().next().value as string);
      cache.set(source, statement);
    }
    return statement;
  }) as typeof database.prepare;
}

/** bigint columns hold epoch milliseconds and sequence numbers, well inside 2^53. */
const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

function openPostgres(parsed: ParsedUrl): Connection {
  // jit=off: PostgreSQL compiles a query with LLVM once its estimated cost passes
  // jit_above_cost, and for the history aggregates (store/history.ts: one pass over a quarter's
  // rows with some twenty CASE sums) that compilation took about 0.9 s of a 1.2 s query on 200,000
  // requests; no query of ours runs long enough to win it back (`npm run bench:scale -- --db postgres`).
  const options = [`-c jit=off`, ...(parsed.schema ? [`-c search_path=${parsed.schema}`] : [])].join(' ');
  // keepAlive: a connection cut without a FIN or RST (a failover behind a load balancer) is
  // noticed by TCP keep-alive instead of never; connectionTimeoutMillis: while the database is
  // away a request waits at most this long for a connection, then gets 503 STORE_UNAVAILABLE.
  const base = { connectionString: parsed.target, types: pgTypes, keepAlive: true, keepAliveInitialDelayMillis: 10_000, options };
  // pipeline: a transaction's statements that need no answer go out with the next one (store/pipeline.ts).
  const pool = new pg.Pool({ ...base, max: 10, connectionTimeoutMillis: 10_000, pipeline: true } as pg.PoolConfig);
  // A client that loses its connection must not crash the process. pg-pool listens for `error`
  // only on idle clients; one checked out (inside a transaction, between two queries) that is
  // terminated (57P01 on a restart or failover) emits `error` with no listener, which kills the
  // process (issue 13 point 11). So every client gets one for life; its query fails instead
  // (→ 503 STORE_UNAVAILABLE), and pg-pool drops it on release (a broken client is never handed
  // out again) and connects anew on the next checkout.
  pool.on('connect', (client) => client.on('error', () => {}));
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: pipelinedDialect(new PostgresDialect({ pool })) });
  const listeners = new Set<() => Promise<void>>();
  return {
    db,
    capabilities: { dialect: 'postgres', rowLocks: true, skipLocked: true, listenNotify: true, groupCommit: false },
    async listen(channel, onMessage, onReconnect) {
      const stop = await listenResilient(base, channel, onMessage, onReconnect ?? (() => {}));
      listeners.add(stop);
      return async () => {
        listeners.delete(stop);
        await stop();
      };
    },
    async destroy() {
      await Promise.all([...listeners].map((stop) => stop()));
      listeners.clear();
      await db.destroy();
    },
  };
}

export async function ensureSchema(parsed: ParsedUrl): Promise<void> {
  if (parsed.dialect !== 'postgres' || !parsed.schema) return;
  const client = new pg.Client({ connectionString: parsed.target });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${client.escapeIdentifier(parsed.schema)}`);
  } finally {
    await client.end();
  }
}

export interface MigrationReport {
  applied: string[];
  /**
   * Migrations this database has recorded that this release does not know: a newer release
   * migrated it (a rolling upgrade in progress). Expand migrations only add, so this release runs
   * beside them; see {@link newerReleaseMigrations}.
   */
  newer: string[];
}

/** The table where Kysely records applied migrations (and, beside it, its lock table). */
const MIGRATION_TABLE = 'countersign_migrations';

/**
 * A migration key ending in `_contract` removes or repurposes what older releases use (a dropped
 * column, a tightened constraint). Such a migration ends the rolling-upgrade window: a release
 * that does not know it refuses the database instead of running against a schema it may misuse.
 */
const CONTRACT_SUFFIX = '_contract';

/**
 * During a rolling upgrade the newer release migrates the shared database while older servers
 * still run, and an older server that restarts then finds migrations it does not know. Kysely
 * refuses that ("previously executed migration is missing"), which would turn one crash into an
 * outage. Every migration is expand-only (it adds tables, columns with defaults, indexes), so an
 * older release can run beside it: this reads the recorded keys this release does not know and
 * hands them to the migrator as already-applied placeholders. A contract migration (see
 * {@link CONTRACT_SUFFIX}) is the exception: the older server fails closed.
 */
async function newerReleaseMigrations(db: Kysely<Database>, known: ReadonlySet<string>, schema: string | undefined): Promise<string[]> {
  const table = schema ? sql.table(`${schema}.${MIGRATION_TABLE}`) : sql.table(MIGRATION_TABLE);
  let names: string[];
  try {
    names = (await sql<{ name: string }>`select name from ${table}`.execute(db)).rows.map((r) => r.name);
  } catch (err) {
    // A fresh database has no migration table yet; anything else is a real failure.
    if (isMissingTable(err)) return [];
    throw err;
  }
  const newer = names.filter((n) => !known.has(n)).sort();
  const contract = newer.filter((n) => n.endsWith(CONTRACT_SUFFIX));
  if (contract.length > 0) {
    throw new CountersignError(
      'STORE_UNAVAILABLE',
      `this database was migrated by a newer release past the point older servers may run (${contract.join(', ')}): upgrade this server to that release`,
      { newer },
    );
  }
  return newer;
}

function isMissingTable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return e?.code === '42P01' || (typeof e?.message === 'string' && e.message.startsWith('no such table'));
}

/**
 * The pending migrations, the first of which to run takes every existing table of the schema at
 * once, without waiting (`LOCK TABLE … NOWAIT`), before any DDL. On PostgreSQL Kysely runs all
 * pending migrations in one transaction, and each `ALTER TABLE` holds its table exclusively to
 * the end of it: taken one by one while servers of the previous release run transactions over
 * several tables, the locks formed cycles, and PostgreSQL aborted one of those servers'
 * transactions as a deadlock (a failed create, found by test/rolling-upgrade.test.ts). Taken
 * all at once or not at all, the migration never waits while it holds a table, so it is never
 * in a cycle: when a table is busy it fails at once (55P03), rolls back, and `connect` tries
 * again; the old servers' transactions only wait the moment the migration runs.
 */
function tablesTakenFirst(migrations: Record<string, Migration>, schema: string): Record<string, Migration> {
  const taken = new WeakSet<object>();
  const wrapped: Record<string, Migration> = {};
  for (const [name, migration] of Object.entries(migrations)) {
    wrapped[name] = {
      ...migration,
      async up(db) {
        if (!taken.has(db)) {
          await takeTables(db, schema);
          taken.add(db);
        }
        await migration.up(db);
      },
    };
  }
  return wrapped;
}

async function takeTables(db: Kysely<unknown>, schema: string): Promise<void> {
  const tables = (
    await sql<{ tablename: string }>`select tablename from pg_tables where schemaname = ${schema} and tablename not like ${`${MIGRATION_TABLE}%`} order by tablename`.execute(db)
  ).rows.map((r) => r.tablename);
  if (tables.length === 0) return;
  await sql`lock table ${sql.join(tables.map((t) => sql.table(`${schema}.${t}`)))} in access exclusive mode nowait`.execute(db);
}

/** A migration that found its tables busy (lock not available) or, despite that, in a deadlock. */
function isTablesBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '55P03' || code === '40P01';
}

/** What the migrator is given for a migration a newer release applied: it is recorded, so never run. */
const APPLIED_BY_NEWER_RELEASE: Migration = {
  async up() {
    throw new Error('a migration of a newer release cannot be applied by this one');
  },
};

/** Opens the database and applies pending migrations. Fails closed: a failed migration throws. */
export async function connect(url: string): Promise<Connection & { migrations: MigrationReport }> {
  const parsed = parseDatabaseUrl(url);
  let connection: Connection;
  try {
    if (parsed.dialect === 'sqlite') {
      connection = openSqlite(parsed.target);
    } else {
      await ensureSchema(parsed);
      connection = openPostgres(parsed);
    }
  } catch (err) {
    throw new CountersignError('STORE_UNAVAILABLE', `cannot open database: ${(err as Error).message}`);
  }
  const known = await migrationProvider.getMigrations();
  let newer: string[];
  try {
    newer = await newerReleaseMigrations(connection.db, new Set(Object.keys(known)), parsed.dialect === 'postgres' ? (parsed.schema ?? 'public') : undefined);
  } catch (err) {
    await connection.destroy();
    if (err instanceof CountersignError) throw err;
    throw new CountersignError('STORE_UNAVAILABLE', `cannot read the database's migrations: ${(err as Error).message}`);
  }
  const schema = parsed.dialect === 'postgres' ? (parsed.schema ?? 'public') : undefined;
  const provider: MigrationProvider = {
    async getMigrations() {
      const ours = schema === undefined ? known : tablesTakenFirst(known, schema);
      return { ...ours, ...Object.fromEntries(newer.map((n) => [n, APPLIED_BY_NEWER_RELEASE])) };
    },
  };
  const migrator = new Migrator({
    db: connection.db,
    provider,
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: 'countersign_migrations_lock',
    // Feature streams add migrations independently (002_audit…, 003_scheduler…); each only
    // creates its own tables, so applying one that sorts before an applied one is safe.
    allowUnorderedMigrations: true,
    // Without a schema, Kysely looks for its tables in every schema and can find another
    // schema's copy; name ours so each schema migrates on its own.
    ...(parsed.dialect === 'postgres' ? { migrationTableSchema: parsed.schema ?? 'public' } : {}),
  });
  let { error, results } = await migrator.migrateToLatest();
  // Before it migrates, Kysely reads the catalog of every schema in the database; a schema or
  // table that someone else drops at that moment (another tenant, a test tearing down) fails that
  // read. Nothing has run yet then (no results): try again, a few times.
  for (let attempt = 1; error && results === undefined && parsed.dialect === 'postgres' && isCatalogRace(error) && attempt <= 5; attempt++) {
    await new Promise((r) => setTimeout(r, 50 * attempt));
    ({ error, results } = await migrator.migrateToLatest());
  }
  // Servers of the previous release may be serving from this database (a rolling upgrade): the
  // migration takes its tables without waiting (tablesTakenFirst) and, while they are busy,
  // rolls back and tries again, for up to about 15 s.
  for (let attempt = 1; error && parsed.dialect === 'postgres' && isTablesBusy(error) && attempt <= 60; attempt++) {
    await new Promise((r) => setTimeout(r, Math.min(20 * attempt, 400) * (0.5 + Math.random())));
    ({ error, results } = await migrator.migrateToLatest());
  }
  if (error) {
    await connection.destroy();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new CountersignError(
      'STORE_UNAVAILABLE',
      `database migration ${failed ?? ''} failed: ${(error as Error).message ?? String(error)}`.replace('  ', ' '),
    );
  }
  const applied = (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  return Object.assign(connection, { migrations: { applied, newer } });
}

/** PostgreSQL errors of a catalog read that raced with someone else's DROP: undefined schema, table or column. */
function isCatalogRace(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '3F000' || code === '42P01' || code === '42703';
}

export { sql };

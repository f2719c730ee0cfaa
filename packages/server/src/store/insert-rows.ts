/**
 * Inserts rows of one shape, paying Kysely's query builder once per shape instead of once per
 * insert (the create path's hottest statements). The first time, the builder's own compiled
 * parameters are compared with the ones derived here; only a match is remembered, so a shape
 * the shortcut does not understand (say, an undefined field) always takes the builder's path.
 */
import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import { deferred } from './pipeline.ts';
import type { Database } from './schema.ts';

/** SQL text by dialect, table, columns and row count. */
const INSERT_SQL = new Map<string, string>();

export async function insertRows<T extends keyof Database>(
  db: Kysely<Database> | Transaction<Database>,
  table: T,
  rows: ReadonlyArray<Database[T]>,
  /** Sent with the transaction's next statement (store/pipeline.ts): nothing here needs its answer. */
  later = false,
): Promise<void> {
  await insertRowsReturning(db, table, rows, undefined, later);
}

/** The same, returning one column of the inserted rows (`id` of `audit_pending`). */
export async function insertRowsReturning<T extends keyof Database>(
  db: Kysely<Database> | Transaction<Database>,
  table: T,
  rows: ReadonlyArray<Database[T]>,
  returning: string | undefined,
  later = false,
): Promise<Array<Record<string, unknown>>> {
  // A held statement answers nothing, so its `returning` rows would be silently empty.
  if (later && returning !== undefined) throw new Error('insertRowsReturning: a deferred insert cannot return rows');
  const run = (q: CompiledQuery) => db.executeQuery<Record<string, unknown>>(later ? deferred(q) : q);
  const columns = Object.keys(rows[0] ?? {});
  const params = rows.flatMap((r) => columns.map((c) => (r as unknown as Record<string, unknown>)[c]));
  // Placeholders differ by dialect ($1 vs ?): the adapter's class names the dialect.
  const dialect = db.getExecutor().adapter.constructor.name;
  const key = `${dialect}:${String(table)}:${columns.join(',')}:${rows.length}:${returning ?? ''}`;
  const cached = INSERT_SQL.get(key);
  if (cached !== undefined) {
    return (await run(CompiledQuery.raw(cached, params))).rows;
  }
  const builder = db.insertInto(table).values(rows as never);
  const compiled = (returning === undefined ? builder : builder.returning(returning as never)).compile();
  const same = compiled.parameters.length === params.length && compiled.parameters.every((p, i) => p === params[i]);
  if (same && INSERT_SQL.size < 1_000) INSERT_SQL.set(key, compiled.sql);
  return (await run(compiled)).rows;
}

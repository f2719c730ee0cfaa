/**
 * The SQL of re-encryption (`countersign keys rotate-encryption`, keys/rotation.ts), shared by
 * the tables' own query classes (store.ts for requests and reviews, store/guard.ts for TOTP
 * secrets), which stay their tables' one writer. Prefixes are compared with `substr`, not
 * `LIKE`: SQLite's LIKE ignores case, and a plain description may well begin with `ENC:`.
 */
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { Database } from './schema.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** A table holding sealed values: its key column and the columns that may be sealed. */
export interface SealedTable {
  readonly table: 'requests' | 'reviews' | 'operator_totp';
  readonly key: string;
  readonly columns: readonly string[];
}

/** What a batch asks for: values not under `currentPrefix` (`enc:v2:<keyId>:`), and plain ones too with `includePlain`. */
export interface ResealTarget {
  readonly currentPrefix: string;
  readonly includePlain: boolean;
}

/** A row of a batch: its key and the raw (still sealed) values of the sealed columns. */
export interface SealedRow {
  key: string;
  values: Record<string, string | null>;
}

export interface SealCensus {
  /** Under the current key. */
  current: number;
  /** Sealed under another key, or `enc:v1:` (no key id). */
  stale: number;
  /** Never sealed (`plain:` TOTP secrets, escaped `enc:plain:` text included). */
  plain: number;
}

function startsWith(column: string, prefix: string): RawBuilder<boolean> {
  return sql<boolean>`substr(${sql.ref(column)}, 1, ${prefix.length}) = ${prefix}`;
}

/** Sealed, and not under the current key. */
function isStale(column: string, currentPrefix: string): RawBuilder<boolean> {
  return sql<boolean>`(${startsWith(column, 'enc:')} and not ${startsWith(column, 'enc:plain:')} and not ${startsWith(column, currentPrefix)})`;
}

function isPlain(column: string): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(column)} is not null and (not ${startsWith(column, 'enc:')} or ${startsWith(column, 'enc:plain:')}))`;
}

function needsWork(column: string, target: ResealTarget): RawBuilder<boolean> {
  return target.includePlain
    ? sql<boolean>`(${sql.ref(column)} is not null and not ${startsWith(column, target.currentPrefix)})`
    : isStale(column, target.currentPrefix);
}

/** Up to `limit` rows after key `after` (in key order) with at least one value the target wants re-sealed. */
export async function selectResealBatch(db: Db, spec: SealedTable, after: string, limit: number, target: ResealTarget): Promise<SealedRow[]> {
  const columns = spec.columns.map((c) => sql.ref(c));
  const { rows } = await sql<Record<string, string | null>>`
    select ${sql.ref(spec.key)} as k, ${sql.join(columns)} from ${sql.table(spec.table)}
    where ${sql.ref(spec.key)} > ${after} and (${sql.join(spec.columns.map((c) => needsWork(c, target)), sql` or `)})
    order by ${sql.ref(spec.key)} limit ${limit}`.execute(db);
  return rows.map((r) => ({ key: String(r.k), values: Object.fromEntries(spec.columns.map((c) => [c, r[c] ?? null])) }));
}

/**
 * Replaces one value if it is still `before` (a server may have rewritten it meanwhile, under the
 * current key): false when it was not.
 */
export async function replaceSealedValue(db: Db, spec: SealedTable, key: string, column: string, before: string, after: string): Promise<boolean> {
  const result = await sql`update ${sql.table(spec.table)} set ${sql.ref(column)} = ${after}
    where ${sql.ref(spec.key)} = ${key} and ${sql.ref(column)} = ${before}`.execute(db);
  return Number(result.numAffectedRows ?? 0) === 1;
}

/** How many values of the table are under the current key, under another, or plain. */
export async function sealCensus(db: Db, spec: SealedTable, currentPrefix: string): Promise<SealCensus> {
  const sum = (test: (column: string) => RawBuilder<boolean>) =>
    sql.join(spec.columns.map((c) => sql`coalesce(sum(case when ${test(c)} then 1 else 0 end), 0)`), sql` + `);
  const { rows } = await sql<{ current: string | number; stale: string | number; plain: string | number }>`
    select ${sum((c) => startsWith(c, currentPrefix))} as current, ${sum((c) => isStale(c, currentPrefix))} as stale, ${sum(isPlain)} as plain
    from ${sql.table(spec.table)}`.execute(db);
  const row = rows[0];
  return { current: Number(row?.current ?? 0), stale: Number(row?.stale ?? 0), plain: Number(row?.plain ?? 0) };
}

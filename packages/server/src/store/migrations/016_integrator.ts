import { SqliteAdapter, sql, type Kysely, type Migration } from 'kysely';

/**
 * Migration 016: the trail no longer serialises creates (issue 14).
 *
 * - `audit_pending`: entries as their transactions write them, with a database id (a PostgreSQL
 *   sequence, SQLite's AUTOINCREMENT rowid) and no tree position. Ids may commit out of order and
 *   leave gaps (a rolled-back transaction keeps the id it drew).
 * - `audit_log.entry_id`: the pending id an integrated entry had (not part of its leaf), so a
 *   caller waiting for its entry finds its seq. Older entries get `entry_id = seq`, and the id
 *   sequence starts after the newest seq, so ids stay unique across both tables.
 *
 * The integrator (store/integrator.ts) moves rows from `audit_pending` into `audit_log`, giving
 * each the next seq and folding its leaf into the tree, in one transaction per batch.
 */
export const m016_integrator: Migration = {
  async up(db: Kysely<any>) {
    const sqlite = db.getExecutor().adapter instanceof SqliteAdapter;
    await db.schema
      .createTable('audit_pending')
      .addColumn('id', sqlite ? 'integer' : 'bigserial', (c) => (sqlite ? c.primaryKey().autoIncrement() : c.primaryKey()))
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text')
      .addColumn('actor_type', 'text', (c) => c.notNull())
      .addColumn('actor_id', 'text', (c) => c.notNull())
      .addColumn('actor_name', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('audit_pending_request').on('audit_pending').columns(['request_id', 'type']).execute();
    await db.schema.alterTable('audit_log').addColumn('entry_id', 'bigint').execute();
    await sql`update audit_log set entry_id = seq`.execute(db);
    await db.schema.createIndex('audit_log_entry').on('audit_log').column('entry_id').execute();
    const head = await db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirst();
    const last = Number(head?.seq ?? 0);
    if (last > 0) {
      if (sqlite) await sql`insert into sqlite_sequence (name, seq) values ('audit_pending', ${last})`.execute(db);
      else await sql`select setval(pg_get_serial_sequence('audit_pending', 'id'), ${last})`.execute(db);
    }
  },
};

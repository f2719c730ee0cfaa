import { SqliteAdapter, sql, type Kysely, type Migration } from 'kysely';

/**
 * Migration 005: guard notices travel the same durable path as request notifications, so a
 * delivery's `request_id` may be null. PostgreSQL drops the NOT NULL; SQLite cannot alter a
 * column and rebuilds the table (nothing references it; the foreign key to requests stays).
 */
export const m005_guard_notices: Migration = {
  async up(db: Kysely<any>) {
    if (!(db.getExecutor().adapter instanceof SqliteAdapter)) {
      await db.schema.alterTable('deliveries').alterColumn('request_id', (c) => c.dropNotNull()).execute();
      return;
    }
    await db.schema
      .createTable('deliveries_005')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('request_id', 'text', (c) => c.references('requests.id'))
      .addColumn('channel', 'text', (c) => c.notNull())
      .addColumn('event', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('response', 'text')
      .addColumn('attempt_log', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('finished_at', 'bigint')
      .execute();
    const columns = sql.raw('id, request_id, channel, event, status, attempts, last_error, response, attempt_log, data, created_at, updated_at, finished_at');
    await sql`INSERT INTO deliveries_005 (${columns}) SELECT ${columns} FROM deliveries`.execute(db);
    await db.schema.dropTable('deliveries').execute();
    await db.schema.alterTable('deliveries_005').renameTo('deliveries').execute();
    await db.schema.createIndex('deliveries_status').on('deliveries').columns(['status', 'created_at']).execute();
    await db.schema.createIndex('deliveries_request').on('deliveries').columns(['request_id', 'channel']).execute();
  },
};

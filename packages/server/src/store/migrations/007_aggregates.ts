import { sql, type Kysely, type Migration } from 'kysely';

export const m007_aggregates: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('aggregate_collections')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('hold_since', 'bigint', (c) => c.notNull())
      .addColumn('closes_at', 'bigint', (c) => c.notNull())
      .addColumn('alerts', 'text', (c) => c.notNull())
      .addColumn('closed_at', 'bigint')
      .addColumn('members', 'integer')
      .addColumn('value', 'double precision')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('aggregate_collections_hold').on('aggregate_collections').columns(['agent_id', 'hold_since']).execute();
    // One open collection per agent, also when two processes open one at once.
    await sql`create unique index aggregate_collections_open on aggregate_collections (agent_id) where closed_at is null`.execute(db);
    await db.schema
      .createTable('aggregate_members')
      .addColumn('request_id', 'text', (c) => c.primaryKey())
      .addColumn('collection_id', 'text', (c) => c.notNull())
      .addColumn('bundle_id', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('aggregate_members_collection').on('aggregate_members').columns(['collection_id']).execute();
    await db.schema.createIndex('aggregate_members_bundle').on('aggregate_members').columns(['bundle_id']).execute();
  },
};

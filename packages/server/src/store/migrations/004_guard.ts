import { randomBytes } from 'node:crypto';
import type { Kysely, Migration } from 'kysely';

export const m004_guard: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('operator_totp')
      .addColumn('operator_id', 'text', (c) => c.primaryKey())
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('confirmed_at', 'bigint')
      .addColumn('last_step', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('approver_cooldowns')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('until', 'bigint', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('set_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('approver_cooldowns_operator').on('approver_cooldowns').columns(['operator_id', 'until']).execute();
    await db.schema
      .createTable('agent_pauses')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('until', 'bigint', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('set_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('resumed_at', 'bigint')
      .execute();
    await db.schema.createIndex('agent_pauses_agent').on('agent_pauses').columns(['agent_id', 'until']).execute();
    await db.schema
      .createTable('guard_settings')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
    // One secret per database (not per process), so every server shows the same match code.
    await db.insertInto('guard_settings').values({ key: 'match_secret', value: randomBytes(32).toString('base64') }).execute();
    // Velocity and cool-downs read an approver's recent votes; rate limits an agent's recent requests.
    await db.schema.createIndex('reviews_operator_created').on('reviews').columns(['operator_id', 'created_at']).execute();
    await db.schema.createIndex('requests_agent_created').on('requests').columns(['agent_id', 'created_at']).execute();
  },
};

import type { Kysely, Migration } from 'kysely';

/** Per-operator IP allowlists for approvals (appended after 004_guard shipped). */
export const m004_guard_allowlist: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('operator_ip_allowlist')
      .addColumn('operator_id', 'text', (c) => c.primaryKey())
      .addColumn('cidrs', 'text', (c) => c.notNull())
      .addColumn('set_by', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

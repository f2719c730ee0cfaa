import type { Kysely, Migration } from 'kysely';

/** Per-role IP allowlists for approvals (006_role_allowlist): the issue asked for "per operator or role". */
export const m006_role_allowlist: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('role_ip_allowlist')
      .addColumn('role', 'text', (c) => c.primaryKey())
      .addColumn('cidrs', 'text', (c) => c.notNull())
      .addColumn('set_by', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

import type { Kysely, Migration } from 'kysely';

/** Retention: how far the trail's entries have been pruned (the tree's hashes are all kept). */
export const m002_audit_retention: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('audit_head').addColumn('pruned_to', 'bigint', (c) => c.notNull().defaultTo(0)).execute();
  },
};

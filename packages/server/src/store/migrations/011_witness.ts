import type { Kysely, Migration } from 'kysely';

/**
 * Migration 011: signed retention. Each prune step stores the statement the audit signer signed
 * for it (pruned to `pruned_to` at `timestamp`, keeping `frontier`), in the same transaction as
 * the deletion; an export of a pruned trail starts from the statement at the prune point.
 */
export const m011_witness: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('audit_retention')
      .addColumn('pruned_to', 'bigint', (c) => c.primaryKey())
      .addColumn('frontier', 'text', (c) => c.notNull())
      .addColumn('timestamp', 'text', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

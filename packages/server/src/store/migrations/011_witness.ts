import type { Kysely, Migration } from 'kysely';

/**
 * Migration 011: signed retention. Each prune step stores the statement the audit signer signed
 * for it (pruned to `pruned_to` at `timestamp`, keeping `frontier`), in the same transaction as
 * the deletion; an export of a pruned trail starts from the statement at the prune point.
 *
 * And the upgrade mark: a deployment that signed checkpoints before the audit signer kept its
 * state file has none on its first start. `audit_signer_upgrade` records, once, the newest
 * checkpoint as it was when this migration ran, so that start adopts exactly that checkpoint
 * (after verifying the trail up to it) instead of refusing; the row is deleted when it is adopted.
 * A fresh database gets no row, so a state file deleted later is always a refusal.
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
    await db.schema
      .createTable('audit_signer_upgrade')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('tree_size', 'bigint', (c) => c.notNull())
      .addColumn('root_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    const newest = await db.selectFrom('audit_checkpoints').select(['tree_size', 'root_hash']).orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
    if (newest) {
      await db.insertInto('audit_signer_upgrade').values({ id: 1, tree_size: newest.tree_size, root_hash: newest.root_hash, created_at: Date.now() }).execute();
    }
  },
};

import type { Kysely, Migration } from 'kysely';

/**
 * Migration 015: signing-key rotation. `audit_keys` names every key the trail has been signed
 * with: the current one has no `handover` (at most one such row; the rotation changes it by a
 * compare-and-set under a lock, store/audit-keys.ts), a retired one holds the hand-over
 * statement signed by it and its successor, and the size its authority ended at. Rows are never
 * deleted, and retention does not touch this table: the chain from any key to the newest stays
 * followable however much of the trail is pruned.
 *
 * A deployment from before rotation gets its row on the first start (the key that signed its
 * newest checkpoint, which the server already requires to be its own).
 *
 * And the deployment's checkpoint origin (review finding 12): `audit_origin` keeps, from the first
 * start, the origin every checkpoint and witness note of this trail starts with
 * (COUNTERSIGN_AUDIT_ORIGIN, or a default drawn then); `audit_checkpoints.origin` records it per
 * checkpoint (null for checkpoints signed before, under the fixed origin).
 */
export const m015_rotation: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('audit_keys')
      .addColumn('key_id', 'text', (c) => c.primaryKey())
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('handed_over_at', 'bigint')
      .addColumn('handover', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('audit_origin')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('origin', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.alterTable('audit_checkpoints').addColumn('origin', 'text').execute();
  },
};

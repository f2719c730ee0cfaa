import type { Kysely, Migration } from 'kysely';

/**
 * Migration 021: SIEM forwarding (issue 20). `forward_cursors` holds, per destination, the seq of
 * the last audit entry the destination acknowledged, and a lease naming the one server process
 * that forwards to it now (several servers share a database; only the lease holder sends, and it
 * moves the cursor only while it still holds the lease). Expand-only: a new table that servers
 * from before this migration never read.
 */
export const m021_forwarding: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('forward_cursors')
      /** `<kind>:<address>`, e.g. `syslog:siem.example:6514` (forwarding/config.ts). */
      .addColumn('destination', 'text', (c) => c.primaryKey())
      /** The last seq acknowledged (0: nothing yet); only ever moves forward. */
      .addColumn('seq', 'bigint', (c) => c.notNull())
      .addColumn('leased_by', 'text')
      .addColumn('leased_until', 'bigint', (c) => c.notNull())
      /** The last failure's message (no secrets: the forwarder writes only its own words and the peer's status). */
      .addColumn('last_error', 'text')
      /** When last_error happened (null: never), and when the cursor last moved (null: never). */
      .addColumn('last_error_at', 'bigint')
      .addColumn('delivered_at', 'bigint')
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('forward_cursors').execute();
  },
};

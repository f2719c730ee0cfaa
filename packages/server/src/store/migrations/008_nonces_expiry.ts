import type { Kysely, Migration } from 'kysely';

/** Migration 008: expired nonces (Slack replays, signed-out sessions) are swept by `expires_at` without a table scan. */
export const m008_nonces_expiry: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.createIndex('nonces_expires_at').on('nonces').column('expires_at').execute();
  },
};

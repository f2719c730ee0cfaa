import type { Kysely, Migration } from 'kysely';

/**
 * Migration 017 (issue 18): per-agent configuration written through the API, over the policy
 * file's `agents.<name>`.
 *
 * - `agent_configs`: the overlay in force, one row per agent (`version` counts from 1, `mac` is an
 *   HMAC under the server secret binding agent, version, hash and config, so a database writer
 *   cannot switch an agent's gating off by editing the row: a row whose MAC fails refuses the
 *   agent's requests).
 * - `agent_config_versions`: every overlay ever in force (insert-only), with who set it and, for a
 *   change a second admin approved, the `countersign.agent_config` request that carried it.
 */
export const m017_agent_config: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('agent_configs')
      .addColumn('agent_id', 'text', (c) => c.primaryKey())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('mac', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_by', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('agent_config_versions')
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('set_at', 'bigint', (c) => c.notNull())
      .addColumn('set_by', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text')
      .addPrimaryKeyConstraint('agent_config_versions_pk', ['agent_id', 'version'])
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('agent_config_versions').execute();
    await db.schema.dropTable('agent_configs').execute();
  },
};

import type { Kysely, Migration } from 'kysely';

/**
 * Migration 010: the credential lifecycle (issue 13).
 * - `operators.disabled_at` / `removed_at`, and on tokens and keys `last_used_at` and
 *   `expires_at` (a rotated key's grace period);
 * - `operators.tokenless`: 1 for an operator made without a token (the embedded gateway's admin),
 *   the only kind bootstrap may give a first token to; covered by the operator's MAC;
 * - `approver_cooldowns.set_by_rank`: the setter's rank when a manual cool-down was set (lifting
 *   needs at least that rank, whatever the setter's roles are later);
 * - `mac` on operators, tokens and keys: HMAC under the server secret file (keys/server-secret.ts),
 *   so a row written by someone who can only reach the database does not authenticate;
 * - `sessions`: dashboard sessions by the SHA-256 of a random id only the cookie holds, MACed
 *   under the server secret (a row a database writer inserts does not sign anyone in);
 * - `server_marks`: one-off events of this database, MACed under the secret that made them:
 *   `sealed` (the start that MACed the rows from before the secret file) and `bootstrapped`
 *   (the first admin token); each happens once, whatever a database writer deletes later;
 * - `mfa_attempts`: step-up code attempts (pending while evaluated, then failed or gone), counted
 *   under the operator's row lock for the lockout.
 */
export const m010_credentials: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('operators').addColumn('disabled_at', 'bigint').execute();
    await db.schema.alterTable('operators').addColumn('removed_at', 'bigint').execute();
    await db.schema.alterTable('approver_cooldowns').addColumn('set_by_rank', 'integer').execute();
    await db.schema.alterTable('operators').addColumn('tokenless', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.alterTable('operators').addColumn('mac', 'text').execute();
    for (const table of ['operator_tokens', 'api_keys']) {
      await db.schema.alterTable(table).addColumn('last_used_at', 'bigint').execute();
      await db.schema.alterTable(table).addColumn('expires_at', 'bigint').execute();
      await db.schema.alterTable(table).addColumn('mac', 'text').execute();
    }
    await db.schema.createIndex('operator_tokens_operator').on('operator_tokens').column('operator_id').execute();
    await db.schema.createIndex('api_keys_agent').on('api_keys').column('agent_id').execute();
    await db.schema
      .createTable('sessions')
      .addColumn('id_hash', 'text', (c) => c.primaryKey())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('token_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('mac', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('sessions_token').on('sessions').column('token_id').execute();
    await db.schema.createIndex('sessions_expires_at').on('sessions').column('expires_at').execute();
    await db.schema
      .createTable('server_marks')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('mac', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('mfa_attempts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('mfa_attempts_operator_at').on('mfa_attempts').columns(['operator_id', 'at']).execute();
  },
};

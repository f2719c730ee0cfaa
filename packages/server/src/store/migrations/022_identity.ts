import type { Kysely, Migration } from 'kysely';

/**
 * Migration 022: operators from the company's identity provider (issue 20).
 *
 * - `sso_logins`: a sign-in in flight — the SHA-256 of the random id only its browser's cookie
 *   holds, the `state`, `nonce` and PKCE verifier sent with it, the client address that started it
 *   (IPv6: its /64), and when it lapses (10 min). Taken once: the callback deletes the row it uses.
 * - `sso_identities`: which provider subject (issuer, sub) signs in as which operator; MACed under
 *   the server secret, so a database writer cannot point their own account at an admin.
 * - `scim_users`: the SCIM view of an operator the provider provisioned (userName, externalId,
 *   active, names, emails); `user_key` is the lower-case userName (unique, SCIM compares it
 *   case-insensitively, ASCII only); `admin_disabled`: an admin disabled the operator, which
 *   SCIM's `active: true` does not lift; `admin_removed`: an admin removed the operator, which no
 *   SCIM call undoes (a DELETE then POST of the same userName is refused: review2 F1); MACed over
 *   (operator_id, user_key, admin_disabled, admin_removed). A
 *   deleted user keeps its row (`removed_at`; its operator is removed, its subjects unlinked), so
 *   provisioning the same userName again restores the operator with no subject linked.
 * - `scim_groups`, `scim_members`: provisioned groups and their members (operator ids); an
 *   operator's roles are the role map's roles of its groups, recomputed on every change. Both
 *   MACed (a group over its id, names and external id; a membership over (group, operator)): a
 *   row that does not verify gives no role and is audited (`identity_row_refused`).
 * - `scim_tokens`: the provisioning client's bearer tokens, SHA-256 only, MACed, revocable.
 */
export const m022_identity: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('sso_logins')
      .addColumn('id_hash', 'text', (c) => c.primaryKey())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('nonce', 'text', (c) => c.notNull())
      .addColumn('verifier', 'text', (c) => c.notNull())
      .addColumn('client', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('sso_logins_expires_at').on('sso_logins').column('expires_at').execute();
    await db.schema.createIndex('sso_logins_client').on('sso_logins').column('client').execute();
    await db.schema
      .createTable('sso_identities')
      .addColumn('issuer', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('email', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('last_sign_in_at', 'bigint', (c) => c.notNull())
      .addColumn('mac', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('sso_identities_pk', ['issuer', 'subject'])
      .execute();
    await db.schema.createIndex('sso_identities_operator').on('sso_identities').column('operator_id').execute();
    await db.schema
      .createTable('scim_users')
      .addColumn('operator_id', 'text', (c) => c.primaryKey())
      .addColumn('user_name', 'text', (c) => c.notNull())
      .addColumn('user_key', 'text', (c) => c.notNull().unique())
      .addColumn('external_id', 'text')
      .addColumn('active', 'integer', (c) => c.notNull())
      .addColumn('display_name', 'text')
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('emails', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('removed_at', 'bigint')
      .addColumn('admin_disabled', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('admin_removed', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('mac', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('scim_users_external_id').on('scim_users').column('external_id').execute();
    await db.schema
      .createTable('scim_groups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('display_name', 'text', (c) => c.notNull())
      .addColumn('display_key', 'text', (c) => c.notNull().unique())
      .addColumn('external_id', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('mac', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('scim_members')
      .addColumn('group_id', 'text', (c) => c.notNull())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('mac', 'text')
      .addPrimaryKeyConstraint('scim_members_pk', ['group_id', 'operator_id'])
      .execute();
    await db.schema.createIndex('scim_members_operator').on('scim_members').column('operator_id').execute();
    await db.schema
      .createTable('scim_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('token_hash', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('created_by', 'text')
      .addColumn('revoked_at', 'bigint')
      .addColumn('last_used_at', 'bigint')
      .addColumn('mac', 'text', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<any>) {
    for (const table of ['scim_tokens', 'scim_members', 'scim_groups', 'scim_users', 'sso_identities', 'sso_logins']) await db.schema.dropTable(table).execute();
  },
};

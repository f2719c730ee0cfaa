import type { Kysely, Migration } from 'kysely';

/**
 * Migration 027: WebAuthn step-up (issue 20).
 * - `webauthn_credentials`: passkeys and security keys per operator (the COSE public key, the
 *   sign counter, revocation), each row MACed under the server secret file over every field that
 *   matters (counter, revocation and suspension included), so a database writer can neither
 *   plant a key, nor wind a counter back, nor lift a revocation or a suspension (`suspended_at`:
 *   the counter went back, a suspected clone);
 * - `webauthn_challenges`: one-time server nonces with a short expiry, for a registration or for
 *   one approval (request id, payload hash, verdict); the challenge the browser signs is derived
 *   from them, and a nonce is used once.
 */
export const m027_webauthn: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('webauthn_credentials')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('credential_id', 'text', (c) => c.notNull().unique())
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('alg', 'integer', (c) => c.notNull())
      .addColumn('sign_count', 'bigint', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('aaguid', 'text', (c) => c.notNull())
      .addColumn('transports', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('last_used_at', 'bigint')
      .addColumn('revoked_at', 'bigint')
      .addColumn('revoked_by', 'text')
      .addColumn('suspended_at', 'bigint')
      .addColumn('mac', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('webauthn_credentials_operator').on('webauthn_credentials').column('operator_id').execute();
    await db.schema
      .createTable('webauthn_challenges')
      .addColumn('nonce', 'text', (c) => c.primaryKey())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('purpose', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text')
      .addColumn('payload_hash', 'text')
      .addColumn('verdict', 'text')
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('used_at', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('webauthn_challenges_expiry').on('webauthn_challenges').column('expires_at').execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('webauthn_challenges').execute();
    await db.schema.dropTable('webauthn_credentials').execute();
  },
};

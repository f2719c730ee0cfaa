/**
 * WebAuthn's tables and their SQL (migration 027): credentials per operator and one-time
 * challenges. The rows' MACs are computed and checked by the guard (guard/webauthn.ts); this file
 * only reads and writes, with the conditional updates that make a nonce single-use and a counter
 * move once.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';

type Db = Kysely<Database> | Transaction<Database>;

export interface WebAuthnCredentialsTable {
  id: string;
  operator_id: string;
  /** base64url of the authenticator's credential id. */
  credential_id: string;
  /** base64url of the COSE public key. */
  public_key: string;
  alg: number;
  sign_count: number;
  name: string;
  aaguid: string;
  /** JSON list of transports the browser reported. */
  transports: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
  revoked_by: string | null;
  /** Set when the sign counter went back (a suspected clone): the credential approves nothing more. */
  suspended_at: number | null;
  mac: string;
}

export interface WebAuthnChallengesTable {
  nonce: string;
  operator_id: string;
  /** `revoke`: a passkey's proof for revoking a credential (the bytes bind which; guard/webauthn.ts revokeChallenge). */
  purpose: 'register' | 'approve' | 'revoke' | 'totp';
  request_id: string | null;
  payload_hash: string | null;
  verdict: string | null;
  expires_at: number;
  used_at: number | null;
  created_at: number;
}

export class WebAuthnQueries {
  constructor(private readonly db: Db) {}

  async insertCredential(row: WebAuthnCredentialsTable): Promise<void> {
    await this.db.insertInto('webauthn_credentials').values(row).execute();
  }

  async credentialsOf(operatorId: string): Promise<WebAuthnCredentialsTable[]> {
    return this.db.selectFrom('webauthn_credentials').selectAll().where('operator_id', '=', operatorId).orderBy('created_at').orderBy('id').execute();
  }

  async credentialById(credentialId: string): Promise<WebAuthnCredentialsTable | undefined> {
    return this.db.selectFrom('webauthn_credentials').selectAll().where('credential_id', '=', credentialId).executeTakeFirst();
  }

  async credential(id: string): Promise<WebAuthnCredentialsTable | undefined> {
    return this.db.selectFrom('webauthn_credentials').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** Moves the counter (and MAC) only if it is still `before`: two racing assertions of one credential cannot both pass. */
  async useCredential(id: string, before: number, after: { sign_count: number; last_used_at: number; mac: string }): Promise<boolean> {
    const r = await this.db.updateTable('webauthn_credentials').set(after).where('id', '=', id).where('sign_count', '=', before).where('revoked_at', 'is', null).where('suspended_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async revokeCredential(id: string, at: number, by: string, mac: string): Promise<boolean> {
    const r = await this.db.updateTable('webauthn_credentials').set({ revoked_at: at, revoked_by: by, mac }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Suspends a credential once (a suspected clone); a revoked or already suspended one is left as it is. */
  async suspendCredential(id: string, at: number, mac: string): Promise<boolean> {
    const r = await this.db.updateTable('webauthn_credentials').set({ suspended_at: at, mac }).where('id', '=', id).where('revoked_at', 'is', null).where('suspended_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async insertChallenge(row: WebAuthnChallengesTable): Promise<void> {
    await this.db.deleteFrom('webauthn_challenges').where('expires_at', '<', row.created_at - 60_000).execute();
    await this.db.insertInto('webauthn_challenges').values(row).execute();
  }

  async challenge(nonce: string): Promise<WebAuthnChallengesTable | undefined> {
    return this.db.selectFrom('webauthn_challenges').selectAll().where('nonce', '=', nonce).executeTakeFirst();
  }

  /** Marks a nonce used, once, while it is unexpired. */
  async useChallenge(nonce: string, at: number): Promise<boolean> {
    const r = await this.db.updateTable('webauthn_challenges').set({ used_at: at }).where('nonce', '=', nonce).where('used_at', 'is', null).where('expires_at', '>', at).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }
}

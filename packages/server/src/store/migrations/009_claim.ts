import type { Kysely, Migration } from 'kysely';

/**
 * Migration 009_claim: an approval is claimed once, within its validity (issue 12). The nonce
 * and expiry signed into an approval's version 2 receipt are kept beside the status, so the claim
 * is one conditional UPDATE (`status = 'approved' AND claim_nonce = ? AND claim_expires_at > ?`)
 * that exactly one caller wins, on both dialects; `claimed_at` records when it was won.
 * Approvals stored before this migration have no nonce (their version 1 receipts claim them) and
 * no expiry (the engine computes it from `decided_at` and the policy, so they expire too).
 */
export const m009_claim: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('requests').addColumn('claim_nonce', 'text').execute();
    await db.schema.alterTable('requests').addColumn('claim_expires_at', 'bigint').execute();
    await db.schema.alterTable('requests').addColumn('claimed_at', 'bigint').execute();
  },
};

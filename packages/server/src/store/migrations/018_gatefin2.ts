import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Migration 018: the scheduler sweeps approvals that lapsed unclaimed (issue 12).
 *
 * - `requests_claim_lapse` (status, claim_expires_at): the sweep walks `status = 'approved'` in
 *   claim-expiry order from the start and stops at its batch, so its cost follows the approvals
 *   due to lapse, not the number of requests. No rows change: approvals already past their
 *   expiry are swept by the first tick after the upgrade.
 */
export const m018_gatefin2: Migration = {
  async up(db: Kysely<any>) {
    // Partial (approved rows only), so the planner never takes it for the queue's pending reads,
    // which walk requests_queue (queue-index.test.ts).
    await db.schema.createIndex('requests_claim_lapse').on('requests').column('claim_expires_at').where(sql.ref('status'), '=', 'approved').execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropIndex('requests_claim_lapse').execute();
  },
};

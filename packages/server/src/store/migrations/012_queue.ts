import { sql, type Kysely, type Migration } from 'kysely';
import { NO_DEADLINE } from '../queue.ts';

/**
 * Migration 012: the queue is ordered and filtered in SQL (issue 13, a flood-proof queue).
 *
 * - `requests.queue_due_at`: the deadline a pending request sorts by (core's `queueDeadline`: the
 *   earlier of the current SLA deadline and the agent's expiry), `NO_DEADLINE` when it has none,
 *   so the column is never NULL and both dialects order it the same way.
 * (`requests.action_key`, the action's normal form the `action=` filter compares, comes from
 * migration 009_gate, with its backfill.)
 * - `requests_queue` (status, risk_level, queue_due_at, created_at, id): the queue's order is a
 *   walk of this index, one risk level after the other, and its counts per level read it alone.
 *
 * Existing rows are filled in: each pending row's deadline from its escalation state and expiry,
 * else its assessment's SLA.
 */
export const m012_queue: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('requests').addColumn('queue_due_at', 'bigint', (c) => c.notNull().defaultTo(NO_DEADLINE)).execute();

    // Pending rows with an escalation state: the earlier of its deadline and the expiry, in SQL.
    await sql`
      update requests set queue_due_at = case
        when expires_at is not null and expires_at < (select e.due_at from escalations e where e.request_id = requests.id) then expires_at
        else (select e.due_at from escalations e where e.request_id = requests.id) end
      where status = 'pending' and exists (select 1 from escalations e where e.request_id = requests.id)`.execute(db);
    // Pending rows without one (queued before escalation states existed): the assessment's SLA and the expiry.
    const rest = (await db
      .selectFrom('requests')
      .select(['id', 'assessment', 'expires_at'])
      .where('status', '=', 'pending')
      .where((eb) => eb.not(eb.exists(eb.selectFrom('escalations').select('request_id').whereRef('escalations.request_id', '=', 'requests.id'))))
      .execute()) as Array<{ id: string; assessment: string; expires_at: number | string | null }>;
    for (const r of rest) {
      const sla = (JSON.parse(r.assessment) as { slaDueAt?: string | null }).slaDueAt;
      const slaMs = sla ? Date.parse(sla) : Number.NaN;
      const expires = r.expires_at === null ? Number.NaN : Number(r.expires_at);
      const candidates = [slaMs, expires].filter((v) => Number.isFinite(v));
      if (candidates.length > 0) await db.updateTable('requests').set({ queue_due_at: Math.min(...candidates) }).where('id', '=', r.id).execute();
    }

    await db.schema.createIndex('requests_queue').on('requests').columns(['status', 'risk_level', 'queue_due_at', 'created_at', 'id']).execute();
  },
};

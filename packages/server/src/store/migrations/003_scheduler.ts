import type { Kysely, Migration } from 'kysely';
import type { TimerRow } from '../timers.ts';

/**
 * Migration 003: the scheduler's tables. Requests that were already pending keep their
 * deadlines: an `expire` timer for an agent-set timeout, and an `escalate` timer at their SLA
 * (their escalation state is planned from the active policy when it fires).
 */
export const m003_scheduler: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('timers')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text')
      .addColumn('due_at', 'bigint', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('claimed_by', 'text')
      .addColumn('claimed_until', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('timers_due').on('timers').column('due_at').execute();
    await db.schema.createIndex('timers_request').on('timers').columns(['request_id', 'kind']).execute();
    await db.schema
      .createTable('escalations')
      .addColumn('request_id', 'text', (c) => c.primaryKey().references('requests.id'))
      .addColumn('level', 'integer', (c) => c.notNull())
      .addColumn('due_at', 'bigint', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('deliveries')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('request_id', 'text', (c) => c.notNull().references('requests.id'))
      .addColumn('channel', 'text', (c) => c.notNull())
      .addColumn('event', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('response', 'text')
      .addColumn('attempt_log', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('finished_at', 'bigint')
      .execute();
    await db.schema.createIndex('deliveries_status').on('deliveries').columns(['status', 'created_at']).execute();
    await db.schema.createIndex('deliveries_request').on('deliveries').columns(['request_id', 'channel']).execute();
    await db.schema
      .createTable('nonces')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute();

    const pending = await db.selectFrom('requests').select(['id', 'assessment', 'expires_at', 'created_at']).where('status', '=', 'pending').execute();
    const rows: TimerRow[] = [];
    for (const r of pending as Array<{ id: string; assessment: string; expires_at: number | string | null; created_at: number | string }>) {
      const created = Number(r.created_at);
      if (r.expires_at !== null) {
        rows.push({ id: `tmr_x_${r.id}`, kind: 'expire', request_id: r.id, due_at: Number(r.expires_at), payload: '{}', claimed_by: null, claimed_until: null, created_at: created });
      }
      const slaDueAt = (JSON.parse(r.assessment) as { slaDueAt?: string | null }).slaDueAt;
      const due = slaDueAt ? Date.parse(slaDueAt) : Number.NaN;
      if (Number.isFinite(due)) {
        rows.push({ id: `tmr_e_${r.id}`, kind: 'escalate', request_id: r.id, due_at: due, payload: '{"level":null}', claimed_by: null, claimed_until: null, created_at: created });
      }
    }
    for (let i = 0; i < rows.length; i += 200) await db.insertInto('timers').values(rows.slice(i, i + 200)).execute();
  },
};

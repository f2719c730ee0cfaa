import { normalizeActionName } from '@countersign/core';
import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Migration 009 (issue 12): the gate's counters, insert-only. One row per accepted approval
 * (`approval_events`, counted at the risk level of the payload it approved) and one per create
 * (`agent_rate_events`, with the create's value slice for the running-total slicing detector).
 * Limits read them under a per-principal advisory lock (PostgreSQL), so no single hot row
 * serialises unrelated approvers or agents.
 */
export const m009_gate: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('approval_events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text', (c) => c.notNull())
      .addColumn('risk_level', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('approval_events_operator_at').on('approval_events').columns(['operator_id', 'at']).execute();
    // The last day's approvals, so limits hold across the upgrade (counted at the request's level, as before).
    await sql`insert into approval_events (id, operator_id, request_id, risk_level, at)
      select 'apv_' || reviews.id, reviews.operator_id, reviews.request_id, requests.risk_level, reviews.created_at
      from reviews join requests on requests.id = reviews.request_id
      where reviews.verdict = 'approve' and reviews.created_at > ${Date.now() - 86_400_000}`.execute(db);
    await db.schema
      .createTable('agent_rate_events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      // JSON of core's ValueBucket (the slice this create adds to each threshold's running total); null without a value.
      .addColumn('value_bucket', 'text')
      .execute();
    await db.schema.createIndex('agent_rate_events_agent_at').on('agent_rate_events').columns(['agent_id', 'at']).execute();
    // The identity of the stage a vote counted towards (review finding 3); null on older rows, which then count towards no stage.
    await db.schema.alterTable('reviews').addColumn('stage_key', 'text').execute();
    // History by the action's normal form (finding 6): `wireTransfer` is `wire_transfer`'s history.
    await db.schema.alterTable('requests').addColumn('action_key', 'text').execute();
    const actions = await db.selectFrom('requests').select('action').distinct().execute();
    for (const { action } of actions as { action: string }[]) {
      await db.updateTable('requests').set({ action_key: normalizeActionName(action) }).where('action', '=', action).execute();
    }
    await db.schema.createIndex('requests_agent_action_key').on('requests').columns(['agent_id', 'action_key', 'created_at']).execute();
  },
};

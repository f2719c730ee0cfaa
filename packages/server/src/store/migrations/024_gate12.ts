import { mergeBucket, type ValueBucket } from '@countersign/core';
import type { Kysely, Migration } from 'kysely';

const MINUTE = 60_000;
const WINDOW = 60 * MINUTE;

/**
 * Migration 024: the running value totals by minute (issue 12: slicing detection on every
 * create, cheaply). `agent_value_minutes` holds one row per agent and minute, the merge of that
 * minute's slices, so a create reads at most the window's 61 rows instead of every slice the agent
 * wrote in the hour (`agent_rate_events.value_bucket`, kept for the `/slicing` report). The slices
 * of the last window and a bit are folded in here, so no total starts from zero at the upgrade.
 * Each create's row also gets its payload's fingerprint (core `payloadFingerprint`, sealed), its
 * action's normal form and a hash of its key set, which the per-create slicing detectors read
 * (from the upgrade on; earlier creates have none).
 */
export const m024_gate12: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('agent_value_minutes')
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('start', 'bigint', (c) => c.notNull())
      .addColumn('bucket', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('agent_value_minutes_pk', ['agent_id', 'start'])
      .execute();
    // Each create's payload fingerprint (sealed like the args), for the per-create detectors: read
    // by action and by key set, so neither a padded payload nor a dilution escapes them.
    await db.schema.alterTable('agent_rate_events').addColumn('action_key', 'text').execute();
    await db.schema.alterTable('agent_rate_events').addColumn('keys_key', 'text').execute();
    await db.schema.alterTable('agent_rate_events').addColumn('fingerprint', 'text').execute();
    await db.schema.createIndex('agent_rate_events_action').on('agent_rate_events').columns(['agent_id', 'action_key', 'at']).execute();
    await db.schema.createIndex('agent_rate_events_keys').on('agent_rate_events').columns(['agent_id', 'action_key', 'keys_key', 'at']).execute();
    const since = Date.now() - WINDOW - 2 * MINUTE;
    const rows = await db.selectFrom('agent_rate_events').select(['agent_id', 'value_bucket']).where('at', '>', since).where('value_bucket', 'is not', null).execute();
    const merged = new Map<string, { agent_id: string; bucket: ValueBucket }>();
    for (const r of rows as { agent_id: string; value_bucket: string }[]) {
      let bucket: ValueBucket;
      try {
        bucket = JSON.parse(r.value_bucket) as ValueBucket;
      } catch {
        continue; // an unreadable slice adds nothing (as on the create path before)
      }
      const key = `${r.agent_id}\u0000${bucket.start}`;
      const prev = merged.get(key);
      merged.set(key, { agent_id: r.agent_id, bucket: prev ? mergeBucket([prev.bucket], bucket, Number.NEGATIVE_INFINITY)[0]! : bucket });
    }
    for (const { agent_id, bucket } of merged.values()) {
      await db.insertInto('agent_value_minutes').values({ agent_id, start: bucket.start, bucket: JSON.stringify(bucket) }).execute();
    }
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('agent_value_minutes').execute();
    await db.schema.dropIndex('agent_rate_events_keys').execute();
    await db.schema.dropIndex('agent_rate_events_action').execute();
    for (const column of ['fingerprint', 'keys_key', 'action_key']) await db.schema.alterTable('agent_rate_events').dropColumn(column).execute();
  },
};

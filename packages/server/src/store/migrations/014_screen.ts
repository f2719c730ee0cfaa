import type { Kysely, Migration } from 'kysely';

/**
 * Migration 014: the screening learning loop. `screen_verdicts` holds reviewers' verdicts on a
 * request's screening findings (injection / not_injection / unsure), kept apart from reviews:
 * approving an action does not say its text was benign. Each row keeps the score and action
 * the server recorded at create time, never a score a client sent. `screen_samples` is the
 * random audit sample of auto-allowed requests, drawn in the create transaction, so the
 * false-negative rate can be estimated from verdicts on them. Each verdict keeps the request's
 * agent, so calibration caps the weight of one agent's text as well as one reviewer's. One writer: engine/screening.ts.
 */
export const m014_screen: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('screen_verdicts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('request_id', 'text', (c) => c.notNull())
      /** Index into the assessment's screening findings; -1 for the request as a whole (an audit sample). */
      .addColumn('finding', 'integer', (c) => c.notNull())
      .addColumn('field', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('channel', 'text', (c) => c.notNull())
      .addColumn('score', 'double precision', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('audited', 'integer', (c) => c.notNull())
      .addColumn('verdict', 'text', (c) => c.notNull())
      .addColumn('operator_id', 'text', (c) => c.notNull())
      /** The agent that filed the request: verdicts on one agent's text carry capped weight together. */
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('screen_verdicts_by_request').on('screen_verdicts').columns(['request_id', 'finding']).execute();
    await db.schema.createIndex('screen_verdicts_by_time').on('screen_verdicts').columns(['created_at']).execute();
    await db.schema
      .createTable('screen_samples')
      .addColumn('request_id', 'text', (c) => c.primaryKey())
      .addColumn('score', 'double precision', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

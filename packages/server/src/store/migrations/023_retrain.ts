import type { Kysely, Migration } from 'kysely';

/**
 * Migration 023: screening models adopted by the periodic retrain (issue 15). One row per
 * adoption, numbered: `seq` is the primary key and each adoption writes the number after the
 * one it was trained against, so when two servers on one database retrain at once only the
 * first insert succeeds (the other is refused as superseded). `data` is the serialised model
 * (JSON), `hash` its SHA-256, `mac` the server secret's MAC over seq, hash and version: a row
 * written by someone who can reach only the database is not used (reads fail closed to the
 * committed model, the frozen baseline). `report` is the gate's report. One writer:
 * engine/screen-models.ts.
 */
export const m023_retrain: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('screen_models')
      .addColumn('seq', 'integer', (c) => c.primaryKey())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('version', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('mac', 'text', (c) => c.notNull())
      .addColumn('report', 'text', (c) => c.notNull())
      .addColumn('adopted_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

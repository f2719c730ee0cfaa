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
 *
 * `screen_retrain_attempts`: one row per scheduled retrain, claimed before it runs (`seq` is the
 * primary key, the number after the newest, so of two servers only one claims a slot) and
 * finished with its outcome: the schedule counts `every` from the newest attempt or adoption,
 * across restarts and servers, refusals included.
 *
 * `screen_verdicts.mac` (added here; the table is 014's): the server secret's MAC over the
 * verdict row, written by engine/screening.ts. Rows whose MAC does not verify are not used;
 * rows from before this migration have none and do not teach the retrain (they still count in
 * the rates and reports they always did).
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
    await db.schema
      .createTable('screen_retrain_attempts')
      .addColumn('seq', 'integer', (c) => c.primaryKey())
      .addColumn('started_at', 'bigint', (c) => c.notNull())
      .addColumn('outcome', 'text')
      .addColumn('reason', 'text')
      .addColumn('finished_at', 'bigint')
      .execute();
    await db.schema.alterTable('screen_verdicts').addColumn('mac', 'text').execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.alterTable('screen_verdicts').dropColumn('mac').execute();
    await db.schema.dropTable('screen_retrain_attempts').execute();
    await db.schema.dropTable('screen_models').execute();
  },
};

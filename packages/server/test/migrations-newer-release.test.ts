/**
 * A rolling upgrade: the newer release migrates the shared database while older servers run, and
 * an older server that restarts finds migration keys it does not know. It must start (every
 * migration is expand-only) and say so, except when a newer migration is a contract step
 * (`…_contract`), which ends the window: then it refuses the database.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CountersignError } from '@countersign/core';
import { connect, sql } from '../src/store/connect.ts';
import { migrationProvider } from '../src/store/migrations/index.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

describe.each(ENGINES)('migrations recorded by a newer release ($name)', ({ make }) => {
  let db: TestDatabase;
  afterEach(async () => db?.drop());

  async function record(url: string, name: string): Promise<void> {
    const c = await connect(url);
    try {
      await sql`insert into countersign_migrations (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(c.db);
    } finally {
      await c.destroy();
    }
  }

  it('a fresh database records none, and every known migration is applied', async () => {
    db = make();
    const c = await connect(db.url);
    try {
      expect(c.migrations.newer).toEqual([]);
      expect(c.migrations.applied.sort()).toEqual(Object.keys(await migrationProvider.getMigrations()).sort());
    } finally {
      await c.destroy();
    }
  });

  it('an older release starts beside expand migrations it does not know, names them, and runs none', async () => {
    db = make();
    await record(db.url, '990_from_a_newer_release');
    await record(db.url, '013_backfilled_by_a_newer_release');
    const c = await connect(db.url);
    try {
      expect(c.migrations.newer).toEqual(['013_backfilled_by_a_newer_release', '990_from_a_newer_release']);
      expect(c.migrations.applied).toEqual([]);
      // The store works: a plain read of a table every release has.
      const rows = await c.db.selectFrom('requests').select('id').limit(1).execute();
      expect(rows).toEqual([]);
    } finally {
      await c.destroy();
    }
    // The recorded keys are left as they were (nothing is rolled back or re-recorded).
    const again = await connect(db.url);
    try {
      const names = (await sql<{ name: string }>`select name from countersign_migrations`.execute(again.db)).rows.map((r) => r.name);
      expect(names.filter((n) => n.includes('newer_release')).sort()).toEqual(['013_backfilled_by_a_newer_release', '990_from_a_newer_release']);
    } finally {
      await again.destroy();
    }
  });

  it('a contract migration of a newer release ends the window: the older server refuses the database', async () => {
    db = make();
    await record(db.url, '991_drop_legacy_contract');
    const failure = await connect(db.url).then(
      async (c) => {
        await c.destroy();
        return undefined;
      },
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(CountersignError);
    expect((failure as CountersignError).code).toBe('STORE_UNAVAILABLE');
    expect((failure as CountersignError).message).toContain('991_drop_legacy_contract');
    expect((failure as CountersignError).message).toContain('upgrade this server');
  });
});

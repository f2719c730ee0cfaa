/**
 * Real databases for tests: a fresh SQLite file in a temp dir, and a fresh schema on the local
 * PostgreSQL server (COUNTERSIGN_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test).
 * Each call gets its own, so test files never see each other's rows.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_BASE_URL = process.env.COUNTERSIGN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestDatabase {
  name: 'sqlite' | 'postgres';
  url: string;
  drop(): Promise<void>;
}

export function sqliteDatabase(): TestDatabase {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-test-'));
  return {
    name: 'sqlite',
    url: `sqlite:${join(dir, 'countersign.db')}`,
    async drop() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function postgresDatabase(): TestDatabase {
  const schema = `cs_test_${randomBytes(6).toString('hex')}`;
  return {
    name: 'postgres',
    url: `${PG_BASE_URL}?schema=${schema}`,
    async drop() {
      const client = new pg.Client({ connectionString: PG_BASE_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** Both engines, for conformance suites: `describe.each(ENGINES)`. */
export const ENGINES = [
  { name: 'sqlite' as const, make: sqliteDatabase },
  { name: 'postgres' as const, make: postgresDatabase },
];

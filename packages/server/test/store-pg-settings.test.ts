/**
 * Settings every PostgreSQL connection of the store opens with (store/connect.ts). `jit` off: the
 * history aggregates (store/history.ts) are short queries whose estimated cost passes
 * jit_above_cost, and LLVM compiling them took most of their time (bench/scale.ts). The local
 * server runs with the default (`jit` on), so this fails without the connection option.
 */
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '../src/store/connect.ts';
import { postgresDatabase } from './support/databases.ts';

describe('PostgreSQL connection settings', () => {
  const database = postgresDatabase();
  afterAll(() => database.drop());

  it('every pooled connection has jit off, whatever the server default', async () => {
    const connection = await connect(database.url);
    try {
      // Several at once, so the pool opens several connections.
      const answers = await Promise.all(
        Array.from({ length: 4 }, () =>
          connection.db.connection().execute(async (c) => {
            const jit = (await sql<{ jit: string }>`show jit`.execute(c)).rows[0]!.jit;
            await sql`select pg_sleep(0.05)`.execute(c);
            return { jit, pid: (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(c)).rows[0]!.pid };
          }),
        ),
      );
      expect(new Set(answers.map((a) => a.pid)).size).toBeGreaterThan(1);
      expect(answers.map((a) => a.jit)).toEqual(['off', 'off', 'off', 'off']);
    } finally {
      await connection.destroy();
    }
  });
});

/**
 * A tick's cost follows the number of due timers, not the number of waiting requests: the claim
 * walks the due-time index (checked in each database's own query plan, with 20,000 timers in
 * the table), and with 20,000 pending deadlines in the future a tick claims nothing. Timings
 * at 100,000 pending requests are in BENCHMARKS.md (`npm run bench:scheduler`).
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import type { TimerRow } from '../src/store/timers.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const FUTURE = 20_000;

describe.each(ENGINES)('scheduler: the claim uses the due-time index ($name)', ({ name, make }) => {
  let database: TestDatabase;
  let engine: Engine;
  const now = Date.now();

  beforeAll(async () => {
    database = make();
    const connection = await connect(database.url);
    engine = await Engine.open({ connection, now: () => now });
    const rows: TimerRow[] = Array.from({ length: FUTURE }, (_, i) => ({
      id: `tmr_e_req_${String(i).padStart(26, '0')}`,
      kind: 'escalate',
      request_id: `req_${String(i).padStart(26, '0')}`,
      due_at: now + 60_000 + i,
      payload: '{"level":1}',
      claimed_by: null,
      claimed_until: null,
      created_at: now,
    }));
    for (let i = 0; i < rows.length; i += 1000) await engine.store.timers.insertTimers(rows.slice(i, i + 1000));
    if (name === 'postgres') await sql`analyze timers`.execute(connection.db);
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('plans the claim as an index range walk, not a table scan', async () => {
    const compiled = engine.store.timers.claimDueQuery(now, 100, 'test', 30_000, ['escalate', 'expire']).compile();
    const db = (engine.store as unknown as { connection: { db: import('kysely').Kysely<unknown> } }).connection.db;
    if (name === 'sqlite') {
      const rows = (await db.executeQuery({ ...compiled, sql: `EXPLAIN QUERY PLAN ${compiled.sql}`, query: compiled.query })).rows as Array<{ detail: string }>;
      const details = rows.map((r) => r.detail);
      console.log(`sqlite claim plan:\n  ${details.join('\n  ')}`);
      expect(details.some((d) => /SEARCH timers USING INDEX timers_due \(due_at<\?\)/.test(d))).toBe(true);
      expect(details.some((d) => /^SCAN timers\b/.test(d))).toBe(false);
    } else {
      const rows = (await db.executeQuery({ ...compiled, sql: `EXPLAIN ${compiled.sql}`, query: compiled.query })).rows as Array<{ 'QUERY PLAN': string }>;
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      console.log(`postgres claim plan:\n${plan}`);
      expect(plan).toMatch(/Index Scan using timers_due on timers/);
      expect(plan).not.toMatch(/Seq Scan on timers/);
    }
  });

  it('a tick with 20,000 deadlines in the future claims and fires nothing', async () => {
    const report = await new Scheduler(engine).tick();
    expect(report).toEqual({ fired: 0, escalated: 0, decided: 0, gone: 0, stale: 0, rescheduled: 0, errors: 0, deliveries: 0, lapsed: 0 });
    expect(await engine.store.timers.countTimers('escalate')).toBe(FUTURE);
  });
});

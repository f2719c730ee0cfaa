/**
 * A database writer sets an audit entry's time to one no date can hold. The audit listing still
 * answers (it used to throw a RangeError: a 500 for every page holding that entry), shows the
 * time as invalid, and verification of the export catches the edit.
 */
import { CreateRequestBody } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { verifyTrailStream } from '../src/audit/verify.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO, openTestEngine, type TestEngine } from './support/engine.ts';

describe.each(ENGINES)('audit listing with a tampered time ($name)', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;
  let raw: Connection;
  let token: string;

  beforeAll(async () => {
    database = await make();
    t = await openTestEngine(database.url);
    raw = await connect(database.url);
    token = (await t.engine.createOperator(t.admin, { name: 'auditor', roles: ['admin'], groups: [] })).token;
    for (let i = 0; i < 3; i++) await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `203.0.113.${i}` } }));
    await t.engine.trail.checkpoint();
  }, 60_000);

  afterAll(async () => {
    await raw.destroy();
    await t.engine.close();
    await database.drop();
  });

  it('answers 200, shows the time as invalid, and the export no longer verifies', async () => {
    const app = createApp({ engine: t.engine, log: () => {}, heartbeatSeconds: 1 });
    const before = await app.request('/v1/audit?limit=100', { headers: { authorization: `Bearer ${token}` } });
    expect(before.status).toBe(200);
    const target = ((await before.json()) as { items: Array<{ seq: number; at: string }> }).items[1]!;
    expect(target.at).toMatch(/^\d{4}-\d\d-\d\dT/);

    await raw.db.updateTable('audit_log').set({ at: 9e18 }).where('seq', '=', target.seq).execute();

    const res = await app.request('/v1/audit?limit=100', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const items = ((await res.json()) as { items: Array<{ seq: number; at: string }> }).items;
    expect(items.find((e) => e.seq === target.seq)?.at).toBe('invalid time: 9000000000000000000');
    expect(items.filter((e) => e.seq !== target.seq).every((e) => /^\d{4}-\d\d-\d\dT/.test(e.at))).toBe(true);

    const lines: string[] = [];
    for await (const line of t.engine.trail.exportLines()) lines.push(`${line}\n`);
    async function* bytes() {
      yield Buffer.from(lines.join(''));
    }
    const result = await verifyTrailStream(bytes(), t.engine.trail.key);
    expect(result.ok).toBe(false);
  });
});

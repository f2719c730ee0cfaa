/**
 * Red-team review of issue 12's claim contract (branch review-claim), server side. Each test
 * states what must hold and fails on claim cf4ebf6.
 */
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO } from './support/engine.ts';

async function open(url: string, clock: { t: number }) {
  const engine = await Engine.open({ connection: await connect(url), now: () => clock.t });
  await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
  const boot = (await engine.bootstrap())!;
  const agent = (await engine.authenticate(boot.agentKey))!;
  // The store's Kysely handle: what a DB writer (a compromised migration, an operator with SQL) has.
  const db = (engine.store as unknown as { db: { executeQuery: (q: unknown) => Promise<unknown> } }).db as never;
  return { engine, agent, db };
}

const codeOf = async (p: Promise<unknown>) => p.then(() => 'OK', (e: { code?: string }) => e.code);

describe.each(ENGINES)('review: the claim trusts only mutable columns ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine | undefined;
  afterEach(async () => {
    await engine?.close();
    await database?.drop();
  });

  it("a DB writer who moves claim_expires_at cannot revive an approval whose signed receipt has expired", async () => {
    database = make();
    const clock = { t: Date.parse('2026-03-01T10:00:00Z') };
    const o = await open(database.url, clock);
    engine = o.engine;
    const { request: r } = await engine.createRequest(o.agent, AUTO as never);
    const receipt = r.decision!.receipt!;
    expect(receipt.version).toBe(2);
    // The signed receipt says: claimable until +1h. The DB writer extends the column by a year.
    await sql`update requests set claim_expires_at = ${clock.t + 365 * 86_400_000} where id = ${r.id}`.execute(o.db);
    clock.t = Date.parse(receipt.expiresAt!) + 60_000; // past the signed expiry
    expect(await codeOf(engine.reportExecution(o.agent, r.id, { status: 'started', receipt }))).toBe('RECEIPT_EXPIRED');
  });

  it('a DB writer who resets status/claimed_at cannot get a second execution_started for one approval', async () => {
    database = make();
    const clock = { t: Date.parse('2026-03-01T10:00:00Z') };
    const o = await open(database.url, clock);
    engine = o.engine;
    const { request: r } = await engine.createRequest(o.agent, AUTO as never);
    const receipt = r.decision!.receipt!;
    expect((await engine.reportExecution(o.agent, r.id, { status: 'started', receipt })).status).toBe('executing');
    await engine.reportExecution(o.agent, r.id, { status: 'succeeded' });
    // The trail (hash-chained) holds execution_started; the columns are reset.
    await sql`update requests set status = 'approved', claimed_at = null, execution = null where id = ${r.id}`.execute(o.db);
    clock.t += 1_000;
    expect(await codeOf(engine.reportExecution(o.agent, r.id, { status: 'started', receipt }))).toBe('ALREADY_EXECUTED');
  });
});

describe.each(ENGINES)('red team: an approval that lapsed unclaimed frees its idempotency key (finding 8, $name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine | undefined;
  afterEach(async () => {
    await engine?.close();
    await database?.drop();
  });

  it('a create under the key after the expiry files one new request (linked in the trail), however many race; a claimed one keeps replaying', async () => {
    database = make();
    const clock = { t: Date.parse('2026-03-01T10:00:00Z') };
    const o = await open(database.url, clock);
    engine = o.engine;
    const body = { ...(AUTO as object), idempotencyKey: 'tool-call-1' } as never;
    const { request: old } = await engine.createRequest(o.agent, body);
    expect(old.status).toBe('approved');
    // Before the expiry: the same request.
    expect((await engine.createRequest(o.agent, body)).request.id).toBe(old.id);
    clock.t = Date.parse(old.decision!.receipt!.expiresAt!) + 1;
    const racing = await Promise.all(Array.from({ length: 8 }, () => engine!.createRequest(o.agent, body)));
    const ids = new Set(racing.map((r) => r.request.id));
    expect(ids.size).toBe(1);
    const [fresh] = [...ids];
    expect(fresh).not.toBe(old.id);
    expect(racing.filter((r) => !r.replayed)).toHaveLength(1);
    // The old approval can still never run.
    expect(await codeOf(engine.reportExecution(o.agent, old.id, { status: 'started', receipt: old.decision!.receipt! }))).toBe('RECEIPT_EXPIRED');
    const trail = await engine.store.auditFor(old.id);
    expect(trail.map((e) => e.type)).toContain('claim_lapsed');
    // The new one is claimed; from then on the key replays it (ALREADY_EXECUTED for a second claim), even after its expiry.
    const freshReq = racing[0]!.request;
    expect((await engine.reportExecution(o.agent, fresh!, { status: 'started', receipt: freshReq.decision!.receipt! })).status).toBe('executing');
    clock.t = Date.parse(freshReq.decision!.receipt!.expiresAt!) + 1;
    const again = await engine.createRequest(o.agent, body);
    expect(again).toMatchObject({ replayed: true, request: { id: fresh, status: 'executing' } });
  });
});

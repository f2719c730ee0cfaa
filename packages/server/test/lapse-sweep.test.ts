/**
 * Issue 12: an approval never claimed before its claim deadline is swept by the scheduler to
 * `lapsed` (final), once, with one `approval_lapsed` entry, across two servers on one database;
 * a claim after the sweep is refused, reading never extends, and the idempotency key re-files.
 */
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { ephemeralAuditKey } from '../src/audit/crypto.ts';
import { Engine } from '../src/engine/engine.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO } from './support/engine.ts';

const codeOf = async (p: Promise<unknown>) => p.then(() => 'OK', (e: { code?: string }) => e.code);

// Two servers of one deployment share the audit key (it signs the receipts either one checks).
const auditKey = ephemeralAuditKey();

async function open(url: string, clock: { t: number }) {
  const engine = await Engine.open({ connection: await connect(url), now: () => clock.t, auditKey });
  await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
  return engine;
}

describe.each(ENGINES)('lapse sweep ($name)', ({ make }) => {
  let database: TestDatabase;
  const engines: Engine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
    await database?.drop();
  });

  it('sweeps an unclaimed approval once its claim window closes; reading never extends; a claim after is refused; the key re-files', async () => {
    database = make();
    const clock = { t: Date.parse('2026-03-01T10:00:00Z') };
    const engine = await open(database.url, clock);
    engines.push(engine);
    const agent = (await engine.authenticate((await engine.bootstrap())!.agentKey))!;
    const body = { ...(AUTO as object), idempotencyKey: 'tool-call-7' } as never;
    const { request: r } = await engine.createRequest(agent, body);
    expect(r.status).toBe('approved');
    const receipt = r.decision!.receipt!;
    const deadline = Date.parse(receipt.expiresAt!);
    const scheduler = new Scheduler(engine);

    // Before the deadline: nothing to sweep, however often it is read.
    clock.t = deadline - 1;
    for (let i = 0; i < 3; i++) await engine.getRequest(agent, r.id);
    expect((await scheduler.tick()).lapsed).toBe(0);
    expect((await engine.getRequest(agent, r.id)).status).toBe('approved');

    clock.t = deadline;
    const first = await scheduler.tick();
    expect(first.lapsed).toBe(1);
    expect((await scheduler.tick()).lapsed).toBe(0);
    const after = await engine.getRequest(agent, r.id);
    expect(after.status).toBe('lapsed');
    const trail = (await engine.store.auditFor(r.id)).filter((e) => e.type === 'approval_lapsed');
    expect(trail).toHaveLength(1);
    expect(JSON.parse(trail[0]!.data)).toMatchObject({ expiresAt: new Date(deadline).toISOString(), lateMs: 0 });

    // The receipt can never run now.
    expect(await codeOf(engine.reportExecution(agent, r.id, { status: 'started', receipt }))).toBe('RECEIPT_EXPIRED');
    expect(await codeOf(engine.reportExecution(agent, r.id, { status: 'succeeded' }))).toBe('ALREADY_DECIDED');
    expect((await engine.getRequest(agent, r.id)).status).toBe('lapsed');

    // Re-filing under the same key files one new request (linked both ways in the trail).
    const again = await engine.createRequest(agent, body);
    expect(again.replayed).toBe(false);
    expect(again.request.id).not.toBe(r.id);
    expect(again.request.status).toBe('approved');
    expect((await engine.store.auditFor(r.id)).map((e) => e.type)).toContain('claim_lapsed');
    expect((await engine.createRequest(agent, body)).request.id).toBe(again.request.id);
  });

  it('red team: two servers sweep and claim the same rows at once: each approval ends once, in exactly one state', async () => {
    database = make();
    const clockA = { t: Date.parse('2026-03-01T10:00:00Z') };
    const a = await open(database.url, clockA);
    engines.push(a);
    const agent = (await a.authenticate((await a.bootstrap())!.agentKey))!;
    const made = [];
    for (let i = 0; i < 30; i++) {
      clockA.t += 1; // distinct deadlines, one millisecond apart
      made.push((await a.createRequest(agent, { ...(AUTO as object), args: { ip: `203.0.113.${i + 1}` }, idempotencyKey: `k${i}` } as never)).request);
    }
    const approved = made.filter((r) => r.status === 'approved');
    expect(approved.length).toBeGreaterThan(10);
    const last = Date.parse(approved.at(-1)!.decision!.receipt!.expiresAt!);
    // Server B's clock runs behind A's (skew): B's claims are inside the window while A sweeps them.
    const clockB = { t: last - 1 };
    const b = await open(database.url, clockB);
    engines.push(b);
    clockA.t = last;
    const sa = new Scheduler(a, { batch: 4 });
    const sb = new Scheduler(b, { batch: 4 });
    const [ticksA, claimed] = await Promise.all([
      sa.tick(),
      Promise.all(approved.map((r) => codeOf(b.reportExecution(agent, r.id, { status: 'started', receipt: r.decision!.receipt! })))),
    ]);
    clockB.t = last;
    const more = await Promise.all([sa.tick(), sb.tick()]);
    const okClaims = claimed.filter((c) => c === 'OK').length;
    expect(claimed.filter((c) => c !== 'OK' && c !== 'RECEIPT_EXPIRED')).toEqual([]);
    expect(ticksA.lapsed + more[0].lapsed + more[1].lapsed + okClaims).toBe(approved.length);
    for (const r of approved) {
      const row = (await a.store.getRequest(r.id))!;
      const types = (await a.store.auditFor(r.id)).map((e) => e.type);
      const lapses = types.filter((t) => t === 'approval_lapsed').length;
      const starts = types.filter((t) => t === 'execution_started').length;
      expect(lapses + starts).toBe(1);
      expect(row.status).toBe(lapses === 1 ? 'lapsed' : 'executing');
    }
  });

  it('red team: two servers sweeping at once write one approval_lapsed per request', async () => {
    database = make();
    const clock = { t: Date.parse('2026-03-01T10:00:00Z') };
    const a = await open(database.url, clock);
    engines.push(a);
    const agent = (await a.authenticate((await a.bootstrap())!.agentKey))!;
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      const { request } = await a.createRequest(agent, { ...(AUTO as object), args: { ip: `198.51.100.${i + 1}` } } as never);
      if (request.status === 'approved') ids.push(request.id);
    }
    const b = await open(database.url, clock);
    engines.push(b);
    clock.t += 86_400_000;
    const ticks = await Promise.all([new Scheduler(a, { batch: 3 }).tick(), new Scheduler(b, { batch: 3 }).tick(), new Scheduler(a, { batch: 5 }).tick()]);
    expect(ticks.reduce((n, t) => n + t.lapsed, 0)).toBe(ids.length);
    for (const id of ids) expect((await a.store.auditFor(id)).filter((e) => e.type === 'approval_lapsed')).toHaveLength(1);
  });

  it('red team: a sweep acting on a stale read (the row already lapsed, or claimed) changes nothing and writes no second entry', async () => {
    database = make();
    const clock = { t: Date.parse('2026-03-01T10:00:00Z') };
    const engine = await open(database.url, clock);
    engines.push(engine);
    const agent = (await engine.authenticate((await engine.bootstrap())!.agentKey))!;
    const { request: r } = await engine.createRequest(agent, AUTO as never);
    const { request: c } = await engine.createRequest(agent, { ...(AUTO as object), args: { ip: '192.0.2.9' } } as never);
    await engine.reportExecution(agent, c.id, { status: 'started', receipt: c.decision!.receipt! });
    clock.t = Date.parse(r.decision!.receipt!.expiresAt!) + 10;
    expect(await engine.sweepLapsedApprovals(10)).toBe(1);
    // What a second server whose SELECT ran before the first committed would try next: the compare-and-set itself.
    expect(await engine.store.transaction((tx) => tx.lapseApproval(r.id, clock.t + 1))).toBe(false);
    expect(await engine.store.transaction((tx) => tx.lapseApproval(c.id, clock.t + 1))).toBe(false);
    expect((await engine.getRequest(agent, c.id)).status).toBe('executing');
    expect((await engine.store.auditFor(r.id)).filter((e) => e.type === 'approval_lapsed')).toHaveLength(1);
  });

  it('red team: a claim inside the window wins over a sweep that comes later; the sweep never touches a claimed or decided request', async () => {
    database = make();
    const clock = { t: Date.parse('2026-03-01T10:00:00Z') };
    const engine = await open(database.url, clock);
    engines.push(engine);
    const agent = (await engine.authenticate((await engine.bootstrap())!.agentKey))!;
    const { request: r } = await engine.createRequest(agent, AUTO as never);
    expect((await engine.reportExecution(agent, r.id, { status: 'started', receipt: r.decision!.receipt! })).status).toBe('executing');
    clock.t = Date.parse(r.decision!.receipt!.expiresAt!) + 3_600_000;
    expect((await new Scheduler(engine).tick()).lapsed).toBe(0);
    expect((await engine.getRequest(agent, r.id)).status).toBe('executing');
  });
});

/**
 * Slicing detection on every create (issue 12): a burst is caught on the create that completes it
 * (core `detectOnCreate` over a bounded read), not up to a minute later; and with two servers on
 * one database (two engines, each its own pool and its own process-local state), each alert is
 * recorded exactly once (`slicing_seen:<agentId>` under the agent's slicing lock) and each
 * running-total crossing exactly once (the value buckets under the agent's create lock).
 * Both databases.
 */
import { CreateRequestBody, detectOnCreate, parsePolicy } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const POLICY = `
agents:
  burst-bot: { onSlicing: alert }
  pad-bot: { onSlicing: alert }
  pay-bot: { onSlicing: alert, limits: { perMinute: 1000 } }
rules:
  - { name: large-value, enabled: false }
  - { name: very-large-value, enabled: false }
  - name: big-payment
    when: { action: [pay_vendor], valueAtLeast: 50000 }
    then: { approvals: 2 }
`;

describe.each(ENGINES)('slicing on every create ($name)', ({ make }) => {
  let database: TestDatabase;
  let a: Engine;
  let b: Engine;
  let admin: Principal;
  let clock = Date.UTC(2026, 0, 5, 9, 0, 0);
  let n = 0;

  const alertsOf = async (agent: string) =>
    (await a.listAudit(admin, { type: 'slicing_alert', limit: 1000 })).map((e) => e.data as { agent: string; alerts: { type: string; requestIds: string[] }[] }).filter((d) => d.agent === agent);
  const keyFor = async (agent: string) => (await a.authenticate((await a.createAgentKey(admin, agent)).key))!;

  beforeAll(async () => {
    database = make();
    a = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET, now: () => clock });
    await a.activatePolicy(POLICY, 'test');
    admin = (await a.authenticate((await a.bootstrap())!.adminToken))!;
    b = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET, now: () => clock });
    await b.activatePolicy(POLICY, 'test');
  });
  afterAll(async () => {
    await b.close();
    await a.close();
    await database.drop();
  });

  it('a burst of near-identical requests is alerted on its 8th create, within the first minute, and once', async () => {
    const agent = await keyFor('burst-bot');
    const spellings = ['delete_file', 'deleteFile', 'Delete-File'];
    for (let i = 0; i < 12; i++) {
      clock += 2_000;
      // Alternate servers: each keeps its own once-a-minute report timer, neither sees the burst in it.
      const engine = i % 2 ? b : a;
      await engine.createRequest(agent, CreateRequestBody.parse({ action: spellings[i % 3], args: { bucket: 'prod-exports', prefix: '2026/11/', key: `part-${i * 7919}` }, confidence: 0.9, idempotencyKey: `burst-${n++}` }));
      const recorded = (await alertsOf('burst-bot')).flatMap((d) => d.alerts).filter((x) => x.type === 'temporal_clustering');
      expect(recorded, `after create ${i + 1}`).toHaveLength(i < 7 ? 0 : 1);
    }
    const [alert] = (await alertsOf('burst-bot')).flatMap((d) => d.alerts).filter((x) => x.type === 'temporal_clustering');
    expect(alert!.requestIds).toHaveLength(8);
  });

  it('args padded far past 4 KB are compared on create by their fingerprint: the burst is caught on its 8th create, and once', async () => {
    clock += 10 * 60_000;
    const agent = await keyFor('pad-bot');
    const pad = 'x'.repeat(200_000);
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      clock += 2_000;
      const { request } = await a.createRequest(agent, CreateRequestBody.parse({ action: 'delete_file', args: { bucket: 'prod-exports', prefix: '2026/11/', key: `part-${i}`, pad }, confidence: 0.9, idempotencyKey: `pad-${n++}` }));
      ids.push(request.id);
    }
    const recorded = (await alertsOf('pad-bot')).flatMap((d) => d.alerts).filter((x) => x.type === 'temporal_clustering');
    expect(recorded).toHaveLength(1);
    expect(recorded[0]!.requestIds).toEqual(ids.slice(0, 8));
    // What the create path stored to compare: a small fingerprint (the pad hashed), not the payload.
    const c = await connect(database.url);
    try {
      const rows = await c.db.selectFrom('agent_rate_events').select(['fingerprint']).where('request_id', 'in', ids).execute();
      expect(rows).toHaveLength(10);
      for (const r of rows) expect(r.fingerprint!.length).toBeLessThan(1_000);
    } finally {
      await c.destroy();
    }
  });

  it('two servers, 7 creates then 17 concurrent: one clustering alert, and exactly the running total\'s three crossings of 50,000', async () => {
    clock += 10 * 60_000;
    const agent = await keyFor('pay-bot');
    const pay = (i: number) =>
      (i % 2 ? b : a).createRequest(agent, CreateRequestBody.parse({ action: 'pay_vendor', args: { vendor: 'acme', amount: 7_900, currency: 'USD', memo: `invoice ${1000 + i}` }, confidence: 0.9, idempotencyKey: `pay-${n++}` }));
    for (let i = 0; i < 7; i++) await pay(i);
    // Every one of these completes a burst of 8 or more: their alert transactions race on both servers.
    const results = await Promise.all(Array.from({ length: 17 }, (_, i) => pay(7 + i)));
    expect(results).toHaveLength(17);
    const recorded = (await alertsOf('pay-bot')).flatMap((d) => d.alerts);
    // 7 × 7,900 = 55,300, 13 × 7,900 = 102,700 and 19 × 7,900 = 150,100: three multiples of 50,000, whatever the order.
    expect(recorded.filter((x) => x.type === 'value_aggregation')).toHaveLength(3);
    expect(recorded.filter((x) => x.type === 'temporal_clustering')).toHaveLength(1);
    expect(recorded.filter((x) => x.type !== 'value_aggregation' && x.type !== 'temporal_clustering')).toEqual([]);
  });

  it('the same burst found by 20 creates finishing at once on two servers is recorded once', async () => {
    clock += 10 * 60_000;
    const agent = await keyFor('race-bot');
    const created = [];
    for (let i = 0; i < 8; i++) {
      clock += 1_000;
      const { request } = await a.createRequest(agent, CreateRequestBody.parse({ action: 'purge_cache', args: { region: 'eu', tier: 'edge', key: `k${i * 31}` }, confidence: 0.9, idempotencyKey: `race-${n++}` }));
      created.push(request);
    }
    // race-bot has no onSlicing in the active policy: its creates recorded nothing.
    expect(await alertsOf('race-bot')).toEqual([]);
    // Under a policy that gives it one, the 8th create's after-create run, on both servers at once, ten times each:
    // each finds the burst not yet recorded; the store's record (under the agent's slicing lock) lets one through.
    const parsed = parsePolicy(POLICY.replace('agents:', 'agents:\n  race-bot: { onSlicing: alert }'));
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    const policy = parsed.policy;
    const last = created.at(-1)!;
    const agentRow = { id: last.agentId, name: 'race-bot' };
    // What the 8th create's transaction found (core detectOnCreate over the 7 before it).
    const events = created.map((r) => ({ requestId: r.id, agentId: r.agentId, action: r.action, args: r.args, riskLevel: 'low' as const, createdAt: Date.parse(r.createdAt) }));
    const found = detectOnCreate(events.at(-1)!, events.slice(0, -1));
    expect(found.map((x) => x.type)).toContain('temporal_clustering');
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? b : a).guard.afterCreate(agentRow, policy, found)));
    expect((await alertsOf('race-bot')).flatMap((d) => d.alerts).filter((x) => x.type === 'temporal_clustering')).toHaveLength(1);
  });
});

describe.each(ENGINES)('running value totals by minute ($name)', ({ make }) => {
  it('a create reads one row per minute, not every slice; totals from before migration 024 are folded in at the upgrade; old minutes are dropped', async () => {
    const database = make();
    // Near the real clock: the migration folds in the slices of the last hour by the wall clock.
    let clock = Math.floor(Date.now() / 60_000) * 60_000 - 30 * 60_000;
    const open = async () => {
      const engine = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET, now: () => clock });
      await engine.activatePolicy(POLICY, 'test');
      return engine;
    };
    let engine = await open();
    try {
      const admin = (await engine.authenticate((await engine.bootstrap())!.adminToken))!;
      const agent = (await engine.authenticate((await engine.createAgentKey(admin, 'pay-bot')).key))!;
      const pay = (i: number) => engine.createRequest(agent, CreateRequestBody.parse({ action: 'pay_vendor', args: { amount: 7_900, to: `acct-${i}`, memo: `m${i * 13}` }, confidence: 0.9 }));
      // Six payments in two minutes (3 + 3): 47,400, under the policy's 50,000.
      for (let i = 0; i < 6; i++) {
        clock += i === 3 ? 60_000 : 1_000;
        await pay(i);
      }
      const c = await connect(database.url);
      try {
        const minutes = await c.db.selectFrom('agent_value_minutes').selectAll().execute();
        expect(minutes).toHaveLength(2);
        const sums = minutes.map((m) => Object.values((JSON.parse(m.bucket) as { under: Record<string, { sum: number; count: number }> }).under));
        expect(sums.map((u) => u.map((x) => x.sum))).toEqual([[23_700], [23_700]]);
        // As a database from before 024: no minute table, the migration not applied.
        await c.db.schema.dropTable('agent_value_minutes').execute();
        await c.db.schema.dropIndex('agent_rate_events_keys').execute();
        await c.db.schema.dropIndex('agent_rate_events_action').execute();
        for (const column of ['fingerprint', 'keys_key', 'action_key']) await c.db.schema.alterTable('agent_rate_events').dropColumn(column).execute();
        await c.db.deleteFrom('countersign_migrations' as never).where('name' as never, '=', '024_gate12' as never).execute();
      } finally {
        await c.destroy();
      }
      await engine.close();
      engine = await open();
      // The seventh takes the total across 50,000 only if the upgrade kept the first six.
      clock += 1_000;
      const admin2 = (await engine.authenticate((await engine.createOperator(admin, { name: `auditor-${database.name}`, roles: ['admin'] })).token))!;
      const { request } = await pay(6);
      const alerts = (await engine.listAudit(admin2, { type: 'slicing_alert', limit: 100 })).map((e) => e.data as { alerts: { type: string; requestIds: string[] }[] });
      expect(alerts.flatMap((d) => d.alerts).filter((a) => a.type === 'value_aggregation').map((a) => a.requestIds)).toEqual([[request.id]]);
      // An hour and more on, the next minute's first slice drops the minutes no window reaches.
      clock += 62 * 60_000;
      await pay(7);
      const c2 = await connect(database.url);
      try {
        expect((await c2.db.selectFrom('agent_value_minutes').select('start').execute()).map((r) => Number(r.start))).toEqual([Math.floor(clock / 60_000) * 60_000]);
      } finally {
        await c2.destroy();
      }
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

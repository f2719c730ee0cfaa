/**
 * Red-team review of branch gate12 (issue 12: slicing detection on every create). Each test
 * asserts the secure behaviour and FAILS on gate12 a238ee7; see the FINDING comments. Both
 * databases, two engines on one database where it matters.
 */
import { CreateRequestBody } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const POLICY = `
agents:
  review-bot: { onSlicing: review, limits: { perMinute: 1000 } }
  pause-bot: { onSlicing: pause, limits: { perMinute: 1000 } }
  burst-bot: { onSlicing: review, limits: { perMinute: 1000 } }
  flaky-bot: { onSlicing: alert, limits: { perMinute: 1000 } }
  pad-bot: { onSlicing: alert, limits: { perMinute: 1000 } }
rules:
  - { name: large-value, enabled: false }
  - { name: very-large-value, enabled: false }
  - name: big-payment
    when: { action: [pay_vendor], valueAtLeast: 50000 }
    then: { approvals: 2 }
`;

describe.each(ENGINES)('gate12 review ($name)', ({ make }) => {
  let database: TestDatabase;
  let a: Engine;
  let b: Engine;
  let admin: Principal;
  let clock = Date.UTC(2026, 0, 5, 9, 0, 0);
  let n = 0;

  const alertsOf = async (agent: string) =>
    (await a.listAudit(admin, { type: 'slicing_alert', limit: 1000 })).map((e) => e.data as { agent: string; alerts: { type: string; requestIds: string[] }[] }).filter((d) => d.agent === agent).flatMap((d) => d.alerts);
  const keyFor = async (agent: string) => (await a.authenticate((await a.createAgentKey(admin, agent)).key))!;
  const pay = (engine: Engine, agent: Principal, i: number) =>
    engine.createRequest(agent, CreateRequestBody.parse({ action: 'pay_vendor', args: { vendor: `vendor-${i * 7}`, amount: 7_900, currency: 'USD', memo: `invoice ${1000 + i * 13}` }, confidence: 0.9, idempotencyKey: `pay-${n++}` }));

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

  /*
   * FINDING 1 — severity: high. Attack: slice a 55,300 payment into seven auto-approved 7,900
   * payments (under the policy's 50,000 two-approval rule), with `onSlicing: review` (or `pause`)
   * on the agent. The create that takes the running total across 50,000 raises the alert — but its
   * own status was decided before `checkCreate` computed the total, and `afterCreate` applies the
   * response only after the commit, to LATER creates. So the crossing slice itself is approved
   * (receipt and all) and the full 55,300 moves with no human. `review`/`pause` never held the
   * create that crossed. Secure: the crossing create is held (pending, or refused for a pause)
   * — compute the running total (and the per-create detectors) before the route is fixed, or
   * re-route the crossing create to review inside its own transaction.
   */
  it.each([
    ['review-bot', 'review'],
    ['pause-bot', 'pause'],
  ])('FINDING 1: the create that crosses the value threshold is itself held (%s, onSlicing: %s)', async (name) => {
    clock += 10 * 60_000;
    const agent = await keyFor(name);
    const statuses: string[] = [];
    for (let i = 0; i < 7; i++) {
      clock += 2_000;
      const { request } = await pay(i % 2 ? b : a, agent, i);
      statuses.push(request.status);
    }
    // The running total did cross on the 7th (7 × 7,900 = 55,300): the alert names it.
    const crossing = (await alertsOf(name)).filter((x) => x.type === 'value_aggregation');
    expect(crossing).toHaveLength(1);
    expect(statuses.slice(0, 6).every((s) => s === 'approved'), `the six under-threshold slices are auto-approved: ${statuses}`).toBe(true);
    expect(statuses[6], 'the slice that took the total to 55,300 must not be auto-approved').not.toBe('approved');
  });

  /*
   * FINDING 1 (b) — same root, the per-create burst detectors: with `onSlicing: review`, the
   * create that completes a burst (the one `detectOnCreate` catches: here the 5th request with
   * only a number moving, pattern_repetition) is itself auto-approved; only the 6th on is held.
   */
  it('FINDING 1b: the create that completes a burst is itself held (onSlicing: review)', async () => {
    clock += 10 * 60_000;
    const agent = await keyFor('burst-bot');
    const status = new Map<string, string>();
    for (let i = 0; i < 8; i++) {
      clock += 2_000;
      const { request } = await a.createRequest(agent, CreateRequestBody.parse({ action: 'send_alert', args: { channel: 'ops', severity: 'low', ticket: 1000 + i * 7919 }, confidence: 0.9, idempotencyKey: `burst-${n++}` }));
      status.set(request.id, request.status);
    }
    const [first] = await alertsOf('burst-bot');
    expect(first, 'the burst is alerted on create').toBeDefined();
    // The create that raised the first alert is the newest request it names.
    const raisedBy = [...status.keys()].filter((id) => first!.requestIds.includes(id)).at(-1)!;
    expect([...status.values()].filter((s) => s === 'approved').length, 'the slices before the detection are auto-approved').toBeGreaterThanOrEqual(4);
    expect(status.get(raisedBy), `the create that completed the ${first!.type} burst must not be auto-approved`).not.toBe('approved');
  });

  /*
   * FINDING 2 — severity: medium. Attack / load: the after-create step is "advisory" and swallows
   * every error, but the create transaction has already written the crossing into the minute
   * bucket (`alerted: 1`). If the after-create transaction fails once (a PostgreSQL deadlock or
   * serialization failure, a pool or busy timeout under multi-server load, a notice-queue error),
   * that crossing is never recorded: later creates see `alerted` and stay quiet until the next
   * multiple (2 × 50,000), and the once-a-minute report runs with `withValueSlices = false`, so
   * the backstop never re-raises it. Secure: a transient failure delays the alert, it does not
   * erase it (mark `alerted` in the same transaction that records the alert, or let the report
   * raise value crossings not yet in `slicing_seen`).
   */
  it('FINDING 2: a crossing whose after-create step failed once is still recorded later', async () => {
    clock += 10 * 60_000;
    const agent = await keyFor('flaky-bot');
    const guard = a.guard as unknown as { queueNotice: (...args: unknown[]) => Promise<boolean> };
    const original = guard.queueNotice;
    let failures = 0;
    guard.queueNotice = async function (this: unknown, ...args: unknown[]) {
      if (failures === 0 && (args[1] as { kind?: string } | undefined)?.kind === 'slicing_alert') {
        failures++;
        throw new Error('transient: could not serialize access');
      }
      return original.apply(this, args);
    };
    try {
      for (let i = 0; i < 7; i++) {
        clock += 2_000;
        await pay(a, agent, i); // the 7th crosses 50,000; its alert transaction fails once
      }
    } finally {
      guard.queueNotice = original;
    }
    expect(failures).toBe(1);
    // Five more slices (12 × 7,900 = 94,800: no second multiple), then a minute on, so the backstop runs too.
    for (let i = 7; i < 12; i++) {
      clock += 2_000;
      await pay(a, agent, i);
    }
    clock += 61_000;
    await a.createRequest(agent, CreateRequestBody.parse({ action: 'send_report', args: { to: 'soc' }, confidence: 0.9, idempotencyKey: `flaky-${n++}` }));
    expect((await alertsOf('flaky-bot')).filter((x) => x.type === 'value_aggregation').length, 'the 55,300 crossing is recorded despite one failed attempt').toBeGreaterThan(0);
  });

  /*
   * FINDING 4 — severity: medium. Attack: pad every request's args just over 4 KB
   * (`ON_CREATE_MAX_ARGS_CHARS`). Per-create clustering/repetition is then skipped for the agent
   * entirely, and the only backstop is the full report, which runs on a create, at most once a
   * minute per process, and which the burst's own first create already used up. A burst done
   * inside a minute is therefore never caught on create; it is caught only if the agent creates
   * again ≥ 1 min later (if it stops — or waits out the hour — never: no timer runs the report).
   * Secure: a padded burst is caught on the create that completes it, like an unpadded one
   * (compare a bounded fingerprint of each payload — first N fields, long strings hashed — so
   * size never exempts a request).
   */
  it('FINDING 4: a burst padded past 4 KB is caught on the create that completes it', async () => {
    clock += 10 * 60_000;
    const agent = await keyFor('pad-bot');
    const pad = 'x'.repeat(4_100);
    for (let i = 0; i < 10; i++) {
      clock += 2_000;
      await (i % 2 ? b : a).createRequest(agent, CreateRequestBody.parse({ action: 'delete_file', args: { bucket: 'prod-exports', prefix: '2026/11/', key: `part-${i}`, pad }, confidence: 0.9, idempotencyKey: `pad-${n++}` }));
    }
    // Time passes; the agent makes no further request. Other agents keep the servers busy.
    clock += 5 * 60_000;
    const other = await keyFor('someone-else');
    await a.createRequest(other, CreateRequestBody.parse({ action: 'send_report', args: { to: 'soc' }, confidence: 0.9, idempotencyKey: `pad-${n++}` }));
    await b.createRequest(other, CreateRequestBody.parse({ action: 'send_report', args: { to: 'ops' }, confidence: 0.9, idempotencyKey: `pad-${n++}` }));
    expect((await alertsOf('pad-bot')).filter((x) => x.type === 'temporal_clustering').length, 'the padded burst of 10 is recorded').toBeGreaterThan(0);
  });
});

/**
 * The `/slicing` report uses the create path's value rule (issue 12, finding 7): the running
 * total of values under each of the policy's own thresholds (`valueAtLeast`), read from the
 * slices every create stored — not the old fixed 10,000 band of `detectValueAggregation`. Both
 * databases, over HTTP, with the value only in args, recipients, memos and spellings varied.
 */
import { CreateRequestBody } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const POLICY = `
agents:
  payments-bot: { onSlicing: alert }
rules:
  - { name: large-value, enabled: false }
  - { name: very-large-value, enabled: false }
  - name: big-payment
    when: { action: [pay_vendor], valueAtLeast: 50000 }
    then: { approvals: 2 }
  - name: payments-reviewed
    when: { action: [pay_vendor] }
    then: { review: true }
`;

describe.each(ENGINES)('the /slicing report agrees with the create path ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let clock = Date.UTC(2026, 0, 5, 9, 0, 0);
  let adminToken = '';

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const keyFor = async (agent: string) => (await call(adminToken, 'POST', '/v1/keys', { agent })).json.key as string;
  const slicingAlerts = async (agent: string) =>
    (await engine.listAudit((await engine.authenticate(adminToken))!, { type: 'slicing_alert', limit: 1000 })).map((e) => e.data as any).filter((d) => d.agent === agent);

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    await engine.activatePolicy(POLICY, 'test');
    adminToken = (await engine.bootstrap())!.adminToken;
    app = createApp({ engine, log: () => {} });
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('7 × 7,900 against the policy\'s 50,000: the create crossing it is alerted, and the report names the same threshold and request', async () => {
    const key = await keyFor('payments-bot');
    const spellings = ['pay_vendor', 'payVendor', 'Pay-Vendor', 'PAY_VENDOR'];
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      clock += 60_000 + i * 7_000;
      const r = await call(key, 'POST', '/v1/requests', CreateRequestBody.parse({ action: spellings[i % 4], args: { amount: 7_900, to: `acct-${i * 37}`, memo: `invoice ${1000 + i}` }, confidence: 0.9 }));
      expect(r.status).toBe(201);
      ids.push(r.json.id);
      // Nothing before the crossing (6 × 7,900 = 47,400 < 50,000).
      if (i < 6) expect(await slicingAlerts('payments-bot')).toEqual([]);
    }
    const onCreate = await slicingAlerts('payments-bot');
    expect(onCreate).toHaveLength(1);
    expect(onCreate[0].alerts[0].requestIds).toEqual([ids[6]]);
    const report = (await call(adminToken, 'GET', '/v1/agents/payments-bot/slicing?windowMinutes=60')).json;
    const value = report.alerts.filter((a: any) => a.type === 'value_aggregation');
    expect(value).toHaveLength(1);
    expect(value[0].evidence).toMatchObject({ threshold: 50000, multiple: 1, sum: 55300, count: 7 });
    expect(value[0].evidence.requestIds).toEqual(ids);
    expect(report.attackDetected).toBe(true);
  });

  it('values just under 10,000 raise nothing when the policy has no threshold there (the old fixed band did); crossing 50,000 does', async () => {
    const key = await keyFor('band-bot');
    const send = async (i: number) => {
      clock += 90_000;
      const r = await call(key, 'POST', '/v1/requests', CreateRequestBody.parse({ action: 'pay_vendor', args: { amount: 9_900, to: `acct-${i}` }, confidence: 0.9, context: { value: 9_900 } }));
      expect(r.status).toBe(201);
      return r.json.id as string;
    };
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await send(i));
    // 5 × 9,900 = 49,500: under the policy's only threshold.
    const report = (await call(adminToken, 'GET', '/v1/agents/band-bot/slicing?windowMinutes=60')).json;
    expect(report.alerts.filter((a: any) => a.type === 'value_aggregation')).toEqual([]);
    // The 6th takes it to 59,400: the policy's threshold, not 10,000, is the line, on create and in the report.
    ids.push(await send(5));
    const more = (await call(adminToken, 'GET', '/v1/agents/band-bot/slicing?windowMinutes=60')).json;
    const value = more.alerts.filter((a: any) => a.type === 'value_aggregation');
    expect(value.map((a: any) => a.evidence.threshold)).toEqual([50000]);
    expect(value[0].evidence.requestIds).toEqual(ids);
  });
});

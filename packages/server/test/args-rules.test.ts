/**
 * The policy's argument rules (`actions.<name>.args`) over HTTP: an agent's args that break them
 * are refused with every problem named and nothing created; so is a reviewer's modification that
 * breaks them, and the request stays pending.
 */
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { openTestEngine, type TestEngine } from './support/engine.ts';

const POLICY = DEFAULT_POLICY_YAML.replace(
  '  isolate_host:        { weight: 0.7,  reversible: true,  category: containment }',
  '  isolate_host:        { weight: 0.7,  reversible: true,  category: containment, strictArgs: true, args: { host: { type: string, required: true, pattern: "^[a-z0-9-]+$" }, minutes: { type: integer, minimum: 1, maximum: 1440 } } }',
);

describe('argument rules', () => {
  let database: TestDatabase;
  let t: TestEngine;
  let app: ReturnType<typeof createApp>;
  let agentKey = '';
  let reviewer = '';

  beforeAll(async () => {
    expect(POLICY).not.toBe(DEFAULT_POLICY_YAML); // the rule line was found and replaced
    database = sqliteDatabase();
    t = await openTestEngine(database.url, POLICY);
    app = createApp({ engine: t.engine, log: () => {} });
    agentKey = (await t.engine.createAgentKey(t.admin, 'rules-bot')).key;
    reviewer = (await t.engine.createOperator(t.admin, { name: 'rhea', roles: ['lead'] })).token;
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: res.status, json: (await res.json()) as any };
  };
  const count = async () => ((await call(reviewer, 'GET', '/v1/requests?limit=500')).json.items as unknown[]).length;

  it('refuses an agent\'s args that break the rules, naming each problem, and creates nothing', async () => {
    const before = await count();
    const bad = await call(agentKey, 'POST', '/v1/requests', { action: 'isolate_host', args: { host: 'WS 042', minutes: 0, force: true }, confidence: 0.8 });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('VALIDATION_FAILED');
    expect(bad.json.error.details).toMatchObject({ field: 'args', errors: ['host: does not match ^[a-z0-9-]+$', 'minutes: must be at least 1', expect.stringMatching(/^force: not an argument of isolate_host/)] });
    const alt = await call(agentKey, 'POST', '/v1/requests', {
      action: 'block_ip',
      args: { ip: '192.0.2.1' },
      alternatives: [{ name: 'isolate instead', action: 'isolate_host', args: { minutes: 5 } }],
    });
    expect(alt.status).toBe(400);
    expect(alt.json.error.details).toMatchObject({ field: 'alternatives[0].args', errors: ['host: required by the policy for isolate_host'] });
    expect(await count()).toBe(before);
  });

  it('refuses a modification that breaks the rules (the request stays pending), and accepts one that fits', async () => {
    const created = await call(agentKey, 'POST', '/v1/requests', { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.8, riskLevel: 'high' });
    expect(created.status).toBe(201);
    expect(created.json.status).toBe('pending');
    const bad = await call(reviewer, 'POST', `/v1/requests/${created.json.id}/reviews`, { verdict: 'approve', args: { host: 'ws-042', minutes: 99999 } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.details.errors).toEqual(['minutes: must be at most 1440']);
    expect((await call(reviewer, 'GET', `/v1/requests/${created.json.id}`)).json.status).toBe('pending');
    const good = await call(reviewer, 'POST', `/v1/requests/${created.json.id}/reviews`, { verdict: 'approve', args: { host: 'ws-042', minutes: 60 } });
    expect(good.status).toBe(200);
    expect(good.json.decision).toMatchObject({ outcome: 'approved', args: { host: 'ws-042', minutes: 60 }, modified: true });
  });
});

/**
 * Red-team review of Teams decisions (issue 18, branch itsm). Each test is a defect found in
 * review and fails until it is fixed; see the report for severity.
 *
 * 1. Channel: the token is checked against the activity's own `channelId` (the key must endorse
 *    it), but the channel is never required to be `msteams`. Bot Framework keys endorse many
 *    channels (Microsoft's list webchat, directline, …; this stand-in's key endorses msteams and
 *    webchat), and on Web Chat / Direct Line the *client* writes `from` — its id and any
 *    `aadObjectId` it likes. An Azure Bot has Web Chat on by default: whoever holds the Web Chat
 *    or Direct Line secret can post an invoke that the Bot Connector signs, naming alice's
 *    aadObjectId, and it approves as alice.
 * 2. Cost of refusals (also: no single flight — concurrent unknown-kid tokens each refetch): while the OpenID metadata cannot be read, nothing is cached, so every
 *    unauthenticated request with any RS256-looking token makes an outbound fetch (up to 5 s each)
 *    — a flood of junk tokens is a flood of fetches to login.botframework.com.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { botFrameworkIssuer, type BotIssuer } from './support/itsm-standins.ts';

const APP_ID = '2e0b7a4c-4f8e-4b57-9d6a-0c4a8f1e5b21';
const SERVICE_URL = 'https://smba.trafficmanager.net/emea/';
const WEBCHAT_SERVICE_URL = 'https://webchat.botframework.com/';
const ALICE_AAD = '6b1f9a3e-2d4c-4e8a-9f0b-1c2d3e4f5a6b';
const ENV = { COUNTERSIGN_TEAMS_WEBHOOK_URL: 'http://127.0.0.1:9/webhookb2/incoming' };
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: 1e9, perDay: 1e9 }, cooldown: { ...DEFAULT_COOLDOWN, threshold: 1e9 } };

describe('review: Teams decisions (itsm)', () => {
  let database: TestDatabase;
  let engine: Engine;
  let channels: ChannelRegistry;
  let issuer: BotIssuer;
  let server: ServerType;
  let base: string;
  let admin: Principal;
  let agent: Principal;
  let n = 0;
  let seq = 0;
  let offset = 0;

  const create = async () => (await engine.createRequest(agent, CreateRequestBody.parse({ action: 'send_alert', args: { to: `r${n}` }, confidence: 0.9, idempotencyKey: `rt${n++}` }))).request;
  const invokeBody = (requestId: string, over: Record<string, unknown>) => ({
    type: 'invoke',
    name: 'adaptiveCard/action',
    id: `rv:${++seq}-${Date.now()}`,
    channelId: 'msteams',
    serviceUrl: SERVICE_URL,
    from: { id: '29:1alice-teams-id', aadObjectId: ALICE_AAD, name: 'Alice' },
    recipient: { id: `28:${APP_ID}`, name: 'Countersign' },
    conversation: { id: '19:abc@thread.tacv2' },
    value: { action: { type: 'Action.Execute', verb: 'approve', data: { requestId } }, trigger: 'manual' },
    ...over,
  });
  const post = async (url: string, token: string, body: unknown) => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as any };
  };

  beforeAll(async () => {
    issuer = await botFrameworkIssuer();
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS, now: () => Date.now() + offset });
    engine.addPolicyCheck(channelPolicyCheck(ENV));
    await engine.activatePolicy(
      `
channels:
  teams: { appId: "${APP_ID}", openIdMetadataUrl: "${issuer.metadataUrl}", users: { "${ALICE_AAD}": alice } }
rules:
  - name: alerts-reviewed
    when: { action: [send_alert] }
    then: { review: true }
`,
      'test',
    );
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
    await engine.createOperator(admin, { name: 'alice', roles: ['lead'] });
    channels = new ChannelRegistry(engine, ENV);
    const app = createApp({ engine, channels, log: () => {}, reviewBase: 'https://cs.example.com' });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await channels.close();
    await engine.close();
    await database.drop();
    await issuer.close();
  });

  it('control: the same invoke from msteams approves (so the refusal below is about the channel)', async () => {
    const request = await create();
    const res = await post(`${base}/v1/integrations/teams/actions`, await issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL }), invokeBody(request.id, {}));
    expect(res.json.statusCode).toBe(200);
    expect((await engine.getRequest(admin, request.id)).status).toBe('approved');
  });

  it('an invoke from Web Chat, whose client writes `from` (here alice\'s aadObjectId), decides nothing', async () => {
    const request = await create();
    const token = await issuer.token({ aud: APP_ID, serviceUrl: WEBCHAT_SERVICE_URL });
    const forged = invokeBody(request.id, { channelId: 'webchat', serviceUrl: WEBCHAT_SERVICE_URL, from: { id: 'dl_attacker-picked-id', aadObjectId: ALICE_AAD, name: 'Alice' }, conversation: { id: 'DL1xYz' } });
    const res = await post(`${base}/v1/integrations/teams/actions`, token, forged);
    expect(res.json.statusCode ?? res.status).not.toBe(200);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.reviews).toEqual([]);
  });

  it('while the OpenID metadata is down, a flood of junk tokens does not make one outbound fetch per request', async () => {
    // A fresh app: no keys cached yet; the metadata endpoint answers 503.
    const app = createApp({ engine, channels, log: () => {} });
    const request = await create();
    issuer.breakWith(503);
    try {
      const before = issuer.fetches;
      const junk = `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'whatever' })).toString('base64url')}.${Buffer.from('{}').toString('base64url')}.AAAA`;
      for (let i = 0; i < 20; i++) {
        const res = await app.request('/v1/integrations/teams/actions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${junk}` }, body: JSON.stringify(invokeBody(request.id, {})) });
        expect(res.status).toBe(401); // fails closed (this holds)
      }
      const made = issuer.fetches - before;
      expect(made).toBeLessThanOrEqual(2);
    } finally {
      issuer.breakWith(0);
    }
    expect((await engine.getRequest(admin, request.id)).status).toBe('pending');
  });

  it('a burst of concurrent tokens naming unknown key ids refetches the keys once, not once per request', async () => {
    const app = createApp({ engine, channels, log: () => {} });
    const request = await create();
    // Warm this app's key cache with one good invoke (metadata + JWKS).
    const warm = await app.request('/v1/integrations/teams/actions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${await issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL })}` }, body: JSON.stringify(invokeBody(request.id, { value: { action: { type: 'Action.Execute', verb: 'reject', data: { requestId: request.id } } } })) });
    expect(((await warm.json()) as any).statusCode).toBe(200);
    offset += 61_000; // past the one-minute unknown-kid refetch guard
    const before = issuer.fetches;
    const junk = (i: number) => `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: `junk-${i}` })).toString('base64url')}.${Buffer.from('{}').toString('base64url')}.AAAA`;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => app.request('/v1/integrations/teams/actions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${junk(i)}` }, body: JSON.stringify(invokeBody(request.id, {})) })),
    );
    expect(answers.every((r) => r.status === 401)).toBe(true);
    expect(issuer.fetches - before).toBeLessThanOrEqual(2);
  });
});

/**
 * Decisions from Teams (issue 18): an Adaptive Card `Action.Execute` invoke, sent over real HTTP
 * to the server with a Bot Framework bearer token signed by a key from a local stand-in's OpenID
 * metadata and JWKS. A good token from a mapped user votes through the gate and is answered with
 * the refreshed card; every other token is refused (401) and changes nothing — wrong key, a key
 * that does not endorse the channel, wrong issuer or audience, expired, not yet valid, another
 * serviceUrl, keys that cannot be read — and so are replays, unmapped users and oversized bodies.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN, renderNotification } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { adaptiveCard } from '../src/channels/teams.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { botConnector, botFrameworkIssuer, type BotConnector, type BotIssuer } from './support/itsm-standins.ts';
import { Notifier } from '../src/channels/notifier.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const APP_ID = '2e0b7a4c-4f8e-4b57-9d6a-0c4a8f1e5b21';
const SERVICE_URL = 'https://smba.trafficmanager.net/emea/';
const ALICE_AAD = '6b1f9a3e-2d4c-4e8a-9f0b-1c2d3e4f5a6b';
const ENV = { COUNTERSIGN_TEAMS_WEBHOOK_URL: 'http://127.0.0.1:9/webhookb2/incoming' };
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: 1e9, perDay: 1e9 }, cooldown: { ...DEFAULT_COOLDOWN, threshold: 1e9 } };

describe('Teams Action.Execute decisions', () => {
  let database: TestDatabase;
  let engine: Engine;
  let channels: ChannelRegistry;
  let issuer: BotIssuer;
  let server: ServerType;
  let base: string;
  let admin: Principal;
  let agent: Principal;
  let n = 0;
  let activitySeq = 0;

  const policy = (metadataUrl: string) => `
channels:
  teams: { appId: "${APP_ID}", openIdMetadataUrl: "${metadataUrl}", users: { "${ALICE_AAD}": alice, "29:1unmapped-op": ghost } }
rules:
  - name: alerts-reviewed
    when: { action: [send_alert] }
    then: { review: true }
  - name: critical-delete
    when: { action: [delete_data] }
    then: { riskAtLeast: critical }
`;
  const activity = (requestId: string, verb: string, over: Record<string, unknown> = {}) => ({
    type: 'invoke',
    name: 'adaptiveCard/action',
    id: `f:${++activitySeq}-${Date.now()}`,
    channelId: 'msteams',
    serviceUrl: SERVICE_URL,
    from: { id: '29:1alice-teams-id', aadObjectId: ALICE_AAD, name: 'Alice' },
    recipient: { id: `28:${APP_ID}`, name: 'Countersign' },
    conversation: { id: '19:abc@thread.tacv2' },
    value: { action: { type: 'Action.Execute', verb, data: { requestId } }, trigger: 'manual' },
    ...over,
  });
  const invoke = async (body: unknown, token: string | null, raw?: string) => {
    const res = await fetch(`${base}/v1/integrations/teams/actions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
      body: raw ?? JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const good = () => issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL });
  const create = async (body: Record<string, unknown>) => (await engine.createRequest(agent, CreateRequestBody.parse({ confidence: 0.9, ...body, idempotencyKey: `t${n++}` }))).request;
  const unchanged = async (id: string) => {
    const after = await engine.getRequest(admin, id);
    expect(after.status).toBe('pending');
    expect(after.reviews).toEqual([]);
  };

  beforeAll(async () => {
    issuer = await botFrameworkIssuer();
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS });
    engine.addPolicyCheck(channelPolicyCheck(ENV));
    await engine.activatePolicy(policy(issuer.metadataUrl), 'test');
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

  it('the card carries Action.Execute for each choice when the channel has a bot', async () => {
    const request = await create({ action: 'send_alert', args: { to: 'soc' }, alternatives: [{ name: 'page', action: 'page_oncall', args: {} }] });
    const card = adaptiveCard(renderNotification(request, 'requested', { reviewBase: 'https://cs.example.com', now: Date.now() }), { execute: true });
    const execute = card.actions.filter((a) => a.type === 'Action.Execute') as Array<{ verb: string; data: { requestId: string } }>;
    expect(execute.map((a) => a.verb)).toEqual(['approve', 'alternative:page', 'reject']);
    expect(execute.every((a) => a.data.requestId === request.id)).toBe(true);
  });

  it('a verified invoke from a mapped user approves through the gate and answers with the refreshed card', async () => {
    const request = await create({ action: 'send_alert', args: { to: 'soc' } });
    const res = await invoke(activity(request.id, 'approve'), await good());
    expect(res.status).toBe(200);
    expect(res.json.statusCode).toBe(200);
    expect(res.json.type).toBe('application/vnd.microsoft.card.adaptive');
    expect(res.json.value.type).toBe('AdaptiveCard');
    expect(JSON.stringify(res.json.value.body)).toContain('approved by alice');
    expect(res.json.value.actions.filter((a: { type: string }) => a.type === 'Action.Execute')).toEqual([]);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('approved');
    expect(after.reviews).toMatchObject([{ reviewer: { name: 'alice' }, verdict: 'approve', reason: `via Teams (user ${ALICE_AAD})` }]);
    const trail = await engine.listAudit(admin, { limit: 1000 });
    const reviewed = JSON.stringify(trail).split('},{').filter((e) => e.includes(request.id) && e.includes('"reviewed"'));
    expect(reviewed.join()).toContain(`via Teams (user ${ALICE_AAD})`);
  });

  it('reject from the card rejects, with the channel in the reason', async () => {
    const request = await create({ action: 'send_alert', args: { to: 'ops' } });
    const res = await invoke(activity(request.id, 'reject'), await good());
    expect(res.json.statusCode).toBe(200);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('rejected');
    expect(after.reviews[0]!.reason).toBe(`rejected in Teams; via Teams (user ${ALICE_AAD})`);
  });

  it.each([
    ['no token', async () => null, 'no Bot Framework bearer token'],
    ['a key the JWKS does not list', async () => issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL }, { key: 'other' }), 'a key the OpenID metadata does not list'],
    ['a key that does not endorse msteams', async () => issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL }, { key: 'unendorsed' }), 'does not endorse channel "msteams"'],
    ['another issuer', async () => issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL }, { iss: 'https://sts.windows.net/evil/' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['another audience (another bot)', async () => issuer.token({ aud: '00000000-0000-0000-0000-000000000000', serviceUrl: SERVICE_URL }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['expired beyond the 5-minute skew', async () => issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL }, { expSeconds: -400 }), 'ERR_JWT_EXPIRED'],
    ['not valid yet beyond the skew', async () => issuer.token({ aud: APP_ID, serviceUrl: SERVICE_URL }, { nbfSeconds: 600 }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['another serviceUrl claim', async () => issuer.token({ aud: APP_ID, serviceUrl: 'https://evil.example/' }), 'serviceUrl'],
    ['a token whose signature was altered', async () => { const t = await good(); return `${t.slice(0, -4)}${t.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`; }, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
  ])('refuses %s: 401, nothing changes', async (_what, token, why) => {
    const request = await create({ action: 'send_alert', args: { to: `x${n}` } });
    const res = await invoke(activity(request.id, 'approve'), await token());
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('BAD_SIGNATURE');
    expect(res.json.error.message).toContain(why);
    await unchanged(request.id);
  });

  it('refuses a replayed activity (the same invoke twice)', async () => {
    const request = await create({ action: 'send_alert', args: { to: 'replay' } });
    const once = activity(request.id, 'reject');
    const token = await good();
    expect((await invoke(once, token)).json.statusCode).toBe(200);
    const again = await invoke(once, token);
    expect(again.status).toBe(401);
    expect(again.json.error.message).toContain('replay');
  });

  it('with channels.teams.tenants set, an invoke from another tenant (or naming none) decides nothing; from a listed tenant it decides', async () => {
    const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
    await engine.activatePolicy(policy(issuer.metadataUrl).replace('users: {', `tenants: ["${TENANT.toUpperCase()}"], users: {`), 'test');
    try {
      const request = await create({ action: 'send_alert', args: { to: 'tenants' } });
      const other = await invoke(activity(request.id, 'approve', { channelData: { tenant: { id: '00000000-1111-2222-3333-444444444444' } } }), await good());
      expect(other).toMatchObject({ status: 401, json: { error: { code: 'BAD_SIGNATURE' } } });
      expect(other.json.error.message).toContain('tenant');
      expect((await invoke(activity(request.id, 'approve'), await good())).status).toBe(401);
      await unchanged(request.id);
      const listed = await invoke(activity(request.id, 'approve', { channelData: { tenant: { id: TENANT } } }), await good());
      expect(listed.json.statusCode).toBe(200);
      expect((await engine.getRequest(admin, request.id)).status).toBe('approved');
    } finally {
      await engine.activatePolicy(policy(issuer.metadataUrl), 'test');
    }
  });

  it('an unmapped Teams user, or one mapped to an operator who does not exist, decides nothing', async () => {
    const request = await create({ action: 'send_alert', args: { to: 'unmapped' } });
    const stranger = await invoke(activity(request.id, 'approve', { from: { id: '29:1stranger', aadObjectId: '99999999-9999-4999-8999-999999999999' } }), await good());
    expect(stranger.status).toBe(200);
    expect(stranger.json).toMatchObject({ statusCode: 403, type: 'application/vnd.microsoft.error', value: { code: 'FORBIDDEN' } });
    const ghost = await invoke(activity(request.id, 'approve', { from: { id: '29:1unmapped-op' } }), await good());
    expect(ghost.json).toMatchObject({ statusCode: 403, value: { code: 'FORBIDDEN' } });
    await unchanged(request.id);
  });

  it('a critical request needs its match code, which a card button cannot give', async () => {
    const request = await create({ action: 'delete_data', args: { path: '/srv/customers' } });
    expect(request.assessment.riskLevel).toBe('critical');
    const res = await invoke(activity(request.id, 'approve'), await good());
    expect(['MATCH_CODE_INVALID', 'MFA_REQUIRED']).toContain(res.json.value.code);
    expect(res.json.type).toBe('application/vnd.microsoft.error');
    await unchanged(request.id);
  });

  it('refuses a body over 64 KiB before reading it all (413)', async () => {
    const request = await create({ action: 'send_alert', args: { to: 'big' } });
    const res = await invoke(null, await good(), JSON.stringify({ ...activity(request.id, 'approve'), padding: 'x'.repeat(70 * 1024) }));
    expect(res.status).toBe(413);
    await unchanged(request.id);
  });

  it('fails closed when the signing keys cannot be read', async () => {
    // A fresh app has no cached keys; the stand-in now answers 503 for the metadata.
    issuer.breakWith(503);
    try {
      const app = createApp({ engine, channels, log: () => {} });
      const request = await create({ action: 'send_alert', args: { to: 'keys-down' } });
      const res = await app.request('/v1/integrations/teams/actions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${await good()}` }, body: JSON.stringify(activity(request.id, 'approve')) });
      expect(res.status).toBe(401);
      expect(((await res.json()) as any).error.message).toContain('could not be read');
      await unchanged(request.id);
    } finally {
      issuer.breakWith(0);
    }
  });
});

/**
 * The whole loop through the bot: the card is posted into the conversation through the Bot
 * Connector (token by client credentials), its Action.Execute comes back as an invoke and
 * decides through the gate, and the decided card replaces the posted one (PUT).
 */
describe('Teams through the Bot Connector, end to end', () => {
  let database: TestDatabase;
  let engine: Engine;
  let channels: ChannelRegistry;
  let scheduler: Scheduler;
  let issuer: BotIssuer;
  let connector: BotConnector;
  let admin: Principal;
  let agent: Principal;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    issuer = await botFrameworkIssuer();
    connector = await botConnector(APP_ID, 'bot-app-password');
    const env = { COUNTERSIGN_TEAMS_APP_PASSWORD: 'bot-app-password' };
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS });
    engine.addPolicyCheck(channelPolicyCheck(env));
    await engine.activatePolicy(
      `
escalation:
  levels: [{ role: lead, after: sla, notify: [teams] }]
channels:
  teams:
    appId: "${APP_ID}"
    openIdMetadataUrl: "${issuer.metadataUrl}"
    tokenUrl: "${connector.tokenUrl}"
    conversation: { serviceUrl: "${connector.serviceUrl}", id: "19:soc-approvals@thread.tacv2" }
    users: { "${ALICE_AAD}": alice }
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
    channels = new ChannelRegistry(engine, env);
    scheduler = new Scheduler(engine, { intervalMs: 20, deliver: new Notifier(engine, channels, { reviewBase: 'https://cs.example.com' }).deliver, onError: (e) => console.error(e) });
    scheduler.start();
    app = createApp({ engine, channels, log: () => {}, reviewBase: 'https://cs.example.com' });
  });
  afterAll(async () => {
    await scheduler.stop();
    await channels.close();
    await engine.close();
    await database.drop();
    await issuer.close();
    await connector.close();
  });

  it('posts the card as the bot, decides from its Action.Execute, and replaces it with the decided card', async () => {
    const { request } = await engine.createRequest(agent, CreateRequestBody.parse({ action: 'send_alert', args: { to: 'soc' }, confidence: 0.9 }));
    const posted = await until('card posted', () => connector.activities.find((a) => JSON.stringify(a.card).includes(request.id)));
    expect(posted.conversationId).toBe('19:soc-approvals@thread.tacv2');
    expect(connector.tokensIssued).toBe(1);
    const approve = (posted.card['actions'] as Array<Record<string, any>>).find((a) => a.type === 'Action.Execute' && a.verb === 'approve')!;
    const token = await issuer.token({ aud: APP_ID, serviceUrl: connector.serviceUrl });
    const res = await app.request('/v1/integrations/teams/actions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({
        type: 'invoke',
        name: 'adaptiveCard/action',
        id: `f:e2e-${Date.now()}`,
        channelId: 'msteams',
        serviceUrl: connector.serviceUrl,
        from: { id: '29:1alice', aadObjectId: ALICE_AAD },
        conversation: { id: posted.conversationId },
        replyToId: posted.id,
        value: { action: { type: 'Action.Execute', verb: approve.verb, data: approve.data }, trigger: 'manual' },
      }),
    });
    const answer = (await res.json()) as any;
    expect(answer).toMatchObject({ statusCode: 200, type: 'application/vnd.microsoft.card.adaptive' });
    expect((await engine.getRequest(admin, request.id)).status).toBe('approved');
    const replaced = await until('card replaced', () => posted.updates[0]);
    expect(JSON.stringify(replaced)).toContain('approved by alice');
    expect((replaced['actions'] as Array<{ type: string }>).some((a) => a.type === 'Action.Execute')).toBe(false);
  });
});

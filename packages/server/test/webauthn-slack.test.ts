/**
 * A Slack button cannot make a WebAuthn assertion: where the level says `mfa: webauthn`, its
 * Approve is refused with MFA_REQUIRED naming the dashboard, and nothing changes; the same
 * operator approves it in the dashboard's way (an assertion bound to the request). Real signed
 * requests to the Slack actions route (issue 20). (Teams and ticket channels only notify here:
 * they have no approve path to refuse.)
 */
import { CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN, payloadKey } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { slackSignature } from '../src/channels/slack-actions.ts';
import { payloadHashOf } from '../src/engine/decisions.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { relyingPartyOf } from '../src/guard/webauthn.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';
import { SoftAuthenticator } from './support/soft-authenticator.ts';

const SIGNING = 'slack-signing-secret-for-webauthn-tests';
const ENV = { COUNTERSIGN_SLACK_BOT_TOKEN: 'xoxb-wa', COUNTERSIGN_SLACK_SIGNING_SECRET: SIGNING };
const POLICY = `
channels:
  slack: { channel: C0123456789, apiUrl: "http://127.0.0.1:9/api", users: { U0ALICE1: alice } }
levels:
  high: { sla: 15m, autoApprove: false, mfa: webauthn, approvals: 1 }
rules:
  - name: deploys-high
    when: { action: [deploy] }
    then: { riskAtLeast: high }
`;
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: 1e9, perDay: 1e9 }, cooldown: { ...DEFAULT_COOLDOWN, threshold: 1e9 } };

describe.each(ENGINES)('Slack and mfa: webauthn ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let channels: ChannelRegistry;
  let app: ReturnType<typeof createApp>;
  let admin: Principal;
  let agent: Principal;
  let alice: Principal;

  const click = async (requestId: string) => {
    const body = new URLSearchParams({
      payload: JSON.stringify({ type: 'block_actions', user: { id: 'U0ALICE1' }, actions: [{ type: 'button', action_id: 'approve', value: requestId, action_ts: String(Date.now() / 1000) }] }),
    }).toString();
    const ts = String(Math.floor(Date.now() / 1000));
    const res = await app.request('/v1/integrations/slack/actions', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': ts, 'x-slack-signature': slackSignature(SIGNING, ts, body) },
      body,
    });
    return { status: res.status, json: (await res.json()) as { error?: { code: string; message: string } } };
  };

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS, serverSecret: TEST_SERVER_SECRET });
    engine.addPolicyCheck(channelPolicyCheck(ENV));
    await engine.activatePolicy(POLICY, 'test');
    engine.guard.webauthn.useRelyingParty(relyingPartyOf('https://countersign.example.com'));
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
    alice = (await engine.authenticate((await engine.createOperator(admin, { name: 'alice', roles: ['lead'] })).token))!;
    channels = new ChannelRegistry(engine, ENV);
    app = createApp({ engine, channels, log: () => {} });
  });
  afterAll(async () => {
    await channels?.close();
    await engine?.close();
    await database?.drop();
  });

  it('the button is refused naming the dashboard; an assertion from the same operator approves', async () => {
    const key = new SoftAuthenticator({ origin: 'https://countersign.example.com', rpId: 'countersign.example.com' });
    const options = await engine.guard.webauthn.registrationOptions(alice);
    await engine.guard.webauthn.register(alice, key.register(options.challenge));
    const request = (await engine.createRequest(agent, CreateRequestBody.parse({ action: 'deploy', args: { service: 'billing' }, confidence: 0.9 }))).request;
    expect(request.assessment).toMatchObject({ riskLevel: 'high', webauthnRequired: true });
    const res = await click(request.id);
    expect(res.json.error?.code).toBe('MFA_REQUIRED');
    expect(res.json.error?.message).toMatch(/WebAuthn.*dashboard/);
    expect((await engine.getRequest(admin, request.id)).reviews).toHaveLength(0);
    const hash = payloadHashOf(payloadKey(request.action, request.args));
    const { challenge } = await engine.guard.webauthn.approvalChallenge(alice, request.id, { verdict: 'approve', payloadHash: hash });
    expect((await engine.review(alice, request.id, { verdict: 'approve', seenPayloadHash: hash, webauthn: key.assert(challenge) })).status).toBe('approved');
  });
});

/**
 * Slack decides through the one gate (issue 12): a Slack button is `engine.review` as the mapped
 * operator, so every check of the gate applies to it — a payload another reviewer changed is
 * refused (the card showed the agent's args), a blocked alternative can never be chosen, an
 * alternative needs its own approvals, and a critical request needs its match code, which a button
 * cannot give. Real signed requests to the HTTP route; nothing changes on a refusal.
 */
import { CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { slackSignature } from '../src/channels/slack-actions.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';

const SIGNING = 'slack-signing-secret-for-gate-tests';
const ENV = { COUNTERSIGN_SLACK_BOT_TOKEN: 'xoxb-gate', COUNTERSIGN_SLACK_SIGNING_SECRET: SIGNING };
const POLICY = `
channels:
  slack: { channel: C0123456789, apiUrl: "http://127.0.0.1:9/api", users: { U0ALICE1: alice } }
rules:
  - name: two-reviewers
    when: { action: [rotate_keys] }
    then: { approvals: 2 }
  - name: alerts-reviewed
    when: { action: [send_alert] }
    then: { review: true }
  - name: no-wipes
    when: { action: [wipe_disk] }
    then: { block: true }
  - name: critical-delete
    when: { action: [delete_data] }
    then: { riskAtLeast: critical }
`;
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: 1e9, perDay: 1e9 }, cooldown: { ...DEFAULT_COOLDOWN, threshold: 1e9 } };

describe('Slack buttons go through the gate', () => {
  let database: TestDatabase;
  let engine: Engine;
  let channels: ChannelRegistry;
  let app: ReturnType<typeof createApp>;
  let admin: Principal;
  let agent: Principal;
  let bob: Principal;
  let n = 0;

  const click = async (actionId: string, requestId: string) => {
    const body = new URLSearchParams({
      payload: JSON.stringify({ type: 'block_actions', user: { id: 'U0ALICE1' }, actions: [{ type: 'button', action_id: actionId, value: requestId, action_ts: String(Date.now() / 1000) }] }),
    }).toString();
    const ts = String(Math.floor(Date.now() / 1000));
    const res = await app.request('/v1/integrations/slack/actions', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': ts, 'x-slack-signature': slackSignature(SIGNING, ts, `${body}`) },
      body,
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const create = async (body: Record<string, unknown>) => (await engine.createRequest(agent, CreateRequestBody.parse({ confidence: 0.9, ...body, idempotencyKey: `s${n++}` }))).request;

  beforeAll(async () => {
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS });
    engine.addPolicyCheck(channelPolicyCheck(ENV));
    await engine.activatePolicy(POLICY, 'test');
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
    await engine.createOperator(admin, { name: 'alice', roles: ['lead'] });
    bob = (await engine.authenticate((await engine.createOperator(admin, { name: 'bob', roles: ['reviewer'] })).token))!;
    channels = new ChannelRegistry(engine, ENV);
    app = createApp({ engine, channels, log: () => {} });
  });
  afterAll(async () => {
    await channels.close();
    await engine.close();
    await database.drop();
  });

  it('finding 3 through Slack: after another reviewer modified the args, Approve on the card is refused', async () => {
    const request = await create({ action: 'rotate_keys', args: { scope: 'staging' } });
    await engine.review(bob, request.id, { verdict: 'approve', args: { scope: 'production' } });
    const res = await click('approve', request.id);
    expect(res.json.error?.code).toBe('PAYLOAD_CHANGED');
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.reviews.map((r) => r.reviewer.name)).toEqual(['bob']);
  });

  it('the card\'s Approve counts as one approval of the args it showed', async () => {
    const request = await create({ action: 'rotate_keys', args: { scope: 'qa' } });
    expect((await click('approve', request.id)).status).toBe(200);
    expect((await engine.getRequest(admin, request.id)).status).toBe('pending'); // two needed
    const done = await engine.review(bob, request.id, { verdict: 'approve' });
    expect(done.status).toBe('approved');
    expect(done.decision).toMatchObject({ action: 'rotate_keys', args: { scope: 'qa' } });
  });

  it('finding 1 through Slack: a blocked alternative is never chosen; an alternative needs its own approvals', async () => {
    const request = await create({
      action: 'send_alert',
      args: { to: 'soc' },
      alternatives: [
        { name: 'wipe', action: 'wipe_disk', args: { host: 'db-1' } },
        { name: 'rotate', action: 'rotate_keys', args: { scope: 'all' } },
      ],
    });
    const blocked = await click('alternative:wipe', request.id);
    expect(blocked).toMatchObject({ status: 403, json: { error: { code: 'BLOCKED_BY_POLICY' } } });
    expect((await engine.getRequest(admin, request.id)).status).toBe('pending');
    // rotate_keys needs two approvals on its own: one Slack click does not approve it.
    expect((await click('alternative:rotate', request.id)).status).toBe(200);
    const after = await engine.getRequest(admin, request.id);
    expect(after.status).toBe('pending');
    expect(after.decision ?? null).toBeNull();
  });

  it('a critical request needs its match code, which a button cannot give', async () => {
    const request = await create({ action: 'delete_data', args: { path: '/srv/customers' } });
    expect(request.assessment.riskLevel).toBe('critical');
    const res = await click('approve', request.id);
    expect(['MATCH_CODE_INVALID', 'MFA_REQUIRED']).toContain(res.json.error?.code);
    expect((await engine.getRequest(admin, request.id)).status).toBe('pending');
  });
});

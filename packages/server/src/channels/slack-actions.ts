/**
 * `POST /v1/integrations/slack/actions`: Slack's button clicks. Slack signs each call
 * (https://api.slack.com/authentication/verifying-requests-from-slack): `X-Slack-Signature` is
 * `v0=` + hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{raw body}` under the app's
 * signing secret. A call is refused (401 BAD_SIGNATURE, nothing changes) when the signature is
 * missing or wrong, the timestamp is more than 5 minutes away from now, or the same signature
 * was seen before (replay; remembered in the database, so every server process agrees).
 *
 * The clicking Slack user must be mapped to an operator (`channels.<slack>.users`); the vote
 * then goes through `engine.review` as that operator: same eligibility, same audit, same
 * `decided` notification (which updates the card).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { CountersignError, ReviewBody } from '@countersign/core';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Engine } from '../engine/engine.ts';
import type { Principal } from '../engine/principal.ts';
import type { ChannelRegistry } from './registry.ts';
import { type ApiEnv as Env } from '../http/routes/contract.ts';

export const SLACK_ACTIONS_PATH = '/v1/integrations/slack/actions';
export const SLACK_TOLERANCE_SECONDS = 5 * 60;
/** Slack's callbacks are small; the app's body limit (http/body-limit.ts) holds this path to it while the body streams. */
export const SLACK_MAX_BODY = 64 * 1024;
const MAX_BODY = SLACK_MAX_BODY;

export function slackSignature(secret: string, timestamp: string, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

interface BlockActions {
  type: string;
  user?: { id?: string; username?: string; name?: string };
  actions?: Array<{ action_id?: string; value?: string }>;
}


export function mountSlackActions(app: OpenAPIHono<Env>, engine: Engine, channels: ChannelRegistry): void {
  app.post(SLACK_ACTIONS_PATH, async (c) => {
    const length = Number(c.req.header('content-length') ?? 0);
    if (length > MAX_BODY) throw new CountersignError('BODY_TOO_LARGE', `a Slack action body is at most ${MAX_BODY} bytes`);
    const body = await c.req.text();
    if (body.length > MAX_BODY) throw new CountersignError('BODY_TOO_LARGE', `a Slack action body is at most ${MAX_BODY} bytes`);
    const slack = channels.slackConfigs().filter((s) => s.settings.signingSecret !== undefined);
    if (slack.length === 0) throw new CountersignError('NOT_FOUND', 'no Slack channel with a signing secret is configured');

    const timestamp = c.req.header('x-slack-request-timestamp') ?? '';
    const signature = c.req.header('x-slack-signature') ?? '';
    const now = Math.floor(engine.clock() / 1000);
    if (!/^\d{1,12}$/.test(timestamp) || Math.abs(now - Number(timestamp)) > SLACK_TOLERANCE_SECONDS) {
      throw new CountersignError('BAD_SIGNATURE', 'the Slack request timestamp is missing or more than 5 minutes from now');
    }
    const config = slack.find((s) => sameText(slackSignature(s.settings.signingSecret as string, timestamp, body), signature));
    if (!config) throw new CountersignError('BAD_SIGNATURE', 'the Slack signature does not verify');
    if (!(await engine.claimNonce('slack', signature, 2 * SLACK_TOLERANCE_SECONDS * 1000))) {
      throw new CountersignError('BAD_SIGNATURE', 'this Slack request was already received (replay)');
    }

    let payload: BlockActions;
    try {
      payload = JSON.parse(new URLSearchParams(body).get('payload') ?? '') as BlockActions;
    } catch {
      throw new CountersignError('BAD_JSON', 'the Slack payload is not JSON');
    }
    if (payload?.type !== 'block_actions') return c.json({ ok: true, ignored: payload?.type ?? null }, 200);
    const action = payload.actions?.[0];
    const id = action?.value ?? '';
    if (!/^req_[0-9a-z]{26}$/.test(id)) throw new CountersignError('BAD_ID', 'the Slack action does not name a request');
    const actionId = action?.action_id ?? '';
    if (actionId === 'open') return c.json({ ok: true }, 200);

    const slackUser = payload.user?.id ?? '';
    const operatorName = config.settings.users[slackUser];
    if (operatorName === undefined) {
      throw new CountersignError('FORBIDDEN', `Slack user ${slackUser || '(unknown)'} is not mapped to a Countersign operator (channels.${config.name}.users)`);
    }
    // The same operator checks as a login: a removed, disabled or database-edited operator does not act through Slack either.
    const principal: Principal | undefined = await engine.credentials.operatorPrincipal(operatorName);
    if (!principal) throw new CountersignError('FORBIDDEN', `Slack user ${slackUser} maps to operator "${operatorName}", who does not exist, is disabled or removed, or whose record does not verify`);

    const via = `via Slack (user ${slackUser})`;
    // The card shows the request as the agent asked (its args): an approval click approves what
    // it showed, so a payload changed since (another reviewer's modification) is refused by the
    // gate with PAYLOAD_CHANGED instead of being approved unseen.
    const shown = await engine.requestById(id);
    const seen = shown ? { seenPayloadHash: engine.trail.payloadHash(shown.action, shown.args) } : {};
    const review =
      actionId === 'approve'
        ? { verdict: 'approve', reason: via, ...seen }
        : actionId === 'reject'
          ? { verdict: 'reject', reason: `rejected in Slack; ${via}` }
          : actionId.startsWith('alternative:')
            ? { verdict: 'approve', alternative: actionId.slice('alternative:'.length), reason: via, ...seen }
            : undefined;
    if (!review) throw new CountersignError('VALIDATION_FAILED', `unknown Slack action "${actionId.slice(0, 100)}"`);
    const parsed = ReviewBody.safeParse(review);
    if (!parsed.success) throw new CountersignError('VALIDATION_FAILED', `the Slack action is not a valid review: ${parsed.error.issues[0]?.message ?? ''}`);
    const request = await engine.review(principal, id, parsed.data);
    return c.json({ ok: true, requestId: request.id, status: request.status }, 200);
  });
}

/**
 * Webhook: the notification as JSON, signed per the Standard Webhooks spec
 * (https://www.standardwebhooks.com): `webhook-id` (the delivery id, the same on every retry, so
 * receivers can drop duplicates), `webhook-timestamp` (Unix seconds) and `webhook-signature`
 * (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the `whsec_` secret). Any 2xx is
 * delivered; 408, 429 and 5xx are retried.
 *
 * Body: `{ type: "countersign.request.<event>", timestamp, data: Notification & { facts } }`
 * (`facts`: the computed facts as label → text, for receivers that just display them); agent
 * text is only under `data.agentSupplied` (JSON escapes it), with `data.agentSuppliedLabel`.
 */
import { createHmac } from 'node:crypto';
import { AGENT_SUPPLIED_LABEL } from '@countersign/core';
import type { WebhookConfig } from './config.ts';
import { facts } from './format.ts';
import { httpFailure, networkFailure, type Channel, type ChannelDelivery, type CheckpointDelivery, type GuardDelivery } from './types.ts';

export function signStandardWebhook(secret: string, id: string, timestampSeconds: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
}

export function webhookChannel(config: WebhookConfig, now: () => number = Date.now): Channel {
  const { url, secret } = config.settings;
  const post = async (id: string, type: string, data: unknown, signal: AbortSignal) => {
    const timestamp = Math.floor(now() / 1000);
    const body = JSON.stringify({ type, timestamp: new Date(timestamp * 1000).toISOString(), data });
    return postSigned(id, timestamp, body, signal);
  };
  return {
    name: config.name,
    type: 'webhook',
    async send(delivery: ChannelDelivery, signal: AbortSignal) {
      const n = delivery.notification;
      return post(delivery.id, `countersign.request.${n.event}`, { ...n, facts: Object.fromEntries(facts(n)), agentSuppliedLabel: AGENT_SUPPLIED_LABEL }, signal);
    },
    /** `countersign.guard.<kind>`, data: the GuardNotice; alert descriptions only under `data.agentSupplied`. */
    async sendGuard(delivery: GuardDelivery, signal: AbortSignal) {
      const n = delivery.notice;
      return post(delivery.id, `countersign.guard.${n.kind}`, { ...n, agentSuppliedLabel: AGENT_SUPPLIED_LABEL }, signal);
    },
    /** `countersign.audit.checkpoint`, data: `{checkpoint, note}` (the C2SP signed note); no agent text. */
    async sendCheckpoint(delivery: CheckpointDelivery, signal: AbortSignal) {
      return post(delivery.id, 'countersign.audit.checkpoint', delivery.data, signal);
    },
  };

  async function postSigned(id: string, timestamp: number, body: string, signal: AbortSignal) {
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'countersign-webhook/0.1.0',
          'webhook-id': id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signStandardWebhook(secret, id, timestamp, body),
        },
        body,
        signal,
        redirect: 'manual',
      });
    } catch (err) {
      throw networkFailure(`webhook ${config.name}`, err);
    }
    const text = await res.text().catch(() => '');
    if (res.status < 200 || res.status >= 300) throw httpFailure(`webhook ${config.name}`, res.status, text);
    return { status: res.status };
  }
}

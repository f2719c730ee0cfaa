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
import { httpFailure, networkFailure, type Channel, type ChannelDelivery } from './types.ts';

export function signStandardWebhook(secret: string, id: string, timestampSeconds: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
}

export function webhookChannel(config: WebhookConfig, now: () => number = Date.now): Channel {
  const { url, secret } = config.settings;
  return {
    name: config.name,
    type: 'webhook',
    async send(delivery: ChannelDelivery, signal: AbortSignal) {
      const n = delivery.notification;
      const timestamp = Math.floor(now() / 1000);
      const body = JSON.stringify({
        type: `countersign.request.${n.event}`,
        timestamp: new Date(timestamp * 1000).toISOString(),
        data: { ...n, facts: Object.fromEntries(facts(n)), agentSuppliedLabel: AGENT_SUPPLIED_LABEL },
      });
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'countersign-webhook/0.1.0',
            'webhook-id': delivery.id,
            'webhook-timestamp': String(timestamp),
            'webhook-signature': signStandardWebhook(secret, delivery.id, timestamp, body),
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
    },
  };
}

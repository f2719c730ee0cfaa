/**
 * Slack: a Block Kit card posted with @slack/web-api (its base URL is configurable, so tests
 * point the real client at a local stand-in). Buttons carry the request id; clicks come back to
 * `POST /v1/integrations/slack/actions` (slack-actions.ts). When the request is decided, the
 * `decided` delivery updates every card posted about it ("Approved by … at …", no buttons).
 *
 * Agent text is shown in a `plain_text` section under the agent-supplied label: Slack renders
 * plain_text literally (no links, mentions or formatting), so nothing the agent writes can become
 * a link or an @channel. Slack mrkdwn has no escape for `*`, `_`, `~`, `` ` ``, `:emoji:` or bare
 * URLs, so anything that may carry text from outside Countersign (a cancelling agent's reason, a
 * reassignment reason, fact values, alternative names on buttons) is plain_text too; mrkdwn is
 * left only for fixed labels.
 */
import { ErrorCode, WebClient, type Block, type KnownBlock } from '@slack/web-api';
import { AGENT_SUPPLIED_LABEL, clip, type GuardNotice, type Notification } from '@countersign/core';
import type { SlackConfig } from './config.ts';
import { actionLabel, agentFacts, decisionText, escapeSlack, facts, guardAgentFacts, guardFacts, oneLine, stripInvisible } from './format.ts';
import { DeliveryError, type Channel, type ChannelDelivery, type GuardDelivery } from './types.ts';

/** What a posted card is remembered by, to update it later. */
export interface SlackMessageRef {
  channel: string;
  ts: string;
}

/** A `plain_text` object: shown as written, never parsed for formatting, links, mentions or emoji. */
const plain = (text: string) => ({ type: 'plain_text' as const, text, emoji: false });

/** Label/value facts as `plain_text` fields (`Agent: soc-bot`), the label on one line. */
const factFields = (pairs: Array<[string, string]>) => pairs.map(([k, v]) => plain(clip(`${oneLine(k)}: ${stripInvisible(v)}`, 1900)));

export function slackBlocks(n: Notification): Array<KnownBlock | Block> {
  const decided = decisionText(n);
  const blocks: Array<KnownBlock | Block> = [
    { type: 'header', text: { type: 'plain_text', text: clip(oneLine(n.title), 150), emoji: false } },
  ];
  if (n.detail) blocks.push({ type: 'context', elements: [plain(clip(oneLine(n.detail), 2000))] });
  if (decided) blocks.push({ type: 'section', text: plain(clip(`Decided: ${oneLine(decided)}`, 2900)) });
  blocks.push({ type: 'section', fields: factFields(facts(n)) });
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `:warning: *${AGENT_SUPPLIED_LABEL}* (shown as plain text)` }] });
  blocks.push({
    type: 'section',
    text: { type: 'plain_text', text: clip(agentFacts(n).map(([k, v]) => `${k}: ${stripInvisible(v)}`).join('\n'), 2900), emoji: false },
  });
  const buttons = n.actions.slice(0, 23).map((a) => ({
    type: 'button' as const,
    action_id: clip(a.id, 255),
    text: plain(clip(oneLine(actionLabel(a)), 75)),
    value: n.requestId,
    ...(a.style === 'default' ? {} : { style: a.style }),
    ...(a.id === 'reject'
      ? { confirm: { title: { type: 'plain_text' as const, text: 'Reject?' }, text: { type: 'plain_text' as const, text: 'The agent will be told it was rejected.' }, confirm: { type: 'plain_text' as const, text: 'Reject' }, deny: { type: 'plain_text' as const, text: 'Cancel' } } }
      : {}),
  }));
  blocks.push({
    type: 'actions',
    block_id: `countersign:${n.requestId}`,
    elements: [...buttons, { type: 'button', action_id: 'open', text: { type: 'plain_text', text: 'Open in Countersign', emoji: false }, url: n.reviewUrl }],
  });
  return blocks;
}

/** A guard notice: facts in escaped mrkdwn, alert descriptions (agent-influenced) as plain_text under the label; no buttons. */
export function slackGuardBlocks(n: GuardNotice): Array<KnownBlock | Block> {
  const blocks: Array<KnownBlock | Block> = [
    { type: 'header', text: { type: 'plain_text', text: clip(oneLine(n.title), 150), emoji: false } },
    { type: 'section', fields: factFields(guardFacts(n)) },
  ];
  if (n.reason !== null) blocks.push({ type: 'section', text: plain(clip(`Reason: ${stripInvisible(n.reason)}`, 2900)) });
  const alerts = guardAgentFacts(n);
  if (alerts.length > 0) {
    blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `:warning: *${AGENT_SUPPLIED_LABEL}* (shown as plain text)` }] });
    blocks.push({ type: 'section', text: { type: 'plain_text', text: clip(alerts.map(([k, v]) => `${k}: ${stripInvisible(v)}`).join('\n'), 2900), emoji: false } });
  }
  blocks.push({ type: 'actions', elements: [{ type: 'button', action_id: 'open', text: { type: 'plain_text', text: 'Open in Countersign', emoji: false }, url: n.url }] });
  return blocks;
}

function failure(name: string, err: unknown): DeliveryError {
  const e = err as { code?: string; data?: { error?: string }; statusCode?: number; message?: string };
  const what = `slack ${name}`;
  switch (e.code) {
    case ErrorCode.PlatformError: {
      const why = e.data?.error ?? 'error';
      // Slack's own transient errors are worth another try; bad auth or a wrong channel is not.
      return new DeliveryError(`${what}: ${why}`, ['ratelimited', 'internal_error', 'fatal_error', 'service_unavailable', 'request_timeout'].includes(why));
    }
    case ErrorCode.HTTPError:
      return new DeliveryError(`${what}: HTTP ${e.statusCode}`, (e.statusCode ?? 500) >= 500 || e.statusCode === 429);
    case ErrorCode.RateLimitedError:
      return new DeliveryError(`${what}: rate limited`, true);
    default:
      return new DeliveryError(`${what}: ${e.message ?? String(err)}`, true);
  }
}

export function slackChannel(config: SlackConfig): Channel {
  const { token, channel, apiUrl } = config.settings;
  const client = new WebClient(token, {
    ...(apiUrl ? { slackApiUrl: apiUrl.endsWith('/') ? apiUrl : `${apiUrl}/` } : {}),
    // Retries are the scheduler's (durable, with backoff); the client must not sit on a call for minutes.
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: config.timeoutMs,
    allowAbsoluteUrls: false,
  });
  return {
    name: config.name,
    type: 'slack',
    async send(delivery: ChannelDelivery) {
      const n = delivery.notification;
      const blocks = slackBlocks(n);
      // The notification text and the fallback for clients without blocks, which Slack reads as mrkdwn: names only, escaped.
      const text = clip(escapeSlack(oneLine(`${n.title} (${n.agent})`)), 300);
      try {
        const earlier = delivery.previous.filter((p): p is SlackMessageRef => typeof (p as SlackMessageRef)?.ts === 'string');
        if (n.event === 'decided' && earlier.length > 0) {
          for (const ref of earlier) await client.chat.update({ channel: ref.channel, ts: ref.ts, text, blocks });
          return { updated: earlier.map((r) => r.ts) };
        }
        const posted = await client.chat.postMessage({ channel, text, blocks, unfurl_links: false, unfurl_media: false });
        return { channel: posted.channel ?? channel, ts: posted.ts } satisfies Partial<SlackMessageRef>;
      } catch (err) {
        throw failure(config.name, err);
      }
    },
    async sendGuard(delivery: GuardDelivery) {
      const n = delivery.notice;
      try {
        const posted = await client.chat.postMessage({ channel, text: clip(escapeSlack(oneLine(n.title)), 300), blocks: slackGuardBlocks(n), unfurl_links: false, unfurl_media: false });
        return { channel: posted.channel ?? channel, ts: posted.ts };
      } catch (err) {
        throw failure(config.name, err);
      }
    },
  };
}

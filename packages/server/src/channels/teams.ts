/**
 * Microsoft Teams: an Adaptive Card (v1.4) posted to an incoming webhook URL (a secret, from
 * the environment), or, with `appId` and `conversation`, by the bot through the Bot Connector
 * (botConnector below). Without a bot, buttons are `Action.OpenUrl` to the dashboard's review
 * page: a link never decides by itself; with one they are `Action.Execute` (teams-actions.ts). Agent text sits in a
 * container labelled as agent-supplied, markdown-escaped (TextBlocks render markdown). Guard
 * notices (`sendGuard`) are the same kind of card without decision buttons; their reasons
 * (operators' free text) are markdown-escaped too.
 */
import { AGENT_SUPPLIED_LABEL, type GuardNotice, type Notification } from '@countersign/core';
import type { TeamsConfig } from './config.ts';
import { actionLabel, agentFacts, decisionText, escapeMarkdown, facts, guardAgentFacts, guardFacts, oneLine } from './format.ts';
import { httpFailure, networkFailure, type Channel, type ChannelDelivery, type GuardDelivery } from './types.ts';

const SCHEMA = 'http://adaptivecards.io/schemas/adaptive-card.json';

const titleBlock = (title: string) => ({ type: 'TextBlock', text: escapeMarkdown(oneLine(title)), weight: 'Bolder', size: 'Medium', wrap: true });

/** Escaped facts; `escapeTitles` for labels that are not fixed system text. */
const factSet = (pairs: Array<[string, string]>, escapeTitles = false) => ({
  type: 'FactSet',
  facts: pairs.map(([title, value]) => ({ title: escapeTitles ? escapeMarkdown(oneLine(title)) : oneLine(title), value: escapeMarkdown(value) })),
});

/** Agent text: a warning container under the label, every title and value markdown-escaped. */
const agentContainer = (pairs: Array<[string, string]>) => ({
  type: 'Container',
  style: 'warning',
  items: [{ type: 'TextBlock', text: escapeMarkdown(`⚠ ${AGENT_SUPPLIED_LABEL}`), weight: 'Bolder', wrap: true }, factSet(pairs, true)],
});

/**
 * `execute`: the channel has a bot (`appId`), so each choice is also an `Action.Execute` whose
 * invoke comes back to `POST /v1/integrations/teams/actions` (teams-actions.ts) and goes through
 * the gate; the `Action.OpenUrl` links stay for the dashboard.
 */
export function adaptiveCard(n: Notification, options: { execute?: boolean } = {}) {
  const decided = decisionText(n);
  const execute = options.execute
    ? n.actions.map((a) => ({ type: 'Action.Execute', title: oneLine(actionLabel(a)).slice(0, 80), verb: a.id.slice(0, 120), data: { requestId: n.requestId } }))
    : [];
  return {
    $schema: SCHEMA,
    type: 'AdaptiveCard',
    version: '1.4',
    body: [
      titleBlock(n.title),
      ...(n.detail ? [{ type: 'TextBlock', text: escapeMarkdown(oneLine(n.detail)), wrap: true, isSubtle: true }] : []),
      ...(decided ? [{ type: 'TextBlock', text: escapeMarkdown(oneLine(decided)), wrap: true, weight: 'Bolder' }] : []),
      factSet(facts(n)),
      agentContainer(agentFacts(n)),
    ],
    actions: [
      ...execute,
      ...(execute.length > 0 ? [] : n.actions.map((a) => ({ type: 'Action.OpenUrl', title: oneLine(actionLabel(a)).slice(0, 80), url: a.url }))),
      { type: 'Action.OpenUrl', title: 'Open in Countersign', url: n.reviewUrl },
    ],
  };
}

/** A guard notice: facts, the reason as an escaped TextBlock, slicing alerts in the agent-supplied container; one link, to the dashboard. */
export function adaptiveGuardCard(n: GuardNotice) {
  const alerts = guardAgentFacts(n);
  return {
    $schema: SCHEMA,
    type: 'AdaptiveCard',
    version: '1.4',
    body: [
      titleBlock(n.title),
      factSet(guardFacts(n)),
      ...(n.reason !== null ? [{ type: 'TextBlock', text: escapeMarkdown(`Reason: ${n.reason}`), wrap: true }] : []),
      ...(alerts.length > 0 ? [agentContainer(alerts)] : []),
    ],
    actions: [{ type: 'Action.OpenUrl', title: 'Open in Countersign', url: n.url }],
  };
}

type Card = ReturnType<typeof adaptiveCard> | ReturnType<typeof adaptiveGuardCard>;

const message = (card: Card, id?: string) => ({ type: 'message', ...(id ? { id } : {}), attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content: card }] });

/** What a card posted through the Bot Connector is remembered by, to update it on the decision. */
export interface TeamsActivityRef {
  conversationId: string;
  activityId: string;
}

/**
 * The Bot Connector (Bot Framework REST API): a token by client credentials (`POST tokenUrl`,
 * `grant_type=client_credentials`, scope `https://api.botframework.com/.default`; kept until 5
 * minutes before it expires), then `POST {serviceUrl}v3/conversations/{id}/activities` to post a
 * card (the answer's `id` is remembered) and `PUT …/activities/{activityId}` to replace it with
 * the decided card. Cards posted this way come from the bot, so their Action.Execute invokes
 * reach its messaging endpoint (teams-actions.ts).
 */
function botConnector(config: TeamsConfig) {
  const bot = config.settings.bot!;
  const what = `teams ${config.name}`;
  let token: { value: string; until: number } | undefined;
  const accessToken = async (signal: AbortSignal): Promise<string> => {
    if (token && Date.now() < token.until) return token.value;
    let res: Response;
    try {
      res = await fetch(bot.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: bot.appId, client_secret: bot.password, scope: 'https://api.botframework.com/.default' }).toString(),
        signal,
        redirect: 'manual',
      });
    } catch (err) {
      throw networkFailure(`${what} token`, err);
    }
    const text = await res.text().catch(() => '');
    if (res.status < 200 || res.status >= 300) throw httpFailure(`${what} token`, res.status, text);
    const body = JSON.parse(text) as { access_token?: unknown; expires_in?: unknown };
    if (typeof body.access_token !== 'string') throw httpFailure(`${what} token`, 502, 'no access_token');
    const seconds = typeof body.expires_in === 'number' ? body.expires_in : 3600;
    token = { value: body.access_token, until: Date.now() + Math.max(0, seconds - 300) * 1000 };
    return token.value;
  };
  const call = async (method: 'POST' | 'PUT', path: string, body: unknown, signal: AbortSignal): Promise<{ id?: unknown }> => {
    const bearer = await accessToken(signal);
    let res: Response;
    try {
      res = await fetch(`${bot.serviceUrl}${path}`, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` }, body: JSON.stringify(body), signal, redirect: 'manual' });
    } catch (err) {
      throw networkFailure(what, err);
    }
    const text = await res.text().catch(() => '');
    if (res.status === 401) token = undefined; // a revoked token: the next attempt asks for a new one
    if (res.status < 200 || res.status >= 300) throw httpFailure(what, res.status, text);
    try {
      return JSON.parse(text || '{}') as { id?: unknown };
    } catch {
      return {};
    }
  };
  const conversation = `v3/conversations/${encodeURIComponent(bot.conversationId)}/activities`;
  return {
    async post(card: Card, signal: AbortSignal): Promise<TeamsActivityRef> {
      const answer = await call('POST', conversation, message(card), signal);
      if (typeof answer.id !== 'string') throw httpFailure(what, 502, 'the posted activity has no id');
      return { conversationId: bot.conversationId, activityId: answer.id };
    },
    async update(ref: TeamsActivityRef, card: Card, signal: AbortSignal): Promise<void> {
      await call('PUT', `${conversation}/${encodeURIComponent(ref.activityId)}`, message(card, ref.activityId), signal);
    },
  };
}

export function teamsChannel(config: TeamsConfig): Channel {
  const execute = config.settings.appId !== undefined;
  if (config.settings.bot) {
    const connector = botConnector(config);
    return {
      name: config.name,
      type: 'teams',
      async send(delivery: ChannelDelivery, signal: AbortSignal) {
        const card = adaptiveCard(delivery.notification, { execute });
        const earlier = delivery.previous.filter((p): p is TeamsActivityRef => typeof (p as TeamsActivityRef)?.activityId === 'string');
        if (delivery.notification.event === 'decided' && earlier.length > 0) {
          for (const ref of earlier) await connector.update(ref, card, signal);
          return { updated: earlier.map((r) => r.activityId) };
        }
        return connector.post(card, signal);
      },
      sendGuard: (delivery: GuardDelivery, signal: AbortSignal) => connector.post(adaptiveGuardCard(delivery.notice), signal),
    };
  }
  const url = config.settings.url as string;
  const post = async (card: Card, signal: AbortSignal) => {
    const body = JSON.stringify(message(card));
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal, redirect: 'manual' });
    } catch (err) {
      throw networkFailure(`teams ${config.name}`, err);
    }
    const text = await res.text().catch(() => '');
    if (res.status < 200 || res.status >= 300) throw httpFailure(`teams ${config.name}`, res.status, text);
    return { status: res.status };
  };
  return {
    name: config.name,
    type: 'teams',
    send: (delivery: ChannelDelivery, signal: AbortSignal) => post(adaptiveCard(delivery.notification, { execute }), signal),
    sendGuard: (delivery: GuardDelivery, signal: AbortSignal) => post(adaptiveGuardCard(delivery.notice), signal),
  };
}

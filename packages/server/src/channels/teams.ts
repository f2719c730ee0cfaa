/**
 * Microsoft Teams: an Adaptive Card (v1.4) posted to an incoming webhook URL (a secret, from
 * the environment). Buttons are `Action.OpenUrl` to the dashboard's review page: Teams incoming
 * webhooks cannot call back, and a link never decides by itself. Agent text sits in a
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

export function teamsChannel(config: TeamsConfig): Channel {
  const post = async (card: ReturnType<typeof adaptiveCard> | ReturnType<typeof adaptiveGuardCard>, signal: AbortSignal) => {
    const body = JSON.stringify({ type: 'message', attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content: card }] });
    let res: Response;
    try {
      res = await fetch(config.settings.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal, redirect: 'manual' });
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
    send: (delivery: ChannelDelivery, signal: AbortSignal) => post(adaptiveCard(delivery.notification, { execute: config.settings.appId !== undefined }), signal),
    sendGuard: (delivery: GuardDelivery, signal: AbortSignal) => post(adaptiveGuardCard(delivery.notice), signal),
  };
}

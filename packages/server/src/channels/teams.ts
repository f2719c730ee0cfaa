/**
 * Microsoft Teams: an Adaptive Card (v1.4) posted to an incoming webhook URL (a secret, from
 * the environment). Buttons are `Action.OpenUrl` to the dashboard's review page: Teams incoming
 * webhooks cannot call back, and a link never decides by itself. Agent text sits in a
 * container labelled as agent-supplied, markdown-escaped (TextBlocks render markdown).
 */
import { AGENT_SUPPLIED_LABEL, type Notification } from '@countersign/core';
import type { TeamsConfig } from './config.ts';
import { actionLabel, agentFacts, decisionText, escapeMarkdown, facts, oneLine } from './format.ts';
import { httpFailure, networkFailure, type Channel, type ChannelDelivery } from './types.ts';

export function adaptiveCard(n: Notification) {
  const decided = decisionText(n);
  return {
    $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
    type: 'AdaptiveCard',
    version: '1.4',
    body: [
      { type: 'TextBlock', text: escapeMarkdown(oneLine(n.title)), weight: 'Bolder', size: 'Medium', wrap: true },
      ...(n.detail ? [{ type: 'TextBlock', text: escapeMarkdown(n.detail), wrap: true, isSubtle: true }] : []),
      ...(decided ? [{ type: 'TextBlock', text: escapeMarkdown(decided), wrap: true, weight: 'Bolder' }] : []),
      { type: 'FactSet', facts: facts(n).map(([title, value]) => ({ title, value: escapeMarkdown(value) })) },
      {
        type: 'Container',
        style: 'warning',
        items: [
          { type: 'TextBlock', text: escapeMarkdown(`⚠ ${AGENT_SUPPLIED_LABEL}`), weight: 'Bolder', wrap: true },
          { type: 'FactSet', facts: agentFacts(n).map(([title, value]) => ({ title: escapeMarkdown(title), value: escapeMarkdown(value) })) },
        ],
      },
    ],
    actions: [
      ...n.actions.map((a) => ({ type: 'Action.OpenUrl', title: actionLabel(a).slice(0, 80), url: a.url })),
      { type: 'Action.OpenUrl', title: 'Open in Countersign', url: n.reviewUrl },
    ],
  };
}

export function teamsChannel(config: TeamsConfig): Channel {
  return {
    name: config.name,
    type: 'teams',
    async send(delivery: ChannelDelivery, signal: AbortSignal) {
      const body = JSON.stringify({
        type: 'message',
        attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content: adaptiveCard(delivery.notification) }],
      });
      let res: Response;
      try {
        res = await fetch(config.settings.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal, redirect: 'manual' });
      } catch (err) {
        throw networkFailure(`teams ${config.name}`, err);
      }
      const text = await res.text().catch(() => '');
      if (res.status < 200 || res.status >= 300) throw httpFailure(`teams ${config.name}`, res.status, text);
      return { status: res.status };
    },
  };
}

/**
 * PagerDuty Events API v2: `trigger` while a request waits (again on each escalation: same
 * `dedup_key`, so PagerDuty updates one alert), `resolve` once it is decided. `dedup_key` is the
 * request id. The routing key is a secret from the environment. Agent text travels only in
 * `custom_details.agent_supplied` (JSON), never in the summary.
 */
import { AGENT_SUPPLIED_LABEL, type Notification } from '@countersign/core';
import type { PagerDutyConfig } from './config.ts';
import { actionLabel, agentFacts, decisionText, facts, oneLine } from './format.ts';
import { httpFailure, networkFailure, type Channel, type ChannelDelivery } from './types.ts';

const SEVERITY = { critical: 'critical', high: 'error', medium: 'warning', low: 'info' } as const;

export function pagerDutyEvent(n: Notification, routingKey: string, timestamp: string) {
  if (n.event === 'decided') return { routing_key: routingKey, event_action: 'resolve', dedup_key: n.requestId };
  return {
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key: n.requestId,
    payload: {
      summary: oneLine(`${n.title} — ${n.sla.role ? `level ${n.sla.level} (${n.sla.role})` : 'awaiting review'}`).slice(0, 1024),
      source: oneLine(n.agent).slice(0, 255),
      severity: SEVERITY[n.risk.level],
      timestamp,
      component: n.action,
      group: 'countersign',
      class: 'approval',
      custom_details: {
        request_id: n.requestId,
        ...Object.fromEntries(facts(n).map(([k, v]) => [k.toLowerCase().replace(/[^a-z]+/g, '_'), v])),
        ...(n.detail ? { detail: n.detail } : {}),
        ...(decisionText(n) ? { decision: decisionText(n) } : {}),
        agent_supplied_label: AGENT_SUPPLIED_LABEL,
        agent_supplied: Object.fromEntries(agentFacts(n)),
        actions: Object.fromEntries(n.actions.map((a) => [actionLabel(a), a.url])),
      },
    },
    client: 'Countersign',
    client_url: n.reviewUrl,
    links: [{ href: n.reviewUrl, text: 'Review in Countersign' }, ...n.actions.map((a) => ({ href: a.url, text: actionLabel(a).slice(0, 100) }))],
  };
}

export function pagerDutyChannel(config: PagerDutyConfig, now: () => number = Date.now): Channel {
  return {
    name: config.name,
    type: 'pagerduty',
    async send(delivery: ChannelDelivery, signal: AbortSignal) {
      const body = JSON.stringify(pagerDutyEvent(delivery.notification, config.settings.routingKey, new Date(now()).toISOString()));
      let res: Response;
      try {
        res = await fetch(config.settings.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal, redirect: 'manual' });
      } catch (err) {
        throw networkFailure(`pagerduty ${config.name}`, err);
      }
      const text = await res.text().catch(() => '');
      if (res.status !== 202 && (res.status < 200 || res.status >= 300)) throw httpFailure(`pagerduty ${config.name}`, res.status, text);
      let answer: { dedup_key?: string } = {};
      try {
        answer = JSON.parse(text) as { dedup_key?: string };
      } catch {
        // PagerDuty answers JSON; a proxy might not. The status already said it was accepted.
      }
      return { dedupKey: answer.dedup_key ?? delivery.notification.requestId };
    },
  };
}

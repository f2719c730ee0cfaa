/**
 * PagerDuty Events API v2: `trigger` while a request waits (again on each escalation: same
 * `dedup_key`, so PagerDuty updates one alert), `resolve` once it is decided. `dedup_key` is the
 * request id. The routing key is a secret from the environment. Agent text travels only in
 * `custom_details.agent_supplied` (JSON), never in the summary.
 *
 * Guard notices (`sendGuard`) are alerts of their own, one `dedup_key` per agent (or approver)
 * and kind, so repeats update one alert: a slicing alert triggers at `error`, a pause at
 * `warning`, a cool-down at `info`; a resume resolves the agent's pause alert. The summary is the
 * notice's title (names only); the reason and alert descriptions go in `custom_details`.
 */
import { AGENT_SUPPLIED_LABEL, type GuardNotice, type GuardNoticeKind, type Notification } from '@countersign/core';
import type { PagerDutyConfig } from './config.ts';
import { actionLabel, agentFacts, decisionText, facts, guardFacts, oneLine } from './format.ts';
import { httpFailure, networkFailure, type Channel, type ChannelDelivery, type GuardDelivery } from './types.ts';

const SEVERITY = { critical: 'critical', high: 'error', medium: 'warning', low: 'info' } as const;

/** Fact labels as custom_details keys: `Blast radius` → `blast_radius`. */
const detailKeys = (pairs: Array<[string, string]>) => Object.fromEntries(pairs.map(([k, v]) => [k.toLowerCase().replace(/[^a-z]+/g, '_'), v]));

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
        ...detailKeys(facts(n)),
        ...(n.detail ? { detail: n.detail } : {}),
        ...(decisionText(n) ? { decision: decisionText(n) } : {}),
        agent_supplied_label: AGENT_SUPPLIED_LABEL,
        agent_supplied: Object.fromEntries(agentFacts(n)),
        actions: Object.fromEntries(n.actions.map((a) => [oneLine(actionLabel(a)), a.url])),
      },
    },
    client: 'Countersign',
    client_url: n.reviewUrl,
    links: [{ href: n.reviewUrl, text: 'Review in Countersign' }, ...n.actions.map((a) => ({ href: a.url, text: oneLine(actionLabel(a)).slice(0, 100) }))],
  };
}

const GUARD_SEVERITY = { slicing_alert: 'error', agent_paused: 'warning', cooldown_started: 'info', mfa_locked: 'warning', audit_fork: 'critical' } as const satisfies Partial<Record<GuardNoticeKind, string>>;

/**
 * The alert a guard notice belongs to: one per agent (or approver) and kind. A resume shares its
 * pause's key, so it can resolve it.
 */
export function guardDedupKey(n: GuardNotice): string {
  const kind = n.kind === 'agent_resumed' ? 'agent_paused' : n.kind;
  const about = n.agent !== null ? `agent:${n.agent}` : `operator:${n.operator ?? '?'}`;
  return `countersign:guard:${kind}:${about}`.slice(0, 255);
}

export function pagerDutyGuardEvent(n: GuardNotice, routingKey: string, timestamp: string) {
  const dedupKey = guardDedupKey(n);
  if (n.kind === 'agent_resumed') return { routing_key: routingKey, event_action: 'resolve', dedup_key: dedupKey };
  return {
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key: dedupKey,
    payload: {
      summary: oneLine(n.title).slice(0, 1024),
      source: oneLine(n.agent ?? n.operator ?? 'countersign').slice(0, 255),
      severity: GUARD_SEVERITY[n.kind],
      timestamp,
      component: n.kind,
      group: 'countersign',
      class: 'guard',
      custom_details: {
        kind: n.kind,
        ...detailKeys(guardFacts(n)),
        ...(n.reason !== null ? { reason: n.reason } : {}),
        ...(n.agentSupplied.alerts.length > 0 ? { agent_supplied_label: AGENT_SUPPLIED_LABEL, agent_supplied: { alerts: n.agentSupplied.alerts } } : {}),
      },
    },
    client: 'Countersign',
    client_url: n.url,
    links: [{ href: n.url, text: 'Open in Countersign' }],
  };
}

export function pagerDutyChannel(config: PagerDutyConfig, now: () => number = Date.now): Channel {
  const enqueue = async (event: { dedup_key: string }, signal: AbortSignal) => {
    let res: Response;
    try {
      res = await fetch(config.settings.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(event), signal, redirect: 'manual' });
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
    return { dedupKey: answer.dedup_key ?? event.dedup_key };
  };
  const timestamp = () => new Date(now()).toISOString();
  return {
    name: config.name,
    type: 'pagerduty',
    send: (delivery: ChannelDelivery, signal: AbortSignal) => enqueue(pagerDutyEvent(delivery.notification, config.settings.routingKey, timestamp()), signal),
    sendGuard: (delivery: GuardDelivery, signal: AbortSignal) => enqueue(pagerDutyGuardEvent(delivery.notice, config.settings.routingKey, timestamp()), signal),
  };
}

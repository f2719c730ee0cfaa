/**
 * ServiceNow, over its Table API (https://docs.servicenow.com, "Table API"): one record per
 * request in `incident` or `change_request`.
 *
 * - `requested`: `POST /api/now/table/{table}` with `short_description`, `description`, urgency
 *   and impact from the risk level, and `correlation_id` = the request id. The answer's
 *   `result.sys_id` and `result.number` are what the delivery remembers (`{ticket}`); a retry
 *   first looks for a record with that correlation id (`GET …?sysparm_query=correlation_id=…`),
 *   so a lost answer does not open a second ticket.
 * - `escalated`, `reassigned`: `PATCH /api/now/table/{table}/{sys_id}` with a work note.
 * - `decided`: the same PATCH with the decision, who decided and the reason as a work note, and
 *   for a change request `approval: approved | rejected`.
 *
 * Authentication is basic (user and password) or an OAuth bearer token (`tokenEnv`). Agent text
 * goes only into `description` (plain text), under the agent-supplied label, each line boxed
 * (format.ts `boxedLines`); journal fields (work notes) carry only system text, with ServiceNow's
 * `[code]` markup defused wherever text could carry it.
 *
 * State changes come back through `POST /v1/integrations/servicenow/{channel}` (signed, see
 * tickets.ts) and by polling `sys_updated_on` (servicenow-poll.ts); by default they mirror only.
 */
import { AGENT_SUPPLIED_LABEL, clip, type Notification } from '@countersign/core';
import type { ServiceNowConfig, TicketAuth } from './config.ts';
import { actionLabel, agentFacts, boxedLines, decisionText, facts, oneLine, stripInvisible } from './format.ts';
import { DeliveryError, httpFailure, networkFailure, type Channel, type ChannelDelivery } from './types.ts';

export interface TicketRef {
  ticket: { system: 'servicenow' | 'jira'; id: string; key: string };
}

/** ServiceNow renders `[code]…[/code]` in journal fields as HTML: never let text open one. */
export function defuseServiceNow(text: string): string {
  return text.replace(/\[(\/?)code\]/gi, '[$1code\u200b]');
}

export function authHeader(auth: TicketAuth): string {
  return 'bearer' in auth ? `Bearer ${auth.bearer}` : `Basic ${Buffer.from(`${auth.basic.user}:${auth.basic.password}`).toString('base64')}`;
}

const URGENCY: Record<string, string> = { critical: '1', high: '2', medium: '2', low: '3' };

/**
 * What a ticket says, for both ticketing channels: system lines (facts, the event's detail, the
 * dashboard links for each choice, which decide nothing by themselves) and the agent's words
 * as label/value pairs for the caller to box.
 */
export function ticketContent(n: Notification): { system: string[]; links: Array<[string, string]>; agent: Array<[string, string]> } {
  const system = [`Countersign request ${n.requestId}: ${oneLine(n.action)}`, ...facts(n).map(([k, v]) => `${k}: ${oneLine(v)}`)];
  if (n.detail) system.push(oneLine(n.detail));
  const decided = decisionText(n, { agentReason: false });
  if (decided) system.push(`Decided: ${oneLine(decided)}`);
  const links: Array<[string, string]> = [...n.actions.map((a): [string, string] => [oneLine(actionLabel(a)), a.url]), ['Open in Countersign', n.reviewUrl]];
  return { system, links, agent: agentFacts(n) };
}

export function serviceNowDescription(n: Notification): string {
  const { system, links, agent } = ticketContent(n);
  const lines = [...system, '', 'Decide in Countersign:', ...links.map(([label, url]) => `${label}: ${url}`), '', `${AGENT_SUPPLIED_LABEL}:`, ...boxedLines(agent)];
  return defuseServiceNow(clip(lines.join('\n'), 30_000));
}

/** A work note: system text only (a cancelling agent's reason is left out: decisionText with agentReason false). */
export function serviceNowNote(n: Notification): string {
  const decided = decisionText(n, { agentReason: false });
  const text = decided ? `Countersign: ${decided}` : `Countersign: ${n.detail ?? n.event}`;
  return defuseServiceNow(clip(stripInvisible(oneLine(text)), 4000));
}

export function serviceNowChannel(config: ServiceNowConfig): Channel {
  const { instanceUrl, table, auth } = config.settings;
  const base = `${instanceUrl}/api/now/table/${table}`;
  const what = `servicenow ${config.name}`;
  const call = async (method: string, url: string, body: unknown, signal: AbortSignal): Promise<Record<string, unknown>> => {
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: authHeader(auth), accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal,
        redirect: 'manual',
      });
    } catch (err) {
      throw networkFailure(what, err);
    }
    const text = await res.text().catch(() => '');
    if (res.status < 200 || res.status >= 300) throw httpFailure(what, res.status, text);
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new DeliveryError(`${what}: the answer is not JSON`, true);
    }
  };
  const refOf = (result: unknown): TicketRef => {
    const r = result as { sys_id?: unknown; number?: unknown } | undefined;
    if (typeof r?.sys_id !== 'string' || !/^[0-9a-f]{32}$/.test(r.sys_id)) throw new DeliveryError(`${what}: the answer has no sys_id`, true);
    return { ticket: { system: 'servicenow', id: r.sys_id, key: typeof r.number === 'string' ? r.number : r.sys_id } };
  };
  return {
    name: config.name,
    type: 'servicenow',
    async send(delivery: ChannelDelivery, signal: AbortSignal) {
      const n = delivery.notification;
      const earlier = delivery.previous.find((p): p is TicketRef => (p as TicketRef)?.ticket?.system === 'servicenow');
      if (!earlier) {
        // The first notification this channel gets (at creation, or at the level that names it) opens the ticket.
        if (n.event === 'decided') return { skipped: 'no ticket was opened before the decision' };
        if (delivery.attempt > 1) {
          const found = await call('GET', `${base}?sysparm_query=${encodeURIComponent(`correlation_id=${n.requestId}`)}&sysparm_fields=sys_id,number&sysparm_limit=1`, undefined, signal);
          const first = (found['result'] as unknown[] | undefined)?.[0];
          if (first) return refOf(first);
        }
        const created = await call(
          'POST',
          base,
          {
            short_description: defuseServiceNow(clip(oneLine(`${n.title} (${n.agent})`), 160)),
            description: serviceNowDescription(n),
            correlation_id: n.requestId,
            correlation_display: 'Countersign',
            urgency: URGENCY[n.risk.level] ?? '3',
            impact: URGENCY[n.risk.level] ?? '3',
            ...(config.settings.assignmentGroup ? { assignment_group: config.settings.assignmentGroup } : {}),
          },
          signal,
        );
        return refOf(created['result']);
      }
      const patch: Record<string, string> = { work_notes: serviceNowNote(n) };
      if (n.event === 'decided' && table === 'change_request' && n.decision) {
        patch['approval'] = n.status === 'rejected' || n.status === 'expired' || n.status === 'cancelled' ? 'rejected' : 'approved';
      }
      await call('PATCH', `${base}/${earlier.ticket.id}`, patch, signal);
      return { updated: earlier.ticket.key, event: n.event };
    },
  };
}

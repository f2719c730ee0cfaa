/**
 * Jira Cloud, through jira.js (the Version3Client, pointed at the channel's `url`):
 *
 * - the first notification: `POST /rest/api/3/issue` in the channel's project, summary from the
 *   title, the description as an Atlassian Document (text nodes are shown literally: no markup
 *   in agent text is ever parsed), labels `countersign` and `countersign-<request id>`. The
 *   answer's `id` and `key` are what the delivery remembers.
 * - `escalated`, `reassigned`: a comment (`POST /rest/api/3/issue/{key}/comment`).
 * - `decided`: `GET /rest/api/3/issue/{key}/transitions`, then `POST` the transition named (or
 *   leading to the status named) by `transitions.approved` / `transitions.rejected`, with the
 *   decision, who decided and the reason as its comment. No such transition from the issue's
 *   status (someone already moved it, or the workflow lacks it): the decision is a comment.
 *
 * Authentication: an API token with its account's email (basic), or an OAuth 2.0 access token
 * (`tokenEnv`) sent as a bearer. The webhook back (status changes) is tickets.ts.
 */
import { AGENT_SUPPLIED_LABEL, clip, type Notification } from '@countersign/core';
import { HttpException, Version3Client } from 'jira.js';
import type { JiraConfig } from './config.ts';
import { decisionText, oneLine, stripInvisible } from './format.ts';
import { ticketContent, type TicketRef } from './servicenow.ts';
import { DeliveryError, type Channel, type ChannelDelivery } from './types.ts';

type Node = { type: string; content?: Node[]; text?: string; attrs?: Record<string, unknown>; marks?: Array<{ type: string; attrs?: Record<string, unknown> }> };

const text = (t: string): Node => ({ type: 'text', text: t.length > 0 ? t : ' ' });
const paragraph = (...nodes: Node[]): Node => ({ type: 'paragraph', content: nodes });
const strong = (t: string): Node => ({ type: 'text', text: t, marks: [{ type: 'strong' }] });

/**
 * An Atlassian Document: system lines as paragraphs, the dashboard links as link marks (our
 * URLs), and the agent's words in a code block under the label: a code block is shown
 * literally, so nothing the agent writes becomes a link, a mention or formatting.
 */
export function jiraDescription(n: Notification): Node {
  const { system, links, agent } = ticketContent(n);
  const lines = agent.map(([k, v]) => `${oneLine(k)}: ${stripInvisible(v)}`);
  return {
    type: 'doc',
    version: 1,
    content: [
      ...system.map((line) => paragraph(text(line))),
      paragraph(strong('Decide in Countersign')),
      ...links.map(([label, url]) => paragraph({ type: 'text', text: label, marks: [{ type: 'link', attrs: { href: url } }] } as Node)),
      paragraph(strong(`⚠ ${AGENT_SUPPLIED_LABEL}`)),
      { type: 'codeBlock', content: [text(clip(lines.join('\n'), 20_000))] },
    ],
  } as Node;
}

export function jiraNote(n: Notification): Node {
  const decided = decisionText(n, { agentReason: false });
  return { type: 'doc', version: 1, content: [paragraph(text(clip(oneLine(`Countersign: ${decided ?? n.detail ?? n.event}`), 4000)))] } as Node;
}

function failure(name: string, err: unknown): DeliveryError {
  const status = err instanceof HttpException ? err.status : (err as { status?: number })?.status;
  const message = err instanceof Error ? err.message : String(err);
  if (typeof status === 'number') {
    const retryable = status >= 500 || status === 408 || status === 425 || status === 429;
    return new DeliveryError(`jira ${name} answered HTTP ${status}: ${message.slice(0, 200)}`, retryable);
  }
  return new DeliveryError(`jira ${name}: ${message.slice(0, 200)}`, true);
}

export function jiraClient(config: JiraConfig): Version3Client {
  const { url, auth } = config.settings;
  const baseRequestConfig = { timeout: config.timeoutMs, maxRedirects: 0, ...('bearer' in auth ? { headers: { Authorization: `Bearer ${auth.bearer}` } } : {}) };
  return 'bearer' in auth
    ? new Version3Client({ host: url, baseRequestConfig })
    : new Version3Client({ host: url, authentication: { basic: { email: auth.basic.user, apiToken: auth.basic.password } }, baseRequestConfig });
}

export function jiraChannel(config: JiraConfig): Channel {
  const client = jiraClient(config);
  const { project, issueType, transitions } = config.settings;
  return {
    name: config.name,
    type: 'jira',
    async send(delivery: ChannelDelivery) {
      const n = delivery.notification;
      const earlier = delivery.previous.find((p): p is TicketRef => (p as TicketRef)?.ticket?.system === 'jira');
      try {
        if (!earlier) {
          if (n.event === 'decided') return { skipped: 'no issue was created before the decision' };
          const created = await client.issues.createIssue({
            fields: {
              project: { key: project },
              issuetype: { name: issueType },
              summary: clip(oneLine(`${n.title} (${n.agent})`), 250),
              description: jiraDescription(n) as never,
              labels: ['countersign', `countersign-${n.requestId}`],
            },
          });
          if (typeof created?.key !== 'string' || typeof created?.id !== 'string') throw new DeliveryError(`jira ${config.name}: the answer has no issue key`, true);
          return { ticket: { system: 'jira', id: created.id, key: created.key } } satisfies TicketRef;
        }
        const key = earlier.ticket.key;
        if (n.event !== 'decided') {
          await client.issueComments.addComment({ issueIdOrKey: key, comment: jiraNote(n) as never });
          return { commented: key, event: n.event };
        }
        const wanted = (n.status === 'rejected' || n.status === 'expired' || n.status === 'cancelled' ? transitions.rejected : transitions.approved).toLowerCase();
        const { transitions: available = [] } = await client.issues.getTransitions({ issueIdOrKey: key });
        const chosen = available.find((t) => t.name?.toLowerCase() === wanted) ?? available.find((t) => t.to?.name?.toLowerCase() === wanted);
        if (!chosen?.id) {
          // Already there (someone moved it, perhaps the decision came from the issue), or the
          // workflow has no such transition from here: the decision is still written back, as a comment.
          await client.issueComments.addComment({ issueIdOrKey: key, comment: jiraNote(n) as never });
          return { commented: key, transition: `none named "${wanted}" from the issue's status` };
        }
        await client.issues.doTransition({ issueIdOrKey: key, transition: { id: chosen.id }, update: { comment: [{ add: { body: jiraNote(n) } }] } as never });
        return { transitioned: key, to: chosen.to?.name ?? chosen.name ?? chosen.id };
      } catch (err) {
        if (err instanceof DeliveryError) throw err;
        throw failure(config.name, err);
      }
    },
  };
}

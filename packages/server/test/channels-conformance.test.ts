/**
 * One conformance suite, run against every channel (webhook, email, Slack, Teams, PagerDuty, ServiceNow, Jira),
 * each talking to a local stand-in of its service with the real client: the same rendered
 * notification must arrive complete (action, agent, risk level and score, confidence, blast
 * radius, ATT&CK ids with their names, evidence, related incidents, SLA, approve / each alternative / reject), with the agent's text
 * escaped for the format and visibly marked as agent-supplied; failures must be classified as
 * retryable or not; a decision must reach the channel (card updated, incident resolved, …).
 */
import { Webhook } from 'standardwebhooks';
import { renderNotification, CreateRequestBody, defaultPolicy, evaluate, EMPTY_HISTORY, type ApprovalRequest, type Notification } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveChannels } from '../src/channels/config.ts';
import { createChannel } from '../src/channels/registry.ts';
import { DeliveryError, type Channel, type ChannelType } from '../src/channels/types.ts';
import { pagerDutyEvents, slackApi, smtpInbox, teamsWebhook, webhookReceiver } from './support/channel-standins.ts';
import { jiraCloud, serviceNowTable } from './support/itsm-standins.ts';

const NOW = Date.now();
const HOSTILE = '<b>bold</b> <!channel> [click here](https://evil.example/approve) *urgent* \u202eevil';
const SECRET = `whsec_${Buffer.from('a-test-signing-key-of-32-bytes!!').toString('base64')}`;
const SLACK_TOKEN = 'xoxb-test-token';
const PD_KEY = 'R0123456789abcdef0123456789abcde';

function request(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const body = CreateRequestBody.parse({
    action: 'isolate_host',
    args: { host: 'ws-042', note: HOSTILE },
    confidence: 0.82,
    description: `EDR saw beaconing. ${HOSTILE}`,
    context: {
      blastRadius: { scope: 'host', count: 1 },
      attack: ['T1071.001', 'T1059'],
      evidence: [{ type: 'edr', summary: 'beacon every 60s', source: 'crowdstrike' }],
      relatedIncidents: ['INC-4242', `INC-9 ${HOSTILE}`],
    },
    alternatives: [{ name: 'quarantine <!here>', action: 'quarantine_file', args: { path: '/tmp/x' }, description: 'less drastic' }],
  });
  const assessment = evaluate({ ...body, agent: 'soc-bot' }, defaultPolicy(), EMPTY_HISTORY, new Date(NOW));
  return {
    id: 'req_01jabcdefghjkmnpqrstvwxyz0',
    agentId: 'agt_1',
    agentName: 'soc-bot',
    status: 'pending',
    action: body.action,
    args: body.args,
    description: body.description ?? null,
    confidence: 0.82,
    riskHint: null,
    context: body.context ?? {},
    alternatives: body.alternatives ?? [],
    approvers: [],
    idempotencyKey: null,
    assessment,
    policyVersion: 1,
    reviews: [],
    decision: null,
    execution: null,
    createdAt: new Date(NOW).toISOString(),
    updatedAt: new Date(NOW).toISOString(),
    expiresAt: null,
    escalation: { level: 2, levels: 3, role: 'manager', operators: [], groups: [], finalAuthority: false, dueAt: new Date(NOW + 600_000).toISOString(), extended: false, assignee: null, onFinalTimeout: 'reject' },
    ...over,
  };
}

const pending = renderNotification(request(), 'escalated', { reviewBase: 'https://cs.example.com', now: NOW, detail: 'No decision in time: escalated from level 1 to level 2 (manager).' });
const decided = renderNotification(
  request({
    status: 'approved',
    decision: { outcome: 'approved', decidedBy: 'reviewers', deciders: [{ type: 'operator', id: 'op_1', name: 'alice' }], reason: 'confirmed', at: new Date(NOW).toISOString(), action: 'isolate_host', args: {}, alternative: null, modified: false },
  }),
  'decided',
  { reviewBase: 'https://cs.example.com', now: NOW },
);

/** What one delivery looked like to a human (format markup undone) and to a machine. */
interface Capture {
  visible: string;
  /** Everything the format would interpret as markup (checked for agent text that escaped). */
  markup: string;
  actions: string[];
  raw: unknown;
}

interface Harness {
  settings: Record<string, unknown>;
  env: Record<string, string>;
  count(): number;
  capture(i: number): Capture;
  failRetryable(): void;
  /** Arrange for the next call to fail in a way retrying cannot fix. */
  failPermanently(): () => void;
  /** Checks specific to the format: what escaped, what stayed literal. */
  escaping(c: Capture): void;
  decidedReached(c: Capture, first: unknown): void;
  close(): Promise<void>;
}

const teamsUnescape = (s: string) => s.replace(/\\([\\`*_{}[\]()<>#+\-.!|~])/g, '$1');

const HARNESSES: Record<ChannelType, () => Promise<Harness>> = {
  servicenow: undefined as never,
  jira: undefined as never,
  async webhook() {
    const s = await webhookReceiver();
    const body = (i: number) => JSON.parse(s.received[i]!.body) as { type: string; data: Notification & { agentSuppliedLabel: string } };
    return {
      settings: { type: 'webhook', url: s.url },
      env: { COUNTERSIGN_WEBHOOK_SECRET: SECRET },
      count: () => s.received.length,
      capture(i) {
        const b = body(i);
        // Signed per Standard Webhooks: the reference library verifies it.
        const r = s.received[i]!;
        const headers = { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
        expect(new Webhook(SECRET).verify(r.body, headers)).toEqual(JSON.parse(r.body));
        return { visible: JSON.stringify(b.data), markup: '', actions: b.data.actions.map((a) => `${a.label}${a.alternative ? ` "${a.alternative}"` : ''}`), raw: b };
      },
      failRetryable: () => s.failNext(503),
      failPermanently: () => (s.failNext(410), () => {}),
      escaping(c) {
        const b = c.raw as ReturnType<typeof body>;
        expect(b.data.title).not.toContain('evil');
        expect(b.data.agentSupplied.description).toContain(HOSTILE); // JSON carries it verbatim, under agentSupplied
        expect(b.data.agentSuppliedLabel).toBe('Agent-supplied (unverified)');
      },
      decidedReached(c) {
        const b = c.raw as ReturnType<typeof body>;
        expect(b.type).toBe('countersign.request.decided');
        expect(b.data.decision).toMatchObject({ outcome: 'approved', by: 'alice' });
      },
      close: s.close,
    };
  },

  async email() {
    const s = await smtpInbox();
    return {
      settings: { type: 'email', from: 'countersign@example.com', to: ['leads@example.com', 'managers@example.com'] },
      env: { COUNTERSIGN_SMTP_URL: s.smtpUrl },
      count: () => s.received.length,
      capture(i) {
        const m = s.received[i]!;
        const html = String(m.html);
        const links = [...html.matchAll(/<a href="([^"]+)"[^>]*>([^<]*)<\/a>/g)].map((x) => ({ href: x[1]!.replaceAll('&amp;', '&'), text: x[2]! }));
        expect(m.to && !Array.isArray(m.to) ? m.to.text : '').toBe('leads@example.com, managers@example.com');
        const unhtml = (t: string) => t.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&amp;', '&');
        return { visible: `${m.subject}\n${m.text}`, markup: html, actions: links.filter((l) => l.href.includes('?choose=')).map((l) => unhtml(l.text)), raw: m };
      },
      failRetryable: () => s.failNext(451, 451),
      failPermanently: () => (s.failNext(550, 550), () => {}),
      escaping(c) {
        const m = c.raw as { html: string; text: string; messageId: string; headers: Map<string, unknown> };
        expect(c.markup).not.toContain('<b>bold</b>');
        expect(c.markup).toContain('&lt;b&gt;bold&lt;/b&gt;');
        expect(c.markup).not.toMatch(/href="https:\/\/evil/);
        expect(m.text).not.toContain('\u202e');
        // Every link opens the review page; none decides by itself.
        for (const href of [...c.markup.matchAll(/href="([^"]+)"/g)].map((x) => x[1]!)) expect(href.startsWith('https://cs.example.com/#/requests/')).toBe(true);
        expect(m.messageId).toMatch(/^<dlv_test_\d+@countersign>$/);
      },
      decidedReached(c) {
        expect(c.visible).toContain('Decision: approved by alice');
        expect(c.actions).toEqual([]);
      },
      close: s.close,
    };
  },

  async slack() {
    const s = await slackApi(SLACK_TOKEN);
    let badToken = false;
    const texts = (blocks: Array<Record<string, any>>) => {
      const out: Array<{ type: string; text: string }> = [];
      for (const b of blocks) {
        if (b.text) out.push(b.text);
        for (const f of b.fields ?? []) out.push(f);
        for (const e of b.elements ?? []) out.push(typeof e.text === 'string' ? e : e.text);
      }
      return out;
    };
    return {
      settings: { type: 'slack', channel: 'C0123456789', apiUrl: s.apiUrl },
      get env() {
        return { COUNTERSIGN_SLACK_BOT_TOKEN: badToken ? 'xoxb-revoked' : SLACK_TOKEN };
      },
      count: () => s.received.length,
      capture(i) {
        const call = s.received[i]!;
        const t = texts(call.blocks);
        const actions = call.blocks.filter((b) => b.type === 'actions').flatMap((b) => (b.elements as any[]).filter((e) => e.action_id !== 'open').map((e) => e.text.text as string));
        return {
          visible: t.map((x) => (x.type === 'mrkdwn' ? x.text.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&') : x.text)).join('\n'),
          markup: t.filter((x) => x.type === 'mrkdwn').map((x) => x.text).join('\n'),
          actions,
          raw: call,
        };
      },
      failRetryable: () => s.failNext(500),
      failPermanently() {
        badToken = true;
        return () => (badToken = false);
      },
      escaping(c) {
        expect(c.markup).not.toContain('<!channel>');
        expect(c.markup).not.toContain('<!here>');
        expect(c.markup).not.toContain('<b>');
        const call = c.raw as { blocks: Array<Record<string, any>> };
        const plain = call.blocks.filter((b) => b.text?.type === 'plain_text' && b.type === 'section').map((b) => b.text.text as string).join('\n');
        expect(plain).toContain('<!channel>'); // literal in plain_text: shown, never interpreted
        expect(JSON.stringify(call.blocks)).not.toContain('\u202e');
        const buttons = call.blocks.find((b) => b.type === 'actions')!.elements as Array<Record<string, any>>;
        expect(buttons.map((b) => b.action_id)).toEqual(['approve', 'alternative:quarantine <!here>', 'reject', 'open']);
        expect(buttons.slice(0, 3).every((b) => b.value === 'req_01jabcdefghjkmnpqrstvwxyz0')).toBe(true);
      },
      decidedReached(c, first) {
        const call = c.raw as { method: string; args: Record<string, unknown> };
        expect(call.method).toBe('chat.update');
        expect(call.args['ts']).toBe((first as { ts: string }).ts);
        expect(c.visible).toContain('approved by alice');
        expect(c.actions).toEqual([]);
      },
      close: s.close,
    };
  },

  async teams() {
    const s = await teamsWebhook();
    const collect = (card: Record<string, any>): string[] => {
      const out: string[] = [];
      const walk = (items: any[]) => {
        for (const it of items ?? []) {
          if (it.type === 'TextBlock') out.push(it.text);
          if (it.type === 'FactSet') for (const f of it.facts) out.push(`${f.title}: ${f.value}`);
          if (it.type === 'Container') walk(it.items);
        }
      };
      walk(card.body);
      return out;
    };
    return {
      settings: { type: 'teams' },
      env: { COUNTERSIGN_TEAMS_WEBHOOK_URL: s.url },
      count: () => s.received.length,
      capture(i) {
        const card = s.received[i]!.card;
        const markup = collect(card).join('\n');
        const actions = (card.actions as Array<{ title: string; url: string }>).filter((a) => a.url.includes('?choose=')).map((a) => a.title);
        return { visible: teamsUnescape(markup), markup, actions, raw: card };
      },
      failRetryable: () => s.failNext(502),
      failPermanently: () => (s.failNext(404), () => {}),
      escaping(c) {
        expect(c.markup).not.toContain('[click here](https://evil');
        expect(c.markup).toContain('\\[click here\\]\\(https');
        expect(c.markup).not.toContain('\u202e');
        const card = c.raw as { actions: Array<{ url: string }> };
        for (const a of card.actions) expect(a.url.startsWith('https://cs.example.com/#/requests/')).toBe(true);
      },
      decidedReached(c) {
        expect(c.visible).toContain('approved by alice');
        expect(c.actions).toEqual([]);
      },
      close: s.close,
    };
  },

  async pagerduty() {
    const s = await pagerDutyEvents();
    return {
      settings: { type: 'pagerduty', url: s.url },
      env: { COUNTERSIGN_PAGERDUTY_ROUTING_KEY: PD_KEY },
      count: () => s.received.length,
      capture(i) {
        const e = s.received[i]!;
        return { visible: JSON.stringify(e), markup: e.payload?.summary ?? '', actions: (e.links ?? []).slice(1).map((l: { text: string }) => l.text), raw: e };
      },
      failRetryable: () => s.failNext(500),
      failPermanently: () => (s.failNext(400), () => {}),
      escaping(c) {
        const e = c.raw as Record<string, any>;
        expect(e).toMatchObject({ routing_key: PD_KEY, event_action: 'trigger', dedup_key: 'req_01jabcdefghjkmnpqrstvwxyz0', payload: { severity: 'error', source: 'soc-bot' } });
        expect(e.payload.summary).not.toContain('evil');
        expect(e.payload.custom_details.agent_supplied.Description).toContain(HOSTILE);
        expect(e.payload.custom_details.agent_supplied_label).toBe('Agent-supplied (unverified)');
      },
      decidedReached(c) {
        expect(c.raw).toEqual({ routing_key: PD_KEY, event_action: 'resolve', dedup_key: 'req_01jabcdefghjkmnpqrstvwxyz0' });
      },
      close: s.close,
    };
  },
};


/** The links under "Decide in Countersign:" in a ticket's text, without the plain "Open" link. */
const ticketActions = (lines: string[]) => {
  const start = lines.indexOf('Decide in Countersign:');
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line === '') break;
    const label = line.slice(0, line.lastIndexOf(': https://'));
    if (label !== 'Open in Countersign') out.push(label);
  }
  return out;
};

HARNESSES.servicenow = async () => {
  const s = await serviceNowTable({ user: 'countersign.integration', password: 'sn-password' });
  const env: Record<string, string> = { COUNTERSIGN_SERVICENOW_USER: 'countersign.integration', COUNTERSIGN_SERVICENOW_PASSWORD: 'sn-password' };
  return {
    settings: { type: 'servicenow', instanceUrl: s.url },
    env,
    count: () => s.calls.length,
    capture(i) {
      const call = s.calls[i]!;
      if (call.method === 'PATCH') return { visible: String(call.body?.['work_notes']), markup: String(call.body?.['work_notes']), actions: [], raw: call };
      const description = String(call.body?.['description']);
      return { visible: `${call.body?.['short_description']}\n${description}`, markup: '', actions: ticketActions(description.split('\n')), raw: call };
    },
    failRetryable: () => s.failNext(503),
    failPermanently() {
      env['COUNTERSIGN_SERVICENOW_PASSWORD'] = 'wrong';
      return () => (env['COUNTERSIGN_SERVICENOW_PASSWORD'] = 'sn-password');
    },
    escaping(c) {
      const call = c.raw as { method: string; path: string; body: Record<string, string> };
      expect(call).toMatchObject({ method: 'POST', path: '/api/now/table/incident', body: { correlation_id: 'req_01jabcdefghjkmnpqrstvwxyz0' } });
      expect(call.body['short_description']).not.toContain('evil');
      expect(JSON.stringify(call.body)).not.toContain('\u202e');
      const lines = call.body['description']!.split('\n');
      // Every line with the agent's words is inside the box: it cannot print a line of its own.
      for (const line of lines.filter((l) => l.includes('evil.example'))) expect(line.startsWith('| ')).toBe(true);
      expect(lines.slice(lines.indexOf('Agent-supplied (unverified):')).join('\n')).toContain('| Description: EDR saw beaconing. <b>bold</b> <!channel> [click here](https://');
    },
    decidedReached(c, first) {
      const call = c.raw as { method: string; path: string; body: Record<string, string> };
      expect(call.method).toBe('PATCH');
      expect(call.path).toBe(`/api/now/table/incident/${(first as { ticket: { id: string } }).ticket.id}`);
      expect(c.visible).toContain('approved by alice');
    },
    close: s.close,
  };
};

HARNESSES.jira = async () => {
  const s = await jiraCloud({ email: 'bot@example.com', apiToken: 'jira-api-token' });
  const env: Record<string, string> = { COUNTERSIGN_JIRA_EMAIL: 'bot@example.com', COUNTERSIGN_JIRA_API_TOKEN: 'jira-api-token' };
  const posts = () => s.calls.filter((c) => c.method === 'POST');
  const texts = (node: any, out: Array<{ text: string; code: boolean; href?: string }> = [], code = false): typeof out => {
    if (node?.type === 'text') out.push({ text: node.text, code, ...(node.marks?.[0]?.type === 'link' ? { href: node.marks[0].attrs.href } : {}) });
    for (const child of node?.content ?? []) texts(child, out, code || node.type === 'codeBlock');
    return out;
  };
  return {
    settings: { type: 'jira', url: s.url, project: 'SEC' },
    env,
    count: () => posts().length,
    capture(i) {
      const call = posts()[i]!;
      if (call.path.endsWith('/transitions')) {
        const note = texts(call.body?.['update']?.comment?.[0]?.add?.body).map((t) => t.text).join('\n');
        return { visible: note, markup: note, actions: [], raw: call };
      }
      const nodes = texts(call.body?.['fields']?.description);
      const actions = nodes.filter((t) => t.href && t.text !== 'Open in Countersign').map((t) => t.text);
      return { visible: `${call.body?.['fields']?.summary}\n${nodes.map((t) => t.text).join('\n')}`, markup: nodes.filter((t) => !t.code).map((t) => t.text).join('\n'), actions, raw: call };
    },
    failRetryable: () => s.failNext(503),
    failPermanently() {
      env['COUNTERSIGN_JIRA_API_TOKEN'] = 'wrong';
      return () => (env['COUNTERSIGN_JIRA_API_TOKEN'] = 'jira-api-token');
    },
    escaping(c) {
      const call = c.raw as { path: string; body: Record<string, any> };
      expect(call.path).toBe('/rest/api/3/issue');
      expect(call.body['fields'].labels).toEqual(['countersign', 'countersign-req_01jabcdefghjkmnpqrstvwxyz0']);
      expect(call.body['fields'].summary).not.toContain('evil');
      expect(c.markup).not.toContain('evil'); // outside the code block: system text only
      expect(JSON.stringify(call.body)).not.toContain('\u202e');
      const nodes = texts(call.body['fields'].description);
      expect(nodes.filter((t) => t.code).map((t) => t.text).join('')).toContain('<b>bold</b> <!channel> [click here](https://evil.example/approve)');
      for (const t of nodes.filter((n) => n.href)) expect(t.href!.startsWith('https://cs.example.com/#/requests/')).toBe(true);
    },
    decidedReached(c, first) {
      const call = c.raw as { path: string; body: Record<string, any> };
      const key = (first as { ticket: { key: string } }).ticket.key;
      expect(call.path).toBe(`/rest/api/3/issue/${key}/transitions`);
      expect(call.body['transition']).toEqual({ id: '31' });
      expect(s.issues.get(key)!.status).toBe('Done');
      expect(c.visible).toContain('approved by alice');
    },
    close: s.close,
  };
};

describe.each(Object.keys(HARNESSES) as ChannelType[])('channel conformance: %s', (type) => {
  let h: Harness;
  let channel: Channel;
  let seq = 0;
  const build = () => {
    const { configs, errors } = resolveChannels({ [`${type}-test`]: h.settings }, h.env);
    expect(errors).toEqual([]);
    return createChannel(configs.get(`${type}-test`)!);
  };
  const send = (n: Notification, previous: unknown[] = [], ch = channel) => ch.send({ id: `dlv_test_${++seq}`, attempt: 1, notification: n, previous }, AbortSignal.timeout(5_000));

  beforeAll(async () => {
    h = await HARNESSES[type]();
    channel = build();
  });
  afterAll(async () => {
    await channel.close?.();
    await h.close();
  });

  it('delivers the whole notification: facts, agent-supplied content marked, every action', async () => {
    const before = h.count();
    await send(pending);
    expect(h.count()).toBe(before + 1);
    const c = h.capture(before);
    for (const part of ['isolate_host', 'soc-bot', `${pending.risk.level} (score ${pending.risk.score.toFixed(2)})`, '0.82', 'host, 1 affected', 'T1071.001 Web Protocols', 'T1059 Command and Scripting Interpreter', '[edr] beacon every 60s (source: crowdstrike)', 'INC-4242', 'level 2/3 (manager)', 'Agent-supplied (unverified)', 'escalated from level 1 to level 2']) {
      expect(c.visible, `${type} shows "${part}"`).toContain(part);
    }
    expect(c.actions).toEqual(['Approve', 'Approve alternative "quarantine <!here>"', 'Reject']);
  });

  it('escapes agent text for its format, so it can only ever be shown, never interpreted', async () => {
    const before = h.count();
    await send(pending);
    h.escaping(h.capture(before));
  });

  it('reports failures as retryable (5xx, 4xx-temporary) or permanent (other 4xx, bad credentials)', async () => {
    h.failRetryable();
    const retry = await send(pending).then(() => null, (e: unknown) => e);
    expect(retry).toBeInstanceOf(DeliveryError);
    expect((retry as DeliveryError).retryable).toBe(true);
    const restore = h.failPermanently();
    const broken = build();
    const permanent = await send(pending, [], broken).then(() => null, (e: unknown) => e);
    restore();
    await broken.close?.();
    expect(permanent).toBeInstanceOf(DeliveryError);
    expect((permanent as DeliveryError).retryable).toBe(false);
  });

  it('a decision reaches the channel: no more actions, and who decided', async () => {
    const before = h.count();
    const first = await send(pending);
    await send(decided, [first]);
    expect(h.count()).toBe(before + 2);
    h.decidedReached(h.capture(before + 1), first);
  });
});

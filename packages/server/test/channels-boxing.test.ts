/**
 * Issue 13, point 13: agent text stays in its box in every format. The attacks, each against the
 * real client and a stand-in of its service (SMTP + mailparser, the Slack Web API, a Teams
 * webhook, PagerDuty Events):
 *
 * - a description that closes the plain-text "agent-supplied" box itself and prints a fake
 *   "Decide in Countersign … Approve: https://evil…" block after it, with every line break an
 *   email client or terminal may honour (LF, CRLF, bare CR, and the Unicode ones);
 * - an alternative name with line breaks, printed in the real link list (stored before the schema
 *   refused it, or from any other writer: the formats must hold on their own);
 * - a cancelling agent's reason full of Slack mrkdwn (bold, mentions, emoji, a bare URL), and
 *   with line breaks that would print a fake approve line outside the box in email.
 */
import { CreateRequestBody, defaultPolicy, EMPTY_HISTORY, evaluate, renderNotification, type ApprovalRequest, type Notification } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveChannels } from '../src/channels/config.ts';
import { createChannel } from '../src/channels/registry.ts';
import type { Channel } from '../src/channels/types.ts';
import { pagerDutyEvents, slackApi, smtpInbox, teamsWebhook } from './support/channel-standins.ts';

const NOW = Date.now();
const BASE = 'https://cs.example.com';
const BOX_START = '--- Agent-supplied (unverified) ---';
const BOX_END = '--- end of agent-supplied text ---';

/** The fake block, joined by `br`: it ends the box, then offers its own approve link. */
const fakeBlock = (br: string) =>
  ['Routine log rotation.', BOX_END, '', 'Decide in Countersign (each link opens the review page; nothing is decided until you confirm there):', '  Approve: https://evil.example/approve', 'Review: https://evil.example/'].join(br);
/** Within the 600 characters a notification keeps of a description: LF, bare CR, then the Unicode breaks. */
const DESCRIPTION = [fakeBlock('\n'), fakeBlock('\r'), 'U:\u2028\u2029\u0085\u000b\u000c.'].join('\n');
const EVIL_NAME = 'quarantine\n  Approve: https://evil.example/alt\r\nReview: https://evil.example/';
const EVIL_REASON = '*URGENT* <!here> @channel :rotating_light: ~gone~ `code` > quote _now_ https://evil.example/approve\n  Approve: https://evil.example/reason';

/** Built as the store would hand it over, so names the schema now refuses can still be tried. */
function request(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const body = CreateRequestBody.parse({ action: 'rotate_logs', args: { host: 'ws-042' }, description: DESCRIPTION, alternatives: [{ name: 'later', action: 'rotate_logs' }] });
  const assessment = evaluate({ ...body, agent: 'ops-bot' }, defaultPolicy(), EMPTY_HISTORY, new Date(NOW));
  return {
    id: 'req_01jabcdefghjkmnpqrstvwxyz1',
    agentId: 'agt_1',
    agentName: 'ops-bot',
    status: 'pending',
    action: body.action,
    args: body.args,
    description: body.description ?? null,
    confidence: null,
    riskHint: null,
    context: {},
    alternatives: [{ name: EVIL_NAME, action: 'quarantine_file', args: {}, description: ['less drastic', BOX_END, '  Approve: https://evil.example/crlf'].join('\r\n') }],
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
    escalation: null,
    ...over,
  };
}

const pending = renderNotification(request(), 'requested', { reviewBase: BASE, now: NOW });
const cancelled = renderNotification(
  request({
    status: 'cancelled',
    decision: { outcome: 'cancelled', decidedBy: 'agent', deciders: [{ type: 'agent', id: 'agt_1', name: 'ops-bot' }], reason: EVIL_REASON, at: new Date(NOW).toISOString(), action: 'rotate_logs', args: {}, alternative: null, modified: false },
  } as Partial<ApprovalRequest>),
  'decided',
  { reviewBase: BASE, now: NOW },
);

const lines = (text: string) => text.split(/\r\n|\n/);

function build(type: string, settings: Record<string, unknown>, env: Record<string, string>): Channel {
  const { configs, errors } = resolveChannels({ [`${type}-box`]: { type, ...settings } }, env);
  expect(errors).toEqual([]);
  return createChannel(configs.get(`${type}-box`)!);
}

let seq = 0;
const send = (channel: Channel, n: Notification) => channel.send({ id: `dlv_box_${++seq}`, attempt: 1, notification: n, previous: [] }, AbortSignal.timeout(5_000));

describe('email text part: agent text cannot end its own box', () => {
  let inbox: Awaited<ReturnType<typeof smtpInbox>>;
  let channel: Channel;
  beforeAll(async () => {
    inbox = await smtpInbox();
    channel = build('email', { from: 'countersign@example.com', to: ['leads@example.com'] }, { COUNTERSIGN_SMTP_URL: inbox.smtpUrl });
  });
  afterAll(async () => {
    await channel.close?.();
    await inbox.close();
  });

  it('every line between the box markers is prefixed; the only box end and the only link list are Countersign\'s', async () => {
    const before = inbox.received.length;
    await send(channel, pending);
    const text = String(inbox.received[before]!.text);
    const all = lines(text);
    expect(all.filter((l) => l === BOX_START)).toHaveLength(1);
    expect(all.filter((l) => l === BOX_END)).toHaveLength(1);
    const start = all.indexOf(BOX_START);
    const end = all.indexOf(BOX_END);
    expect(end).toBeGreaterThan(start + 1);
    const inside = all.slice(start + 1, end);
    for (const l of inside) expect(l.startsWith('| ')).toBe(true);
    // The attack is shown, inside: its fake end line and fake approve line are prefixed.
    expect(inside).toContain(`|   ${BOX_END}`);
    expect(inside).toContain('|     Approve: https://evil.example/approve');
    expect(inside).toContain('|     Approve: https://evil.example/crlf');
    expect(inside.filter((l) => l === `|   ${BOX_END}`)).toHaveLength(3);
    // Outside the box: no evil link, one "Decide in Countersign", and each action line is ours.
    const outside = [...all.slice(0, start), ...all.slice(end + 1)];
    // The (legacy, now refused) alternative name is on its own one line, quoted, its runs of
    // spaces joined and its `://` defused, so no link outside the box is the agent's.
    const altLine = `  Approve alternative "quarantine Approve: https:\\/\\/evil.example/alt Review: https:\\/\\/evil.example/": ${BASE}/#/requests/${pending.requestId}?choose=${encodeURIComponent(`alternative:${EVIL_NAME}`)}`;
    expect(outside.filter((l) => l.includes('evil.example'))).toEqual([altLine]);
    expect(outside.join('\n')).not.toMatch(/https:\/\/evil/);
    expect(outside.filter((l) => l.startsWith('Decide in Countersign'))).toHaveLength(1);
    const links = outside.filter((l) => /^\s*[A-Z][^:]*:\s*https?:\/\//.test(l));
    expect(links.length).toBeGreaterThanOrEqual(3);
    for (const l of links) expect(l).toMatch(/: https:\/\/cs\.example\.com\/#\/requests\//);
    // No agent line is longer than the cut (76, about; a label, at most 100, is not cut), so a soft wrap cannot start an unprefixed line.
    for (const l of inside.filter((x) => !x.startsWith('| Alternative "'))) expect(l.length).toBeLessThanOrEqual(80);
    // Unicode line breaks are shown as escapes, never as breaks.
    for (const ch of ['\u2028', '\u2029', '\u0085', '\u000b', '\u000c']) expect(text).not.toContain(ch);
    expect(text).toContain('\\u2028');
    expect(String(inbox.received[before]!.subject)).not.toMatch(/[\r\n]/);
  });

  it('a cancelling agent\'s reason is one line: it cannot print an approve line outside the box', async () => {
    const before = inbox.received.length;
    await send(channel, cancelled);
    const all = lines(String(inbox.received[before]!.text));
    const decision = all.filter((l) => l.startsWith('Decision: '));
    expect(decision).toHaveLength(1);
    // The agent's reason is agent text: it is in the box, every line prefixed, never on the decision line (review D7).
    expect(decision[0]).not.toContain('URGENT');
    expect(decision[0]).toContain('the agent gave a reason');
    const inside = all.slice(all.indexOf(BOX_START) + 1, all.indexOf(BOX_END));
    expect(inside.some((l) => l.startsWith('| Reason the agent gave: *URGENT*'))).toBe(true);
    expect(inside).toContain('|     Approve: https://evil.example/reason');
    const outside = [...all.slice(0, all.indexOf(BOX_START)), ...all.slice(all.indexOf(BOX_END) + 1)];
    expect(outside.filter((l) => l.includes('evil.example'))).toEqual([]);
  });

  it('wide characters and tabs are cut by the columns they take, so a soft wrap cannot start an unprefixed line (review D6)', async () => {
    const wide = '\u5bfe'.repeat(200); // 400 columns
    const tabbed = `${'\t'.repeat(30)}Approve: https://evil.example/tab`;
    const before = inbox.received.length;
    await send(channel, renderNotification(request({ description: `${wide}\n${tabbed}` }), 'requested', { reviewBase: BASE, now: NOW }));
    const all = lines(String(inbox.received[before]!.text));
    const inside = all.slice(all.indexOf(BOX_START) + 1, all.indexOf(BOX_END));
    const cols = (l: string) => [...l.replace(/\t/g, '        ')].reduce((n, ch) => n + ((ch.codePointAt(0) ?? 0) >= 0x1100 ? 2 : 1), 0);
    for (const l of inside.filter((x) => !x.startsWith('| Alternative "'))) expect(cols(l)).toBeLessThanOrEqual(80);
    expect(inside.filter((l) => l.includes('\u5bfe')).length).toBeGreaterThanOrEqual(5);
    expect(all.join('\n')).not.toContain('\t');
  });
});

describe('Slack: agent text only in plain_text, never mrkdwn', () => {
  let api: Awaited<ReturnType<typeof slackApi>>;
  let channel: Channel;
  beforeAll(async () => {
    api = await slackApi('xoxb-box');
    channel = build('slack', { channel: 'C0123456789', apiUrl: api.apiUrl }, { COUNTERSIGN_SLACK_BOT_TOKEN: 'xoxb-box' });
  });
  afterAll(async () => {
    await channel.close?.();
    await api.close();
  });

  /** Every text object in the blocks, with its type. */
  const texts = (blocks: Array<Record<string, any>>) => {
    const out: Array<{ type: string; text: string }> = [];
    for (const b of blocks) {
      if (b.text) out.push(b.text);
      for (const f of b.fields ?? []) out.push(f);
      for (const e of b.elements ?? []) out.push(typeof e.text === 'string' ? e : e.text);
    }
    return out;
  };

  it('the cancellation reason is plain_text; no mrkdwn carries any of it', async () => {
    const before = api.received.length;
    await send(channel, cancelled);
    const t = texts(api.received[before]!.blocks);
    const mrkdwn = t.filter((x) => x.type === 'mrkdwn').map((x) => x.text).join('\n');
    for (const bit of ['URGENT', 'here', '@channel', 'rotating_light', 'gone', 'code', 'quote', 'now', 'evil.example']) expect(mrkdwn).not.toContain(bit);
    const decided = t.find((x) => x.type === 'plain_text' && x.text.startsWith('Decided: '));
    expect(decided).toMatchObject({ type: 'plain_text', emoji: false });
    expect(decided!.text).toContain('*URGENT* <!here> @channel :rotating_light:');
    expect(decided!.text).not.toMatch(/[\r\n]/);
    // The fallback text Slack reads as mrkdwn carries names only.
    expect(String(api.received[before]!.args['text'])).not.toContain('evil');
  });

  it('buttons and fields are single-line plain_text; the agent box is plain_text', async () => {
    const before = api.received.length;
    await send(channel, pending);
    const blocks = api.received[before]!.blocks as Array<Record<string, any>>;
    const t = texts(blocks);
    const mrkdwn = t.filter((x) => x.type === 'mrkdwn').map((x) => x.text).join('\n');
    expect(mrkdwn).not.toContain('evil');
    const buttons = blocks.find((b) => b.type === 'actions')!.elements as Array<Record<string, any>>;
    for (const b of buttons) {
      expect(b.text.type).toBe('plain_text');
      expect(b.text.text).not.toMatch(/[\r\n]/);
    }
    for (const f of blocks.flatMap((b) => (b.fields ?? []) as Array<Record<string, any>>)) expect(f.type).toBe('plain_text');
  });
});

describe('Teams and PagerDuty: names and labels on one line', () => {
  it('Teams: button titles, fact titles and the decision are single-line', async () => {
    const hook = await teamsWebhook();
    const channel = build('teams', {}, { COUNTERSIGN_TEAMS_WEBHOOK_URL: hook.url });
    try {
      await send(channel, pending);
      await send(channel, cancelled);
      const [card, decidedCard] = hook.received.map((r) => r.card);
      for (const a of card!.actions as Array<{ title: string }>) expect(a.title).not.toMatch(/[\r\n]/);
      const factTitles: string[] = [];
      const walk = (items: any[]) => {
        for (const it of items ?? []) {
          if (it.type === 'FactSet') for (const f of it.facts) factTitles.push(f.title);
          if (it.type === 'Container') walk(it.items);
        }
      };
      walk(card!.body);
      expect(factTitles.some((t) => t.includes('quarantine'))).toBe(true);
      for (const t of factTitles) expect(t).not.toMatch(/[\r\n]/);
      const decision = (decidedCard!.body as any[]).find((b) => b.type === 'TextBlock' && String(b.text).includes('URGENT'));
      expect(decision.text).not.toMatch(/[\r\n]/);
    } finally {
      await hook.close();
    }
  });

  it('PagerDuty: link texts are single-line', async () => {
    const pd = await pagerDutyEvents();
    const channel = build('pagerduty', { url: pd.url }, { COUNTERSIGN_PAGERDUTY_ROUTING_KEY: 'R0123456789abcdef0123456789abcde' });
    try {
      await send(channel, pending);
      const event = pd.received[0]!;
      for (const l of event['links'] as Array<{ text: string }>) expect(l.text).not.toMatch(/[\r\n]/);
      for (const k of Object.keys(event['payload']['custom_details']['actions'])) expect(k).not.toMatch(/[\r\n]/);
      expect(event['payload']['summary']).not.toMatch(/[\r\n]/);
    } finally {
      await pd.close();
    }
  });
});

/** NUL has its own refusal (every stored text), so it is not among these. */
describe('alternative names are refused with a line break or control character', () => {
  it.each(['\n', '\r', '\r\n', '\u2028', '\u2029', '\u0085', '\u000b', '\u000c', '\u001b', '\u202e', '\u2066', '\u200b', '\ufeff'])('refuses %j in a name, naming the field', (ch) => {
    const r = CreateRequestBody.safeParse({ action: 'rotate_logs', alternatives: [{ name: `quarantine${ch}Approve: https://evil.example`, action: 'quarantine_file' }] });
    expect(r.success).toBe(false);
    const issue = r.error!.issues.find((i) => i.path.join('.') === 'alternatives.0.name');
    expect(issue?.message).toMatch(/one line of visible text; it contains U\+[0-9A-F]{4} at position 10/);
  });

  it.each(['quarantine   Approve: https://evil.example', 'see https://evil.example', ' quarantine', 'quarantine ', 'say "yes"', 'a\u00a0\u00a0b'])('refuses a link-like name %j (review D7)', (name) => {
    const r = CreateRequestBody.safeParse({ action: 'rotate_logs', alternatives: [{ name, action: 'quarantine_file' }] });
    expect(r.success).toBe(false);
    expect(r.error!.issues.find((i) => i.path.join('.') === 'alternatives.0.name')?.message).toMatch(/shown beside real links/);
  });

  it('takes an ordinary name, spaces and non-ASCII letters included', () => {
    expect(CreateRequestBody.safeParse({ action: 'rotate_logs', alternatives: [{ name: 'quarantine — später <!here>', action: 'quarantine_file' }] }).success).toBe(true);
  });
});

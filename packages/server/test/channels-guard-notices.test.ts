/**
 * Guard notices end to end (engine → deliveries/timers → scheduler → notifier → channel → local
 * receiver): every slicing alert, agent pause and resume, and approver cool-down (manual and
 * automatic) reaches the channels in the policy's `guard.notify`, through the durable delivery
 * path (retried with backoff, recorded, audited). Webhook bodies are verified with the
 * `standardwebhooks` library; text from operators and agent-influenced alert text stays
 * escaped (JSON, Slack plain_text, HTML in email, markdown in Teams cards, PagerDuty
 * `custom_details`). Email goes through a real SMTP server (smtp-server) and is read back with
 * mailparser; Teams and PagerDuty through stand-ins that check the documented payloads.
 */
import { Webhook } from 'standardwebhooks';
import { CreateRequestBody, type GuardNoticeKind } from '@countersign/core';
import type { ParsedMail } from 'mailparser';
import { afterEach, describe, expect, it } from 'vitest';
import { channelPolicyCheck, resolveChannels } from '../src/channels/config.ts';
import { Notifier } from '../src/channels/notifier.ts';
import { ChannelRegistry, createChannel } from '../src/channels/registry.ts';
import { GUARD_CHANNEL_TYPES } from '../src/channels/types.ts';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { totpCode } from '../src/guard/totp.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { pagerDutyEvents, slackApi, smtpInbox, teamsWebhook, webhookReceiver, type StandIn } from './support/channel-standins.ts';
import { sqliteDatabase } from './support/databases.ts';

const SECRET = `whsec_${Buffer.from('guard-notices-32-byte-signing-k!').toString('base64')}`;
const SLACK_TOKEN = 'xoxb-guard-notices';
const HOSTILE = 'tired <!channel> <https://evil.example|click> *bold* "quoted" & more';
const PD_KEY = 'R0123456789abcdef0123456789abcde';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function standIn<T extends StandIn<unknown>>(make: Promise<T>): Promise<T> {
  const s = await make;
  cleanup.push(s.close);
  return s;
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A clock that runs in real time but can be moved forward (slicing needs requests spread over minutes). */
async function setup(policy: string, env: Record<string, string>) {
  let offset = 0;
  const database = sqliteDatabase();
  const engine = await Engine.open({ connection: await connect(database.url), now: () => Date.now() + offset });
  engine.addPolicyCheck(channelPolicyCheck(env));
  await engine.activatePolicy(policy, 'test');
  const boot = (await engine.bootstrap())!;
  const channels = new ChannelRegistry(engine, env);
  const notifier = new Notifier(engine, channels, { reviewBase: 'https://cs.example.com' });
  const scheduler = new Scheduler(engine, { intervalMs: 20, deliver: notifier.deliver, onError: (e) => console.error(e) });
  scheduler.start();
  cleanup.push(async () => {
    await scheduler.stop();
    await channels.close();
    await engine.close();
    await database.drop();
  });
  const agent = (await engine.authenticate(boot.agentKey))!;
  return {
    engine,
    agent,
    agentName: agent.kind === 'agent' ? agent.agentName : '',
    admin: (await engine.authenticate(boot.adminToken))!,
    adminToken: boot.adminToken,
    advance: (ms: number) => {
      offset += ms;
    },
  };
}

type Received = { headers: Record<string, unknown>; body: string };
function verified(r: Received): { type: string; data: any } {
  const h = (k: string) => String(r.headers[k]);
  return new Webhook(SECRET).verify(r.body, { 'webhook-id': h('webhook-id'), 'webhook-timestamp': h('webhook-timestamp'), 'webhook-signature': h('webhook-signature') }) as { type: string; data: any };
}

const policyWith = (hookUrl: string, extra = '') =>
  `channels:\n  hook: { type: webhook, url: "${hookUrl}", retry: { attempts: 4, backoff: 50ms } }\n${extra}guard:\n  notify: [hook]\n`;

describe('guard notices through the webhook channel', () => {
  it('a manual pause, resume and cool-down each reach the webhook, signed, retried, recorded and audited', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    hook.failNext(503);
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 30, reason: HOSTILE });
    const paused = await until('agent_paused delivered', () => hook.received.find((r) => verified(r).type === 'countersign.guard.agent_paused' && hook.received.length >= 2));
    const body = verified(paused);
    expect(body.data).toMatchObject({ kind: 'agent_paused', agent: s.agentName, by: 'admin', reason: HOSTILE, title: `Agent paused: ${s.agentName}` });
    expect(JSON.parse(paused.body).data.reason).toBe(HOSTILE);

    const [delivery] = await until('recorded', async () => {
      const page = await s.engine.listDeliveries(s.admin, { channel: 'hook', status: 'delivered' });
      return page.items.length > 0 ? page.items : undefined;
    });
    expect(delivery).toMatchObject({ requestId: null, event: 'guard.agent_paused', attempts: 2, lastError: expect.stringContaining('HTTP 503') });
    expect(new Set(hook.received.map((r) => r.headers['webhook-id']))).toEqual(new Set([delivery!.id])); // one id across the retry
    const listed = await createApp({ engine: s.engine, log: () => {} }).request('/v1/deliveries?channel=hook', { headers: { authorization: `Bearer ${s.adminToken}` } });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { items: unknown[] }).items).toEqual([expect.objectContaining({ id: delivery!.id, requestId: null, event: 'guard.agent_paused', status: 'delivered' })]);

    await s.engine.guard.resume(s.admin, s.agentName, { reason: 'checked' });
    await s.engine.guard.setCooldown(s.admin, await lowerRanked(s), { minutes: 20, reason: 'eight hours on call' });
    const types = await until('resume and cool-down', () => {
      const t = hook.received.map((r) => verified(r).type);
      return t.includes('countersign.guard.agent_resumed') && t.includes('countersign.guard.cooldown_started') ? t : undefined;
    });
    expect(types.filter((t) => t === 'countersign.guard.agent_paused')).toHaveLength(2); // the failed attempt and its retry
    const cool = hook.received.map(verified).find((b) => b.type === 'countersign.guard.cooldown_started')!;
    expect(cool.data).toMatchObject({ operator: 'ann', by: 'admin', reason: 'manual: eight hours on call', agent: null });

    const notified = await until('audited', async () => {
      const entries = (await s.engine.listAudit(s.admin, { type: 'notified', limit: 100 })).filter((e) => (e.data as any).event?.startsWith('guard.'));
      return entries.length >= 3 ? entries : undefined;
    });
    expect(notified.map((e) => (e.data as any).event).sort()).toEqual(['guard.agent_paused', 'guard.agent_resumed', 'guard.cooldown_started']);
  });

  it('a pause that runs out by itself is told (agent_resumed, audited pause_expired); one resumed by hand is not told twice', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 5, reason: 'short look' });
    await until('paused told', () => hook.received.find((r) => verified(r).type === 'countersign.guard.agent_paused'));
    s.advance(5 * 60_000 + 1_000); // the scheduler ticks every 20 ms: the pause_end timer is due
    const resumed = await until('ran out told', () => hook.received.map(verified).find((b) => b.type === 'countersign.guard.agent_resumed'));
    expect(resumed.data).toMatchObject({ kind: 'agent_resumed', agent: s.agentName, by: 'countersign', reason: 'the pause ran out (it was: short look)' });
    expect((await s.engine.listAudit(s.admin, { type: 'pause_expired', limit: 10 })).map((e) => e.data)).toEqual([
      expect.objectContaining({ agent: s.agentName, reason: 'short look' }),
    ]);

    // Resumed by hand before it runs out: one agent_resumed (the resume's), none when the time comes.
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 5, reason: 'second look' });
    await s.engine.guard.resume(s.admin, s.agentName, { reason: 'all clear' });
    await until('resume told', () => hook.received.map(verified).find((b) => b.type === 'countersign.guard.agent_resumed' && b.data.reason === 'all clear'));
    s.advance(5 * 60_000 + 1_000);
    await new Promise((r) => setTimeout(r, 300)); // several ticks
    expect(hook.received.map(verified).filter((b) => b.type === 'countersign.guard.agent_resumed')).toHaveLength(2);
    expect(await s.engine.listAudit(s.admin, { type: 'pause_expired', limit: 10 })).toHaveLength(1);

    // Overlapping pauses: the shorter one running out is not "resumed" while the longer one holds.
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 5, reason: 'short' });
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 60, reason: 'incident' });
    s.advance(5 * 60_000 + 1_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(hook.received.map(verified).filter((b) => b.type === 'countersign.guard.agent_resumed')).toHaveLength(2);
    expect((await s.engine.guard.pauseStatus(s.admin, s.agentName)).paused).toBe(true);
    s.advance(55 * 60_000);
    const last = await until('the longer pause ran out', () => {
      const resumed = hook.received.map(verified).filter((b) => b.type === 'countersign.guard.agent_resumed');
      return resumed.length === 3 ? resumed[2] : undefined;
    });
    expect(last.data.reason).toBe('the pause ran out (it was: incident)');
  });

  it('an automatic cool-down is told once, when the approval that starts it commits', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url).replace('  notify: [hook]\n', '  notify: [hook]\n  cooldown: { threshold: 2 }\n'), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    for (const host of ['h1', 'h2']) {
      const { request } = await s.engine.createRequest(s.agent, CreateRequestBody.parse({ action: 'isolate_host', args: { host }, confidence: 0.82, riskLevel: 'high' }));
      await s.engine.review(s.admin, request.id, { verdict: 'approve' });
    }
    const { request } = await s.engine.createRequest(s.agent, CreateRequestBody.parse({ action: 'isolate_host', args: { host: 'h3' }, confidence: 0.82, riskLevel: 'high' }));
    await expect(s.engine.review(s.admin, request.id, { verdict: 'approve' })).rejects.toMatchObject({ code: 'COOLDOWN_ACTIVE' });
    const got = await until('cooldown_started', () => hook.received.map(verified).find((b) => b.type === 'countersign.guard.cooldown_started'));
    expect(got.data).toMatchObject({ operator: 'admin', by: 'countersign', reason: expect.stringContaining('2 approvals') });
    await new Promise((r) => setTimeout(r, 200));
    expect(hook.received.map(verified).filter((b) => b.type === 'countersign.guard.cooldown_started')).toHaveLength(1);
  });

  it('a step-up lockout is told once on the guard channels (mfa_locked), with the operator and until, and audited', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    const { token } = await s.engine.createOperator(s.admin, { name: 'dora', roles: ['director'] });
    const dora = (await s.engine.authenticate(token))!;
    const { secret } = await s.engine.guard.enrolTotp(dora);
    await s.engine.guard.confirmTotp(dora, totpCode(secret, Date.now()));
    s.advance(60_000);
    const { request } = await s.engine.createRequest(s.agent, CreateRequestBody.parse({ action: 'delete_data', args: { path: '/srv/customers' }, confidence: 0.99, riskLevel: 'critical' }));
    const matchCode = (await s.engine.getRequest(dora, request.id)).matchCode;
    const wrong = (n: number) => String((Number(totpCode(secret, Date.now() + 60_000)) + 1000 * n) % 1_000_000).padStart(6, '0');
    const codes: string[] = [];
    for (let i = 1; i <= 7; i++) {
      await s.engine.review(dora, request.id, { verdict: 'approve', totp: wrong(i), matchCode } as never).catch((err: { code: string }) => codes.push(err.code));
    }
    expect(codes).toEqual(['MFA_INVALID', 'MFA_INVALID', 'MFA_INVALID', 'MFA_INVALID', 'MFA_INVALID', 'MFA_LOCKED', 'MFA_LOCKED']);
    const told = await until('mfa_locked delivered', () => hook.received.map(verified).find((b) => b.type === 'countersign.guard.mfa_locked'));
    expect(told.data).toMatchObject({ kind: 'mfa_locked', operator: 'dora', by: 'countersign', until: expect.any(String) });
    expect(Date.parse(told.data.until)).toBeGreaterThan(Date.now());
    const [delivery] = await until('recorded', async () => {
      const page = await s.engine.listDeliveries(s.admin, { channel: 'hook', status: 'delivered' });
      return page.items.length > 0 ? page.items : undefined;
    });
    expect(delivery).toMatchObject({ requestId: null, event: 'guard.mfa_locked' });
    // The refused attempts after the lockout are not strikes of their own: told once.
    await new Promise((r) => setTimeout(r, 300));
    expect(hook.received.map(verified).filter((b) => b.type === 'countersign.guard.mfa_locked')).toHaveLength(1);
    expect(await s.engine.listAudit(s.admin, { type: 'mfa_locked' })).toHaveLength(1);
  });

  it('a slicing alert and the pause it causes are both told; alert text sits under agentSupplied', async () => {
    const hook = await standIn(webhookReceiver());
    const s = await setup(policyWith(hook.url, 'agents:\n  demo-agent: { onSlicing: pause }\n'), { COUNTERSIGN_WEBHOOK_SECRET: SECRET });
    const transfer = CreateRequestBody.parse({ action: 'wire_transfer', args: { to: 'acct-9', amount: 9_900 }, confidence: 0.9, context: { value: 9_900 } });
    for (let i = 0; i < 20; i++) {
      s.advance(90_000);
      try {
        await s.engine.createRequest(s.agent, transfer);
      } catch (err) {
        expect(err).toMatchObject({ code: 'AGENT_PAUSED' });
        break;
      }
    }
    const bodies = await until('alert and pause', () => {
      const b = hook.received.map(verified);
      return b.some((x) => x.type === 'countersign.guard.slicing_alert') && b.some((x) => x.type === 'countersign.guard.agent_paused') ? b : undefined;
    });
    const alert = bodies.find((b) => b.type === 'countersign.guard.slicing_alert')!;
    expect(alert.data).toMatchObject({ agent: s.agentName, response: 'pause', by: 'countersign', agentSuppliedLabel: 'Agent-supplied (unverified)' });
    expect(alert.data.agentSupplied.alerts.map((a: { type: string }) => a.type)).toContain('value_aggregation');
    expect(bodies.find((b) => b.type === 'countersign.guard.agent_paused')!.data.reason).toContain('value_aggregation');
  });
});

describe('guard notices through Slack, and configuration', () => {
  it('Slack gets a card with operator text as plain_text (never parsed) and no approve buttons', async () => {
    const api = await standIn(slackApi(SLACK_TOKEN));
    const s = await setup(`channels:\n  slack: { channel: C0123456789, apiUrl: "${api.apiUrl}" }\nguard:\n  notify: [slack]\n`, {
      COUNTERSIGN_SLACK_BOT_TOKEN: SLACK_TOKEN,
      COUNTERSIGN_SLACK_SIGNING_SECRET: 'unused-signing-secret',
    });
    await s.engine.guard.pause(s.admin, s.agentName, { minutes: 30, reason: HOSTILE });
    const call = await until('posted', () => api.received.find((c) => c.method === 'chat.postMessage'));
    const blocks = call.blocks as Array<{ type: string; text?: { type: string; text: string }; elements?: Array<{ action_id?: string }> }>;
    const reason = blocks.find((b) => b.text?.text.startsWith('Reason: '))!;
    expect(reason.text).toEqual({ type: 'plain_text', text: `Reason: ${HOSTILE}`, emoji: false });
    expect(JSON.stringify(blocks.filter((b) => b.text?.type === 'mrkdwn' || b.type === 'context'))).not.toContain('<!channel>');
    const buttons = blocks.flatMap((b) => b.elements ?? []).map((e) => e.action_id);
    expect(buttons).toEqual(['open']);
  });

  it('guard.notify accepts every channel type that carries guard notices (email, Teams, PagerDuty too), and refuses a name with no channel', async () => {
    const database = sqliteDatabase();
    const engine = await Engine.open({ connection: await connect(database.url) });
    cleanup.push(async () => {
      await engine.close();
      await database.drop();
    });
    const env = {
      COUNTERSIGN_WEBHOOK_SECRET: SECRET,
      COUNTERSIGN_SLACK_BOT_TOKEN: SLACK_TOKEN,
      COUNTERSIGN_SMTP_URL: 'smtp://127.0.0.1:2525',
      COUNTERSIGN_TEAMS_WEBHOOK_URL: 'https://example.webhook.office.com/webhookb2/x',
      COUNTERSIGN_PAGERDUTY_ROUTING_KEY: PD_KEY,
    };
    engine.addPolicyCheck(channelPolicyCheck(env));
    const channels = `channels:
  hook: { type: webhook, url: "https://hooks.example.com/x" }
  chat: { type: slack, channel: C0123456789 }
  mail: { type: email, from: countersign@example.com, to: [soc@example.com] }
  room: { type: teams }
  pd: { type: pagerduty }
`;
    await engine.activatePolicy(`${channels}guard:\n  notify: [hook, chat, mail, room, pd]\n`, 'test');
    expect(engine.policy.policy.guard.notify).toEqual(['hook', 'chat', 'mail', 'room', 'pd']);
    await expect(engine.activatePolicy(`${channels}guard:\n  notify: [mail, nowhere]\n`, 'test')).rejects.toMatchObject({
      code: 'POLICY_INVALID',
      details: { errors: [{ path: 'guard.notify[1]', message: expect.stringContaining('no channel named "nowhere"') }] },
    });
    // The list the policy check allows is the list of channels that can send a guard notice.
    const { configs, errors } = resolveChannels({ hook: { type: 'webhook', url: 'https://hooks.example.com/x' }, chat: { type: 'slack', channel: 'C0123456789' }, mail: { type: 'email', from: 'countersign@example.com', to: ['soc@example.com'] }, room: { type: 'teams' }, pd: { type: 'pagerduty' } }, env);
    expect(errors).toEqual([]);
    const carriers = [...configs.values()].map(createChannel).filter((c) => typeof c.sendGuard === 'function').map((c) => c.type);
    expect([...carriers].sort()).toEqual([...GUARD_CHANNEL_TYPES].sort());
  });
});

/** Teams TextBlocks render markdown: undo the escaping to see what a reader sees. */
const teamsUnescape = (t: string) => t.replace(/\\([\\`*_{}[\]()<>#+\-.!|~])/g, '$1');
/** A markdown character with no backslash before it: something Teams would interpret. */
const UNESCAPED_MARKDOWN = /(^|[^\\])[*_`<>[\]()|]/;
const escapedHtml = (t: string) => t.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

/**
 * Drives every kind of guard notice with hostile text wherever text comes from outside: a
 * manual pause, its resume and a manual cool-down, each with HOSTILE in the reason; then
 * requests whose only moving argument is named HOSTILE, until the pattern-repetition detector
 * raises a slicing alert (its description names that argument) and `onSlicing: pause` pauses the
 * agent. `count(kind)` is how many of a kind the receiver holds; waiting for each keeps the
 * order (the resume after its pause).
 */
/** A cool-down is set only on someone the setter outranks (issue 13, finding 6): a director named ann. */
async function lowerRanked(s: Awaited<ReturnType<typeof setup>>): Promise<string> {
  if (!(await s.engine.store.findOperatorByName('ann'))) await s.engine.createOperator(s.admin, { name: 'ann', roles: ['director'] });
  return 'ann';
}

async function driveEveryKind(s: Awaited<ReturnType<typeof setup>>, count: (kind: GuardNoticeKind) => number) {
  await s.engine.guard.pause(s.admin, s.agentName, { minutes: 30, reason: HOSTILE });
  await until('agent_paused', () => count('agent_paused') >= 1);
  await s.engine.guard.resume(s.admin, s.agentName, { reason: HOSTILE });
  await until('agent_resumed', () => count('agent_resumed') >= 1);
  await s.engine.guard.setCooldown(s.admin, await lowerRanked(s), { minutes: 20, reason: HOSTILE });
  await until('cooldown_started', () => count('cooldown_started') >= 1);
  let paused = false;
  for (let i = 1; i <= 20 && !paused; i++) {
    s.advance(90_000);
    try {
      await s.engine.createRequest(s.agent, CreateRequestBody.parse({ action: 'purge_rows', args: { table: 'audit', [HOSTILE]: 100 * i }, confidence: 0.9 }));
    } catch (err) {
      expect(err).toMatchObject({ code: 'AGENT_PAUSED' });
      paused = true;
    }
  }
  expect(paused).toBe(true);
  await until('slicing_alert and its pause', () => count('slicing_alert') >= 1 && count('agent_paused') >= 2);
  // Every notice recorded as delivered: nothing failed or is still waiting.
  await until('five delivered', async () => {
    const page = await s.engine.listDeliveries(s.admin, { channel: 'out' });
    return page.items.length === 5 && page.items.every((d) => d.status === 'delivered') ? true : undefined;
  });
}

const guardPolicy = (channel: string) => `channels:\n  out: ${channel}\nagents:\n  demo-agent: { onSlicing: pause }\nguard:\n  notify: [out]\n`;

describe('guard notices through email, Teams and PagerDuty', () => {
  it('email: each kind arrives over SMTP, reasons HTML-escaped, alert text in the labelled agent-supplied box', async () => {
    const inbox = await standIn(smtpInbox());
    const s = await setup(guardPolicy('{ type: email, from: countersign@example.com, to: [soc@example.com] }'), { COUNTERSIGN_SMTP_URL: inbox.smtpUrl });
    const kindOf = (m: ParsedMail) => String(m.headers.get('x-countersign-event')).replace(/^guard\./, '');
    await driveEveryKind(s, (kind) => inbox.received.filter((m) => kindOf(m) === kind).length);
    const [manualPause, systemPause] = inbox.received.filter((m) => kindOf(m) === 'agent_paused');
    const resumed = inbox.received.find((m) => kindOf(m) === 'agent_resumed')!;
    const cooldown = inbox.received.find((m) => kindOf(m) === 'cooldown_started')!;
    const alert = inbox.received.find((m) => kindOf(m) === 'slicing_alert')!;

    for (const m of inbox.received) {
      const html = String(m.html);
      expect(m.messageId).toMatch(/^<dlv_[0-9a-z]+@countersign>$/);
      expect(m.headers.get('auto-submitted')).toBe('auto-generated');
      // Nothing hostile became markup: no tag, no link but the dashboard's.
      expect(html).not.toContain('<!channel>');
      expect(html).not.toContain('<https://evil');
      expect([...html.matchAll(/href="([^"]+)"/g)].map((x) => x[1])).toEqual(['https://cs.example.com/#/queue']);
    }
    expect(manualPause!.subject).toBe(`[Countersign] Agent paused: ${s.agentName}`);
    expect(manualPause!.text).toContain(`Agent: ${s.agentName}\nBy: admin\nUntil: `);
    expect(manualPause!.text).toContain(`Reason: ${HOSTILE}`);
    expect(String(manualPause!.html)).toContain(`<td>${escapedHtml(HOSTILE)}</td>`);
    expect(resumed.subject).toBe(`[Countersign] Agent resumed: ${s.agentName}`);
    expect(String(resumed.html)).toContain(`<td>${escapedHtml(HOSTILE)}</td>`);
    // Pause and resume of one agent share a thread.
    expect(resumed.references).toEqual(manualPause!.references);
    expect(cooldown.subject).toBe('[Countersign] Approver cool-down: ann');
    expect(cooldown.text).toContain('Approver: ann');
    expect(String(cooldown.html)).toContain(`<td>manual: ${escapedHtml(HOSTILE)}</td>`);
    expect(systemPause!.text).toContain('By: countersign');
    expect(systemPause!.text).toContain('Reason: slicing detected: pattern_repetition');

    // The slicing alert: its description (naming the hostile argument) only inside the labelled block.
    expect(alert.subject).toBe(`[Countersign] Slicing alert: agent ${s.agentName} (paused)`);
    expect(alert.text).toContain('Response: pause');
    const fenced = /--- Agent-supplied \(unverified\) ---\n([\s\S]*?)\n--- end of agent-supplied text ---/.exec(alert.text ?? '');
    // Agent lines are prefixed and cut at 76 characters: join the continuation pieces back.
    const boxed = (fenced?.[1] ?? '').replaceAll('\n|   ', '');
    expect(boxed).toMatch(/^\| pattern_repetition \(confidence 0\.\d\d\): .*purge_rows requests .* differing only in /);
    expect(boxed).toContain(HOSTILE);
    expect(alert.text!.replace(fenced![0], '')).not.toContain('tired');
    const html = String(alert.html);
    const box = /<div style="[^"]*dashed[^"]*">([\s\S]*?)<\/div>/.exec(html)?.[1] ?? '';
    expect(box).toContain('⚠ Agent-supplied (unverified)');
    expect(box).toContain(escapedHtml(HOSTILE));
    expect(html.replace(box, '')).not.toContain('tired');
  });

  it('Teams: each kind arrives as a card without decision buttons; reasons and alert text markdown-escaped, alerts under the label', async () => {
    const hook = await standIn(teamsWebhook());
    const s = await setup(guardPolicy('{ type: teams }'), { COUNTERSIGN_TEAMS_WEBHOOK_URL: hook.url });
    const TITLES: Record<GuardNoticeKind, string> = { agent_paused: 'Agent paused:', agent_resumed: 'Agent resumed:', cooldown_started: 'Approver cool-down:', slicing_alert: 'Slicing alert:', mfa_locked: 'Step-up locked', audit_fork: 'AUDIT_FORK:' };
    const title = (card: Record<string, any>) => teamsUnescape(card.body[0].text as string);
    const kindOf = (card: Record<string, any>) => (Object.keys(TITLES) as GuardNoticeKind[]).find((k) => title(card).startsWith(TITLES[k]));
    await driveEveryKind(s, (kind) => hook.received.filter((r) => kindOf(r.card) === kind).length);
    const cards = hook.received.map((r) => r.card);
    expect(cards.map(kindOf).sort()).toEqual(['agent_paused', 'agent_paused', 'agent_resumed', 'cooldown_started', 'slicing_alert']);
    const facts = (card: Record<string, any>) => Object.fromEntries((card.body.find((b: any) => b.type === 'FactSet').facts as Array<{ title: string; value: string }>).map((f) => [f.title, teamsUnescape(f.value)]));
    const reason = (card: Record<string, any>) => card.body.find((b: any) => b.type === 'TextBlock' && teamsUnescape(b.text).startsWith('Reason: '))?.text as string | undefined;

    for (const card of cards) {
      expect(card.actions).toEqual([{ type: 'Action.OpenUrl', title: 'Open in Countersign', url: 'https://cs.example.com/#/queue' }]);
    }
    const [manualPause, systemPause] = cards.filter((c) => kindOf(c) === 'agent_paused');
    const cooldown = cards.find((c) => kindOf(c) === 'cooldown_started')!;
    const resumed = cards.find((c) => kindOf(c) === 'agent_resumed')!;
    expect(title(manualPause!)).toBe(`Agent paused: ${s.agentName}`);
    expect(facts(manualPause!)).toMatchObject({ Agent: s.agentName, By: 'admin' });
    expect(facts(cooldown)).toMatchObject({ Approver: 'ann', By: 'admin' });
    expect(facts(systemPause!)).toMatchObject({ By: 'countersign' });
    for (const [card, expected] of [[manualPause!, HOSTILE], [resumed, HOSTILE], [cooldown, `manual: ${HOSTILE}`]] as const) {
      const text = reason(card)!;
      expect(teamsUnescape(text)).toBe(`Reason: ${expected}`); // shown as written…
      expect(text).not.toMatch(UNESCAPED_MARKDOWN); // …with nothing left for markdown to interpret
      expect(text).toContain('\\<https://evil\\.example\\|click\\>');
    }

    // The slicing alert: the description, naming the hostile argument, only in the warning container under the label.
    const alert = cards.find((c) => kindOf(c) === 'slicing_alert')!;
    expect(facts(alert)).toMatchObject({ Agent: s.agentName, Response: 'pause', By: 'countersign' });
    const containers = alert.body.filter((b: any) => b.type === 'Container');
    expect(containers).toHaveLength(1);
    expect(containers[0].style).toBe('warning');
    expect(teamsUnescape(containers[0].items[0].text)).toBe('⚠ Agent-supplied (unverified)');
    const alertFacts = containers[0].items[1].facts as Array<{ title: string; value: string }>;
    expect(teamsUnescape(alertFacts[0]!.title)).toMatch(/^pattern_repetition \(confidence 0\.\d\d\)$/);
    expect(alertFacts[0]!.title).not.toMatch(UNESCAPED_MARKDOWN);
    expect(teamsUnescape(alertFacts[0]!.value)).toContain(`differing only in ${HOSTILE}`);
    for (const f of alertFacts) expect(f.value).not.toMatch(UNESCAPED_MARKDOWN);
    expect(JSON.stringify(alert.body.filter((b: any) => b.type !== 'Container'))).not.toContain('tired');
  });

  it('PagerDuty: alert and pause trigger (error, warning), the resume resolves the pause, a cool-down is info; outside text only in custom_details', async () => {
    const pd = await standIn(pagerDutyEvents());
    const s = await setup(guardPolicy(`{ type: pagerduty, url: "${pd.url}" }`), { COUNTERSIGN_PAGERDUTY_ROUTING_KEY: PD_KEY });
    const kindOf = (e: Record<string, any>) => (e.event_action === 'resolve' ? 'agent_resumed' : e.payload?.component);
    await driveEveryKind(s, (kind) => pd.received.filter((e) => kindOf(e) === kind).length);
    const pauseKey = `countersign:guard:agent_paused:agent:${s.agentName}`;
    const seen = pd.received.map((e) => [e.event_action, e.dedup_key, e.payload?.severity]);
    expect(seen.slice(0, 3)).toEqual([
      ['trigger', pauseKey, 'warning'],
      ['resolve', pauseKey, undefined],
      ['trigger', 'countersign:guard:cooldown_started:operator:ann', 'info'],
    ]);
    // The slicing alert and the pause it causes are queued together: either may arrive first.
    expect(seen.slice(3)).toEqual(
      expect.arrayContaining([
        ['trigger', `countersign:guard:slicing_alert:agent:${s.agentName}`, 'error'],
        ['trigger', pauseKey, 'warning'],
      ]),
    );
    expect(seen).toHaveLength(5);
    const [manualPause, resolve, cooldown] = pd.received as Array<Record<string, any>>;
    const alert = pd.received.find((e) => kindOf(e) === 'slicing_alert');
    const systemPause = pd.received.slice(3).find((e) => kindOf(e) === 'agent_paused');
    expect(resolve).toEqual({ routing_key: PD_KEY, event_action: 'resolve', dedup_key: pauseKey });
    expect(manualPause).toMatchObject({
      routing_key: PD_KEY,
      client_url: 'https://cs.example.com/#/queue',
      links: [{ href: 'https://cs.example.com/#/queue', text: 'Open in Countersign' }],
      payload: { summary: `Agent paused: ${s.agentName}`, source: s.agentName, class: 'guard', custom_details: { kind: 'agent_paused', agent: s.agentName, by: 'admin', reason: HOSTILE } },
    });
    expect(cooldown!.payload).toMatchObject({ summary: 'Approver cool-down: ann', source: 'ann', custom_details: { approver: 'ann', reason: `manual: ${HOSTILE}` } });
    expect(systemPause!.payload.custom_details).toMatchObject({ by: 'countersign', reason: 'slicing detected: pattern_repetition' });
    expect(alert!.payload).toMatchObject({
      summary: `Slicing alert: agent ${s.agentName} (paused)`,
      custom_details: { kind: 'slicing_alert', response: 'pause', agent_supplied_label: 'Agent-supplied (unverified)' },
    });
    const [described] = alert!.payload.custom_details.agent_supplied.alerts as Array<{ type: string; description: string; requestIds: string[] }>;
    expect(described).toMatchObject({ type: 'pattern_repetition', description: expect.stringContaining(`differing only in ${HOSTILE}`) });
    expect(described!.requestIds.length).toBeGreaterThanOrEqual(5);
    for (const e of pd.received) {
      if (e.event_action !== 'trigger') continue;
      // Outside text never reaches the summary (what a pager shows), nor anywhere but custom_details.
      expect(e.payload.summary).not.toContain('tired');
      const { custom_details: _details, ...rest } = e.payload;
      expect(JSON.stringify({ ...e, payload: rest })).not.toContain('tired');
    }
    // A slicing alert without hostile text would not prove anything: the HOSTILE name must be in custom_details.
    expect(JSON.stringify(alert!.payload.custom_details)).toContain(JSON.stringify(HOSTILE).slice(1, -1));
  });
});

describe('migration 005_guard_notices', () => {
  it('keeps the deliveries of a database made before it and then accepts guard notices (SQLite table rebuild)', async () => {
    const { default: Database } = await import('better-sqlite3');
    const { Kysely, Migrator, SqliteDialect } = await import('kysely');
    const { MIGRATIONS } = await import('../src/store/migrations/index.ts');
    const database = sqliteDatabase();
    const file = database.url.slice('sqlite:'.length);
    const raw = new Database(file);
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) });
    const before = Object.fromEntries(Object.entries(MIGRATIONS).filter(([name]) => name !== '005_guard_notices'));
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => before },
      migrationTableName: 'countersign_migrations',
      migrationLockTableName: 'countersign_migrations_lock',
      allowUnorderedMigrations: true,
    });
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    // One agent, one request (every NOT NULL column filled generically) and one delivery about it.
    const fill = (table: string, given: Record<string, unknown>) => {
      const cols = raw.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string; type: string; notnull: number }>;
      const row = Object.fromEntries(cols.filter((c) => c.notnull === 1).map((c) => [c.name, /int/i.test(c.type) ? 0 : 'x']));
      return { ...row, ...given };
    };
    await db.insertInto('agents').values(fill('agents', { id: 'agt_old', name: 'old-bot' })).execute();
    await db.insertInto('requests').values(fill('requests', { id: 'req_old', agent_id: 'agt_old' })).execute();
    await db
      .insertInto('deliveries')
      .values({ id: 'dlv_old', request_id: 'req_old', channel: 'hook', event: 'requested', status: 'delivered', attempts: 1, last_error: null, response: null, attempt_log: '[]', data: '{}', created_at: 1, updated_at: 1, finished_at: 1 })
      .execute();
    await expect(db.insertInto('deliveries').values({ id: 'dlv_null', request_id: null, channel: 'hook', event: 'guard.agent_paused', status: 'pending', attempts: 0, last_error: null, response: null, attempt_log: '[]', data: '{}', created_at: 1, updated_at: 1, finished_at: null }).execute()).rejects.toThrow(/NOT NULL/);
    await db.destroy();

    const engine = await Engine.open({ connection: await connect(database.url) });
    try {
      const kept = await engine.store.timers.getDelivery('dlv_old');
      expect(kept).toMatchObject({ request_id: 'req_old', channel: 'hook', status: 'delivered' });
      await engine.store.timers.insertDeliveries([{ ...kept!, id: 'dlv_guard', request_id: null, event: 'guard.agent_paused' }]);
      expect((await engine.store.timers.getDelivery('dlv_guard'))?.request_id).toBeNull();
      expect(await engine.store.timers.listDeliveries({ requestId: 'req_old', limit: 10 })).toHaveLength(1);
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

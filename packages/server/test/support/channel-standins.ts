/**
 * Local stand-ins for the hosted services the channels talk to, built from their documented
 * wire formats, so the real clients (fetch, @slack/web-api, nodemailer) run unchanged against
 * them. Each one records what it received and checks the documented shape, answering as the
 * real service does to a malformed call.
 *
 * - Slack Web API (https://api.slack.com/methods/chat.postMessage, chat.update): form- or
 *   JSON-encoded calls with `Authorization: Bearer xoxb-…`; `blocks` is Block Kit JSON.
 * - Microsoft Teams incoming webhook: `{type: "message", attachments: [{contentType:
 *   "application/vnd.microsoft.card.adaptive", content: AdaptiveCard}]}`; answers `1`.
 * - PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events):
 *   answers 202 `{status: "success", message: "Event processed", dedup_key}` or 400.
 * - Any webhook receiver, and an SMTP server (smtp-server) whose messages are parsed by mailparser.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface Received {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  at: number;
}

export interface StandIn<R = Received> {
  url: string;
  received: R[];
  /** Statuses to answer with, in order, before answering normally (e.g. [500, 500, 500]). */
  failNext(...statuses: number[]): void;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    void readBody(req).then((body) => handler(req, res, body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

/** A plain HTTP receiver: records every call, answers 200 (or the queued failures). */
export async function webhookReceiver(): Promise<StandIn> {
  const received: Received[] = [];
  const failures: number[] = [];
  const { server, url } = await listen((req, res, body) => {
    received.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, at: Date.now() });
    const status = failures.shift() ?? 200;
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(status === 200 ? 'ok' : 'server error');
  });
  return { url: `${url}/hooks/countersign`, received, failNext: (...s) => failures.push(...s), close: closer(server) };
}

// ---- Slack ----

export interface SlackCall {
  method: 'chat.postMessage' | 'chat.update';
  token: string;
  args: Record<string, unknown>;
  blocks: Array<Record<string, unknown>>;
}

const BLOCK_TYPES = new Set(['header', 'section', 'context', 'actions', 'divider', 'image', 'input', 'rich_text', 'file', 'video']);

/** Block Kit limits that Slack enforces with `invalid_blocks`. Returns the first violation. */
export function blockKitProblem(blocks: unknown): string | null {
  if (!Array.isArray(blocks) || blocks.length === 0 || blocks.length > 50) return 'blocks must be an array of 1–50 blocks';
  for (const [i, b] of blocks.entries()) {
    const block = b as Record<string, any>;
    if (!BLOCK_TYPES.has(block.type)) return `blocks[${i}]: unknown type ${block.type}`;
    const textObj = (t: any, max: number, plainOnly = false) =>
      t && (t.type === 'plain_text' || (!plainOnly && t.type === 'mrkdwn')) && typeof t.text === 'string' && t.text.length >= 1 && t.text.length <= max;
    if (block.type === 'header' && !textObj(block.text, 150, true)) return `blocks[${i}]: header needs plain_text ≤ 150`;
    if (block.type === 'section') {
      if (!block.text && !block.fields) return `blocks[${i}]: section needs text or fields`;
      if (block.text && !textObj(block.text, 3000)) return `blocks[${i}]: section text ≤ 3000`;
      if (block.fields && (!Array.isArray(block.fields) || block.fields.length > 10 || !block.fields.every((f: any) => textObj(f, 2000)))) {
        return `blocks[${i}]: at most 10 fields of ≤ 2000`;
      }
    }
    if (block.type === 'context' && (!Array.isArray(block.elements) || block.elements.length > 10 || !block.elements.every((e: any) => textObj(e, 3000)))) {
      return `blocks[${i}]: context elements`;
    }
    if (block.type === 'actions') {
      if (!Array.isArray(block.elements) || block.elements.length === 0 || block.elements.length > 25) return `blocks[${i}]: 1–25 action elements`;
      const ids = new Set<string>();
      for (const e of block.elements as any[]) {
        if (e.type !== 'button' || !textObj(e.text, 75, true)) return `blocks[${i}]: buttons need plain_text ≤ 75`;
        if (typeof e.action_id !== 'string' || e.action_id.length > 255 || ids.has(e.action_id)) return `blocks[${i}]: action_id unique, ≤ 255`;
        ids.add(e.action_id);
        if (e.value !== undefined && (typeof e.value !== 'string' || e.value.length > 2000)) return `blocks[${i}]: value ≤ 2000`;
        if (e.style !== undefined && e.style !== 'primary' && e.style !== 'danger') return `blocks[${i}]: style primary|danger`;
      }
    }
  }
  return null;
}

export async function slackApi(token: string): Promise<StandIn<SlackCall> & { apiUrl: string }> {
  const received: SlackCall[] = [];
  const failures: number[] = [];
  const posted = new Map<string, string>(); // ts → channel
  let seq = 0;
  const { server, url } = await listen((req, res, body) => {
    const method = (req.url ?? '').replace(/^\/api\//, '').split('?')[0] as SlackCall['method'];
    const type = (req.headers['content-type'] ?? '').split(';')[0];
    let args: Record<string, unknown>;
    if (type === 'application/x-www-form-urlencoded') args = Object.fromEntries(new URLSearchParams(body));
    else if (type === 'application/json') args = JSON.parse(body) as Record<string, unknown>;
    else return json(res, 200, { ok: false, error: 'invalid_form_data' });
    const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1] ?? (args['token'] as string | undefined);
    const status = failures.shift();
    if (status !== undefined) return json(res, status, { ok: false, error: 'internal_error' });
    if (auth !== token) return json(res, 200, { ok: false, error: 'invalid_auth' });
    if (method !== 'chat.postMessage' && method !== 'chat.update') return json(res, 200, { ok: false, error: 'unknown_method' });
    const blocks = typeof args['blocks'] === 'string' ? (JSON.parse(args['blocks']) as Array<Record<string, unknown>>) : (args['blocks'] as Array<Record<string, unknown>>);
    if (!args['channel']) return json(res, 200, { ok: false, error: 'channel_not_found' });
    const problem = blockKitProblem(blocks);
    if (problem) return json(res, 200, { ok: false, error: 'invalid_blocks', errors: [problem] });
    received.push({ method, token: auth, args, blocks });
    if (method === 'chat.update') {
      const ts = String(args['ts']);
      if (posted.get(ts) !== args['channel']) return json(res, 200, { ok: false, error: 'message_not_found' });
      return json(res, 200, { ok: true, channel: args['channel'], ts, text: args['text'] });
    }
    const ts = `1700000000.${String(++seq).padStart(6, '0')}`;
    posted.set(ts, String(args['channel']));
    return json(res, 200, { ok: true, channel: args['channel'], ts, message: { text: args['text'], ts } });
  });
  return { url, apiUrl: `${url}/api/`, received, failNext: (...s) => failures.push(...s), close: closer(server) };
}

// ---- Teams ----

export async function teamsWebhook(): Promise<StandIn<{ card: Record<string, any>; raw: unknown }>> {
  const received: Array<{ card: Record<string, any>; raw: unknown }> = [];
  const failures: number[] = [];
  const { server, url } = await listen((req, res, body) => {
    const status = failures.shift();
    if (status !== undefined) {
      res.writeHead(status);
      return res.end('Microsoft Teams endpoint error');
    }
    let message: any;
    try {
      message = JSON.parse(body);
    } catch {
      res.writeHead(400);
      return res.end('Bad payload received by generic incoming webhook.');
    }
    const attachment = message?.attachments?.[0];
    const card = attachment?.content;
    const ok =
      message?.type === 'message' &&
      attachment?.contentType === 'application/vnd.microsoft.card.adaptive' &&
      card?.type === 'AdaptiveCard' &&
      typeof card?.version === 'string' &&
      Array.isArray(card?.body) &&
      (card.actions ?? []).every((a: any) => a.type === 'Action.OpenUrl' && typeof a.url === 'string' && typeof a.title === 'string');
    if (!ok) {
      res.writeHead(400);
      return res.end('Bad payload received by generic incoming webhook.');
    }
    received.push({ card, raw: message });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('1');
  });
  return { url: `${url}/webhookb2/incoming`, received, failNext: (...s) => failures.push(...s), close: closer(server) };
}

// ---- PagerDuty ----

export async function pagerDutyEvents(): Promise<StandIn<Record<string, any>>> {
  const received: Array<Record<string, any>> = [];
  const failures: number[] = [];
  const { server, url } = await listen((req, res, body) => {
    const status = failures.shift();
    if (status !== undefined) return json(res, status, { status: 'error', message: 'try again' });
    let e: any;
    try {
      e = JSON.parse(body);
    } catch {
      return json(res, 400, { status: 'invalid event', message: 'Event object is invalid', errors: ['malformed JSON'] });
    }
    const errors: string[] = [];
    if (typeof e.routing_key !== 'string' || e.routing_key.length !== 32) errors.push('routing_key must be a 32 character integration key');
    if (!['trigger', 'acknowledge', 'resolve'].includes(e.event_action)) errors.push('event_action must be trigger, acknowledge or resolve');
    if (e.dedup_key !== undefined && (typeof e.dedup_key !== 'string' || e.dedup_key.length > 255)) errors.push('dedup_key ≤ 255');
    if (e.event_action !== 'trigger' && !e.dedup_key) errors.push('dedup_key is required to acknowledge or resolve');
    if (e.event_action === 'trigger') {
      const p = e.payload;
      if (!p || typeof p.summary !== 'string' || p.summary.length === 0 || p.summary.length > 1024) errors.push('payload.summary 1–1024');
      if (!p || typeof p.source !== 'string' || !p.source) errors.push('payload.source is required');
      if (!p || !['critical', 'error', 'warning', 'info'].includes(p.severity)) errors.push('payload.severity critical|error|warning|info');
      if (p?.timestamp !== undefined && Number.isNaN(Date.parse(p.timestamp))) errors.push('payload.timestamp ISO 8601');
      for (const l of e.links ?? []) if (typeof l.href !== 'string') errors.push('links[].href');
    }
    if (errors.length > 0) return json(res, 400, { status: 'invalid event', message: 'Event object is invalid', errors });
    received.push(e);
    return json(res, 202, { status: 'success', message: 'Event processed', dedup_key: e.dedup_key ?? `pd_${received.length}` });
  });
  return { url: `${url}/v2/enqueue`, received, failNext: (...s) => failures.push(...s), close: closer(server) };
}

// ---- SMTP ----

export async function smtpInbox(): Promise<StandIn<ParsedMail> & { smtpUrl: string }> {
  const received: ParsedMail[] = [];
  const failures: number[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(_address, _session, callback) {
      const code = failures[0];
      if (code !== undefined) {
        failures.shift();
        const err = new Error(code >= 500 ? 'mailbox unavailable' : 'try again later') as Error & { responseCode: number };
        err.responseCode = code;
        return callback(err);
      }
      callback();
    },
    onData(stream, _session, callback) {
      simpleParser(stream)
        .then((mail) => {
          received.push(mail);
          callback();
        })
        .catch((err: Error) => callback(err));
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    smtpUrl: `smtp://127.0.0.1:${port}`,
    received,
    failNext: (...s) => failures.push(...s),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

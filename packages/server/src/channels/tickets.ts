/**
 * Ticket state coming back: ServiceNow's signed callback and its polled records, and Jira's
 * webhook. Both end in `ticketState`, which decides what a state change does:
 *
 * 1. The ticket must be the one this channel opened for that request: the delivery that opened
 *    it (`deliveries.response` = `{ticket}`) is looked up by request and channel, and its id must
 *    be the ticket's. A request id copied into another ticket decides nothing.
 * 2. A request no longer pending, or a channel without `decide:` (the default), or a state that
 *    is in neither `decide.approve` nor `decide.reject`: the change is mirrored, nothing else
 *    (answered `{decided: false, why}`; nothing is written).
 * 3. Otherwise the acting user (ServiceNow `sys_updated_by`, Jira's webhook `user.accountId`)
 *    must map to an operator (`users:`), and the vote goes through the gate as that operator
 *    (inbound.ts), exactly as a dashboard vote: MFA, match code, allowlists, limits, judged on
 *    the payload that will run; its reason names the channel, the ticket and the user.
 *
 * Each state change acts once: `(channel, ticket, updated-at, state)` is claimed in the
 * `nonces` table before the vote, so a callback and a poll that see the same change, or a
 * replayed webhook, vote once.
 *
 * Signatures:
 * - ServiceNow has no signing of its own: the outbound REST message (a business rule) sends
 *   `X-Countersign-Timestamp` (unix seconds) and `X-Countersign-Signature: sha256=<hex
 *   HMAC-SHA256 of "{timestamp}.{body}">` under `callbackSecretEnv`; 5 minutes either way; the
 *   signature is remembered (replay). The body is the record as the Table API gives it
 *   (`sys_id`, `number`, `correlation_id`, `sys_updated_on`, `sys_updated_by`, the decide field).
 * - Jira Cloud webhooks with a secret send `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the
 *   body>`; the delivery's `X-Atlassian-Webhook-Identifier` (else the signature) is remembered,
 *   and the payload's `timestamp` must be within an hour.
 */
import { createHash } from 'node:crypto';
import { CountersignError } from '@countersign/core';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Engine } from '../engine/engine.ts';
import type { JiraConfig, ServiceNowConfig } from './config.ts';
import { hmacSha256Hex, mappedOperator, REQUEST_ID, sameText, shownId, voteAs } from './inbound.ts';
import type { ChannelRegistry } from './registry.ts';
import { authHeader, type TicketRef } from './servicenow.ts';
import { type ApiEnv as Env } from '../http/routes/contract.ts';

export const SERVICENOW_CALLBACK_PREFIX = '/v1/integrations/servicenow/';
export const JIRA_WEBHOOK_PREFIX = '/v1/integrations/jira/';
export const SERVICENOW_MAX_BODY = 64 * 1024;
/** Jira's issue events carry every field of the issue. */
export const JIRA_MAX_BODY = 512 * 1024;
const SERVICENOW_TOLERANCE_S = 5 * 60;
const JIRA_TOLERANCE_MS = 60 * 60 * 1000;
/** How long one state change is remembered (acted on once). */
const STATE_MEMORY_MS = 30 * 24 * 3600 * 1000;

export interface TicketChange {
  /** The request id the ticket says it is for (ServiceNow correlation_id; Jira label). */
  requestId: string;
  ticketId: string;
  ticketKey: string;
  state: string;
  updatedAt: string;
  user: string;
}

export type TicketOutcome = { decided: false; why: string } | { decided: true; requestId: string; status: string };

type TicketConfig = ServiceNowConfig | JiraConfig;

const systemName = (config: TicketConfig) => (config.type === 'servicenow' ? 'ServiceNow' : 'Jira');

/** What one state change of a ticket does (see the module comment). Refusals throw and change nothing. */
export async function ticketState(engine: Engine, config: TicketConfig, change: TicketChange): Promise<TicketOutcome> {
  if (!REQUEST_ID.test(change.requestId)) return { decided: false, why: 'the ticket names no Countersign request' };
  const opened = await engine.store.timers.listDeliveries({ requestId: change.requestId, channel: config.name, status: 'delivered', limit: 50 });
  const ours = opened.some((d) => {
    if (d.response === null) return false;
    try {
      const ref = JSON.parse(d.response) as TicketRef;
      return ref?.ticket?.id === change.ticketId || (config.type === 'jira' && ref?.ticket?.key === change.ticketKey);
    } catch {
      return false;
    }
  });
  const system = systemName(config);
  if (!ours) throw new CountersignError('FORBIDDEN', `${system} ticket ${shownId(change.ticketKey)} was not opened by channel ${config.name} for request ${change.requestId}`);
  const request = await engine.requestById(change.requestId);
  if (!request) throw new CountersignError('NOT_FOUND', `no request ${change.requestId}`);
  if (request.status !== 'pending') return { decided: false, why: `request ${request.id} is already ${request.status}: the ticket mirrors it` };
  const decide = config.settings.decide;
  if (!decide) return { decided: false, why: `channel ${config.name} mirrors only: tickets decide nothing unless the policy sets channels.${config.name}.decide` };
  const verdict = decide.approve.includes(change.state) ? 'approve' : decide.reject.includes(change.state) ? 'reject' : undefined;
  if (!verdict) return { decided: false, why: `state "${shownId(change.state)}" is not a deciding state` };
  const principal = await mappedOperator(engine, config.settings.users, change.user, system);
  if (!(await engine.claimNonce(`ticket:${config.name}`, `${change.ticketId}:${change.updatedAt}:${change.state}`, STATE_MEMORY_MS))) {
    return { decided: false, why: 'this ticket change was already acted on' };
  }
  const via = `via ${system} ${shownId(change.ticketKey)} (user ${shownId(change.user)})`;
  const decided = await voteAs(engine, principal, change.requestId, { verdict, via: verdict === 'reject' ? `in ${system}; ${via}` : via });
  return { decided: true, requestId: decided.id, status: decided.status };
}

const bad = (message: string) => new CountersignError('BAD_SIGNATURE', message);

export function serviceNowSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${hmacSha256Hex(secret, `${timestamp}.${body}`)}`;
}

export function jiraSignature(secret: string, body: string): string {
  return `sha256=${hmacSha256Hex(secret, body)}`;
}

/** A ServiceNow record (callback body or polled row) as a change; undefined when it is not one of ours. */
export function serviceNowChange(config: ServiceNowConfig, record: Record<string, unknown>): TicketChange | undefined {
  const str = (k: string) => (typeof record[k] === 'string' ? (record[k] as string) : '');
  const field = config.settings.decide?.field ?? (config.settings.table === 'change_request' ? 'approval' : 'state');
  if (!/^[0-9a-f]{32}$/.test(str('sys_id'))) return undefined;
  return { requestId: str('correlation_id'), ticketId: str('sys_id'), ticketKey: str('number') || str('sys_id'), state: str(field), updatedAt: str('sys_updated_on'), user: str('sys_updated_by') };
}

async function readJsonObject(raw: string, what: string): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new CountersignError('BAD_JSON', `the ${what} body is not JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CountersignError('BAD_JSON', `the ${what} body is not an object`);
  return value as Record<string, unknown>;
}

export function mountTicketRoutes(app: OpenAPIHono<Env>, engine: Engine, channels: ChannelRegistry, log: (message: string) => void = () => {}): void {
  app.post(`${SERVICENOW_CALLBACK_PREFIX}:channel`, async (c) => {
    const name = c.req.param('channel');
    const config = channels.configsOf('servicenow').find((s) => s.name === name);
    if (!config?.settings.callbackSecret) throw new CountersignError('NOT_FOUND', `no ServiceNow channel "${shownId(name)}" with a callback secret is configured`);
    const body = await c.req.text();
    if (body.length > SERVICENOW_MAX_BODY) throw new CountersignError('BODY_TOO_LARGE', `a ServiceNow callback is at most ${SERVICENOW_MAX_BODY} bytes`);
    const timestamp = c.req.header('x-countersign-timestamp') ?? '';
    const signature = c.req.header('x-countersign-signature') ?? '';
    const now = Math.floor(engine.clock() / 1000);
    if (!/^\d{1,12}$/.test(timestamp) || Math.abs(now - Number(timestamp)) > SERVICENOW_TOLERANCE_S) throw bad('the ServiceNow callback timestamp is missing or more than 5 minutes from now');
    if (!sameText(serviceNowSignature(config.settings.callbackSecret, timestamp, body), signature)) throw bad('the ServiceNow callback signature does not verify');
    if (!(await engine.claimNonce(`servicenow:${config.name}`, signature, 2 * SERVICENOW_TOLERANCE_S * 1000))) throw bad('this ServiceNow callback was already received (replay)');
    const record = await readJsonObject(body, 'ServiceNow callback');
    const change = serviceNowChange(config, record);
    if (!change) throw new CountersignError('VALIDATION_FAILED', 'the ServiceNow callback is not a record with a sys_id');
    return c.json(await ticketState(engine, config, change), 200);
  });

  app.post(`${JIRA_WEBHOOK_PREFIX}:channel`, async (c) => {
    const name = c.req.param('channel');
    const config = channels.configsOf('jira').find((s) => s.name === name);
    if (!config?.settings.webhookSecret) throw new CountersignError('NOT_FOUND', `no Jira channel "${shownId(name)}" with a webhook secret is configured`);
    const body = await c.req.text();
    if (body.length > JIRA_MAX_BODY) throw new CountersignError('BODY_TOO_LARGE', `a Jira webhook is at most ${JIRA_MAX_BODY} bytes`);
    const signature = c.req.header('x-hub-signature') ?? '';
    if (!sameText(jiraSignature(config.settings.webhookSecret, body), signature)) throw bad('the Jira webhook signature (X-Hub-Signature) does not verify');
    const payload = await readJsonObject(body, 'Jira webhook');
    const timestamp = payload['timestamp'];
    if (typeof timestamp !== 'number' || Math.abs(engine.clock() - timestamp) > JIRA_TOLERANCE_MS) throw bad('the Jira webhook timestamp is missing or more than an hour from now');
    // The replay guard is keyed on what is signed (the body, which carries its own timestamp),
    // not on the unsigned X-Atlassian-Webhook-Identifier header.
    if (!(await engine.claimNonce(`jira:${config.name}`, `body:${createHash('sha256').update(body).digest('hex')}`, 2 * JIRA_TOLERANCE_MS))) throw bad('this Jira webhook was already received (replay)');
    const issue = payload['issue'] as { id?: unknown; key?: unknown; fields?: { status?: { name?: unknown }; labels?: unknown; updated?: unknown } } | undefined;
    if (typeof issue?.key !== 'string' || typeof issue.id !== 'string') return c.json({ decided: false, why: 'not an issue event' }, 200);
    const labels = Array.isArray(issue.fields?.labels) ? (issue.fields.labels as unknown[]) : [];
    const label = labels.find((l): l is string => typeof l === 'string' && l.startsWith('countersign-req_'));
    // Only this change counts: the changelog item that moved the status, made by this event's user.
    // An event that did not change the status (a description, a comment) decides nothing, whatever
    // the issue's status is now; so does one whose changelog or user cannot be read.
    const changelog = payload['changelog'] as { id?: unknown; items?: unknown } | undefined;
    const items = Array.isArray(changelog?.items) ? (changelog.items as Array<{ field?: unknown; fieldId?: unknown; toString?: unknown }>) : [];
    const moved = items.filter((i) => i !== null && typeof i === 'object' && (i.field === 'status' || i.fieldId === 'status'));
    const status = moved.length === 1 && typeof moved[0]!.toString === 'string' ? (moved[0]!.toString as string) : undefined;
    const changeId = typeof changelog?.id === 'string' || typeof changelog?.id === 'number' ? String(changelog.id) : undefined;
    const user = (payload['user'] as { accountId?: unknown } | undefined)?.accountId;
    if (status === undefined || changeId === undefined) {
      const why = moved.length === 0 ? 'this change did not touch the issue\'s status: it decides nothing' : 'the webhook\'s changelog does not say what the status was changed to: it decides nothing';
      log(`jira ${config.name}: ${issue.key}: ${why}`);
      return c.json({ decided: false, why }, 200);
    }
    const change: TicketChange = {
      requestId: label ? label.slice('countersign-'.length) : '',
      ticketId: issue.id,
      ticketKey: issue.key,
      state: status,
      updatedAt: `changelog:${changeId}`,
      user: typeof user === 'string' ? user : '',
    };
    return c.json(await ticketState(engine, config, change), 200);
  });
}

/**
 * Polling ServiceNow: every `poll`, each ServiceNow channel's table is read for records with a
 * Countersign correlation id updated since the last round (`sys_updated_on>=cursor`, oldest
 * first, 100 a round), and each goes through `ticketState` like a callback. The cursor is this
 * process's (starting `poll` before start); a record seen twice acts once (the state claim).
 */
export class ServiceNowPoller {
  private timer: NodeJS.Timeout | undefined;
  private readonly cursors = new Map<string, string>();
  private readonly lastRun = new Map<string, number>();
  private running: Promise<void> | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly channels: ChannelRegistry,
    private readonly onError: (err: unknown) => void = () => {},
    private readonly tickMs = 1_000,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.round().finally(() => (this.running = undefined));
    }, this.tickMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass over the channels whose poll is due (tests call it directly). */
  async round(force = false): Promise<void> {
    const now = this.engine.clock();
    for (const config of this.channels.configsOf('servicenow')) {
      const every = config.settings.pollMs;
      if (every === undefined) continue;
      if (!force && now - (this.lastRun.get(config.name) ?? 0) < every) continue;
      this.lastRun.set(config.name, now);
      try {
        await this.poll(config, now);
      } catch (err) {
        this.onError(err);
      }
    }
  }

  private async poll(config: ServiceNowConfig, now: number): Promise<void> {
    const cursor = this.cursors.get(config.name) ?? serviceNowTime(now - (config.settings.pollMs ?? 0) - 60_000);
    const field = config.settings.decide?.field ?? (config.settings.table === 'change_request' ? 'approval' : 'state');
    const query = `correlation_idSTARTSWITHreq_^sys_updated_on>=${cursor}^ORDERBYsys_updated_on`;
    const url = `${config.settings.instanceUrl}/api/now/table/${config.settings.table}?sysparm_query=${encodeURIComponent(query)}&sysparm_fields=${encodeURIComponent(['sys_id', 'number', 'correlation_id', 'sys_updated_on', 'sys_updated_by', field].join(','))}&sysparm_limit=100`;
    const res = await fetch(url, { headers: { authorization: authHeader(config.settings.auth), accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(config.timeoutMs) });
    if (!res.ok) throw new Error(`servicenow ${config.name}: polling answered HTTP ${res.status}`);
    const body = (await res.json()) as { result?: unknown };
    const rows = Array.isArray(body.result) ? (body.result as Array<Record<string, unknown>>) : [];
    let newest = cursor;
    for (const row of rows) {
      const change = serviceNowChange(config, row);
      if (!change) continue;
      if (/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(change.updatedAt) && change.updatedAt > newest) newest = change.updatedAt;
      try {
        await ticketState(this.engine, config, change);
      } catch (err) {
        this.onError(err);
      }
    }
    this.cursors.set(config.name, newest);
  }
}

/** `2026-12-02 17:41:11`: the Table API's `sys_updated_on` (UTC). */
export function serviceNowTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

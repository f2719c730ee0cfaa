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
 * 3. Otherwise the user who made THAT state change must map to an operator: in Jira the webhook's
 *    `user` of an event whose `changelog.items` moves the status (any other edit decides
 *    nothing); in ServiceNow the `user` of the newest `sys_audit` row for the record's deciding
 *    field, whose new value must be the state seen (never `sys_updated_by`, which is only the
 *    last editor). When it cannot be established, nothing is decided and the answer says why. It
 *    must map to an operator (`users:`), and the vote goes through the gate as that operator
 *    (inbound.ts), exactly as a dashboard vote: MFA, match code, allowlists, limits, judged on
 *    the payload that will run; its reason names the channel, the ticket and the user.
 *
 * Each state change acts once: `(channel, ticket, change)` (the Jira changelog id, the ServiceNow sys_audit row) is claimed in the
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
 *   body>`; a hash of the signed body is remembered (replay; the unsigned
 *   `X-Atlassian-Webhook-Identifier` is not trusted for it), and the payload's `timestamp` must
 *   be within an hour.
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
  /**
   * Who made the change that set `state` (and that change's id), looked up only when the state
   * would decide; a string is why it cannot be established, and then nothing is decided.
   * Without it, `user` and `updatedAt` are this change's own (Jira's changelog).
   */
  actor?: () => Promise<{ user: string; changeId: string } | string>;
}

export type TicketOutcome = { decided: false; why: string } | { decided: true; requestId: string; status: string };

type TicketConfig = ServiceNowConfig | JiraConfig;

const systemName = (config: TicketConfig) => (config.type === 'servicenow' ? 'ServiceNow' : 'Jira');

/** What one state change of a ticket does (see the module comment). Refusals throw and change nothing. */
export async function ticketState(engine: Engine, config: TicketConfig, change: TicketChange): Promise<TicketOutcome> {
  if (!REQUEST_ID.test(change.requestId)) return { decided: false, why: 'the ticket names no Countersign request' };
  const opened = await engine.storedDeliveries({ requestId: change.requestId, channel: config.name, status: 'delivered', limit: 50 });
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
  let user = change.user;
  let changeKey = `${change.updatedAt}:${change.state}`;
  if (change.actor) {
    const actor = await change.actor();
    if (typeof actor === 'string') return { decided: false, why: actor };
    user = actor.user;
    changeKey = `audit:${actor.changeId}`;
  }
  const principal = await mappedOperator(engine, config.settings.users, user, system);
  if (!(await engine.claimNonce(`ticket:${config.name}`, `${change.ticketId}:${changeKey}`, STATE_MEMORY_MS))) {
    return { decided: false, why: 'this ticket change was already acted on' };
  }
  const via = `via ${system} ${shownId(change.ticketKey)} (user ${shownId(user)})`;
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

const decideField = (config: ServiceNowConfig) => config.settings.decide?.field ?? (config.settings.table === 'change_request' ? 'approval' : 'state');
/** The most a ServiceNow Table API page is read to (a page is 100 rows of a few fields). */
export const SERVICENOW_MAX_PAGE = 1024 * 1024;

async function serviceNowGet(config: ServiceNowConfig, table: string, query: string, fields: string[], limit: number): Promise<Array<Record<string, unknown>>> {
  const url = `${config.settings.instanceUrl}/api/now/table/${table}?sysparm_query=${encodeURIComponent(query)}&sysparm_fields=${encodeURIComponent(fields.join(','))}&sysparm_limit=${limit}`;
  const res = await fetch(url, { headers: { authorization: authHeader(config.settings.auth), accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(config.timeoutMs) });
  if (!res.ok) throw new Error(`servicenow ${config.name}: ${table} answered HTTP ${res.status}`);
  const text = await res.text();
  if (text.length > SERVICENOW_MAX_PAGE) throw new Error(`servicenow ${config.name}: ${table} answered more than ${SERVICENOW_MAX_PAGE} bytes`);
  let body: { result?: unknown };
  try {
    body = JSON.parse(text) as { result?: unknown };
  } catch {
    throw new Error(`servicenow ${config.name}: ${table} answered something that is not JSON`);
  }
  return Array.isArray(body?.result) ? (body.result as Array<Record<string, unknown>>).filter((r) => r !== null && typeof r === 'object') : [];
}

/**
 * Who set the record's deciding field to its current value: the newest `sys_audit` row for that
 * record and field (its `user` is the user_name). `sys_updated_by` is only whoever edited the
 * record last (a work note, a description), so it is never used. No audit row, or one whose
 * new value is not the state seen: nothing is decided (fail closed), and the answer says why.
 */
export async function serviceNowActor(config: ServiceNowConfig, sysId: string, state: string): Promise<{ user: string; changeId: string } | string> {
  const field = decideField(config);
  let rows: Array<Record<string, unknown>>;
  try {
    rows = await serviceNowGet(config, 'sys_audit', `tablename=${config.settings.table}^documentkey=${sysId}^fieldname=${field}^ORDERBYDESCsys_created_on^ORDERBYDESCrecord_checkpoint`, ['sys_id', 'user', 'newvalue', 'sys_created_on'], 1);
  } catch (err) {
    return `who changed ${field} cannot be read from sys_audit (${(err as Error).message}): it decides nothing`;
  }
  const row = rows[0];
  if (!row || typeof row['user'] !== 'string' || typeof row['sys_id'] !== 'string' || !row['user']) return `sys_audit has no record of who changed ${field}: it decides nothing`;
  if (row['newvalue'] !== state) return `the newest sys_audit change of ${field} is not to "${shownId(state)}": it decides nothing`;
  return { user: row['user'], changeId: row['sys_id'] };
}

/** A ServiceNow record (callback body or polled row) as a change; undefined when it is not one of ours. */
export function serviceNowChange(config: ServiceNowConfig, record: Record<string, unknown>): TicketChange | undefined {
  const str = (k: string) => (typeof record[k] === 'string' ? (record[k] as string) : '');
  const field = decideField(config);
  if (!/^[0-9a-f]{32}$/.test(str('sys_id'))) return undefined;
  const state = str(field);
  return {
    requestId: str('correlation_id'),
    ticketId: str('sys_id'),
    ticketKey: str('number') || str('sys_id'),
    state,
    updatedAt: str('sys_updated_on'),
    user: '',
    actor: () => serviceNowActor(config, str('sys_id'), state),
  };
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
    const outcome = await ticketState(engine, config, change);
    if (!outcome.decided && outcome.why.includes('sys_audit')) log(`servicenow ${config.name}: ${shownId(change.ticketKey)}: ${outcome.why}`);
    return c.json(outcome, 200);
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
 * Countersign correlation id updated since the last round, oldest first, paged 100 at a time on
 * (sys_updated_on, sys_id) so a burst in one second is read through (at most 50 pages a round),
 * and each goes through `ticketState` like a callback. The cursor is this
 * process's (starting `poll` before start); a record seen twice acts once (the state claim).
 */
const SN_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/;
const POLL_PAGE = 100;
/** At most this many pages a round (the next round goes on from the newest second seen). */
const POLL_MAX_PAGES = 50;
const POLL_LOOKBACK_MS = 10_000;

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
    const field = decideField(config);
    const fields = ['sys_id', 'number', 'correlation_id', 'sys_updated_on', 'sys_updated_by', field];
    // Each round reads again the last POLL_LOOKBACK_MS before the newest change seen: a record
    // whose transaction committed late, or a clock a little off, still gets read (seen twice, it acts once).
    const cursor = this.cursors.get(config.name);
    const start = cursor !== undefined ? serviceNowTime(Date.parse(`${cursor.replace(' ', 'T')}Z`) - POLL_LOOKBACK_MS) : serviceNowTime(now - (config.settings.pollMs ?? 0) - 60_000);
    // Keyset paging on (sys_updated_on, sys_id): first the rest of the current second past the
    // last sys_id, then what is newer; so any number of records in one second is read through.
    // Each round starts again at the newest second seen (its records may still be changing).
    let at = start;
    let lastId = '';
    let newest = start;
    for (let page = 0; page < POLL_MAX_PAGES; page++) {
      const rest = await serviceNowGet(config, config.settings.table, `correlation_idSTARTSWITHreq_^sys_updated_on=${at}${lastId ? `^sys_id>${lastId}` : ''}^ORDERBYsys_id`, fields, POLL_PAGE);
      const rows = rest.length < POLL_PAGE ? [...rest, ...(await serviceNowGet(config, config.settings.table, `correlation_idSTARTSWITHreq_^sys_updated_on>${at}^ORDERBYsys_updated_on^ORDERBYsys_id`, fields, POLL_PAGE))] : rest;
      if (rows.length === 0) break;
      for (const row of rows) {
        const change = serviceNowChange(config, row);
        if (!change || !SN_TIME.test(change.updatedAt)) continue;
        if (change.updatedAt > at || (change.updatedAt === at && change.ticketId > lastId)) {
          at = change.updatedAt;
          lastId = change.ticketId;
        }
        if (change.updatedAt > newest) newest = change.updatedAt;
        try {
          const outcome = await ticketState(this.engine, config, change);
          // Who made the state change could not be established: say so (nothing was decided).
          if (!outcome.decided && outcome.why.includes('sys_audit')) this.onError(new Error(`servicenow ${config.name}: ${change.ticketKey}: ${outcome.why}`));
        } catch (err) {
          this.onError(err);
        }
      }
      if (rest.length < POLL_PAGE && rows.length - rest.length < POLL_PAGE) break;
    }
    this.cursors.set(config.name, newest);
  }
}

/** `2026-12-02 17:41:11`: the Table API's `sys_updated_on` (UTC). */
export function serviceNowTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

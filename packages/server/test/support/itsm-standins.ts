/**
 * Local stand-ins for ServiceNow's Table API, Jira Cloud's REST API v3 and the Bot Framework's
 * token issuer, built from their documented wire formats, so the real clients (fetch, jira.js,
 * jose on our side) run unchanged against them.
 *
 * - ServiceNow Table API: `POST /api/now/table/{table}` → 201 `{result: record}`;
 *   `GET /api/now/table/{table}?sysparm_query=…&sysparm_fields=…&sysparm_limit=…` → `{result: [...]}`;
 *   `PATCH /api/now/table/{table}/{sys_id}` → `{result: record}`; 401 `{error: {message, detail},
 *   status: "failure"}` without valid basic or bearer auth; records carry `sys_id` (32 hex),
 *   `number` (INC0010001 / CHG0030001), `sys_updated_on` (`YYYY-MM-DD HH:mm:ss`, UTC) and
 *   `sys_updated_by` (user_name); `sys_audit` (read through the same Table API) holds one row per
 *   changed field (`tablename`, `documentkey`, `fieldname`, `oldvalue`, `newvalue`, `user`,
 *   `sys_created_on`, `record_checkpoint`). Encoded queries: `field=value`, `fieldSTARTSWITHvalue`,
 *   `field>=value`, `field>value`, `^` (and), `ORDERBYfield` / `ORDERBYDESCfield` (several, in
 *   order); `sysparm_offset` and `sysparm_limit` page.
 * - Jira Cloud REST v3: `POST /rest/api/3/issue` → 201 `{id, key, self}` (400 `{errorMessages,
 *   errors}` on a missing project/summary/issuetype or a description that is not an ADF doc);
 *   `GET /rest/api/3/issue/{key}/transitions` → `{transitions: [{id, name, to: {name}}]}`;
 *   `POST …/transitions` `{transition: {id}}` → 204; `POST …/comment` → 201; basic auth
 *   `email:apiToken` or a bearer, else 401.
 * - Bot Framework: an OpenID metadata document (`issuer`, `jwks_uri`,
 *   `id_token_signing_alg_values_supported: ["RS256"]`) and a JWKS whose keys carry
 *   `endorsements` (channel ids), with a token signer for tests.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => void readBody(req).then((body) => handler(req, res, body)));
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

function json(res: ServerResponse, status: number, value?: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(value === undefined ? '' : JSON.stringify(value));
}

const basicUser = (header: string | undefined): { user: string; password: string } | undefined => {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? undefined : { user: text.slice(0, i), password: text.slice(i + 1) };
};

export const snTime = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

// ---- ServiceNow ----

export interface SnCall {
  method: string;
  path: string;
  query: string;
  user: string;
  body: Record<string, any> | null;
}

export interface ServiceNowStandIn {
  url: string;
  calls: SnCall[];
  records: Map<string, Record<string, string>>;
  /** sys_audit: one row per changed field (tablename, documentkey, fieldname, oldvalue, newvalue, user, sys_created_on, record_checkpoint). */
  audit: Array<Record<string, string>>;
  failNext(...statuses: number[]): void;
  /** A ServiceNow user changes a record (the UI), as the platform stamps it. */
  update(sysId: string, fields: Record<string, string>, user: string, at?: number): Record<string, string>;
  close(): Promise<void>;
}

export async function serviceNowTable(credentials: { user: string; password: string } | { bearer: string }, clock: () => number = Date.now): Promise<ServiceNowStandIn> {
  const calls: SnCall[] = [];
  const failures: number[] = [];
  const records = new Map<string, Record<string, string>>();
  let seq = 0;
  const audit: Array<Record<string, string>> = [];
  const SYSTEM = new Set(['sys_id', 'sys_updated_on', 'sys_updated_by', 'sys_mod_count', 'sys_created_on', 'sys_created_by', 'sys_class_name', 'number']);
  /** The platform's history: one sys_audit row per changed field of an audited table (user = user_name). */
  const audited = (record: Record<string, string>, before: Record<string, string>, user: string, at: number) => {
    for (const [field, value] of Object.entries(record)) {
      if (SYSTEM.has(field) || before[field] === value) continue;
      audit.push({ sys_id: createHash('md5').update(`audit:${audit.length}:${randomBytes(8).toString('hex')}`).digest('hex'), tablename: record['sys_class_name']!, documentkey: record['sys_id']!, fieldname: field, oldvalue: before[field] ?? '', newvalue: value, user, sys_created_on: snTime(at), record_checkpoint: record['sys_mod_count']! });
    }
  };
  const stamp = (record: Record<string, string>, user: string, at = clock(), before: Record<string, string> = {}) => {
    record['sys_updated_on'] = snTime(at);
    record['sys_updated_by'] = user;
    record['sys_mod_count'] = String(Number(record['sys_mod_count'] ?? '-1') + 1);
    audited(record, before, user, at);
    return record;
  };
  const matches = (record: Record<string, string>, query: string): boolean =>
    query
      .split('^')
      .filter((term) => term && !term.startsWith('ORDERBY'))
      .every((term) => {
        let m = /^([a-z_]+)STARTSWITH(.*)$/.exec(term);
        if (m) return (record[m[1]!] ?? '').startsWith(m[2]!);
        m = /^([a-z_]+)>=(.*)$/.exec(term);
        if (m) return (record[m[1]!] ?? '') >= m[2]!;
        m = /^([a-z_]+)>(.*)$/.exec(term);
        if (m) return (record[m[1]!] ?? '') > m[2]!;
        m = /^([a-z_]+)=(.*)$/.exec(term);
        if (m) return (record[m[1]!] ?? '') === m[2]!;
        throw new Error(`the stand-in does not know the query term ${term}`);
      });
  const { server, url } = await listen((req, res, raw) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    const basic = basicUser(auth);
    const ok = 'bearer' in credentials ? auth === `Bearer ${credentials.bearer}` : basic?.user === credentials.user && basic.password === credentials.password;
    const user = 'bearer' in credentials ? 'oauth.integration' : (basic?.user ?? '');
    const m = /^\/api\/now\/table\/(incident|change_request|sys_audit)(?:\/([0-9a-f]{32}))?$/.exec(u.pathname);
    let body: Record<string, any> | null = null;
    if (raw) {
      try {
        body = JSON.parse(raw) as Record<string, any>;
      } catch {
        return json(res, 400, { error: { message: 'Exception while reading request', detail: 'The payload is not valid JSON.' }, status: 'failure' });
      }
    }
    calls.push({ method: req.method ?? '', path: u.pathname, query: u.search, user, body });
    const status = failures.shift();
    if (status !== undefined) return json(res, status, { error: { message: 'Service Unavailable', detail: null }, status: 'failure' });
    if (!ok) return json(res, 401, { error: { message: 'User Not Authenticated', detail: 'Required to provide Auth information' }, status: 'failure' });
    if (!m) return json(res, 400, { error: { message: 'Invalid table', detail: null }, status: 'failure' });
    const [, table, sysId] = m;
    if (table === 'sys_audit' && req.method !== 'GET') return json(res, 403, { error: { message: 'Operation Failed', detail: 'ACL Exception Insert Failed due to security constraints' }, status: 'failure' });
    if (req.method === 'POST' && !sysId) {
      const id = createHash('md5').update(`${table}:${++seq}:${randomBytes(8).toString('hex')}`).digest('hex');
      const number = `${table === 'incident' ? 'INC' : 'CHG'}${String((table === 'incident' ? 10000 : 30000) + seq).padStart(7, '0')}`;
      const record: Record<string, string> = { sys_id: id, number, sys_class_name: table!, state: table === 'incident' ? '1' : '-5', approval: table === 'incident' ? 'not requested' : 'requested', sys_created_on: snTime(clock()), sys_created_by: user };
      for (const [k, v] of Object.entries(body ?? {})) if (k !== 'work_notes') record[k] = String(v);
      records.set(id, stamp(record, user, clock(), {}));
      return json(res, 201, { result: record });
    }
    if (req.method === 'GET' && !sysId) {
      const query = u.searchParams.get('sysparm_query') ?? '';
      const fields = (u.searchParams.get('sysparm_fields') ?? '').split(',').filter(Boolean);
      const limit = Number(u.searchParams.get('sysparm_limit') ?? '10000');
      const offset = Number(u.searchParams.get('sysparm_offset') ?? '0');
      // ORDERBYfield / ORDERBYDESCfield, in the order given (sys_mod_count-like numbers compare as numbers).
      const orders = [...query.matchAll(/ORDERBY(DESC)?([a-z_]+)/g)].map((o) => ({ desc: o[1] === 'DESC', field: o[2]! }));
      const source = table === 'sys_audit' ? audit : [...records.values()].filter((r) => r['sys_class_name'] === table);
      const rows = source.filter((r) => matches(r, query));
      if (orders.length) {
        rows.sort((a, b) => {
          for (const o of orders) {
            const c = (a[o.field] ?? '').localeCompare(b[o.field] ?? '', 'en', { numeric: o.field === 'record_checkpoint' });
            if (c !== 0) return o.desc ? -c : c;
          }
          return 0;
        });
      }
      const out = rows.slice(offset, offset + limit).map((r) => (fields.length ? Object.fromEntries(fields.map((f) => [f, r[f] ?? ''])) : r));
      return json(res, 200, { result: out });
    }
    if (req.method === 'PATCH' && sysId) {
      const record = records.get(sysId);
      if (!record || record['sys_class_name'] !== table) return json(res, 404, { error: { message: 'No Record found', detail: 'Record doesn\'t exist or ACL restricts the record retrieval' }, status: 'failure' });
      const before = { ...record };
      for (const [k, v] of Object.entries(body ?? {})) {
        if (k === 'work_notes') record['work_notes_log'] = `${record['work_notes_log'] ?? ''}${v}\n`;
        else record[k] = String(v);
      }
      return json(res, 200, { result: stamp(record, user, clock(), before) });
    }
    return json(res, 405, { error: { message: 'Method not Supported', detail: null }, status: 'failure' });
  });
  return {
    url,
    calls,
    records,
    audit,
    failNext: (...s) => failures.push(...s),
    update(sysId, fields, user, at) {
      const record = records.get(sysId);
      if (!record) throw new Error(`no record ${sysId}`);
      const before = { ...record };
      Object.assign(record, fields);
      return stamp(record, user, at, before);
    },
    close: closer(server),
  };
}

// ---- Jira Cloud ----

export interface JiraCall {
  method: string;
  path: string;
  body: Record<string, any> | null;
}

export interface JiraStandIn {
  url: string;
  calls: JiraCall[];
  issues: Map<string, { id: string; key: string; status: string; fields: Record<string, any>; comments: unknown[] }>;
  failNext(...statuses: number[]): void;
  close(): Promise<void>;
}

const WORKFLOW = [
  { id: '11', name: 'To Do', to: { id: '1', name: 'To Do' } },
  { id: '21', name: 'In Progress', to: { id: '3', name: 'In Progress' } },
  { id: '31', name: 'Done', to: { id: '10001', name: 'Done' } },
  { id: '41', name: "Won't Do", to: { id: '10002', name: "Won't Do" } },
];

export async function jiraCloud(credentials: { email: string; apiToken: string } | { bearer: string }, projects: string[] = ['SEC']): Promise<JiraStandIn> {
  const calls: JiraCall[] = [];
  const failures: number[] = [];
  const issues: JiraStandIn['issues'] = new Map();
  let seq = 0;
  const { server, url } = await listen((req, res, raw) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    const basic = basicUser(auth);
    const ok = 'bearer' in credentials ? auth === `Bearer ${credentials.bearer}` : basic?.user === credentials.email && basic.password === credentials.apiToken;
    let body: Record<string, any> | null = null;
    if (raw) {
      try {
        body = JSON.parse(raw) as Record<string, any>;
      } catch {
        return json(res, 400, { errorMessages: ['Unexpected character in the JSON body'], errors: {} });
      }
    }
    calls.push({ method: req.method ?? '', path: u.pathname, body });
    const status = failures.shift();
    if (status !== undefined) return json(res, status, { errorMessages: ['Service unavailable'], errors: {} });
    if (!ok) return json(res, 401, { errorMessages: ['You are not authenticated. Authentication required to perform this operation.'], errors: {} });
    if (req.method === 'POST' && u.pathname === '/rest/api/3/issue') {
      const f = body?.['fields'] ?? {};
      const errors: Record<string, string> = {};
      if (!projects.includes(f.project?.key)) errors['project'] = 'valid project is required';
      if (typeof f.summary !== 'string' || !f.summary || f.summary.length > 255) errors['summary'] = 'You must specify a summary of the issue.';
      if (!f.issuetype?.name && !f.issuetype?.id) errors['issuetype'] = 'Specify an issue type';
      if (f.description !== undefined && (f.description?.type !== 'doc' || f.description?.version !== 1 || !Array.isArray(f.description?.content))) errors['description'] = 'Operation value must be an Atlassian Document (see the Atlassian Document Format)';
      if (f.labels !== undefined && (!Array.isArray(f.labels) || f.labels.some((l: unknown) => typeof l !== 'string' || /\s/.test(l) || l.length > 255))) errors['labels'] = 'Labels cannot contain spaces.';
      if (Object.keys(errors).length > 0) return json(res, 400, { errorMessages: [], errors });
      const id = String(10000 + ++seq);
      const key = `${f.project.key}-${seq}`;
      issues.set(key, { id, key, status: 'To Do', fields: f, comments: [] });
      return json(res, 201, { id, key, self: `${url}/rest/api/3/issue/${id}` });
    }
    const m = /^\/rest\/api\/3\/issue\/([A-Z][A-Z0-9_]*-\d+|\d+)\/(transitions|comment)$/.exec(u.pathname);
    const issue = m ? (issues.get(m[1]!) ?? [...issues.values()].find((i) => i.id === m[1])) : undefined;
    if (m && !issue) return json(res, 404, { errorMessages: ['Issue does not exist or you do not have permission to see it.'], errors: {} });
    if (m && issue && m[2] === 'transitions' && req.method === 'GET') return json(res, 200, { expand: 'transitions', transitions: WORKFLOW.filter((t) => t.to.name !== issue.status) });
    if (m && issue && m[2] === 'transitions' && req.method === 'POST') {
      const t = WORKFLOW.find((w) => w.id === body?.['transition']?.id && w.to.name !== issue.status);
      if (!t) return json(res, 400, { errorMessages: ["Transition id is not valid for this issue's workflow."], errors: {} });
      issue.status = t.to.name;
      for (const c of body?.['update']?.comment ?? []) issue.comments.push(c.add?.body);
      return json(res, 204);
    }
    if (m && issue && m[2] === 'comment' && req.method === 'POST') {
      if (body?.['body']?.type !== 'doc') return json(res, 400, { errorMessages: [], errors: { comment: 'Comment body must be an Atlassian Document' } });
      issue.comments.push(body['body']);
      return json(res, 201, { id: String(issue.comments.length), body: body['body'] });
    }
    return json(res, 404, { errorMessages: ['Not found'], errors: {} });
  });
  return { url, calls, issues, failNext: (...s) => failures.push(...s), close: closer(server) };
}

// ---- Bot Framework token issuer ----

export interface BotIssuer {
  metadataUrl: string;
  /** A token as the Bot Connector sends it; `over` replaces claims, `key: 'other'` signs with a key the JWKS does not list. */
  token(claims: { aud: string; serviceUrl: string } & Record<string, unknown>, options?: { key?: 'listed' | 'other' | 'unendorsed'; iss?: string; expSeconds?: number; nbfSeconds?: number }): Promise<string>;
  /** Answer the metadata or JWKS with this status from now on (0: normally). */
  breakWith(status: number): void;
  fetches: number;
  close(): Promise<void>;
}

export async function botFrameworkIssuer(clock: () => number = Date.now): Promise<BotIssuer> {
  const listed = await generateKeyPair('RS256', { extractable: true });
  const unendorsed = await generateKeyPair('RS256', { extractable: true });
  const other = await generateKeyPair('RS256', { extractable: true });
  const jwk = async (pub: Parameters<typeof exportJWK>[0], kid: string, endorsements: string[]): Promise<JWK & { endorsements: string[] }> => ({ ...(await exportJWK(pub)), kid, kty: 'RSA', use: 'sig', endorsements });
  const keys = [await jwk(listed.publicKey, 'bf-key-1', ['msteams', 'webchat']), await jwk(unendorsed.publicKey, 'bf-key-2', ['skype'])];
  let broken = 0;
  const state = { fetches: 0 };
  const { server, url } = await listen((req, res) => {
    state.fetches++;
    if (broken) return json(res, broken, { error: 'unavailable' });
    if (req.url === '/v1/.well-known/openidconfiguration') {
      return json(res, 200, { issuer: 'https://api.botframework.com', authorization_endpoint: 'https://invalid.botframework.com', jwks_uri: `${url}/v1/.well-known/keys`, id_token_signing_alg_values_supported: ['RS256'], token_endpoint_auth_methods_supported: ['private_key_jwt'] });
    }
    if (req.url === '/v1/.well-known/keys') return json(res, 200, { keys });
    return json(res, 404, {});
  });
  return {
    metadataUrl: `${url}/v1/.well-known/openidconfiguration`,
    async token(claims, options = {}) {
      const which = options.key ?? 'listed';
      const pair = which === 'listed' ? listed : which === 'unendorsed' ? unendorsed : other;
      const kid = which === 'listed' ? 'bf-key-1' : which === 'unendorsed' ? 'bf-key-2' : 'bf-key-9';
      const now = Math.floor(clock() / 1000);
      return new SignJWT({ ...claims })
        .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
        .setIssuer(options.iss ?? 'https://api.botframework.com')
        .setIssuedAt(now - 10)
        .setNotBefore(now + (options.nbfSeconds ?? -10))
        .setExpirationTime(now + (options.expSeconds ?? 3600))
        .sign(pair.privateKey);
    },
    breakWith(status) {
      broken = status;
    },
    get fetches() {
      return state.fetches;
    },
    close: closer(server),
  };
}

// ---- Bot Connector (Bot Framework REST API) ----

export interface ConnectorActivity {
  conversationId: string;
  id: string;
  card: Record<string, any>;
  updates: Array<Record<string, any>>;
}

export interface BotConnector {
  url: string;
  tokenUrl: string;
  serviceUrl: string;
  activities: ConnectorActivity[];
  tokensIssued: number;
  close(): Promise<void>;
}

/**
 * The token endpoint (client credentials, form-encoded, scope `https://api.botframework.com/.default`,
 * answering `{token_type: "Bearer", expires_in, ext_expires_in, access_token}` or 400/401
 * `{error, error_description}`) and the conversation API: `POST /v3/conversations/{id}/activities`
 * → 201 `{id}`, `PUT /v3/conversations/{id}/activities/{activityId}` → 200 `{id}`; 401 without
 * an issued token.
 */
export async function botConnector(appId: string, password: string): Promise<BotConnector> {
  const tokens = new Set<string>();
  const activities: ConnectorActivity[] = [];
  const state = { tokensIssued: 0 };
  const cardOf = (body: Record<string, any> | null) => {
    const a = body?.['attachments']?.[0];
    return body?.['type'] === 'message' && a?.contentType === 'application/vnd.microsoft.card.adaptive' && a.content?.type === 'AdaptiveCard' ? (a.content as Record<string, any>) : undefined;
  };
  const { server, url } = await listen((req, res, raw) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/botframework.com/oauth2/v2.0/token' && req.method === 'POST') {
      const form = new URLSearchParams(raw);
      if (form.get('grant_type') !== 'client_credentials' || form.get('scope') !== 'https://api.botframework.com/.default') return json(res, 400, { error: 'invalid_request', error_description: 'AADSTS900144' });
      if (form.get('client_id') !== appId || form.get('client_secret') !== password) return json(res, 401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.' });
      const token = randomBytes(24).toString('base64url');
      tokens.add(token);
      state.tokensIssued++;
      return json(res, 200, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: token });
    }
    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer || !tokens.has(bearer)) return json(res, 401, { message: 'Authorization has been denied for this request.' });
    const m = /^\/amer\/v3\/conversations\/([^/]+)\/activities(?:\/([^/]+))?$/.exec(u.pathname);
    if (!m) return json(res, 404, { error: { code: 'NotFound', message: 'no such route' } });
    const conversationId = decodeURIComponent(m[1]!);
    let body: Record<string, any> | null = null;
    try {
      body = JSON.parse(raw) as Record<string, any>;
    } catch {
      return json(res, 400, { error: { code: 'BadArgument', message: 'invalid JSON' } });
    }
    const card = cardOf(body);
    if (!card) return json(res, 400, { error: { code: 'BadArgument', message: 'Unknown attachment type' } });
    if (req.method === 'POST' && !m[2]) {
      const id = `1:${randomBytes(8).toString('hex')}`;
      activities.push({ conversationId, id, card, updates: [] });
      return json(res, 201, { id });
    }
    if (req.method === 'PUT' && m[2]) {
      const activity = activities.find((a) => a.conversationId === conversationId && a.id === decodeURIComponent(m[2]!));
      if (!activity) return json(res, 404, { error: { code: 'ActivityNotFoundInConversation', message: 'The activity was not found' } });
      activity.updates.push(card);
      return json(res, 200, { id: activity.id });
    }
    return json(res, 405, { error: { code: 'BadArgument', message: 'method not allowed' } });
  });
  return {
    url,
    tokenUrl: `${url}/botframework.com/oauth2/v2.0/token`,
    serviceUrl: `${url}/amer/`,
    activities,
    get tokensIssued() {
      return state.tokensIssued;
    },
    close: closer(server),
  };
}

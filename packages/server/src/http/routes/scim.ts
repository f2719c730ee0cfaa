/**
 * SCIM 2.0 provisioning (RFC 7643, RFC 7644) at `/scim/v2`: Users and Groups (create, get, list
 * with `filter=attr eq "value"`, PUT, PATCH, DELETE), ServiceProviderConfig and ResourceTypes.
 * Authenticated by a SCIM bearer token (`css_…`, `POST /v1/scim/tokens`), never by an
 * operator's token or session. Bodies are `application/scim+json` (plain JSON is accepted too);
 * errors are SCIM error bodies. Every write goes through identity/provisioning.ts.
 */
import {
  SCIM_ERROR_SCHEMA,
  asciiLower,
  SCIM_GROUP_SCHEMA,
  SCIM_LIST_SCHEMA,
  SCIM_USER_SCHEMA,
  ScimProblem,
  parseScimFilter,
  readPatch,
  readScimGroup,
  readScimUser,
  readScimUserReplacement,
} from '@countersign/core';
import type { Context, Hono } from 'hono';
import { isUniqueViolation, type Provisioning, type ScimCaller, type ScimGroupView, type ScimUserView } from '../../identity/provisioning.ts';
import { isStoreUnavailable } from '../../store/unavailable.ts';

const SCIM_TYPE = 'application/scim+json';
const MAX_COUNT = 200;
/** The largest |startIndex| or |count| taken (an OFFSET both engines accept). */
const MAX_START_INDEX = 1_000_000_000;

type ScimEnv = { Variables: { scim: ScimCaller } };

function scimJson(c: Context, body: unknown, status: 200 | 201 = 200, location?: string): Response {
  const headers: Record<string, string> = { 'content-type': `${SCIM_TYPE}; charset=utf-8`, 'cache-control': 'no-store' };
  if (location) headers.location = location;
  return c.body(`${JSON.stringify(body)}\n`, status, headers);
}

function scimError(c: Context, problem: ScimProblem): Response {
  const body = { schemas: [SCIM_ERROR_SCHEMA], status: String(problem.status), ...(problem.scimType ? { scimType: problem.scimType } : {}), detail: problem.message };
  const headers: Record<string, string> = { 'content-type': `${SCIM_TYPE}; charset=utf-8`, 'cache-control': 'no-store' };
  if (problem.status === 401) headers['www-authenticate'] = 'Bearer realm="countersign-scim"';
  // As errors.ts does for /v1: the unread rest of an oversized body is dropped with the connection.
  if (problem.status === 413) headers.connection = 'close';
  return c.body(`${JSON.stringify(body)}\n`, problem.status, headers);
}

const iso = (ms: number) => new Date(Number(ms)).toISOString();

function base(c: Context): string {
  const url = new URL(c.req.url);
  return `${url.protocol}//${url.host}/scim/v2`;
}

function userResource(c: Context, provisioning: Provisioning, view: ScimUserView) {
  const data = provisioning.userData(view.row);
  const name = Object.fromEntries(Object.entries(data.name).filter(([, v]) => v !== null));
  return {
    schemas: [SCIM_USER_SCHEMA],
    id: view.row.operator_id,
    ...(data.externalId !== null ? { externalId: data.externalId } : {}),
    userName: data.userName,
    ...(Object.keys(name).length > 0 ? { name } : {}),
    ...(data.displayName !== null ? { displayName: data.displayName } : {}),
    ...(data.emails.length > 0 ? { emails: data.emails.map((e) => ({ value: e.value, ...(e.type ? { type: e.type } : {}), primary: e.primary })) } : {}),
    // An operator an admin removed is inactive whatever the directory says (review2 F1).
    active: data.active && Number(view.row.admin_removed) !== 1,
    groups: view.groups.map((g) => ({ value: g.id, display: g.display_name, $ref: `${base(c)}/Groups/${g.id}` })),
    meta: { resourceType: 'User', created: iso(view.row.created_at), lastModified: iso(view.row.updated_at), version: `W/"${view.row.version}"`, location: `${base(c)}/Users/${view.row.operator_id}` },
  };
}

function groupResource(c: Context, view: ScimGroupView, withMembers = true) {
  return {
    schemas: [SCIM_GROUP_SCHEMA],
    id: view.row.id,
    ...(view.row.external_id !== null ? { externalId: view.row.external_id } : {}),
    displayName: view.row.display_name,
    ...(withMembers ? { members: view.members.map((m) => ({ value: m.id, display: m.userName, $ref: `${base(c)}/Users/${m.id}` })) } : {}),
    meta: { resourceType: 'Group', created: iso(view.row.created_at), lastModified: iso(view.row.updated_at), version: `W/"${view.row.version}"`, location: `${base(c)}/Groups/${view.row.id}` },
  };
}

async function body(c: Context): Promise<unknown> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== SCIM_TYPE && type !== 'application/json') throw new ScimProblem(400, 'invalidSyntax', `send the body as ${SCIM_TYPE}`);
  const text = await c.req.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new ScimProblem(400, 'invalidSyntax', 'the body is not valid JSON');
  }
}

function paging(c: Context): { offset: number; limit: number; startIndex: number } {
  const start = Number(c.req.query('startIndex') ?? 1);
  const count = Number(c.req.query('count') ?? 100);
  if (!Number.isInteger(start) || !Number.isInteger(count)) throw new ScimProblem(400, 'invalidValue', 'startIndex and count must be integers');
  // Review2 F5: an OFFSET neither engine takes (1e20) was a 500; bounded here, a SCIM 400.
  if (Math.abs(start) > MAX_START_INDEX || Math.abs(count) > MAX_START_INDEX) throw new ScimProblem(400, 'invalidValue', `startIndex and count must be between -${MAX_START_INDEX} and ${MAX_START_INDEX}`);
  const startIndex = Math.max(1, start);
  return { offset: startIndex - 1, limit: Math.min(MAX_COUNT, Math.max(0, count)), startIndex };
}

function list(c: Context, total: number, startIndex: number, resources: unknown[]) {
  return scimJson(c, { schemas: [SCIM_LIST_SCHEMA], totalResults: total, startIndex, itemsPerPage: resources.length, Resources: resources });
}

function excludesMembers(c: Context): boolean {
  return (c.req.query('excludedAttributes') ?? '').split(',').some((a) => a.trim().toLowerCase() === 'members');
}

export function registerScimRoutes(app: Hono<any>, provisioning: Provisioning | null): void {
  const scim = app as unknown as Hono<ScimEnv>;
  scim.use('/scim/v2/*', async (c, next) => {
    try {
      if (!provisioning) throw new ScimProblem(404, null, 'SCIM provisioning is not configured on this server');
      const match = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '');
      const caller = match?.[1] ? await provisioning.authenticateScim(match[1]) : undefined;
      if (!caller) throw new ScimProblem(401, null, 'send a SCIM token (an admin makes one: POST /v1/scim/tokens) as "Authorization: Bearer css_…"');
      c.set('scim', caller);
      await next();
    } catch (err) {
      c.res = answerError(c, err);
    }
  });
  const handle = (fn: (c: Context<ScimEnv>, p: Provisioning) => Promise<Response>) => async (c: Context<ScimEnv>) => {
    try {
      return await fn(c, provisioning!);
    } catch (err) {
      return answerError(c, err);
    }
  };

  scim.get('/scim/v2/ServiceProviderConfig', handle(async (c) =>
    scimJson(c, {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'],
      patch: { supported: true },
      bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
      filter: { supported: true, maxResults: MAX_COUNT },
      changePassword: { supported: false },
      sort: { supported: false },
      etag: { supported: false },
      authenticationSchemes: [{ type: 'oauthbearertoken', name: 'Bearer token', description: 'A SCIM token an admin made with `POST /v1/scim/tokens`', primary: true }],
      meta: { resourceType: 'ServiceProviderConfig', location: `${base(c)}/ServiceProviderConfig` },
    }),
  ));
  scim.get('/scim/v2/ResourceTypes', handle(async (c) =>
    list(c, 2, 1, [
      { schemas: ['urn:ietf:params:scim:schemas:core:2.0:ResourceType'], id: 'User', name: 'User', endpoint: '/Users', schema: SCIM_USER_SCHEMA, meta: { resourceType: 'ResourceType', location: `${base(c)}/ResourceTypes/User` } },
      { schemas: ['urn:ietf:params:scim:schemas:core:2.0:ResourceType'], id: 'Group', name: 'Group', endpoint: '/Groups', schema: SCIM_GROUP_SCHEMA, meta: { resourceType: 'ResourceType', location: `${base(c)}/ResourceTypes/Group` } },
    ]),
  ));

  // ---- Users ----
  scim.get('/scim/v2/Users', handle(async (c, p) => {
    const { offset, limit, startIndex } = paging(c);
    const raw = c.req.query('filter');
    let filter: { column: 'user_key' | 'external_id' | 'operator_id'; value: string } | null = null;
    if (raw !== undefined && raw.trim() !== '') {
      const f = parseScimFilter(raw, ['username', 'externalid', 'id']);
      if (typeof f.value !== 'string') return list(c, 0, startIndex, []);
      filter = f.attribute === 'username' ? { column: 'user_key', value: asciiLower(f.value) } : f.attribute === 'externalid' ? { column: 'external_id', value: f.value } : { column: 'operator_id', value: f.value };
    }
    const { total, items } = await p.listUsers(filter, offset, limit);
    return list(c, total, startIndex, items.map((v) => userResource(c, p, v)));
  }));
  scim.post('/scim/v2/Users', handle(async (c, p) => {
    const view = await p.createUser(c.get('scim'), readScimUser(await body(c)));
    return scimJson(c, userResource(c, p, view), 201, `${base(c)}/Users/${view.row.operator_id}`);
  }));
  scim.get('/scim/v2/Users/:id', handle(async (c, p) => scimJson(c, userResource(c, p, await p.getUser(c.req.param('id')!)))));
  scim.put('/scim/v2/Users/:id', handle(async (c, p) => scimJson(c, userResource(c, p, await p.updateUser(c.get('scim'), c.req.param('id')!, { put: readScimUserReplacement(await body(c)) })))));
  scim.patch('/scim/v2/Users/:id', handle(async (c, p) => scimJson(c, userResource(c, p, await p.updateUser(c.get('scim'), c.req.param('id')!, { patch: readPatch(await body(c)) })))));
  scim.delete('/scim/v2/Users/:id', handle(async (c, p) => {
    await p.deleteUser(c.get('scim'), c.req.param('id')!);
    return c.body(null, 204);
  }));

  // ---- Groups ----
  scim.get('/scim/v2/Groups', handle(async (c, p) => {
    const { offset, limit, startIndex } = paging(c);
    const raw = c.req.query('filter');
    let filter: { column: 'display_key' | 'external_id' | 'id'; value: string } | null = null;
    if (raw !== undefined && raw.trim() !== '') {
      const f = parseScimFilter(raw, ['displayname', 'externalid', 'id']);
      if (typeof f.value !== 'string') return list(c, 0, startIndex, []);
      filter = f.attribute === 'displayname' ? { column: 'display_key', value: asciiLower(f.value) } : f.attribute === 'externalid' ? { column: 'external_id', value: f.value } : { column: 'id', value: f.value };
    }
    const withMembers = !excludesMembers(c);
    const { total, items } = await p.listGroups(filter, offset, limit, withMembers);
    return list(c, total, startIndex, items.map((v) => groupResource(c, v, withMembers)));
  }));
  scim.post('/scim/v2/Groups', handle(async (c, p) => {
    const view = await p.createGroup(c.get('scim'), readScimGroup(await body(c)));
    return scimJson(c, groupResource(c, view), 201, `${base(c)}/Groups/${view.row.id}`);
  }));
  scim.get('/scim/v2/Groups/:id', handle(async (c, p) => scimJson(c, groupResource(c, await p.getGroup(c.req.param('id')!), !excludesMembers(c)))));
  scim.put('/scim/v2/Groups/:id', handle(async (c, p) => scimJson(c, groupResource(c, await p.updateGroup(c.get('scim'), c.req.param('id')!, { put: readScimGroup(await body(c)) })))));
  scim.patch('/scim/v2/Groups/:id', handle(async (c, p) => {
    const view = await p.updateGroup(c.get('scim'), c.req.param('id')!, { patch: readPatch(await body(c)) });
    // Entra and Okta accept 204 or the group; the group tells the client what it now holds.
    return scimJson(c, groupResource(c, view, !excludesMembers(c)));
  }));
  scim.delete('/scim/v2/Groups/:id', handle(async (c, p) => {
    await p.deleteGroup(c.get('scim'), c.req.param('id')!);
    return c.body(null, 204);
  }));

  scim.all('/scim/v2/*', (c) => scimError(c, new ScimProblem(404, null, `no SCIM endpoint ${c.req.method} ${c.req.path.slice(0, 200)}`)));
}

/** Where the SCIM routes are: an error raised before them (the body limit, http/body-limit.ts) is answered in SCIM's shape too (review2 F7). */
export const SCIM_PATH_PREFIX = '/scim/v2/';

/** Any error as a SCIM error body (RFC 7644 §3.12): the SCIM routes' own, and app.ts's `onError` for paths under SCIM_PATH_PREFIX. */
export function answerError(c: Context, err: unknown): Response {
  if (err instanceof ScimProblem) return scimError(c, err);
  const code = (err as { code?: string }).code;
  if (code === 'BODY_TOO_LARGE' || (err as { status?: number }).status === 413) return scimError(c, new ScimProblem(413, null, 'the body is too large'));
  if (code === 'STORE_UNAVAILABLE' || isStoreUnavailable(err)) return scimError(c, new ScimProblem(503, null, 'the database cannot be reached right now; nothing was changed'));
  if (code === 'VALIDATION_FAILED') return scimError(c, new ScimProblem(400, 'invalidValue', (err as Error).message));
  if (isUniqueViolation(err)) return scimError(c, new ScimProblem(409, 'uniqueness', 'that name is already taken (a concurrent create won)'));
  console.error(`countersign: scim: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return scimError(c, new ScimProblem(500, null, 'internal error; nothing was changed'));
}

/**
 * The fixes for the red-team review of SSO + SCIM (issue 20), beyond the reviewer's own tests
 * (review-sso-*.test.ts): the neighbouring cases of F4 (who disabled) and F5 (a token ends with
 * its maker's admin authority). A real `countersign serve` on SQLite and PostgreSQL, SCIM over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('sso review fixes: disables and token makers ($name)', ({ make }) => {
  let db: TestDatabase;
  let idp: CraftedIssuer;
  let server: ServerProcess;
  let admin: string;
  let scimToken: string;

  beforeAll(async () => {
    db = make();
    idp = await startCraftedIssuer('countersign');
    const port = await freePort();
    server = await startServerProcess(db.url, {
      COUNTERSIGN_PORT: String(port),
      COUNTERSIGN_IDENTITY_FILE: identityFile({ issuer: idp.issuer, redirectUrl: `http://127.0.0.1:${port}/sso/callback`, extra: '  cs-admins: [admin]\n' }),
      COUNTERSIGN_OIDC_CLIENT_SECRET: idp.clientSecret,
    });
    admin = server.bootstrap!.adminToken;
    scimToken = (await api<{ token: string }>(server.url, admin, '/v1/scim/tokens', { body: { name: 'okta' } })).body.token;
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await idp?.close();
    await db?.drop();
  });

  async function scim(method: string, path: string, body?: unknown, token = scimToken) {
    const res = await fetch(`${server.url}/scim/v2${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as any };
  }

  /** The browser half of a sign-in, driven with fetch; returns the session cookie and its CSRF token. */
  async function signIn(sub: string, email: string, groups: string[] | undefined) {
    idp.mode = 'good';
    idp.identity = { sub, email, groups };
    const start = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
    const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
    const auth = idp.authorize(start.headers.get('location')!);
    const back = await fetch(`${server.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
    idp.identity = null;
    const session = back.headers.getSetCookie().find((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c));
    expect(session, await back.text()).toBeDefined();
    const sessionCookie = session!.split(';')[0]!;
    const me = await fetch(`${server.url}/v1/session`, { headers: { cookie: sessionCookie } });
    const body = (await me.json()) as { operator: { roles: string[] }; csrfToken: string };
    return { cookie: sessionCookie, csrf: body.csrfToken, roles: body.operator.roles };
  }

  async function rolesOf(name: string): Promise<string[]> {
    const items = (await api<{ items: Array<{ name: string; roles: string[] }> }>(server.url, admin, '/v1/operators')).body.items;
    return items.find((o) => o.name === name)?.roles ?? [];
  }

  const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
  const setActive = (id: string, value: boolean | string) => scim('PATCH', `/Users/${id}`, { schemas: [PATCH_OP], Operations: [{ op: 'Replace', path: 'active', value }] });
  async function disabledOf(id: string): Promise<boolean | undefined> {
    return (await api<{ items: Array<{ id: string; disabled: boolean }> }>(server.url, admin, '/v1/operators')).body.items.find((o) => o.id === id)?.disabled;
  }

  it('F4: SCIM active still disables and re-enables on its own; an admin disable survives active false then true; the admin lifts it', async () => {
    const u = await scim('POST', '/Users', { schemas: [USER], userName: 'hana@example.com', active: true });
    expect(u.status).toBe(201);
    expect((await setActive(u.body.id, false)).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(true);
    expect((await setActive(u.body.id, 'True')).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(false);

    expect((await api(server.url, admin, `/v1/operators/${u.body.id}`, { method: 'PATCH', body: { disabled: true } })).status).toBe(200);
    expect((await setActive(u.body.id, false)).status).toBe(200);
    expect((await setActive(u.body.id, true)).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(true);
    // A whole-user PUT saying active is no lift either.
    expect((await scim('PUT', `/Users/${u.body.id}`, { schemas: [USER], userName: 'hana@example.com', active: true, displayName: 'Hana' })).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(true);

    expect((await api(server.url, admin, `/v1/operators/${u.body.id}`, { method: 'PATCH', body: { disabled: false } })).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(false);
  }, 60_000);

  async function adminWithToken(name: string) {
    const made = await api<{ token: string; id: string }>(server.url, admin, '/v1/operators', { body: { name, roles: ['admin'] } });
    expect(made.status).toBe(201);
    const minted = await api<{ id: string; token: string }>(server.url, made.body.token, '/v1/scim/tokens', { body: { name: `${name}-okta` } });
    expect(minted.status).toBe(201);
    expect((await scim('GET', '/Users', undefined, minted.body.token)).status).toBe(200);
    return { operatorId: made.body.id, tokenId: minted.body.id, scimToken: minted.body.token };
  }

  async function tokenStatus(id: string): Promise<string | undefined> {
    return (await api<{ items: Array<{ id: string; status: string }> }>(server.url, admin, '/v1/scim/tokens')).body.items.find((t) => t.id === id)?.status;
  }

  it('F5: disabling the maker revokes their SCIM tokens, for good (enabling them again does not bring the token back)', async () => {
    const ivan = await adminWithToken('ivan');
    expect((await api(server.url, admin, `/v1/operators/${ivan.operatorId}`, { method: 'PATCH', body: { disabled: true } })).status).toBe(200);
    expect((await scim('GET', '/Users', undefined, ivan.scimToken)).status).toBe(401);
    expect(await tokenStatus(ivan.tokenId)).toBe('revoked');
    expect((await api(server.url, admin, `/v1/operators/${ivan.operatorId}`, { method: 'PATCH', body: { disabled: false } })).status).toBe(200);
    expect((await scim('GET', '/Users', undefined, ivan.scimToken)).status).toBe(401);
  }, 60_000);

  it('F5: demoting the maker from admin revokes their SCIM tokens', async () => {
    const judy = await adminWithToken('judy');
    expect((await api(server.url, admin, `/v1/operators/${judy.operatorId}`, { method: 'PATCH', body: { roles: ['reviewer'] } })).status).toBe(200);
    expect((await scim('GET', '/Users', undefined, judy.scimToken)).status).toBe(401);
    expect(await tokenStatus(judy.tokenId)).toBe('revoked');
  }, 60_000);
});

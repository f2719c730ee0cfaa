/**
 * The second SSO/SCIM review's fixes, on the paths its failing tests (review2-sso-holes.test.ts)
 * do not walk: what an admin-removed SCIM user reads as, the audit of a deactivation's revoked
 * tokens, an admin's role edit on an operator a sign-in made, and the last-admin rule against a
 * SCIM group change and against a sign-in's groups claim (each refused, audited, nothing changed).
 * A real `countersign serve` on SQLite and PostgreSQL, the hostile-issuer helper as the provider.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useSsoServer } from './support/sso-server.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

describe.each(ENGINES)('second SSO/SCIM review fixes ($name)', ({ make }) => {
  const sso = useSsoServer(make);
  let idp: CraftedIssuer;
  let server: ServerProcess;
  let admin: string;
  let scimToken: string;
  beforeAll(() => {
    ({ idp, server, admin, scimToken } = sso);
  });

  async function scim(method: string, path: string, body?: unknown, token = scimToken) {
    const res = await fetch(`${server.url}/scim/v2${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  async function audit(type: string) {
    return (await api<{ items: Array<{ data: Record<string, unknown> }> }>(server.url, admin, `/v1/audit?type=${type}`)).body.items;
  }

  async function operator(id: string) {
    return (await api<{ items: Array<{ id: string; name: string; roles: string[]; disabled: boolean }> }>(server.url, admin, '/v1/operators')).body.items.find((o) => o.id === id);
  }

  /** A sign-in through the provider: the session cookie (or none) and the page's text. */
  async function signIn(sub: string, email: string, groups: string[] | undefined) {
    idp.mode = 'good';
    idp.identity = { sub, email, groups };
    try {
      const start = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
      const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
      const auth = idp.authorize(start.headers.get('location')!);
      const back = await fetch(`${server.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
      const session = back.headers.getSetCookie().find((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c));
      return { cookie: session?.split(';')[0], text: await back.text() };
    } finally {
      idp.identity = null;
    }
  }

  it('an admin-removed SCIM user reads as inactive, and a PATCH of it changes nothing', async () => {
    const made = await scim('POST', '/Users', { schemas: [USER], userName: 'gone.gus@example.com', active: true });
    expect(made.status).toBe(201);
    expect((await api(server.url, admin, `/v1/operators/${made.body.id}`, { method: 'DELETE' })).status).toBe(200);
    const read = await scim('GET', `/Users/${made.body.id}`);
    expect(read.status).toBe(200);
    expect(read.body.active).toBe(false);
    expect((await scim('PATCH', `/Users/${made.body.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: true }] })).status).toBe(404);
    expect(await operator(made.body.id)).toBeUndefined();
    // DELETE then POST of the same userName: refused, with the reason.
    expect((await scim('DELETE', `/Users/${made.body.id}`)).status).toBe(204);
    const again = await scim('POST', '/Users', { schemas: [USER], userName: 'GONE.gus@example.com', active: true });
    expect(again.status).toBe(409);
    expect(again.body.detail).toMatch(/an admin removed this operator/);
    expect(await operator(made.body.id)).toBeUndefined();
  }, 60_000);

  it('a SCIM deactivation audits the token ids it revoked', async () => {
    const made = await scim('POST', '/Users', { schemas: [USER], userName: 'tina@example.com', active: true });
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'soc', members: [{ value: made.body.id }] });
    expect(group.status).toBe(201);
    const minted = await api<{ token: string; tokenId: string }>(server.url, admin, `/v1/operators/${made.body.id}/token`, { method: 'POST' });
    expect(minted.status).toBe(200);
    expect((await scim('PATCH', `/Users/${made.body.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: 'False' }] })).status).toBe(200);
    const entry = (await audit('operator_synced')).map((e) => e.data).filter((d) => d.operatorId === made.body.id).at(-1)!;
    expect(entry).toMatchObject({ disabled: true, revokedTokenIds: [minted.body.tokenId] });
  }, 60_000);

  it('an admin role edit on an operator a sign-in made (no SCIM) is refused; a disable is not', async () => {
    const first = await signIn('olly-sub', 'olly@example.com', ['soc']);
    expect(first.cookie).toBeDefined();
    const id = (await api<{ items: Array<{ id: string; name: string }> }>(server.url, admin, '/v1/operators')).body.items.find((o) => o.name === 'olly@example.com')!.id;
    const edit = await api<any>(server.url, admin, `/v1/operators/${id}`, { method: 'PATCH', body: { roles: ['lead'] } });
    expect(edit.status).toBe(409);
    expect(edit.body.error).toMatchObject({ code: 'ILLEGAL_TRANSITION', details: { reason: 'idp_managed' } });
    expect((await api<any>(server.url, admin, `/v1/operators/${id}`, { method: 'PATCH', body: { groups: ['night'] } })).status).toBe(409);
    expect((await operator(id))?.roles).toEqual(['reviewer']);
    expect((await api(server.url, admin, `/v1/operators/${id}`, { method: 'PATCH', body: { disabled: true } })).status).toBe(200);
    expect((await signIn('olly-sub', 'olly@example.com', ['soc'])).cookie).toBeUndefined();
  }, 60_000);
});

describe.each(ENGINES)('second SSO/SCIM review fixes: the last admin against groups ($name)', ({ make }) => {
  let db: TestDatabase;
  let idp: CraftedIssuer;
  let server: ServerProcess;

  beforeAll(async () => {
    db = make();
    idp = await startCraftedIssuer('countersign');
    const port = await freePort();
    server = await startServerProcess(db.url, {
      COUNTERSIGN_PORT: String(port),
      COUNTERSIGN_IDENTITY_FILE: identityFile({ issuer: idp.issuer, redirectUrl: `http://127.0.0.1:${port}/sso/callback`, extra: '  cs-admins: [admin]\n' }),
      COUNTERSIGN_OIDC_CLIENT_SECRET: idp.clientSecret,
    });
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await idp?.close();
    await db?.drop();
  });

  async function scim(token: string, method: string, path: string, body?: unknown) {
    const res = await fetch(`${server.url}/scim/v2${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  it('removing the last admin from the admin group, or a sign-in without it, is refused and audited; nothing changes', async () => {
    const boot = server.bootstrap!.adminToken;
    const bootScim = (await api<{ token: string }>(server.url, boot, '/v1/scim/tokens', { body: { name: 'okta' } })).body.token;
    const zed = await scim(bootScim, 'POST', '/Users', { schemas: [USER], userName: 'zed@example.com', active: true });
    const group = await scim(bootScim, 'POST', '/Groups', { schemas: [GROUP], displayName: 'cs-admins', members: [{ value: zed.body.id }] });
    expect(group.status).toBe(201);
    const zedToken = (await api<{ token: string }>(server.url, boot, `/v1/operators/${zed.body.id}/token`, { method: 'POST' })).body.token;
    const zedScim = (await api<{ token: string }>(server.url, zedToken, '/v1/scim/tokens', { body: { name: 'entra' } })).body.token;
    const bootId = (await api<{ items: Array<{ id: string; roles: string[] }> }>(server.url, zedToken, '/v1/operators')).body.items.find((o) => o.id !== zed.body.id && o.roles.includes('admin'))!.id;
    expect((await api(server.url, zedToken, `/v1/operators/${bootId}`, { method: 'DELETE' })).status).toBe(200);

    // The directory takes Zed out of the admin group: refused, the membership stays.
    const out = await scim(zedScim, 'PATCH', `/Groups/${group.body.id}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: `members[value eq "${zed.body.id}"]` }] });
    expect(out.status).toBe(409);
    expect(out.body).toMatchObject({ schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: '409' });
    expect((await scim(zedScim, 'GET', `/Groups/${group.body.id}`)).body.members.map((m: { value: string }) => m.value)).toEqual([zed.body.id]);
    // …deleting the group, or the user: refused too.
    expect((await scim(zedScim, 'DELETE', `/Groups/${group.body.id}`)).status).toBe(409);
    expect((await scim(zedScim, 'DELETE', `/Users/${zed.body.id}`)).status).toBe(409);

    // Zed signs in with a groups claim that no longer holds the admin group: refused, roles unchanged.
    idp.mode = 'good';
    idp.identity = { sub: 'zed-sub', email: 'zed@example.com', groups: ['soc'] };
    try {
      const start = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
      const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
      const auth = idp.authorize(start.headers.get('location')!);
      const back = await fetch(`${server.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
      expect(back.status).toBe(403);
      expect(await back.text()).toMatch(/last active admin/);
    } finally {
      idp.identity = null;
    }
    const me = await api<{ items: Array<{ id: string; roles: string[]; disabled: boolean }> }>(server.url, zedToken, '/v1/operators');
    expect(me.status).toBe(200);
    expect(me.body.items.find((o) => o.id === zed.body.id)).toMatchObject({ roles: ['admin'], disabled: false });

    const refused = (await api<{ items: Array<{ data: Record<string, unknown> }> }>(server.url, zedToken, '/v1/audit?type=operator_sync_refused')).body.items.map((e) => e.data);
    expect(refused.map((d) => `${d.source}:${d.change}`)).toEqual(['scim:update group', 'scim:delete group', 'scim:delete user', 'oidc:sign-in group sync']);
    expect(refused.every((d) => d.operatorId === zed.body.id && d.reason === 'last_admin')).toBe(true);
  }, 90_000);
});

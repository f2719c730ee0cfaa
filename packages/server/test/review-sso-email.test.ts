/**
 * Red-team review of branch `sso` (issue 20): addresses that are not the same address. Core
 * `checkIdTokenClaims` and `operatorNameFor` fold case with JavaScript's full Unicode
 * `toLowerCase`, which maps some non-ASCII letters onto ASCII ones (U+212A KELVIN SIGN becomes
 * `k`). A provider account whose address is spelt with one therefore signs in as the operator of
 * the plain-ASCII address. A real `countersign serve` on SQLite and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('red-team review of sso: address folding ($name)', ({ make }) => {
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

  // FINDING 3 (medium): `\u212Aate@example.com` (KELVIN SIGN, then `ate`) is folded to
  // `kate@example.com`, so that provider account's first sign-in is linked to Kate's SCIM user (and
  // takes her roles), or, with Kate unprovisioned, is given the operator name `kate@example.com`.
  // The provider verified a different address; a relying party must compare what it was sent
  // (ASCII-only case folding, or refuse non-ASCII local parts), never fold one address into another.
  it('F3: an address spelt with KELVIN SIGN does not sign in as the ASCII address\'s SCIM user', async () => {
    const kate = await scim('POST', '/Users', { schemas: [USER], userName: 'kate@example.com', active: true });
    expect(kate.status).toBe(201);
    expect((await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'soc', members: [{ value: kate.body.id }] })).status).toBe(201);

    const lookalike = '\u212Aate@example.com';
    expect(lookalike.toLowerCase()).toBe('kate@example.com'); // the fold itself
    idp.mode = 'good';
    idp.identity = { sub: 'mallory-sub', email: lookalike, groups: undefined };
    const start = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
    const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
    const auth = idp.authorize(start.headers.get('location')!);
    const back = await fetch(`${server.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
    idp.identity = null;
    const session = back.headers.getSetCookie().find((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c));
    if (session) {
      const me = (await (await fetch(`${server.url}/v1/session`, { headers: { cookie: session.split(';')[0]! } })).json()) as { operator: { id: string; name: string } };
      expect(me.operator.id).not.toBe(kate.body.id);
      expect(me.operator.name).not.toBe('kate@example.com');
    }
    // Kate's own first sign-in still reaches her operator, with no other subject linked to it first.
    const mine = await signIn('kate-sub', 'kate@example.com', undefined);
    expect(mine.roles).toEqual(['reviewer']);
  }, 60_000);
});

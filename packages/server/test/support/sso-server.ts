/**
 * One `countersign serve` with single sign-on and SCIM on, for the SSO/SCIM tests that drive it
 * over HTTP: a real server process on the given database, the crafted OIDC issuer as its provider
 * (role map: `cs-admins` → admin, besides identityFile's own), the bootstrap admin's token, and a
 * SCIM token the admin made. `useSsoServer` registers the suite's beforeAll/afterAll; the fields
 * are set once beforeAll has run.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import type { TestDatabase } from './databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './oidc.ts';
import { api, startServerProcess, type ServerProcess } from './server-process.ts';

export interface SsoServer {
  db: TestDatabase;
  idp: CraftedIssuer;
  server: ServerProcess;
  /** The bootstrap admin's token. */
  admin: string;
  /** A SCIM bearer token the admin made (`okta`). */
  scimToken: string;
  /** A SCIM call (`/scim/v2` + path); the body parsed, or null when empty. */
  scim(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any }>;
  /** The browser half of a sign-in, driven with fetch: the session cookie, its CSRF token and the operator's roles (a sign-in that gets no session fails the test). */
  signIn(sub: string, email: string, groups: string[] | undefined): Promise<{ cookie: string; csrf: string; roles: string[] }>;
  /** An operator's roles by name, from the admin's operator list ([] if none). */
  rolesOf(name: string): Promise<string[]>;
}

export function useSsoServer(make: () => TestDatabase): SsoServer {
  const t = {
    async scim(method: string, path: string, body?: unknown, token = t.scimToken) {
      const res = await fetch(`${t.server.url}/scim/v2${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : null) as any };
    },
    async signIn(sub: string, email: string, groups: string[] | undefined) {
      const { idp, server } = t;
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
    },
    async rolesOf(name: string): Promise<string[]> {
      const items = (await api<{ items: Array<{ name: string; roles: string[] }> }>(t.server.url, t.admin, '/v1/operators')).body.items;
      return items.find((o) => o.name === name)?.roles ?? [];
    },
  } as SsoServer;

  beforeAll(async () => {
    t.db = make();
    t.idp = await startCraftedIssuer('countersign');
    const port = await freePort();
    t.server = await startServerProcess(t.db.url, {
      COUNTERSIGN_PORT: String(port),
      COUNTERSIGN_IDENTITY_FILE: identityFile({ issuer: t.idp.issuer, redirectUrl: `http://127.0.0.1:${port}/sso/callback`, extra: '  cs-admins: [admin]\n' }),
      COUNTERSIGN_OIDC_CLIENT_SECRET: t.idp.clientSecret,
    });
    t.admin = t.server.bootstrap!.adminToken;
    t.scimToken = (await api<{ token: string }>(t.server.url, t.admin, '/v1/scim/tokens', { body: { name: 'okta' } })).body.token;
  }, 60_000);

  afterAll(async () => {
    await t.server?.stop();
    await t.idp?.close();
    await t.db?.drop();
  });

  return t;
}

/**
 * Red-team review of branch `sso` (issue 20, SSO + SCIM). Each test asserts the secure behaviour,
 * so it FAILS on `sso`; the comment on each names the finding. A real `countersign serve` on
 * SQLite and PostgreSQL, SCIM over HTTP, and the hostile-issuer helper (support/oidc.ts) as the
 * identity provider.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('red-team review of sso: four-eyes ($name)', ({ make }) => {
  let db: TestDatabase;
  let idp: CraftedIssuer;
  let server: ServerProcess;
  let admin: string;

  beforeAll(async () => {
    db = make();
    idp = await startCraftedIssuer('countersign');
    const port = await freePort();
    server = await startServerProcess(db.url, {
      COUNTERSIGN_PORT: String(port),
      // The identity file maps a provider group to admin (the config allows it; a real deployment's "Countersign admins").
      COUNTERSIGN_IDENTITY_FILE: identityFile({ issuer: idp.issuer, redirectUrl: `http://127.0.0.1:${port}/sso/callback`, extra: '  cs-admins: [admin]\n' }),
      COUNTERSIGN_OIDC_CLIENT_SECRET: idp.clientSecret,
    });
    admin = server.bootstrap!.adminToken;
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await idp?.close();
    await db?.drop();
  });

  async function scim(token: string, method: string, path: string, body?: unknown) {
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

  // FINDING 1 (high): four-eyes on admin power is bypassed through SCIM. An admin who grants another
  // operator `admin` through the API is recorded as having made that admin (operator lineage), so
  // the two never sign each other's admin changes. An admin who mints a SCIM token and, with it,
  // puts a SCIM user (their own second identity at the provider) into a group the role map gives
  // `admin` leaves no lineage at all: that identity signs in through SSO and alone approves the
  // loosening its maker proposed. One person, two admin identities, four-eyes defeated. The
  // holder of a SCIM token made by admin X should count as X (or SCIM-granted admin should need
  // a second admin) for four-eyes.
  it('F1: an admin cannot approve their own loosening through an admin identity they made with their SCIM token', async () => {
    // The agent, disabled by the admin (a tightening: one admin may).
    expect((await api(server.url, admin, '/v1/keys', { body: { agent: 'billing-bot' } })).status).toBe(201);
    expect((await api(server.url, admin, '/v1/agents/billing-bot/config', { method: 'PUT', body: { enabled: false } })).status).toBe(200);

    // The same admin mints a SCIM token and makes their provider identity an admin with it.
    const minted = await api<{ token: string }>(server.url, admin, '/v1/scim/tokens', { body: { name: 'okta' } });
    expect(minted.status).toBe(201);
    const scimToken = minted.body.token;
    const user = await scim(scimToken, 'POST', '/Users', { schemas: [USER], userName: 'mallory@example.com', active: true });
    expect(user.status).toBe(201);
    const group = await scim(scimToken, 'POST', '/Groups', { schemas: [GROUP], displayName: 'cs-admins', members: [{ value: user.body.id }] });
    expect(group.status).toBe(201);

    // The admin proposes enabling the agent again: it loosens, so it waits for another admin.
    const proposed = await api<any>(server.url, admin, '/v1/agents/billing-bot/config', { method: 'PUT', body: { enabled: true } });
    expect(proposed.status).toBe(202);
    const id = proposed.body.requestId as string;

    // The identity the proposer just made admin must not be offered as the second admin…
    expect((proposed.body.approvers as Array<{ name: string }>).map((a) => a.name)).not.toContain('mallory@example.com');

    // …nor be able to approve it.
    const mallory = await signIn('mallory-sub', 'mallory@example.com', undefined);
    expect(mallory.roles).toContain('admin');
    const vote = await fetch(`${server.url}/v1/requests/${id}/reviews`, {
      method: 'POST',
      headers: { cookie: mallory.cookie, 'x-countersign-csrf': mallory.csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ verdict: 'approve' }),
    });
    const result = (await vote.json()) as { status?: string };
    expect(result.status).not.toBe('executed');
    const view = await api<any>(server.url, admin, '/v1/agents/billing-bot/config');
    expect(view.body.overlay).toMatchObject({ enabled: false });
  }, 60_000);
});

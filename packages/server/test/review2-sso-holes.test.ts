/**
 * Second red-team review of branch `sso-review` (issue 20, SSO + SCIM, after the first review's
 * fixes). Each test asserts the secure (or specified) behaviour, so it FAILS on the branch as
 * reviewed; the comment on each names the finding (F1, F2, … in the review report). A real
 * `countersign serve` on SQLite and PostgreSQL, SCIM over HTTP in the shapes Okta and Entra
 * send, the hostile-issuer helper (support/oidc.ts) as the identity provider, and for F4 two
 * server processes on one PostgreSQL database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, postgresDatabase, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

async function scimCall(base: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}/scim/v2${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed };
}

/** The browser half of a sign-in against `base`, driven with fetch: the session cookie and CSRF token, or undefined and the page's text. */
async function ssoSignIn(base: string, idp: CraftedIssuer, sub: string, email: string, groups: string[] | undefined) {
  idp.mode = 'good';
  idp.identity = { sub, email, groups };
  try {
    const start = await fetch(`${base}/sso/login`, { redirect: 'manual' });
    const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
    const auth = idp.authorize(start.headers.get('location')!);
    const back = await fetch(`${base}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
    const text = await back.text();
    const session = back.headers.getSetCookie().find((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c));
    if (!session) return { cookie: undefined, csrf: undefined, roles: [] as string[], text };
    const sessionCookie = session.split(';')[0]!;
    const me = (await (await fetch(`${base}/v1/session`, { headers: { cookie: sessionCookie } })).json()) as { operator: { roles: string[] }; csrfToken: string };
    return { cookie: sessionCookie, csrf: me.csrfToken, roles: me.operator.roles, text };
  } finally {
    idp.identity = null;
  }
}

describe.each(ENGINES)('second red-team review of sso: admin decisions against the identity provider ($name)', ({ make }) => {
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

  const scim = (method: string, path: string, body?: unknown) => scimCall(server.url, scimToken, method, path, body);

  async function operator(id: string) {
    return (await api<{ items: Array<{ id: string; name: string; roles: string[]; disabled: boolean }> }>(server.url, admin, '/v1/operators')).body.items.find((o) => o.id === id);
  }

  async function groupNamed(name: string): Promise<string> {
    const found = (await scim('GET', `/Groups?filter=${encodeURIComponent(`displayName eq "${name}"`)}`)).body.Resources[0];
    return (found ?? (await scim('POST', '/Groups', { schemas: [GROUP], displayName: name, members: [] })).body).id;
  }

  const addTo = (group: string, id: string) => scim('PATCH', `/Groups/${group}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: id }] }] });

  // FINDING F1 (high): an admin's REMOVAL of a SCIM-provisioned operator is undone by the SCIM
  // token alone. `removeOperator` (engine/credentials.ts) marks the operator removed but leaves
  // its scim_users row live; the directory then DELETEs and POSTs the user again (Entra's
  // soft-delete cycle, Okta's unassign/reassign, or simply the token holder), and
  // `Provisioning.createUser`'s restore path calls `syncManagedOperator(… removed: false)`, which
  // clears `removed_at`. The operator an admin removed (incident response, a departed person) is
  // back with its groups' roles, no second admin involved. (The admin-DISABLE variant holds: the
  // restore honours `admin_disabled`; removal has no such record.)
  it('F1: an operator an admin removed does not come back through SCIM DELETE then POST of the same userName', async () => {
    const made = await scim('POST', '/Users', { schemas: [USER], userName: 'removed.rita@example.com', active: true });
    expect(made.status).toBe(201);
    const id = made.body.id as string;
    expect((await addTo(await groupNamed('soc'), id)).status).toBe(200);
    expect((await ssoSignIn(server.url, idp, 'rita-sub', 'removed.rita@example.com', undefined)).cookie).toBeDefined();

    // Incident response: an admin removes the operator.
    expect((await api(server.url, admin, `/v1/operators/${id}`, { method: 'DELETE' })).status).toBe(200);
    expect(await operator(id)).toBeUndefined();

    // The directory (or whoever holds the SCIM token) deletes and re-creates the user.
    expect((await scim('DELETE', `/Users/${id}`)).status).toBe(204);
    const again = await scim('POST', '/Users', { schemas: [USER], userName: 'removed.rita@example.com', active: true });
    // Secure: refused, or at least the operator stays removed.
    if (again.status === 201) {
      expect((await addTo(await groupNamed('soc'), again.body.id)).status).toBeGreaterThanOrEqual(200);
      expect(await operator(id), 'the operator an admin removed is back').toBeUndefined();
      const back = await ssoSignIn(server.url, idp, 'rita-sub-2', 'removed.rita@example.com', undefined);
      expect(back.cookie, 'a person an admin removed signs in again with no admin involved').toBeUndefined();
    }
  }, 60_000);

  // FINDING F2 (medium-high): an admin's DEMOTION of an IdP-managed operator is undone by that
  // operator's own next sign-in. `updateOperator` (engine/credentials.ts) accepts role changes on
  // an operator SCIM or OIDC manages and records nothing apart (unlike `admin_disabled`);
  // `Provisioning.signInOnce` then recomputes the roles (from `scimRoles` when the token carries
  // no groups claim, else from the claim) and `syncManagedOperator` writes them back. The demoted
  // admin regains `admin` by signing in: the admin's decision lasts until the next sign-in.
  it('F2: an admin taking the admin role from a SCIM-provisioned admin is not undone by that person signing in again', async () => {
    const made = await scim('POST', '/Users', { schemas: [USER], userName: 'demoted.dan@example.com', active: true });
    expect(made.status).toBe(201);
    const id = made.body.id as string;
    expect((await addTo(await groupNamed('cs-admins'), id)).status).toBe(200);
    expect((await operator(id))?.roles).toContain('admin');

    const demoted = await api<any>(server.url, admin, `/v1/operators/${id}`, { method: 'PATCH', body: { roles: ['reviewer'] } });
    // Also secure (the fix chose it): the edit is refused, since the provider owns an IdP-managed
    // operator's roles, nothing changes, and the admin's way to act here, a disable, holds
    // through the person's next sign-in.
    if (demoted.status === 409) {
      expect(demoted.body.error.message).toMatch(/identity provider/);
      expect((await operator(id))?.roles).toContain('admin');
      expect((await api(server.url, admin, `/v1/operators/${id}`, { method: 'PATCH', body: { disabled: true } })).status).toBe(200);
      const refused = await ssoSignIn(server.url, idp, 'dan-sub', 'demoted.dan@example.com', undefined);
      expect(refused.cookie, 'the disabled operator signed in').toBeUndefined();
      expect((await operator(id))?.disabled).toBe(true);
      return;
    }
    expect(demoted.status, JSON.stringify(demoted.body)).toBe(200);
    expect((await operator(id))?.roles).toEqual(['reviewer']);

    // The person signs in (an ID token without a groups claim, as Entra sends with group overage or no groups scope).
    const signedIn = await ssoSignIn(server.url, idp, 'dan-sub', 'demoted.dan@example.com', undefined);
    expect(signedIn.roles, 'the demoted operator regained admin by signing in').not.toContain('admin');
    expect((await operator(id))?.roles).not.toContain('admin');
  }, 60_000);

  // FINDING F3 (medium): SCIM deactivation does not revoke tokens, it only suspends them. The
  // issue: "deactivation revokes sessions and tokens". `Provisioning.updateUser` → 
  // `syncManagedOperator(disabled: true)` ends sessions but leaves every API token live (only
  // removal revokes); `active: true` later (a rehire, a mistaken toggle, anyone with the SCIM
  // token) brings back a bearer token minted before the deactivation, which may sit in a laptop
  // that left with the person.
  it('F3: a token made before a SCIM deactivation stays dead after SCIM reactivates the user', async () => {
    const made = await scim('POST', '/Users', { schemas: [USER], userName: 'toggled.tom@example.com', active: true });
    expect(made.status).toBe(201);
    const id = made.body.id as string;
    expect((await addTo(await groupNamed('soc'), id)).status).toBe(200);
    const token = (await api<{ token: string }>(server.url, admin, `/v1/operators/${id}/token`, { method: 'POST' })).body.token;
    expect((await api(server.url, token, '/v1/requests')).status).toBe(200);

    expect((await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] })).status).toBe(200);
    expect((await api(server.url, token, '/v1/requests')).status).toBe(401);
    expect((await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] })).status).toBe(200);

    expect((await api(server.url, token, '/v1/requests')).status, 'the pre-deactivation token works again').toBe(401);
  }, 60_000);

  // FINDING F8 (low-medium, fail open): a SCIM PUT that omits `active` re-activates a user the
  // directory deactivated. `readScimUser` (core identity/scim.ts) defaults an absent `active` to
  // true for PUT as for POST, and `Provisioning.updateUser` then sees active false → true and
  // lifts the disable. RFC 7643 gives `active` no default; a client replacing a profile without
  // it (several generic SCIM clients do) should not turn a leaver back on.
  it('F8: a SCIM PUT without `active` does not re-activate a deactivated user', async () => {
    const made = await scim('POST', '/Users', { schemas: [USER], userName: 'leaver.lee@example.com', active: true });
    expect(made.status).toBe(201);
    const id = made.body.id as string;
    expect((await addTo(await groupNamed('soc'), id)).status).toBe(200);
    expect((await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: false }] })).status).toBe(200);
    expect((await operator(id))?.disabled).toBe(true);

    const put = await scim('PUT', `/Users/${id}`, { schemas: [USER], userName: 'leaver.lee@example.com', displayName: 'Lee (left)' });
    expect(put.status).toBe(200);
    expect({ scimActive: put.body.active, operatorDisabled: (await operator(id))?.disabled }).toEqual({ scimActive: false, operatorDisabled: true });
  }, 60_000);

  // FINDING F5 (low): bad paging input is a 500, not a SCIM 400. `paging` (http/routes/scim.ts)
  // accepts any integer-valued Number, so `startIndex=1e20` becomes an OFFSET neither engine
  // takes; the error falls through `answerError` as "internal error".
  it('F5: an out-of-range startIndex answers 400 invalidValue, not 500', async () => {
    const res = await scim('GET', '/Users?startIndex=1e20&count=10');
    expect(res.status).toBe(400);
    const groups = await scim('GET', '/Groups?startIndex=99999999999999999999');
    expect(groups.status).toBe(400);
  }, 30_000);

  // FINDING F7 (low): an oversized SCIM body is answered in Countersign's /v1 error shape, not as
  // a SCIM error (RFC 7644 §3.12: `schemas: [urn:…:Error]`, `status`). The global `boundedBody`
  // (http/app.ts) answers before the SCIM routes' `answerError`, whose BODY_TOO_LARGE mapping is
  // never reached; Okta and Entra log an unparseable error.
  it('F7: a SCIM body over the size limit answers 413 with a SCIM error body', async () => {
    const res = await fetch(`${server.url}/scim/v2/Users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${scimToken}`, 'content-type': 'application/scim+json' },
      body: JSON.stringify({ schemas: [USER], userName: 'big@example.com', displayName: 'x'.repeat(2_000_000) }),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: '413' });
  }, 30_000);
});

// FINDING F6 (medium, availability): SCIM (and a sign-in's group sync) can disable, remove or
// demote the LAST active admin, which no admin can (core `checkOperatorChange`: "the last active
// admin: make another admin first"). `Credentials.syncManagedOperator` never runs that guard.
// An admin provisioned through SCIM removes the token-only admin (allowed: another admin remains),
// then the directory deactivates that SCIM admin: no active admin is left, every SCIM token dies
// with its maker, and only `countersign admin recover` on the server host gets back in.
describe.each(ENGINES)('second red-team review of sso: the last admin ($name)', ({ make }) => {
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

  it('F6: SCIM deactivation of the last active admin is refused (or leaves an admin)', async () => {
    const boot = server.bootstrap!.adminToken;
    const bootToken = (await api<{ token: string }>(server.url, boot, '/v1/scim/tokens', { body: { name: 'okta' } })).body.token;
    const yara = await scimCall(server.url, bootToken, 'POST', '/Users', { schemas: [USER], userName: 'yara@example.com', active: true });
    expect((await scimCall(server.url, bootToken, 'POST', '/Groups', { schemas: [GROUP], displayName: 'cs-admins', members: [{ value: yara.body.id }] })).status).toBe(201);
    const yaraToken = (await api<{ token: string }>(server.url, boot, `/v1/operators/${yara.body.id}/token`, { method: 'POST' })).body.token;
    const yaraScim = (await api<{ token: string }>(server.url, yaraToken, '/v1/scim/tokens', { body: { name: 'entra' } })).body.token;
    const bootId = (await api<{ items: Array<{ id: string; name: string; roles: string[] }> }>(server.url, boot, '/v1/operators')).body.items.find((o) => o.id !== yara.body.id && o.roles.includes('admin'))!.id;
    // Another admin remains, so Yara may remove the token-only admin (core's rule holds here).
    expect((await api(server.url, yaraToken, `/v1/operators/${bootId}`, { method: 'DELETE' })).status).toBe(200);
    // …and an admin cannot disable the last admin (Yara herself): core refuses it.
    expect((await api(server.url, yaraToken, `/v1/operators/${yara.body.id}`, { method: 'PATCH', body: { disabled: true } })).status).toBe(409);

    // The directory deactivates Yara.
    const off = await scimCall(server.url, yaraScim, 'PATCH', `/Users/${yara.body.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
    const stillAdmin = (await api(server.url, yaraToken, '/v1/operators')).status === 200;
    expect({ refused: off.status !== 200, stillAdmin }, 'SCIM left the server with no active admin').toEqual({ refused: true, stillAdmin: true });
  }, 60_000);
});

// FINDING F4 (medium): a deactivated reviewer's approval still counts. The vote transaction
// (engine/reviews.ts `review` → decisions.ts `vote`) judges the principal the request was
// authenticated with, cached up to CREDENTIAL_CACHE_MS on the server that took the request, and
// never re-reads the reviewer's operator row (disabled? removed? roles?) inside the transaction
// that writes the vote. On PostgreSQL with two servers, SCIM deactivation on server A commits,
// and a vote sent with the reviewer's API token to server B right after is accepted and decides
// the request: the approval does not fail closed. (Dashboard sessions are read on every request,
// so a session vote sent after the commit is refused; a session vote already authenticated when
// the deactivation commits is the same race, only narrower. Tokens are within the issue's 5 s;
// an approval is the one act that must not slip through that window.)
describe('second red-team review of sso: deactivation against an approval on another server (postgres)', () => {
  let db: TestDatabase;
  let idp: CraftedIssuer;
  let a: ServerProcess;
  let b: ServerProcess;

  async function serverFor(): Promise<ServerProcess> {
    const port = await freePort();
    return startServerProcess(db.url, {
      COUNTERSIGN_PORT: String(port),
      COUNTERSIGN_IDENTITY_FILE: identityFile({ issuer: idp.issuer, redirectUrl: `http://127.0.0.1:${port}/sso/callback` }),
      COUNTERSIGN_OIDC_CLIENT_SECRET: idp.clientSecret,
    });
  }

  beforeAll(async () => {
    db = postgresDatabase();
    idp = await startCraftedIssuer('countersign');
    a = await serverFor();
    b = await serverFor();
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await idp?.close();
    await db?.drop();
  });

  it('F4: a vote sent to server B just after SCIM deactivated the reviewer on server A is refused', async () => {
    const admin = a.bootstrap!.adminToken;
    const agentKey = a.bootstrap!.agentKey;
    const scimToken = (await api<{ token: string }>(a.url, admin, '/v1/scim/tokens', { body: { name: 'entra' } })).body.token;
    const user = await scimCall(a.url, scimToken, 'POST', '/Users', { schemas: [USER], userName: 'vera@example.com', active: true });
    expect(user.status).toBe(201);
    expect((await scimCall(a.url, scimToken, 'POST', '/Groups', { schemas: [GROUP], displayName: 'sec-leads', members: [{ value: user.body.id }] })).status).toBe(201);

    // Vera reviews with an API token (the CLI, a script; an admin made it for her).
    const token = (await api<{ token: string }>(a.url, admin, `/v1/operators/${user.body.id}/token`, { method: 'POST' })).body.token;
    const created = await api<{ id: string; status: string }>(a.url, agentKey, '/v1/requests', { body: { action: 'isolate_host', args: { host: 'ws-race' }, confidence: 0.82 } });
    expect(created.body.status).toBe('pending');
    // She looks at the request on B (her token is now in B's credential cache).
    expect((await api(b.url, token, `/v1/requests/${created.body.id}`)).status).toBe(200);

    // The directory deactivates her on A; the change has committed when the SCIM answer arrives.
    expect((await scimCall(a.url, scimToken, 'PATCH', `/Users/${user.body.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: false }] })).status).toBe(200);
    expect((await api(a.url, token, '/v1/requests')).status).toBe(401);

    // Her vote, already on its way to B.
    const vote = await api<{ status?: string }>(b.url, token, `/v1/requests/${created.body.id}/reviews`, { body: { verdict: 'approve' } });
    const after = await api<{ status: string }>(a.url, admin, `/v1/requests/${created.body.id}`);
    expect({ vote: vote.status, request: after.body.status }, 'a deactivated reviewer approved the request').toEqual({ vote: 401, request: 'pending' });
  }, 90_000);
});

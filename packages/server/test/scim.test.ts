/**
 * SCIM 2.0 provisioning (issue 20), on SQLite and PostgreSQL, against a real `countersign serve`
 * over HTTP. The request bodies are in the shapes Okta and Microsoft Entra ID send (from their
 * published SCIM provisioning guides: Okta's filter-then-create and `replace` of `active`,
 * Entra's capitalised `Replace`, `"False"` strings, filtered paths and `members` add/remove).
 * Users become operators, groups give roles through the role map, deactivation ends the
 * operator's session and refuses its token at once, and bad input answers an RFC 7644 error body
 * and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';

describe.each(ENGINES)('SCIM 2.0 provisioning ($name)', ({ make }) => {
  let db: TestDatabase;
  let idp: CraftedIssuer;
  let server: ServerProcess;
  let admin: string;
  let scimToken: string;
  let scimTokenId: string;

  beforeAll(async () => {
    db = make();
    idp = await startCraftedIssuer('countersign');
    const port = await freePort();
    server = await startServerProcess(db.url, {
      COUNTERSIGN_PORT: String(port),
      COUNTERSIGN_IDENTITY_FILE: identityFile({ issuer: idp.issuer, redirectUrl: `http://127.0.0.1:${port}/sso/callback` }),
      COUNTERSIGN_OIDC_CLIENT_SECRET: idp.clientSecret,
    });
    admin = server.bootstrap!.adminToken;
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await idp?.close();
    await db?.drop();
  });

  async function scim(method: string, path: string, body?: unknown, token = scimToken, raw?: string) {
    const res = await fetch(`${server.url}/scim/v2${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined || raw !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
      ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type'), body: (text ? JSON.parse(text) : null) as any };
  }

  async function operators() {
    return (await api<{ items: Array<{ id: string; name: string; roles: string[]; groups: string[]; disabled: boolean }> }>(server.url, admin, '/v1/operators')).body.items;
  }

  async function audit(type: string) {
    return (await api<{ items: Array<{ data: Record<string, unknown> }> }>(server.url, admin, `/v1/audit?type=${type}`)).body.items;
  }

  /** A dashboard session for `email` through single sign-on (the hostile-issuer stand-in, here well behaved), or the refusal's status. */
  async function ssoSession(sub: string, email: string, groups?: string[], reset = true): Promise<{ status: number; cookie?: string; text: string }> {
    idp.mode = 'good';
    idp.identity = { sub, email, groups };
    try {
      const login = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
      const cookie = login.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
      const auth = idp.authorize(login.headers.get('location')!);
      const cb = await fetch(`${server.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
      const session = cb.headers.getSetCookie().find((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c));
      return { status: cb.status, text: await cb.text(), ...(session ? { cookie: session.split(';')[0]! } : {}) };
    } finally {
      if (reset) idp.identity = null;
    }
  }

  const sessionStatus = async (cookie: string) => (await fetch(`${server.url}/v1/session`, { headers: { cookie } })).status;

  it('without a SCIM token: 401 with a SCIM error body; an operator token is not a SCIM token', async () => {
    const none = await scim('GET', '/Users', undefined, '');
    expect(none.status).toBe(401);
    expect(none.type).toMatch(/application\/scim\+json/);
    expect(none.body).toMatchObject({ schemas: [ERROR], status: '401' });
    expect((await scim('GET', '/Users', undefined, admin)).status).toBe(401);
  });

  it('an admin creates a SCIM token (shown once); a reviewer may not', async () => {
    const made = await api<{ id: string; token: string }>(server.url, admin, '/v1/scim/tokens', { body: { name: 'okta' } });
    expect(made.status).toBe(201);
    expect(made.body.token).toMatch(/^css_/);
    scimToken = made.body.token;
    scimTokenId = made.body.id;
    const listed = await api<{ items: Array<Record<string, unknown>> }>(server.url, admin, '/v1/scim/tokens');
    expect(listed.body.items).toEqual([expect.objectContaining({ id: scimTokenId, name: 'okta', status: 'active' })]);
    expect(JSON.stringify(listed.body)).not.toContain(scimToken);
    const reviewer = await api<{ token: string }>(server.url, admin, '/v1/operators', { body: { name: 'rita', roles: ['reviewer'] } });
    expect((await api(server.url, reviewer.body.token, '/v1/scim/tokens', { body: { name: 'mine' } })).status).toBe(403);
    expect((await api(server.url, reviewer.body.token, '/v1/scim/tokens')).status).toBe(403);
  });

  let okta: string;
  let leads: string;

  it('Okta: filter-then-create makes an operator with no role; a pushed group maps to roles; sign-in links to it', async () => {
    const lookup = await scim('GET', `/Users?filter=${encodeURIComponent('userName eq "isabella.ng@example.com"')}&startIndex=1&count=100`);
    expect(lookup.status).toBe(200);
    expect(lookup.body).toMatchObject({ schemas: ['urn:ietf:params:scim:api:messages:2.0:ListResponse'], totalResults: 0, Resources: [] });
    const created = await scim('POST', '/Users', {
      schemas: [USER],
      userName: 'isabella.ng@example.com',
      name: { givenName: 'Isabella', familyName: 'Ng' },
      emails: [{ primary: true, value: 'isabella.ng@example.com', type: 'work' }],
      displayName: 'Isabella Ng',
      locale: 'en-US',
      externalId: '00ujl29u0le5T6Aj10h7',
      groups: [],
      password: '1mz050nq',
      active: true,
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ schemas: [USER], userName: 'isabella.ng@example.com', externalId: '00ujl29u0le5T6Aj10h7', active: true, name: { givenName: 'Isabella', familyName: 'Ng' } });
    expect(JSON.stringify(created.body)).not.toContain('1mz050nq');
    okta = created.body.id;
    expect((await operators()).find((o) => o.id === okta)).toMatchObject({ name: 'isabella.ng@example.com', roles: [], disabled: false });
    // No role yet: the provider's sign-in finds the SCIM user but gives no session.
    expect((await ssoSession('okta-isabella', 'isabella.ng@example.com')).status).toBe(403);

    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'sec-leads', members: [{ value: okta, display: 'isabella.ng@example.com' }] });
    expect(group.status).toBe(201);
    expect(group.body.members).toEqual([expect.objectContaining({ value: okta })]);
    leads = group.body.id;
    expect((await operators()).find((o) => o.id === okta)).toMatchObject({ roles: ['lead', 'reviewer'], groups: ['sec-leads'] });
    expect((await audit('scim_group_changed')).at(-1)!.data).toMatchObject({ displayName: 'sec-leads', change: 'created', added: [okta] });
    expect((await audit('operator_synced')).at(-1)!.data).toMatchObject({ operatorId: okta, source: 'scim', roles: ['lead', 'reviewer'], previousRoles: [] });

    // No groups claim in the ID token: the SCIM roles hold; the sign-in links to the SCIM user.
    const signedIn = await ssoSession('okta-isabella', 'isabella.ng@example.com');
    expect(signedIn.status, signedIn.text).toBe(302);
    const me = await fetch(`${server.url}/v1/session`, { headers: { cookie: signedIn.cookie! } });
    expect(((await me.json()) as { operator: { id: string; roles: string[] } }).operator).toMatchObject({ id: okta, roles: ['lead', 'reviewer'] });
    expect((await scim('GET', `/Users/${okta}`)).body.groups).toEqual([expect.objectContaining({ value: leads, display: 'sec-leads' })]);
  });

  it('Okta: deactivation (replace active=false) ends the session and refuses the token at once; reactivation does not bring them back', async () => {
    const signedIn = await ssoSession('okta-isabella', 'isabella.ng@example.com');
    expect(await sessionStatus(signedIn.cookie!)).toBe(200);
    const token = (await api<{ token: string }>(server.url, admin, `/v1/operators/${okta}/token`, { method: 'POST' })).body.token;
    expect((await api(server.url, token, '/v1/requests')).status).toBe(200);
    const off = await scim('PATCH', `/Users/${okta}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
    expect(off.status).toBe(200);
    expect(off.body.active).toBe(false);
    // The server that made the change forgets its cache at once (other servers: within the 2 s cache).
    expect(await sessionStatus(signedIn.cookie!)).toBe(401);
    expect((await api(server.url, token, '/v1/requests')).status).toBe(401);
    expect((await ssoSession('okta-isabella', 'isabella.ng@example.com')).text).toMatch(/deactivated/);
    expect((await audit('operator_synced')).at(-1)!.data).toMatchObject({ operatorId: okta, source: 'scim', disabled: true });
    const on = await scim('PATCH', `/Users/${okta}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] });
    expect(on.body.active).toBe(true);
    expect(await sessionStatus(signedIn.cookie!)).toBe(401);
    expect((await ssoSession('okta-isabella', 'isabella.ng@example.com')).status).toBe(302);
  });

  let entra: string;

  it('Entra ID: enterprise extension, "Replace" with filtered paths, "False" strings, members Add and Remove', async () => {
    const created = await scim('POST', '/Users', {
      schemas: [USER, 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'],
      externalId: '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef',
      userName: 'Test_User_ab6490ee@example.com',
      active: true,
      emails: [{ primary: true, type: 'work', value: 'Test_User_fd0ea19b@example.com' }],
      meta: { resourceType: 'User' },
      name: { formatted: 'givenName familyName', familyName: 'familyName', givenName: 'givenName' },
      roles: [],
      'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User': { department: 'SOC', manager: { value: 'x' } },
    });
    expect(created.status).toBe(201);
    entra = created.body.id;
    const byExternal = await scim('GET', `/Users?filter=${encodeURIComponent('externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"')}`);
    expect(byExternal.body.totalResults).toBe(1);
    const byName = await scim('GET', `/Users?filter=${encodeURIComponent('userName eq "test_user_AB6490EE@example.com"')}`);
    expect(byName.body.Resources.map((r: { id: string }) => r.id)).toEqual([entra]);
    const patched = await scim('PATCH', `/Users/${entra}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'Replace', path: 'emails[type eq "work"].value', value: 'updatedEmail@example.com' },
        { op: 'Replace', path: 'name.familyName', value: 'updatedFamilyName' },
      ],
    });
    expect(patched.status).toBe(200);
    expect(patched.body.emails).toEqual([expect.objectContaining({ value: 'updatedEmail@example.com', type: 'work' })]);
    expect(patched.body.name.familyName).toBe('updatedFamilyName');

    const soc = await scim('POST', '/Groups', { schemas: [GROUP], externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159', displayName: 'soc', members: [] });
    expect(soc.status).toBe(201);
    const add = await scim('PATCH', `/Groups/${soc.body.id}`, { schemas: [PATCH], Operations: [{ op: 'Add', path: 'members', value: [{ $ref: null, value: entra }] }] });
    expect(add.status).toBe(200);
    expect((await operators()).find((o) => o.id === entra)).toMatchObject({ roles: ['reviewer'] });
    // Okta's removal shape on the other group, Entra's on this one.
    await scim('PATCH', `/Groups/${leads}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: entra, display: 'Test_User' }] }] });
    expect((await operators()).find((o) => o.id === entra)).toMatchObject({ roles: ['lead', 'reviewer'] });
    await scim('PATCH', `/Groups/${leads}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: `members[value eq "${entra}"]` }] });
    expect((await operators()).find((o) => o.id === entra)).toMatchObject({ roles: ['reviewer'] });
    const remove = await scim('PATCH', `/Groups/${soc.body.id}`, { schemas: [PATCH], Operations: [{ op: 'Remove', path: 'members', value: [{ $ref: null, value: entra }] }] });
    expect(remove.status).toBe(200);
    expect((await operators()).find((o) => o.id === entra)).toMatchObject({ roles: [] });
    const disabled = await scim('PATCH', `/Users/${entra}`, { schemas: [PATCH], Operations: [{ op: 'Replace', path: 'active', value: 'False' }] });
    expect(disabled.body.active).toBe(false);
    expect((await operators()).find((o) => o.id === entra)).toMatchObject({ disabled: true });
  });

  it('bad input answers RFC 7644 error bodies and changes nothing', async () => {
    const before = JSON.stringify(await operators());
    const cases: Array<[Promise<{ status: number; body: any }>, number, string | null]> = [
      [scim('POST', '/Users', undefined, scimToken, '{"userName": '), 400, 'invalidSyntax'],
      [scim('POST', '/Users', { schemas: [USER], active: true }), 400, 'invalidValue'],
      [scim('POST', '/Users', { schemas: [USER], userName: 'ISABELLA.NG@example.com' }), 409, 'uniqueness'],
      [scim('POST', '/Users', { schemas: [USER], userName: 'x\u0000y@example.com' }), 400, 'invalidValue'],
      [scim('GET', `/Users?filter=${encodeURIComponent('userName sw "a"')}`), 400, 'invalidFilter'],
      [scim('GET', `/Users?filter=${encodeURIComponent('password eq "a"')}`), 400, 'invalidFilter'],
      [scim('PATCH', `/Users/${okta}`, { schemas: [PATCH], Operations: [{ op: 'explode', path: 'active', value: false }] }), 400, null],
      [scim('PATCH', `/Users/${okta}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: 'maybe' }] }), 400, 'invalidValue'],
      [scim('POST', '/Groups', { schemas: [GROUP], displayName: 'sneaky', members: [{ value: (await operators()).find((o) => o.name === 'rita')!.id }] }), 400, 'invalidValue'],
      [scim('POST', '/Groups', { schemas: [GROUP], displayName: 'SEC-LEADS' }), 409, 'uniqueness'],
      [scim('GET', '/Users/op_nope'), 404, null],
      [scim('DELETE', '/Groups/grp_nope'), 404, null],
    ];
    for (const [pending, status, scimType] of cases) {
      const out = await pending;
      expect(out.status, JSON.stringify(out.body)).toBe(status);
      expect(out.body).toMatchObject({ schemas: [ERROR], status: String(status) });
      expect(typeof out.body.detail).toBe('string');
      if (scimType) expect(out.body.scimType).toBe(scimType);
    }
    expect(JSON.stringify(await operators())).toBe(before);
    expect((await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "sneaky"')}`)).body.totalResults).toBe(0);
  });

  it('SCIM never takes over an operator it did not make: a userName meeting a token operator is refused', async () => {
    const out = await scim('POST', '/Users', { schemas: [USER], userName: 'rita', active: true });
    expect(out.status).toBe(409);
    expect(out.body.scimType).toBe('uniqueness');
    expect((await operators()).find((o) => o.name === 'rita')).toMatchObject({ roles: ['reviewer'] });
  });

  it('DELETE removes the operator: every token revoked, every session ended, audited', async () => {
    const signedIn = await ssoSession('okta-isabella', 'isabella.ng@example.com');
    expect(signedIn.status).toBe(302);
    const token = (await api<{ token: string }>(server.url, admin, `/v1/operators/${okta}/token`, { method: 'POST' })).body.token;
    const gone = await fetch(`${server.url}/scim/v2/Users/${okta}`, { method: 'DELETE', headers: { authorization: `Bearer ${scimToken}` } });
    expect(gone.status).toBe(204);
    expect(await sessionStatus(signedIn.cookie!)).toBe(401);
    expect((await api(server.url, token, '/v1/requests')).status).toBe(401);
    expect((await operators()).find((o) => o.id === okta)).toBeUndefined();
    // A removed operator cannot sign in again through the provider either.
    const again = await ssoSession('okta-isabella', 'isabella.ng@example.com', ['sec-leads']);
    expect(again.status).toBe(403);
    expect(again.text).toMatch(/deactivated/);
    expect((await scim('GET', `/Users/${okta}`)).status).toBe(404);
    expect((await scim('GET', `/Groups/${leads}`)).body.members).toEqual([]);
    const entry = (await audit('operator_deprovisioned')).at(-1)!.data;
    expect(entry).toMatchObject({ operatorId: okta, source: 'scim' });
    expect((entry.revokedTokenIds as string[]).length).toBeGreaterThan(0);
  });

  it('concurrent first sign-ins of one person make one operator, and every one of them gets a session', async () => {
    let results: Array<{ status: number; text: string }>;
    try {
      results = await Promise.all(Array.from({ length: 4 }, () => ssoSession('race-1', 'racer@example.com', ['soc'], false)));
    } finally {
      idp.identity = null;
    }
    for (const r of results) expect(r.status, r.text).toBe(302);
    expect((await operators()).filter((o) => o.name === 'racer@example.com')).toEqual([expect.objectContaining({ roles: ['reviewer'] })]);
    expect((await audit('operator_provisioned')).filter((e) => e.data.name === 'racer@example.com')).toHaveLength(1);
  });

  it('a revoked SCIM token is refused from the next call', async () => {
    expect((await scim('GET', '/ServiceProviderConfig')).status).toBe(200);
    const revoked = await api<{ status: string }>(server.url, admin, `/v1/scim/tokens/${scimTokenId}`, { method: 'DELETE' });
    expect(revoked.body.status).toBe('revoked');
    const after = await scim('GET', '/Users');
    expect(after.status).toBe(401);
    expect(after.body.schemas).toEqual([ERROR]);
    expect((await audit('scim_token_revoked')).length).toBe(1);
  });
});

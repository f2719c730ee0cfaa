/**
 * Red-team review of branch `sso` (issue 20): rows the branch leaves unsigned. SCIM users and SSO
 * links carry a MAC, SCIM groups and memberships do not (the branch says so). A database writer
 * who can add a membership row, or rename a group, must not thereby give an operator a role; on
 * `sso` it does, at the operator's next sign-in. A real `countersign serve` on SQLite and
 * PostgreSQL; the tamper is a plain SQL write through a second connection, as such a writer has.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('red-team review of sso: unsigned SCIM groups ($name)', ({ make }) => {
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

  async function tamper(write: (db: Awaited<ReturnType<typeof connect>>['db']) => Promise<unknown>) {
    const conn = await connect(db.url);
    try {
      await write(conn.db);
    } finally {
      await conn.destroy();
    }
  }

  async function rolesOf(name: string): Promise<string[]> {
    const items = (await api<{ items: Array<{ name: string; roles: string[] }> }>(server.url, admin, '/v1/operators')).body.items;
    return items.find((o) => o.name === name)?.roles ?? [];
  }

  // FINDING 2 (medium): a forged `scim_members` row gives its role at the next sign-in. The
  // provider sends no groups claim (Okta/Entra with groups through SCIM only, a supported set-up:
  // "A SCIM-provisioned operator whose token carries no groups claim keeps the roles SCIM gave
  // it"), so the sign-in recomputes the roles from the membership table, which nothing signs.
  it('F2: a membership row written into the database does not make its operator admin at sign-in', async () => {
    const bob = await scim('POST', '/Users', { schemas: [USER], userName: 'bob@example.com', active: true });
    expect(bob.status).toBe(201);
    expect((await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'soc', members: [{ value: bob.body.id }] })).status).toBe(201);
    const admins = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'cs-admins', members: [] });
    expect(admins.status).toBe(201);
    const first = await signIn('bob-sub', 'bob@example.com', undefined);
    expect(first.roles).toEqual(['reviewer']);

    await tamper((k) => k.insertInto('scim_members' as never).values({ group_id: admins.body.id, operator_id: bob.body.id } as never).execute());

    const again = await signIn('bob-sub', 'bob@example.com', undefined);
    expect(again.roles).not.toContain('admin');
    expect(await rolesOf('bob@example.com')).not.toContain('admin');
  }, 60_000);

  // FINDING 2b (medium): the same with a group's name: renaming a SCIM group row in the database
  // to a name the role map gives `admin` makes every member admin at their next sign-in.
  it('F2b: a group renamed in the database does not make its members admin at sign-in', async () => {
    const carol = await scim('POST', '/Users', { schemas: [USER], userName: 'carol@example.com', active: true });
    expect(carol.status).toBe(201);
    const team = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'interns-2', externalId: 'ext-interns-2', members: [{ value: carol.body.id }] });
    expect(team.status).toBe(201);
    // interns-2 maps to nothing; give carol a role through soc so that she can sign in at all.
    const soc = (await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "soc"')}`)).body.Resources[0];
    expect((await scim('PATCH', `/Groups/${soc.id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'add', path: 'members', value: [{ value: carol.body.id }] }] })).status).toBe(200);
    expect((await signIn('carol-sub', 'carol@example.com', undefined)).roles).toEqual(['reviewer']);

    // The external id is what the role map is matched against too (scimRoles reads display_name and external_id).
    await tamper((k) => k.updateTable('scim_groups' as never).set({ external_id: 'cs-admins' } as never).where('id' as never, '=', team.body.id as never).execute());

    const again = await signIn('carol-sub', 'carol@example.com', undefined);
    expect(again.roles).not.toContain('admin');
    expect(await rolesOf('carol@example.com')).not.toContain('admin');
  }, 60_000);
});

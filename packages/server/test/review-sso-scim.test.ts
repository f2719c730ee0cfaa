/**
 * Red-team review of branch `sso` (issue 20): SCIM against the admins' own decisions. An admin's
 * disable of an operator (incident response, "Deactivation revokes sessions and tokens") and an
 * admin's removal must hold against the SCIM channel. A real `countersign serve` on SQLite and
 * PostgreSQL, SCIM over HTTP in the shapes Okta and Entra send.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { useSsoServer } from './support/sso-server.ts';
import { ENGINES, } from './support/databases.ts';
import { type CraftedIssuer } from './support/oidc.ts';
import { api, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('red-team review of sso: SCIM against admin decisions ($name)', ({ make }) => {
  const sso = useSsoServer(make);
  const { scim } = sso;
  let idp: CraftedIssuer;
  let server: ServerProcess;
  let admin: string;
  beforeAll(() => {
    ({ idp, server, admin } = sso);
  });

  // FINDING 4 (medium): a SCIM write that does not touch `active` re-enables an operator an
  // admin disabled. `updateUser` applies `disabled: !next.active` on every PUT and PATCH, and the
  // SCIM row still says active, so the provider's routine profile push (a new display name, a
  // PATCH Okta and Entra send on any attribute change) silently lifts an admin's disable: the
  // kill switch an incident responder pulled is undone by the next directory sync.
  it('F4: a SCIM profile PATCH does not re-enable an operator an admin disabled', async () => {
    const dave = await scim('POST', '/Users', { schemas: [USER], userName: 'dave@example.com', active: true });
    expect(dave.status).toBe(201);
    expect((await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'soc', members: [{ value: dave.body.id }] })).status).toBe(201);
    const disabled = await api<any>(server.url, admin, `/v1/operators/${dave.body.id}`, { method: 'PATCH', body: { disabled: true } });
    expect(disabled.status).toBe(200);
    expect(disabled.body.disabled).toBe(true);

    const patched = await scim('PATCH', `/Users/${dave.body.id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', path: 'displayName', value: 'Dave D.' }] });
    expect(patched.status).toBe(200);

    const now = (await api<{ items: Array<{ id: string; disabled: boolean }> }>(server.url, admin, '/v1/operators')).body.items.find((o) => o.id === dave.body.id);
    expect(now?.disabled).toBe(true);
    // …and so the person cannot sign in either.
    idp.mode = 'good';
    idp.identity = { sub: 'dave-sub', email: 'dave@example.com', groups: undefined };
    const start = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
    const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
    const auth = idp.authorize(start.headers.get('location')!);
    const back = await fetch(`${server.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
    idp.identity = null;
    expect(back.headers.getSetCookie().some((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c))).toBe(false);
  }, 60_000);

  // FINDING 5 (medium): a SCIM token outlives the admin who made it. Removing an admin revokes
  // their tokens and ends their sessions, but a SCIM token they minted (and saw, once) keeps
  // working, and with a role map that gives a group `admin` it is admin power: the removed
  // admin still creates users and puts them in that group. A SCIM token's authority should end
  // with its maker's (or the removal should revoke it, or name it for another admin to keep).
  it('F5: a SCIM token made by an admin who is then removed no longer works', async () => {
    const made = await api<{ token: string; id: string }>(server.url, admin, '/v1/operators', { body: { name: 'erin', roles: ['admin'] } });
    expect(made.status).toBe(201);
    const erin = made.body.token;
    const minted = await api<{ token: string }>(server.url, erin, '/v1/scim/tokens', { body: { name: 'erin-okta' } });
    expect(minted.status).toBe(201);
    const erinScim = minted.body.token;
    expect((await scim('GET', '/Users', undefined, erinScim)).status).toBe(200);

    expect((await api(server.url, admin, `/v1/operators/${made.body.id}`, { method: 'DELETE' })).status).toBe(200);
    expect((await api(server.url, erin, '/v1/operators')).status).toBe(401);

    const after = await scim('POST', '/Users', { schemas: [USER], userName: 'erin-sock@example.com', active: true }, erinScim);
    expect(after.status).toBe(401);
  }, 60_000);

  /** One sign-in through the browser half; the session cookie, or undefined when refused. */
  async function trySignIn(sub: string, email: string): Promise<{ cookie: string | undefined; text: string }> {
    idp.mode = 'good';
    idp.identity = { sub, email, groups: undefined };
    const start = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
    const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
    const auth = idp.authorize(start.headers.get('location')!);
    const back = await fetch(`${server.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie } });
    idp.identity = null;
    const session = back.headers.getSetCookie().find((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c));
    return { cookie: session?.split(';')[0], text: await back.text() };
  }

  /** The `soc` group (reviewer), made if no earlier test made it. */
  async function socGroup(): Promise<{ id: string }> {
    const found = (await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "soc"')}`)).body.Resources[0];
    return found ?? (await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'soc', members: [] })).body;
  }

  // FINDING 6 (high): a recycled userName hands the new person's operator to the old person.
  // SCIM DELETE keeps the operator and its SSO link (issuer, subject); a later POST of the same
  // userName — the address given to a new hire — restores that operator with the new person's
  // groups. The old person's provider account (unassigned from the app, its address changed,
  // still able to authenticate: Entra's "assignment required" is off by default) signs in by
  // its old subject, finds the link, and gets the new person's roles.
  it('F6: after SCIM delete and re-create of a userName, the old subject does not sign in to the restored operator', async () => {
    const first = await scim('POST', '/Users', { schemas: [USER], userName: 'frank@example.com', active: true });
    expect(first.status).toBe(201);
    const soc = await socGroup();
    const addTo = (id: string) => scim('PATCH', `/Groups/${soc.id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'add', path: 'members', value: [{ value: id }] }] });
    expect((await addTo(first.body.id)).status).toBe(200);
    expect((await trySignIn('frank-old-sub', 'frank@example.com')).cookie).toBeDefined();

    // Frank leaves: unassigned, deleted over SCIM. His address goes to a new hire.
    expect((await scim('DELETE', `/Users/${first.body.id}`)).status).toBe(204);
    const second = await scim('POST', '/Users', { schemas: [USER], userName: 'frank@example.com', active: true });
    expect(second.status).toBe(201);
    expect((await addTo(second.body.id)).status).toBe(200);

    // The old account, under its new address, signs in by its old subject.
    const old = await trySignIn('frank-old-sub', 'frank.former@example.com');
    expect(old.cookie, 'the departed person got a session on the new hire\'s operator').toBeUndefined();
  }, 60_000);

  // FINDING 6b (low, availability): the new person behind a recycled userName can never sign in:
  // the restored operator still carries the old subject's link, so the new subject is refused as
  // "an operator named … already exists and was not made by this identity provider", which it was.
  it('F6b: the new person behind a recycled userName can sign in', async () => {
    const first = await scim('POST', '/Users', { schemas: [USER], userName: 'gina@example.com', active: true });
    const soc = await socGroup();
    const addTo = (id: string) => scim('PATCH', `/Groups/${soc.id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'add', path: 'members', value: [{ value: id }] }] });
    expect((await addTo(first.body.id)).status).toBe(200);
    expect((await trySignIn('gina-old-sub', 'gina@example.com')).cookie).toBeDefined();
    expect((await scim('DELETE', `/Users/${first.body.id}`)).status).toBe(204);
    const second = await scim('POST', '/Users', { schemas: [USER], userName: 'gina@example.com', active: true });
    expect(second.status).toBe(201);
    expect((await addTo(second.body.id)).status).toBe(200);
    const fresh = await trySignIn('gina-new-sub', 'gina@example.com');
    expect(fresh.cookie, fresh.text).toBeDefined();
  }, 60_000);
});

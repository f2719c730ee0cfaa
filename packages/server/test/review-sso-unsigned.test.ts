/**
 * Red-team review of branch `sso` (issue 20): rows the branch leaves unsigned. SCIM users and SSO
 * links carry a MAC, SCIM groups and memberships do not (the branch says so). A database writer
 * who can add a membership row, or rename a group, must not thereby give an operator a role; on
 * `sso` it does, at the operator's next sign-in. A real `countersign serve` on SQLite and
 * PostgreSQL; the tamper is a plain SQL write through a second connection, as such a writer has.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/store/connect.ts';
import { useSsoServer } from './support/sso-server.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('red-team review of sso: unsigned SCIM groups ($name)', ({ make }) => {
  const sso = useSsoServer(make);
  const { scim, signIn, rolesOf } = sso;
  let db: TestDatabase;
  beforeAll(() => {
    ({ db } = sso);
  });

  async function tamper(write: (db: Awaited<ReturnType<typeof connect>>['db']) => Promise<unknown>) {
    const conn = await connect(db.url);
    try {
      await write(conn.db);
    } finally {
      await conn.destroy();
    }
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

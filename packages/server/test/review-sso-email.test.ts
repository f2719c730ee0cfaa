/**
 * Red-team review of branch `sso` (issue 20): addresses that are not the same address. Core
 * `checkIdTokenClaims` and `operatorNameFor` fold case with JavaScript's full Unicode
 * `toLowerCase`, which maps some non-ASCII letters onto ASCII ones (U+212A KELVIN SIGN becomes
 * `k`). A provider account whose address is spelt with one therefore signs in as the operator of
 * the plain-ASCII address. A real `countersign serve` on SQLite and PostgreSQL.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { useSsoServer } from './support/sso-server.ts';
import { ENGINES, } from './support/databases.ts';
import { type CraftedIssuer } from './support/oidc.ts';
import { type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('red-team review of sso: address folding ($name)', ({ make }) => {
  const sso = useSsoServer(make);
  const { scim, signIn } = sso;
  let idp: CraftedIssuer;
  let server: ServerProcess;
  beforeAll(() => {
    ({ idp, server } = sso);
  });

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

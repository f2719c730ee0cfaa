/**
 * The fixes for the red-team review of SSO + SCIM (issue 20), beyond the reviewer's own tests
 * (review-sso-*.test.ts): the neighbouring cases of F4 (who disabled) and F5 (a token ends with
 * its maker's admin authority). A real `countersign serve` on SQLite and PostgreSQL, SCIM over HTTP.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { useSsoServer } from './support/sso-server.ts';
import { ENGINES, } from './support/databases.ts';
import { api, type ServerProcess } from './support/server-process.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const _GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

describe.each(ENGINES)('sso review fixes: disables and token makers ($name)', ({ make }) => {
  const sso = useSsoServer(make);
  const { scim } = sso;
  let server: ServerProcess;
  let admin: string;
  beforeAll(() => {
    ({ server, admin } = sso);
  });

  const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
  const setActive = (id: string, value: boolean | string) => scim('PATCH', `/Users/${id}`, { schemas: [PATCH_OP], Operations: [{ op: 'Replace', path: 'active', value }] });
  async function disabledOf(id: string): Promise<boolean | undefined> {
    return (await api<{ items: Array<{ id: string; disabled: boolean }> }>(server.url, admin, '/v1/operators')).body.items.find((o) => o.id === id)?.disabled;
  }

  it('F4: SCIM active still disables and re-enables on its own; an admin disable survives active false then true; the admin lifts it', async () => {
    const u = await scim('POST', '/Users', { schemas: [USER], userName: 'hana@example.com', active: true });
    expect(u.status).toBe(201);
    expect((await setActive(u.body.id, false)).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(true);
    expect((await setActive(u.body.id, 'True')).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(false);

    expect((await api(server.url, admin, `/v1/operators/${u.body.id}`, { method: 'PATCH', body: { disabled: true } })).status).toBe(200);
    expect((await setActive(u.body.id, false)).status).toBe(200);
    expect((await setActive(u.body.id, true)).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(true);
    // A whole-user PUT saying active is no lift either.
    expect((await scim('PUT', `/Users/${u.body.id}`, { schemas: [USER], userName: 'hana@example.com', active: true, displayName: 'Hana' })).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(true);

    expect((await api(server.url, admin, `/v1/operators/${u.body.id}`, { method: 'PATCH', body: { disabled: false } })).status).toBe(200);
    expect(await disabledOf(u.body.id)).toBe(false);
  }, 60_000);

  async function adminWithToken(name: string) {
    const made = await api<{ token: string; id: string }>(server.url, admin, '/v1/operators', { body: { name, roles: ['admin'] } });
    expect(made.status).toBe(201);
    const minted = await api<{ id: string; token: string }>(server.url, made.body.token, '/v1/scim/tokens', { body: { name: `${name}-okta` } });
    expect(minted.status).toBe(201);
    expect((await scim('GET', '/Users', undefined, minted.body.token)).status).toBe(200);
    return { operatorId: made.body.id, tokenId: minted.body.id, scimToken: minted.body.token };
  }

  async function tokenStatus(id: string): Promise<string | undefined> {
    return (await api<{ items: Array<{ id: string; status: string }> }>(server.url, admin, '/v1/scim/tokens')).body.items.find((t) => t.id === id)?.status;
  }

  it('F5: disabling the maker revokes their SCIM tokens, for good (enabling them again does not bring the token back)', async () => {
    const ivan = await adminWithToken('ivan');
    expect((await api(server.url, admin, `/v1/operators/${ivan.operatorId}`, { method: 'PATCH', body: { disabled: true } })).status).toBe(200);
    expect((await scim('GET', '/Users', undefined, ivan.scimToken)).status).toBe(401);
    expect(await tokenStatus(ivan.tokenId)).toBe('revoked');
    expect((await api(server.url, admin, `/v1/operators/${ivan.operatorId}`, { method: 'PATCH', body: { disabled: false } })).status).toBe(200);
    expect((await scim('GET', '/Users', undefined, ivan.scimToken)).status).toBe(401);
  }, 60_000);

  it('F5: demoting the maker from admin revokes their SCIM tokens', async () => {
    const judy = await adminWithToken('judy');
    expect((await api(server.url, admin, `/v1/operators/${judy.operatorId}`, { method: 'PATCH', body: { roles: ['reviewer'] } })).status).toBe(200);
    expect((await scim('GET', '/Users', undefined, judy.scimToken)).status).toBe(401);
    expect(await tokenStatus(judy.tokenId)).toBe('revoked');
  }, 60_000);
});

/**
 * SCIM deactivation across servers (issue 20): two `countersign serve` processes on one PostgreSQL
 * database. An operator signed in to server B through single sign-on is deactivated over SCIM on
 * server A; B refuses the session (and an open event stream on it ends) within the 2 s
 * credential cache plus the stream re-check, well inside the 5 s.
 */
import { request as httpGet } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresDatabase, type TestDatabase } from './support/databases.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer } from './support/oidc.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

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

describe('SCIM deactivation on one server ends the session on another', () => {
  it('within 5 s: the session is refused and its open event stream ends', async () => {
    const admin = a.bootstrap!.adminToken;
    const made = await (await fetch(`${a.url}/v1/scim/tokens`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'entra' }) })).json() as { token: string };
    const scim = (method: string, path: string, body: unknown) =>
      fetch(`${a.url}/scim/v2${path}`, { method, headers: { authorization: `Bearer ${made.token}`, 'content-type': 'application/scim+json' }, body: JSON.stringify(body) });
    const user = (await (await scim('POST', '/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'nadia@example.com', active: true })).json()) as { id: string };
    expect((await scim('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'soc', members: [{ value: user.id }] })).status).toBe(201);

    // Nadia signs in on server B (no groups claim: SCIM's roles hold).
    idp.mode = 'good';
    idp.identity = { sub: 'entra-nadia', email: 'nadia@example.com', groups: undefined };
    const login = await fetch(`${b.url}/sso/login`, { redirect: 'manual' });
    const sso = login.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
    const auth = idp.authorize(login.headers.get('location')!);
    const cb = await fetch(`${b.url}/sso/callback?code=${auth.code}&state=${encodeURIComponent(auth.state)}`, { redirect: 'manual', headers: { cookie: sso } });
    idp.identity = null;
    expect(cb.status, await cb.text()).toBe(302);
    const cookie = cb.headers.getSetCookie().find((c) => c.startsWith('countersign_session='))!.split(';')[0]!;
    expect((await fetch(`${b.url}/v1/session`, { headers: { cookie } })).status).toBe(200);

    const ended = new Promise<number>((resolve, reject) => {
      const req = httpGet(`${b.url}/v1/events`, { headers: { cookie }, agent: false }, (res) => {
        expect(res.statusCode).toBe(200);
        res.on('data', () => {});
        res.on('end', () => resolve(Date.now()));
        res.on('error', () => resolve(Date.now()));
      });
      req.on('error', reject);
      req.end();
    });
    await new Promise((r) => setTimeout(r, 300));

    const off = await scim('PATCH', `/Users/${user.id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'Replace', path: 'active', value: 'False' }] });
    const deactivatedAt = Date.now();
    expect(off.status).toBe(200);
    let refusedAt = 0;
    while (!refusedAt && Date.now() - deactivatedAt < 10_000) {
      if ((await fetch(`${b.url}/v1/session`, { headers: { cookie } })).status === 401) refusedAt = Date.now();
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(refusedAt, 'server B never refused the session').toBeGreaterThan(0);
    expect(refusedAt - deactivatedAt).toBeLessThan(5_000 + 3_000); // 2 s cache + a loaded machine's request time
    expect((await ended) - deactivatedAt).toBeLessThan(5_000 + 3_000); // + the 1 s stream re-check
  }, 30_000);
});

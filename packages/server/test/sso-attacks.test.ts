/**
 * Single sign-on under attack (issue 20): a real `countersign serve` whose identity provider is a
 * hostile issuer written in the test (support/oidc.ts `startCraftedIssuer`). It answers the code
 * exchange with whatever ID token the test asks for; each bad one must be refused with a page
 * saying why, no session cookie set and no operator made. The sign-in's browser half (the
 * `countersign_sso` cookie and the state) is driven with fetch, as an attacker would.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseIdentityFile } from '@countersign/core';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientKey } from '../src/http/routes/sso.ts';
import { MAX_LOGINS_PER_CLIENT } from '../src/identity/provisioning.ts';
import { OidcClient, SignInFailure } from '../src/identity/oidc.ts';
import { freePort, identityFile, startCraftedIssuer, type CraftedIssuer, type CraftMode } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

let dir: string;
let crafted: CraftedIssuer;
let server: ServerProcess;
let admin: string;
let file: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-sso-attacks-'));
  crafted = await startCraftedIssuer('countersign');
  const port = await freePort();
  file = identityFile({ issuer: crafted.issuer, redirectUrl: `http://127.0.0.1:${port}/sso/callback` });
  server = await startServerProcess(`sqlite:${join(dir, 'countersign.db')}`, {
    COUNTERSIGN_PORT: String(port),
    COUNTERSIGN_IDENTITY_FILE: file,
    COUNTERSIGN_OIDC_CLIENT_SECRET: crafted.clientSecret,
  });
  admin = server.bootstrap!.adminToken;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await crafted?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Login {
  cookie: string;
  location: string;
}

async function startLogin(): Promise<Login> {
  const res = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
  expect(res.status).toBe(302);
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='));
  expect(cookie).toMatch(/HttpOnly/i);
  expect(cookie).toMatch(/SameSite=Lax/i);
  return { cookie: cookie!.split(';')[0]!, location: res.headers.get('location')! };
}

async function callback(query: string, cookie: string | undefined) {
  const res = await fetch(`${server.url}/sso/callback?${query}`, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  return { status: res.status, text: await res.text(), location: res.headers.get('location'), session: res.headers.getSetCookie().find((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c)) };
}

async function attempt(mode: CraftMode) {
  crafted.mode = mode;
  const login = await startLogin();
  const auth = crafted.authorize(login.location);
  return { ...(await callback(`code=${auth.code}&state=${encodeURIComponent(auth.state)}`, login.cookie)), auth, login };
}

async function operatorNames(): Promise<string[]> {
  return (await api<{ items: Array<{ name: string }> }>(server.url, admin, '/v1/operators')).body.items.map((o) => o.name);
}

describe('OpenID Connect relying party against a hostile issuer', () => {
  it('control: a well-formed token signs in, with PKCE S256 and client authentication on the exchange', async () => {
    const out = await attempt('good');
    expect(out.status, out.text).toBe(302);
    expect(out.location).toBe('/');
    expect(out.session).toMatch(/HttpOnly/i);
    expect(out.auth.method).toBe('S256');
    const sent = crafted.tokenRequests.at(-1)!;
    expect(createHash('sha256').update(sent.form.code_verifier!).digest('base64url')).toBe(out.auth.challenge);
    expect(sent.authorization).toBe(`Basic ${Buffer.from(`countersign:${crafted.clientSecret}`).toString('base64')}`);
    expect(sent.form.client_secret).toBeUndefined();
    const me = await fetch(`${server.url}/v1/session`, { headers: { cookie: out.session!.split(';')[0]! } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { operator: { name: string; roles: string[] } }).operator).toMatchObject({ name: 'good@example.com', roles: ['lead', 'reviewer'] });
  });

  const refusals: Array<[CraftMode, RegExp]> = [
    ['wrong_audience', /for another client/],
    ['multi_audience_no_azp', /another authorized party/],
    ['expired', /expired/],
    ['wrong_nonce', /not for this sign-in \(nonce\)/],
    ['wrong_issuer', /another issuer/],
    ['alg_none', /algorithm|signature/],
    ['hs256_with_secret', /algorithm that is not accepted/],
    ['other_key', /signature does not verify/],
    ['bad_domain', /accounts of evil\.test may not sign in here/],
    ['unmapped_group', /none of your groups gives a role/],
  ];
  it.each(refusals)('%s: refused with a page saying why; no session, no operator', async (mode, why) => {
    const out = await attempt(mode);
    expect(out.status).toBe(403);
    expect(out.text).toMatch(why);
    expect(out.session).toBeUndefined();
    const names = await operatorNames();
    expect(names).not.toContain(`${mode.replace(/_/g, '-')}@example.com`);
    expect(names).not.toContain('eve@evil.test');
  });

  it('refusals about the person are audited (domain, no role); the group that maps to none is not an operator', async () => {
    const refused = (await api<{ items: Array<{ data: { reason: string; subject: string } }> }>(server.url, admin, '/v1/audit?type=sso_refused')).body.items;
    expect(refused.map((e) => `${e.data.subject}:${e.data.reason}`).sort()).toEqual(['crafted-bad_domain:domain', 'crafted-unmapped_group:no_role']);
  });

  it('a replayed callback (same cookie, code and state) is refused: the sign-in is taken once', async () => {
    crafted.mode = 'good';
    const login = await startLogin();
    const auth = crafted.authorize(login.location);
    const query = `code=${auth.code}&state=${encodeURIComponent(auth.state)}`;
    expect((await callback(query, login.cookie)).status).toBe(302);
    const again = await callback(query, login.cookie);
    expect(again.status).toBe(400);
    expect(again.text).toMatch(/unknown, used, lapsed, or its state does not match/);
    expect(again.session).toBeUndefined();
  });

  it("state is bound to the browser: another browser's state, or no cookie, is refused, and the code is never exchanged", async () => {
    crafted.mode = 'good';
    const victim = await startLogin();
    const attacker = await startLogin();
    const a = crafted.authorize(attacker.location);
    const exchanges = crafted.tokenRequests.length;
    // The attacker's code and state, ridden on the victim's sign-in cookie (login CSRF).
    const mixed = await callback(`code=${a.code}&state=${encodeURIComponent(a.state)}`, victim.cookie);
    expect(mixed.status).toBe(400);
    expect(mixed.session).toBeUndefined();
    const bare = await callback(`code=${a.code}&state=${encodeURIComponent(a.state)}`, undefined);
    expect(bare.status).toBe(400);
    expect(bare.text).toMatch(/did not start this sign-in/);
    expect(crafted.tokenRequests.length).toBe(exchanges);
    // The victim's sign-in was taken by the mismatch: it cannot be finished later either.
    const v = crafted.authorize(victim.location);
    expect((await callback(`code=${v.code}&state=${encodeURIComponent(v.state)}`, victim.cookie)).status).toBe(400);
  });

  it('a code sent without the right PKCE verifier is refused by the provider, and the page says so', async () => {
    crafted.mode = 'good';
    const login = await startLogin();
    const auth = crafted.authorize(login.location);
    // A second sign-in's verifier cannot redeem the first one's code: swap the challenges.
    const other = await startLogin();
    const o = crafted.authorize(other.location);
    const out = await callback(`code=${o.code}&state=${encodeURIComponent(auth.state)}`, login.cookie);
    expect(out.status).toBe(403);
    expect(out.text).toMatch(/refused the sign-in code/);
    expect(crafted.tokenRequests.at(-1)!.form.code_verifier).toBeTruthy();
  });

  it('the provider errors and junk in the callback are escaped on the page', async () => {
    const login = await startLogin();
    const out = await callback(`error=access_denied&error_description=${encodeURIComponent('<script>alert(1)</script>')}`, login.cookie);
    expect(out.status).toBe(403);
    expect(out.text).not.toContain('<script>alert');
    expect(out.text).toContain('&lt;script&gt;');
  });

  it('a provider that does not offer PKCE with S256 is not used (no authorization URL is made)', async () => {
    const settings = parseIdentityFile(readFileSync(file, 'utf8'), file).oidc!;
    crafted.pkceMethods = ['plain'];
    try {
      const client = new OidcClient(settings, crafted.clientSecret);
      await expect(client.authorizationUrl({ state: 's', nonce: 'n', verifier: 'v'.repeat(43) })).rejects.toThrow(SignInFailure);
      await expect(client.authorizationUrl({ state: 's', nonce: 'n', verifier: 'v'.repeat(43) })).rejects.toThrow(/PKCE with S256/);
    } finally {
      crafted.pkceMethods = ['S256'];
    }
    // Control: the same client with S256 offered builds the URL with the S256 challenge.
    const url = new URL(await new OidcClient(settings, crafted.clientSecret).authorizationUrl({ state: 's', nonce: 'n', verifier: 'v'.repeat(43) }));
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toBe(createHash('sha256').update('v'.repeat(43)).digest('base64url'));
  });

  it('the identity file is validated at start: a bad one stops the server naming the key', async () => {
    const { runCli } = await import('./support/server-process.ts');
    const bad = identityFile({ issuer: 'http://idp.example.com', redirectUrl: 'http://127.0.0.1:1/sso/callback' });
    const out = await runCli(['serve'], { COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'bad.db')}`, COUNTERSIGN_IDENTITY_FILE: bad, COUNTERSIGN_OIDC_CLIENT_SECRET: 'x', COUNTERSIGN_PORT: '0' });
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/oidc\.issuer: https is required/);
  });

  it('one address cannot fill the table of sign-ins in flight: past the cap it gets 429 until one of its own is finished', async () => {
    crafted.mode = 'good';
    const open: Login[] = [];
    let refused: Response | undefined;
    for (let i = 0; i <= MAX_LOGINS_PER_CLIENT && !refused; i++) {
      const res = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
      if (res.status === 429) refused = res;
      else {
        expect(res.status).toBe(302);
        open.push({ cookie: res.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!, location: res.headers.get('location')! });
      }
    }
    expect(refused, 'the cap was never reached').toBeDefined();
    expect(await refused!.text()).toMatch(/sign-ins started from this address are still open/);
    expect(refused!.headers.getSetCookie().some((c) => c.startsWith('countersign_sso='))).toBe(false);
    // Finishing one frees its place.
    const done = open[0]!;
    const auth = crafted.authorize(done.location);
    expect((await callback(`code=${auth.code}&state=${encodeURIComponent(auth.state)}`, done.cookie)).status).toBe(302);
    expect((await fetch(`${server.url}/sso/login`, { redirect: 'manual' })).status).toBe(302);
    expect((await fetch(`${server.url}/sso/login`, { redirect: 'manual' })).status).toBe(429);
  });

  it('clientKey: IPv4 as is (also IPv4-mapped), IPv6 by its /64', () => {
    expect(clientKey('203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey('2001:DB8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8:1:2::99')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey(null)).toBeNull();
  });
});

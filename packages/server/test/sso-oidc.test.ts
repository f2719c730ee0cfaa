/**
 * Single sign-on end to end (issue 20), on SQLite and PostgreSQL: a real OpenID Connect provider
 * (`oidc-provider`, support/oidc.ts) on a loopback port, a real `countersign serve` configured
 * for it, and Debian's Chromium clicking through the whole redirect flow: the dashboard's SSO
 * button, the provider's login and consent pages, the callback, and back into the dashboard.
 * Each sign-in creates or updates an operator with roles from the group claim, audited; a role
 * change or a disable ends the session; a domain not allowed or a group mapping to no role is
 * refused; a stolen code cannot be redeemed by another browser (PKCE); the token admin remains.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { ensureDashboardBuilt, launchChromium, watchPage } from './support/dashboard-browser.ts';
import { freePort, identityFile, startRealProvider, type RealProvider } from './support/oidc.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

let browser: Browser;

beforeAll(async () => {
  ensureDashboardBuilt();
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
});

describe.each(ENGINES)('single sign-on through a real OpenID Connect provider ($name)', ({ make }) => {
  let db: TestDatabase;
  let idp: RealProvider;
  let server: ServerProcess;
  let admin: string;

  beforeAll(async () => {
    db = make();
    const port = await freePort();
    const redirect = `http://127.0.0.1:${port}/sso/callback`;
    idp = await startRealProvider(redirect, {
      alice: { email: 'Alice@Example.com', name: 'Alice Ng', groups: ['sec-leads', 'unrelated'] },
      mallory: { email: 'mallory@evil.test', groups: ['sec-leads'] },
      ivan: { email: 'ivan@example.com', groups: ['interns'] },
    });
    server = await startServerProcess(db.url, {
      COUNTERSIGN_PORT: String(port),
      COUNTERSIGN_IDENTITY_FILE: identityFile({ issuer: idp.issuer, redirectUrl: redirect }),
      COUNTERSIGN_OIDC_CLIENT_SECRET: idp.clientSecret,
    });
    admin = server.bootstrap!.adminToken;
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await idp?.close();
    await db?.drop();
  });

  /** Through the provider's login and consent pages; stops at the callback when `hold` is given (the request is recorded, not sent). */
  async function throughProvider(context: BrowserContext, login: string, hold?: { url?: string; cookie?: string }): Promise<Page> {
    const page = await context.newPage();
    if (hold) {
      // The provider's redirect to the callback is followed inside the browser's network stack
      // (Playwright's page.route never sees redirects), so the hold is the DevTools protocol's
      // Fetch domain: the callback request is recorded and failed, never reaching the server.
      const cdp = await context.newCDPSession(page);
      cdp.on('Fetch.requestPaused', (event: { requestId: string; request: { url: string } }) => {
        hold.url = event.request.url;
        void cdp.send('Fetch.failRequest', { requestId: event.requestId, errorReason: 'Aborted' });
      });
      await cdp.send('Fetch.enable', { patterns: [{ urlPattern: `${server.url}/sso/callback*`, requestStage: 'Request' }] });
    }
    await page.goto(`${server.url}/`);
    await page.getByRole('link', { name: 'Sign in with Example SSO' }).click();
    await page.locator('input[name=login]').waitFor();
    expect(page.url().startsWith(idp.issuer)).toBe(true);
    await page.locator('input[name=login]').fill(login);
    await page.locator('input[name=password]').fill('any password');
    await page.locator('button[type=submit]').click();
    if (hold) hold.cookie = (await context.cookies(server.url)).filter((c) => c.name === 'countersign_sso').map((c) => `${c.name}=${c.value}`)[0];
    await page.getByRole('button', { name: 'Continue' }).click();
    return page;
  }

  async function operator(name: string) {
    return (await api<{ items: Array<{ id: string; name: string; roles: string[]; active?: boolean; disabled?: boolean }> }>(server.url, admin, '/v1/operators')).body.items.find((o) => o.name === name);
  }

  async function audit(type: string) {
    return (await api<{ items: Array<{ type: string; actor: { type: string; id: string }; data: Record<string, unknown> }> }>(server.url, admin, `/v1/audit?type=${type}`)).body.items;
  }

  let aliceContext: BrowserContext;

  it('a first sign-in goes provider → callback → dashboard and creates the operator with roles from the group claim, audited', async () => {
    aliceContext = await browser.newContext();
    const page = await throughProvider(aliceContext, 'alice');
    const watched = await watchPage(page);
    await page.getByText('alice@example.com').first().waitFor();
    await page.getByText('(lead, reviewer)').waitFor();
    expect(new URL(page.url()).origin).toBe(server.url);
    const cookies = await aliceContext.cookies(server.url);
    expect(cookies.find((c) => c.name === 'countersign_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(cookies.find((c) => c.name === 'countersign_sso')).toBeUndefined();
    expect(await operator('alice@example.com')).toMatchObject({ roles: ['lead', 'reviewer'] });
    const made = await audit('operator_provisioned');
    expect(made).toHaveLength(1);
    expect(made[0]!.data).toMatchObject({ name: 'alice@example.com', source: 'oidc', roles: ['lead', 'reviewer'], groups: ['sec-leads'], subject: 'alice' });
    const signedIn = await audit('sso_signed_in');
    // (The issuer, a loopback address, may be redacted as an IP address by the audit trail's redaction.)
    expect(signedIn.at(-1)!.data).toMatchObject({ name: 'alice@example.com', subject: 'alice', roles: ['lead', 'reviewer'] });
    expect(await watched.problems()).toEqual([]);
  });

  it('the callback cannot be replayed: the same URL and cookie a second time is refused', async () => {
    const context = await browser.newContext();
    const hold: { url?: string; cookie?: string } = {};
    await throughProvider(context, 'alice', hold).catch(() => undefined);
    await expect.poll(() => hold.url).toBeTruthy();
    const first = await fetch(hold.url!, { redirect: 'manual', headers: { cookie: hold.cookie! } });
    expect(first.status).toBe(302);
    const again = await fetch(hold.url!, { redirect: 'manual', headers: { cookie: hold.cookie! } });
    expect(again.status).toBe(400);
    expect(await again.text()).toMatch(/unknown, used, lapsed/);
    await context.close();
  });

  it("PKCE: a code stolen from one browser's callback cannot be redeemed by another browser's sign-in", async () => {
    const victim = await browser.newContext();
    const hold: { url?: string; cookie?: string } = {};
    await throughProvider(victim, 'alice', hold).catch(() => undefined);
    await expect.poll(() => hold.url).toBeTruthy();
    const stolen = new URL(hold.url!).searchParams.get('code')!;
    // The attacker starts their own sign-in (their cookie, their state) and injects the victim's code.
    const start = await fetch(`${server.url}/sso/login`, { redirect: 'manual' });
    const cookie = start.headers.getSetCookie().find((c) => c.startsWith('countersign_sso='))!.split(';')[0]!;
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const injected = await fetch(`${server.url}/sso/callback?code=${encodeURIComponent(stolen)}&state=${encodeURIComponent(state)}`, { redirect: 'manual', headers: { cookie } });
    expect(injected.status).toBe(403);
    expect(await injected.text()).toMatch(/refused the sign-in code \(invalid_grant\)/);
    expect(injected.headers.getSetCookie().some((c) => c.startsWith('countersign_session=') && !/Max-Age=0/i.test(c))).toBe(false);
    await victim.close();
  });

  it('a sign-in after the provider changed the groups updates the roles, audited, and ends the sessions opened with the old roles', async () => {
    const before = await aliceContext.pages()[0]!.evaluate(async () => (await fetch('/v1/session')).status);
    expect(before).toBe(200);
    idp.accounts.set('alice', { email: 'alice@example.com', name: 'Alice Ng', groups: ['soc'] });
    const other = await browser.newContext();
    const page = await throughProvider(other, 'alice');
    await page.getByText('(reviewer)').waitFor();
    expect(await operator('alice@example.com')).toMatchObject({ roles: ['reviewer'] });
    const synced = await audit('operator_synced');
    expect(synced.at(-1)!.data).toMatchObject({ name: 'alice@example.com', source: 'oidc', roles: ['reviewer'], previousRoles: ['lead', 'reviewer'] });
    expect(await aliceContext.pages()[0]!.evaluate(async () => (await fetch('/v1/session')).status)).toBe(401);
    expect(await page.evaluate(async () => (await fetch('/v1/session')).status)).toBe(200);
    await aliceContext.close();
    aliceContext = other;
  });

  it('an operator an admin disabled loses the session at once and cannot sign in again', async () => {
    const alice = (await operator('alice@example.com'))!;
    const page = aliceContext.pages()[0]!;
    const res = await api(server.url, admin, `/v1/operators/${alice.id}`, { method: 'PATCH', body: { disabled: true } });
    expect(res.status).toBe(200);
    expect(await page.evaluate(async () => (await fetch('/v1/session')).status)).toBe(401);
    const again = await throughProvider(await browser.newContext(), 'alice');
    await again.getByText('this account is deactivated').waitFor();
    expect(await again.evaluate(async () => (await fetch('/v1/session')).status)).toBe(401);
  });

  it('an email domain that is not allowed is refused, audited, and makes no operator', async () => {
    const page = await throughProvider(await browser.newContext(), 'mallory');
    await page.getByText('accounts of evil.test may not sign in here').waitFor();
    expect(await operator('mallory@evil.test')).toBeUndefined();
    expect((await audit('sso_refused')).some((e) => e.data.subject === 'mallory' && e.data.reason === 'domain')).toBe(true);
  });

  it('groups that map to no role are refused and make no operator', async () => {
    const page = await throughProvider(await browser.newContext(), 'ivan');
    await page.getByText('none of your groups gives a role here').waitFor();
    expect(await operator('ivan@example.com')).toBeUndefined();
  });

  it('the token-only admin remains as break-glass: the token form still signs in', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/`);
    await page.getByLabel('Operator token').fill(admin);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByText('(admin)').first().waitFor();
    await context.close();
  });
});

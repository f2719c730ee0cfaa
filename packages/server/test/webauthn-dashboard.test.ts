/**
 * WebAuthn step-up in the dashboard, end to end (issue 20): a real `countersign serve` whose
 * policy says `levels.critical.mfa: webauthn`, Chromium with a virtual authenticator (DevTools
 * protocol: ctap2, internal, user verification), an agent using the SDK, and the CLI. A director
 * enrols a passkey on the account page, approves a critical request with it (the agent gets the
 * approval, the trail names the factor); the CLI is refused naming the dashboard; the same
 * dashboard reached at another origin (127.0.0.1 instead of localhost) cannot get an assertion;
 * a cloned authenticator (the same key, its counter behind) is refused and audited; a revoked
 * passkey leaves the reviewer unable to approve.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Countersign } from '@countersign/client';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt, launchChromium, signIn } from './support/dashboard-browser.ts';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

const POLICY = `
levels:
  critical: { sla: 5m, autoApprove: false, mfa: webauthn, approvals: 1 }
`;

let dir: string;
let server: ServerProcess;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let cdp: CDPSession;
let authenticatorId: string;
let local: string;

interface VirtualCredential {
  credentialId: string;
  isResidentCredential: boolean;
  rpId: string;
  privateKey: string;
  userHandle?: string;
  signCount: number;
}

async function addAuthenticator(): Promise<string> {
  const { authenticatorId: id } = (await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  })) as { authenticatorId: string };
  return id;
}

beforeAll(async () => {
  ensureDashboardBuilt();
  dir = mkdtempSync(join(tmpdir(), 'countersign-webauthn-e2e-'));
  writeFileSync(join(dir, 'countersign.yaml'), POLICY);
  server = await startServerProcess(`sqlite:${join(dir, 'countersign.db')}`, { COUNTERSIGN_POLICY: join(dir, 'countersign.yaml') });
  // The listen address is 127.0.0.1; its relying party is `localhost` (browsers take no IP address as an RP ID).
  local = server.url.replace('127.0.0.1', 'localhost');
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  authenticatorId = await addAuthenticator();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function criticalRequest(path: string) {
  const agent = new Countersign({ url: server.url, apiKey: server.bootstrap!.agentKey, decisionTimeoutMs: 30_000 });
  const handle = await agent.requestApproval({ action: 'delete_data', args: { path }, confidence: 0.99, riskLevel: 'critical' });
  expect(handle.assessment).toMatchObject({ riskLevel: 'critical', mfaRequired: true, webauthnRequired: true });
  return handle;
}

async function approveInDashboard(base: string, id: string): Promise<ReturnType<Page['getByRole']>> {
  await page.goto(`${base}/#/requests/${id}`);
  await page.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
  const shown = (await page.getByTestId('match-code').innerText()).trim();
  await page.getByRole('button', { name: /^Approve a$/ }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel(/Match code/).fill(shown);
  return dialog;
}

describe('dashboard: WebAuthn step-up with a virtual authenticator', () => {
  let token = '';
  const admin = () => server.bootstrap!.adminToken;

  it('enrols a passkey and approves a critical request with it; the CLI is refused, naming the dashboard', async () => {
    token = (await api<{ token: string }>(server.url, admin(), '/v1/operators', { body: { name: 'wanda', roles: ['director'] } })).body.token;
    await signIn(page, local, token);
    await page.goto(`${local}/#/account`);
    await page.getByLabel(/Name for a new passkey/).fill('laptop');
    await page.getByRole('button', { name: 'Add a passkey or security key' }).click();
    await page.getByTestId('passkey-added').waitFor();
    await expect.poll(() => page.getByTestId('passkey').count()).toBe(1);
    const creds = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })) as { credentials: VirtualCredential[] };
    expect(creds.credentials).toHaveLength(1);

    const handle = await criticalRequest('/srv/customers.db');
    const decision = handle.decision();
    // The CLI cannot do WebAuthn: refused, and told where to go.
    const cli = await runCli(['approve', handle.id, '--match-code', '00'], { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: token });
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/WebAuthn.*dashboard/);

    const dialog = await approveInDashboard(local, handle.id);
    await dialog.getByTestId('passkey-step-up').waitFor();
    expect(await dialog.getByLabel(/Authenticator code/).count()).toBe(0);
    await dialog.getByRole('button', { name: /Confirm approval/ }).click();
    await dialog.waitFor({ state: 'detached' });
    const d = await decision;
    expect(d).toMatchObject({ outcome: 'approved', action: 'delete_data' });
    expect(d.deciders.map((x) => x.name)).toEqual(['wanda']);
    const stepUps = await api<{ items: Array<{ requestId: string | null; data: { factor: string; userVerified: boolean } }> }>(server.url, admin(), '/v1/audit?type=step_up');
    expect(stepUps.body.items.find((e) => e.requestId === handle.id)?.data).toMatchObject({ factor: 'webauthn', userVerified: true });
    const after = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })) as { credentials: VirtualCredential[] };
    expect(after.credentials[0]!.signCount).toBeGreaterThan(creds.credentials[0]!.signCount);
  });

  it('an assertion the browser made for request A approves neither request B nor a modified payload of A', async () => {
    const a = await criticalRequest('/srv/a.db');
    const b = await criticalRequest('/srv/b.db');
    // Capture what the dialog sends for A (a real assertion from the virtual authenticator) and hold it back.
    let captured: { webauthn: unknown; matchCode: string; seenPayloadHash: string } | null = null;
    await page.route('**/v1/requests/*/reviews', async (route) => {
      captured = JSON.parse(route.request().postData() ?? '{}');
      await route.abort();
    });
    const dialog = await approveInDashboard(local, a.id);
    await dialog.getByRole('button', { name: /Confirm approval/ }).click();
    await expect.poll(() => captured !== null).toBe(true);
    await page.unroute('**/v1/requests/*/reviews');
    await page.keyboard.press('Escape');
    const held = captured!;
    const matchB = (await api<{ matchCode: string }>(server.url, token, `/v1/requests/${b.id}`)).body.matchCode;
    const onB = await api<{ error: { code: string; message: string } }>(server.url, token, `/v1/requests/${b.id}/reviews`, { body: { verdict: 'approve', matchCode: matchB, webauthn: held.webauthn } });
    expect(onB.status).toBe(403);
    expect(onB.body.error).toMatchObject({ code: 'MFA_INVALID', message: expect.stringMatching(/another request, payload or verdict/) });
    const modified = await api<{ error: { code: string; message: string } }>(server.url, token, `/v1/requests/${a.id}/reviews`, {
      body: { verdict: 'approve', matchCode: held.matchCode, seenPayloadHash: held.seenPayloadHash, args: { path: '/srv' }, webauthn: held.webauthn },
    });
    expect(modified.body.error).toMatchObject({ code: 'MFA_INVALID', message: expect.stringMatching(/another request, payload or verdict/) });
    // Sent as made, for A, it approves A: what was captured was a good assertion.
    const asMade = await api<{ status: string }>(server.url, token, `/v1/requests/${a.id}/reviews`, { body: held });
    expect(asMade.body.status).toBe('approved');
  });

  it('the same dashboard at another origin gets no assertion for this relying party', async () => {
    const handle = await criticalRequest('/srv/other-origin.db');
    await signIn(page, server.url, token); // http://127.0.0.1:<port>: not the relying party's origin
    const dialog = await approveInDashboard(server.url, handle.id);
    await dialog.getByRole('button', { name: /Confirm approval/ }).click();
    await dialog.getByRole('alert').filter({ hasText: /passkey did not sign|SecurityError|relying party|not a valid domain/i }).waitFor();
    expect((await api<{ status: string; reviews: unknown[] }>(server.url, token, `/v1/requests/${handle.id}`)).body.reviews).toHaveLength(0);
    await page.keyboard.press('Escape');
  });

  it('refuses a cloned authenticator (its counter behind) and audits it; a revoked passkey cannot approve', async () => {
    const [genuine] = ((await cdp.send('WebAuthn.getCredentials', { authenticatorId })) as { credentials: VirtualCredential[] }).credentials;
    // The clone: the same key in another authenticator, copied when its counter was 0.
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
    authenticatorId = await addAuthenticator();
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...genuine!, signCount: 0 } });
    const handle = await criticalRequest('/srv/cloned.db');
    const dialog = await approveInDashboard(local, handle.id);
    await dialog.getByRole('button', { name: /Confirm approval/ }).click();
    await dialog.getByRole('alert').filter({ hasText: /cloned/ }).waitFor();
    const clones = await api<{ items: Array<{ requestId: string | null }> }>(server.url, admin(), '/v1/audit?type=webauthn_clone_suspected');
    expect(clones.body.items.map((e) => e.requestId)).toEqual([handle.id]);
    await page.keyboard.press('Escape');

    // Revoked on the account page: the approve dialog says a passkey is needed and offers no approval.
    await page.goto(`${local}/#/account`);
    await page.getByRole('button', { name: 'Revoke laptop' }).click();
    await expect.poll(() => page.getByTestId('passkey').count()).toBe(0);
    await page.goto(`${local}/#/requests/${handle.id}`);
    await page.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
    await page.getByRole('button', { name: /^Approve a$/ }).click();
    await page.getByRole('dialog').getByTestId('webauthn-not-enrolled').waitFor();
    expect(await page.getByRole('dialog').getByRole('button', { name: /Confirm approval/ }).isDisabled()).toBe(true);
    const revoked = await api<{ items: Array<{ data: { authorisedBy: string } }> }>(server.url, admin(), '/v1/audit?type=webauthn_revoked');
    expect(revoked.body.items).toHaveLength(1);
    // The suspended passkey was wanda's only factor, so revoking it asked for nothing.
    expect(revoked.body.items[0]!.data.authorisedBy).toBe('none');
    await page.keyboard.press('Escape');
  });

  it('revoking an active passkey on the account page asks the passkey itself (a stolen session alone cannot)', async () => {
    await page.goto(`${local}/#/account`);
    await page.getByLabel(/Name for a new passkey/).fill('desk');
    await page.getByRole('button', { name: 'Add a passkey or security key' }).click();
    await page.getByTestId('passkey-added').waitFor();
    await expect.poll(() => page.getByTestId('passkey').count()).toBe(1);
    // Without the browser's assertion the API refuses (the session alone is not enough).
    const id = (await api<{ credentials: Array<{ id: string; revokedAt: string | null }> }>(server.url, token, '/v1/operators/me/webauthn')).body.credentials.find((c) => c.revokedAt === null)!.id;
    const bare = await api<{ error: { code: string } }>(server.url, token, `/v1/operators/me/webauthn/${id}`, { method: 'DELETE' });
    expect(bare.body.error.code).toBe('MFA_REQUIRED');
    const counters = async () => ((await cdp.send('WebAuthn.getCredentials', { authenticatorId })) as { credentials: VirtualCredential[] }).credentials.reduce((sum, c) => sum + c.signCount, 0);
    const before = await counters();
    await page.getByRole('button', { name: 'Revoke desk' }).click();
    await expect.poll(() => page.getByTestId('passkey').count()).toBe(0);
    const revoked = await api<{ items: Array<{ data: { credential: string; authorisedBy: string } }> }>(server.url, admin(), '/v1/audit?type=webauthn_revoked');
    expect(revoked.body.items.find((e) => e.data.credential === id)?.data.authorisedBy).toBe('webauthn');
    // The authenticator signed the revocation's challenge.
    expect(await counters()).toBeGreaterThan(before);
  });
});

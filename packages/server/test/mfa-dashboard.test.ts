/**
 * Number matching and step-up MFA in the dashboard, end to end: a real `countersign serve`,
 * Chromium, and an agent using the SDK. A director with TOTP opens a critical request's card,
 * sees its match code, is refused with a wrong one, approves with the right one and a fresh
 * code; a second director completes the quorum over the API and the waiting agent gets the
 * approval.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Countersign } from '@countersign/client';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode } from '../src/guard/totp.ts';
import { ensureDashboardBuilt, launchChromium, signIn } from './support/dashboard-browser.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

let dir: string;
let server: ServerProcess;
let browser: Browser;
let page: Page;

/** Creates a director and enrols TOTP, confirming with the previous step's code so the current one stays unused. */
async function director(name: string): Promise<{ token: string; secret: string }> {
  const admin = server.bootstrap!.adminToken;
  const { body } = await api<{ token: string }>(server.url, admin, '/v1/operators', { body: { name, roles: ['director'] } });
  const enrol = await api<{ secret: string }>(server.url, body.token, '/v1/operators/me/totp', { method: 'POST' });
  const secret = enrol.body.secret;
  let confirmed = await api(server.url, body.token, '/v1/operators/me/totp/confirm', { body: { code: totpCode(secret, Date.now() - 30_000) } });
  if (confirmed.status !== 200) confirmed = await api(server.url, body.token, '/v1/operators/me/totp/confirm', { body: { code: totpCode(secret, Date.now()) } });
  expect(confirmed.status).toBe(200);
  return { token: body.token, secret };
}

beforeAll(async () => {
  ensureDashboardBuilt();
  dir = mkdtempSync(join(tmpdir(), 'countersign-mfa-e2e-'));
  server = await startServerProcess(`sqlite:${join(dir, 'countersign.db')}`);
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('dashboard: number matching and step-up MFA', () => {
  it('approves a critical request only with the card’s match code and a valid TOTP code', async () => {
    const dina = await director('dina');
    const dirk = await director('dirk');
    const agent = new Countersign({ url: server.url, apiKey: server.bootstrap!.agentKey, decisionTimeoutMs: 30_000 });
    const handle = await agent.requestApproval({ action: 'delete_data', args: { path: '/srv/customers.db' }, confidence: 0.99, riskLevel: 'critical' });
    expect(handle.assessment).toMatchObject({ riskLevel: 'critical', mfaRequired: true });
    const decision = handle.decision();

    await signIn(page, server.url, dina.token);
    await page.goto(`${server.url}/#/requests/${handle.id}`);
    await page.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
    const shown = (await page.getByTestId('match-code').innerText()).trim();
    expect(shown).toMatch(/^\d{2}$/);
    // What notifications and listings carry has no match code.
    const listed = await api<{ items: Array<{ id: string; matchCode?: string }> }>(server.url, dina.token, '/v1/requests?status=pending');
    expect(listed.body.items.find((r) => r.id === handle.id)?.matchCode).toBeUndefined();

    await page.getByRole('button', { name: /^Approve a$/ }).click();
    const dialog = page.getByRole('dialog');
    const code = totpCode(dina.secret, Date.now());
    await dialog.getByLabel(/Authenticator code/).fill(code);
    await dialog.getByLabel(/Match code/).fill(String((Number(shown) + 1) % 100).padStart(2, '0'));
    await dialog.getByRole('button', { name: /Confirm approval/ }).click();
    await dialog.getByRole('alert').filter({ hasText: /match code/i }).waitFor();
    expect((await api<{ reviews: unknown[] }>(server.url, dina.token, `/v1/requests/${handle.id}`)).body.reviews).toHaveLength(0);

    await dialog.getByLabel(/Match code/).fill(shown);
    await dialog.getByRole('button', { name: /Confirm approval/ }).click();
    await dialog.waitFor({ state: 'detached' });
    const afterOne = await api<{ status: string; reviews: Array<{ reviewer: { name: string } }> }>(server.url, dina.token, `/v1/requests/${handle.id}`);
    expect(afterOne.body.status).toBe('pending'); // critical: two approvals
    expect(afterOne.body.reviews.map((r) => r.reviewer.name)).toEqual(['dina']);

    const second = await api<{ status: string }>(server.url, dirk.token, `/v1/requests/${handle.id}/reviews`, {
      body: { verdict: 'approve', totp: totpCode(dirk.secret, Date.now()), matchCode: shown },
    });
    expect(second.status).toBe(200);
    expect(second.body.status).toBe('approved');
    const d = await decision;
    expect(d).toMatchObject({ outcome: 'approved', action: 'delete_data' });
    expect(d.deciders.map((x) => x.name)).toEqual(['dina', 'dirk']);
  }, 120_000); // Chromium and a real server: 3 s alone, past 30 s when the 2-core runner is loaded
});

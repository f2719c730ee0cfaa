/**
 * The dashboard end to end: a real `countersign serve` on a temporary SQLite database, Debian's
 * Chromium, and an agent using the client SDK in this process. A reviewer signs in, sees
 * requests arrive live, approves, rejects with a reason, modifies args, picks an alternative;
 * the waiting agent receives each outcome. Also: the supervised feed, history and its audit
 * timeline, metrics, screenshots, and an axe check of every screen.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Countersign, CountersignError } from '@countersign/client';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { axeSerious, ensureDashboardBuilt, launchChromium, screenshotDir, signIn, watchPage, type Watched } from './support/dashboard-browser.ts';
import { totpCode } from '../src/guard/totp.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

let dir: string;
let server: ServerProcess;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let watched: Watched;
let agent: Countersign;
let adminToken: string;
let agentKey: string;

beforeAll(async () => {
  ensureDashboardBuilt();
  dir = mkdtempSync(join(tmpdir(), 'countersign-e2e-'));
  server = await startServerProcess(`sqlite:${join(dir, 'countersign.db')}`);
  adminToken = server.bootstrap!.adminToken;
  agentKey = server.bootstrap!.agentKey;
  agent = new Countersign({ url: server.url, apiKey: agentKey, decisionTimeoutMs: 20_000 });
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  watched = await watchPage(page);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const ISOLATE = {
  action: 'isolate_host',
  confidence: 0.82,
  description: 'EDR saw beaconing to 198.51.100.9 every 60 s from ws-042',
  context: {
    target: { name: 'ws-042', type: 'workstation' },
    evidence: ['beacon every 60s to 198.51.100.9:443', { type: 'edr', summary: 'powershell -enc … spawned by winword.exe', source: 'https://edr.example/alerts/8812' }],
    attack: ['T1071.001', 'T1059.001'],
    blastRadius: { scope: 'host' as const, count: 1 },
  },
  alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: 'C:/Users/x/beacon.exe' }, description: 'Quarantine the beacon instead' }],
};

const row = (id: string) => page.locator(`tr[data-request-id="${id}"]`);

async function openCard(id: string): Promise<void> {
  await page.goto(`${server.url}/#/requests/${id}`);
  await page.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
}

describe('dashboard end to end', () => {
  it('signs in with an operator token; the session cookie is HttpOnly and SameSite=Strict', async () => {
    await page.goto(`${server.url}/`);
    await page.getByLabel('Operator token').waitFor();
    await page.getByLabel('Operator token').fill('cso_wrong-token-wrong-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('That token is unknown or revoked.').waitFor();
    await signIn(page, server.url, adminToken);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'countersign_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(await page.evaluate('document.cookie')).not.toContain('countersign_session');
    const html = await page.content();
    expect(html).not.toContain(adminToken);
  });

  let first: Awaited<ReturnType<Countersign['requestApproval']>>;
  let second: Awaited<ReturnType<Countersign['requestApproval']>>;

  it('shows requests arriving live, most urgent first, without a reload', async () => {
    await page.evaluate('window.__sameDocument = "yes"');
    first = await agent.requestApproval({ ...ISOLATE, args: { host: 'ws-042' } });
    expect(first.status).toBe('pending');
    await row(first.id).waitFor({ timeout: 10_000 });
    // A critical request (5-minute SLA against 15) arrives and goes to the top.
    second = await agent.requestApproval({
      action: 'delete_data',
      args: { path: '/important/customers.db' },
      confidence: 0.3,
      description: 'Free disk space on the database host',
      context: { target: { name: '/important/customers.db', criticality: 'critical' } },
    });
    expect(second.assessment.riskLevel).toBe('critical');
    await row(second.id).waitFor({ timeout: 10_000 });
    expect(await page.evaluate('window.__sameDocument')).toBe('yes');
    const order = await page.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-request-id')));
    expect(order).toEqual([second.id, first.id]);
    expect(await page.locator('.risk-counts').innerText()).toMatch(/critical\s*1/);
    expect(await page.locator('.risk-counts').innerText()).toMatch(/high\s*1/);
    await page.screenshot({ path: join(screenshotDir(), 'queue.png') });
  });

  it('moves with j/k; "a" only opens a confirmation (no single-key approval), Escape cancels', async () => {
    await page.locator('body').click({ position: { x: 5, y: 300 } });
    await page.keyboard.press('j');
    await expect.poll(() => row(first.id).getAttribute('class')).toContain('selected');
    await page.keyboard.press('k');
    await expect.poll(() => row(second.id).getAttribute('class')).toContain('selected');
    await page.keyboard.press('a');
    await page.getByRole('dialog').getByText('Confirm approval').waitFor();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    expect((await api<{ status: string }>(server.url, adminToken, `/v1/requests/${second.id}`)).body.status).toBe('pending');
    await page.keyboard.press('j');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
    expect(page.url()).toContain(`#/requests/${first.id}`);
  });

  it('shows the card: computed assessment apart from the agent claims; approve needs a confirmation at high risk', async () => {
    const computed = page.locator('.computed-zone');
    const claims = page.locator('.agent-zone').first();
    expect(await computed.innerText()).toMatch(/computed by policy v1/i);
    expect(await computed.locator('table.factors tbody tr').count()).toBe(7);
    expect(await claims.innerText()).toMatch(/agent-supplied · unverified/i);
    expect(await claims.innerText()).toContain('T1059.001 PowerShell');
    expect(await claims.innerText()).toContain('EDR saw beaconing');
    expect(await computed.innerText()).not.toContain('EDR saw beaconing');
    // A URL in the evidence is text, never a link.
    expect(await claims.locator('a').count()).toBe(0);
    expect(await claims.innerText()).toContain('https://edr.example/alerts/8812');
    await page.screenshot({ path: join(screenshotDir(), 'card.png'), fullPage: true });

    const decision = first.decision();
    await page.getByRole('button', { name: /^Approve a$/ }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText('Confirm approval').waitFor();
    await page.keyboard.press('y');
    const d = await decision;
    expect(d).toMatchObject({ outcome: 'approved', decidedBy: 'reviewers', action: 'isolate_host', args: { host: 'ws-042' }, modified: false });
    expect(d.deciders.map((x) => x.name)).toEqual(['admin']);
    await page.getByTestId('decider').waitFor();
    expect(await page.getByTestId('decider').innerText()).toBe('admin');
  });

  it('rejects with a required reason; the agent gets APPROVAL_REJECTED with it', async () => {
    const decision = second.decision().then(
      () => null,
      (err: unknown) => err,
    );
    // The approval dialog asks for a code only from a reviewer with an authenticator (issue 11):
    // enrol admin first, so a made-up code can be tried.
    const enrol = await api<{ secret: string }>(server.url, adminToken, '/v1/operators/me/totp', { body: {} });
    expect((await api(server.url, adminToken, '/v1/operators/me/totp/confirm', { body: { code: totpCode(enrol.body.secret, Date.now()) } })).status).toBe(200);
    await openCard(second.id);
    // Critical: policy demands step-up MFA. The dialog asks for a code; a made-up one is refused
    // (fail closed) and the request stays pending.
    await page.getByRole('button', { name: /^Approve a$/ }).click();
    const approveDialog = page.getByRole('dialog');
    await approveDialog.getByRole('button', { name: /Confirm approval/ }).click();
    await approveDialog.getByText(/enter the 6–8 digit code/).waitFor();
    await approveDialog.getByLabel(/Authenticator code/).fill('123456');
    await approveDialog.getByRole('button', { name: /Confirm approval/ }).click();
    await approveDialog.getByRole('alert').filter({ hasNotText: /enter the 6–8 digit code/ }).waitFor();
    expect((await api<{ status: string }>(server.url, adminToken, `/v1/requests/${second.id}`)).body.status).toBe('pending');
    await page.keyboard.press('Escape');
    await approveDialog.waitFor({ state: 'detached' });
    await page.getByRole('button', { name: /^Reject/ }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Reject' }).click(); // empty reason: refused by the form
    expect(await dialog.isVisible()).toBe(true);
    await dialog.getByLabel('Reason (required)').fill('customers.db is the only copy; take a snapshot first');
    await dialog.getByRole('button', { name: 'Reject' }).click();
    const err = await decision;
    expect(err).toBeInstanceOf(CountersignError);
    expect((err as CountersignError).code).toBe('APPROVAL_REJECTED');
    expect((err as CountersignError).message).toContain('the only copy');
    await page.getByText('Reason: “customers.db is the only copy').waitFor();
  });

  it('modifies args with a validated editor and a diff before submitting', async () => {
    const handle = await agent.requestApproval({ ...ISOLATE, args: { host: 'ws-042', mode: 'full' } });
    const decision = handle.decision();
    await openCard(handle.id);
    await page.getByRole('button', { name: /Modify arguments/ }).click();
    const editor = page.locator('#args-editor');
    await editor.fill('{"host": "ws-043", "mode": ');
    await page.getByText(/not valid JSON/).waitFor();
    await expect.poll(() => page.getByRole('button', { name: 'Review changes' }).isDisabled()).toBe(true);
    await editor.fill('{"host": "ws-043", "mode": "full", "note": "wrong host in the alert"}');
    await page.getByText('Warning: adds "note"').waitFor();
    await page.getByRole('button', { name: 'Review changes' }).click();
    const diff = page.locator('.modify-review table.diff');
    expect(await diff.locator('tbody tr').count()).toBe(2);
    expect(await diff.innerText()).toMatch(/changed\s+host/);
    expect(await diff.innerText()).toMatch(/added\s+note/);
    await page.getByRole('button', { name: 'Approve with these arguments…' }).click();
    await page.getByRole('dialog').getByText('Approve with modified arguments?').waitFor();
    await page.getByRole('dialog').getByRole('button', { name: /Confirm approval/ }).click();
    const d = await decision;
    expect(d).toMatchObject({ outcome: 'approved', modified: true, args: { host: 'ws-043', mode: 'full', note: 'wrong host in the alert' } });
    await page.getByText('Arguments changed by the reviewer').waitFor();
  });

  it('approves an alternative; the agent is told to run the alternative', async () => {
    const handle = await agent.requestApproval({ ...ISOLATE, args: { host: 'ws-044' } });
    const decision = handle.decision();
    await openCard(handle.id);
    await page.getByRole('button', { name: /Approve alternative: quarantine/ }).click();
    await page.getByRole('dialog').getByText('Approve the alternative?').waitFor();
    await page.getByRole('dialog').getByRole('button', { name: /Confirm approval/ }).click();
    const d = await decision;
    expect(d).toMatchObject({ outcome: 'approved', alternative: 'quarantine', action: 'quarantine_file', args: { path: 'C:/Users/x/beacon.exe' } });
    await page.getByText(/Chosen alternative: quarantine/).waitFor();
  });

  it('a notification link preselects a choice but decides nothing until confirmed', async () => {
    const handle = await agent.requestApproval({ ...ISOLATE, args: { host: 'ws-045' } });
    await page.goto(`${server.url}/#/requests/${handle.id}?choose=alternative%3Aquarantine`);
    await page.getByRole('dialog').getByText('Approve the alternative?').waitFor();
    expect((await handle.refresh()).status).toBe('pending');
    await page.keyboard.press('Escape');
    await handle.cancel('test done');
  });

  it('supervised feed: flags an automatic decision as "should have asked" (audit entry)', async () => {
    const auto = await agent.requestApproval({ action: 'block_ip', args: { ip: '198.51.100.23' }, confidence: 0.85, context: { threatScore: 0.9 } });
    expect(auto.assessment.automationLevel).toBe('supervised');
    expect(auto.status).toBe('approved');
    await page.goto(`${server.url}/#/supervised`);
    const item = page.locator(`li[data-request-id="${auto.id}"]`);
    await item.waitFor();
    await item.getByRole('button', { name: 'Should have asked' }).click();
    await item.getByText('Flagged “should have asked” by admin').waitFor();
    const trail = await api<{ items: Array<{ type: string; actor: { name: string }; data: { verdict: string } }> }>(server.url, adminToken, `/v1/requests/${auto.id}/audit`);
    expect(trail.body.items.filter((e) => e.type === 'feedback').map((e) => [e.actor.name, e.data.verdict])).toEqual([['admin', 'should_have_asked']]);
  });

  it('history: searchable, with the audit trail of one request as a timeline', async () => {
    await page.goto(`${server.url}/#/history`);
    await row(second.id).waitFor();
    await page.getByRole('searchbox').fill('only copy');
    expect(await page.locator('tbody tr[data-request-id]').count()).toBe(1);
    await row(second.id).getByRole('button', { name: 'timeline' }).click();
    const timeline = page.getByRole('list', { name: `audit trail of ${second.id}` });
    await timeline.waitFor();
    const text = await timeline.innerText();
    for (const type of ['created', 'queued', 'reviewed', 'rejected']) expect(text).toContain(type);
    expect(text.indexOf('created')).toBeLessThan(text.indexOf('rejected'));
  });

  it('metrics: rates and times as Chart.js charts, per-operator numbers', async () => {
    await page.goto(`${server.url}/#/metrics`);
    await page.getByText('automation rate', { exact: true }).waitFor();
    expect(await page.locator('canvas[role="img"]').count()).toBe(4);
    const admin = page.locator('table.operators tbody tr', { hasText: 'admin' });
    const cells = await admin.locator('td').allInnerTexts();
    expect(Number(cells[0])).toBeGreaterThanOrEqual(4); // reviews
    expect(Number(cells[2])).toBeGreaterThanOrEqual(1); // rejections
  });

  it('ran no unexpected script, hit no CSP violation, logged no error', async () => {
    expect(await watched.problems()).toEqual([]);
  });

  it('passes an automated accessibility check (axe) with no serious violations on every screen', async () => {
    // axe is injected by the test, so it runs in its own context with the CSP bypassed.
    const axeContext = await browser.newContext({ viewport: { width: 1400, height: 900 }, bypassCSP: true });
    const axePage = await axeContext.newPage();
    try {
      await axePage.goto(`${server.url}/`);
      await axePage.getByLabel('Operator token').waitFor();
      const found: Record<string, unknown> = { signin: await axeSerious(axePage) };
      await signIn(axePage, server.url, adminToken);
      const pending = await agent.requestApproval({ ...ISOLATE, args: { host: 'ws-046' } });
      await axePage.locator(`tr[data-request-id="${pending.id}"]`).waitFor();
      found.queue = await axeSerious(axePage);
      await axePage.goto(`${server.url}/#/requests/${pending.id}`);
      await axePage.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
      found.card = await axeSerious(axePage);
      await axePage.getByRole('button', { name: /^Reject/ }).click();
      await axePage.getByRole('dialog').waitFor();
      found.rejectDialog = await axeSerious(axePage);
      await axePage.keyboard.press('Escape');
      await axePage.goto(`${server.url}/#/history`);
      await axePage.locator('tbody tr[data-request-id]').first().getByRole('button', { name: 'timeline' }).click();
      await axePage.locator('ol.timeline').waitFor();
      found.history = await axeSerious(axePage);
      await axePage.goto(`${server.url}/#/supervised`);
      await axePage.locator('li.feed-item').first().waitFor();
      found.supervised = await axeSerious(axePage);
      await axePage.goto(`${server.url}/#/metrics`);
      await axePage.locator('canvas').first().waitFor();
      found.metrics = await axeSerious(axePage);
      expect(found).toEqual({ signin: [], queue: [], card: [], rejectDialog: [], history: [], supervised: [], metrics: [] });
    } finally {
      await axeContext.close();
    }
  });
});

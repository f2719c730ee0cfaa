/**
 * The dashboard's first hour (issue 11, and issue 13 #10), in Chromium against a server in this
 * process: shortcuts never type into a field; the queue lists what a cooling-down reviewer
 * cannot act on, with the exact reason, so its counts and rows agree; an empty queue shows a
 * first request that works; `?` opens the shortcut help; a card opened from History goes back
 * there; the audit timeline is in words; a missing description is not dressed as agent text;
 * the nav fits a 390 px phone; a critical approval asks for a code only from an enrolled
 * reviewer, and enrolment works from the dashboard with a QR code; a card's history counts
 * outcomes as its risk factor does; an args object with 100,000 keys renders promptly, capped.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { serve as listen, type ServerType } from '@hono/node-server';
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { totpCode } from '../src/guard/totp.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { axeSerious, ensureDashboardBuilt, launchChromium, screenshotDir, signIn, watchPage, type Watched } from './support/dashboard-browser.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { api } from './support/server-process.ts';

const run = promisify(execFile);
// Real Chromium on a shared two-core machine: generous per-test time, never tight timings.
vi.setConfig({ testTimeout: 90_000 });

let database: TestDatabase;
let engine: Engine;
let server: ServerType;
let url = '';
let browser: Browser;
let context: BrowserContext;
let page: Page;
let watched: Watched;
let adminToken = '';
let agentKey = '';
let rita = ''; // the reviewer in the browser
let max = ''; // a second reviewer

beforeAll(async () => {
  ensureDashboardBuilt();
  database = sqliteDatabase();
  engine = await Engine.open({ connection: await connect(database.url), now: () => Date.now() });
  await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
  const boot = (await engine.bootstrap())!;
  adminToken = boot.adminToken;
  agentKey = boot.agentKey;
  const app = createApp({ engine, log: () => {} });
  server = await new Promise<ServerType>((resolve) => {
    const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  const address = server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  rita = (await api<{ token: string }>(url, adminToken, '/v1/operators', { body: { name: 'rita', roles: ['reviewer'] } })).body.token;
  max = (await api<{ token: string }>(url, adminToken, '/v1/operators', { body: { name: 'max', roles: ['reviewer'] } })).body.token;
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url });
  page = await context.newPage();
  watched = await watchPage(page);
  await signIn(page, url, rita);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await engine?.close();
  await database?.drop();
});

type Req = { id: string; status: string; decision?: { receipt?: unknown } | null; reviews: Array<{ reason: string | null }>; assessment: { riskLevel: string; factors: Array<{ name: string; detail: string }> } };
const create = async (body: unknown, key = agentKey) => {
  const res = await api<Req>(url, key, '/v1/requests', { body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
};
const read = async (id: string) => (await api<Req>(url, adminToken, `/v1/requests/${id}`)).body;
const row = (id: string) => page.locator(`tr[data-request-id="${id}"]`);
/** Puts the focus on the page itself, outside any field, as a reviewer who just looked around. */
const focusPage = () => page.locator('h1').first().click();

describe('the empty queue', () => {
  it('shows a first request for this very server, copyable, that really creates a request', async () => {
    await page.goto(`${url}/#/queue`);
    const empty = page.getByTestId('empty-queue');
    await empty.waitFor();
    const command = await page.getByTestId('first-request').innerText();
    expect(command).toContain(`${url}/v1/requests`);
    expect(command).toContain('$COUNTERSIGN_AGENT_KEY');
    await empty.getByRole('button', { name: 'Copy the command' }).click();
    await empty.getByText('Copied.').waitFor();
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(command);
    expect(await axeSerious(page)).toEqual([]);
    await page.screenshot({ path: join(screenshotDir(), 'empty-queue.png') });
    // Run it as a newcomer would paste it.
    const { stdout } = await run('sh', ['-c', command], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', COUNTERSIGN_AGENT_KEY: agentKey } });
    const created = JSON.parse(stdout) as Req;
    expect(created.status).toBe('pending');
    await row(created.id).waitFor({ timeout: 10_000 });
  });
});

describe('shortcuts never type into a field', () => {
  it('"r" in the queue opens an empty reason, and Reject is refused until a real reason is typed', async () => {
    const request = await create({ action: 'isolate_host', args: { host: 'ws-101' }, confidence: 0.82 });
    await page.goto(`${url}/#/queue`);
    await row(request.id).waitFor({ timeout: 10_000 });
    await row(request.id).click();
    await page.keyboard.press('r');
    const dialog = page.getByRole('dialog', { name: 'Reject this request?' });
    const reason = dialog.getByLabel('Reason (required)');
    await reason.waitFor();
    expect(await reason.inputValue()).toBe('');
    await dialog.getByRole('button', { name: 'Reject', exact: true }).click();
    await page.waitForTimeout(300);
    expect(await dialog.count()).toBe(1);
    expect((await read(request.id)).reviews).toHaveLength(0);
    await reason.fill('wrong host');
    await dialog.getByRole('button', { name: 'Reject', exact: true }).click();
    await dialog.waitFor({ state: 'detached' });
    const after = await read(request.id);
    expect(after.status).toBe('rejected');
    expect(after.reviews.map((r) => r.reason)).toEqual(['wrong host']);
  });

  it('on a card, "r", "m", "a" and "?" open what they name and type nothing into it', async () => {
    const request = await create({ action: 'isolate_host', args: { host: 'ws-102' }, confidence: 0.82 });
    await page.goto(`${url}/#/requests/${request.id}`);
    await page.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
    await focusPage();
    await page.keyboard.press('r');
    const reject = page.getByRole('dialog', { name: 'Reject this request?' });
    expect(await reject.getByLabel('Reason (required)').inputValue()).toBe('');
    await reject.getByRole('button', { name: 'Reject', exact: true }).click();
    expect(await reject.count()).toBe(1); // an empty reason is refused
    await page.keyboard.press('Escape');
    await reject.waitFor({ state: 'detached' });

    await page.keyboard.press('m');
    const editor = page.locator('#args-editor');
    await editor.waitFor();
    expect(JSON.parse(await editor.inputValue())).toEqual({ host: 'ws-102' });
    await page.getByRole('button', { name: 'Cancel' }).click();

    await focusPage();
    await page.keyboard.press('a');
    const approve = page.getByRole('dialog', { name: 'Approve this request?' });
    expect(await approve.getByLabel('Note (optional)').inputValue()).toBe('');
    await page.keyboard.press('Escape');
    await approve.waitFor({ state: 'detached' });

    await page.keyboard.press('?');
    const help = page.getByRole('dialog', { name: 'Keyboard shortcuts' });
    await help.waitFor();
    expect(await help.innerText()).toMatch(/reject the selected request/);
    expect(await axeSerious(page)).toEqual([]);
    await page.screenshot({ path: join(screenshotDir(), 'shortcut-help.png') });
    await page.keyboard.press('Escape');
    await help.waitFor({ state: 'detached' });
    // Typing "?" or "r" into a field stays typing.
    await page.keyboard.press('r');
    await reject.getByLabel('Reason (required)').fill('');
    await page.keyboard.type('r?');
    expect(await reject.getByLabel('Reason (required)').inputValue()).toBe('r?');
    expect(await help.count()).toBe(0);
    await page.keyboard.press('Escape');
    expect((await read(request.id)).status).toBe('pending');
  });
});

describe('a card', () => {
  it('keeps "Modify arguments" on one line, and a missing description is not agent text', async () => {
    const request = await create({ action: 'isolate_host', args: { host: 'ws-103' }, confidence: 0.82 });
    for (const width of [1400, 390]) {
      await page.setViewportSize({ width, height: 900 });
      await page.goto(`${url}/#/requests/${request.id}`);
      const modify = page.getByRole('button', { name: /^Modify arguments/ });
      await modify.waitFor();
      const reject = page.getByRole('button', { name: /^Reject/ });
      const [m, r] = [await modify.boundingBox(), await reject.boundingBox()];
      expect(m!.height).toBeLessThanOrEqual(r!.height + 1); // one line, like its neighbour
    }
    await page.setViewportSize({ width: 1400, height: 900 });
    const absent = page.getByTestId('no-description');
    expect(await absent.innerText()).toBe('[no description given]');
    expect(await absent.evaluate((el) => el.closest('[data-agent-text]') === null)).toBe(true);
    await page.goto(`${url}/#/queue`);
    const cell = row(request.id).getByTestId('no-description');
    expect(await cell.evaluate((el) => el.closest('[data-agent-text]') === null)).toBe(true);
  });

  it("counts the agent's earlier outcomes as its history risk factor does", async () => {
    const key = (await api<{ key: string }>(url, adminToken, '/v1/keys', { body: { agent: 'hist-bot' } })).body.key;
    const ran: string[] = [];
    const receipts = new Map<string, unknown>();
    for (let i = 0; i < 3; i++) {
      const r = await create({ action: 'block_ip', args: { ip: `203.0.113.${i + 1}` }, confidence: 0.97 }, key);
      expect(r.status).toBe('approved');
      ran.push(r.id);
      receipts.set(r.id, r.decision?.receipt);
    }
    for (const id of ran.slice(0, 2)) {
      expect((await api(url, key, `/v1/requests/${id}/execution`, { body: { status: 'started', receipt: receipts.get(id) } })).status).toBe(200);
      expect((await api(url, key, `/v1/requests/${id}/execution`, { body: { status: 'succeeded' } })).status).toBe(200);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the engine caches an agent's history for a second
    const next = await create({ action: 'block_ip', args: { ip: '203.0.113.9' }, confidence: 0.5 }, key);
    expect(next.status).toBe('pending');
    const factor = next.assessment.factors.find((f) => f.name === 'history')!;
    expect(factor.detail).toMatch(/^5 past outcomes \(3 approved, 0 rejected, 2 succeeded, 0 failed/);
    await page.goto(`${url}/#/requests/${next.id}`);
    const summary = page.getByTestId('similar-summary');
    await summary.waitFor();
    const text = await summary.innerText();
    expect(text).toContain('Before this request: 3 requests, 5 past outcomes (3 approved, 0 rejected, 2 succeeded, 0 failed)');
    expect(text).not.toContain('computed when the request was proposed');
  });
});

describe('History', () => {
  it('a card opened from History goes back to History, and the timeline is in words', async () => {
    await page.goto(`${url}/#/history`);
    const rejected = page.locator('tr[data-request-id]').filter({ hasText: 'rejected' }).first();
    await rejected.waitFor();
    await rejected.getByRole('button', { name: 'timeline' }).click();
    const timeline = page.getByRole('list', { name: /^audit trail of / });
    await timeline.waitFor();
    await timeline.getByText('Voted to reject').waitFor();
    const text = await timeline.innerText();
    expect(text).toMatch(/Proposed: high risk \(0\.\d\d\), automation level advisory, routed to review by policy v\d+/);
    expect(text).toContain('Waiting for review: needs 1 reviewer');
    expect(text).toMatch(/Voted to reject by operator rita/);
    expect(text).toContain('Reason: wrong host');
    expect(text).toMatch(/Rejected by rita/);
    expect(text).not.toContain('payloadHash');
    await page.screenshot({ path: join(screenshotDir(), 'history-timeline.png') });

    const rejectedId = (await rejected.getAttribute('data-request-id'))!;
    await rejected.getByRole('link').first().click();
    const back = page.getByRole('link', { name: '← History' });
    await back.waitFor();
    expect(await page.getByRole('link', { name: 'History', exact: true }).getAttribute('aria-current')).toBe('page');
    await focusPage();
    await page.keyboard.press('Escape');
    await page.getByRole('heading', { name: 'History', exact: true }).waitFor();
    // Opened any other way (a notification link), it goes back to the queue; so does a card
    // reached through the queue when both hash changes land before one render (as on a loaded
    // machine: each is judged by the URL it went to, not the hash when React gets to it).
    await page.goto(`${url}/#/queue`);
    await page.goto(`${url}/#/requests/${rejectedId}`);
    await page.getByRole('link', { name: '← Queue' }).waitFor();
    await page.goto(`${url}/#/history`);
    await page.getByRole('heading', { name: 'History', exact: true }).waitFor();
    await page.evaluate(`window.location.hash = '#/queue'; window.location.hash = '#/requests/${rejectedId}'`);
    await page.getByRole('link', { name: '← Queue' }).waitFor();
  });
});

describe('a reviewer cooling down', () => {
  it('sees every pending request (counts and rows agree), the ones held back under "Requests I cannot act on", and exactly why', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await create({ action: 'isolate_host', args: { host: `ws-2${i}` }, confidence: 0.82 })).id);
    for (const id of ids.slice(0, 5)) expect((await api(url, rita, `/v1/requests/${id}/reviews`, { body: { verdict: 'approve' } })).status).toBe(200);
    const refused = await api<{ error: { code: string } }>(url, rita, `/v1/requests/${ids[5]}/reviews`, { body: { verdict: 'approve' } });
    expect(refused.body.error.code).toBe('COOLDOWN_ACTIVE');
    const cooldown = (await api<{ until: string }>(url, rita, '/v1/approvers/rita/cooldown')).body;

    await page.goto(`${url}/#/queue`);
    await page.reload();
    const banner = page.getByTestId('cooldown-banner');
    await banner.waitFor({ timeout: 10_000 });
    const hhmm = await page.evaluate((iso) => {
      const d = new Date(iso);
      return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    }, cooldown.until);
    expect(await banner.innerText()).toContain(`You are cooling down until ${hhmm} (5 high/critical-risk approvals in 15 minutes).`);
    expect(await banner.innerText()).toContain('You cannot lift your own cool-down');

    const held = page.getByTestId('not-actionable');
    await held.locator(`tr[data-request-id="${ids[5]}"]`).waitFor();
    expect(await held.getByRole('heading').innerText()).toMatch(/Requests I cannot act on/);
    expect(await held.locator(`tr[data-request-id="${ids[5]}"] td.why`).innerText()).toContain(`Your cool-down, until ${hhmm}`);
    // The header, the risk chips and the rows agree.
    const pending = (await api<{ items: Array<{ assessment: { riskLevel: string } }> }>(url, rita, '/v1/requests?status=pending&limit=500')).body.items;
    const rows = await page.locator('tbody tr[data-request-id]').count();
    expect(rows).toBe(pending.length);
    expect(await page.locator('nav .count').innerText()).toBe(String(pending.length));
    const highs = pending.filter((r) => r.assessment.riskLevel === 'high').length;
    expect(await page.locator('.risk-counts').innerText()).toMatch(new RegExp(`high\\s*${highs}`));
    expect(await page.getByText('No pending request matches these filters').count()).toBe(0);
    expect(await axeSerious(page)).toEqual([]);
    await page.screenshot({ path: join(screenshotDir(), 'queue-cooldown.png'), fullPage: true });

    await page.goto(`${url}/#/requests/${ids[5]}`);
    const notice = page.getByTestId('not-actionable-notice');
    await notice.waitFor();
    await expect.poll(() => notice.innerText()).toContain(`You are cooling down until ${hhmm} (5 high/critical-risk approvals in 15 minutes)`);
    expect(await page.getByRole('button', { name: /^Approve/ }).count()).toBe(0);
    // Another reviewer can still approve it.
    expect((await api(url, max, `/v1/requests/${ids[5]}/reviews`, { body: { verdict: 'approve' } })).status).toBe(200);
  });
});

describe('a phone-sized screen', () => {
  it('at 390 px the nav still shows Metrics and Sign out', async () => {
    const small = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
    const phone = await small.newPage();
    await signIn(phone, url, max);
    for (const target of [phone.getByRole('link', { name: 'Metrics' }), phone.getByRole('button', { name: 'Sign out' }), phone.getByRole('link', { name: /^Queue/ })]) {
      expect(await target.isVisible()).toBe(true);
      const box = (await target.boundingBox())!;
      expect(box.x).toBeGreaterThanOrEqual(0);
      expect(box.x + box.width).toBeLessThanOrEqual(390);
    }
    expect(await phone.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await phone.screenshot({ path: join(screenshotDir(), 'narrow-queue.png') });
    expect(await axeSerious(phone)).toEqual([]);
    await small.close();
  });
});

describe('step-up MFA from the dashboard', () => {
  it('asks for a code only from an enrolled reviewer; enrolment with a QR code works from the account page', async () => {
    const dina = (await api<{ token: string }>(url, adminToken, '/v1/operators', { body: { name: 'dina', roles: ['director'] } })).body.token;
    const critical = await create({
      action: 'delete_data',
      args: { path: '/important/customers.db' },
      confidence: 0.3,
      description: 'Free disk space',
      context: { target: { name: '/important/customers.db', criticality: 'critical' } },
    });
    expect(critical.assessment.riskLevel).toBe('critical');
    const own = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const p = await own.newPage();
    await signIn(p, url, dina);
    await p.goto(`${url}/#/requests/${critical.id}`);
    await p.getByRole('button', { name: /^Approve a$/ }).click();
    const dialog = p.getByRole('dialog', { name: 'Approve this request?' });
    await dialog.getByTestId('mfa-not-enrolled').waitFor();
    expect(await dialog.getByLabel(/Authenticator code/).count()).toBe(0);
    expect(await dialog.getByRole('button', { name: /Confirm approval/ }).isDisabled()).toBe(true);
    await dialog.getByRole('button', { name: 'Enrol now' }).click();

    await p.getByRole('heading', { name: 'Your account' }).waitFor();
    await p.getByRole('button', { name: 'Enrol an authenticator app' }).click();
    const qr = p.getByTestId('totp-qr');
    await qr.waitFor();
    expect(await qr.getAttribute('role')).toBe('img');
    expect(((await qr.locator('path').getAttribute('d')) ?? '').length).toBeGreaterThan(1000);
    const secret = (await p.getByTestId('totp-secret').innerText()).trim();
    expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
    expect(await axeSerious(p)).toEqual([]);
    await p.screenshot({ path: join(screenshotDir(), 'totp-enrol.png') });
    await p.getByLabel(/6-digit code/).fill('000000' === totpCode(secret, Date.now()) ? '111111' : '000000');
    await p.getByRole('button', { name: 'Confirm enrolment' }).click();
    await p.getByRole('alert').waitFor();
    expect((await api<{ enrolled: boolean }>(url, dina, '/v1/operators/me/totp')).body.enrolled).toBe(false);
    await p.getByLabel(/6-digit code/).fill(totpCode(secret, Date.now()));
    await p.getByRole('button', { name: 'Confirm enrolment' }).click();
    await p.getByTestId('totp-enrolled').waitFor();
    expect(await p.getByTestId('totp-secret').count()).toBe(0); // shown once
    expect((await api<{ enrolled: boolean }>(url, dina, '/v1/operators/me/totp')).body.enrolled).toBe(true);

    await p.goto(`${url}/#/requests/${critical.id}`);
    await p.getByRole('button', { name: /^Approve a$/ }).click();
    await dialog.getByLabel(/Authenticator code/).waitFor();
    expect(await dialog.getByTestId('mfa-not-enrolled').count()).toBe(0);
    await own.close();
  });
});

describe('a hostile args object', () => {
  it('renders an args object of 100,000 keys capped, showing the first keys and "… more keys" in pages', async () => {
    const args = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [i.toString(36), 0]));
    const posted = Date.now();
    const request = await create({ action: 'isolate_host', args, confidence: 0.82 });
    const started = Date.now();
    await page.goto(`${url}/#/requests/${request.id}`);
    const more = page.locator('.args').getByTestId('more-keys');
    await more.waitFor({ timeout: 30_000 });
    const took = Date.now() - started;
    expect(await more.innerText()).toContain('… 99,950 more keys');
    expect(await page.locator('.args .j-row').count()).toBe(51); // 50 keys and the "more" row
    await more.getByRole('button', { name: 'show 200 more' }).click();
    await page.locator('.args').getByText('… 99,750 more keys').waitFor();
    // The cap is what is tested (51 rows, not 100,000); how long it takes is logged, not asserted:
    // a timing bound flakes on a shared machine (CI once took 20.1 s at load 5).
    const fetched = Date.now();
    await read(request.id);
    console.info(`100,000-key args: create answered in ${started - posted} ms; the card showed the capped tree ${took} ms after navigation; one GET of it takes ${Date.now() - fetched} ms`);
    expect(await watched.problems()).toEqual([]);
    expect((await api(url, agentKey, `/v1/requests/${request.id}/cancel`, { body: {} })).status).toBe(200);
  }, 120_000);
});

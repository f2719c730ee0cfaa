/**
 * Reviewer protection in the dashboard, in Chromium. A paused agent's held request says why
 * approvals wait and offers only Reject. Aggregate reviews: a request being collected into an aggregate
 * review (`onSlicing: aggregate`) shows where it will be decided and offers no Approve (reject
 * stays); the aggregate's card shows what it stands for (its members, the summed value) and is
 * approved or rejected as a whole (no Modify); approving it approves every member. The server
 * runs in this process so the test can move its clock past the slicing detector's pacing.
 */
import { join } from 'node:path';
import { serve as listen, type ServerType } from '@hono/node-server';
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { axeSerious, ensureDashboardBuilt, launchChromium, screenshotDir, signIn, watchPage, type Watched } from './support/dashboard-browser.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { api } from './support/server-process.ts';

const POLICY = DEFAULT_POLICY_YAML.replace('agents: {}', 'agents:\n  slicer-bot: { onSlicing: aggregate }\n  holding-bot: { whilePaused: hold }\n  alt-bot: { block: [drop_database] }').replace(
  '  slicing: { hold: 1h, collect: 1m }',
  '  slicing: { hold: 1h, collect: 2m }',
);
/** Agent-supplied text that must stay text. */
const HOSTILE = '<img src=x onerror=alert(1)><script>alert(2)</script>';

let database: TestDatabase;
let engine: Engine;
let scheduler: Scheduler;
let server: ServerType;
let url = '';
let offset = 0;
let browser: Browser;
let page: Page;
let watched: Watched;
let manager = '';
let adminToken = '';

beforeAll(async () => {
  ensureDashboardBuilt();
  database = sqliteDatabase();
  engine = await Engine.open({ connection: await connect(database.url), now: () => Date.now() + offset });
  await engine.activatePolicy(POLICY, 'test');
  adminToken = (await engine.bootstrap())!.adminToken;
  scheduler = new Scheduler(engine, { intervalMs: 60_000 });
  const app = createApp({ engine, log: () => {} });
  server = await new Promise<ServerType>((resolve) => {
    const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  const address = server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  manager = (await api<{ token: string }>(url, adminToken, '/v1/operators', { body: { name: 'maria', roles: ['manager'] } })).body.token;
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  watched = await watchPage(page);
  await signIn(page, url, manager);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await scheduler?.stop();
  await engine?.close();
  await database?.drop();
});

describe('dashboard: a paused agent', () => {
  it("a held request's card says the agent is paused (reason shown as text) and offers Reject but not Approve", async () => {
    const key = (await api<{ key: string }>(url, adminToken, '/v1/keys', { body: { agent: 'holding-bot' } })).body.key;
    expect((await api(url, adminToken, '/v1/agents/holding-bot/pause', { body: { minutes: 30, reason: `checking ${HOSTILE}` } })).status).toBe(200);
    const held = (await api<{ id: string; status: string }>(url, key, '/v1/requests', { body: { action: 'send_alert', args: { to: 'ops' }, confidence: 0.97 } })).body;
    expect(held.status).toBe('pending');
    await page.goto(`${url}/#/requests/${held.id}`);
    const notice = page.getByTestId('paused-notice');
    await notice.waitFor({ timeout: 10_000 });
    expect(await notice.innerText()).toContain(`The agent is paused until`);
    expect(await notice.innerText()).toContain(HOSTILE); // the reason is text, never markup
    expect(await page.getByRole('button', { name: /^Approve/ }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /^Reject/ }).count()).toBe(1);
    expect(await watched.problems()).toEqual([]);
  });
});

describe('dashboard: aggregate review', () => {
  let members: string[] = [];
  let aggregateId = '';

  it('a request being collected says so, and offers Reject but not Approve', async () => {
    const key = (await api<{ key: string }>(url, adminToken, '/v1/keys', { body: { agent: 'slicer-bot' } })).body.key;
    for (let i = 0; i < 10 && members.length === 0; i++) {
      offset += 90_000; // the detector runs at most once a minute per agent
      const body = { action: 'wire_transfer', args: { to: `acct-${i}`, amount: 9_900, memo: HOSTILE }, confidence: 0.9, riskLevel: 'high', context: { value: 9_900 } };
      expect((await api(url, key, '/v1/requests', { body })).status).toBe(201);
      const started = await engine.listAudit((await engine.authenticate(adminToken))!, { type: 'aggregation_started', limit: 10 });
      members = (started[0]?.data as { requestIds?: string[] } | undefined)?.requestIds ?? [];
    }
    expect(members.length).toBeGreaterThanOrEqual(2); // slicing runs on every create now: the one that crosses the threshold starts it

    await page.goto(`${url}/#/requests/${members[0]}`);
    const notice = page.getByTestId('aggregate-notice');
    await notice.waitFor();
    expect(await notice.innerText()).toMatch(/being collected into one aggregate review/);
    expect(await page.getByRole('button', { name: /^Approve/ }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /^Modify/ }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /^Reject/ }).count()).toBe(1);
    // The keyboard shortcut does not open an approval either.
    await page.locator('body').click({ position: { x: 5, y: 300 } });
    await page.keyboard.press('a');
    expect(await page.getByRole('dialog').count()).toBe(0);
  });

  it('once put together, the member links to the aggregate, whose card lists the members and the total, with no Modify', async () => {
    offset += 2 * 60_000 + 1;
    expect(await scheduler.tick()).toMatchObject({ errors: 0 });
    await page.goto(`${url}/#/queue`);
    await page.goto(`${url}/#/requests/${members[0]}`);
    // A fresh load, so the card is read after the collection closed, not from what the page held
    // while it was collecting (under load the live refetch can lag the 10 s wait below).
    await page.reload();
    const notice = page.getByTestId('aggregate-notice');
    await notice.waitFor({ timeout: 10_000 });
    const link = notice.getByRole('link');
    await link.waitFor({ timeout: 20_000 }).catch(async () => expect.fail(`no link to the aggregate; the card says: ${await notice.innerText()}`));
    const id = (await link.innerText()).trim();
    expect(id).toMatch(/^req_/);
    await link.click();

    const summary = page.getByTestId('aggregate-summary');
    await summary.waitFor();
    expect(await summary.getByRole('heading').innerText()).toBe(`Aggregate review of ${members.length} requests`);
    expect(await page.getByTestId('aggregate-total').innerText()).toBe((9_900 * members.length).toLocaleString('en-US'));
    expect(await summary.locator('tbody tr').count()).toBe(members.length);
    for (const id of members) expect(await summary.getByRole('link', { name: id }).count()).toBe(1);
    expect(await page.locator('.computed-zone').innerText()).toContain('large-value'); // the summed value meets the manager rule
    // Countersign wrote the aggregate's description: it is not shown as something the agent claims.
    expect(await page.locator('.agent-zone').first().innerText()).not.toContain('reviewed as one because slicing was detected');
    expect(await page.getByRole('button', { name: /^Modify/ }).count()).toBe(0);
    aggregateId = id;
  });

  it('the aggregate card passes the accessibility check', async () => {
    expect(await axeSerious(page)).toEqual([]);
    await page.screenshot({ path: join(screenshotDir(), 'aggregate.png'), fullPage: true });
  });

  it('approving the aggregate in the dashboard approves every member, each with its own args', async () => {
    await page.getByRole('button', { name: /^Approve a$/ }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: /Confirm approval/ }).click();
    // Either the dialog closes (approved) or it shows why not: say which, rather than time out.
    await Promise.race([dialog.waitFor({ state: 'detached', timeout: 15_000 }), dialog.getByRole('alert').waitFor({ timeout: 15_000 })]);
    expect(await dialog.count(), (await dialog.count()) > 0 ? await dialog.innerText() : '').toBe(0);
    await expect.poll(async () => (await api<{ status: string }>(url, adminToken, `/v1/requests/${aggregateId}`)).body.status).toBe('executed');
    for (const id of members) {
      const member = (await api<{ status: string; decision: { args: { memo: string } } }>(url, adminToken, `/v1/requests/${id}`)).body;
      expect(member.status).toBe('approved');
      expect(member.decision.args.memo).toBe(HOSTILE);
    }
    expect(await watched.problems()).toEqual([]);
  });
});

describe('dashboard: an approver cooling down', () => {
  it('is not offered Approve on a high-risk card, and is told why', async () => {
    const key = (await api<{ key: string }>(url, adminToken, '/v1/keys', { body: { agent: 'plain-bot' } })).body.key;
    const high = (await api<{ id: string; status: string }>(url, key, '/v1/requests', { body: { action: 'isolate_host', args: { host: 'ws-77' }, confidence: 0.8, riskLevel: 'high' } })).body;
    expect(high.status).toBe('pending');
    expect((await api(url, adminToken, '/v1/approvers/maria/cooldown', { body: { minutes: 30, reason: 'long shift' } })).status).toBe(200);
    await page.goto(`${url}/#/queue`);
    await page.goto(`${url}/#/requests/${high.id}`);
    const notice = page.getByTestId('not-actionable-notice');
    await notice.waitFor({ timeout: 10_000 });
    expect(await notice.innerText()).toContain('cool-down');
    expect(await page.getByRole('button', { name: /^Approve/ }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /^Reject/ }).count()).toBe(1);
  });
});

describe('dashboard: the payload the policy judged (issue 12)', () => {
  it('a blocked alternative is shown disabled with its rule; the value counted is the headline, with both sources', async () => {
    const key = (await api<{ key: string }>(url, adminToken, '/v1/keys', { body: { agent: 'alt-bot' } })).body.key;
    const created = await api<{ id: string; status: string; alternatives: { name: string; blocked?: unknown }[] }>(url, key, '/v1/requests', {
      body: {
        action: 'send_alert',
        args: { to: 'ops', amount: 500_000 },
        context: { value: 100 },
        confidence: 0.6,
        alternatives: [{ name: 'drop', action: 'drop_database', args: { db: 'customers' } }],
      },
    });
    expect(created.status).toBe(201);
    expect(created.body.status).toBe('pending');
    expect(created.body.alternatives[0]!.blocked).toBeTruthy();
    await page.goto(`${url}/#/requests/${created.body.id}`);
    const blocked = page.getByTestId('blocked-alternative');
    await blocked.waitFor({ timeout: 10_000 });
    expect(await blocked.isDisabled()).toBe(true);
    expect(await blocked.innerText()).toContain('blocked by policy');
    const counted = page.getByTestId('value-counted');
    expect(await counted.innerText()).toContain('500,000');
    const card = await page.locator('main').innerText();
    expect(card).toContain('claimed by the agent (context.value)');
    expect(card).toContain('they differ');
  });
});

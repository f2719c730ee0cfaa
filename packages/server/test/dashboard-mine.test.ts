/**
 * The dashboard's "Only what I can approve" (issue 18, operator views) in Chromium: a reviewer
 * whose own 120 requests fill the first page (never hers to approve: SELF_REVIEW) sees nothing to
 * act on in the plain queue, and with the toggle the server's `actionableBy=me` brings the three
 * requests behind them that she may approve, and only those.
 */
import { serve as listen, type ServerType } from '@hono/node-server';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { axeSerious, ensureDashboardBuilt, launchChromium, signIn, watchPage, type Watched } from './support/dashboard-browser.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { FLOOD_POLICY } from './support/flood.ts';
import { api } from './support/server-process.ts';

vi.setConfig({ testTimeout: 120_000 });

const OWN = 120;

let database: TestDatabase;
let engine: Engine;
let server: ServerType;
let url = '';
let browser: Browser;
let page: Page;
let watched: Watched;
let doraToken = '';
const theirs: string[] = [];

const rowIds = (scope: string) => page.locator(`${scope} tbody tr[data-request-id]`).evaluateAll((rows) => rows.map((r) => r.getAttribute('data-request-id')));

beforeAll(async () => {
  ensureDashboardBuilt();
  database = sqliteDatabase();
  engine = await Engine.open({ connection: await connect(database.url) });
  await engine.activatePolicy(FLOOD_POLICY, 'flood-test');
  const boot = (await engine.bootstrap())!;
  const app = createApp({ engine, log: () => {} });
  server = await new Promise<ServerType>((resolve) => {
    const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  const address = server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  doraToken = (await api<{ token: string }>(url, boot.adminToken, '/v1/operators', { body: { name: 'dora', roles: ['reviewer'] } })).body.token;
  for (let i = 0; i < OWN; i++) {
    expect((await api(url, doraToken, '/v1/requests', { body: { action: 'junk_ping', args: { own: i }, confidence: 0.9 } })).status).toBe(201);
  }
  for (let i = 0; i < 3; i++) {
    const res = await api<{ id: string }>(url, boot.agentKey, '/v1/requests', { body: { action: 'junk_ping', args: { theirs: i }, confidence: 0.9 } });
    expect(res.status).toBe(201);
    theirs.push(res.body.id);
  }
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  watched = await watchPage(page);
  await signIn(page, url, doraToken);
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await engine?.close();
  await database?.drop();
});

describe('the dashboard queue: only what I can approve', () => {
  it('the plain queue’s first page holds nothing for her; the toggle asks the server and shows exactly what she may approve', async () => {
    await page.getByTestId('not-actionable').waitFor({ timeout: 20_000 });
    expect(await page.locator('.empty').innerText()).toContain('Nothing here you can act on now');
    expect(await rowIds('[data-testid="not-actionable"]')).toHaveLength(100);
    // What the server says she may approve (the oracle), before the toggle.
    const oracle = (await api<{ items: Array<{ id: string }> }>(url, doraToken, '/v1/requests?actionableBy=me&limit=100')).body.items.map((r) => r.id);
    expect(oracle).toEqual(theirs);

    await page.getByTestId('queue-mine').click();
    await expect.poll(() => page.getByTestId('queue-mine').getAttribute('aria-pressed')).toBe('true');
    await expect.poll(() => page.locator('tbody tr[data-request-id]').count(), { timeout: 15_000 }).toBe(3);
    const shown = await page.locator('tbody tr[data-request-id]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-request-id')));
    expect(shown).toEqual(theirs);
    expect(await page.getByTestId('not-actionable').count()).toBe(0);
    expect(await page.getByTestId('queue-total').innerText()).toBe(`${OWN + 3} pending (all of them, yours or not)`);
    expect(await page.getByTestId('queue-more').count()).toBe(0);
    expect(await watched.problems()).toEqual([]);
    expect(await axeSerious(page)).toEqual([]);

    // Off again: the plain queue, her own requests first.
    await page.getByTestId('queue-mine').click();
    await page.getByTestId('not-actionable').waitFor();
    expect(await rowIds('[data-testid="not-actionable"]')).toHaveLength(100);
  });
});

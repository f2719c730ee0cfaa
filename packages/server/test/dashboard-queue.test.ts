/**
 * The flood-proof queue in Chromium (issue 13 point 5): after 2,000 junk low-risk pending
 * requests and then one critical, the dashboard shows the critical one at the top, the counts of
 * the server's query in the nav and on the risk chips, and a visible "N more" with "Load more";
 * a critical request arriving live goes to the top; the filters are applied by the server (the
 * rows and the counts change together), and a filter the server refuses says why.
 * Bounded at scale (issue 19), asserted by what crosses the wire, not by timing: a fresh sign-in
 * over the 2,000-request queue reads one page of at most 100 rows, and a new request costs one
 * delta on the stream (one request, not the queue) and re-reads of the loaded window only.
 */
import { serve as listen, type ServerType } from '@hono/node-server';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { axeSerious, ensureDashboardBuilt, launchChromium, signIn, watchPage, type Watched } from './support/dashboard-browser.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { FLOOD_POLICY, pool } from './support/flood.ts';
import { api } from './support/server-process.ts';

vi.setConfig({ testTimeout: 120_000 });

const JUNK = 2_000;

let database: TestDatabase;
let engine: Engine;
let server: ServerType;
let url = '';
let browser: Browser;
let page: Page;
let watched: Watched;
let adminToken = '';
let agentKey = '';
let criticalId = '';
const keys: string[] = [];

const create = async (key: string, body: unknown) => {
  const res = await api<{ id: string; status: string; assessment: { riskLevel: string } }>(url, key, '/v1/requests', { body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
};
const rowIds = () => page.locator('tbody tr[data-request-id]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-request-id')));

beforeAll(async () => {
  ensureDashboardBuilt();
  database = sqliteDatabase();
  engine = await Engine.open({ connection: await connect(database.url) });
  await engine.activatePolicy(FLOOD_POLICY, 'flood-test');
  const boot = (await engine.bootstrap())!;
  adminToken = boot.adminToken;
  agentKey = boot.agentKey;
  const app = createApp({ engine, log: () => {} });
  server = await new Promise<ServerType>((resolve) => {
    const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  const address = server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  for (let i = 0; i < 10; i++) keys.push((await api<{ key: string }>(url, adminToken, '/v1/keys', { body: { agent: `junk-bot-${i}` } })).body.key);
  await pool(
    Array.from({ length: JUNK }, (_, i) => i),
    16,
    (i) => create(keys[i % keys.length]!, { action: 'junk_ping', args: { n: i }, confidence: 0.9, description: `junk ${i}` }),
  );
  const critical = await create(agentKey, { action: 'delete_data', args: { path: '/important/customers.db' }, confidence: 0.3, description: 'Free disk space' });
  expect(critical.assessment.riskLevel).toBe('critical');
  criticalId = critical.id;
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  watched = await watchPage(page);
  const reviewer = (await api<{ token: string }>(url, adminToken, '/v1/operators', { body: { name: 'rita', roles: ['reviewer'] } })).body.token;
  await signIn(page, url, reviewer);
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await engine?.close();
  await database?.drop();
});

describe('the dashboard queue under a flood', () => {
  it('shows the critical request at the top, the server’s counts, and "N more"', async () => {
    await page.locator(`tr[data-request-id="${criticalId}"]`).waitFor({ timeout: 20_000 });
    expect((await rowIds())[0]).toBe(criticalId);
    expect(await page.locator('tbody tr[data-request-id]').count()).toBe(100);
    await expect.poll(() => page.locator('nav .count').innerText()).toBe(String(JUNK + 1));
    const chips = await page.locator('.risk-counts').innerText();
    expect(chips).toMatch(/critical\s*1/);
    expect(chips).toMatch(/low\s*2000/);
    expect(chips).toMatch(/high\s*0/);
    expect(await page.getByTestId('queue-more').innerText()).toContain(`${JUNK + 1 - 100} more not shown (showing 100 of ${JUNK + 1})`);
    expect(await watched.problems()).toEqual([]);
    expect(await axeSerious(page)).toEqual([]);
  });

  it('loads more on request, without repeating a row', async () => {
    await page.getByRole('button', { name: 'Load 100 more' }).click();
    await expect.poll(() => page.locator('tbody tr[data-request-id]').count()).toBe(200);
    const ids = await rowIds();
    expect(new Set(ids).size).toBe(200);
    expect(ids[0]).toBe(criticalId);
    expect(await page.getByTestId('queue-more').innerText()).toContain(`${JUNK + 1 - 200} more not shown`);
  });

  it('puts a critical request arriving live near the top and counts it, without a reload', async () => {
    await page.evaluate('window.__sameDocument = "yes"');
    const second = await create(keys[0]!, { action: 'delete_data', args: { path: '/second' }, confidence: 0.3 });
    await page.locator(`tr[data-request-id="${second.id}"]`).waitFor({ timeout: 15_000 });
    expect((await rowIds()).slice(0, 2)).toEqual([criticalId, second.id]);
    await expect.poll(() => page.locator('.risk-counts').innerText()).toMatch(/critical\s*2/);
    await expect.poll(() => page.locator('nav .count').innerText()).toBe(String(JUNK + 2));
    expect(await page.evaluate('window.__sameDocument')).toBe('yes');
    // More junk arriving does not push the criticals down, and the rows loaded stay loaded.
    await pool([0, 1, 2, 3, 4], 5, (i) => create(keys[i]!, { action: 'junk_ping', args: { late: i }, confidence: 0.9 }));
    await expect.poll(() => page.locator('nav .count').innerText(), { timeout: 15_000 }).toBe(String(JUNK + 7));
    expect((await rowIds()).slice(0, 2)).toEqual([criticalId, second.id]);
    expect(await page.locator('tbody tr[data-request-id]').count()).toBeGreaterThanOrEqual(200);
  });

  it('filters on the server: the rows and the counts change together; a refused filter says why', async () => {
    await page.getByRole('button', { name: /^critical/ }).click();
    await expect.poll(() => page.locator('tbody tr[data-request-id]').count()).toBe(2);
    expect(await page.getByTestId('queue-total').innerText()).toBe('2 pending match these filters');
    expect(await page.getByTestId('queue-more').count()).toBe(0);
    expect(await page.locator('nav .count').innerText()).toBe(String(JUNK + 7)); // the nav counts every pending request
    await page.getByRole('button', { name: /^critical/ }).click();
    await page.getByLabel('Agent').fill('junk-bot-3');
    await expect.poll(() => page.getByTestId('queue-total').innerText()).toBe(`${JUNK / 10 + 1} pending match these filters`);
    expect(await page.locator('.risk-counts').innerText()).toMatch(/low\s*201/);
    await page.getByLabel('Agent').fill('nobody-by-that-name');
    await page.getByTestId('queue-error').waitFor();
    expect(await page.getByTestId('queue-error').innerText()).toContain('no agent has the id or name "nobody-by-that-name"');
    expect(await page.getByTestId('empty-queue').count()).toBe(0); // a refused filter is not an empty queue
    await page.getByLabel('Agent').fill('');
    await page.getByLabel('Action').fill('JunkPing');
    await expect.poll(() => page.getByTestId('queue-total').innerText()).toBe(`${JUNK + 5} pending match these filters`);
    expect(await page.getByTestId('queue-error').count()).toBe(0);
    expect(await watched.problems()).toEqual([]);
  });

  it('stays bounded: a sign-in reads one page, and a new request is one delta on the stream, not the queue', async () => {
    const total = (await api<{ total: number }>(url, adminToken, '/v1/requests/count?status=pending')).body.total;
    expect(total).toBeGreaterThan(JUNK);
    const reviewer = (await api<{ token: string }>(url, adminToken, '/v1/operators', { body: { name: 'bounded', roles: ['reviewer'] } })).body.token;
    const fresh = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    const reads: Array<{ limit: number; items: number }> = [];
    const bodies: Promise<void>[] = [];
    fresh.on('response', (res) => {
      const u = new URL(res.url());
      if (u.pathname !== '/v1/requests' || res.request().method() !== 'GET') return;
      bodies.push(
        res.json().then((b: { items: unknown[] }) => {
          reads.push({ limit: Number(u.searchParams.get('limit')), items: b.items.length });
        }),
      );
    });
    try {
      await signIn(fresh, url, reviewer);
      await fresh.locator('tbody tr[data-request-id]').first().waitFor({ timeout: 20_000 });
      await fresh.getByRole('status').filter({ hasText: '● live' }).waitFor();
      await expect.poll(() => fresh.locator('nav .count').innerText()).toBe(String(total));
      await Promise.all(bodies);
      // The first screen: one page, whatever the size of the queue.
      expect(reads).toEqual([{ limit: 100, items: 100 }]);
      expect(await fresh.locator('tbody tr[data-request-id]').count()).toBe(100);

      // The stream, read as the browser does, while one request arrives.
      const controller = new AbortController();
      const stream = await fetch(`${url}/v1/events`, { headers: { authorization: `Bearer ${reviewer}` }, signal: controller.signal });
      expect(stream.status).toBe(200);
      const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
      const events: Array<{ event: string; data: string }> = [];
      let text = '';
      const until = async (done: () => boolean) => {
        while (!done()) {
          const { value, done: ended } = await reader.read();
          if (ended) throw new Error('the stream ended');
          text += value;
          let end = text.indexOf('\n\n');
          while (end >= 0) {
            const block = text.slice(0, end);
            text = text.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = [...block.matchAll(/^data: (.*)$/gm)].map((m) => m[1]).join('\n');
            if (event) events.push({ event, data });
            end = text.indexOf('\n\n');
          }
        }
      };
      await until(() => events.some((e) => e.event === 'ready'));
      reads.length = 0;
      const arriving = await create(keys[1]!, { action: 'junk_ping', args: { bounded: true }, confidence: 0.9 });
      await until(() => events.some((e) => e.event === 'request' && (JSON.parse(e.data) as { id: string }).id === arriving.id));
      controller.abort();
      const changes = events.filter((e) => e.event === 'request');
      expect(changes).toHaveLength(1); // this one request, once
      const delta = JSON.parse(changes[0]!.data) as { id: string; status: string };
      expect(Array.isArray(delta)).toBe(false);
      expect(delta).toMatchObject({ id: arriving.id, status: 'pending' });
      expect(changes[0]!.data.length).toBeLessThan(20_000); // one request's JSON, not a queue's

      // The browser counts it and re-reads its loaded window (100 rows) once, never the queue.
      await expect.poll(() => fresh.locator('nav .count').innerText(), { timeout: 15_000 }).toBe(String(total + 1));
      await Promise.all(bodies);
      expect(reads.length).toBeGreaterThanOrEqual(1);
      expect(reads.length).toBeLessThanOrEqual(2); // one coalesced re-read (two if the count arrived mid-read)
      for (const r of reads) {
        expect(r.limit).toBeLessThanOrEqual(100);
        expect(r.items).toBeLessThanOrEqual(100);
      }
      expect(await fresh.locator('tbody tr[data-request-id]').count()).toBe(100);
    } finally {
      await fresh.context().close();
    }
  });
});

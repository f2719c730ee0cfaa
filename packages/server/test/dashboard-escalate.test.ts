/**
 * The request card's Escalate button (issue 18) in Chromium against a real server: it asks for a
 * reason, moves the request one level up through `POST /v1/requests/:id/escalate` from the level
 * the card showed, shows the server's refusals in words (no reason, not eligible, level_changed
 * when someone else escalated first), is not offered at the last level, and the card says when
 * the level it reached is the final authority.
 */
import { serve as listen, type ServerType } from '@hono/node-server';
import type { ApprovalRequest } from '@countersign/core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { axeSerious, ensureDashboardBuilt, launchChromium, signIn, watchPage, type Watched } from './support/dashboard-browser.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { api } from './support/server-process.ts';

vi.setConfig({ testTimeout: 120_000 });

const POLICY = `
levels: { high: { sla: 10m } }
escalation:
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 20m }
    - { role: director, operators: [cfo], after: 30m, finalAuthority: true }
rules:
  - name: leads-only
    when: { action: wire_money }
    then: { approvers: [{ role: lead }] }
`;

type Audit = { items: Array<{ type: string; actor: { name?: string }; data: Record<string, unknown> }> };

let database: TestDatabase;
let engine: Engine;
let server: ServerType;
let url = '';
let browser: Browser;
let page: Page;
let watched: Watched;
const tokens: Record<string, string> = {};

const create = async (action: string) => {
  const res = await api<ApprovalRequest>(url, tokens['agent']!, '/v1/requests', { body: { action, args: { host: 'ws-1' }, confidence: 0.82 } });
  expect(res.status).toBe(201);
  return res.body;
};
const escalated = async (id: string) =>
  (await api<Audit>(url, tokens['admin']!, `/v1/requests/${id}/audit`)).body.items.filter((e) => e.type === 'escalated');
async function openCard(id: string): Promise<void> {
  await page.goto(`${url}/#/requests/${id}`);
  await page.getByRole('heading', { name: /Countersign's assessment/ }).waitFor();
}

beforeAll(async () => {
  ensureDashboardBuilt();
  database = sqliteDatabase();
  engine = await Engine.open({ connection: await connect(database.url) });
  await engine.activatePolicy(POLICY, 'escalate-test');
  const boot = (await engine.bootstrap())!;
  tokens['admin'] = boot.adminToken;
  tokens['agent'] = boot.agentKey;
  const app = createApp({ engine, log: () => {} });
  server = await new Promise<ServerType>((resolve) => {
    const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  const address = server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  for (const [name, roles] of [['lena', ['lead']], ['rita', ['reviewer']], ['mona', ['manager']]] as const) {
    tokens[name] = (await api<{ token: string }>(url, boot.adminToken, '/v1/operators', { body: { name, roles } })).body.token;
  }
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  watched = await watchPage(page);
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await engine?.close();
  await database?.drop();
});

describe('the request card: Escalate', () => {
  it('asks for a reason, escalates one level from the level shown, and shows the new level', async () => {
    await signIn(page, url, tokens['lena']!);
    const r = await create('isolate_host');
    await openCard(r.id);
    expect(await page.locator('.sla').innerText()).toContain('escalation level 1 of 3 (lead)');
    await page.getByTestId('escalate').click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText('from escalation level 1 to level 2').waitFor();
    // No reason: refused in the page, nothing sent.
    await dialog.getByTestId('escalate-reason').fill('   ');
    await dialog.getByTestId('escalate-submit').click();
    await dialog.getByText('An escalation needs a reason').waitFor();
    expect(await escalated(r.id)).toEqual([]);
    await dialog.getByTestId('escalate-reason').fill('prod host, needs a manager now');
    await dialog.getByTestId('escalate-submit').click();
    await dialog.waitFor({ state: 'detached' });
    await expect.poll(() => page.locator('.sla').innerText()).toContain('escalation level 2 of 3 (manager)');
    const entries = await escalated(r.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ actor: { name: 'lena' }, data: { from: 1, to: 2, reason: 'manual', by: 'lena', text: 'prod host, needs a manager now' } });
    expect(await page.getByTestId('escalate').innerText()).toContain('Escalate to level 3');
    expect(await watched.problems()).toEqual([]);
    expect(await axeSerious(page)).toEqual([]);
  });

  it('someone else escalated first: level_changed is shown in words, and the request moved one level, not two', async () => {
    const r = await create('isolate_host');
    expect((await api(url, tokens['mona']!, `/v1/requests/${r.id}/escalate`, { body: { reason: 'to 2' } })).status).toBe(200);
    await openCard(r.id);
    await expect.poll(() => page.locator('.sla').innerText()).toContain('escalation level 2 of 3');
    await page.getByTestId('escalate').click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText('from escalation level 2 to level 3').waitFor();
    // Meanwhile a manager escalates it to level 3.
    expect((await api(url, tokens['mona']!, `/v1/requests/${r.id}/escalate`, { body: { reason: 'to the director', fromLevel: 2 } })).status).toBe(200);
    await dialog.getByTestId('escalate-reason').fill('director please');
    await dialog.getByTestId('escalate-submit').click();
    const error = dialog.getByTestId('escalate-error');
    await error.waitFor();
    expect(await error.innerText()).toContain('The request has moved on since you opened this: it is at escalation level 3 now. Nothing was changed');
    expect((await escalated(r.id)).map((e) => e.data['to'])).toEqual([2, 3]);
    await dialog.getByRole('button', { name: /Cancel/ }).click();
    await dialog.waitFor({ state: 'detached' });
    // At the last level the button is gone, and the card says the final authority may decide alone.
    await expect.poll(() => page.locator('.sla').innerText()).toContain('escalation level 3 of 3 (director; cfo)');
    expect(await page.getByTestId('escalate').count()).toBe(0);
    expect(await page.getByTestId('final-authority-notice').innerText()).toContain('any one of director; cfo may decide alone');
    expect(await watched.problems()).toEqual([]);
  });

  it('a reviewer who may not review it now sees why the escalation was refused; nothing moved', async () => {
    // rita in a browser context of her own (lena's session stays in the other).
    page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    watched = await watchPage(page);
    await signIn(page, url, tokens['rita']!);
    const r = await create('wire_money'); // needs a lead
    await openCard(r.id);
    await page.getByTestId('escalate').click();
    const dialog = page.getByRole('dialog');
    await dialog.getByTestId('escalate-reason').fill('please');
    await dialog.getByTestId('escalate-submit').click();
    const error = dialog.getByTestId('escalate-error');
    await error.waitFor();
    expect(await error.innerText()).toMatch(/^You may not escalate it: only someone who may review it now can\./);
    expect(await escalated(r.id)).toEqual([]);
    const now = (await api<ApprovalRequest>(url, tokens['admin']!, `/v1/requests/${r.id}`)).body;
    expect(now.escalation).toMatchObject({ level: 1 });
    expect(await watched.problems()).toEqual([]);
  });
});

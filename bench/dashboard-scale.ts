/**
 * The dashboard at scale in a real browser (issue 19): `npm run bench:dashboard` is
 * `bench/scale.ts --dashboard` (which populates the database: 1,000,000 requests, 100,000 of them
 * pending, by default), and this is the part it adds once the server is up: Debian's Chromium
 * (driven by playwright-core, as the browser tests do) signs in with a fresh reviewer token,
 * in a fresh browser context each run, and times
 *   - the queue's first screen: from the click on "Sign in" to the first row of the queue
 *     (and its "N more" line, i.e. the server's counts) on screen;
 *   - the Metrics screen: from the click on "Metrics" to its tiles on screen, and, separately,
 *     how long the browser waited for `GET /v1/metrics/summary` (the API's share).
 * It also records what the queue's first screen fetched: how many `GET /v1/requests` calls, the
 * largest `limit` asked for, the rows and the bytes that came back (so "bounded" is measured,
 * not assumed). `BENCH_TRACE=1` prints each run's requests with their times (where a slow run went).
 */
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../packages/server/test/support/dashboard-browser.ts';

export interface DashboardTimes {
  runs: number;
  /** Sign-in click → first queue row and the counts line visible, ms, per run. */
  queue: number[];
  /** Nav click → Metrics tiles visible, ms, per run. */
  metrics: number[];
  /** The browser's wait for GET /v1/metrics/summary, ms, per run. */
  summaryApi: number[];
  /** What the first queue screen fetched (the last run). */
  queueFetches: { calls: number; maxLimit: number; rows: number; bytes: number };
  /** The "N more" line the queue showed (the last run). */
  moreLine: string;
}

async function once(browser: Browser, url: string, token: string): Promise<{ queue: number; metrics: number; summaryApi: number; fetches: DashboardTimes['queueFetches']; moreLine: string }> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page: Page = await context.newPage();
  try {
    await page.goto(`${url}/`);
    await page.getByLabel('Operator token').fill(token);
    const fetches = { calls: 0, maxLimit: 0, rows: 0, bytes: 0 };
    let counting = true;
    page.on('response', (res) => {
      const u = new URL(res.url());
      if (!counting || u.pathname !== '/v1/requests' || res.request().method() !== 'GET') return;
      fetches.calls++;
      fetches.maxLimit = Math.max(fetches.maxLimit, Number(u.searchParams.get('limit') ?? 0));
      void res
        .body()
        .then((b) => {
          fetches.bytes += b.length;
          fetches.rows += (JSON.parse(b.toString('utf8')) as { items: unknown[] }).items.length;
        })
        .catch(() => undefined);
    });
    const t0 = performance.now();
    if (process.env.BENCH_TRACE) {
      page.on('request', (r) => console.log(`+${(performance.now() - t0).toFixed(0)} ms → ${r.method()} ${r.url().replace(url, '')}`));
      page.on('requestfinished', (r) => console.log(`+${(performance.now() - t0).toFixed(0)} ms ✓ ${r.method()} ${r.url().replace(url, '')}`));
    }
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('tbody tr[data-request-id]').first().waitFor({ timeout: 60_000 });
    await page.getByTestId('queue-more').waitFor({ timeout: 60_000 });
    const queue = performance.now() - t0;
    if (process.env.BENCH_TRACE) {
      // A string, so the page's globals need no DOM types here.
      const inPage = (await page.evaluate(
        `({ now: performance.now(), entries: performance.getEntriesByType('resource').map((e) => e.name.replace(location.origin, '') + ' ' + e.startTime.toFixed(0) + '→' + e.responseEnd.toFixed(0)) })`,
      )) as { now: number; entries: string[] };
      console.log(`queue seen at +${queue.toFixed(0)} ms; page now ${inPage.now.toFixed(0)}`, inPage.entries.slice(-4));
    }
    const moreLine = await page.getByTestId('queue-more').innerText();
    await page.waitForTimeout(200); // let the bodies of the responses seen be read
    counting = false;

    let summaryApi = Number.NaN;
    const summaryDone = page.waitForResponse((res) => new URL(res.url()).pathname === '/v1/metrics/summary', { timeout: 60_000 });
    const t1 = performance.now();
    await page.getByRole('link', { name: 'Metrics', exact: true }).click();
    await page.locator('.tile').first().waitFor({ timeout: 60_000 });
    const metrics = performance.now() - t1;
    const res = await summaryDone;
    const timing = res.request().timing();
    if (timing.responseEnd > 0) summaryApi = timing.responseEnd - timing.requestStart;
    return { queue, metrics, summaryApi, fetches, moreLine };
  } finally {
    await context.close();
  }
}

/** Signs in `runs` times with `token` (a reviewer's), each in a fresh context, and times both screens. */
export async function timeDashboard(url: string, token: string, runs = 5): Promise<DashboardTimes> {
  const browser = await launchChromium();
  try {
    await once(browser, url, token); // warm-up: the server's and Chromium's first-use costs (not counted)
    const out: DashboardTimes = { runs, queue: [], metrics: [], summaryApi: [], queueFetches: { calls: 0, maxLimit: 0, rows: 0, bytes: 0 }, moreLine: '' };
    for (let i = 0; i < runs; i++) {
      const r = await once(browser, url, token);
      out.queue.push(r.queue);
      out.metrics.push(r.metrics);
      out.summaryApi.push(r.summaryApi);
      out.queueFetches = r.fetches;
      out.moreLine = r.moreLine;
    }
    return out;
  } finally {
    await browser.close();
  }
}

export function medianAndWorst(values: number[]): { median: number; worst: number } {
  const s = [...values].sort((a, b) => a - b);
  return { median: s[Math.floor((s.length - 1) / 2)]!, worst: s[s.length - 1]! };
}

/**
 * Browser tests of the dashboard: Debian's Chromium driven by playwright-core (never a
 * downloaded browser), against the built dashboard served by a real `countersign serve`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

const ENSURE_BUILT = fileURLToPath(new URL('../../../dashboard/scripts/ensure-built.mjs', import.meta.url));
export const REPO = fileURLToPath(new URL('../../../../', import.meta.url));

/** Builds packages/dashboard/dist when it is missing or older than its sources. */
export function ensureDashboardBuilt(): void {
  execFileSync(process.execPath, [ENSURE_BUILT, '--quiet'], { stdio: 'inherit' });
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.COUNTERSIGN_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
}

/**
 * Screenshots go to docs/screenshots (committed, shown in the README) when
 * COUNTERSIGN_UPDATE_SCREENSHOTS=1, else to .tmp/screenshots, so an ordinary test run leaves
 * the work tree clean.
 */
export function screenshotDir(): string {
  const dir = process.env.COUNTERSIGN_UPDATE_SCREENSHOTS === '1' ? `${REPO}docs/screenshots` : `${REPO}.tmp/screenshots`;
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Installed before any page script runs: anything that executes agent-supplied script trips these. */
const TRIPWIRES = `
  window.__xss = [];
  window.__csp = [];
  for (const name of ['alert', 'confirm', 'prompt', 'print']) {
    const hit = (...args) => { window.__xss.push(name + ':' + args.map(String).join(',')); };
    Object.defineProperty(window, name, { value: hit, writable: false, configurable: false });
  }
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sample || ''));
  });
`;

export interface Watched {
  page: Page;
  /** Everything that went wrong so far: script that ran, CSP violations, page errors, dialogs. */
  problems(): Promise<string[]>;
  /** Forgets everything seen so far (after a deliberate probe). */
  reset(): Promise<void>;
}

export async function watchPage(page: Page): Promise<Watched> {
  const errors: string[] = [];
  await page.addInitScript({ content: TRIPWIRES });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    errors.push(`dialog: ${d.type()} ${d.message()}`);
    void d.dismiss();
  });
  page.on('console', (m) => {
    // API refusals (401 before sign-in, 403/409 for a refused decision) are answers the page
    // shows; Chrome also logs them. Anything else logged as an error is a problem.
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return {
    page,
    async problems() {
      const inPage = (await page.evaluate('[...(window.__xss || []), ...(window.__csp || []).map((v) => "csp: " + v)]')) as string[];
      return [...errors, ...inPage];
    },
    async reset() {
      errors.length = 0;
      await page.evaluate('window.__xss.length = 0; window.__csp.length = 0;');
    },
  };
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: string[] }>;
}

/** Serious and critical axe violations on the current page (WCAG 2.x A/AA rules). */
export async function axeSerious(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate(`axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } })`)) as {
    violations: AxeViolation[];
  };
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target })) }));
}

export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.getByLabel('Operator token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Queue', exact: true }).waitFor();
}

/**
 * What the dashboard relies on, in process: sign-in and session cookies, CSRF refusals, the
 * static files and their security headers, the live request stream, supervised-feed feedback
 * and the metrics summary. Bearer callers must see no change.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.ts';
import { CONTENT_SECURITY_POLICY, resolveAsset } from '../src/http/dashboard.ts';
import { quantile, summarize } from '../src/http/metrics-summary.ts';
import { CSRF_HEADER, Sessions } from '../src/http/session.ts';
import type { MetricFactRow } from '../src/store/store.ts';
import { Engine } from '../src/engine/engine.ts';
import { connect } from '../src/store/connect.ts';
import { createHash } from 'node:crypto';
import { postgresDatabase, sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, TEST_SERVER_SECRET, openTestEngine, type TestEngine } from './support/engine.ts';

let database: TestDatabase;
let t: TestEngine;
let app: ReturnType<typeof createApp>;
let dist: string;
let agentKey: string;
let adminToken: string;
let reviewerToken: string;

beforeAll(async () => {
  database = sqliteDatabase();
  t = await openTestEngine(database.url);
  dist = mkdtempSync(join(tmpdir(), 'countersign-dist-'));
  mkdirSync(join(dist, 'assets'));
  writeFileSync(join(dist, 'index.html'), '<!doctype html><title>x</title><script type="module" src="/assets/app.js"></script>');
  writeFileSync(join(dist, 'assets', 'app.js'), 'console.log(1)');
  writeFileSync(join(dist, '.secret.js'), 'no');
  app = createApp({ engine: t.engine, log: () => {}, heartbeatSeconds: 1, dashboardDir: dist });
  agentKey = (await t.engine.createAgentKey(t.admin, 'dash-bot')).key;
  adminToken = (await t.engine.createOperator(t.admin, { name: 'dash-admin', roles: ['admin'] })).token;
  reviewerToken = (await t.engine.createOperator(t.admin, { name: 'dash-reviewer', roles: ['reviewer'] })).token;
});
afterAll(async () => {
  await t.engine.close();
  await database.drop();
  rmSync(dist, { recursive: true, force: true });
});

const ORIGIN = 'http://localhost';

async function signIn(token: string, target = app, headers: Record<string, string> = {}) {
  const res = await target.request('/v1/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: ORIGIN, ...headers },
    body: JSON.stringify({ token }),
  });
  const setCookie = res.headers.get('set-cookie') ?? '';
  const body = (await res.json()) as { csrfToken: string; operator: { name: string }; error?: { code: string } };
  return { res, setCookie, cookie: setCookie.split(';')[0] ?? '', body };
}

async function createQueued(): Promise<string> {
  const res = await app.request('/v1/requests', {
    method: 'POST',
    headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(QUEUED),
  });
  return ((await res.json()) as { id: string }).id;
}

function review(id: string, headers: Record<string, string>) {
  return app.request(`/v1/requests/${id}/reviews`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ verdict: 'approve' }),
  });
}

async function code(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('sign-in and the session cookie', () => {
  it('exchanges an operator token for an HttpOnly, SameSite=Strict cookie (no Secure over plain HTTP)', async () => {
    const { res, setCookie, body } = await signIn(reviewerToken);
    expect(res.status).toBe(200);
    expect(body.operator.name).toBe('dash-reviewer');
    expect(body.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(setCookie).toMatch(/^countersign_session=v2\.[A-Za-z0-9_-]{43};/);
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).toContain('Path=/');
    expect(setCookie).not.toContain('Secure');
    expect(setCookie).not.toContain(reviewerToken);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('sets Secure (and the __Host- prefix) behind TLS only when the proxy is trusted', async () => {
    const untrusted = await signIn(reviewerToken, app, { 'x-forwarded-proto': 'https', origin: 'https://localhost' });
    expect(untrusted.res.status).toBe(403); // the origin is https, but we do not believe the proxy: cross-origin
    const plain = await signIn(reviewerToken, app, { 'x-forwarded-proto': 'https' });
    expect(plain.setCookie).not.toContain('Secure');
    const trusting = createApp({ engine: t.engine, log: () => {}, session: { trustProxy: true }, dashboardDir: dist });
    const tls = await signIn(reviewerToken, trusting, { 'x-forwarded-proto': 'https', origin: 'https://localhost' });
    expect(tls.res.status).toBe(200);
    expect(tls.setCookie).toMatch(/^__Host-countersign_session=/);
    expect(tls.setCookie).toContain('Secure');
    const me = await trusting.request('/v1/me', { headers: { cookie: tls.cookie, 'x-forwarded-proto': 'https' } });
    expect(me.status).toBe(200);
  });

  it('refuses agent keys, unknown tokens, cross-site sign-in and bad bodies', async () => {
    expect((await signIn(agentKey)).res.status).toBe(403);
    expect((await signIn('cso_not-a-real-token-at-all')).res.status).toBe(401);
    expect((await signIn(reviewerToken, app, { origin: 'https://evil.example' })).res.status).toBe(403);
    expect((await signIn(reviewerToken, app, { 'sec-fetch-site': 'cross-site' })).res.status).toBe(403);
    const extra = await app.request('/v1/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: reviewerToken, role: 'admin' }),
    });
    expect(extra.status).toBe(400);
  });

  it('reads with the cookie alone; GET /v1/session gives back the CSRF token', async () => {
    const { cookie, body } = await signIn(reviewerToken);
    const list = await app.request('/v1/requests?status=pending', { headers: { cookie } });
    expect(list.status).toBe(200);
    const session = await app.request('/v1/session', { headers: { cookie } });
    expect(((await session.json()) as { csrfToken: string }).csrfToken).toBe(body.csrfToken);
  });

  it('refuses forged, tampered and expired cookies', async () => {
    const { cookie } = await signIn(reviewerToken);
    const [name, value] = cookie.split('=') as [string, string];
    const flipped = value.slice(0, -1) + (value.endsWith('A') ? 'B' : 'A');
    expect((await app.request('/v1/me', { headers: { cookie: `${name}=${flipped}` } })).status).toBe(401);
    expect((await app.request('/v1/me', { headers: { cookie: `${name}=v1.x.y.z.w` } })).status).toBe(401);
    expect((await app.request('/v1/me', { headers: { cookie: `${name}=v2.${'A'.repeat(43)}` } })).status).toBe(401);

    const short = createApp({ engine: t.engine, log: () => {}, session: { ttlMs: 300 }, dashboardDir: dist });
    const issued = await signIn(reviewerToken, short);
    expect((await short.request('/v1/me', { headers: { cookie: issued.cookie } })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 400));
    expect((await short.request('/v1/me', { headers: { cookie: issued.cookie } })).status).toBe(401); // the row's expiry, cache or not
    expect(() => new Sessions({ secret: 'short' })).toThrow(/32 characters/);
  });

  it('a cookie cannot be derived from the database or a credential hash (issue 13, point 8)', async () => {
    const { cookie } = await signIn(reviewerToken);
    const value = cookie.split('=')[1]!;
    const rows = await t.engine.store.credentials.session(createHash('sha256').update(value.slice(3)).digest('hex'));
    expect(rows).toBeDefined(); // the database holds the SHA-256 of the id …
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(value.slice(3)); // … never the id itself
    // The old stateless format, rebuilt from the token hash (what a database reader has), is refused.
    const hash = Buffer.from(createHash('sha256').update(reviewerToken).digest('hex'), 'hex').toString('base64url');
    const forged = `v1.${hash}.bm9uY2U.${(Date.now() + 3600_000).toString(36)}.c2ln`;
    expect((await app.request('/v1/me', { headers: { cookie: `countersign_session=${forged}` } })).status).toBe(401);
    expect((await app.request('/v1/me', { headers: { cookie: `countersign_session=v2.${hash}` } })).status).toBe(401);
  });

  it('over TLS only the __Host- cookie is read: a tossed plain cookie is ignored (issue 13, point 18)', async () => {
    const trusting = createApp({ engine: t.engine, log: () => {}, session: { trustProxy: true }, dashboardDir: dist });
    const plain = await signIn(reviewerToken); // a valid session, as a plain cookie (what a sibling subdomain could set)
    const tossed = await trusting.request('/v1/me', { headers: { cookie: plain.cookie, 'x-forwarded-proto': 'https' } });
    expect(tossed.status).toBe(401); // no __Host- cookie: unauthenticated, the plain one is not read
    const tls = await signIn(adminToken, trusting, { 'x-forwarded-proto': 'https', origin: 'https://localhost' });
    // Both present: the __Host- one decides, whatever the plain one says.
    // The plain cookie is the reviewer's, the __Host- one the admin's; in either order the answer is the admin (review finding 9).
    expect(tls.cookie).toMatch(/^__Host-countersign_session=/);
    for (const cookie of [`${plain.cookie}; ${tls.cookie}`, `${tls.cookie}; ${plain.cookie}`]) {
      const both = await trusting.request('/v1/me', { headers: { cookie, 'x-forwarded-proto': 'https' } });
      expect(both.status).toBe(200);
      const me = (await both.json()) as { name: string; roles: string[] };
      expect(me.name).not.toBe('dash-reviewer');
      expect(me.roles).toContain('admin');
    }
    // And the plain cookie alone still works over plain HTTP, so the 401 above is the TLS rule, not a dead session.
    expect((await trusting.request('/v1/me', { headers: { cookie: plain.cookie } })).status).toBe(200);
  });

  it('signing out ends the session even for a copy of the cookie', async () => {
    const { cookie, body } = await signIn(reviewerToken);
    const out = await app.request('/v1/session', { method: 'DELETE', headers: { cookie, [CSRF_HEADER]: body.csrfToken, origin: ORIGIN } });
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toMatch(/countersign_session=;.*Max-Age=0/);
    expect((await app.request('/v1/me', { headers: { cookie } })).status).toBe(401);
  });
});

describe('signing out with several servers on one database', () => {
  it('a session signed out on one server is refused by another sharing the database and the session secret', async () => {
    const shared = postgresDatabase();
    const first = await openTestEngine(shared.url);
    const second = await Engine.open({ connection: await connect(shared.url), serverSecret: TEST_SERVER_SECRET });
    try {
      const session = { secret: 'a-session-secret-shared-by-both-servers-0123456789' };
      const a = createApp({ engine: first.engine, log: () => {}, session, dashboardDir: dist });
      const b = createApp({ engine: second, log: () => {}, session, dashboardDir: dist });
      const token = (await first.engine.createOperator(first.admin, { name: 'roaming', roles: ['reviewer'] })).token;
      const { cookie, body } = await signIn(token, a);
      expect((await b.request('/v1/me', { headers: { cookie } })).status).toBe(200); // one sign-in serves both
      const out = await a.request('/v1/session', { method: 'DELETE', headers: { cookie, [CSRF_HEADER]: body.csrfToken, origin: ORIGIN } });
      expect(out.status).toBe(200);
      const refused = await b.request('/v1/me', { headers: { cookie } });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { error: { message: string } }).error.message).toContain('sign in again');
      // Another session of the same operator is untouched.
      const again = await signIn(token, b);
      expect((await a.request('/v1/me', { headers: { cookie: again.cookie } })).status).toBe(200);
    } finally {
      await second.close();
      await first.engine.close();
      await shared.drop();
    }
  });
});

describe('CSRF on state-changing calls made with the cookie', () => {
  it('refuses a review without the token, with a wrong one, or from another origin; changes nothing', async () => {
    const id = await createQueued();
    const { cookie, body } = await signIn(reviewerToken);
    const missing = await review(id, { cookie, origin: ORIGIN });
    expect(missing.status).toBe(403);
    expect(await code(missing)).toBe('FORBIDDEN');
    const wrong = await review(id, { cookie, origin: ORIGIN, [CSRF_HEADER]: 'A'.repeat(43) });
    expect(wrong.status).toBe(403);
    const otherSession = await signIn(adminToken);
    const swapped = await review(id, { cookie, origin: ORIGIN, [CSRF_HEADER]: otherSession.body.csrfToken });
    expect(swapped.status).toBe(403);
    const crossOrigin = await review(id, { cookie, origin: 'https://evil.example', [CSRF_HEADER]: body.csrfToken });
    expect(crossOrigin.status).toBe(403);
    const crossSite = await review(id, { cookie, 'sec-fetch-site': 'cross-site', [CSRF_HEADER]: body.csrfToken });
    expect(crossSite.status).toBe(403);
    expect((await t.engine.getRequest(t.admin, id)).status).toBe('pending');

    const ok = await review(id, { cookie, origin: ORIGIN, 'sec-fetch-site': 'same-origin', [CSRF_HEADER]: body.csrfToken });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { status: string }).status).toBe('approved');
  });

  it('leaves Bearer callers as they were: no CSRF token, and the header wins over a cookie', async () => {
    const id = await createQueued();
    const { cookie } = await signIn(adminToken);
    const res = await review(id, { authorization: `Bearer ${reviewerToken}`, cookie });
    expect(res.status).toBe(200);
    const decided = (await res.json()) as { decision: { deciders: Array<{ name: string }> } };
    expect(decided.decision.deciders.map((d) => d.name)).toEqual(['dash-reviewer']);
    expect((await app.request('/v1/me', { headers: { authorization: 'Bearer nope-nope-nope', cookie } })).status).toBe(401);
  });
});

describe('the dashboard files', () => {
  it('serves index.html and assets with a strict CSP and no inline script allowance', async () => {
    const index = await app.request('/');
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toContain('text/html');
    const csp = index.headers.get('content-security-policy') ?? '';
    expect(csp).toBe(CONTENT_SECURITY_POLICY);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const asset = await app.request('/assets/app.js');
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toContain('text/javascript');
    expect(asset.headers.get('cache-control')).toContain('immutable');
    expect(asset.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
  });

  it('serves nothing outside the dist directory, no dotfiles, no unknown types', async () => {
    for (const path of ['/assets/../../package.json', '/assets/%2e%2e/%2e%2e/package.json', '/assets/%2e%2e%2findex.html', '/assets/..%5c..%5cx.js', '/assets/nope.js']) {
      expect((await app.request(path)).status, path).toBe(404);
    }
    expect(resolveAsset(dist, '/.secret.js')).toBeNull();
    expect(resolveAsset(dist, '/assets/%00.js')).toBeNull();
    expect(resolveAsset(dist, '/assets/app.js')).toBe(join(dist, 'assets', 'app.js'));
  });

  it('says how to build the dashboard when it is missing (503, still under the CSP)', async () => {
    const bare = createApp({ engine: t.engine, log: () => {}, dashboardDir: join(dist, 'missing') });
    const res = await bare.request('/');
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('npm run build -w @countersign/dashboard');
    expect(res.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
  });
});

interface SseEvent {
  event: string;
  data: string;
}

/** Reads server-sent events from a streaming response body, one at a time. */
function sseReader(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  return {
    async next(timeoutMs = 5000): Promise<SseEvent> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(':')) continue; // keep-alive comment
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
          return { event, data };
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('no event in time');
        const chunk = await Promise.race([reader.read(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no event in time')), left))]);
        if (chunk.done) throw new Error('stream ended');
        buffer += chunk.value;
      }
    },
    cancel: () => reader.cancel(),
  };
}

describe('GET /v1/events: the live queue', () => {
  it('a stream opened with a session cookie ends soon after that session signs out', async () => {
    const { cookie, body } = await signIn(reviewerToken);
    const res = await app.request('/v1/events', { headers: { cookie } });
    expect(res.status).toBe(200);
    const events = sseReader(res);
    expect((await events.next()).event).toBe('ready');
    const out = await app.request('/v1/session', { method: 'DELETE', headers: { cookie, [CSRF_HEADER]: body.csrfToken, origin: ORIGIN } });
    expect(out.status).toBe(200);
    await createQueued(); // must not reach the signed-out stream: it ends instead
    const outcome = await events.next(5_000).then(
      (e) => `event ${e.event}`,
      (err: Error) => err.message,
    );
    expect(outcome).toBe('stream ended');
  });

  it('says ready, then streams each created and changed request', async () => {
    const controller = new AbortController();
    const res = await app.request('/v1/events', { headers: { authorization: `Bearer ${reviewerToken}` }, signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events = sseReader(res);
    expect((await events.next()).event).toBe('ready');
    const id = await createQueued();
    const created = await events.next();
    expect(created.event).toBe('request');
    expect(JSON.parse(created.data)).toMatchObject({ id, status: 'pending', action: 'isolate_host' });
    await review(id, { authorization: `Bearer ${adminToken}` });
    const changed = JSON.parse((await events.next()).data) as { id: string; status: string };
    expect(changed).toMatchObject({ id, status: 'approved' });
    await events.cancel();
    controller.abort();
  });

  it('works with the session cookie; agents are refused', async () => {
    const { cookie } = await signIn(reviewerToken);
    const controller = new AbortController();
    const res = await app.request('/v1/events', { headers: { cookie }, signal: controller.signal });
    expect(res.status).toBe(200);
    const events = sseReader(res);
    expect((await events.next()).event).toBe('ready');
    await events.cancel();
    controller.abort();
    const agent = await app.request('/v1/events', { headers: { authorization: `Bearer ${agentKey}` } });
    expect(agent.status).toBe(403);
  });
});

describe('supervised feed and feedback', () => {
  it('lists by automation level and records "should have asked" once per operator and verdict', async () => {
    const supervised = { action: 'block_ip', args: { ip: '198.51.100.23' }, confidence: 0.85, context: { threatScore: 0.9 } };
    const created = await app.request('/v1/requests', {
      method: 'POST',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(supervised),
    });
    const request = (await created.json()) as { id: string; status: string; assessment: { automationLevel: string } };
    expect(request.assessment.automationLevel).toBe('supervised');
    expect(request.status).toBe('approved');

    const list = await app.request('/v1/requests?automationLevel=supervised', { headers: { authorization: `Bearer ${reviewerToken}` } });
    const items = ((await list.json()) as { items: Array<{ id: string; assessment: { automationLevel: string } }> }).items;
    expect(items.map((i) => i.id)).toContain(request.id);
    expect(items.every((i) => i.assessment.automationLevel === 'supervised')).toBe(true);

    const { cookie, body } = await signIn(reviewerToken);
    const send = (verdict: string, headers: Record<string, string> = { cookie, origin: ORIGIN, [CSRF_HEADER]: body.csrfToken }) =>
      app.request(`/v1/requests/${request.id}/feedback`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ verdict, note: 'deleting prod firewall rules should ask' }),
      });
    const first = await send('should_have_asked');
    expect(first.status).toBe(201);
    const entry = (await first.json()) as { seq: number; type: string; actor: { name: string }; data: { verdict: string } };
    expect(entry).toMatchObject({ type: 'feedback', actor: { name: 'dash-reviewer' }, data: { verdict: 'should_have_asked' } });
    const again = (await (await send('should_have_asked')).json()) as { seq: number };
    expect(again.seq).toBe(entry.seq);
    expect((await send('should_have_asked', { cookie, origin: ORIGIN })).status).toBe(403); // no CSRF token
    expect((await send('maybe')).status).toBe(400);
    const trail = await t.engine.auditForRequest(t.admin, request.id);
    expect(trail.filter((e) => e.type === 'feedback')).toHaveLength(1);

    const pending = await createQueued();
    const notAuto = await app.request(`/v1/requests/${pending}/feedback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${reviewerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ verdict: 'should_have_asked' }),
    });
    expect(notAuto.status).toBe(409);
    const byAgent = await app.request(`/v1/requests/${request.id}/feedback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ verdict: 'ok' }),
    });
    expect(byAgent.status).toBe(403);
  });
});

describe('metrics summary', () => {
  const HOUR = 3_600_000;
  const DAY = 24 * HOUR;
  const t0 = Date.UTC(2025, 0, 6);
  const fact = (over: Partial<MetricFactRow> & { due?: number; by?: string; outcome?: string }): MetricFactRow => {
    const { due, by, outcome, ...rest } = over;
    return {
      id: `req_${Math.random()}`,
      status: 'pending',
      risk_level: 'high',
      automation_level: 'advisory',
      route: 'review',
      decision: by ? JSON.stringify({ decidedBy: by, outcome }) : null,
      created_at: t0,
      decided_at: null,
      assessment: due === undefined ? null : JSON.stringify({ slaDueAt: new Date(due).toISOString() }),
      ...rest,
    };
  };

  it('quantiles interpolate linearly', () => {
    expect(quantile([], 0.5)).toBeNull();
    expect(quantile([7], 0.9)).toBe(7);
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 0.9)).toBeCloseTo(91);
  });

  it('computes rates, decision times, SLA compliance per bucket and per operator', () => {
    const facts = [
      fact({ route: 'auto_approve', automation_level: 'full', status: 'approved', decision: JSON.stringify({ decidedBy: 'policy', outcome: 'approved' }), decided_at: t0 }),
      fact({ route: 'auto_approve', automation_level: 'supervised', status: 'approved', decision: JSON.stringify({ decidedBy: 'policy', outcome: 'approved' }), decided_at: t0 }),
      fact({ route: 'block', status: 'rejected', decision: JSON.stringify({ decidedBy: 'policy', outcome: 'rejected' }), decided_at: t0 }),
      // reviewed in time (60 s), reviewed late (1200 s), expired, still pending past due, cancelled
      fact({ id: 'req_a', status: 'approved', by: 'reviewers', outcome: 'approved', decided_at: t0 + 60_000, due: t0 + 900_000 }),
      fact({ id: 'req_b', status: 'rejected', by: 'reviewers', outcome: 'rejected', decided_at: t0 + 1_200_000, due: t0 + 900_000 }),
      fact({ id: 'req_c', status: 'expired', by: 'timeout', outcome: 'expired', decided_at: t0 + 2 * HOUR, due: t0 + 900_000 }),
      fact({ id: 'req_d', due: t0 + 900_000 }),
      fact({ id: 'req_e', status: 'cancelled', by: 'agent', outcome: 'cancelled', decided_at: t0 + HOUR, due: t0 + 900_000 }),
      // next day: one quick approval
      fact({ id: 'req_f', created_at: t0 + DAY, status: 'approved', by: 'reviewers', outcome: 'approved', decided_at: t0 + DAY + 30_000, due: t0 + DAY + 900_000 }),
    ];
    const s = summarize({
      facts,
      reviews: [
        { operator_id: 'op_1', operator_name: 'alice', verdict: 'approve', created_at: t0 + 60_000, request_created_at: t0 },
        { operator_id: 'op_2', operator_name: 'bob', verdict: 'reject', created_at: t0 + 1_200_000, request_created_at: t0 },
        { operator_id: 'op_1', operator_name: 'alice', verdict: 'approve', created_at: t0 + DAY + 30_000, request_created_at: t0 + DAY },
      ],
      escalated: new Set(['req_b', 'req_c']),
      from: t0,
      to: t0 + 2 * DAY,
      bucket: 'day',
      now: t0 + 3 * DAY,
    });
    expect(s.series).toHaveLength(2);
    expect(s.totals).toMatchObject({ requests: 9, automated: 2, humanRouted: 6, blocked: 1, escalated: 2, humanDecided: 3, humanApproved: 2 });
    expect(s.totals.automationRate).toBeCloseTo(2 / 9);
    expect(s.totals.humanReviewRate).toBeCloseTo(6 / 9);
    expect(s.totals.escalationRate).toBeCloseTo(2 / 6);
    expect(s.totals.approvalRate).toBeCloseTo(2 / 3);
    expect(s.totals.medianDecisionSeconds).toBe(60);
    expect(s.totals.p90DecisionSeconds).toBe(972); // 30, 60, 1200 → 60 + 0.8 × 1140
    expect(s.totals).toMatchObject({ slaMet: 2, slaMissed: 3 });
    expect(s.totals.slaCompliance).toBeCloseTo(2 / 5);
    expect(s.series[0]).toMatchObject({ start: new Date(t0).toISOString(), requests: 8, slaMet: 1, slaMissed: 3 });
    expect(s.series[1]).toMatchObject({ requests: 1, medianDecisionSeconds: 30, slaCompliance: 1 });
    expect(s.operators).toEqual([
      { id: 'op_1', name: 'alice', reviews: 2, approvals: 2, rejections: 0, medianResponseSeconds: 45 },
      { id: 'op_2', name: 'bob', reviews: 1, approvals: 0, rejections: 1, medianResponseSeconds: 1200 },
    ]);
  });

  it('GET /v1/metrics/summary reads the store: operators only, ranges checked', async () => {
    const res = await app.request('/v1/metrics/summary?bucket=hour&from=' + new Date(Date.now() - 6 * 3_600_000).toISOString(), {
      headers: { authorization: `Bearer ${reviewerToken}` },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { series: unknown[]; totals: { requests: number; humanDecided: number }; operators: Array<{ name: string }> };
    expect(body.series.length).toBeGreaterThanOrEqual(6);
    expect(body.totals.requests).toBeGreaterThan(3);
    expect(body.totals.humanDecided).toBeGreaterThanOrEqual(2);
    expect(body.operators.map((o) => o.name)).toContain('dash-reviewer');
    // A reviewer sees only their own row (issue 13, point 7: the summary leaked what /v1/metrics/operators/:id refuses).
    expect(body.operators.map((o) => o.name)).toEqual(['dash-reviewer']);
    const asAdmin = (await (await app.request('/v1/metrics/summary?bucket=hour&from=' + new Date(Date.now() - 6 * 3_600_000).toISOString(), { headers: { authorization: `Bearer ${adminToken}` } })).json()) as { operators: Array<{ name: string }> };
    expect(asAdmin.operators.length).toBeGreaterThan(1);
    expect(asAdmin.operators.map((o) => o.name)).toContain('dash-reviewer');
    expect((await app.request('/v1/metrics/summary', { headers: { authorization: `Bearer ${agentKey}` } })).status).toBe(403);
    const backwards = await app.request('/v1/metrics/summary?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z', { headers: { authorization: `Bearer ${reviewerToken}` } });
    expect(backwards.status).toBe(400);
    const tooMany = await app.request('/v1/metrics/summary?bucket=hour&from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z', { headers: { authorization: `Bearer ${reviewerToken}` } });
    expect(tooMany.status).toBe(400);
  });
});

it('documents the new routes in /openapi.json', async () => {
  const doc = (await (await app.request('/openapi.json')).json()) as { paths: Record<string, unknown> };
  for (const path of ['/v1/session', '/v1/events', '/v1/requests/{id}/feedback', '/v1/metrics/summary']) expect(doc.paths).toHaveProperty([path]);
  void AUTO;
});

describe('on PostgreSQL: two servers, one database', () => {
  it('a change made through one server reaches the live stream of the other (NOTIFY), and the summary query runs', async () => {
    const { postgresDatabase } = await import('./support/databases.ts');
    const pg = postgresDatabase();
    const a = await openTestEngine(pg.url);
    const { Engine } = await import('../src/engine/engine.ts');
    const { connect } = await import('../src/store/connect.ts');
    const b = await Engine.open({ connection: await connect(pg.url), serverSecret: TEST_SERVER_SECRET });
    try {
      await b.activatePolicy((await import('@countersign/core')).DEFAULT_POLICY_YAML, 'test');
      const appB = createApp({ engine: b, log: () => {}, heartbeatSeconds: 1, dashboardDir: dist });
      const token = (await a.engine.createOperator(a.admin, { name: 'pg-viewer', roles: ['reviewer'] })).token;
      const controller = new AbortController();
      const res = await appB.request('/v1/events', { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
      const events = sseReader(res);
      expect((await events.next()).event).toBe('ready');
      const { request } = await a.engine.createRequest(a.agent, { ...QUEUED, args: { host: 'pg-1' } });
      expect(JSON.parse((await events.next(10_000)).data)).toMatchObject({ id: request.id, status: 'pending' });
      await a.engine.review(a.admin, request.id, { verdict: 'reject', reason: 'no' });
      expect(JSON.parse((await events.next(10_000)).data)).toMatchObject({ id: request.id, status: 'rejected' });
      await events.cancel();
      controller.abort();

      const summary = await appB.request('/v1/metrics/summary?bucket=hour&from=' + new Date(Date.now() - 3_600_000).toISOString(), { headers: { authorization: `Bearer ${token}` } });
      expect(summary.status).toBe(200);
      const body = (await summary.json()) as { totals: { requests: number; humanDecided: number; humanApproved: number }; operators: Array<{ name: string; rejections: number }> };
      expect(body.totals).toMatchObject({ requests: 1, humanDecided: 1, humanApproved: 0 });
      // pg-viewer is a reviewer: the admin's row is not theirs to see (issue 13, point 7); an auditor sees it.
      expect(body.operators).toEqual([]);
      const auditor = (await a.engine.createOperator(a.admin, { name: 'pg-auditor', roles: ['auditor'] })).token;
      const audited = (await (await appB.request('/v1/metrics/summary?bucket=hour&from=' + new Date(Date.now() - 3_600_000).toISOString(), { headers: { authorization: `Bearer ${auditor}` } })).json()) as typeof body;
      expect(audited.operators).toMatchObject([{ name: 'admin', rejections: 1 }]);
      const metrics = await appB.request('/metrics');
      expect(await metrics.text()).toMatch(/countersign_requests_pending\{risk_level="high"\} 0/);
    } finally {
      await b.close();
      await a.engine.close();
      await pg.drop();
    }
  });
});

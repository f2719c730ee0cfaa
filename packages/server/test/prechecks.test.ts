/**
 * Governance pre-checks (issue 18) through the engine on both databases, against real HTTP
 * stand-ins started here: an HTTP validator (allow, deny, raise, slow, 500, garbage, duplicate
 * keys, redirect, huge body) and a stand-in OPA server written from OPA's documented REST API
 * (`POST /v1/data/{path}` with `{input}` → `{result}`; an undefined document answers `{}`).
 * No real OPA is used: none installs here (no Debian package `opa`; npm's @open-policy-agent/opa
 * and @styra/opa are clients of an OPA server, opa-wasm needs a policy compiled by the opa binary).
 *
 * What it shows: a blocked request never runs; a raised risk routes to humans; each failure
 * fails closed by onError; the `prechecked` entry; a vote re-calls validators on a changed payload
 * and on a validator changed under the same name (F1), and never for someone who may not vote,
 * for bad args, or past the reviewer's budget (F2).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CountersignError, CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { PrecheckCaller } from '../src/precheck/caller.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, TEST_SERVER_SECRET } from './support/engine.ts';

interface Seen {
  path: string;
  body: unknown;
  headers: http.IncomingHttpHeaders;
}

/** The validator stand-in: one route per behaviour, every request recorded. */
async function standIn(): Promise<{ url: string; seen: Seen[]; count(path: string): number; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      let body: unknown = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = 'unparsed';
      }
      seen.push({ path, body, headers: req.headers });
      const send = (status: number, text: string, type = 'application/json') => {
        res.writeHead(status, { 'content-type': type });
        res.end(text);
      };
      if (path === '/allow') return send(200, JSON.stringify({ allow: true, reasons: ['within policy'] }));
      if (path === '/deny') return send(200, JSON.stringify({ allow: false, reasons: ['not on the change calendar <script>alert(1)</script>\u202e', 'x'.repeat(2000)] }));
      if (path === '/raise') return send(200, JSON.stringify({ allow: true, reasons: ['unusual hour'], risk: 'high' }));
      if (path === '/slow') {
        const t = setTimeout(() => send(200, JSON.stringify({ allow: true, reasons: [] })), 3000);
        res.on('close', () => clearTimeout(t));
        return;
      }
      if (path === '/500') return send(500, JSON.stringify({ allow: true, reasons: [] }));
      if (path === '/garbage') return send(200, '<html>hello</html>', 'text/html');
      if (path === '/dup') return send(200, '{"allow":false,"reasons":[],"allow":true}');
      if (path === '/redirect') {
        res.writeHead(302, { location: '/allow' });
        return res.end();
      }
      if (path === '/huge') {
        // A valid JSON answer, 1 MiB long, streamed: the caller stops at 64 KiB.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"allow":true,"reasons":["');
        const piece = 'y'.repeat(16 * 1024);
        let n = 0;
        const more = () => {
          while (n < 64) {
            n++;
            if (!res.write(piece)) return res.once('drain', more);
          }
          res.end('"]}');
        };
        more();
        return;
      }
      // OPA's REST API: POST /v1/data/{path} with {input}; {result} when the document is defined, {} when not.
      if (path === '/opa/v1/data/countersign/precheck') {
        const input = (body as { input?: { args?: { minutes?: number } } }).input;
        if (!input) return send(400, JSON.stringify({ code: 'invalid_parameter', message: 'missing input' }));
        const minutes = input.args?.minutes ?? 0;
        return send(200, JSON.stringify({ result: minutes > 60 ? { allow: false, reasons: [`isolation of ${minutes} minutes needs a change ticket`] } : { allow: true, reasons: [] } }));
      }
      if (path === '/opa/v1/data/countersign/missing') return send(200, '{}');
      send(404, JSON.stringify({ code: 'resource_not_found' }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    seen,
    count: (path) => seen.filter((s) => s.path === path).length,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const policy = (prechecks: string) => `
actions:
  isolate_host: { args: { minutes: { type: integer, minimum: 1, maximum: 1440 } } }
prechecks:${prechecks === '' ? ' []' : `\n${prechecks}`}`;

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof CountersignError ? err.code : String(err);
  }
}

describe.each(ENGINES)('governance pre-checks ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let v: Awaited<ReturnType<typeof standIn>>;
  let admin: Principal;
  let agent: Principal;
  let agentKey: string;
  let alice: Principal;
  let bob: Principal;
  let auditor: Principal;
  const set = (prechecks: string) => engine.activatePolicy(policy(prechecks), 'test');
  const create = (input: unknown) => engine.createRequest(agent, CreateRequestBody.parse(input));
  const prechecked = async (id: string) => (await engine.auditForRequest(admin, id)).filter((e) => e.type === 'prechecked').map((e) => e.data as Record<string, any>);

  beforeAll(async () => {
    v = await standIn();
    database = make();
    engine = await Engine.open({
      connection: await connect(database.url),
      serverSecret: TEST_SERVER_SECRET,
      prechecks: new PrecheckCaller({ env: { GUARDIAN_HEADERS: '{"Authorization":"Bearer validator-token"}' }, perReviewerPerMinute: 6 }),
    });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
    agentKey = boot.agentKey;
    const op = async (name: string, roles: Array<'reviewer' | 'auditor'>) => (await engine.authenticate((await engine.createOperator(admin, { name, roles, groups: [] })).token))!;
    alice = await op('alice', ['reviewer']);
    bob = await op('bob', ['reviewer']);
    auditor = await op('audra', ['auditor']);
  });
  afterEach(() => {
    v.seen.length = 0;
  });
  afterAll(async () => {
    await engine?.close();
    await v?.close();
    await database?.drop();
  });

  it('an allowing validator: the request routes as before, the body is the documented one (no secrets), headers from headersEnv, the prechecked entry', async () => {
    await set(`  - { name: guardian, kind: http, url: "${v.url}/allow", headersEnv: GUARDIAN_HEADERS }`);
    const { request } = await create({ ...AUTO, context: { ...AUTO.context, incidentId: 'INC-7' } });
    expect(request.status).toBe('approved');
    expect(v.count('/allow')).toBe(1);
    const sent = v.seen[0]!;
    expect(sent.headers.authorization).toBe('Bearer validator-token');
    expect(sent.headers['content-type']).toBe('application/json');
    expect(sent.body).toEqual({
      version: 1,
      validator: 'guardian',
      stage: 'create',
      requestId: request.id,
      action: 'block_ip',
      args: AUTO.args,
      alternative: null,
      agent: { id: request.agentId, name: expect.any(String) },
      risk: { level: request.assessment.riskLevel, score: request.assessment.riskScore },
      context: { incidentId: 'INC-7' },
    });
    expect(JSON.stringify(sent.body)).not.toContain(agentKey);
    const [entry] = await prechecked(request.id);
    expect(entry).toMatchObject({ stage: 'create', effect: 'allow', raiseTo: null, validators: [{ name: 'guardian', status: 'allow', outcome: 'allow', reasons: ['within policy'], identity: expect.stringMatching(/^[0-9a-f]{64}$/) }] });
    const types = (await engine.auditForRequest(admin, request.id)).map((e) => e.type);
    expect(types).toEqual(['created', 'prechecked', 'approved']);
  });

  it('a denying validator blocks the request: rejected by policy, never runs, its reasons bounded untrusted text', async () => {
    await set(`  - { name: guardian, kind: http, url: "${v.url}/deny" }`);
    const { request } = await create(AUTO);
    expect(request.status).toBe('rejected');
    expect(request.assessment.route).toBe('block');
    expect(request.decision).toMatchObject({ outcome: 'rejected', decidedBy: 'policy' });
    const rule = request.assessment.matchedRules.find((m) => m.name === 'precheck:guardian');
    expect(rule?.effects).toContain('block');
    expect(rule?.reason).toContain('not on the change calendar');
    expect(rule?.reason).not.toContain('\u202e');
    expect(rule!.reason.length).toBeLessThanOrEqual(1000);
    const [entry] = await prechecked(request.id);
    expect(entry).toMatchObject({ effect: 'block', validators: [{ status: 'deny', outcome: 'deny' }] });
    expect(entry!.validators[0].reasons[1].length).toBeLessThanOrEqual(301);
    // It can never be approved: the gate refuses any vote on a decided request.
    expect(await code(engine.review(alice, request.id, { verdict: 'approve' }))).toBe('ALREADY_DECIDED');
  });

  it('a validator that raises the risk sends an auto-approvable request to humans', async () => {
    await set(`  - { name: guardian, kind: http, url: "${v.url}/raise" }`);
    const { request } = await create(AUTO);
    expect(request.status).toBe('pending');
    expect(request.assessment).toMatchObject({ riskLevel: 'high', route: 'review', requiresApproval: true });
    expect((await prechecked(request.id))[0]).toMatchObject({ effect: 'raise', raiseTo: 'high' });
  });

  it.each([
    ['slow', 'within 300 ms'],
    ['500', 'HTTP 500'],
    ['garbage', 'not JSON'],
    ['dup', 'duplicate key "allow"'],
    ['redirect', 'HTTP 302'],
    ['huge', 'larger than 65536'],
  ])('fails closed on %s (onError deny by default; allow and raise as configured)', async (kind, error) => {
    await set(`  - { name: g, kind: http, url: "${v.url}/${kind}", timeoutMs: 300 }`);
    const started = Date.now();
    const denied = await create(AUTO);
    expect(Date.now() - started).toBeLessThan(2500); // the timeout covers the whole exchange
    expect(denied.request.status).toBe('rejected');
    const [entry] = await prechecked(denied.request.id);
    expect(entry).toMatchObject({ effect: 'block', validators: [{ status: 'error', outcome: 'deny' }] });
    expect(entry!.validators[0].error).toContain(error);
    if (kind === 'redirect') expect(v.count('/allow')).toBe(0); // never followed

    await set(`  - { name: g, kind: http, url: "${v.url}/${kind}", timeoutMs: 300, onError: raise, raiseTo: high }`);
    const raised = await create(AUTO);
    expect(raised.request).toMatchObject({ status: 'pending', assessment: { riskLevel: 'high', route: 'review' } });

    await set(`  - { name: g, kind: http, url: "${v.url}/${kind}", timeoutMs: 300, onError: allow }`);
    expect((await create(AUTO)).request.status).toBe('approved');
  });

  it('an unreachable validator fails closed', async () => {
    await set('  - { name: g, kind: http, url: "http://127.0.0.1:9/none", timeoutMs: 500 }');
    const { request } = await create(AUTO);
    expect(request.status).toBe('rejected');
    expect((await prechecked(request.id))[0]!.validators[0].error).toMatch(/could not reach|within/);
  });

  it('OPA: POST {url}/v1/data/{path} with {input}; result.allow decides; an undefined document denies', async () => {
    await set(`  - { name: opa, kind: opa, url: "${v.url}/opa", path: countersign/precheck, when: { actions: [isolate_host] } }`);
    const ok = await create({ ...QUEUED, args: { host: 'ws-1', minutes: 30 } });
    expect(ok.request.status).toBe('pending');
    expect(v.seen[0]).toMatchObject({ path: '/opa/v1/data/countersign/precheck', body: { input: { action: 'isolate_host', args: { host: 'ws-1', minutes: 30 }, stage: 'create' } } });
    const long = await create({ ...QUEUED, args: { host: 'ws-2', minutes: 600 } });
    expect(long.request.status).toBe('rejected');
    expect(long.request.assessment.matchedRules.find((m) => m.name === 'precheck:opa')?.reason).toContain('needs a change ticket');
    // Not for other actions (when.actions).
    expect((await create(AUTO)).request.status).toBe('approved');
    expect(v.seen).toHaveLength(2);

    await set(`  - { name: opa, kind: opa, url: "${v.url}/opa", path: countersign/missing }`);
    const undef = await create(AUTO);
    expect(undef.request.status).toBe('rejected');
    expect((await prechecked(undef.request.id))[0]!.validators[0]).toMatchObject({ status: 'deny', reasons: [expect.stringMatching(/undefined/)] });
  });

  it('a vote on the payload as judged reuses the result; a modified payload is judged again, on exactly what would run', async () => {
    await set(`  - { name: opa, kind: opa, url: "${v.url}/opa", path: countersign/precheck }`);
    const a = await create({ ...QUEUED, args: { host: 'ws-3', minutes: 30 } });
    expect(v.seen).toHaveLength(1);
    // Modified to 600 minutes: OPA is asked about 600, denies, the approval is refused and nothing changes.
    expect(await code(engine.review(alice, a.request.id, { verdict: 'approve', args: { host: 'ws-3', minutes: 600 } }))).toBe('BLOCKED_BY_POLICY');
    expect(v.seen).toHaveLength(2);
    expect(v.seen[1]!.body).toMatchObject({ input: { stage: 'vote', args: { host: 'ws-3', minutes: 600 } } });
    expect((await engine.getRequest(admin, a.request.id)).status).toBe('pending');
    const entries = await prechecked(a.request.id);
    expect(entries.map((e) => [e.stage, e.effect])).toEqual([['create', 'allow'], ['vote', 'block']]);
    // Modified to 45: allowed, and the approval is of 45.
    const approved = await engine.review(alice, a.request.id, { verdict: 'approve', args: { host: 'ws-3', minutes: 45 } });
    expect(v.seen).toHaveLength(3);
    expect(approved.decision).toMatchObject({ outcome: 'approved', args: { host: 'ws-3', minutes: 45 }, modified: true });
    // As asked: the create's result is reused (no call).
    const b = await create({ ...QUEUED, args: { host: 'ws-4', minutes: 30 } });
    expect((await engine.review(alice, b.request.id, { verdict: 'approve' })).status).toBe('approved');
    expect(v.seen).toHaveLength(4);
  });

  it('a chosen alternative is judged on its own payload at the vote', async () => {
    await set(`  - { name: opa, kind: opa, url: "${v.url}/opa", path: countersign/precheck }`);
    const { request } = await create({ ...QUEUED, args: { host: 'ws-6', minutes: 30 }, alternatives: [{ name: 'all day', action: 'isolate_host', args: { host: 'ws-6', minutes: 900 } }, { name: 'brief', action: 'isolate_host', args: { host: 'ws-6', minutes: 5 } }] });
    expect(v.seen).toHaveLength(1); // alternatives are judged when chosen
    const carol = (await engine.authenticate((await engine.createOperator(admin, { name: 'carol', roles: ['reviewer'], groups: [] })).token))!; // her own validator budget
    expect(await code(engine.review(carol, request.id, { verdict: 'approve', alternative: 'all day' }))).toBe('BLOCKED_BY_POLICY');
    expect(v.seen[1]!.body).toMatchObject({ input: { stage: 'vote', alternative: 'all day', args: { minutes: 900 } } });
    const decided = await engine.review(carol, request.id, { verdict: 'approve', alternative: 'brief' });
    expect(decided.decision).toMatchObject({ outcome: 'approved', alternative: 'brief', args: { host: 'ws-6', minutes: 5 } });
    expect(v.seen).toHaveLength(3);
  });

  it('F1: a reload that keeps a validator name but changes its url, onError or path never lets a vote reuse the old result', async () => {
    await set(`  - { name: guardian, kind: http, url: "${v.url}/allow" }`);
    const r1 = await create(QUEUED);
    const r2 = await create(QUEUED);
    const r3 = await create(QUEUED);
    expect(r1.request.status).toBe('pending');
    const before = (await prechecked(r1.request.id))[0]!.validators[0].identity;
    // Same name, new URL (now denying): called again at the vote, and it blocks.
    await set(`  - { name: guardian, kind: http, url: "${v.url}/deny" }`);
    expect(await code(engine.review(alice, r1.request.id, { verdict: 'approve' }))).toBe('BLOCKED_BY_POLICY');
    expect(v.count('/deny')).toBe(1);
    const vote = (await prechecked(r1.request.id)).at(-1)!;
    expect(vote.stage).toBe('vote');
    expect(vote.validators[0].identity).not.toBe(before);
    // Same name and URL, onError changed: a new identity, called again (allows now).
    await set(`  - { name: guardian, kind: http, url: "${v.url}/allow", onError: allow }`);
    expect((await engine.review(alice, r2.request.id, { verdict: 'approve' })).status).toBe('approved');
    expect(v.count('/allow')).toBe(4); // three creates, one vote
    // An OPA path change under the same name: called again, at the new path.
    await set(`  - { name: guardian, kind: opa, url: "${v.url}/opa", path: countersign/missing }`);
    expect(await code(engine.review(alice, r3.request.id, { verdict: 'approve' }))).toBe('BLOCKED_BY_POLICY');
    expect(v.count('/opa/v1/data/countersign/missing')).toBe(1);
  });

  it('F1: a validator that appears after create is called at the vote (no result is never an allow)', async () => {
    await set('');
    const { request } = await create(QUEUED);
    expect(await prechecked(request.id)).toEqual([]);
    await set(`  - { name: late, kind: http, url: "${v.url}/deny" }`);
    expect(await code(engine.review(alice, request.id, { verdict: 'approve' }))).toBe('BLOCKED_BY_POLICY');
    expect(v.count('/deny')).toBe(1);
    // A rejection needs no validator.
    expect((await engine.review(alice, request.id, { verdict: 'reject', reason: 'no' })).status).toBe('rejected');
    expect(v.count('/deny')).toBe(1);
  });

  it('F2: nobody who may not vote, and no bad args, make Countersign call a validator; calls count against the reviewer budget', async () => {
    await set(`  - { name: opa, kind: opa, url: "${v.url}/opa", path: countersign/precheck }`);
    const { request } = await create({ ...QUEUED, args: { host: 'ws-5', minutes: 30 } });
    v.seen.length = 0;
    // An auditor may not vote: refused by the cheap checks, no call.
    expect(await code(engine.review(auditor, request.id, { verdict: 'approve', args: { host: 'ws-5', minutes: 31 } }))).toBe('NOT_ELIGIBLE');
    // Args the policy refuses: no call.
    expect(await code(engine.review(alice, request.id, { verdict: 'approve', args: { host: 'ws-5', minutes: 99_999 } }))).toBe('VALIDATION_FAILED');
    // An agent key: no call.
    expect(await code(engine.review(agent, request.id, { verdict: 'approve', args: { host: 'ws-5', minutes: 32 } }))).toBe('FORBIDDEN');
    // Unknown request: no call.
    expect(await code(engine.review(alice, 'req_nope', { verdict: 'approve', args: { host: 'ws-5', minutes: 33 } }))).toBe('NOT_FOUND');
    expect(v.seen).toHaveLength(0);
    // Bob's budget is 6 calls a minute (this engine's caller): six modified approvals that OPA denies, then RATE_LIMITED before any call.
    for (let i = 0; i < 6; i++) expect(await code(engine.review(bob, request.id, { verdict: 'approve', args: { host: 'ws-5', minutes: 100 + i } }))).toBe('BLOCKED_BY_POLICY');
    expect(v.seen).toHaveLength(6);
    expect(await code(engine.review(bob, request.id, { verdict: 'approve', args: { host: 'ws-5', minutes: 200 } }))).toBe('RATE_LIMITED');
    expect(v.seen).toHaveLength(6);
    // Bob may still approve the payload as judged (reused result, no call) and the request is decided.
    expect((await engine.review(bob, request.id, { verdict: 'approve' })).status).toBe('approved');
    expect(v.seen).toHaveLength(6);
  });
});

describe('through a real server (the composition root wires the caller with the server environment)', () => {
  it('serve: headersEnv from the server env, a denied create answers rejected, a denied modification 403 BLOCKED_BY_POLICY, the entry in the audit API', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { resolveServerConfig } = await import('../src/config.ts');
    const { startServer } = await import('../src/serve.ts');
    const v = await standIn();
    const database = ENGINES[0]!.make();
    const dir = mkdtempSync(join(tmpdir(), 'countersign-precheck-'));
    writeFileSync(join(dir, 'countersign.yaml'), policy(`  - { name: opa, kind: opa, url: "${v.url}/opa", path: countersign/precheck, headersEnv: OPA_HEADERS }`));
    const server = await startServer(resolveServerConfig({ database: database.url, port: 0, policy: join(dir, 'countersign.yaml') }, { OPA_HEADERS: '{"Authorization":"Bearer opa-token"}' }), () => {});
    try {
      const tokens: Record<string, string> = { admin: server.bootstrap!.adminToken, agent: server.bootstrap!.agentKey };
      const call = async (who: string, path: string, body?: unknown) => {
        const res = await fetch(`${server.url}${path}`, {
          method: body === undefined ? 'GET' : 'POST',
          headers: { authorization: `Bearer ${tokens[who]}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        return { status: res.status, body: (await res.json()) as Record<string, any> };
      };
      tokens['rita'] = (await call('admin', '/v1/operators', { name: 'rita', roles: ['reviewer'] })).body.token;
      const denied = await call('agent', '/v1/requests', { action: 'isolate_host', args: { host: 'ws-1', minutes: 600 }, confidence: 0.82 });
      expect(denied.body).toMatchObject({ status: 'rejected', assessment: { route: 'block' } });
      expect(v.seen[0]!.headers.authorization).toBe('Bearer opa-token');
      const ok = await call('agent', '/v1/requests', { action: 'isolate_host', args: { host: 'ws-1', minutes: 20 }, confidence: 0.82 });
      expect(ok.body.status).toBe('pending');
      const refused = await call('rita', `/v1/requests/${ok.body.id}/reviews`, { verdict: 'approve', args: { host: 'ws-1', minutes: 120 } });
      expect(refused.status).toBe(403);
      expect(refused.body.error).toMatchObject({ code: 'BLOCKED_BY_POLICY' });
      expect(refused.body.error.message).toContain('precheck:opa');
      const audit = (await call('admin', `/v1/requests/${ok.body.id}/audit`)).body.items as Array<{ type: string; data: Record<string, any> }>;
      expect(audit.filter((e) => e.type === 'prechecked').map((e) => [e.data.stage, e.data.effect])).toEqual([['create', 'allow'], ['vote', 'block']]);
      expect((await call('rita', `/v1/requests/${ok.body.id}/reviews`, { verdict: 'approve' })).body.status).toBe('approved');
    } finally {
      await server.close();
      await v.close();
      await database.drop();
    }
  });
});

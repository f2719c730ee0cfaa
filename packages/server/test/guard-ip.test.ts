/**
 * IP allowlists for approvals: CIDR parsing and matching, and through a real HTTP server on
 * 127.0.0.1 — an operator limited to other networks cannot approve (nothing recorded, refusal
 * audited), can still reject, and can approve once the allowlist covers loopback; behind a
 * trusted proxy the X-Forwarded-For hop counts, otherwise it is ignored. Role allowlists bind
 * everyone holding the role, on top of their own list: every list that applies must pass.
 */
import { serve, type ServerType } from '@hono/node-server';
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { ipAllowed, parseCidr } from '../src/guard/ip.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';

const HIGH = { action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.82, riskLevel: 'high' } as const;

describe('CIDR matching', () => {
  it('parses and matches IPv4, IPv6 and IPv4-mapped addresses; refuses junk', () => {
    expect(parseCidr('10.1.2.3')?.cidr).toBe('10.1.2.3/32');
    expect(parseCidr('2001:db8::/32')?.cidr).toBe('2001:db8::/32');
    for (const bad of ['10.0.0.0/33', '10.0.0/8', 'example.com', '10.0.0.0/8/1', '::/129', '10.0.0.0/x', '']) expect(parseCidr(bad)).toBeNull();
    expect(ipAllowed('10.200.3.4', ['10.0.0.0/8'])).toBe(true);
    expect(ipAllowed('11.0.0.1', ['10.0.0.0/8'])).toBe(false);
    expect(ipAllowed('::ffff:10.0.0.7', ['10.0.0.0/8'])).toBe(true);
    expect(ipAllowed('2001:db8:1::5', ['2001:db8::/32'])).toBe(true);
    expect(ipAllowed('2001:db9::5', ['2001:db8::/32'])).toBe(false);
    expect(ipAllowed('not-an-ip', ['0.0.0.0/0'])).toBe(false);
  });
});

describe('approval allowlists over HTTP', () => {
  let database: TestDatabase;
  let engine: Engine;
  let server: ServerType;
  let url = '';
  let adminToken = '';
  let ritaToken = '';
  let agentKey = '';

  const call = async (base: string | ReturnType<typeof createApp>, token: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const init = {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    };
    const res = typeof base === 'string' ? await fetch(`${base}${path}`, init) : await base.request(path, init);
    return { status: res.status, json: (await res.json()) as any };
  };
  const queued = async () => (await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse(HIGH))).request.id;

  beforeAll(async () => {
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url) });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    adminToken = boot.adminToken;
    agentKey = boot.agentKey;
    ritaToken = (await engine.createOperator((await engine.authenticate(adminToken))!, { name: 'rita', roles: ['reviewer'] })).token;
    server = serve({ fetch: createApp({ engine, log: () => {} }).fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await engine.close();
    await database.drop();
  });

  it('refuses approvals from outside the allowlist, allows rejections, and allows approvals from inside it', async () => {
    expect((await call(url, ritaToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['10.0.0.0/8'] })).json.error.code).toBe('FORBIDDEN');
    expect((await call(url, adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['10.0.0.0/99'] })).json.error.code).toBe('VALIDATION_FAILED');
    const set = await call(url, adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['10.0.0.0/8', '192.0.2.7'] });
    expect(set.json).toMatchObject({ operator: 'rita', cidrs: ['10.0.0.0/8', '192.0.2.7/32'] });
    expect((await call(url, ritaToken, 'GET', '/v1/operators/rita/ip-allowlist')).json.cidrs).toEqual(['10.0.0.0/8', '192.0.2.7/32']);

    const first = await queued();
    const refused = await call(url, ritaToken, 'POST', `/v1/requests/${first}/reviews`, { verdict: 'approve' });
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'IP_NOT_ALLOWED', details: { ip: '127.0.0.1' } });
    expect((await engine.requestById(first))?.reviews).toHaveLength(0);
    const admin = (await engine.authenticate(adminToken))!;
    const audit = await engine.auditForRequest(admin, first);
    expect(audit.filter((e) => e.type === 'review_refused').map((e) => (e.data as { code: string }).code)).toEqual(['IP_NOT_ALLOWED']);
    // Saying no is never held back.
    expect((await call(url, ritaToken, 'POST', `/v1/requests/${first}/reviews`, { verdict: 'reject', reason: 'not from here' })).json.status).toBe('rejected');

    await call(url, adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['127.0.0.0/8'] });
    const second = await queued();
    expect((await call(url, ritaToken, 'POST', `/v1/requests/${second}/reviews`, { verdict: 'approve' })).json.status).toBe('approved');
    expect((await engine.listAudit(admin, { type: 'ip_allowlist_set' })).length).toBe(2);
  });

  it('believes X-Forwarded-For only behind a trusted proxy; an unknown address is refused', async () => {
    await call(url, adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['203.0.113.0/24'] });
    const proxied = createApp({ engine, log: () => {}, session: { trustProxy: true } });
    const direct = createApp({ engine, log: () => {} });
    const a = await queued();
    const spoofed = await call(direct, ritaToken, 'POST', `/v1/requests/${a}/reviews`, { verdict: 'approve' }, { 'x-forwarded-for': '203.0.113.5' });
    expect(spoofed.json.error).toMatchObject({ code: 'IP_NOT_ALLOWED', details: { ip: null } });
    const viaProxy = await call(proxied, ritaToken, 'POST', `/v1/requests/${a}/reviews`, { verdict: 'approve' }, { 'x-forwarded-for': '198.51.100.1, 203.0.113.5' });
    expect(viaProxy.json.status).toBe('approved');
    // Lifting the allowlist: anywhere again.
    expect((await call(url, adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: [] })).json.cidrs).toEqual([]);
    const b = await queued();
    expect((await call(direct, ritaToken, 'POST', `/v1/requests/${b}/reviews`, { verdict: 'approve' })).json.status).toBe('approved');
  });
});

describe('role allowlists over HTTP', () => {
  let database: TestDatabase;
  let engine: Engine;
  let server: ServerType;
  let url = '';
  let adminToken = '';
  let agentKey = '';
  let noraToken = '';
  let leoToken = '';

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const queued = async () => (await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse(HIGH))).request.id;
  const approve = async (token: string) => call(token, 'POST', `/v1/requests/${await queued()}/reviews`, { verdict: 'approve' });
  const setRole = (role: string, cidrs: string[]) => call(adminToken, 'PUT', `/v1/roles/${role}/ip-allowlist`, { cidrs });
  const setOperator = (name: string, cidrs: string[]) => call(adminToken, 'PUT', `/v1/operators/${name}/ip-allowlist`, { cidrs });

  beforeAll(async () => {
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url) });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    adminToken = boot.adminToken;
    agentKey = boot.agentKey;
    const admin = (await engine.authenticate(adminToken))!;
    noraToken = (await engine.createOperator(admin, { name: 'nora', roles: ['reviewer'] })).token;
    leoToken = (await engine.createOperator(admin, { name: 'leo', roles: ['reviewer', 'lead'] })).token;
    server = serve({ fetch: createApp({ engine, log: () => {} }).fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await engine.close();
    await database.drop();
  });

  it("refuses approvals from outside a role's list, naming the role, and takes them from inside it", async () => {
    expect((await setRole('reviewer', ['10.0.0.0/8', '192.0.2.7'])).json).toEqual({ role: 'reviewer', cidrs: ['10.0.0.0/8', '192.0.2.7/32'] });
    expect((await call(noraToken, 'GET', '/v1/roles/reviewer/ip-allowlist')).json.cidrs).toEqual(['10.0.0.0/8', '192.0.2.7/32']);
    const id = await queued();
    const refused = await call(noraToken, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve' });
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'IP_NOT_ALLOWED', details: { ip: '127.0.0.1', refusedBy: [{ role: 'reviewer' }] } });
    expect(refused.json.error.message).toContain('role reviewer (10.0.0.0/8, 192.0.2.7/32)');
    expect((await engine.requestById(id))?.reviews).toHaveLength(0);
    const admin = (await engine.authenticate(adminToken))!;
    expect((await engine.auditForRequest(admin, id)).filter((e) => e.type === 'review_refused').map((e) => (e.data as { code: string }).code)).toEqual(['IP_NOT_ALLOWED']);
    // Saying no is never held back.
    expect((await call(noraToken, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'reject', reason: 'elsewhere' })).json.status).toBe('rejected');
    // The admin holds no reviewer role, so the reviewer list does not bind them.
    expect((await approve(adminToken)).json.status).toBe('approved');

    await setRole('reviewer', ['127.0.0.0/8']);
    expect((await approve(noraToken)).json.status).toBe('approved');
    // An empty list lifts it.
    await setRole('reviewer', ['10.0.0.0/8']);
    expect((await approve(noraToken)).json.error.code).toBe('IP_NOT_ALLOWED');
    expect((await setRole('reviewer', [])).json.cidrs).toEqual([]);
    expect((await approve(noraToken)).json.status).toBe('approved');
  });

  it('needs every list that applies to pass: the operator\'s own and each of their roles\'', async () => {
    // Own list allows loopback, the lead list does not: refused by the role.
    await setOperator('leo', ['127.0.0.0/8']);
    await setRole('reviewer', ['127.0.0.1']);
    await setRole('lead', ['10.0.0.0/8']);
    const byRole = await approve(leoToken);
    expect(byRole.json.error).toMatchObject({ code: 'IP_NOT_ALLOWED', details: { refusedBy: [{ role: 'lead' }] } });
    expect(byRole.json.error.message).toMatch(/refused by the IP allowlist of role lead \(10\.0\.0\.0\/8\)$/);
    // Both roles allow loopback, the own list does not: refused by the operator's list.
    await setRole('lead', ['127.0.0.0/8']);
    await setOperator('leo', ['10.0.0.0/8']);
    const byOwn = await approve(leoToken);
    expect(byOwn.json.error).toMatchObject({ code: 'IP_NOT_ALLOWED', details: { refusedBy: [{ operator: 'leo' }] } });
    expect(byOwn.json.error.message).toContain('operator leo (10.0.0.0/8)');
    // Two lists refusing are both named.
    await setRole('reviewer', ['192.0.2.0/24']);
    expect((await approve(leoToken)).json.error.details.refusedBy).toEqual([{ operator: 'leo' }, { role: 'reviewer' }]);
    // All three allow it: approved.
    await setRole('reviewer', ['127.0.0.0/8']);
    await setOperator('leo', ['127.0.0.1']);
    expect((await approve(leoToken)).json.status).toBe('approved');
    await setOperator('leo', []);
    await setRole('reviewer', []);
    await setRole('lead', []);
  });

  it('refuses an approval with no known address when only a role list applies', async () => {
    await setRole('reviewer', ['0.0.0.0/0', '::/0']);
    const direct = createApp({ engine, log: () => {} }); // in-process: no socket, so no address
    const id = await queued();
    const res = await direct.request(`/v1/requests/${id}/reviews`, {
      method: 'POST',
      headers: { authorization: `Bearer ${noraToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ verdict: 'approve' }),
    });
    const body = (await res.json()) as any;
    expect(body.error).toMatchObject({ code: 'IP_NOT_ALLOWED', details: { ip: null, refusedBy: [{ role: 'reviewer' }] } });
    expect(body.error.message).toContain('from an unknown address');
    expect((await approve(noraToken)).json.status).toBe('approved'); // over the socket, 0.0.0.0/0 lets it in
    await setRole('reviewer', []);
  });
});

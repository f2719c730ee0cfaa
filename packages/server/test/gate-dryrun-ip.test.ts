/**
 * The dry run (`actionable`) includes the IP allowlist (issue 12: the queue never offers what the
 * server will refuse). Through a real HTTP server on 127.0.0.1: a reader outside their allowlist
 * sees `actionable: false` with IP_NOT_ALLOWED on GET /v1/requests/:id and in the listing, and
 * the approval the card would send is refused with the same code; inside it, both say yes. Each
 * assertion on `actionable` fails without the reader's address in the dry run.
 */
import { serve, type ServerType } from '@hono/node-server';
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const HIGH = { action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.82, riskLevel: 'high' } as const;

describe.each(ENGINES)('actionable judges the reader\'s address like the vote does ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let server: ServerType;
  let url = '';
  let adminToken = '';
  let agentKey = '';
  let ritaToken = '';

  const call = async (token: string, method: string, path: string, body?: unknown, base: string | ReturnType<typeof createApp> = url, headers: Record<string, string> = {}) => {
    const init = {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    };
    const res = typeof base === 'string' ? await fetch(`${base}${path}`, init) : await base.request(path, init);
    return { status: res.status, json: (await res.json()) as any };
  };
  const queued = async () => (await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse(HIGH))).request.id;
  /** What the card would send: a plain approval of the payload it showed. */
  const approveAsShown = async (token: string, id: string, base: string | ReturnType<typeof createApp> = url, headers: Record<string, string> = {}) => {
    const read = await call(token, 'GET', `/v1/requests/${id}`, undefined, base, headers);
    return call(token, 'POST', `/v1/requests/${id}/reviews`, { verdict: 'approve', seenPayloadHash: read.json.payload.payloadHash }, base, headers);
  };

  beforeAll(async () => {
    database = make();
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

  it('outside the operator allowlist: not actionable (IP_NOT_ALLOWED) on the card and in the queue, and the vote is refused alike', async () => {
    await call(adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['10.0.0.0/8'] });
    const id = await queued();
    const read = await call(ritaToken, 'GET', `/v1/requests/${id}`);
    expect(read.json.actionable).toBe(false);
    expect(read.json.notActionable.code).toBe('IP_NOT_ALLOWED');
    expect(read.json.notActionable.message).toContain('127.0.0.1');
    const listed = (await call(ritaToken, 'GET', '/v1/requests?status=pending')).json.items.find((r: { id: string }) => r.id === id);
    expect(listed.actionable).toBe(false);
    expect(listed.notActionable.code).toBe('IP_NOT_ALLOWED');
    expect((await approveAsShown(ritaToken, id)).json.error.code).toBe('IP_NOT_ALLOWED');
  });

  it('inside it: actionable, and the approval goes through', async () => {
    await call(adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['127.0.0.0/8'] });
    const id = await queued();
    expect((await call(ritaToken, 'GET', `/v1/requests/${id}`)).json.actionable).toBe(true);
    expect((await call(ritaToken, 'GET', '/v1/requests?status=pending')).json.items.find((r: { id: string }) => r.id === id).actionable).toBe(true);
    expect((await approveAsShown(ritaToken, id)).json.status).toBe('approved');
  });

  it('a role allowlist counts too, and an unknown address (in-process, no socket) is refused in both', async () => {
    await call(adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: [] });
    await call(adminToken, 'PUT', '/v1/roles/reviewer/ip-allowlist', { cidrs: ['192.0.2.0/24'] });
    const id = await queued();
    const read = await call(ritaToken, 'GET', `/v1/requests/${id}`);
    expect(read.json.notActionable).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(read.json.notActionable.message).toContain('role reviewer (192.0.2.0/24)');
    // In-process engine callers pass no address: the dry run refuses as the vote does.
    const rita = (await engine.authenticate(ritaToken))!;
    await call(adminToken, 'PUT', '/v1/roles/reviewer/ip-allowlist', { cidrs: ['127.0.0.0/8'] });
    const mine = await engine.getRequest(rita, id);
    expect(mine.actionable).toBe(false);
    expect(mine.notActionable?.code).toBe('IP_NOT_ALLOWED');
    await expect(engine.review(rita, id, { verdict: 'approve', seenPayloadHash: mine.payload!.payloadHash })).rejects.toMatchObject({ code: 'IP_NOT_ALLOWED' });
    // Over HTTP from loopback: both yes.
    expect((await call(ritaToken, 'GET', `/v1/requests/${id}`)).json.actionable).toBe(true);
    expect((await approveAsShown(ritaToken, id)).json.status).toBe('approved');
    await call(adminToken, 'PUT', '/v1/roles/reviewer/ip-allowlist', { cidrs: [] });
  });

  it('behind a trusted proxy the forwarded hop is the reader\'s address in the dry run too', async () => {
    await call(adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: ['203.0.113.0/24'] });
    const proxied = createApp({ engine, log: () => {}, session: { trustProxy: true } });
    const direct = createApp({ engine, log: () => {} });
    const id = await queued();
    const hop = { 'x-forwarded-for': '198.51.100.1, 203.0.113.5' };
    expect((await call(ritaToken, 'GET', `/v1/requests/${id}`, undefined, proxied, hop)).json.actionable).toBe(true);
    // Without a trusted proxy the header is ignored: the address is unknown, refused in both.
    expect((await call(ritaToken, 'GET', `/v1/requests/${id}`, undefined, direct, hop)).json.notActionable.code).toBe('IP_NOT_ALLOWED');
    expect((await approveAsShown(ritaToken, id, direct, hop)).json.error.code).toBe('IP_NOT_ALLOWED');
    expect((await approveAsShown(ritaToken, id, proxied, hop)).json.status).toBe('approved');
    await call(adminToken, 'PUT', '/v1/operators/rita/ip-allowlist', { cidrs: [] });
  });
});

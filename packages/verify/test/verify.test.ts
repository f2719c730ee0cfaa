/**
 * @countersign/verify against a real `countersign serve` process, and in front of real Hono and
 * Express apps listening on ports. Red team: replay a receipt, swap the payload after approval,
 * a receipt from another request, forged with another key, a wrong pin, expired (locally and as
 * the server judges it), another agent's key, 50 racing executors.
 */
import { createHash, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import express from 'express';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { receiptMessage, type ApprovalRequest, type Receipt, type ReceiptBody } from '@countersign/core';
import { CountersignError, countersignExpress, countersignHono, encodeReceipt, verifyAndClaim, verifyReceipt, type Claim } from '../src/index.ts';
import { api, startServer, type TestServer } from '../../client/test/support/server.ts';

const TRANSFER = (to: string, amount = 120) => ({ action: 'block_ip', args: { ip: to, amount }, confidence: 0.97, context: { threatScore: 0.95 } });

let server: TestServer;
let pem: string;
let keyId: string;
let otherAgentKey: string;

beforeAll(async () => {
  server = await startServer();
  pem = await (await fetch(`${server.url}/v1/audit/public-key`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
  keyId = createHash('sha256').update(createPublicKey(pem).export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
  otherAgentKey = (await api<{ key: string }>(server, '/v1/keys', { body: { agent: 'someone-else' } })).body.key;
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

/** The agent files a request the policy approves at once; returns it and its receipt. */
async function approved(ip: string): Promise<{ request: ApprovalRequest; receipt: Receipt }> {
  const { status, body } = await api<ApprovalRequest>(server, '/v1/requests', { token: server.agentKey, body: TRANSFER(ip) });
  expect(status).toBe(201);
  expect(body.status).toBe('approved');
  return { request: body, receipt: body.decision!.receipt! };
}

const statusOf = async (id: string) => (await api<ApprovalRequest>(server, `/v1/requests/${id}`)).body.status;
const opts = () => ({ serverUrl: server.url, agentKey: server.agentKey, publicKey: pem });

async function refusal(promise: Promise<unknown>): Promise<CountersignError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CountersignError);
  return err as CountersignError;
}

describe('verifyAndClaim', () => {
  it('verifies against the pinned PEM, claims once (executing), and reports (executed)', async () => {
    const { request, receipt } = await approved('203.0.113.1');
    const claim = await verifyAndClaim({ ...opts(), receipt, payload: { action: 'block_ip', args: request.args } });
    expect(claim.requestId).toBe(request.id);
    expect(claim.request.status).toBe('executing');
    expect(await statusOf(request.id)).toBe('executing');
    expect((await claim.report({ status: 'succeeded', result: { ok: true } })).status).toBe('executed');
    expect((await refusal(claim.report({ status: 'failed' }))).code).toBe('ALREADY_EXECUTED');
  });

  it('a key id pin fetches the key and checks its id; a wrong id refuses', async () => {
    const { request, receipt } = await approved('203.0.113.2');
    const claim = await verifyAndClaim({ serverUrl: server.url, agentKey: server.agentKey, keyId, receipt, payload: { action: 'block_ip', args: request.args } });
    expect(claim.request.status).toBe('executing');
    const next = await approved('203.0.113.3');
    const err = await refusal(verifyAndClaim({ serverUrl: server.url, agentKey: server.agentKey, keyId: '0123456789abcdef', receipt: next.receipt, payload: { action: 'block_ip', args: next.request.args } }));
    expect(err.code).toBe('RECEIPT_MISMATCH');
    expect(err.message).toMatch(/not the pinned key 0123456789abcdef/);
    expect(await statusOf(next.request.id)).toBe('approved');
  });

  it('refuses without a pin: an executor never trusts a key because it was served', async () => {
    const { request, receipt } = await approved('203.0.113.4');
    const err = await refusal(verifyAndClaim({ serverUrl: server.url, agentKey: server.agentKey, receipt, payload: { action: 'block_ip', args: request.args } }));
    expect(err.code).toBe('VALIDATION_FAILED');
    expect(await statusOf(request.id)).toBe('approved');
  });

  describe('red team', () => {
    it('replay: the same receipt a second time is ALREADY_EXECUTED (the server)', async () => {
      const { request, receipt } = await approved('203.0.113.10');
      await verifyAndClaim({ ...opts(), receipt, payload: { action: 'block_ip', args: request.args } });
      expect((await refusal(verifyAndClaim({ ...opts(), receipt, payload: { action: 'block_ip', args: request.args } }))).code).toBe('ALREADY_EXECUTED');
    });

    it('payload swapped after approval (other args, another action) is RECEIPT_MISMATCH, and the approval stays unclaimed', async () => {
      const { request, receipt } = await approved('203.0.113.11');
      for (const payload of [
        { action: 'block_ip', args: { ...request.args, amount: 120_000 } },
        { action: 'block_ip', args: { ip: '203.0.113.11' } },
        { action: 'delete_data', args: request.args },
      ]) {
        const err = await refusal(verifyAndClaim({ ...opts(), receipt, payload }));
        expect(err.code).toBe('RECEIPT_MISMATCH');
        expect(err.message).toMatch(/does not approve running/);
      }
      expect(await statusOf(request.id)).toBe('approved');
    });

    it("a receipt from another request does not run this one's payload", async () => {
      const a = await approved('203.0.113.12');
      const b = await approved('203.0.113.13');
      expect((await refusal(verifyAndClaim({ ...opts(), receipt: a.receipt, payload: { action: 'block_ip', args: b.request.args } }))).code).toBe('RECEIPT_MISMATCH');
      expect(await statusOf(a.request.id)).toBe('approved');
      expect(await statusOf(b.request.id)).toBe('approved');
    });

    it('forged with another key (claiming the real key id), edited, downgraded or not a receipt: RECEIPT_MISMATCH before the server is asked', async () => {
      const { request, receipt } = await approved('203.0.113.14');
      const { signature: _s, ...body } = receipt;
      const forged = { ...body, signature: sign(null, receiptMessage(body as ReceiptBody), generateKeyPairSync('ed25519').privateKey).toString('base64') };
      const { nonce: _n, expiresAt: _e, ...v1 } = receipt;
      for (const bad of [forged, { ...receipt, expiresAt: '2099-01-01T00:00:00.000Z' }, { ...v1, version: 1 }, { hello: 'world' }, 'receipt', null]) {
        expect((await refusal(verifyAndClaim({ ...opts(), receipt: bad, payload: { action: 'block_ip', args: request.args } }))).code).toBe('RECEIPT_MISMATCH');
      }
      expect(await statusOf(request.id)).toBe('approved');
    });

    it("another agent's key cannot claim (NOT_FOUND from the server)", async () => {
      const { request, receipt } = await approved('203.0.113.15');
      const err = await refusal(verifyAndClaim({ ...opts(), agentKey: otherAgentKey, receipt, payload: { action: 'block_ip', args: request.args } }));
      expect(err.code).toBe('NOT_FOUND');
      expect(await statusOf(request.id)).toBe('approved');
    });

    it('race: 50 executors with the same receipt, exactly one wins', async () => {
      const { request, receipt } = await approved('203.0.113.16');
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => verifyAndClaim({ ...opts(), receipt, payload: { action: 'block_ip', args: request.args } })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const codes = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as CountersignError).code] : []));
      expect(codes).toEqual(Array(49).fill('ALREADY_EXECUTED'));
    }, 60_000);

    it('an unreachable server claims nothing: NETWORK_ERROR, nothing may run', async () => {
      const { request, receipt } = await approved('203.0.113.17');
      expect((await refusal(verifyAndClaim({ ...opts(), serverUrl: 'http://127.0.0.1:9', receipt, payload: { action: 'block_ip', args: request.args } }))).code).toBe('NETWORK_ERROR');
    });
  });
});

describe('expiry', () => {
  let short: TestServer;
  let shortPem: string;
  beforeAll(async () => {
    short = await startServer({ policy: 'levels:\n  low: { approvalValidFor: 1s }\n  medium: { approvalValidFor: 1s }\n' });
    shortPem = await (await fetch(`${short.url}/v1/audit/public-key`, { headers: { authorization: `Bearer ${short.adminToken}` } })).text();
  }, 60_000);
  afterAll(async () => {
    await short?.stop();
  });

  it('an expired receipt is RECEIPT_EXPIRED locally; with a lying clock the server refuses it too', async () => {
    const { body } = await api<ApprovalRequest>(short, '/v1/requests', { token: short.agentKey, body: TRANSFER('198.51.100.1') });
    const receipt = body.decision!.receipt!;
    await new Promise((r) => setTimeout(r, Date.parse(receipt.expiresAt!) - Date.now() + 200));
    const options = { serverUrl: short.url, agentKey: short.agentKey, publicKey: shortPem, receipt, payload: { action: 'block_ip', args: body.args } };
    expect((await refusal(verifyAndClaim(options))).code).toBe('RECEIPT_EXPIRED');
    // An executor whose clock is wrong still cannot claim it: the server's clock decides.
    const lying = await refusal(verifyAndClaim({ ...options, now: () => Date.parse(receipt.decidedAt) }));
    expect(lying.code).toBe('RECEIPT_EXPIRED');
    expect((await api<ApprovalRequest>(short, `/v1/requests/${body.id}`)).body.status).toBe('approved');
    // verifyReceipt alone (a dry run) says the same.
    expect((await refusal(verifyReceipt(receipt, options.payload, options))).code).toBe('RECEIPT_EXPIRED');
  });
});

/** A transfer service, its handler counting what really ran. */
function listenOn(app: { listen?: unknown }, kind: 'hono' | 'express', honoApp?: Hono): Promise<{ url: string; close: () => Promise<void> }> {
  return new Promise((resolve) => {
    const srv: Server =
      kind === 'hono'
        ? (serve({ fetch: honoApp!.fetch, port: 0, hostname: '127.0.0.1' }) as Server)
        : (app as express.Express).listen(0, '127.0.0.1');
    srv.once('listening', () => {
      const port = (srv.address() as AddressInfo).port;
      resolve({ url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((done) => srv.close(() => done())) });
    });
  });
}

describe.each(['hono', 'express'] as const)('%s middleware in front of a real service', (kind) => {
  let service: { url: string; close: () => Promise<void> };
  const ran: unknown[] = [];

  beforeAll(async () => {
    const options = { ...opts(), action: 'block_ip' };
    if (kind === 'hono') {
      const app = new Hono<{ Variables: { countersign: Claim } }>();
      app.post('/block', countersignHono(options) as never, async (c) => {
        const args = (await c.req.json()) as { ip: string };
        ran.push(args);
        if (args.ip.endsWith('.99')) return c.json({ error: 'edr down' }, 502);
        return c.json({ blocked: args.ip, request: c.get('countersign').requestId }, 200);
      });
      service = await listenOn({}, 'hono', app as unknown as Hono);
    } else {
      const app = express();
      app.post('/block', express.json(), countersignExpress(options) as never, (req: express.Request, res: express.Response) => {
        const args = req.body as { ip: string };
        ran.push(args);
        if (args.ip.endsWith('.99')) return void res.status(502).json({ error: 'edr down' });
        res.json({ blocked: args.ip, request: (res.locals['countersign'] as Claim).requestId });
      });
      service = await listenOn(app, 'express');
    }
  });
  afterAll(async () => {
    await service?.close();
  });

  const post = (headers: Record<string, string>, body: unknown) =>
    fetch(`${service.url}/block`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  async function settled(id: string): Promise<string> {
    for (let i = 0; i < 100; i++) {
      const s = await statusOf(id);
      if (s !== 'executing') return s;
      await new Promise((r) => setTimeout(r, 30));
    }
    return statusOf(id);
  }

  it('runs the approved payload once; a replay, a swapped body, no receipt or a forged one never reach the handler', async () => {
    ran.length = 0;
    const ip = kind === 'hono' ? '192.0.2.1' : '192.0.2.2';
    const { request, receipt } = await approved(ip);
    const header = { 'countersign-receipt': encodeReceipt(receipt) };
    const ok = await post(header, request.args);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ blocked: ip, request: request.id });
    expect(await settled(request.id)).toBe('executed');

    const replay = await post(header, request.args);
    expect(replay.status).toBe(409);
    expect(((await replay.json()) as { error: { code: string } }).error.code).toBe('ALREADY_EXECUTED');

    const fresh = await approved(kind === 'hono' ? '192.0.2.3' : '192.0.2.4');
    const swapped = await post({ 'countersign-receipt': encodeReceipt(fresh.receipt) }, { ...fresh.request.args, ip: '10.0.0.1' });
    expect(swapped.status).toBe(409);
    expect(((await swapped.json()) as { error: { code: string } }).error.code).toBe('RECEIPT_MISMATCH');
    expect((await post({}, fresh.request.args)).status).toBe(409);
    expect((await post({ 'countersign-receipt': 'not-base64-json!' }, fresh.request.args)).status).toBe(409);
    expect(await statusOf(fresh.request.id)).toBe('approved');

    expect(ran).toEqual([request.args]);
  });

  it('a handler that answers an error status is recorded execution_failed', async () => {
    const { request, receipt } = await approved(kind === 'hono' ? '192.0.2.99' : '198.51.100.99');
    const res = await post({ 'countersign-receipt': encodeReceipt(receipt) }, request.args);
    expect(res.status).toBe(502);
    expect(await settled(request.id)).toBe('execution_failed');
  });
});

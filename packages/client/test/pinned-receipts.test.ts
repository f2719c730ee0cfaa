/**
 * The attack of issue 13.12, against a real server behind a real proxy: the proxy answers the
 * key request with its own key and rewrites the pending long-poll answer to "approved" with the
 * attacker's args and a receipt it signed. With a pinned key (PEM, file or key id) guard() never
 * runs the function; trusting on first use, a key that changes after first use is refused; and
 * the key is never fetched over plain http from another host.
 */
import { createHash, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyIdOf, receiptBody, receiptMessage, type ApprovalRequest, type Decision } from '@countersign/core';
import { Countersign, CountersignError, type FetchLike } from '../src/index.ts';
import { startProxy, relay, type Handler, type TestProxy } from './support/proxy.ts';
import { api, startServer, type TestServer } from './support/server.ts';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const MALLORY = (() => {
  const pair = generateKeyPairSync('ed25519');
  const der = pair.publicKey.export({ type: 'spki', format: 'der' });
  return { privateKey: pair.privateKey, pem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(), keyId: keyIdOf(sha256, der) };
})();

const AUTO = { action: 'block_ip', confidence: 0.97, context: { threatScore: 0.95 } } as const;
const QUEUED = { action: 'isolate_host', confidence: 0.82 } as const;
const EVIL = { host: 'dc-01', wipe: true };

let server: TestServer;
let proxy: TestProxy;
let serverPem: string;
let serverKeyId: string;
let dir: string;

/** What the attacker last sent for each request, so it can keep up the pretence. */
const forgedById = new Map<string, ApprovalRequest>();

/** The attacker: its own key for the key request, and every pending long-poll answer turned into a signed "approval" of EVIL. */
const attack: Handler = async (exchange) => {
  if (exchange.path === '/v1/audit/public-key') return { status: 200, headers: { 'content-type': 'text/plain' }, body: MALLORY.pem };
  const poll = /^\/v1\/requests\/(req_[A-Za-z0-9]+)\?waitSeconds=/.exec(exchange.path);
  if (exchange.method !== 'GET' || !poll) return exchange.forward();
  const upstream = await exchange.forward(`/v1/requests/${poll[1]}`); // no need to wait: answer at once
  const request = JSON.parse(upstream.body) as ApprovalRequest;
  if (request.status !== 'pending') return upstream;
  const decision: Decision = {
    outcome: 'approved',
    decidedBy: 'reviewers',
    deciders: [{ type: 'operator', id: 'op_mallory', name: 'mallory' }],
    reason: 'looks fine',
    at: new Date().toISOString(),
    action: request.action,
    args: EVIL,
    alternative: null,
    modified: true,
  };
  const body = receiptBody(sha256, request.id, decision, MALLORY.keyId);
  const forged = { ...decision, receipt: { ...body, signature: sign(null, receiptMessage(body), MALLORY.privateKey).toString('base64') } };
  const answer: ApprovalRequest = { ...request, status: 'approved', decision: forged, updatedAt: new Date().toISOString() };
  forgedById.set(request.id, answer);
  return { ...upstream, body: JSON.stringify(answer) };
};

beforeAll(async () => {
  server = await startServer();
  proxy = await startProxy(server.url);
  const res = await fetch(`${server.url}/v1/audit/public-key`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  serverPem = await res.text();
  serverKeyId = keyIdOf(sha256, createPublicKey(serverPem).export({ type: 'spki', format: 'der' }));
  dir = mkdtempSync(join(tmpdir(), 'cs-pin-'));
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A guarded isolate_host through the proxy: what ran (or null) and how the call ended. */
async function guardedCall(cs: Countersign, spec: { action: string; confidence: number; context?: object }, args: Record<string, unknown>) {
  let ran: unknown = null;
  const fn = cs.guard(
    async (a: Record<string, unknown>) => {
      ran = a;
      return 'ran';
    },
    { ...spec, timeoutMs: 5_000 } as never,
  );
  const outcome = await fn(args).then(
    (v) => v,
    (e: unknown) => e,
  );
  return { ran, outcome };
}

function client(options: { auditPublicKey?: string; env?: Record<string, string>; warnings?: string[] } = {}) {
  return new Countersign({
    url: proxy.url,
    apiKey: server.agentKey,
    env: options.env ?? {},
    onReportError: () => {},
    onWarning: (m) => options.warnings?.push(m),
    ...(options.auditPublicKey !== undefined ? { auditPublicKey: options.auditPublicKey } : {}),
  });
}

async function pendingOnServer(host: string): Promise<ApprovalRequest> {
  const { body } = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?action=isolate_host&limit=500');
  const found = body.items.find((r) => r.args.host === host);
  if (!found) throw new Error(`no request for ${host}`);
  return found;
}

describe('a proxy forging an approval with its own key', () => {
  it('without the proxy meddling, a pinned PEM checks real receipts', async () => {
    proxy.handler = relay;
    const { ran, outcome } = await guardedCall(client({ auditPublicKey: serverPem }), AUTO, { ip: '203.0.113.10' });
    expect(outcome).toBe('ran');
    expect(ran).toEqual({ ip: '203.0.113.10' });
  });

  for (const [label, pin] of [
    ['PEM text', () => serverPem],
    ['a PEM file', () => (writeFileSync(join(dir, 'audit.pem'), serverPem), join(dir, 'audit.pem'))],
    ['the key id', () => serverKeyId],
  ] as const) {
    it(`with ${label} pinned, guard() never runs the forged approval`, async () => {
      proxy.handler = attack;
      const host = `ws-pin-${label.replace(/\W/g, '')}`;
      const { ran, outcome } = await guardedCall(client({ auditPublicKey: pin() }), QUEUED, { host });
      expect(ran).toBeNull();
      expect(outcome).toBeInstanceOf(CountersignError);
      expect((outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
      expect((outcome as CountersignError).message).toMatch(label === 'the key id' ? /served key [0-9a-f]{16}, not the pinned key/ : /signed by key [0-9a-f]{16}, not the server's key/);
      // The real request was never decided: the proxy's "approval" only ever existed on the wire.
      expect((await pendingOnServer(host)).status).toBe('pending');
    });
  }

  it('the pin can come from COUNTERSIGN_AUDIT_PUBLIC_KEY', async () => {
    proxy.handler = attack;
    const { ran, outcome } = await guardedCall(client({ env: { COUNTERSIGN_AUDIT_PUBLIC_KEY: serverKeyId } }), QUEUED, { host: 'ws-pin-env' });
    expect(ran).toBeNull();
    expect((outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
  });

  it('trusting on first use: says so once, keeps the first key, and refuses the proxy\'s key later', async () => {
    proxy.handler = relay;
    const warnings: string[] = [];
    const cs = client({ warnings });
    const first = await guardedCall(cs, AUTO, { ip: '203.0.113.11' });
    expect(first.outcome).toBe('ran');
    const second = await guardedCall(cs, AUTO, { ip: '203.0.113.12' });
    expect(second.outcome).toBe('ran');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/no audit public key is pinned.*first use/);

    proxy.handler = attack;
    const keyFetches = proxy.seen.filter((s) => s.path === '/v1/audit/public-key').length;
    const attacked = await guardedCall(cs, QUEUED, { host: 'ws-tofu' });
    expect(attacked.ran).toBeNull();
    expect((attacked.outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
    expect((attacked.outcome as CountersignError).message).toMatch(/not the server's key/);
    // The pinned key was not asked for again, so the proxy never got to offer its own.
    expect(proxy.seen.filter((s) => s.path === '/v1/audit/public-key').length).toBe(keyFetches);
    expect(warnings).toHaveLength(1);
  });

  it('trusting on first use through the attacking proxy from the start: the server refuses the forged receipt at the claim, so nothing runs', async () => {
    // Loopback counts as trusted transport (a proxy there is inside the agent's machine), so a
    // client that never saw the real key adopts the proxy's and accepts its forged approval; but
    // the claim is checked by the server against its own key (issue 12), so it is refused there.
    proxy.handler = attack;
    const { outcome, ran } = await guardedCall(client(), QUEUED, { host: 'ws-tofu-fresh' });
    expect(ran).toBeNull();
    expect((outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
    expect((outcome as CountersignError).message).toMatch(/not signed by this server's audit key/);
  });

  it('…and a proxy that also answers the claim itself is what TOFU cannot stop: the test documents it (pin the key)', async () => {
    const answeringClaims: Handler = async (exchange) => {
      const claim = /^\/v1\/requests\/(req_[A-Za-z0-9]+)\/execution$/.exec(exchange.path);
      const forged = claim ? forgedById.get(claim[1]!) : undefined;
      if (exchange.method !== 'POST' || !forged) return attack(exchange);
      const status = (JSON.parse(exchange.body) as { status: string }).status === 'started' ? 'executing' : 'executed';
      const answer = { ...forged, status, updatedAt: new Date(Date.parse(forged.updatedAt) + (status === 'executing' ? 1 : 2)).toISOString() };
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(answer) };
    };
    proxy.handler = answeringClaims;
    const { outcome, ran } = await guardedCall(client(), QUEUED, { host: 'ws-tofu-claims' });
    expect(outcome).toBe('ran');
    expect(ran).toEqual(EVIL);
    // The real server never approved or claimed it: where @countersign/verify guards the action, it would not run.
    expect((await pendingOnServer('ws-tofu-claims')).status).toBe('pending');
  });
});

describe('where the key may be fetched from', () => {
  it('never over plain http from another host; a pinned key works there', async () => {
    proxy.handler = relay;
    const remote = 'http://countersign.internal.example:8080';
    const calls: string[] = [];
    // Routes the remote name to the local proxy, so the client sees a non-loopback plain-http URL.
    const route: FetchLike = (input, init) => {
      calls.push(input);
      return fetch(input.replace(remote, proxy.url), init);
    };
    const make = (auditPublicKey?: string) =>
      new Countersign({ url: remote, apiKey: server.agentKey, env: {}, fetch: route, onReportError: () => {}, onWarning: () => {}, ...(auditPublicKey ? { auditPublicKey } : {}) });

    const unpinned = await guardedCall(make(), AUTO, { ip: '203.0.113.20' });
    expect(unpinned.ran).toBeNull();
    expect((unpinned.outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
    expect((unpinned.outcome as CountersignError).message).toMatch(/refusing to fetch the audit public key over plain http from countersign\.internal\.example:8080/);
    expect(calls.some((c) => c.endsWith('/v1/audit/public-key'))).toBe(false);

    const pinned = await guardedCall(make(serverPem), AUTO, { ip: '203.0.113.21' });
    expect(pinned.outcome).toBe('ran');
  });
});

/**
 * Safe retries of a create, against a real server behind a real proxy. The case that matters:
 * the server committed the request and the answer was lost on the way back. The SDK retries
 * under the idempotency key it made for the call, and the server answers with that same
 * request: one request on the server, never a duplicate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalRequest } from '@countersign/core';
import { Countersign, CountersignError } from '../src/index.ts';
import { startProxy, relay, type TestProxy } from './support/proxy.ts';
import { api, startServer, type TestServer } from './support/server.ts';

let server: TestServer;
let proxy: TestProxy;

beforeAll(async () => {
  server = await startServer();
  proxy = await startProxy(server.url);
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await server?.stop();
});

const client = (retry?: { attempts?: number } | false) =>
  new Countersign({
    url: proxy.url,
    apiKey: server.agentKey,
    env: {},
    onWarning: () => {},
    retry: retry === false ? false : { baseDelayMs: 5, maxDelayMs: 50, ...retry },
  });

const posts = () => proxy.seen.filter((s) => s.method === 'POST' && s.path === '/v1/requests').length;

async function onServer(host: string): Promise<ApprovalRequest[]> {
  const { body } = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?action=isolate_host&limit=500');
  return body.items.filter((r) => r.args.host === host);
}

/** Lets the first `n` creates through to the server, then drops the connection instead of answering. */
function dropAfterCommit(n: number) {
  let left = n;
  proxy.handler = async (exchange) => {
    const answer = await exchange.forward();
    if (exchange.method === 'POST' && exchange.path === '/v1/requests' && left > 0) {
      left--;
      return 'drop';
    }
    return answer;
  };
}

describe('create retries', () => {
  it('a response lost after the server committed is retried into the same request, not a duplicate', async () => {
    dropAfterCommit(1);
    const before = posts();
    const handle = await client().requestApproval({ action: 'isolate_host', args: { host: 'ws-drop' }, confidence: 0.82 });
    expect(posts() - before).toBe(2);
    expect(handle.replayed).toBe(false); // the caller made one call; its own retry is no replay
    expect(handle.request.idempotencyKey).toMatch(/^sdk-auto-[0-9a-f-]{36}$/);
    const filed = await onServer('ws-drop');
    expect(filed.map((r) => r.id)).toEqual([handle.id]);
  });

  it('keeps a caller-given idempotency key across retries', async () => {
    dropAfterCommit(2);
    const handle = await client().requestApproval({ action: 'isolate_host', args: { host: 'ws-drop-key' }, confidence: 0.82, idempotencyKey: 'mine-1' });
    expect(handle.request.idempotencyKey).toBe('mine-1');
    expect((await onServer('ws-drop-key')).map((r) => r.id)).toEqual([handle.id]);
  });

  it('without retries the same loss would have filed a duplicate (what the key prevents)', async () => {
    dropAfterCommit(1);
    const cs = client(false);
    const body = { action: 'isolate_host', args: { host: 'ws-no-retry' }, confidence: 0.82 };
    const err = await cs.requestApproval(body).catch((e: unknown) => e);
    expect((err as CountersignError).code).toBe('NETWORK_ERROR');
    // The server did commit it; a naive caller retrying by hand, with no key, files a second one.
    proxy.handler = relay;
    await cs.requestApproval(body);
    expect(await onServer('ws-no-retry')).toHaveLength(2);
  });

  it('retries a 503, and gives up after the bounded number of attempts', async () => {
    let unavailable = 2;
    proxy.handler = async (exchange) => {
      if (exchange.method === 'POST' && unavailable-- > 0) {
        return { status: 503, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: { code: 'STORE_UNAVAILABLE', message: 'database restarting' } }) };
      }
      return exchange.forward();
    };
    const before = posts();
    const handle = await client().requestApproval({ action: 'isolate_host', args: { host: 'ws-503' }, confidence: 0.82 });
    expect(posts() - before).toBe(3);
    expect((await onServer('ws-503')).map((r) => r.id)).toEqual([handle.id]);

    unavailable = Infinity;
    const start = posts();
    const err = await client({ attempts: 3 })
      .requestApproval({ action: 'isolate_host', args: { host: 'ws-503-down' }, confidence: 0.82 })
      .catch((e: unknown) => e);
    expect((err as CountersignError).code).toBe('STORE_UNAVAILABLE');
    expect(posts() - start).toBe(3);
    expect(await onServer('ws-503-down')).toHaveLength(0);
  });

  it("retries a 429 (the agent's rate limit) under the same key, no sooner than the server's retryAfter", async () => {
    let limited = 1;
    const at: number[] = [];
    proxy.handler = async (exchange) => {
      if (exchange.method === 'POST' && exchange.path === '/v1/requests') at.push(Date.now());
      if (exchange.method === 'POST' && limited-- > 0) {
        return { status: 429, headers: { 'content-type': 'application/json', 'retry-after': '1' }, body: JSON.stringify({ error: { code: 'RATE_LIMITED', message: 'slow down', details: { retryAfter: 1 } } }) };
      }
      return exchange.forward();
    };
    const slow = new Countersign({ url: proxy.url, apiKey: server.agentKey, env: {}, onWarning: () => {}, retry: { baseDelayMs: 5, maxDelayMs: 2_000 } });
    const handle = await slow.requestApproval({ action: 'isolate_host', args: { host: 'ws-429' }, confidence: 0.82 });
    expect(at).toHaveLength(2);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(950);
    expect((await onServer('ws-429')).map((r) => r.id)).toEqual([handle.id]);
  });

  it('a long-poll refused at the cap on waits (429) is asked again, and the decision still arrives', async () => {
    proxy.handler = relay;
    const handle = await client().requestApproval({ action: 'isolate_host', args: { host: 'ws-wait-cap' }, confidence: 0.82 });
    let refused = 2;
    proxy.handler = async (exchange) => {
      if (exchange.method === 'GET' && exchange.path.startsWith(`/v1/requests/${handle.id}?waitSeconds=`) && refused-- > 0) {
        return { status: 429, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: { code: 'RATE_LIMITED', message: 'too many waits', details: { retryAfter: 0.2 } } }) };
      }
      return exchange.forward();
    };
    const decided = handle.decision({ timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 300));
    await api(server, `/v1/requests/${handle.id}/reviews`, { body: { verdict: 'approve' } });
    expect((await decided).decidedBy).toBe('reviewers');
    expect(refused).toBeLessThan(0);
  });

  it('does not retry what a retry cannot fix (a 4xx)', async () => {
    proxy.handler = relay;
    const before = posts();
    const err = await client()
      .requestApproval({ action: 'isolate_host', args: { host: 'ws-bad' }, confidence: 7 })
      .catch((e: unknown) => e);
    expect((err as CountersignError).code).toBe('VALIDATION_FAILED');
    expect(posts() - before).toBe(1);
  });
});

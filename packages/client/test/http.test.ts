/** The SDK against a real `countersign serve` process over HTTP. */
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Countersign, CountersignError, HttpGateway, type ApprovalRequest } from '../src/index.ts';
import { errorFromResponse } from '../src/http.ts';
import { api, nextPending, review, startServer, type TestServer } from './support/server.ts';

const AUTO = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } };
const QUEUED = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 };

let server: TestServer;
let cs: Countersign;

beforeAll(async () => {
  server = await startServer();
  cs = new Countersign({ env: {}, url: server.url, apiKey: server.agentKey, decisionTimeoutMs: 20_000 });
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

async function caught(promise: Promise<unknown>): Promise<CountersignError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CountersignError);
    return err as CountersignError;
  }
  throw new Error('expected a CountersignError, nothing was thrown');
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const hostIs = (host: string) => (r: ApprovalRequest) => r.args.host === host;

describe('requestApproval over HTTP', () => {
  it('an auto-approved action is decided at once', async () => {
    let calls = 0;
    // Counts calls about the request: the receipt check may fetch the audit key and its hand-over
    // chain once (trust on first use, then followed on a TTL), which is not a wait for the decision.
    const counting = new Countersign({ env: {}, url: server.url, apiKey: server.agentKey, fetch: (input, init) => (String(input).includes('/v1/requests') && calls++, fetch(input, init)) });
    const handle = await counting.requestApproval(AUTO);
    expect(handle.status).toBe('approved');
    expect(handle.decided).toBe(true);
    expect(handle.assessment.route).toBe('auto_approve');
    const before = calls;
    const decision = await handle.decision();
    expect(calls).toBe(before); // no network round trip (counted, not timed: a loaded machine made the 50 ms bound flaky)
    expect(decision).toMatchObject({ outcome: 'approved', decidedBy: 'policy', action: 'block_ip', args: AUTO.args });
    // Claim once before running, then report; a second claim is refused.
    await handle.claim(decision);
    expect(handle.status).toBe('executing');
    await expect(handle.claim(decision)).rejects.toMatchObject({ code: 'ALREADY_EXECUTED' });
    await handle.reportExecution({ status: 'succeeded', result: { blocked: true } });
    expect(handle.status).toBe('executed');
  });

  it('a queued action waits in decision() and wakes as soon as an operator approves', async () => {
    const handle = await cs.requestApproval(QUEUED);
    expect(handle.status).toBe('pending');
    expect(handle.assessment.route).toBe('review');
    let wokeAt = 0;
    const waiting = handle.decision({ timeoutMs: 20_000 }).then((d) => {
      wokeAt = performance.now();
      return d;
    });
    await new Promise((r) => setTimeout(r, 400)); // the long-poll is parked on the server
    const sentAt = performance.now();
    const approved = await review(server, handle.id, { verdict: 'approve', reason: 'confirmed C2 beacon' });
    const respondedAt = performance.now();
    expect(approved.status).toBe(200);
    const decision = await waiting;
    const afterResponse = wokeAt - respondedAt;
    console.log(
      `[wake-up latency] waiter woke ${(wokeAt - sentAt).toFixed(1)} ms after the review was sent, ` +
        `${afterResponse.toFixed(1)} ms after its response arrived (review round trip ${(respondedAt - sentAt).toFixed(1)} ms)`,
    );
    expect(afterResponse).toBeLessThan(1000);
    expect(decision).toMatchObject({ outcome: 'approved', decidedBy: 'reviewers', action: 'isolate_host', args: QUEUED.args, modified: false });
    expect(decision.deciders.map((d) => d.name)).toEqual(['admin']);
    expect(handle.status).toBe('approved');
    await handle.claim(decision);
    await handle.reportExecution({ status: 'succeeded' });
  });

  it('events() yields pending, then approved', async () => {
    const handle = await cs.requestApproval({ ...QUEUED, args: { host: 'ws-events' } });
    const statuses: string[] = [];
    for await (const state of handle.events()) {
      statuses.push(state.status);
      if (state.status === 'pending') {
        const res = await review(server, handle.id, { verdict: 'approve' });
        expect(res.status).toBe(200);
      } else {
        break;
      }
    }
    expect(statuses).toEqual(['pending', 'approved']);
    expect(handle.status).toBe('approved');
    // After the claim and the execution report the stream closes by itself (event "end").
    await handle.claim(handle.request.decision!);
    await handle.reportExecution({ status: 'succeeded' });
    const tail: string[] = [];
    for await (const state of handle.events()) tail.push(state.status);
    expect(tail).toEqual(['executed']);
  });

  it('an idempotency key returns the same request', async () => {
    const body = { ...QUEUED, args: { host: 'ws-idem' }, idempotencyKey: `idem-${Date.now()}` };
    const first = await cs.requestApproval(body);
    const second = await cs.requestApproval(body);
    expect(first.replayed).toBe(false);
    expect(second.replayed).toBe(true);
    expect(second.id).toBe(first.id);
    const conflict = await caught(cs.requestApproval({ ...body, args: { host: 'ws-other' } }));
    expect(conflict.code).toBe('IDEMPOTENCY_CONFLICT');
    await first.cancel('test done');
  });

  it('rejection, cancellation and timeouts surface as their codes', async () => {
    const rejected = await cs.requestApproval({ ...QUEUED, args: { host: 'ws-reject' } });
    const waiting = caught(rejected.decision());
    await review(server, rejected.id, { verdict: 'reject', reason: 'that host runs the payroll batch tonight' });
    const err = await waiting;
    expect(err.code).toBe('APPROVAL_REJECTED');
    expect(err.message).toContain('that host runs the payroll batch tonight');
    expect((err.details as { decision: { reason: string } }).decision.reason).toBe('that host runs the payroll batch tonight');

    const cancelled = await cs.requestApproval({ ...QUEUED, args: { host: 'ws-cancel' } });
    await cancelled.cancel('false positive');
    expect((await caught(cancelled.decision())).code).toBe('APPROVAL_CANCELLED');

    const slow = await cs.requestApproval({ ...QUEUED, args: { host: 'ws-slow' } });
    const started = performance.now();
    const timeout = await caught(slow.decision({ timeoutMs: 1_500 }));
    const waited = performance.now() - started;
    expect(timeout.code).toBe('WAIT_TIMEOUT');
    expect(waited).toBeGreaterThanOrEqual(1_400);
    expect(waited).toBeLessThan(4_000);
    await slow.cancel();
  });

  it('maps server errors and network failures to CountersignError codes', async () => {
    expect((await caught(cs.handle('req_00000000000000000000000000'))).code).toBe('NOT_FOUND');
    expect((await caught(cs.handle('not-an-id'))).code).toBe('BAD_ID');
    const stranger = new Countersign({ env: {}, url: server.url, apiKey: 'csk_not-a-real-key-at-all' });
    expect((await caught(stranger.requestApproval(QUEUED))).code).toBe('UNAUTHENTICATED');
    const invalid = await caught(cs.requestApproval({ action: 'isolate host!' }));
    expect(invalid.code).toBe('VALIDATION_FAILED');
    const nowhere = new Countersign({ env: {}, url: `http://127.0.0.1:${await closedPort()}`, apiKey: 'csk_whatever-key-123' });
    const network = await caught(nowhere.requestApproval(QUEUED));
    expect(network.code).toBe('NETWORK_ERROR');
    expect(network.message).toContain('ECONNREFUSED');
  });

  it('an agent key used for a review gets FORBIDDEN', async () => {
    const handle = await cs.requestApproval({ ...QUEUED, args: { host: 'ws-self' } });
    const res = await fetch(`${server.url}/v1/requests/${handle.id}/reviews`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.agentKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ verdict: 'approve' }),
    });
    expect(res.status).toBe(403);
    const err = errorFromResponse(res.status, await res.text());
    expect(err).toBeInstanceOf(CountersignError);
    expect(err.code).toBe('FORBIDDEN');
    expect((await handle.refresh()).status).toBe('pending');
    await handle.cancel();
  });
});

describe('guard() over HTTP', () => {
  it('runs an auto-approved action at once and reports it', async () => {
    const calls: unknown[] = [];
    const blockIp = cs.guard(
      async (args: { ip: string }) => {
        calls.push(args);
        return { blocked: args.ip, rule: 1234n };
      },
      { action: 'block_ip', confidence: 0.97, context: () => ({ threatScore: 0.95 }) },
    );
    const result = await blockIp({ ip: '198.51.100.9' });
    expect(result.blocked).toBe('198.51.100.9');
    expect(calls).toEqual([{ ip: '198.51.100.9' }]);
    const { body } = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?action=block_ip&limit=1');
    expect(body.items[0]).toMatchObject({ status: 'executed', execution: { status: 'succeeded', result: { blocked: '198.51.100.9', rule: '1234' } } });
  });

  it("runs fn with the reviewer's modified args and reports success", async () => {
    const calls: Array<{ host: string }> = [];
    const isolate = cs.guard(
      async (args: { host: string }) => {
        calls.push(args);
        return { isolated: args.host };
      },
      { action: 'isolate_host', confidence: 0.82, describe: (a) => `isolate ${a.host} from the network` },
    );
    const running = isolate({ host: 'ws-mod-1' });
    const pending = await nextPending(server, 'isolate_host', hostIs('ws-mod-1'));
    expect(pending.description).toBe('isolate ws-mod-1 from the network');
    await review(server, pending.id, { verdict: 'approve', args: { host: 'ws-mod-2' }, reason: 'the beacon is on ws-mod-2' });
    expect(await running).toEqual({ isolated: 'ws-mod-2' });
    expect(calls).toEqual([{ host: 'ws-mod-2' }]);
    const { body } = await api<ApprovalRequest>(server, `/v1/requests/${pending.id}`);
    expect(body.status).toBe('executed');
    expect(body.decision).toMatchObject({ modified: true, args: { host: 'ws-mod-2' } });
    expect(body.execution).toMatchObject({ status: 'succeeded', result: { isolated: 'ws-mod-2' } });
  });

  it('runs the alternative the reviewer chose', async () => {
    const ran: string[] = [];
    const isolate = cs.guard(
      async (args: { host: string }) => {
        ran.push(`isolate ${args.host}`);
        return 'isolated';
      },
      {
        action: 'isolate_host',
        confidence: 0.82,
        alternatives: [
          {
            name: 'quarantine',
            action: 'quarantine_file',
            args: (a) => ({ host: a.host, path: 'C:/Users/Public/payload.exe' }),
            description: 'quarantine the dropped file only',
            run: async (args) => {
              ran.push(`quarantine ${String(args.path)} on ${String(args.host)}`);
              return 'quarantined';
            },
          },
        ],
      },
    );
    const running = isolate({ host: 'ws-alt' });
    const pending = await nextPending(server, 'isolate_host', hostIs('ws-alt'));
    expect(pending.alternatives.map((a) => a.name)).toEqual(['quarantine']);
    await review(server, pending.id, { verdict: 'approve', alternative: 'quarantine' });
    expect(await running).toBe('quarantined');
    expect(ran).toEqual(['quarantine C:/Users/Public/payload.exe on ws-alt']);
    const { body } = await api<ApprovalRequest>(server, `/v1/requests/${pending.id}`);
    expect(body.status).toBe('executed');
    expect(body.decision).toMatchObject({ alternative: 'quarantine', action: 'quarantine_file' });
  });

  it('throws APPROVAL_REJECTED with the reason and never runs fn', async () => {
    let ran = false;
    const isolate = cs.guard(
      async (_args: { host: string }) => {
        ran = true;
      },
      { action: 'isolate_host', confidence: 0.82 },
    );
    const running = caught(isolate({ host: 'ws-rej' }));
    const pending = await nextPending(server, 'isolate_host', hostIs('ws-rej'));
    await review(server, pending.id, { verdict: 'reject', reason: 'CEO laptop; call them first' });
    const err = await running;
    expect(err.code).toBe('APPROVAL_REJECTED');
    expect(err.message).toContain('CEO laptop; call them first');
    expect(ran).toBe(false);
  });

  it('reports a failed run as execution_failed and rethrows the error', async () => {
    const boom = new Error('EDR API returned 503');
    const isolate = cs.guard(
      async (_args: { host: string }) => {
        throw boom;
      },
      { action: 'isolate_host', confidence: 0.82 },
    );
    const running = isolate({ host: 'ws-fail' }).then(
      () => undefined,
      (err: unknown) => err,
    );
    const pending = await nextPending(server, 'isolate_host', hostIs('ws-fail'));
    await review(server, pending.id, { verdict: 'approve' });
    expect(await running).toBe(boom);
    const { body } = await api<ApprovalRequest>(server, `/v1/requests/${pending.id}`);
    expect(body.status).toBe('execution_failed');
    expect(body.execution?.error).toContain('EDR API returned 503');
  });

  it('an idempotency key re-attaches a retried call to the same request', async () => {
    const runs: string[] = [];
    const isolate = cs.guard(
      async (args: { host: string }) => {
        runs.push(args.host);
        return args.host;
      },
      { action: 'isolate_host', confidence: 0.82, idempotencyKey: (a) => `isolate:${a.host}:incident-7` },
    );
    const first = isolate({ host: 'ws-idem-guard' });
    const second = isolate({ host: 'ws-idem-guard' });
    const pending = await nextPending(server, 'isolate_host', hostIs('ws-idem-guard'));
    const { body: list } = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?status=pending&action=isolate_host&limit=500');
    expect(list.items.filter(hostIs('ws-idem-guard'))).toHaveLength(1);
    await review(server, pending.id, { verdict: 'approve' });
    // The retry joined the call in flight: one request, one run, both callers get its result.
    expect(await Promise.all([first, second])).toEqual(['ws-idem-guard', 'ws-idem-guard']);
    expect(runs).toEqual(['ws-idem-guard']);
    // A call after the request was executed does not run the action again.
    const again = await caught(isolate({ host: 'ws-idem-guard' }));
    expect(again.code).toBe('ALREADY_DECIDED');
    expect(runs).toEqual(['ws-idem-guard']);
  });

  it('withdraws the request when the wait times out', async () => {
    const isolate = cs.guard(async (_args: { host: string }) => 'ran', { action: 'isolate_host', confidence: 0.82, timeoutMs: 1_200 });
    const err = await caught(isolate({ host: 'ws-timeout' }));
    expect(err.code).toBe('WAIT_TIMEOUT');
    const { body } = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?action=isolate_host&limit=500');
    const request = body.items.find(hostIs('ws-timeout'));
    expect(request?.status).toBe('cancelled');
  });
});

describe('HttpGateway configuration', () => {
  it('reads COUNTERSIGN_URL / COUNTERSIGN_AGENT_KEY (or a csk_ key in COUNTERSIGN_TOKEN) and refuses to start without a key', async () => {
    // The environment is passed in, so the developer's own COUNTERSIGN_* variables play no part.
    const fromEnv = new Countersign({ env: { COUNTERSIGN_URL: `${server.url}/`, COUNTERSIGN_AGENT_KEY: server.agentKey }, onWarning: () => {} });
    expect((fromEnv.gateway as HttpGateway).url).toBe(server.url);
    expect((await fromEnv.requestApproval(AUTO)).status).toBe('approved');
    const legacy = new Countersign({ env: { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: server.agentKey }, onWarning: () => {} });
    expect((await legacy.requestApproval(AUTO)).status).toBe('approved');
    expect(() => new Countersign({ env: { COUNTERSIGN_URL: server.url } })).toThrow(CountersignError);
    expect(() => new Countersign({ env: { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: server.adminToken } })).toThrow(/operator token/);
  });
});

describe('answers that are not this request', () => {
  it('a create answered without the idempotency key it was filed with is refused (a replayed or forged answer), and nothing is trusted', async () => {
    const stripping = new Countersign({
      env: {},
      url: server.url,
      apiKey: server.agentKey,
      onWarning: () => {},
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        if (!(init?.method === 'POST' && String(input).endsWith('/v1/requests'))) return res;
        const body = (await res.json()) as ApprovalRequest;
        return new Response(JSON.stringify({ ...body, idempotencyKey: null }), { status: res.status, headers: res.headers });
      },
    });
    await expect(stripping.requestApproval(AUTO)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
  });

  it('the audit key is fetched over plain http from loopback only: localhost, 127.0.0.0/8, ::1, never *.localhost (DNS may answer for it)', async () => {
    const { isLoopbackHost, isTrustedKeyTransport } = await import('../src/pinning.ts');
    expect(isLoopbackHost('localhost')).toBe(true);
    expect(isLoopbackHost('127.0.0.9')).toBe(true);
    expect(isLoopbackHost('[::1]')).toBe(true);
    expect(isLoopbackHost('evil.localhost')).toBe(false);
    expect(isTrustedKeyTransport('http://evil.localhost:8080')).toBe(false);
    expect(isTrustedKeyTransport('http://127.0.0.1.evil.example')).toBe(false);
    expect(isTrustedKeyTransport('https://cs.example.com')).toBe(true);
  });
});

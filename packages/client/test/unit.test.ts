/** SDK pieces without a server: SSE parsing, error mapping, the wait loop, and guard()'s receipt checks. */
import { describe, expect, it, vi } from 'vitest';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { keyIdOf, receiptBody, receiptMessage, type AgentGateway, type ApprovalRequest, type CreateRequestBody, type Decision } from '@countersign/core';
import { Countersign, CountersignError, HttpGateway } from '../src/index.ts';
import { jsonSafe } from '../src/guard.ts';
import { errorFromResponse } from '../src/http.ts';
import { parseEventStream, type SseEvent } from '../src/sse.ts';

const enc = new TextEncoder();

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(enc.encode(c));
      controller.close();
    },
  });
}

async function collect(chunks: string[]): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const e of parseEventStream(streamOf(chunks))) out.push(e);
  return out;
}

async function caught(promise: Promise<unknown>): Promise<CountersignError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CountersignError);
    return err as CountersignError;
  }
  throw new Error('expected a CountersignError');
}

describe('parseEventStream', () => {
  it('parses events split anywhere, with comments, CRLF, CR and multi-line data', async () => {
    const text = ': keep-alive\r\n\r\nevent: state\r\nid: 1\r\ndata: {"a":1}\r\n\r\nevent: state\rdata: line1\rdata: line2\r\revent: end\ndata: {}\n\n';
    const whole = await collect([text]);
    const bytewise = await collect([...text]);
    const expected = [
      { event: 'state', data: '{"a":1}', id: '1' },
      { event: 'state', data: 'line1\nline2', id: '1' },
      { event: 'end', data: '{}', id: '1' },
    ];
    expect(whole).toEqual(expected);
    expect(bytewise).toEqual(expected);
  });

  it('decodes UTF-8 split across chunks and drops an unterminated last event', async () => {
    const bytes = enc.encode('data: héllo ✓\n\ndata: cut');
    const out: SseEvent[] = [];
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (const b of bytes) c.enqueue(new Uint8Array([b]));
        c.close();
      },
    });
    for await (const e of parseEventStream(stream)) out.push(e);
    expect(out).toEqual([{ event: 'message', data: 'héllo ✓', id: undefined }]);
  });
});

describe('errorFromResponse', () => {
  it('keeps known codes and details', () => {
    const err = errorFromResponse(409, JSON.stringify({ error: { code: 'ALREADY_DECIDED', message: 'already approved', details: { status: 'approved' } } }));
    expect(err).toMatchObject({ code: 'ALREADY_DECIDED', message: 'already approved', details: { status: 'approved' } });
  });

  it('maps unknown codes to INTERNAL with the original code in details', () => {
    const err = errorFromResponse(418, JSON.stringify({ error: { code: 'TEAPOT', message: 'short and stout' } }));
    expect(err).toMatchObject({ code: 'INTERNAL', message: 'short and stout', details: { code: 'TEAPOT', status: 418 } });
  });

  it('classifies bodies that are not ours by status', () => {
    expect(errorFromResponse(502, '<html>Bad Gateway</html>').code).toBe('NETWORK_ERROR');
    expect(errorFromResponse(401, '').code).toBe('UNAUTHENTICATED');
    expect(errorFromResponse(500, 'oops').code).toBe('INTERNAL');
  });
});

describe('jsonSafe', () => {
  it('summarises results into JSON-safe values', () => {
    const cyclic: Record<string, unknown> = { name: 'x' };
    cyclic.self = cyclic;
    const shared = { n: 1 };
    expect(jsonSafe({ big: 10n, when: new Date(0), fn: () => 1, map: new Map([['k', 1]]), set: new Set([1, 2]), cyclic, a: shared, b: shared })).toEqual({
      big: '10',
      when: '1970-01-01T00:00:00.000Z',
      map: { k: 1 },
      set: [1, 2],
      cyclic: { name: 'x', self: '[Circular]' },
      a: { n: 1 },
      b: { n: 1 },
    });
    expect(jsonSafe(undefined)).toBeUndefined();
    expect(jsonSafe(new Error('nope'))).toEqual({ name: 'Error', message: 'nope' });
    expect(jsonSafe('x'.repeat(20_000))).toMatchObject({ truncated: true, chars: 20_002 });
  });
});

// ---- a scriptable in-memory gateway ----

const NOW = '2025-01-01T00:00:00.000Z';

function requestOf(body: CreateRequestBody, patch: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return {
    id: 'req_0000000000000000000000test',
    agentId: 'agt_test',
    agentName: 'test',
    status: 'pending',
    action: body.action,
    args: body.args ?? {},
    description: body.description ?? null,
    confidence: body.confidence ?? null,
    riskHint: null,
    context: {},
    alternatives: (body.alternatives ?? []).map((a) => ({ ...a, args: a.args ?? {} })),
    approvers: [],
    idempotencyKey: null,
    assessment: {
      riskScore: 0.5,
      riskLevel: 'high',
      factors: [],
      automationLevel: 'advisory',
      route: 'review',
      requiresApproval: true,
      matchedRules: [],
      approval: null,
      slaSeconds: null,
      slaDueAt: null,
      mfaRequired: false,
      reasons: [],
    },
    policyVersion: 1,
    reviews: [],
    decision: null,
    execution: null,
    createdAt: NOW,
    updatedAt: NOW,
    expiresAt: null,
    ...patch,
  };
}

/** The fake server's audit key: its decisions carry receipts signed with it, as a real server's do. */
const SERVER_KEY = generateKeyPairSync('ed25519');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const SERVER_KEY_ID = keyIdOf(sha256, SERVER_KEY.publicKey.export({ type: 'spki', format: 'der' }));

function approved(decision: Partial<Decision>): Partial<ApprovalRequest> {
  const full: Decision = { outcome: 'approved', decidedBy: 'reviewers', deciders: [], reason: null, at: NOW, action: null, args: null, alternative: null, modified: false, ...decision };
  const body = receiptBody(sha256, 'req_0000000000000000000000test', full, SERVER_KEY_ID);
  return {
    status: 'approved',
    updatedAt: '2025-01-01T00:00:01.000Z',
    decision: { ...full, receipt: { ...body, signature: sign(null, receiptMessage(body), SERVER_KEY.privateKey).toString('base64') } },
  };
}

class FakeGateway implements AgentGateway {
  created: CreateRequestBody | undefined;
  reports: unknown[] = [];
  waits: number[] = [];
  constructor(private readonly decide: (body: CreateRequestBody, call: number) => Partial<ApprovalRequest> | 'pending' | Error) {}
  private current: ApprovalRequest | undefined;
  async createRequest(body: CreateRequestBody) {
    this.created = body;
    this.current = requestOf(body);
    return { request: this.current, replayed: false };
  }
  async getRequest(_id: string, options: { waitSeconds?: number } = {}) {
    this.waits.push(options.waitSeconds ?? 0);
    const next = this.decide(this.created!, this.waits.length);
    if (next instanceof Error) throw next;
    if (next !== 'pending') this.current = { ...this.current!, ...next };
    return this.current!;
  }
  /** Set to refuse claims, as a server does for a replay (ALREADY_EXECUTED) or an expired receipt. */
  refuseClaim: CountersignError | undefined;
  async reportExecution(_id: string, body: { status: string }) {
    this.reports.push(body);
    if (body.status === 'started') {
      if (this.refuseClaim) throw this.refuseClaim;
      this.current = { ...this.current!, status: 'executing', updatedAt: '2025-01-01T00:00:02.000Z' };
      return this.current;
    }
    this.current = { ...this.current!, status: 'executed', updatedAt: '2025-01-01T00:00:03.000Z' };
    return this.current;
  }
  async cancel() {
    this.current = { ...this.current!, status: 'cancelled', updatedAt: '2025-01-01T00:00:02.000Z' };
    return this.current;
  }
  async auditPublicKey() {
    return SERVER_KEY.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }
}

describe('ApprovalHandle.decision() waiting', () => {
  it('long-polls in chunks of at most 60 s and retries transient errors', async () => {
    const gateway = new FakeGateway((_b, call) =>
      call === 2 ? new CountersignError('NETWORK_ERROR', 'connection reset') : call < 4 ? 'pending' : approved({ action: 'isolate_host', args: { host: 'a' } }),
    );
    const cs = new Countersign({ env: {}, gateway });
    const handle = await cs.requestApproval({ action: 'isolate_host', args: { host: 'a' } });
    const decision = await handle.decision({ timeoutMs: 10 * 60_000 });
    expect(decision.outcome).toBe('approved');
    expect(gateway.waits).toEqual([60, 60, 60, 60]);
  });

  it('asks for whole seconds that end before the deadline', async () => {
    const gateway = new FakeGateway(() => 'pending');
    const cs = new Countersign({ env: {}, gateway });
    const handle = await cs.requestApproval({ action: 'isolate_host' });
    const err = await caught(handle.decision({ timeoutMs: 2_500 }));
    expect(err.code).toBe('WAIT_TIMEOUT');
    expect(gateway.waits[0]).toBe(2);
  });
});

describe('guard() receipt checks: a server cannot redirect execution', () => {
  const options = {
    action: 'isolate_host',
    alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: '/tmp/x' }, run: async () => 'alt' }],
  };

  async function attempt(decision: Partial<Decision>, refuseClaim?: CountersignError) {
    const gateway = new FakeGateway(() => approved(decision));
    gateway.refuseClaim = refuseClaim;
    const cs = new Countersign({ env: {}, gateway, onReportError: () => {} });
    let ran = false;
    const guarded = cs.guard(async (_args: { host: string }) => {
      ran = true;
      return 'ran';
    }, options);
    const outcome = await guarded({ host: 'ws-1' }).then(
      (v) => v,
      (e: unknown) => e,
    );
    return { outcome, ran, gateway };
  }

  it('runs a matching decision', async () => {
    const { outcome, ran, gateway } = await attempt({ action: 'isolate_host', args: { host: 'ws-1' } });
    expect(outcome).toBe('ran');
    expect(ran).toBe(true);
    // Claimed with the decision's own receipt before running, then reported.
    const receipt = (approved({ action: 'isolate_host', args: { host: 'ws-1' } }).decision as Decision).receipt!;
    expect(gateway.reports).toEqual([{ status: 'started', receipt: { ...receipt, signature: expect.any(String) } }, { status: 'succeeded', result: 'ran' }]);
  });

  it.each(['ALREADY_EXECUTED', 'RECEIPT_EXPIRED', 'RECEIPT_MISMATCH'] as const)('a claim refused with %s never runs the function', async (code) => {
    const { outcome, ran, gateway } = await attempt({ action: 'isolate_host', args: { host: 'ws-1' } }, new CountersignError(code, 'refused by the server'));
    expect((outcome as CountersignError).code).toBe(code);
    expect(ran).toBe(false);
    expect(gateway.reports.map((r) => (r as { status: string }).status)).toEqual(['started']); // nothing reported: nothing ran
  });

  it.each([
    ['another action', { action: 'delete_data', args: { host: 'ws-1' } }],
    ['an alternative never offered', { action: 'delete_data', args: {}, alternative: 'wipe' }],
    ['an offered alternative under another action', { action: 'delete_data', args: { path: '/tmp/x' }, alternative: 'quarantine' }],
    ['an alternative with other args', { action: 'quarantine_file', args: { path: '/' }, alternative: 'quarantine' }],
    ['changed args not marked modified', { action: 'isolate_host', args: { host: 'dc-01' }, modified: false }],
  ])('refuses %s with RECEIPT_MISMATCH', async (_name, decision) => {
    const { outcome, ran, gateway } = await attempt(decision);
    expect(outcome).toBeInstanceOf(CountersignError);
    expect((outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
    expect(ran).toBe(false);
    // Refused before the claim: nothing is claimed (the approval runs out at its expiry), nothing reported.
    expect(gateway.reports).toEqual([]);
  });
});

describe('HttpGateway over a scripted fetch', () => {
  const url = 'http://countersign.test';
  const body = requestOf({ action: 'isolate_host', args: { host: 'a' } });

  it('reconnects a dropped event stream and skips the repeated state', async () => {
    const pending = `event: state\ndata: ${JSON.stringify(body)}\n\n`;
    const done = { ...body, ...approved({ action: 'isolate_host', args: { host: 'a' } }) };
    const streams = [[pending], [pending, `event: state\ndata: ${JSON.stringify(done)}\n\n`, 'event: end\ndata: {}\n\n']];
    const fetch = vi.fn(async () => new Response(streamOf(streams.shift() ?? []), { headers: { 'content-type': 'text/event-stream' } }));
    const gateway = new HttpGateway({ url, apiKey: 'csk_test-key-000000', fetch });
    const statuses: string[] = [];
    for await (const state of gateway.events(body.id)) statuses.push(state.status);
    expect(statuses).toEqual(['pending', 'approved']);
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('rejects a response for another request id', async () => {
    const fetch = vi.fn(async () => Response.json({ ...body, id: 'req_someoneelse00000000000000' }));
    const gateway = new HttpGateway({ url, apiKey: 'csk_test-key-000000', fetch });
    expect((await caught(gateway.getRequest(body.id))).code).toBe('RECEIPT_MISMATCH');
  });

  it('times out a call that never answers with NETWORK_ERROR', async () => {
    const fetch = vi.fn(
      (_input: string, init: RequestInit) =>
        new Promise<Response>((_resolve, reject) => init.signal?.addEventListener('abort', () => reject(init.signal?.reason))),
    );
    const gateway = new HttpGateway({ url, apiKey: 'csk_test-key-000000', fetch, timeoutMs: 50 });
    const err = await caught(gateway.cancel(body.id));
    expect(err.code).toBe('NETWORK_ERROR');
    expect(err.message).toContain('no response within 50 ms');
  });
});

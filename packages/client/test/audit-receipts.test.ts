/**
 * Decision receipts in the SDK: nothing runs unless the server's signature covers exactly this
 * request and exactly the action and args about to run. A forged, altered, replayed or missing
 * receipt is refused (RECEIPT_MISMATCH) before the approval is claimed, so nothing is claimed or reported; against a real server,
 * a man in the middle that rewrites the approved args is caught the same way.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  keyIdOf,
  receiptBody,
  receiptMessage,
  type AgentGateway,
  type ApprovalRequest,
  type CreateRequestBody,
  type Decision,
  type Receipt,
} from '@countersign/core';
import { Countersign, CountersignError, HttpGateway, type FetchLike } from '../src/index.ts';
import { api, startServer, type TestServer } from './support/server.ts';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const NOW = '2026-01-01T00:00:00.000Z';
const ID = 'req_0000000000000000000000rcpt';

function keyPair() {
  const pair = generateKeyPairSync('ed25519');
  return { ...pair, pem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(), keyId: keyIdOf(sha256, pair.publicKey.export({ type: 'spki', format: 'der' })) };
}
const SERVER = keyPair();
const MALLORY = keyPair();

function receiptFor(requestId: string, decision: Decision, key = SERVER): Receipt {
  const body = receiptBody(sha256, requestId, decision, key.keyId);
  return { ...body, signature: sign(null, receiptMessage(body), key.privateKey).toString('base64') };
}

const APPROVED: Decision = {
  outcome: 'approved',
  decidedBy: 'reviewers',
  deciders: [{ type: 'operator', id: 'op_1', name: 'alice' }],
  reason: null,
  at: NOW,
  action: 'isolate_host',
  args: { host: 'ws-1' },
  alternative: null,
  modified: false,
};

/** A gateway that answers with whatever decision the test gives it (already decided on create). */
class ScriptedGateway implements AgentGateway {
  reports: Array<{ status: string; error?: string }> = [];
  constructor(
    private readonly decision: Decision,
    private readonly pem: string | null = SERVER.pem,
  ) {}
  request(body: CreateRequestBody): ApprovalRequest {
    return {
      id: ID,
      agentId: 'agt_1',
      agentName: 'bot',
      status: 'approved',
      action: body.action,
      args: body.args ?? {},
      description: null,
      confidence: null,
      riskHint: null,
      context: {},
      alternatives: [],
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
      decision: this.decision,
      execution: null,
      createdAt: NOW,
      updatedAt: NOW,
      expiresAt: null,
    };
  }
  last: ApprovalRequest | undefined;
  async createRequest(body: CreateRequestBody) {
    this.last = this.request(body);
    return { request: this.last, replayed: false };
  }
  async getRequest() {
    return this.last!;
  }
  async reportExecution(_id: string, body: { status: string; error?: string }) {
    this.reports.push(body);
    if (body.status === 'started') return { ...this.last!, status: 'executing' as const, updatedAt: '2026-01-01T00:00:01.000Z' };
    return { ...this.last!, status: 'executed' as const, updatedAt: '2026-01-01T00:00:02.000Z' };
  }
  async cancel() {
    return this.last!;
  }
  async auditPublicKey() {
    if (this.pem === null) throw new CountersignError('NOT_FOUND', 'no route');
    return this.pem;
  }
}

async function run(decision: Decision, options: { pem?: string | null; verifyReceipts?: boolean; auditPublicKey?: string } = {}) {
  const gateway = new ScriptedGateway(decision, options.pem === undefined ? SERVER.pem : options.pem);
  const cs = new Countersign({
    env: {},
    gateway,
    onReportError: () => {},
    ...(options.verifyReceipts !== undefined ? { verifyReceipts: options.verifyReceipts } : {}),
    ...(options.auditPublicKey !== undefined ? { auditPublicKey: options.auditPublicKey } : {}),
  });
  let ran: unknown = null;
  const isolate = cs.guard(
    async (args: { host: string }) => {
      ran = args;
      return 'done';
    },
    { action: 'isolate_host' },
  );
  const outcome = await isolate({ host: 'ws-1' }).then(
    (v) => v,
    (e: unknown) => e,
  );
  return { outcome, ran, gateway };
}

function refused(result: Awaited<ReturnType<typeof run>>, why: RegExp) {
  expect(result.outcome).toBeInstanceOf(CountersignError);
  expect((result.outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
  expect((result.outcome as CountersignError).message).toMatch(why);
  expect(result.ran).toBeNull();
  // Refused before the claim: nothing claimed, nothing reported.
  expect(result.gateway.reports).toEqual([]);
}

describe('guard() runs only what the server signed', () => {
  it('runs a decision with a valid receipt', async () => {
    const result = await run({ ...APPROVED, receipt: receiptFor(ID, APPROVED) });
    expect(result.outcome).toBe('done');
    expect(result.ran).toEqual({ host: 'ws-1' });
  });

  it('refuses a decision without a receipt', async () => {
    refused(await run(APPROVED), /carries no signed receipt/);
  });

  it('refuses a receipt forged with another key, even one claiming the server key id', async () => {
    refused(await run({ ...APPROVED, receipt: receiptFor(ID, APPROVED, MALLORY) }), /signed by key [0-9a-f]{16}, not the server's key/);
    const forged = receiptFor(ID, APPROVED, { ...MALLORY, keyId: SERVER.keyId });
    refused(await run({ ...APPROVED, receipt: forged }), /signature does not verify/);
  });

  it('refuses a receipt replayed from another request', async () => {
    refused(await run({ ...APPROVED, receipt: receiptFor('req_0000000000000000000000othr', APPROVED) }), /issued for req_0000000000000000000000othr/);
  });

  it('refuses an approval of other args carrying the original receipt', async () => {
    const other = { ...APPROVED, args: { host: 'dc-01' } };
    refused(await run({ ...APPROVED, receipt: receiptFor(ID, other) }), /approved action and args differ from the signed ones/);
  });

  it('refuses a receipt whose signed fields were edited', async () => {
    const receipt = receiptFor(ID, APPROVED);
    refused(await run({ ...APPROVED, receipt: { ...receipt, deciders: [{ type: 'operator', id: 'op_2', name: 'bob' }] } }), /signature does not verify/);
    refused(await run({ ...APPROVED, receipt: { ...receipt, outcome: 'rejected' } }), /signature does not verify/);
    // Signed for the decision, but the decision shown was changed afterwards.
    refused(await run({ ...APPROVED, deciders: [{ type: 'operator', id: 'op_2', name: 'bob' }], receipt }), /deciders differ/);
  });

  it('refuses when the server key cannot be had, unless a key is pinned', async () => {
    refused(await run({ ...APPROVED, receipt: receiptFor(ID, APPROVED) }, { pem: null }), /cannot get the server's audit public key/);
    const pinned = await run({ ...APPROVED, receipt: receiptFor(ID, APPROVED) }, { pem: null, auditPublicKey: SERVER.pem });
    expect(pinned.outcome).toBe('done');
    // A pinned key wins over what the server serves.
    refused(await run({ ...APPROVED, receipt: receiptFor(ID, APPROVED) }, { auditPublicKey: MALLORY.pem }), /not the server's key/);
  });

  it('verifyReceipts: false skips the signature check, but a decision without a receipt still has nothing to claim with: nothing runs', async () => {
    refused(await run(APPROVED, { verifyReceipts: false }), /no signed receipt to claim it with/);
    // With a receipt (any signature: not checked here; the server checks it when claiming) it runs.
    const unchecked = await run({ ...APPROVED, receipt: receiptFor(ID, APPROVED, MALLORY) }, { verifyReceipts: false });
    expect(unchecked.outcome).toBe('done');
    expect(unchecked.gateway.reports.map((r) => r.status)).toEqual(['started', 'succeeded']);
  });

  it('handle.decision() checks the receipt as well', async () => {
    const cs = new Countersign({ env: {}, gateway: new ScriptedGateway({ ...APPROVED, receipt: receiptFor(ID, { ...APPROVED, args: { host: 'x' } }) }) });
    const handle = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-1' } });
    await expect(handle.decision()).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    const good = new Countersign({ env: {}, gateway: new ScriptedGateway({ ...APPROVED, receipt: receiptFor(ID, APPROVED) }) });
    await expect((await good.requestApproval({ action: 'isolate_host', args: { host: 'ws-1' } })).decision()).resolves.toMatchObject({ outcome: 'approved' });
  });
});

describe('receipts from a real server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  }, 30_000);
  afterAll(async () => {
    await server.stop();
  });

  it('a reviewer-modified approval runs with the modified args; a proxy that rewrites them is refused', async () => {
    const QUEUED = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 };
    const honest = new Countersign({ env: {}, url: server.url, apiKey: server.agentKey, onReportError: () => {} });
    // A man in the middle that changes the approved host in every response it relays.
    const mitm: FetchLike = async (input, init) => {
      const res = await fetch(input, init);
      const text = await res.text();
      return new Response(text.replaceAll('"host":"ws-043"', '"host":"ws-666"'), { status: res.status, headers: res.headers });
    };
    const tampered = new Countersign({ env: {}, gateway: new HttpGateway({ url: server.url, apiKey: server.agentKey, fetch: mitm }), onReportError: () => {} });

    for (const [cs, expected] of [
      [honest, { host: 'ws-043' }],
      [tampered, null],
    ] as const) {
      let ran: unknown = null;
      const isolate = cs.guard(
        async (args: { host: string }) => {
          ran = args;
          return 'isolated';
        },
        { action: QUEUED.action, confidence: QUEUED.confidence },
      );
      const call = isolate(QUEUED.args).then(
        (v) => v,
        (e: unknown) => e,
      );
      // Approve with modified args as soon as the request shows up in the queue.
      let pending: ApprovalRequest | undefined;
      for (let i = 0; i < 100 && !pending; i++) {
        const queue = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?status=pending');
        pending = queue.body.items.find((r) => r.action === QUEUED.action && r.args.host === 'ws-042');
        if (!pending) await new Promise((r) => setTimeout(r, 50));
      }
      const review = await api(server, `/v1/requests/${pending!.id}/reviews`, { body: { verdict: 'approve', args: { host: 'ws-043' } } });
      expect(review.status).toBe(200);
      const outcome = await call;
      if (expected) {
        expect(outcome).toBe('isolated');
        expect(ran).toEqual(expected);
      } else {
        expect((outcome as CountersignError).code).toBe('RECEIPT_MISMATCH');
        expect(ran).toBeNull();
        // Refused before the claim: the approval stays unclaimed (it runs out at its expiry).
        const after = await api<ApprovalRequest>(server, `/v1/requests/${pending!.id}`);
        expect(after.body.status).toBe('approved');
      }
    }
  }, 60_000);
});

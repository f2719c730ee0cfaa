/**
 * An approval is claimed once, within its validity (issue 12, finding 9: receipts were
 * replayable). Real servers listening on a port, on a real SQLite file and on PostgreSQL; the
 * race runs 50 claims against two server processes sharing one PostgreSQL database.
 *
 * Red team, each a test: replay a receipt, claim with another request's receipt, alter the
 * payload hash, forge with another key, downgrade to version 1, claim with another agent's key
 * or as another operator, claim after the expiry (reading the request never extends it), race 50
 * claims, report before the claim, report twice.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { receiptMessage, type ApprovalRequest, type Receipt, type ReceiptBody } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveServerConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/serve.ts';
import { ENGINES, postgresDatabase, type TestDatabase } from './support/databases.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

const AUTO = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } };
const QUEUED = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 };

type Res<T> = { status: number; body: T };
type ErrorBody = { error: { code: string; message: string; details?: unknown } };

async function call<T = ApprovalRequest>(url: string, token: string, path: string, body?: unknown): Promise<Res<T>> {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

function policyFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-claim-'));
  writeFileSync(join(dir, 'countersign.yaml'), text);
  return join(dir, 'countersign.yaml');
}

async function listen(database: TestDatabase, policy?: string): Promise<RunningServer> {
  const config = resolveServerConfig(
    { database: database.url, port: 0, ...(policy === undefined ? {} : { policy: policyFile(policy) }) },
    database.name === 'postgres' ? { COUNTERSIGN_AUDIT_KEY_PATH: join(mkdtempSync(join(tmpdir(), 'countersign-claim-key-')), 'audit.pem') } : {},
  );
  return startServer(config, () => {});
}

const receiptOf = (r: ApprovalRequest): Receipt => {
  const receipt = r.decision?.receipt;
  if (!receipt) throw new Error(`request ${r.id} carries no receipt`);
  return receipt;
};

describe.each(ENGINES)('claiming an approval once: $name', ({ make }) => {
  let database: TestDatabase;
  let server: RunningServer;
  let url: string;
  let admin: string;
  let agent: string;
  let otherAgent: string;
  let reviewer: string;

  const create = async (body: object = AUTO, token = agent) => (await call(url, token, '/v1/requests', body)).body;
  const claim = (id: string, receipt: unknown, token = agent) => call<ApprovalRequest & ErrorBody>(url, token, `/v1/requests/${id}/execution`, { status: 'started', receipt });
  const report = (id: string, status: 'succeeded' | 'failed', token = agent) => call<ApprovalRequest & ErrorBody>(url, token, `/v1/requests/${id}/execution`, { status, ...(status === 'failed' ? { error: 'boom' } : { result: { ok: true } }) });
  const statusOf = async (id: string) => (await call(url, admin, `/v1/requests/${id}`)).body.status;
  const auditTypes = async (id: string) => (await call<{ items: Array<{ type: string; data: { code?: string } }> }>(url, admin, `/v1/requests/${id}/audit`)).body.items;

  beforeAll(async () => {
    database = make();
    server = await listen(database);
    url = server.url;
    admin = server.bootstrap!.adminToken;
    agent = server.bootstrap!.agentKey;
    otherAgent = (await call<{ key: string }>(url, admin, '/v1/keys', { agent: 'other-bot' })).body.key;
    reviewer = (await call<{ token: string }>(url, admin, '/v1/operators', { name: 'rita', roles: ['reviewer'] })).body.token;
  });
  afterAll(async () => {
    await server.close();
    await database.drop();
  });

  it('signs every runnable approval as a version 2 receipt with a fresh nonce and an expiry of approvalValidFor (1 h by default)', async () => {
    const a = await create();
    const b = await create({ ...AUTO, args: { ip: '203.0.113.8' } });
    const ra = receiptOf(a);
    expect(a.status).toBe('approved');
    expect(ra).toMatchObject({ version: 2, requestId: a.id, outcome: 'approved' });
    expect(ra.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(receiptOf(b).nonce).not.toBe(ra.nonce);
    expect(Date.parse(ra.expiresAt!) - Date.parse(ra.decidedAt)).toBe(60 * 60 * 1000);
    // A rejection is not runnable: a version 1 receipt, nothing to claim.
    const queued = await create(QUEUED);
    const rejected = (await call(url, reviewer, `/v1/requests/${queued.id}/reviews`, { verdict: 'reject', reason: 'no' })).body;
    expect(receiptOf(rejected)).toMatchObject({ version: 1, outcome: 'rejected', payloadHash: null });
    expect(receiptOf(rejected).nonce).toBeUndefined();
  });

  it('claims once (→ executing), refuses the replay with ALREADY_EXECUTED, then takes one report (→ executed)', async () => {
    const r = await create();
    const first = await claim(r.id, receiptOf(r));
    expect(first.status).toBe(200);
    expect(first.body.status).toBe('executing');
    const replay = await claim(r.id, receiptOf(r));
    expect(replay.status).toBe(409);
    expect(replay.body.error.code).toBe('ALREADY_EXECUTED');
    const done = await report(r.id, 'succeeded');
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ status: 'executed', execution: { status: 'succeeded', result: { ok: true } } });
    const again = await report(r.id, 'failed');
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('ALREADY_EXECUTED');
    const afterReport = await claim(r.id, receiptOf(r));
    expect(afterReport.body.error.code).toBe('ALREADY_EXECUTED');
    const entries = await auditTypes(r.id);
    expect(entries.map((e) => e.type).filter((t) => t !== 'claim_refused')).toEqual(['created', 'approved', 'execution_started', 'executed']);
    // Each replay is on the record, once per code and minute (a replaying agent cannot flood the trail).
    expect(entries.filter((e) => e.type === 'claim_refused').map((e) => e.data.code)).toEqual(['ALREADY_EXECUTED']);
  });

  it('records a failed run as execution_failed, and a reviewer-approved request claims the same way', async () => {
    const queued = await create(QUEUED);
    const approved = (await call(url, reviewer, `/v1/requests/${queued.id}/reviews`, { verdict: 'approve', args: { host: 'ws-043' } })).body;
    expect(approved.status).toBe('approved');
    expect(receiptOf(approved).version).toBe(2);
    expect((await claim(queued.id, receiptOf(approved))).body.status).toBe('executing');
    expect((await report(queued.id, 'failed')).body).toMatchObject({ status: 'execution_failed', execution: { status: 'failed', error: 'boom' } });
  });

  it('refuses a report before the claim (ILLEGAL_TRANSITION) and a claim of a pending or rejected request; nothing changes', async () => {
    const r = await create();
    const early = await report(r.id, 'succeeded');
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe('ILLEGAL_TRANSITION');
    expect(await statusOf(r.id)).toBe('approved');

    const pending = await create(QUEUED);
    // A pending request has no receipt of its own: try another request's, re-addressed (the signature breaks) and as is.
    const foreign = receiptOf(await create());
    expect((await claim(pending.id, foreign)).body.error.code).toBe('RECEIPT_MISMATCH');
    expect((await claim(pending.id, { ...foreign, requestId: pending.id })).body.error.code).toBe('RECEIPT_MISMATCH');
    expect(await statusOf(pending.id)).toBe('pending');

    const rejected = (await call(url, reviewer, `/v1/requests/${(await create(QUEUED)).id}/reviews`, { verdict: 'reject', reason: 'no' })).body;
    const refused = await claim(rejected.id, receiptOf(rejected));
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('RECEIPT_MISMATCH'); // a rejection's receipt runs nothing
  });

  describe('red team', () => {
    it("a receipt from another request does not claim this one (and the other one stays claimable)", async () => {
      const mine = await create();
      const other = await create({ ...AUTO, args: { ip: '198.51.100.1' } });
      const res = await claim(mine.id, receiptOf(other));
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('RECEIPT_MISMATCH');
      expect(await statusOf(mine.id)).toBe('approved');
      expect((await claim(other.id, receiptOf(other))).status).toBe(200);
    });

    it('a receipt whose payload hash, nonce, expiry or version was edited does not verify: RECEIPT_MISMATCH, nothing changes', async () => {
      const r = await create();
      const receipt = receiptOf(r);
      const edits: unknown[] = [
        { ...receipt, payloadHash: 'a'.repeat(64) },
        { ...receipt, nonce: 'b'.repeat(32) },
        { ...receipt, expiresAt: '2099-01-01T00:00:00.000Z' },
        { ...receipt, signature: receipt.signature.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) },
        (({ nonce: _n, expiresAt: _e, ...v1 }) => ({ ...v1, version: 1 }))(receipt), // downgrade: strip the expiry
        { ...receipt, version: 1 }, // a version 1 body with version 2 fields is not a receipt at all
        { ...receipt, signature: '!!!' },
      ];
      for (const edited of edits) {
        const res = await claim(r.id, edited);
        expect(res.status, JSON.stringify(edited)).toBe(409);
        expect(res.body.error.code).toBe('RECEIPT_MISMATCH');
      }
      expect(await statusOf(r.id)).toBe('approved');
      expect((await claim(r.id, receipt)).status).toBe(200);
    });

    it('a receipt forged with another Ed25519 key (claiming the server key id) is refused', async () => {
      const r = await create();
      const { signature: _s, ...body } = receiptOf(r);
      const forger = generateKeyPairSync('ed25519').privateKey;
      const forged = { ...body, signature: sign(null, receiptMessage(body as ReceiptBody), forger).toString('base64') };
      const res = await claim(r.id, forged);
      expect(res.body.error.code).toBe('RECEIPT_MISMATCH');
      expect(res.body.error.message).toMatch(/not signed by this server's audit key/);
      const otherKeyId = { ...forged, keyId: '0123456789abcdef' };
      expect((await claim(r.id, otherKeyId)).body.error.code).toBe('RECEIPT_MISMATCH');
      expect(await statusOf(r.id)).toBe('approved');
    });

    it("another agent's key cannot claim or report (404, exactly as for a request that does not exist); an operator who did not file it gets 403", async () => {
      const r = await create();
      const theirs = await claim(r.id, receiptOf(r), otherAgent);
      const missing = await claim('req_00000000000000000000000000', receiptOf(r), otherAgent);
      expect(theirs.status).toBe(404);
      expect(theirs.body.error.code).toBe('NOT_FOUND');
      expect(missing.status).toBe(404);
      expect(theirs.body.error.message.replace(r.id, 'X')).toBe(missing.body.error.message.replace('req_00000000000000000000000000', 'X'));
      expect((await report(r.id, 'succeeded', otherAgent)).status).toBe(404);
      const byOperator = await claim(r.id, receiptOf(r), reviewer);
      expect(byOperator.status).toBe(403);
      expect(byOperator.body.error.code).toBe('FORBIDDEN');
      expect(await statusOf(r.id)).toBe('approved');
      // Nothing about the refused foreign attempts reaches the request's trail.
      expect((await auditTypes(r.id)).map((e) => e.type)).toEqual(['created', 'approved']);
      expect((await claim(r.id, receiptOf(r))).status).toBe(200);
    });

    it('an operator acting as an agent claims what they filed', async () => {
      const r = await create(AUTO, reviewer);
      expect((await claim(r.id, receiptOf(r), reviewer)).body.status).toBe('executing');
    });

    it('race: 50 concurrent claims of one approval, exactly one wins, 49 get ALREADY_EXECUTED, one execution_started', async () => {
      const r = await create();
      const results = await Promise.all(Array.from({ length: 50 }, () => claim(r.id, receiptOf(r))));
      expect(results.filter((x) => x.status === 200)).toHaveLength(1);
      expect(results.filter((x) => x.status === 409 && x.body.error.code === 'ALREADY_EXECUTED')).toHaveLength(49);
      expect((await auditTypes(r.id)).filter((e) => e.type === 'execution_started')).toHaveLength(1);
    });

    it('bad bodies are refused with a code and change nothing', async () => {
      const r = await create();
      const bad: unknown[] = [
        { status: 'started' },
        { status: 'started', receipt: { ...receiptOf(r) }, extra: 1 },
        { status: 'started', receipt: 'nope' },
        { status: 'running', receipt: receiptOf(r) },
        { status: 'succeeded', receipt: receiptOf(r) },
      ];
      for (const body of bad) {
        const res = await call<ErrorBody>(url, agent, `/v1/requests/${r.id}/execution`, body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.error.code).toBe('VALIDATION_FAILED');
      }
      expect(await statusOf(r.id)).toBe('approved');
    });
  });
});

describe.each(ENGINES)('the validity of an approval: $name', ({ make }) => {
  let database: TestDatabase;
  let server: RunningServer;

  beforeAll(async () => {
    database = make();
    server = await listen(database, 'levels:\n  low: { approvalValidFor: 2s }\n  medium: { approvalValidFor: 2s }\n');
  });
  afterAll(async () => {
    await server.close();
    await database.drop();
  });

  it('after approvalValidFor a claim is RECEIPT_EXPIRED (410), reading the request never extends it, and the agent files anew', async () => {
    const agent = server.bootstrap!.agentKey;
    const created = (await call(server.url, agent, '/v1/requests', AUTO)).body;
    const receipt = receiptOf(created);
    expect(Date.parse(receipt.expiresAt!) - Date.parse(receipt.decidedAt)).toBe(2_000);
    // Read it (plain and long-poll) until past the expiry: the stored expiry and the receipt stay as issued.
    while (Date.now() < Date.parse(receipt.expiresAt!) + 200) {
      const read = (await call(server.url, agent, `/v1/requests/${created.id}?waitSeconds=1`)).body;
      expect(read.decision?.receipt).toEqual(receipt);
      await new Promise((r) => setTimeout(r, 150));
    }
    const late = await call<ErrorBody>(server.url, agent, `/v1/requests/${created.id}/execution`, { status: 'started', receipt });
    expect(late.status).toBe(410);
    expect(late.body.error.code).toBe('RECEIPT_EXPIRED');
    expect(late.body.error.code).not.toBe('APPROVAL_EXPIRED');
    // The server's scheduler sweeps the unclaimed approval to its final status (within a tick or two), and the claim stays refused.
    let status = '';
    for (let i = 0; i < 50 && status !== 'lapsed'; i++) {
      status = (await call<{ status: string }>(server.url, agent, `/v1/requests/${created.id}`)).body.status;
      if (status !== 'lapsed') await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe('lapsed');
    expect((await call<ErrorBody>(server.url, agent, `/v1/requests/${created.id}/execution`, { status: 'started', receipt })).body.error.code).toBe('RECEIPT_EXPIRED');
    // Filed anew (no idempotency key), it is a new approval with a new receipt.
    const again = (await call(server.url, agent, '/v1/requests', AUTO)).body;
    expect((await call(server.url, agent, `/v1/requests/${again.id}/execution`, { status: 'started', receipt: receiptOf(again) })).status).toBe(200);
  });
});

describe('two server processes on one PostgreSQL database', () => {
  let database: TestDatabase;
  let a: ServerProcess;
  let b: ServerProcess;

  beforeAll(async () => {
    database = postgresDatabase();
    const env = { COUNTERSIGN_AUDIT_KEY_PATH: join(mkdtempSync(join(tmpdir(), 'countersign-claim-key-')), 'audit.pem') };
    a = await startServerProcess(database.url, env);
    b = await startServerProcess(database.url, env);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await database.drop();
  });

  it('race: 50 claims split across both servers, exactly one wins', async () => {
    const agent = a.bootstrap!.agentKey;
    for (let round = 0; round < 3; round++) {
      const r = (await call(a.url, agent, '/v1/requests', { ...AUTO, args: { ip: `203.0.113.${10 + round}` } })).body;
      const receipt = receiptOf(r);
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => call<ErrorBody>(i % 2 === 0 ? a.url : b.url, agent, `/v1/requests/${r.id}/execution`, { status: 'started', receipt })),
      );
      expect(results.filter((x) => x.status === 200)).toHaveLength(1);
      expect(results.filter((x) => x.status === 409).map((x) => x.body.error.code)).toEqual(Array(49).fill('ALREADY_EXECUTED'));
      const admin = a.bootstrap!.adminToken;
      const trail = (await call<{ items: Array<{ type: string }> }>(b.url, admin, `/v1/requests/${r.id}/audit`)).body.items;
      expect(trail.filter((e) => e.type === 'execution_started')).toHaveLength(1);
    }
  }, 60_000);
});

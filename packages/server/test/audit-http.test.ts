/** The audit routes in process: public key, checkpoints, proofs, export, receipts on decisions; who may call them. */
import { createPublicKey, verify } from 'node:crypto';
import {
  TrailVerifier,
  checkpointMessage,
  fromBase64,
  keyIdOf,
  receiptMessage,
  verifyConsistency,
  verifyInclusion,
  type ApprovalRequest,
  type SignedCheckpoint,
} from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasher, sha256 } from '../src/audit/crypto.ts';
import { createApp } from '../src/http/app.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

let database: TestDatabase;
let t: TestEngine;
let app: ReturnType<typeof createApp>;
let agentKey: string;
let adminToken: string;
let auditorToken: string;

beforeAll(async () => {
  database = sqliteDatabase();
  t = await openTestEngine(database.url);
  app = createApp({ engine: t.engine, log: () => {} });
  agentKey = (await t.engine.createAgentKey(t.admin, 'audit-bot')).key;
  adminToken = (await t.engine.createOperator(t.admin, { name: 'audit-admin', roles: ['admin', 'reviewer'] })).token;
  auditorToken = (await t.engine.createOperator(t.admin, { name: 'audit-auditor', roles: ['auditor'] })).token;
});
afterAll(async () => {
  await t.engine.close();
  await database.drop();
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });
const get = (path: string, token: string) => app.request(path, { headers: auth(token) });
const b64 = (s: string) => fromBase64(s)!;

async function codeOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

async function publicKey() {
  const res = await get('/v1/audit/public-key', agentKey);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('application/x-pem-file');
  const pem = await res.text();
  const key = createPublicKey(pem);
  const keyId = keyIdOf(sha256, new Uint8Array(key.export({ type: 'spki', format: 'der' })));
  expect(res.headers.get('x-countersign-key-id')).toBe(keyId);
  return { key, keyId, pem };
}

describe('audit over HTTP', () => {
  it('serves the public key (PEM) to agents and operators', async () => {
    const { pem, keyId } = await publicKey();
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(keyId).toBe(t.engine.trail.key.keyId);
  });

  it('signs a checkpoint on demand and serves the latest; both verify with the public key', async () => {
    const { key } = await publicKey();
    const signed = await app.request('/v1/audit/checkpoints', { method: 'POST', headers: auth(auditorToken) });
    expect(signed.status).toBe(200);
    const cp = (await signed.json()) as SignedCheckpoint;
    expect(verify(null, checkpointMessage(cp), key, b64(cp.signature))).toBe(true);
    const latest = (await (await get('/v1/audit/checkpoint', agentKey)).json()) as SignedCheckpoint;
    expect(latest).toEqual(cp);
    expect(Object.keys(latest).sort()).toEqual(['keyId', 'rootHash', 'signature', 'timestamp', 'treeSize']);
  });

  it('answers inclusion and consistency proofs that verify against the checkpoint', async () => {
    await t.engine.createRequest(t.agent, { ...AUTO, args: { ...AUTO.args } });
    const cp = (await (await app.request('/v1/audit/checkpoints', { method: 'POST', headers: auth(adminToken) })).json()) as SignedCheckpoint;
    const inc = await get(`/v1/audit/proof/inclusion?seq=3&treeSize=${cp.treeSize}`, auditorToken);
    expect(inc.status).toBe(200);
    const p = (await inc.json()) as { leafIndex: number; treeSize: number; leafHash: string; inclusionPath: string[]; rootHash: string; checkpoint: SignedCheckpoint };
    expect(p.checkpoint).toEqual(cp);
    expect(verifyInclusion(hasher, p.leafIndex, p.treeSize, b64(p.leafHash), p.inclusionPath.map(b64), b64(cp.rootHash)).ok).toBe(true);
    const con = await get(`/v1/audit/proof/consistency?from=2`, auditorToken);
    const q = (await con.json()) as { treeSize1: number; treeSize2: number; rootHash1: string; rootHash2: string; consistencyPath: string[] };
    expect(q.treeSize2).toBe(cp.treeSize);
    expect(verifyConsistency(hasher, q.treeSize1, q.treeSize2, q.consistencyPath.map(b64), b64(q.rootHash1), b64(cp.rootHash)).ok).toBe(true);
  });

  it('streams an export the offline verifier accepts', async () => {
    const { key, keyId } = await publicKey();
    const res = await get('/v1/audit/export', auditorToken);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/x-ndjson');
    const text = await res.text();
    expect(text.endsWith('\n')).toBe(true);
    const verifier = new TrailVerifier({ hasher, keyId, verifySignature: (m, s) => verify(null, m, key, s) });
    for (const line of text.slice(0, -1).split('\n')) verifier.push(line);
    const latest = (await (await get('/v1/audit/checkpoint', auditorToken)).json()) as SignedCheckpoint;
    expect(verifier.finish()).toMatchObject({ ok: true, treeSize: latest.treeSize, rootHash: latest.rootHash });
  });

  it('refuses bad parameters with 400 and keeps the trail to operators', async () => {
    expect(await codeOf(await get('/v1/audit/proof/inclusion?seq=0', auditorToken))).toBe('VALIDATION_FAILED');
    expect(await codeOf(await get('/v1/audit/proof/inclusion?seq=abc', auditorToken))).toBe('VALIDATION_FAILED');
    expect(await codeOf(await get('/v1/audit/proof/inclusion?seq=1&treeSize=99999999', auditorToken))).toBe('VALIDATION_FAILED');
    expect(await codeOf(await get('/v1/audit/proof/consistency?from=5&to=4', auditorToken))).toBe('VALIDATION_FAILED');
    expect(await codeOf(await get('/v1/audit/export?treeSize=99999999', auditorToken))).toBe('VALIDATION_FAILED');
    for (const path of ['/v1/audit/proof/inclusion?seq=1', '/v1/audit/proof/consistency?from=1', '/v1/audit/export']) {
      const res = await get(path, agentKey);
      expect(res.status, path).toBe(403);
    }
    expect((await app.request('/v1/audit/checkpoints', { method: 'POST', headers: auth(agentKey) })).status).toBe(403);
    expect((await app.request('/v1/audit/public-key')).status).toBe(401);
  });

  it('puts a signed receipt on every decision, binding request, payload and deciders', async () => {
    const { key, keyId } = await publicKey();
    const created = await app.request('/v1/requests', {
      method: 'POST',
      headers: { ...auth(agentKey), 'content-type': 'application/json' },
      body: JSON.stringify(QUEUED),
    });
    const { id } = (await created.json()) as ApprovalRequest;
    const reviewed = await app.request(`/v1/requests/${id}/reviews`, {
      method: 'POST',
      headers: { ...auth(adminToken), 'content-type': 'application/json' },
      body: JSON.stringify({ verdict: 'approve', args: { host: 'ws-043' } }),
    });
    const request = (await reviewed.json()) as ApprovalRequest;
    const receipt = request.decision?.receipt;
    expect(receipt).toMatchObject({ version: 2, requestId: id, outcome: 'approved', decidedBy: 'reviewers', keyId, decidedAt: request.decision?.at });
    expect(receipt?.deciders.map((d) => d.name)).toEqual(['audit-admin']);
    const { signature, ...body } = receipt!;
    expect(verify(null, receiptMessage(body), key, b64(signature))).toBe(true);
    expect(body.payloadHash).toBe(sha256Hex(JSON.stringify({ action: 'isolate_host', args: { host: 'ws-043' } })));
    // Replayed onto other args, the signature no longer holds.
    expect(verify(null, receiptMessage({ ...body, payloadHash: sha256Hex('{"action":"isolate_host","args":{"host":"ws-042"}}') }), key, b64(signature))).toBe(false);
    // Policy decisions carry one too, and reading the request again returns the same receipt.
    const auto = (await (await app.request('/v1/requests', { method: 'POST', headers: { ...auth(agentKey), 'content-type': 'application/json' }, body: JSON.stringify(AUTO) })).json()) as ApprovalRequest;
    expect(auto.decision?.receipt?.decidedBy).toBe('policy');
    const again = (await (await get(`/v1/requests/${auto.id}`, agentKey)).json()) as ApprovalRequest;
    expect(again.decision?.receipt).toEqual(auto.decision?.receipt);
  });
});

describe('GET /v1/audit: filters and cursor pagination', () => {
  interface Entry {
    seq: number;
    at: string;
    type: string;
    requestId: string | null;
    actor: { type: string; id: string; name: string };
  }
  interface Page {
    items: Entry[];
    nextCursor: string | null;
  }
  const page = async (query: string, token = auditorToken): Promise<Page> => {
    const res = await get(`/v1/audit?${query}`, token);
    expect(res.status, query).toBe(200);
    return (await res.json()) as Page;
  };
  const all = async (query: string, limit: number): Promise<Entry[]> => {
    const out: Entry[] = [];
    let cursor: string | null = null;
    do {
      const p: Page = await page(`${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(p.items.length).toBeLessThanOrEqual(limit);
      out.push(...p.items);
      cursor = p.nextCursor;
    } while (cursor);
    return out;
  };

  it('pages through the whole trail with a cursor: every entry once, in order', async () => {
    const everything = (await page('limit=1000')).items;
    expect(everything.length).toBeGreaterThan(10);
    const paged = await all('', 3);
    expect(paged.map((e) => e.seq)).toEqual(everything.map((e) => e.seq));
    expect(paged.map((e) => e.seq)).toEqual([...paged.map((e) => e.seq)].sort((a, b) => a - b));
    // The older ?after=SEQ paging still works (the CLI's audit tail uses it).
    const after = await page(`after=${everything[4]!.seq}&limit=2`);
    expect(after.items.map((e) => e.seq)).toEqual([everything[5]!.seq, everything[6]!.seq]);
  });

  it('filters by request, actor (name or id), type and time', async () => {
    const { request } = await t.engine.createRequest(t.agent, { ...QUEUED, args: { ...QUEUED.args } });
    const reviewer = await t.operator('query-reviewer');
    await t.engine.review(reviewer, request.id, { verdict: 'reject', reason: 'not this one' });
    const mine = await all(`requestId=${request.id}`, 2);
    expect(mine.map((e) => e.type)).toEqual(['created', 'queued', 'reviewed', 'rejected']);
    expect(mine.every((e) => e.requestId === request.id)).toBe(true);

    const byName = await all('actor=query-reviewer', 1000);
    expect(byName.length).toBeGreaterThan(0);
    expect(byName.every((e) => e.actor.name === 'query-reviewer')).toBe(true);
    const id = byName[0]!.actor.id;
    expect((await all(`actor=${id}`, 1000)).map((e) => e.seq)).toEqual(byName.map((e) => e.seq));

    const rejected = await all('type=rejected', 1000);
    expect(rejected.length).toBeGreaterThan(0);
    expect(rejected.every((e) => e.type === 'rejected')).toBe(true);

    const created = mine[0]!.at;
    const window = await all(`from=${encodeURIComponent(created)}&to=${Date.parse(created) + 1}&requestId=${request.id}`, 1000);
    expect(window.length).toBeGreaterThan(0);
    expect(window.every((e) => e.at === created)).toBe(true);
    expect((await page(`from=2999-01-01&limit=5`)).items).toEqual([]);
  });

  it('several types at once, and newest first: the same entries as one query per type, in reverse, paged by its own cursor', async () => {
    const { request } = await t.engine.createRequest(t.agent, { ...QUEUED, args: { ...QUEUED.args, n: 'multi' } });
    await t.engine.review(await t.operator('multi-reviewer'), request.id, { verdict: 'reject', reason: 'no' });
    const created = await all('type=created', 1000);
    const rejected = await all('type=rejected', 1000);
    const union = [...created, ...rejected].map((e) => e.seq).sort((a, b) => a - b);
    expect(created.length).toBeGreaterThan(0);
    expect(rejected.length).toBeGreaterThan(0);
    expect((await all('type=created,rejected', 2)).map((e) => e.seq)).toEqual(union);
    expect((await all('type=rejected, created,rejected', 1000)).map((e) => e.seq)).toEqual(union);
    const newest = await all('type=created,rejected&order=newest', 2);
    expect(newest.map((e) => e.seq)).toEqual([...union].reverse());
    const everything = (await page('limit=1000')).items.map((e) => e.seq);
    const first = await page('order=newest&limit=3');
    expect(first.items.map((e) => e.seq)).toEqual(everything.slice(-3).reverse());
    // A cursor pages in the order it was issued for; mixing them is refused, not silently re-read.
    for (const q of [`cursor=${first.nextCursor}`, `order=newest&cursor=${(await page('limit=1')).nextCursor}`, 'order=newest&after=3']) {
      const res = await get(`/v1/audit?${q}`, auditorToken);
      expect(res.status, q).toBe(400);
      expect(await codeOf(res)).toBe('VALIDATION_FAILED');
    }
  });

  it('refuses bad filters and cursors with 400, and agents with 403', async () => {
    const tooMany = Array.from({ length: 21 }, (_, i) => `t${i}`).join(',');
    for (const q of ['cursor=bm9wZQ', 'after=1&cursor=YXVkaXQ6MQ', 'from=yesterday', 'to=2026-13', 'limit=0', 'limit=5000', `type=${tooMany}`, 'type=Created%27--', 'order=sideways']) {
      const res = await get(`/v1/audit?${q}`, auditorToken);
      expect(res.status, q).toBe(400);
      expect(await codeOf(res)).toBe('VALIDATION_FAILED');
    }
    expect((await get('/v1/audit', agentKey)).status).toBe(403);
  });
});

function sha256Hex(text: string): string {
  return Buffer.from(sha256(new TextEncoder().encode(text))).toString('hex');
}

/**
 * The Merkle tree in the store, on both databases: appended in the engine's transactions,
 * right after rollbacks and under concurrency, built for entries older than the tree, and
 * served as checkpoints, proofs and an export that the offline verifier accepts.
 */
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, type Migration } from 'kysely';
import {
  CreateRequestBody,
  MemoryTree,
  TrailVerifier,
  checkpointMessage,
  fromBase64,
  toBase64,
  utf8,
  verifyConsistency,
  verifyInclusion,
} from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ephemeralAuditKey, hasher } from '../src/audit/crypto.ts';
import { leafJsonOf } from '../src/store/trail.ts';
import type { Engine } from '../src/engine/engine.ts';
import { connect } from '../src/store/connect.ts';
import { MIGRATIONS } from '../src/store/migrations/index.ts';
import type { Store } from '../src/store/store.ts';
import { ENGINES, sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

const b64 = (s: string) => fromBase64(s)!;

/** The tree recomputed from the stored entries alone. */
async function recomputed(store: Store): Promise<MemoryTree> {
  const head = await store.trail.head();
  const tree = new MemoryTree(hasher);
  for (const row of await store.trail.entries(1, head.size)) tree.append(hasher.hashLeaf(utf8(leafJsonOf(row))));
  return tree;
}

async function expectConsistentTree(store: Store): Promise<number> {
  // Entries are integrated into the tree after their commit (store/integrator.ts): settle first.
  expect(await store.settleAudit()).toBe(true);
  const head = await store.trail.head();
  const tree = await recomputed(store);
  expect(tree.size, 'tree size is the last seq, entries gapless').toBe(head.size);
  expect(toBase64(head.root())).toBe(toBase64(tree.root()));
  return head.size;
}

async function exportAndVerify(engine: Engine) {
  const verifier = new TrailVerifier({ hasher, keyId: engine.trail.key.keyId, verifySignature: (m, s) => engine.trail.key.verify(m, s) });
  for await (const chunk of engine.trail.exportLines()) for (const line of chunk.split('\n')) verifier.push(line);
  return verifier.finish();
}

describe.each(ENGINES)('audit tree in the store: $name', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;

  beforeAll(async () => {
    database = make();
    t = await openTestEngine(database.url);
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('grows with every audited change, and its root is the recomputed one', async () => {
    const before = await expectConsistentTree(t.engine.store);
    expect(before).toBeGreaterThan(0); // policy_loaded, operator_created, … from bootstrap
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse(QUEUED));
    const bob = await t.operator('bob');
    await t.engine.review(bob, request.id, { verdict: 'approve' });
    expect(await expectConsistentTree(t.engine.store)).toBeGreaterThanOrEqual(before + 5);
  });

  it('stays right when transactions that appended roll back, and under concurrent appends', async () => {
    const store = t.engine.store;
    await store.settleAudit();
    const before = (await store.trail.head()).size;
    const entry = (i: number) => ({ at: 1_700_000_000_000 + i, type: 'test', request_id: null, actor_type: 'system' as const, actor_id: 'system', actor_name: 'test', data: JSON.stringify({ i }) });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        store.transaction(async (tx) => {
          await tx.appendAudit([entry(i), entry(i + 1000)]);
          if (i % 3 === 0) throw new Error('rolled back after appending');
        }),
      ),
    );
    const committed = outcomes.filter((o) => o.status === 'fulfilled').length;
    expect(committed).toBe(26);
    const after = await expectConsistentTree(store);
    expect(after).toBe(before + 2 * committed);
    const rows = await store.trail.entries(before + 1, after);
    expect(rows.map((r) => (JSON.parse(r.data) as { i: number }).i % 1000 % 3 === 0)).not.toContain(true);
  });

  it('signs checkpoints that verify, one per tree size, and only when due', async () => {
    const cp = await t.engine.trail.checkpoint();
    const head = await t.engine.trail.head();
    expect(cp).toMatchObject({ treeSize: head.treeSize, rootHash: head.rootHash, keyId: t.engine.trail.key.keyId });
    expect(t.engine.trail.key.verify(checkpointMessage(cp), b64(cp.signature))).toBe(true);
    expect(await t.engine.trail.checkpoint()).toEqual(cp); // nothing new: the same one
    expect(await t.engine.trail.checkpointIfDue(1, 60_000)).toBeNull();
    await t.engine.createRequest(t.agent, CreateRequestBody.parse(AUTO));
    expect(await t.engine.trail.checkpointIfDue(100, 60_000)).toBeNull(); // 2 new entries: not due by count or age
    const due = await t.engine.trail.checkpointIfDue(2, 60_000);
    expect(due?.treeSize).toBe(cp.treeSize + 2);
  });

  it('serves inclusion and consistency proofs that verify against signed roots', async () => {
    const latest = await t.engine.trail.checkpoint();
    for (const seq of [1, 2, Math.ceil(latest.treeSize / 2), latest.treeSize]) {
      const proof = await t.engine.trail.inclusionProof(seq);
      expect(proof).toMatchObject({ seq, leafIndex: seq - 1, treeSize: latest.treeSize, rootHash: latest.rootHash, checkpoint: latest });
      expect(toBase64(hasher.hashLeaf(utf8(proof.leaf)))).toBe(proof.leafHash);
      expect(verifyInclusion(hasher, proof.leafIndex, proof.treeSize, b64(proof.leafHash), proof.inclusionPath.map(b64), b64(latest.rootHash))).toEqual({ ok: true });
    }
    for (const from of [1, 3, latest.treeSize - 1, latest.treeSize]) {
      const proof = await t.engine.trail.consistencyProof(from);
      expect(proof.rootHash2).toBe(latest.rootHash);
      expect(verifyConsistency(hasher, from, latest.treeSize, proof.consistencyPath.map(b64), b64(proof.rootHash1), b64(proof.rootHash2))).toEqual({ ok: true });
    }
    const tree = await recomputed(t.engine.store);
    const old = await t.engine.trail.inclusionProof(2, 5);
    expect(old.rootHash).toBe(toBase64(tree.root(5)));
    await expect(t.engine.trail.inclusionProof(latest.treeSize + 1)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(t.engine.trail.inclusionProof(1, 10_000_000)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(t.engine.trail.consistencyProof(9, 8)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('exports a trail the offline verifier accepts', async () => {
    const cp = await t.engine.trail.checkpoint();
    const result = await exportAndVerify(t.engine);
    expect(result).toMatchObject({ ok: true, treeSize: cp.treeSize, rootHash: cp.rootHash, checkpoint: cp });
  });

  it('refuses to run with a key other than the one that signed the trail', async () => {
    await t.engine.trail.checkpoint();
    await t.engine.trail.checkKey();
    const other = await (await import('../src/engine/engine.ts')).Engine.open({ connection: await connect(database.url), auditKey: ephemeralAuditKey() });
    try {
      await expect(other.trail.checkKey()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      await other.close();
    }
  });
});

describe('audit migration', () => {
  it('builds the tree for entries written before the tree existed', async () => {
    const database = sqliteDatabase();
    const file = database.url.slice('sqlite:'.length);
    // A database at migration 001 only, with entries, as a deployed server would have it.
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new Database(file) }) });
    const first: Record<string, Migration> = { '001_initial': MIGRATIONS['001_initial']! };
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => first },
      migrationTableName: 'countersign_migrations',
      migrationLockTableName: 'countersign_migrations_lock',
    });
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    const n = 5003;
    const rows = Array.from({ length: n }, (_, i) => ({
      seq: i + 1,
      at: 1_700_000_000_000 + i,
      type: i % 2 ? 'created' : 'approved',
      request_id: `req_${i}`,
      actor_type: 'agent',
      actor_id: 'agt_1',
      actor_name: 'old-bot',
      data: JSON.stringify({ i, text: 'ü' }),
    }));
    for (let i = 0; i < n; i += 500) await db.insertInto('audit_log').values(rows.slice(i, i + 500)).execute();
    await db.updateTable('audit_head').set({ seq: n }).execute();
    await db.destroy();

    const engine = await (await import('../src/engine/engine.ts')).Engine.open({ connection: await connect(database.url) });
    try {
      expect(await expectConsistentTree(engine.store)).toBe(n);
      await engine.activatePolicy((await import('@countersign/core')).DEFAULT_POLICY_YAML, 'test');
      expect(await expectConsistentTree(engine.store)).toBe(n + 1);
      await engine.trail.checkpoint();
      expect(await exportAndVerify(engine)).toMatchObject({ ok: true, treeSize: n + 1 });
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

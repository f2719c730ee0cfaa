/**
 * Review of branch `trail` (issue 14): attacks that should be refused and are not. Each test
 * states the expected (secure) behaviour, so it FAILS on the branch as reviewed.
 */
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactTree, CreateRequestBody, DEFAULT_POLICY_YAML, checkpointMessage, fromBase64Of, toBase64, utf8, type SignedCheckpoint } from '@countersign/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasher, loadOrCreateAuditKey } from '../src/audit/crypto.ts';
import { trustCurrent } from '../src/audit/adopt.ts';
import { fileSignerState, signerStatePath } from '../src/audit/signer-state.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { leafJsonOf } from '../src/store/trail.ts';
import { AUTO } from './support/engine.ts';

let dir: string;
let url: string;
let keyPath: string;
let engine: Engine;
let raw: Connection;
let agent: Principal;

const create = async (n: number) => {
  for (let i = 0; i < n; i++) await engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `198.51.100.${i}` } }));
};

/** The DB writer's rewrite: edit entry `seq`, rebuild every leaf/node hash and the frontier. */
async function rewrite(seq: number): Promise<void> {
  await raw.db.updateTable('audit_log').set({ actor_name: 'mallory' }).where('seq', '=', seq).execute();
  const rows = await raw.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
  const tree = new CompactTree(hasher);
  const nodes: Array<{ level: number; idx: number; hash: string }> = [];
  for (const row of rows) tree.append(hasher.hashLeaf(utf8(leafJsonOf(row))), ({ level, index }, hash) => nodes.push({ level, idx: index, hash: toBase64(hash) }));
  await raw.db.deleteFrom('audit_nodes').execute();
  for (let i = 0; i < nodes.length; i += 500) await raw.db.insertInto('audit_nodes').values(nodes.slice(i, i + 500)).execute();
  await raw.db.updateTable('audit_head').set({ frontier: JSON.stringify(tree.hashes.map(toBase64)) }).where('id', '=', 1).execute();
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-review-trail-'));
  url = `sqlite:${join(dir, 'cs.db')}`;
  keyPath = join(dir, 'countersign-audit-key.pem');
  engine = await Engine.open({ connection: await connect(url), auditKey: loadOrCreateAuditKey(keyPath) });
  await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
  agent = (await engine.authenticate((await engine.bootstrap())!.agentKey))!;
  raw = await connect(url);
});

afterEach(async () => {
  await engine?.close();
  await raw?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('review: trust-current', () => {
  it('refuses to roll an existing signer state back to an older DB checkpoint (else the signer signs a rewritten history)', async () => {
    await create(3);
    const early = await engine.trail.checkpoint();
    await create(3);
    const late = await engine.trail.checkpoint();
    expect(late.treeSize).toBeGreaterThan(early.treeSize);
    // DB writer: rewrite an entry after the early checkpoint (signed in `late`), drop the later checkpoints.
    await rewrite(early.treeSize + 1);
    await raw.db.deleteFrom('audit_checkpoints').where('tree_size', '>', early.treeSize).execute();
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'fork' } });
    // The operator follows "the way past AUDIT_FORK": the state file is intact, so this must be refused.
    const adopted = await trustCurrent({ database: url, auditKey: keyPath, reason: 'healthz degraded' }).then(
      (r) => r,
      () => null,
    );
    // Today it adopts the early checkpoint (rolling the state back from late.treeSize)…
    expect.soft(adopted).toBeNull();
    // …and the signer then signs the rewritten history.
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK' });
  });
});

describe('review: the signer state file', () => {
  it('refuses a state file whose checkpoint is not signed by the key (no forged state, nothing unsigned re-inserted into the DB)', async () => {
    await create(3);
    const cp = await engine.trail.checkpoint();
    // Rewrite a *signed* entry, delete the checkpoints, and write a state that names the forged tree.
    await rewrite(2);
    await raw.db.deleteFrom('audit_checkpoints').execute();
    const head = await engine.trail.head();
    const forged: SignedCheckpoint = { treeSize: head.treeSize, rootHash: head.rootHash, timestamp: cp.timestamp, keyId: cp.keyId, signature: toBase64(new Uint8Array(64)) };
    const statePath = signerStatePath(keyPath);
    const state = { checkpoint: forged, format: 'countersign-signer-state/v1', keyId: cp.keyId, rootHash: head.rootHash, treeSize: head.treeSize };
    writeFileSync(statePath, `${JSON.stringify(state)}\n`, { mode: 0o600 });
    // Expected: state_damaged. Today: the forged state is trusted, and its unsigned checkpoint is put into the DB.
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK' });
  });
});

describe('review: checkpoints in the database the key never signed', () => {
  it('an unsigned checkpoint row far ahead of the tree does not silently stop periodic signing (AUDIT_FORK or a signature)', async () => {
    await create(2);
    await engine.trail.checkpoint();
    const any = await raw.db.selectFrom('audit_checkpoints').selectAll().executeTakeFirstOrThrow();
    await raw.db.insertInto('audit_checkpoints').values({ ...any, tree_size: 1_000_000_000, signature: toBase64(new Uint8Array(64)) }).execute();
    await create(3);
    // Due by both rules (every 1 entry, max age 0): it must sign, or refuse loudly.
    let signed: SignedCheckpoint | null = null;
    let refused = false;
    try {
      signed = await engine.trail.checkpointIfDue(1, 0);
    } catch (err) {
      refused = (err as { code?: string }).code === 'AUDIT_FORK';
    }
    expect(refused || engine.trail.signer.refusal !== null || signed !== null).toBe(true);
  });

  it('an unsigned row pre-inserted at the next size is not returned as the signed checkpoint, and does not keep the witness from hearing of it', async () => {
    await create(2);
    await engine.trail.checkpoint();
    const published: SignedCheckpoint[] = [];
    engine.trail.signer.setHooks({ onSigned: (cp) => void published.push(cp) });
    await create(3);
    const head = await engine.trail.head();
    const any = await raw.db.selectFrom('audit_checkpoints').selectAll().executeTakeFirstOrThrow();
    await raw.db.insertInto('audit_checkpoints').values({ ...any, tree_size: head.treeSize, root_hash: head.rootHash, signature: toBase64(new Uint8Array(64)) }).execute();
    const cp = await engine.trail.checkpoint();
    const sig = fromBase64Of(cp.signature, 64)!;
    expect(engine.trail.key.verify(checkpointMessage(cp), sig)).toBe(true);
    expect(published.map((p) => p.treeSize)).toContain(head.treeSize);
  });
});

describe('review: the state file lock', () => {
  it('a second holder never enters while the first is still inside (a slow holder past 60 s is not "abandoned")', async () => {
    const path = join(dir, 'x.state.json');
    const a = fileSignerState(path);
    const b = fileSignerState(path);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let aInside = false;
    let overlap = false;
    const first = a.locked(async () => {
      aInside = true;
      await gate;
      aInside = false;
    });
    await new Promise((r) => setTimeout(r, 50));
    // The holder is alive and working (e.g. its DB insert is blocked by a row lock the attacker holds).
    const old = (Date.now() - 120_000) / 1000;
    utimesSync(`${path}.lock`, old, old);
    const second = b.locked(async () => {
      if (aInside) overlap = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    release();
    await Promise.all([first, second]);
    expect(overlap).toBe(false);
  });

  it('releasing removes only its own lock file, not a lock another process took since', async () => {
    const path = join(dir, 'y.state.json');
    const a = fileSignerState(path);
    let stolen = false;
    await a.locked(async () => {
      // Another process broke our lock as stale and took its own.
      rmSync(`${path}.lock`);
      writeFileSync(`${path}.lock`, '999999\n', { flag: 'wx' });
      stolen = true;
    });
    expect(stolen).toBe(true);
    expect(existsSync(`${path}.lock`)).toBe(true);
    expect(readFileSync(`${path}.lock`, 'utf8')).toBe('999999\n');
  });
});

describe('review: upgrade from main', () => {
  it('a deployment from before this branch (checkpoints in the DB, no state file yet) keeps signing after the upgrade', async () => {
    await create(3);
    await engine.trail.checkpoint();
    // main never wrote a state file: the same database and key, as they are on upgrade day.
    rmSync(signerStatePath(keyPath));
    await create(2);
    await expect(engine.trail.checkpoint()).resolves.toMatchObject({ treeSize: expect.any(Number) });
  });
});

describe('review: a signer that cannot keep its state is not healthy', () => {
  it('a lock or state write that fails (read-only key mount: EROFS/EACCES) shows in /healthz as degraded, not ok', async () => {
    const keyDir = mkdtempSync(join(tmpdir(), 'cs-review-key-'));
    const other = await Engine.open({ connection: await connect(`sqlite:${join(dir, 'other.db')}`), auditKey: loadOrCreateAuditKey(join(keyDir, 'k.pem')) });
    try {
      await other.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      const a = (await other.authenticate((await other.bootstrap())!.agentKey))!;
      await other.createRequest(a, CreateRequestBody.parse(AUTO));
      rmSync(keyDir, { recursive: true, force: true }); // the key stays loaded; its directory can no longer be written
      await expect(other.trail.checkpoint()).rejects.toBeDefined(); // nothing is signed: good
      expect(other.trail.signer.refusal).not.toBeNull(); // …but /healthz still says ok
    } finally {
      await other.close();
    }
  });
});

/**
 * The audit signer under attack, on real SQLite files and real child processes: by a database
 * writer (rewrites, planted checkpoint rows), by whoever can touch the files next to the key
 * (a forged or deleted state file, a lock broken as "stale"), and by an operator misled into
 * adopting an old checkpoint. The first tests are the independent review's (branch review-trail),
 * each of which failed on the branch as reviewed.
 */
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactTree, CreateRequestBody, DEFAULT_POLICY_YAML, checkpointMessage, fromBase64Of, toBase64, utf8, type SignedCheckpoint } from '@countersign/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasher, loadOrCreateAuditKey } from '../src/audit/crypto.ts';
import { adoptOnUpgrade, trustCurrent } from '../src/audit/adopt.ts';
import { AuditSigner } from '../src/audit/signer.ts';
import { fileSignerState, memorySignerState, signerStateError, signerStatePath, type SignerStateStore } from '../src/audit/signer-state.ts';
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

/** The database as a deployment from before the signer's state file left it: migration 011 not yet run, no state file. */
async function asBeforeUpgrade(): Promise<void> {
  await engine.close();
  rmSync(signerStatePath(keyPath), { force: true });
  await sql`DROP TABLE audit_signer_upgrade`.execute(raw.db);
  await sql`DROP TABLE audit_retention`.execute(raw.db);
  await sql`DELETE FROM countersign_migrations WHERE name = '011_witness'`.execute(raw.db);
}

async function reopen(): Promise<void> {
  engine = await Engine.open({ connection: await connect(url), auditKey: loadOrCreateAuditKey(keyPath) });
  await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
}

const logs: string[] = [];
const log = (line: string) => void logs.push(line);

describe('upgrade from main (the review asked: keeps signing after the upgrade)', () => {
  it('a deployment from before the state file adopts its newest checkpoint once, verified and audited, and keeps signing', async () => {
    await create(3);
    const before = await engine.trail.checkpoint();
    await asBeforeUpgrade();
    await reopen(); // migration 011 runs now, and marks this deployment
    const adopted = await adoptOnUpgrade(engine, engine.store, { witnessDir: null, log });
    expect(adopted).toMatchObject({ treeSize: before.treeSize, rootHash: before.rootHash });
    expect(engine.trail.signer.state.read()).toMatchObject({ treeSize: before.treeSize, rootHash: before.rootHash });
    const [entry] = await engine.store.listAudit({ type: 'audit_state_adopted', limit: 5 });
    expect(JSON.parse(entry!.data)).toMatchObject({ mode: 'upgrade', treeSize: before.treeSize, witness: expect.stringMatching(/^none/), replaced: 'missing' });
    await create(2);
    await expect(engine.trail.checkpoint()).resolves.toMatchObject({ treeSize: expect.any(Number) });
    // Only once: a second start does nothing.
    expect(await adoptOnUpgrade(engine, engine.store, { witnessDir: null, log })).toBeNull();
  });

  it('after the one adoption, deleting the state file stays a refusal — also with the upgrade mark planted again in the database', async () => {
    await create(3);
    await engine.trail.checkpoint();
    await asBeforeUpgrade();
    await reopen();
    expect(await adoptOnUpgrade(engine, engine.store, { witnessDir: null, log })).not.toBeNull();
    await create(2);
    const cp = await engine.trail.checkpoint();
    rmSync(signerStatePath(keyPath));
    expect(await adoptOnUpgrade(engine, engine.store, { witnessDir: null, log })).toBeNull();
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'state_missing' } });
    // The database writer plants the mark again.
    await raw.db.insertInto('audit_signer_upgrade').values({ id: 1, tree_size: cp.treeSize, root_hash: cp.rootHash, created_at: 0 }).execute();
    expect(await adoptOnUpgrade(engine, engine.store, { witnessDir: null, log })).toBeNull();
    expect(logs.join('\n')).toMatch(/already records an adoption/);
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'state_missing' } });
  });

  it('a fresh install (no mark) whose state file is deleted refuses; it never adopts on its own', async () => {
    await create(3);
    await engine.trail.checkpoint();
    rmSync(signerStatePath(keyPath));
    expect(await adoptOnUpgrade(engine, engine.store, { witnessDir: null, log })).toBeNull();
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'state_missing' } });
  });

  it('a trail rewritten in the database before the upgrade is not adopted: the signer keeps refusing', async () => {
    await create(3);
    await engine.trail.checkpoint();
    await asBeforeUpgrade();
    await rewrite(2);
    await reopen();
    expect(await adoptOnUpgrade(engine, engine.store, { witnessDir: null, log })).toBeNull();
    expect(logs.at(-1)).toMatch(/NOT adopting on upgrade/);
    expect(engine.trail.signer.state.read()).toBeNull();
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'state_missing' } });
  });
});

describe('trust-current against an intact state, and without witnesses', () => {
  it('refuses to adopt with no pin at all unless --no-witness says so (and records it)', async () => {
    await create(2);
    await engine.trail.checkpoint();
    rmSync(signerStatePath(keyPath));
    await expect(trustCurrent({ database: url, auditKey: keyPath, reason: 'lost' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringMatching(/--no-witness/) });
    expect(existsSync(signerStatePath(keyPath))).toBe(false);
    const result = await trustCurrent({ database: url, auditKey: keyPath, witness: false, reason: 'lost, and no witness was ever set up' });
    expect(result).toMatchObject({ replaced: 'missing', pinned: 0, pins: [] });
    const [entry] = await engine.store.listAudit({ type: 'audit_state_adopted', limit: 5 });
    expect(JSON.parse(entry!.data)).toMatchObject({ mode: 'trust-current', witness: expect.stringMatching(/--no-witness/), reason: 'lost, and no witness was ever set up' });
  });

  it('with --no-witness too, an intact state is never rolled back to an older checkpoint (AUDIT_FORK), and the state is unchanged', async () => {
    await create(3);
    const early = await engine.trail.checkpoint();
    await create(3);
    const late = await engine.trail.checkpoint();
    await rewrite(early.treeSize + 1);
    await raw.db.deleteFrom('audit_checkpoints').where('tree_size', '>', early.treeSize).execute();
    await expect(trustCurrent({ database: url, auditKey: keyPath, witness: false, reason: 'healthz degraded' })).rejects.toMatchObject({ code: 'AUDIT_FORK', message: expect.stringMatching(/refusing to roll the signer state/) });
    expect(engine.trail.signer.state.read()).toMatchObject({ treeSize: late.treeSize, rootHash: late.rootHash });
    await expect(engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'fork' } });
    expect(await engine.store.listAudit({ type: 'audit_state_adopted', limit: 5 })).toHaveLength(0);
  });

  it('adopts a checkpoint that extends an intact state (another host signed further), pinned to the witness directory by default', async () => {
    await create(2);
    const mine = await engine.trail.checkpoint();
    // Another host with the same key and its own state signs further.
    const other = new AuditSigner(engine.store, engine.trail.key, memorySignerState(), () => Date.now());
    await other.adopt(mine);
    await create(2);
    const theirs = (await other.checkpoint())!;
    expect(theirs.treeSize).toBeGreaterThan(mine.treeSize);
    const witnessDir = join(dir, 'witness');
    const { checkpointNote } = await import('@countersign/core');
    const { writeWitnessNote } = await import('../src/audit/witness.ts');
    const { sha256 } = await import('../src/audit/crypto.ts');
    writeWitnessNote(witnessDir, mine, checkpointNote(sha256, mine, engine.trail.key.noteKey), engine.trail.key.noteKey);
    const saved = process.env.COUNTERSIGN_AUDIT_WITNESS_DIR;
    process.env.COUNTERSIGN_AUDIT_WITNESS_DIR = witnessDir;
    try {
      const result = await trustCurrent({ database: url, auditKey: keyPath, reason: 'catch up with host b' });
      expect(result).toMatchObject({ replaced: 'extended', pinned: 1, pins: [witnessDir], treeSize: theirs.treeSize });
    } finally {
      if (saved === undefined) delete process.env.COUNTERSIGN_AUDIT_WITNESS_DIR;
      else process.env.COUNTERSIGN_AUDIT_WITNESS_DIR = saved;
    }
    expect(engine.trail.signer.state.read()).toMatchObject({ treeSize: theirs.treeSize });
  });
});

describe("another host's checkpoints (same key, its own state)", () => {
  it('adopts a newer checkpoint signed by the key that extends its state', async () => {
    await create(2);
    const mine = await engine.trail.checkpoint();
    const other = new AuditSigner(engine.store, engine.trail.key, memorySignerState(), () => Date.now());
    await other.adopt(mine);
    await create(3);
    const theirs = (await other.checkpoint())!;
    // Not due by its own rule, but it takes the other host's signature as its state.
    expect(await engine.trail.signer.checkpoint({ due: { every: 1_000_000, maxAgeMs: 86_400_000 } })).toBeNull();
    expect(engine.trail.signer.state.read()).toMatchObject({ treeSize: theirs.treeSize, rootHash: theirs.rootHash });
    expect(engine.trail.signer.refusal).toBeNull();
  });

  it('refuses a checkpoint signed by the key for a tree that does not extend its state (AUDIT_FORK), and keeps its state', async () => {
    await create(2);
    const mine = await engine.trail.checkpoint();
    await create(3);
    const head = await engine.trail.head();
    const body = { treeSize: head.treeSize, rootHash: toBase64(new Uint8Array(32).fill(7)), timestamp: new Date().toISOString() };
    const forged: SignedCheckpoint = { ...body, keyId: engine.trail.key.keyId, signature: engine.trail.key.sign(checkpointMessage(body)) };
    await engine.store.trail.insertCheckpoint(forged, Date.now());
    await expect(engine.trail.signer.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'fork' } });
    expect(engine.trail.signer.state.read()).toMatchObject({ treeSize: mine.treeSize });
  });
});

describe('the state is written before anything is published', () => {
  it('a state write that fails publishes nothing and stores no checkpoint (state_io refusal)', async () => {
    await create(2);
    await engine.trail.checkpoint();
    const file = fileSignerState(signerStatePath(keyPath));
    const failing: SignerStateStore = {
      where: file.where,
      read: () => file.read(),
      locked: (fn) => file.locked(fn),
      write: () => {
        throw signerStateError(file.where, `cannot write ${file.where}: ENOSPC: no space left on device`);
      },
    };
    const published: SignedCheckpoint[] = [];
    const signer = new AuditSigner(engine.store, engine.trail.key, failing, () => Date.now(), { onSigned: (cp) => void published.push(cp) });
    await create(2);
    const head = await engine.trail.head();
    await expect(signer.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'state_io' } });
    expect(signer.refusal?.kind).toBe('state_io');
    expect(published).toHaveLength(0);
    expect(await engine.store.trail.checkpointAt(head.treeSize)).toBeUndefined();
  });
});

describe('the state file lock across processes', () => {
  it('two child processes contending for the lock never overlap, and every compare-and-swap step lands', async () => {
    const path = join(dir, 'contended.state.json');
    const logPath = join(dir, 'contended.log');
    writeFileSync(logPath, '');
    const script = fileURLToPath(new URL('./support/lock-contender.ts', import.meta.url));
    const rounds = 15;
    const children = [0, 1].map(() => spawn(process.execPath, ['--import', 'tsx', script, path, logPath, String(rounds)], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'ignore', 'pipe'] }));
    const errors: string[] = [];
    for (const c of children) c.stderr!.on('data', (d: Buffer) => errors.push(d.toString()));
    const codes = await Promise.all(children.map(async (c) => (await once(c, 'exit'))[0] as number));
    expect(errors.join('')).toBe('');
    expect(codes).toEqual([0, 0]);
    const lines = readFileSync(logPath, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(4 * rounds);
    for (let i = 0; i < lines.length; i += 2) {
      const [enter, exit] = [lines[i]!.split(' '), lines[i + 1]!.split(' ')];
      expect(enter[0]).toBe('enter');
      expect(exit).toEqual(['exit', enter[1]]);
    }
    expect(new Set(lines.map((l) => l.split(' ')[1])).size).toBe(2);
    expect(fileSignerState(path).read()?.treeSize).toBe(2 * rounds);
    expect(existsSync(`${path}.lock`)).toBe(false);
  }, 120_000);

  it('a lock whose owner died is broken; a state changed under the lock is not overwritten (compare-and-swap)', async () => {
    const path = join(dir, 'z.state.json');
    writeFileSync(`${path}.lock`, '2147483646 deadbeef\n'); // a pid that does not exist
    const a = fileSignerState(path);
    const root = toBase64(new Uint8Array(32));
    const at = (n: number) => ({ keyId: '0123456789abcdef', treeSize: n, rootHash: root, checkpoint: { treeSize: n, rootHash: root, timestamp: new Date(0).toISOString(), keyId: '0123456789abcdef', signature: toBase64(new Uint8Array(64)) } });
    await a.locked(async () => a.write(at(1), null));
    expect(a.read()?.treeSize).toBe(1);
    await expect(
      a.locked(async () => {
        const seen = a.read();
        writeFileSync(path, readFileSync(path, 'utf8').replaceAll('"treeSize":1', '"treeSize":5')); // someone else wrote meanwhile
        a.write(at(2), seen);
      }),
    ).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringMatching(/changed while this server held its lock/) });
    expect(a.read()?.treeSize).toBe(5);
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

describe('the fork alarm does not depend on the database', () => {
  it('goes to the log and, as a file, to the witness directory even when the database cannot queue it', async () => {
    const { trailPublisher } = await import('../src/audit/publish.ts');
    const { FORK_ALARM } = await import('../src/audit/witness.ts');
    const { readdirSync } = await import('node:fs');
    const witnessDir = join(dir, 'witness-alarm');
    const lines: string[] = [];
    const broken = new Proxy(engine.store, {
      get: (target, prop, receiver) => (prop === 'transaction' ? () => Promise.reject(new Error('database is gone')) : Reflect.get(target, prop, receiver)),
    });
    const hooks = trailPublisher({ store: broken, key: engine.trail.key, policy: () => engine.policy.policy, witnessDir, now: () => Date.now(), log: (l) => void lines.push(l) });
    await hooks.onRefused!({ kind: 'fork', reason: 'the tree of 5 entries does not extend the signed tree of 3', signed: { treeSize: 3, rootHash: 'x' }, database: { treeSize: 5, rootHash: 'y' }, since: Date.now() });
    const alarms = readdirSync(witnessDir).filter((n) => FORK_ALARM.test(n));
    expect(alarms).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(witnessDir, alarms[0]!), 'utf8'))).toMatchObject({ code: 'AUDIT_FORK', kind: 'fork', signed: { treeSize: 3 } });
    expect(lines.join('\n')).toMatch(/AUDIT_FORK: the tree of 5/);
    // The alarm file does not get in the way of pinning to the directory's notes.
    const { readCheckpointNotes } = await import('../src/audit/verify.ts');
    expect(() => readCheckpointNotes([witnessDir], engine.trail.key)).toThrow(/no \.note files/);
  });

  it('a refusal that lasts is reported again, at a bounded rate', async () => {
    const { REFUSAL_RESEND_MS } = await import('../src/audit/signer.ts');
    await create(2);
    await engine.trail.checkpoint();
    rmSync(signerStatePath(keyPath));
    let clock = Date.now();
    const reports: string[] = [];
    const signer = new AuditSigner(engine.store, engine.trail.key, fileSignerState(signerStatePath(keyPath)), () => clock, { onRefused: (r) => void reports.push(r.kind) });
    const attempt = async () => {
      await signer.checkpoint().catch(() => {});
      await new Promise((r) => setTimeout(r, 10));
    };
    await attempt();
    clock += 1000;
    await attempt();
    clock += 1000;
    await attempt();
    expect(reports).toEqual(['state_missing']);
    clock += REFUSAL_RESEND_MS;
    await attempt();
    expect(reports).toEqual(['state_missing', 'state_missing']);
  });
});

/**
 * Witnessed history, on real SQLite files and real PostgreSQL, through the composition root:
 * the signer keeps its state next to its key, publishes every checkpoint as a signed note to the
 * witness directory and to witness webhooks, and refuses to sign a rewritten trail.
 *
 * The three attacks of issue 14, each kept as a test, by someone with write access to the
 * database (a second connection, raw SQL):
 *   (a) edit a signed entry, rebuild every leaf and node hash, delete the checkpoints →
 *       the signer refuses (AUDIT_FORK on every channel, /healthz degraded), and an offline
 *       verify pinned to an earlier witness note catches the forgery even once someone signs it;
 *   (b) delete old entries and set the pruned mark → refused, as no signed statement covers it;
 *   (c) an export cut back to an earlier checkpoint → caught with a pinned later checkpoint.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactTree, CreateRequestBody, DEFAULT_POLICY_YAML, parseCheckpointNote, toBase64, utf8, type SignedCheckpoint, type TrailResult } from '@countersign/core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasher, sha256 } from '../src/audit/crypto.ts';
import { AuditService } from '../src/audit/service.ts';
import { memorySignerState, signerStatePath } from '../src/audit/signer-state.ts';
import { readCheckpointNotes, verifyTrailStream } from '../src/audit/verify.ts';
import { resolveRuntimeConfig } from '../src/config.ts';
import { createApp } from '../src/http/app.ts';
import { openRuntime, type Runtime } from '../src/runtime.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { leafJsonOf } from '../src/store/trail.ts';
import { webhookReceiver, type StandIn } from './support/channel-standins.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO } from './support/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { Engine } from '../src/engine/engine.ts';
import { loadOrCreateAuditKey } from '../src/audit/crypto.ts';

const WEBHOOK_SECRET = `whsec_${Buffer.from('a witness webhook secret, 32 by').toString('base64')}`;

function policy(witnessUrl: string, plainUrl: string): string {
  return DEFAULT_POLICY_YAML.replace(
    /^channels: \{\}$/m,
    `channels:\n  witness: { type: webhook, url: "${witnessUrl}", checkpoints: true, retry: { attempts: 1 } }\n  soc: { type: webhook, url: "${plainUrl}", retry: { attempts: 1 } }`,
  );
}

async function* once(bytes: Uint8Array) {
  yield bytes;
}

describe.each(ENGINES)('witnessed history: $name', ({ make }) => {
  let database: TestDatabase;
  let dir: string;
  let witnessDir: string;
  let runtime: Runtime;
  let raw: Connection;
  let agent: Principal;
  let witness: StandIn;
  let soc: StandIn;
  const logged: string[] = [];

  const exported = async (service = runtime.engine.trail, treeSize?: number): Promise<Buffer> => {
    let text = '';
    for await (const chunk of service.exportLines(treeSize)) text += `${chunk}\n`;
    return Buffer.from(text);
  };
  const verify = (bytes: Uint8Array, pinned: SignedCheckpoint[] = []): Promise<TrailResult> => verifyTrailStream(once(bytes), runtime.engine.trail.key, { pinned });
  const create = async (n: number) => {
    for (let i = 0; i < n; i++) await runtime.engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `198.51.100.${i}` } }));
  };
  const notes = () => readdirSync(witnessDir).sort();
  const health = async () => (await createApp({ engine: runtime.engine, log: () => {} }).request('/healthz')).json() as Promise<Record<string, any>>;

  beforeAll(async () => {
    database = make();
    dir = mkdtempSync(join(tmpdir(), 'cs-witness-'));
    witnessDir = join(dir, 'witness');
    witness = await webhookReceiver();
    soc = await webhookReceiver();
    const config = resolveRuntimeConfig(
      { database: database.url, auditKey: join(dir, 'countersign-audit-key.pem'), tickMs: 50 },
      { COUNTERSIGN_AUDIT_WITNESS_DIR: witnessDir, COUNTERSIGN_WEBHOOK_SECRET: WEBHOOK_SECRET, COUNTERSIGN_AUDIT_CHECKPOINT_SECONDS: '3600', COUNTERSIGN_AUDIT_CHECKPOINT_ENTRIES: '100000' },
    );
    runtime = await openRuntime(config, { policy: { text: policy(witness.url, soc.url), source: 'test' }, log: (line) => logged.push(line) });
    const boot = (await runtime.engine.bootstrap())!;
    agent = (await runtime.engine.authenticate(boot.agentKey))!;
    raw = await connect(database.url);
  }, 60_000);

  afterAll(async () => {
    await runtime?.close();
    await raw?.destroy();
    await witness?.close();
    await soc?.close();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  let first: SignedCheckpoint;

  it('keeps its state next to the key, written before each checkpoint is published, 0600', async () => {
    await create(6);
    const cp = (first = await runtime.engine.trail.checkpoint());
    const statePath = signerStatePath(join(dir, 'countersign-audit-key.pem'));
    expect(statePath).toBe(join(dir, 'countersign-audit-key.state.json'));
    const state = JSON.parse(readFileSync(statePath, 'utf8')) as Record<string, unknown>;
    expect(state).toMatchObject({ format: 'countersign-signer-state/v1', keyId: cp.keyId, treeSize: cp.treeSize, rootHash: cp.rootHash, checkpoint: cp });
    expect(statSync(statePath).mode & 0o077).toBe(0);
    // No temp file or lock is left behind.
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('.lock'))).toEqual([]);
  });

  it('publishes each checkpoint as a signed note: into the witness directory and to witness webhooks only', async () => {
    await create(4);
    const cp = await runtime.engine.trail.checkpoint();
    expect(notes()).toEqual([first.treeSize, cp.treeSize].map((n) => `checkpoint-${String(n).padStart(16, '0')}.note`));
    const text = readFileSync(join(witnessDir, notes().at(-1)!), 'utf8');
    expect(parseCheckpointNote(sha256, text, runtime.engine.trail.key.noteKey)).toEqual({ ok: true, checkpoint: cp });
    runtime.start({ reviewBase: 'http://127.0.0.1:1' });
    await expect.poll(() => witness.received.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
    const events = witness.received.map((r) => JSON.parse(r.body) as { type: string; data: { checkpoint: SignedCheckpoint; note: string } });
    expect(events.every((e) => e.type === 'countersign.audit.checkpoint')).toBe(true);
    expect(events.map((e) => e.data.checkpoint.treeSize)).toContain(cp.treeSize);
    expect(events.find((e) => e.data.checkpoint.treeSize === cp.treeSize)!.data.note).toBe(text);
    expect(soc.received).toEqual([]); // a webhook without `checkpoints: true` is not a witness
    expect(await health()).toMatchObject({ status: 'ok' });
    expect((await health()).audit).toBeUndefined();
  });

  let earlierNote: string;
  let forgedSeq: number;

  it('(a) a signed entry edited, its hashes rebuilt and the checkpoints deleted: the signer refuses (AUDIT_FORK on every channel, /healthz degraded)', async () => {
    earlierNote = join(witnessDir, notes()[0]!);
    await create(3);
    const head = await runtime.engine.trail.head();
    // Who approved: the attacker rewrites the actor of a signed entry…
    const target = await raw.db.selectFrom('audit_log').selectAll().where('type', '=', 'approved').orderBy('seq').limit(1).executeTakeFirstOrThrow();
    forgedSeq = Number(target.seq);
    await raw.db.updateTable('audit_log').set({ actor_name: 'mallory' }).where('seq', '=', target.seq).execute();
    // …rebuilds every leaf and node hash and the frontier from the rows, and deletes the checkpoints.
    const rows = await raw.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
    const tree = new CompactTree(hasher);
    const nodes: Array<{ level: number; idx: number; hash: string }> = [];
    for (const row of rows) tree.append(hasher.hashLeaf(utf8(leafJsonOf(row))), ({ level, index }, hash) => nodes.push({ level, idx: index, hash: toBase64(hash) }));
    expect(tree.size).toBe(head.treeSize);
    await raw.db.deleteFrom('audit_nodes').execute();
    for (let i = 0; i < nodes.length; i += 500) await raw.db.insertInto('audit_nodes').values(nodes.slice(i, i + 500)).execute();
    await raw.db.updateTable('audit_head').set({ frontier: JSON.stringify(tree.hashes.map(toBase64)) }).where('id', '=', 1).execute();
    await raw.db.deleteFrom('audit_checkpoints').execute();

    await expect(runtime.engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', details: { kind: 'fork' } });
    expect(await raw.db.selectFrom('audit_checkpoints').selectAll().execute()).toEqual([]); // nothing was signed
    const h = await health();
    expect(h).toMatchObject({ status: 'degraded', audit: { code: 'AUDIT_FORK', kind: 'fork' } });
    expect(h.audit.reason).toMatch(/does not extend the tree of \d+ entries this signer signed/);
    // On every channel of the policy (the witness webhook and the plain one), once.
    await expect.poll(() => soc.received.length, { timeout: 20_000 }).toBe(1);
    const fork = JSON.parse(soc.received[0]!.body) as { type: string; data: { title: string; reason: string } };
    expect(fork.type).toBe('countersign.guard.audit_fork');
    expect(fork.data.title).toMatch(/^AUDIT_FORK/);
    await expect.poll(() => witness.received.filter((r) => r.body.includes('audit_fork')).length, { timeout: 20_000 }).toBe(1);
    expect(logged.some((l) => l.includes('AUDIT_FORK'))).toBe(true);
    // The background loop keeps refusing; the notice is not repeated.
    await new Promise((r) => setTimeout(r, 1500));
    expect(soc.received.map((r) => (JSON.parse(r.body) as { data: { reason: string } }).data.reason)).toEqual([fork.data.reason]);
    expect((await health()).status).toBe('degraded');
  });

  it('(a) …and once someone signs the forgery anyway (a signer without the state), an offline verify pinned to the earlier witness note catches it', async () => {
    // The old behaviour, or a stolen key on a machine without the state: it signs whatever the database holds.
    const amnesiac = new AuditService(runtime.engine.store, runtime.engine.trail.key, () => Date.now(), memorySignerState());
    await amnesiac.checkpoint();
    const forged = await exported(amnesiac);
    expect(await verify(forged)).toMatchObject({ ok: true }); // alone, the forgery verifies with the public key…
    const pins = readCheckpointNotes([earlierNote], runtime.engine.trail.key);
    const pinned = await verify(forged, pins); // …pinned to what the witness saw, it does not
    expect(pinned).toMatchObject({ ok: false, fault: { code: 'FORK' } });
    if (!pinned.ok) expect(pinned.fault.seq).toBeGreaterThanOrEqual(forgedSeq);
    // The whole witness directory as the pin, the way an auditor would pass it.
    expect(await verify(forged, readCheckpointNotes([witnessDir], runtime.engine.trail.key))).toMatchObject({ ok: false, fault: { code: 'FORK' } });
    // The real signer still refuses, with the forged checkpoint now in the database.
    await expect(runtime.engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK' });
  });
});

describe.each(ENGINES)('signed retention and pinned truncation: $name', ({ make }) => {
  let database: TestDatabase;
  let dir: string;
  let engine: Engine;
  let raw: Connection;
  let agent: Principal;
  let clock = Date.UTC(2025, 0, 1);
  const DAY = 86_400_000;
  let early: SignedCheckpoint;
  let later: SignedCheckpoint;

  const exported = async (treeSize?: number): Promise<Buffer> => {
    let text = '';
    for await (const chunk of engine.trail.exportLines(treeSize)) text += `${chunk}\n`;
    return Buffer.from(text);
  };
  const verify = (bytes: Uint8Array, pinned: SignedCheckpoint[] = []) => verifyTrailStream(once(bytes), engine.trail.key, { pinned });
  const create = async (n: number) => {
    for (let i = 0; i < n; i++) {
      clock += 60_000;
      await engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `203.0.113.${i}` } }));
    }
  };

  beforeAll(async () => {
    database = make();
    dir = mkdtempSync(join(tmpdir(), 'cs-retention-'));
    // A key file, so the signer's state is a real file next to it; a clock this suite moves.
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock, auditKey: loadOrCreateAuditKey(join(dir, 'key.pem')) });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    agent = (await engine.authenticate((await engine.bootstrap())!.agentKey))!;
    raw = await connect(database.url);
    for (let i = 0; i < 3; i++) {
      await create(4);
      early ??= await engine.trail.checkpoint();
      await engine.trail.checkpoint();
    }
    clock += 400 * DAY;
    await create(5);
    later = await engine.trail.checkpoint();
  }, 60_000);

  afterAll(async () => {
    await engine?.close();
    await raw?.destroy();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('(c) an export cut back to an earlier checkpoint verifies alone, and fails pinned to a later one', async () => {
    const cut = await exported(early.treeSize);
    expect(await verify(cut)).toMatchObject({ ok: true, treeSize: early.treeSize });
    expect(await verify(cut, [later])).toMatchObject({ ok: false, fault: { code: 'PIN_NOT_REACHED', seq: early.treeSize + 1 } });
    expect(await verify(await exported(), [early, later])).toMatchObject({ ok: true, pinned: 2 });
  });

  it('retention refuses to sign away entries that were rewritten in the database', async () => {
    const seq = early.treeSize + 1;
    const row = await raw.db.selectFrom('audit_log').select(['seq', 'data']).where('seq', '=', seq).executeTakeFirstOrThrow();
    await raw.db.updateTable('audit_log').set({ data: '{"forged":true}' }).where('seq', '=', seq).execute();
    try {
      await expect(engine.trail.prune(365)).rejects.toMatchObject({ code: 'AUDIT_FORK' });
      expect(await engine.store.trail.prunedTo()).toBe(early.treeSize); // the honest first interval went; the forged one did not
      expect(await raw.db.selectFrom('audit_log').select('seq').where('seq', '=', seq).executeTakeFirst()).toBeDefined();
    } finally {
      await raw.db.updateTable('audit_log').set({ data: row.data }).where('seq', '=', seq).execute();
    }
  });

  let prunedTo = 0;

  it('prunes with a signed statement; the verifier reports the pruning and its date, and counts only entries that exist', async () => {
    await engine.trail.prune(365);
    prunedTo = await engine.store.trail.prunedTo();
    expect(prunedTo).toBeGreaterThan(early.treeSize);
    const statement = await engine.trail.retention();
    expect(statement).toMatchObject({ prunedTo, keyId: engine.trail.key.keyId, timestamp: new Date(clock).toISOString() });
    const result = await verify(await exported());
    expect(result).toMatchObject({ ok: true, prunedTo, prunedAt: new Date(clock).toISOString(), treeSize: later.treeSize, entriesVerified: later.treeSize - prunedTo });
  });

  it('(b) fake retention — old entries deleted and the pruned mark set in the database — is refused', async () => {
    // The attacker removes the next stretch of entries and moves the mark to the end of it.
    const target = later.treeSize - 2;
    const saved = await raw.db.selectFrom('audit_log').selectAll().where('seq', '>', prunedTo).where('seq', '<=', target).execute();
    await raw.db.deleteFrom('audit_log').where('seq', '>', prunedTo).where('seq', '<=', target).execute();
    await raw.db.updateTable('audit_head').set({ pruned_to: target }).where('id', '=', 1).execute();
    await raw.db.insertInto('audit_checkpoints').values({ ...(await raw.db.selectFrom('audit_checkpoints').selectAll().where('tree_size', '=', later.treeSize).executeTakeFirstOrThrow()), tree_size: target }).execute();
    try {
      const unsigned = await verify(await exported(later.treeSize));
      expect(unsigned).toMatchObject({ ok: false, fault: { code: 'UNSIGNED_BASE', line: 2 } });
      // Replaying the genuine statement under the new mark does not cover it either.
      const genuine = await raw.db.selectFrom('audit_retention').selectAll().where('pruned_to', '=', prunedTo).executeTakeFirstOrThrow();
      await raw.db.insertInto('audit_retention').values({ ...genuine, pruned_to: target }).execute();
      const replayed = await verify(await exported(later.treeSize));
      expect(replayed).toMatchObject({ ok: false, fault: { code: 'UNSIGNED_BASE', line: 2 } });
    } finally {
      await raw.db.deleteFrom('audit_retention').where('pruned_to', '=', target).execute();
      await raw.db.deleteFrom('audit_checkpoints').where('tree_size', '=', target).execute();
      await raw.db.updateTable('audit_head').set({ pruned_to: prunedTo }).where('id', '=', 1).execute();
      for (const row of saved) await raw.db.insertInto('audit_log').values(row).execute();
    }
    expect(await verify(await exported())).toMatchObject({ ok: true, prunedTo });
  });
});

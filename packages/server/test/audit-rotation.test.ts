/**
 * Signing-key rotation under attack, on a real SQLite file and a real PostgreSQL schema. Each
 * "server" is an engine with its own key file and state (its own host); two of them share one
 * database. The attacks: a retired key copied back, a key restored from a pre-rotation backup
 * (with the key record deleted too), a second server still on the old key (and racing the
 * rotation), two rotations at once, rotating back to a used key, pruning between the hand-over
 * checkpoints and past them, and exports stripped of their hand-over or re-signed by the old key.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateRequestBody, DEFAULT_POLICY_YAML, canonicalJson, checkpointMessage, checkpointNote, trailCheckpointLine, type SignedCheckpoint } from '@countersign/core';
import { sha256 } from '../src/audit/crypto.ts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadOrCreateAuditKey, publicKeyFromPem, type AuditKey, type PublicAuditKey } from '../src/audit/crypto.ts';
import { rotateSigningKey } from '../src/audit/rotate.ts';
import { fileSignerState, signerStatePath } from '../src/audit/signer-state.ts';
import { readCheckpointNotes, verifyTrailStream } from '../src/audit/verify.ts';
import { trailPublisher } from '../src/audit/publish.ts';
import { writeWitnessNote } from '../src/audit/witness.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO } from './support/engine.ts';

const DAY = 86_400_000;

async function verifyLines(lines: string[], key: PublicAuditKey, pinned: SignedCheckpoint[] = []) {
  return verifyTrailStream(
    (async function* () {
      yield Buffer.from(`${lines.join('\n')}\n`);
    })(),
    key,
    { pinned },
  );
}

async function exportOf(engine: Engine): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of engine.trail.exportLines()) out.push(...chunk.split('\n'));
  return out;
}

describe.each(ENGINES)('audit key rotation on $name', ({ make }) => {
  let db: TestDatabase;
  let root: string;
  let clock: number;
  const opened: Array<Engine | Connection> = [];

  /** A server on its own host: its own directory for the key file and its state. */
  const host = (name: string) => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    return join(dir, 'countersign-audit-key.pem');
  };
  const open = async (key: AuditKey): Promise<Engine> => {
    const engine = await Engine.open({ connection: await connect(db.url), auditKey: key, now: () => clock });
    opened.push(engine);
    return engine;
  };
  /** A server that started: its key checked, the policy active. */
  const serve = async (key: AuditKey): Promise<Engine> => {
    const engine = await open(key);
    await engine.trail.checkKey();
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    return engine;
  };
  const raw = async (): Promise<Connection> => {
    const c = await connect(db.url);
    opened.push(c);
    return c;
  };
  let agent: Principal;
  const create = async (engine: Engine, n: number) => {
    for (let i = 0; i < n; i++) await engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `198.51.100.${i}` } }));
  };
  /** Server A, started, with some history and a checkpoint. */
  const startA = async () => {
    const keyA = loadOrCreateAuditKey(host('a'));
    const a = await open(keyA);
    await a.trail.checkKey();
    await a.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    agent = (await a.authenticate((await a.bootstrap())!.agentKey))!;
    await create(a, 3);
    await a.trail.checkpoint();
    return { a, keyA };
  };
  const rotate = (engine: Engine, next: AuditKey) => rotateSigningKey(engine, engine.store, next, fileSignerState(signerStatePath(next.path!)), { reason: 'yearly rotation' });

  beforeEach(() => {
    db = make();
    root = mkdtempSync(join(tmpdir(), 'cs-rotation-'));
    clock = Date.parse('2026-01-01T00:00:00.000Z');
  });
  afterEach(async () => {
    for (const o of opened.splice(0).reverse()) await (o instanceof Engine ? o.close() : o.destroy()).catch(() => {});
    await db.drop();
    rmSync(root, { recursive: true, force: true });
  });

  it('hands over with a statement signed by both keys, in the trail and as checkpoints; verify pinned to the old key follows it', async () => {
    const { a, keyA } = await startA();
    const keyB = loadOrCreateAuditKey(host('b'));
    const before = (await a.trail.head()).treeSize;
    const { handover, checkpoint } = await rotate(a, keyB);
    expect(handover).toMatchObject({ fromKeyId: keyA.keyId, toKeyId: keyB.keyId, treeSize: before });
    expect(checkpoint.keyId).toBe(keyB.keyId);
    expect(checkpoint.treeSize).toBe(before + 1); // covers the rotation entry
    const b = await serve(keyB);
    const entry = (await b.store.listAudit({ type: 'audit_key_rotated', limit: 5 }))[0]!;
    expect(JSON.parse(entry.data).handover).toEqual(handover); // the whole statement, signatures included, unredacted
    expect((await b.store.trail.checkpointAt(before))!.keyId).toBe(keyA.keyId); // the old key's hand-over checkpoint
    await create(b, 2);
    await b.trail.checkpoint();
    const lines = await exportOf(b);
    const pinnedOld = await verifyLines(lines, publicKeyFromPem(keyA.publicKeyPem));
    expect(pinnedOld).toMatchObject({ ok: true, keys: [keyA.keyId, keyB.keyId], handovers: 1 });
    expect(await verifyLines(lines, publicKeyFromPem(keyB.publicKeyPem))).toMatchObject({ ok: true, keys: [keyA.keyId, keyB.keyId] });
    // The export without its hand-over: the old key's pin reaches nothing the new key signed.
    const stripped = lines.filter((l) => !l.startsWith('{"fromKeyId"'));
    expect(await verifyLines(stripped, publicKeyFromPem(keyA.publicKeyPem))).toMatchObject({ ok: false, fault: { code: 'KEY_MISMATCH' } });
    // A hand-over not signed by the pinned key (an attacker's key "hands over" to B): refused.
    const mallory = loadOrCreateAuditKey(host('mallory'));
    const forgedChain = lines.map((l) => (l.startsWith('{"fromKeyId"') ? canonicalJson({ ...JSON.parse(l), fromKeyId: mallory.keyId }) : l));
    expect(await verifyLines(forgedChain, publicKeyFromPem(keyA.publicKeyPem))).toMatchObject({ ok: false });
  });

  it('a retired key copied back is refused at start, and is never rotated back to', async () => {
    const { a, keyA } = await startA();
    const keyB = loadOrCreateAuditKey(host('b'));
    await rotate(a, keyB);
    // The operator copies the retired key file to a new host and starts a server with it.
    const copied = host('copy');
    copyFileSync(keyA.path!, copied);
    const again = await open(loadOrCreateAuditKey(copied));
    await expect(again.trail.checkKey()).rejects.toMatchObject({ code: 'AUDIT_KEY_RETIRED' });
    // The new key's server cannot hand back to the retired key either.
    const b = await serve(keyB);
    await expect(rotate(b, loadOrCreateAuditKey(copied))).rejects.toMatchObject({ code: 'AUDIT_KEY_CONFLICT' });
    expect((await b.store.auditKeys.current()).map((k) => k.keyId)).toEqual([keyB.keyId]);
  });

  it('a key restored from a pre-rotation backup is refused, even when a database writer deleted the key record', async () => {
    const { a, keyA } = await startA();
    const backup = host('backup');
    copyFileSync(keyA.path!, backup);
    copyFileSync(signerStatePath(keyA.path!), signerStatePath(backup));
    const keyB = loadOrCreateAuditKey(host('b'));
    await rotate(a, keyB);
    const restored = await open(loadOrCreateAuditKey(backup));
    await expect(restored.trail.checkKey()).rejects.toMatchObject({ code: 'AUDIT_KEY_RETIRED' });
    // The attacker also wipes the record and the new key's checkpoints: the trail's own entry still names the retirement.
    const c = await raw();
    await c.db.deleteFrom('audit_keys').execute();
    await c.db.deleteFrom('audit_checkpoints').where('key_id', '=', keyB.keyId).execute();
    await expect(restored.trail.checkKey()).rejects.toMatchObject({ code: 'AUDIT_KEY_RETIRED' });
    // A forged retirement of a key (a row edited to say "handed over", not signed by it) retires nothing: it is a fork alarm.
    const c2 = await raw();
    await c2.db.insertInto('audit_keys').values({ key_id: keyB.keyId, public_key: 'x', handed_over_at: 1, handover: '{}', created_at: 0 }).execute();
    const b = await open(keyB);
    await expect(b.trail.checkKey()).rejects.toMatchObject({ code: 'AUDIT_FORK' });
  });

  it('a second server still on the old key stops signing and says why; nothing it signed after the hand-over is stored', async () => {
    const { a, keyA } = await startA();
    // Server 2 on another host holds a copy of the old key, with its own state.
    const other = host('other');
    copyFileSync(keyA.path!, other);
    const two = await open(loadOrCreateAuditKey(other));
    await two.trail.checkKey();
    await two.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    await create(two, 2);
    const keyB = loadOrCreateAuditKey(host('b'));
    // It races the rotation with its own checkpoints.
    const racing = Promise.allSettled([
      (async () => {
        for (let i = 0; i < 5; i++) {
          await create(two, 1);
          await two.trail.checkpoint();
        }
      })(),
    ]);
    await rotate(a, keyB);
    await racing;
    // A racing checkpoint that ran after the hand-over has already told server 2 its key is
    // retired; then this decision fails closed too. Either way the checkpoint below is refused.
    await create(two, 1).catch((err) => expect(err).toMatchObject({ code: 'AUDIT_KEY_RETIRED' }));
    await expect(two.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_KEY_RETIRED' });
    expect(two.trail.signer.refusal).toMatchObject({ kind: 'key_retired' });
    expect(two.trail.signer.refusal!.reason).toContain(keyB.keyId);
    // …and signs no receipt with it either: its decisions fail closed.
    await expect(two.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: '192.0.2.1' } }))).rejects.toMatchObject({ code: 'AUDIT_KEY_RETIRED' });
    const b = await serve(keyB);
    await b.trail.checkpoint();
    const result = await verifyLines(await exportOf(b), publicKeyFromPem(keyA.publicKeyPem));
    expect(result).toMatchObject({ ok: true, keys: [keyA.keyId, keyB.keyId] });
  });

  it('two rotations at once: exactly one wins, the other changes nothing (AUDIT_KEY_CONFLICT)', async () => {
    const { keyA } = await startA();
    const one = await open(loadOrCreateAuditKey(keyA.path!));
    const copy = host('twin');
    copyFileSync(keyA.path!, copy);
    copyFileSync(signerStatePath(keyA.path!), signerStatePath(copy));
    const two = await open(loadOrCreateAuditKey(copy));
    const [k1, k2] = [loadOrCreateAuditKey(host('n1')), loadOrCreateAuditKey(host('n2'))];
    const results = await Promise.allSettled([rotate(one, k1), rotate(two, k2)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    // The loser lost in the locked compare-and-set, or (had the winner already committed) found its key retired.
    expect(['AUDIT_KEY_CONFLICT', 'AUDIT_KEY_RETIRED']).toContain((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.code);
    const current = await one.store.auditKeys.current();
    expect(current).toHaveLength(1);
    expect([k1.keyId, k2.keyId]).toContain(current[0]!.keyId);
    // The compare-and-set itself: a second retirement of the same key changes nothing.
    const { handover } = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof rotate>>>).value;
    expect(await one.store.auditKeys.retire({ ...handover, toKeyId: 'ffffffffffffffff' })).toBe(false);
    expect((await one.store.listAudit({ type: 'audit_key_rotated', limit: 5 })).length).toBe(1);
  });

  it('retention keeps the hand-over: pruning between the hand-over checkpoints, and past them, still verifies from the old key', async () => {
    const { a, keyA } = await startA();
    const n = (await a.trail.head()).treeSize;
    clock += 400 * DAY; // entries 1…n are old; the rotation entry is new
    const keyB = loadOrCreateAuditKey(host('b'));
    const { checkpoint } = await rotate(a, keyB);
    const b = await serve(keyB);
    await create(b, 2);
    await b.trail.checkpoint();
    await b.trail.prune(365);
    expect(await b.store.trail.prunedTo()).toBe(n); // between the old key's checkpoint (n) and the new key's (n + 1)
    const between = await verifyLines(await exportOf(b), publicKeyFromPem(keyA.publicKeyPem));
    expect(between).toMatchObject({ ok: true, prunedTo: n, keys: [keyA.keyId, keyB.keyId], handovers: 1, handoversPruned: 0 });
    // Later the rotation entry and both hand-over checkpoints age out too.
    clock += 400 * DAY;
    await create(b, 1);
    await b.trail.checkpoint();
    await b.trail.prune(365);
    expect(await b.store.trail.prunedTo()).toBeGreaterThan(checkpoint.treeSize);
    expect((await b.store.auditKeys.all()).map((k) => k.keyId)).toEqual([keyA.keyId, keyB.keyId]);
    const past = await verifyLines(await exportOf(b), publicKeyFromPem(keyA.publicKeyPem));
    expect(past).toMatchObject({ ok: true, keys: [keyA.keyId, keyB.keyId], handovers: 1, handoversPruned: 1 });
  });

  it('an export with a checkpoint the retired key signed after its hand-over is refused (KEY_RETIRED)', async () => {
    const { a, keyA } = await startA();
    const keyB = loadOrCreateAuditKey(host('b'));
    await rotate(a, keyB);
    const b = await serve(keyB);
    await create(b, 2);
    const cp = await b.trail.checkpoint();
    // Whoever still holds the old key re-signs the newest checkpoint with it.
    const body = { treeSize: cp.treeSize, rootHash: cp.rootHash, timestamp: cp.timestamp };
    const forged: SignedCheckpoint = { ...body, keyId: keyA.keyId, signature: keyA.sign(checkpointMessage(body)) };
    const lines = (await exportOf(b)).map((l) => (l === trailCheckpointLine(cp) ? trailCheckpointLine(forged) : l));
    expect(await verifyLines(lines, publicKeyFromPem(keyA.publicKeyPem))).toMatchObject({ ok: false, fault: { code: 'KEY_RETIRED' } });
  });

  it('a witness directory across the rotation: notes of both keys pin the trail from the old key; a note of a key off the chain is refused', async () => {
    const witness = join(root, 'witness');
    const { a, keyA } = await startA();
    a.trail.signer.setHooks(trailPublisher({ store: a.store, key: keyA, policy: () => undefined, witnessDir: witness, now: () => clock, log: () => {} }));
    await create(a, 2);
    await a.trail.checkpoint();
    const keyB = loadOrCreateAuditKey(host('b'));
    await rotateSigningKey(a, a.store, keyB, fileSignerState(signerStatePath(keyB.path!)), { reason: 'rotation', witnessDir: witness });
    const b = await serve(keyB);
    const lines = await exportOf(b);
    const pins = readCheckpointNotes([witness], publicKeyFromPem(keyA.publicKeyPem));
    expect(new Set(pins.map((p) => p.keyId))).toEqual(new Set([keyA.keyId, keyB.keyId]));
    expect(await verifyLines(lines, publicKeyFromPem(keyA.publicKeyPem), pins)).toMatchObject({ ok: true, pinned: pins.length });
    // Mallory drops a statement naming her key and a note she signed into the directory.
    const mallory = loadOrCreateAuditKey(host('mallory'));
    const cp = (await b.trail.latestCheckpoint())!;
    const body = { treeSize: cp.treeSize + 5, rootHash: cp.rootHash, timestamp: cp.timestamp };
    const forged: SignedCheckpoint = { ...body, keyId: mallory.keyId, signature: mallory.sign(checkpointMessage(body)) };
    writeWitnessNote(witness, forged, checkpointNote(sha256, forged, mallory.noteKey), mallory.noteKey);
    const { writeFileSync } = await import('node:fs');
    const fake = { fromKeyId: keyB.keyId, fromPublicKey: 'AAAA', toKeyId: mallory.keyId, toPublicKey: Buffer.from(mallory.noteKey.rawPublicKey).toString('base64'), treeSize: 1, rootHash: cp.rootHash, timestamp: cp.timestamp, fromSignature: 'x', toSignature: 'y', kind: 'handover' };
    writeFileSync(join(witness, `handover-${'9'.padStart(16, '0')}-${keyB.keyId}-${mallory.keyId}.json`), JSON.stringify(fake));
    const withMallory = readCheckpointNotes([witness], publicKeyFromPem(keyA.publicKeyPem));
    expect(await verifyLines(lines, publicKeyFromPem(keyA.publicKeyPem), withMallory)).toMatchObject({ ok: false, fault: { code: 'KEY_MISMATCH' } });
  });
});

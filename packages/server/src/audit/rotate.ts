/**
 * Signing-key rotation (`countersign audit rotate-key`): hands the trail over from the current
 * audit key A to a new key B, so that a verifier or SDK pinned to A can follow it to B, and A
 * never signs again.
 *
 * 1. A signs the head (its last checkpoint, size N).
 * 2. In one transaction, under the rotation lock (PostgreSQL: an advisory lock; SQLite: the write
 *    transaction): the current key must still be A (else AUDIT_KEY_CONFLICT: another rotation
 *    won), B must be a key the trail never used (never handed back to), and the newest
 *    checkpoint must be A's. The hand-over statement (A, B, N, root at N, time) is signed by both
 *    keys; A is retired by a compare-and-set on its record, B recorded, and an
 *    `audit_key_rotated` entry written with the statement.
 * 3. B signs its first checkpoint, extending the tree A handed over (the hand-over checkpoints:
 *    A's at N, B's at the head, which covers the rotation entry), published to the witnesses.
 *
 * The CLI wraps it with the key files: B is written next to A before anything is recorded,
 * then A and its state move aside (`<name>.retired-<keyId>.pem`) and B takes A's path, so
 * servers restarted with the same COUNTERSIGN_AUDIT_KEY_PATH pick B up. Servers still running
 * on A stop signing at their next tick (AUDIT_KEY_RETIRED) and must be restarted with B.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { CountersignError, canonicalJson, checkpointMessage, fromBase64Of, handoverMessage, type HandoverBody, type SignedCheckpoint, type SignedHandover } from '@countersign/core';
import { processEnvironment } from '../config.ts';
import { Engine, openStore } from '../engine/engine.ts';
import type { Store } from '../store/store.ts';
import { connect, parseDatabaseUrl } from '../store/connect.ts';
import { resolveAuditConfig } from './config.ts';
import { loadOrCreateAuditKey, type AuditKey } from './crypto.ts';
import { rawKeyOf } from './keys.ts';
import { trailPublisher } from './publish.ts';
import { AuditSigner } from './signer.ts';
import { fileSignerState, signerStatePath, syncDirectory, type SignerStateStore } from './signer-state.ts';
import { SYSTEM_ACTOR, draft } from './writer.ts';

export interface RotationResult {
  handover: SignedHandover;
  /** The new key's first checkpoint (the second hand-over checkpoint). */
  checkpoint: SignedCheckpoint;
}

/**
 * Steps 1–3 above on an engine opened with the current key. `newState` is where the new key's
 * signer keeps its state (a file next to its key; memory in tests).
 */
export async function rotateSigningKey(
  engine: Engine,
  /** The engine's store (its composition root holds it: rotateKeyCommand, or a test). */
  store: Store,
  next: AuditKey,
  newState: SignerStateStore,
  options: { reason: string; witnessDir?: string | null; log?: (line: string) => void; beforeNewSigner?: () => void },
): Promise<RotationResult> {
  const old = engine.trail.key;
  const reason = options.reason.trim();
  if (reason === '' || reason.length > 500) throw new CountersignError('VALIDATION_FAILED', '--reason: say why, in at most 500 characters');
  if (next.keyId === old.keyId) throw new CountersignError('AUDIT_KEY_CONFLICT', `the new key is the current key ${old.keyId}`);
  await engine.trail.checkKey();
  await engine.trail.checkpoint(); // A's last word: its checkpoint of the head
  const handover = await store.transaction(async (tx) => {
    await tx.auditKeys.lockExclusive();
    const current = await tx.auditKeys.current();
    if (current.length !== 1 || current[0]!.keyId !== old.keyId) {
      throw new CountersignError('AUDIT_KEY_CONFLICT', `the trail's current key is ${current.map((c) => c.keyId).join(', ') || 'unrecorded'}, not ${old.keyId}: another rotation won, or this key is not current; nothing was changed`, { current: current.map((c) => c.keyId) });
    }
    if (await tx.auditKeys.get(next.keyId)) {
      throw new CountersignError('AUDIT_KEY_CONFLICT', `key ${next.keyId} has signed this trail before: a key is never handed back to; use a fresh key`, { keyId: next.keyId });
    }
    const latest = await tx.trail.latestCheckpoint();
    const sig = latest && fromBase64Of(latest.signature, 64);
    if (latest && (latest.keyId !== old.keyId || !sig || !old.verify(checkpointMessage(latest), sig))) {
      throw new CountersignError('AUDIT_KEY_CONFLICT', `the newest checkpoint (size ${latest.treeSize}) is not signed by the current key ${old.keyId}: verify the trail before rotating`);
    }
    const head = latest ?? { treeSize: 0, rootHash: (await engine.trail.head()).rootHash };
    const body: HandoverBody = {
      fromKeyId: old.keyId,
      fromPublicKey: rawKeyOf(old),
      toKeyId: next.keyId,
      toPublicKey: rawKeyOf(next),
      treeSize: head.treeSize,
      rootHash: head.rootHash,
      timestamp: new Date(Math.max(engine.clock(), latest ? Date.parse(latest.timestamp) : 0)).toISOString(),
    };
    const message = handoverMessage(body);
    const signed: SignedHandover = { ...body, fromSignature: old.sign(message), toSignature: next.sign(message) };
    if (!(await tx.auditKeys.retire(signed))) throw new CountersignError('AUDIT_KEY_CONFLICT', `key ${old.keyId} was retired by another rotation meanwhile; nothing was changed`);
    if (!(await tx.auditKeys.insert(next.keyId, rawKeyOf(next), engine.clock()))) throw new CountersignError('AUDIT_KEY_CONFLICT', `key ${next.keyId} is already recorded`);
    await engine.writer.append(tx, [draft('audit_key_rotated', null, SYSTEM_ACTOR, { handover: signed, reason, user: userInfo().username, host: hostname() }, engine.clock())]);
    return signed;
  });
  // Committed: from here on the new key is the trail's, whatever fails next.
  options.beforeNewSigner?.();
  if (options.witnessDir) {
    try {
      writeHandoverFile(options.witnessDir, handover);
    } catch (err) {
      options.log?.(`countersign: the hand-over statement could not be written to the witness directory: ${(err as Error).message}`);
    }
  }
  const now = () => engine.clock();
  const signer = new AuditSigner(store, next, newState, now);
  signer.setHooks(trailPublisher({ store, key: next, policy: () => undefined, witnessDir: options.witnessDir ?? null, now, log: options.log ?? (() => {}) }));
  // The rotation entry is integrated off the commit (store/integrator.ts): settle, so B's first checkpoint covers it.
  await store.settleAudit();
  const checkpoint = (await signer.checkpoint())!;
  return { handover, checkpoint };
}

/** The statement, for witnesses: `handover-<16-digit size>-<from>-<to>.json`, created exclusively. */
function writeHandoverFile(dir: string, h: SignedHandover): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const file = join(dir, `handover-${String(h.treeSize).padStart(16, '0')}-${h.fromKeyId}-${h.toKeyId}.json`);
  const fd = openSync(file, 'wx', 0o644);
  try {
    writeSync(fd, `${canonicalJson({ ...h, kind: 'handover' })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  syncDirectory(dir);
}

export interface RotateKeyResult {
  fromKeyId: string;
  toKeyId: string;
  treeSize: number;
  rootHash: string;
  firstCheckpoint: number;
  keyPath: string;
  retiredKeyPath: string;
}

/** `countersign audit rotate-key`: the key files around `rotateSigningKey`. */
export async function rotateKeyCommand(flags: { database?: string | undefined; auditKey?: string | undefined; reason: string }): Promise<RotateKeyResult> {
  const env = processEnvironment();
  const url = flags.database ?? env.COUNTERSIGN_DATABASE_URL;
  if (!url) throw new CountersignError('VALIDATION_FAILED', 'say which database: --database URL or COUNTERSIGN_DATABASE_URL (the one your servers use)');
  const parsed = parseDatabaseUrl(url);
  if (parsed.dialect === 'sqlite' && (parsed.target === ':memory:' || !existsSync(parsed.target))) {
    throw new CountersignError('VALIDATION_FAILED', `no database at ${parsed.target}: point --database at the one your servers use`);
  }
  const audit = resolveAuditConfig(url, { auditKey: flags.auditKey }, env);
  if (audit.keyPath === null || !existsSync(audit.keyPath)) throw new CountersignError('VALIDATION_FAILED', `no audit key at ${audit.keyPath ?? '(memory)'}: point --audit-key at the key your servers sign with`);
  const keyPath = audit.keyPath;
  const old = loadOrCreateAuditKey(keyPath);
  const name = basename(keyPath).replace(/\.pem$/i, '');
  const dir = dirname(keyPath);
  // The new key is on disk (fsynced) before the database names it.
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const nextPath = join(dir, `${name}.next.pem`);
  if (existsSync(nextPath)) throw new CountersignError('AUDIT_KEY_CONFLICT', `${nextPath} exists: an earlier rotation did not finish; if the database names its key, move it to ${keyPath}, else remove it`);
  const fd = openSync(nextPath, 'wx', 0o600);
  try {
    writeSync(fd, pem);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  syncDirectory(dir);
  const next = loadOrCreateAuditKey(nextPath);
  const retiredKeyPath = join(dir, `${name}.retired-${old.keyId}.pem`);
  const store = openStore({ connection: await connect(url) });
  const engine = await Engine.open({ store, auditKey: old });
  engine.trail.signer.setHooks(trailPublisher({ store, key: old, policy: () => undefined, witnessDir: audit.witnessDir, now: () => engine.clock(), log: () => {} }));
  let committed = false;
  try {
    const result = await rotateSigningKey(engine, store, next, fileSignerState(signerStatePath(keyPath)), {
      reason: flags.reason,
      witnessDir: audit.witnessDir,
      // Committed: A and its state move aside, B takes A's path (its state is written there next).
      beforeNewSigner: () => {
        committed = true;
        renameSync(keyPath, retiredKeyPath);
        if (existsSync(signerStatePath(keyPath))) renameSync(signerStatePath(keyPath), join(dir, `${name}.retired-${old.keyId}.state.json`));
        renameSync(nextPath, keyPath);
        syncDirectory(dir);
      },
    });
    return { fromKeyId: old.keyId, toKeyId: next.keyId, treeSize: result.handover.treeSize, rootHash: result.handover.rootHash, firstCheckpoint: result.checkpoint.treeSize, keyPath, retiredKeyPath };
  } catch (err) {
    if (!committed) rmSync(nextPath, { force: true }); // nothing names it
    throw err;
  } finally {
    await engine.close();
  }
}

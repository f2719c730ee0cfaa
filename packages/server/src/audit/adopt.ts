/**
 * Adopting a verified checkpoint as the audit signer's state — the only ways past a signer whose
 * state file is missing or damaged while the database holds checkpoints (it cannot tell that
 * trail from a rewritten one, so it refuses to sign):
 *
 * - `countersign audit trust-current`: the operator's. It verifies the whole trail the database
 *   holds (every checkpoint's signature and root) and that it extends every pinned witness note —
 *   by default the notes in the configured witness directory (COUNTERSIGN_AUDIT_WITNESS_DIR); with
 *   no pin at all it refuses unless `--no-witness` says the operator vouches for the database.
 * - `adoptOnUpgrade`: once, on the first start after the upgrade that introduced the state file
 *   (migration 011 marks such a deployment with the checkpoint it had signed last). It adopts
 *   exactly that checkpoint, after the same verification, pinned to the witness directory when set.
 *
 * Either way the signer never rolls a readable state back (audit/signer.ts `adopt`), and an
 * `audit_state_adopted` entry records who, how, against which witnesses, and why.
 */
import { existsSync, readdirSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { CountersignError, type SignedCheckpoint } from '@countersign/core';
import { processEnvironment } from '../config.ts';
import { Engine, openStore } from '../engine/engine.ts';
import type { Store } from '../store/store.ts';
import { connect, parseDatabaseUrl } from '../store/connect.ts';
import { resolveAuditConfig } from './config.ts';
import { loadOrCreateAuditKey, type PublicAuditKey } from './crypto.ts';
import { readCheckpointNotes, verifyTrailStream } from './verify.ts';
import { SYSTEM_ACTOR, draft } from './writer.ts';

export interface TrustCurrentResult {
  treeSize: number;
  rootHash: string;
  keyId: string;
  entriesVerified: number;
  pinned: number;
  /** The note files or directories pinned (empty only with --no-witness). */
  pins: string[];
  /** What the adoption replaced: no state, a damaged one, or a state it extends. */
  replaced: 'missing' | 'damaged' | 'extended';
  statePath: string;
}

/** Verifies the trail in the database up to `treeSize` (default: its newest checkpoint) against the pins; the checkpoint it ends at. */
async function verifiedCheckpoint(engine: Engine, key: PublicAuditKey, pins: readonly SignedCheckpoint[], treeSize?: number) {
  const export_ = engine.trail.exportLines(treeSize);
  const result = await verifyTrailStream(
    (async function* () {
      for await (const chunk of export_) yield Buffer.from(`${chunk}\n`);
    })(),
    key,
    { pinned: pins },
  );
  if (!result.ok) {
    throw new CountersignError('AUDIT_VERIFICATION_FAILED', `the trail in the database does not verify, so it is not adopted: ${result.fault.message}`, result.fault);
  }
  if (result.checkpoint === null) throw new CountersignError('VALIDATION_FAILED', 'the database holds no signed checkpoint: there is nothing to adopt (a server signs the first one itself)');
  return { cp: result.checkpoint, entriesVerified: result.entriesVerified, pinned: result.pinned };
}

/** A witness directory with notes in it (a configured one may not have any yet). */
function hasNotes(dir: string | null): dir is string {
  if (dir === null || !existsSync(dir)) return false;
  try {
    return readdirSync(dir).some((n) => n.endsWith('.note'));
  } catch {
    return false;
  }
}

export async function trustCurrent(flags: {
  database?: string | undefined;
  auditKey?: string | undefined;
  checkpoint?: string[] | undefined;
  /** false: `--no-witness`, adopt without any pin (recorded). */
  witness?: boolean | undefined;
  reason: string;
}): Promise<TrustCurrentResult> {
  const env = processEnvironment();
  const url = flags.database ?? env.COUNTERSIGN_DATABASE_URL;
  if (!url) throw new CountersignError('VALIDATION_FAILED', 'say which database: --database URL or COUNTERSIGN_DATABASE_URL (the one your servers use)');
  const parsed = parseDatabaseUrl(url);
  if (parsed.dialect === 'sqlite' && (parsed.target === ':memory:' || !existsSync(parsed.target))) {
    throw new CountersignError('VALIDATION_FAILED', `no database at ${parsed.target}: point --database at the one your servers use`);
  }
  const reason = flags.reason.trim();
  if (reason === '' || reason.length > 500) throw new CountersignError('VALIDATION_FAILED', '--reason: say why, in at most 500 characters');
  const audit = resolveAuditConfig(url, { auditKey: flags.auditKey }, env);
  if (audit.keyPath === null || !existsSync(audit.keyPath)) {
    throw new CountersignError('VALIDATION_FAILED', `no audit key at ${audit.keyPath ?? '(memory)'}: point --audit-key at the key your servers sign with`);
  }
  const noWitness = flags.witness === false;
  if (noWitness && flags.checkpoint !== undefined) throw new CountersignError('VALIDATION_FAILED', '--no-witness and --checkpoint: choose one');
  // Pinned by default to the witness directory the servers publish to.
  const sources = noWitness ? [] : (flags.checkpoint ?? (audit.witnessDir !== null ? [audit.witnessDir] : []));
  if (!noWitness && sources.length === 0) {
    throw new CountersignError(
      'VALIDATION_FAILED',
      'no witness to pin the adoption to: give --checkpoint FILE|DIR (a witness directory), or set COUNTERSIGN_AUDIT_WITNESS_DIR; only if no witness exists, --no-witness adopts what the database holds on your word (recorded in the trail)',
    );
  }
  const key = loadOrCreateAuditKey(audit.keyPath);
  const pins = readCheckpointNotes(sources, key);
  const store = openStore({ connection: await connect(url) });
  const engine = await Engine.open({ store, auditKey: key });
  try {
    await engine.trail.checkKey();
    const { cp, entriesVerified, pinned } = await verifiedCheckpoint(engine, key, pins);
    const adopted = await engine.trail.signer.adopt(cp);
    await store.transaction(async (tx) => {
      // Whoever adopts on upgrade day by hand also settles the upgrade mark.
      await tx.trail.consumeUpgradeMark();
      await engine.writer.append(tx, [
        draft(
          'audit_state_adopted',
          null,
          SYSTEM_ACTOR,
          {
            mode: 'trust-current',
            treeSize: cp.treeSize,
            rootHash: cp.rootHash,
            keyId: cp.keyId,
            pinned,
            pins: sources,
            witness: noWitness ? 'none: --no-witness, the operator vouched for the database' : 'pinned',
            replaced: adopted.replaced,
            previousTreeSize: adopted.previous?.treeSize ?? null,
            reason,
            user: userInfo().username,
            host: hostname(),
          },
          Date.now(),
        ),
      ]);
    });
    return { treeSize: cp.treeSize, rootHash: cp.rootHash, keyId: cp.keyId, entriesVerified, pinned, pins: sources, replaced: adopted.replaced, statePath: engine.trail.signer.state.where };
  } finally {
    await engine.close();
  }
}

/**
 * The first start after the upgrade that introduced the signer's state file: adopts, once, the
 * checkpoint migration 011 recorded (the newest one the deployment had signed), after verifying
 * the whole trail up to it (and against the witness directory, if it holds notes). Returns the
 * adopted checkpoint, or null when there is nothing to do or it cannot be verified (then the
 * signer keeps refusing, and the log says why). A deployment installed with the state file has
 * no mark, and a mark is removed when used, so deleting the state file later stays a refusal.
 */
export async function adoptOnUpgrade(engine: Engine, store: Store, options: { witnessDir: string | null; log: (line: string, level?: 'info' | 'warn') => void }): Promise<SignedCheckpoint | null> {
  const { log } = options;
  const mark = await store.trail.upgradeMark();
  if (!mark) return null;
  let present: boolean;
  try {
    present = engine.trail.signer.state.read() !== null;
  } catch {
    present = true; // damaged: an operator's matter (audit trust-current), not an automatic one
  }
  if (present) {
    await store.trail.consumeUpgradeMark();
    log('countersign: audit signer: the upgrade mark is settled (a state file is already present)', 'info');
    return null;
  }
  const earlier = await store.listAudit({ type: 'audit_state_adopted', limit: 1 });
  if (earlier.length > 0) {
    log('countersign: audit signer: NOT adopting on upgrade: this trail already records an adoption (audit_state_adopted), so a missing state file is a loss, not an upgrade; see countersign audit trust-current');
    return null;
  }
  const witness = hasNotes(options.witnessDir) ? options.witnessDir : null;
  try {
    const pins = readCheckpointNotes(witness ? [witness] : [], engine.trail.key);
    const { cp, entriesVerified, pinned } = await verifiedCheckpoint(engine, engine.trail.key, pins, mark.treeSize);
    if (cp.treeSize !== mark.treeSize || cp.rootHash !== mark.rootHash) {
      throw new CountersignError('AUDIT_VERIFICATION_FAILED', `the newest verified checkpoint (size ${cp.treeSize}) is not the one recorded at the upgrade (size ${mark.treeSize})`);
    }
    const adopted = await engine.trail.signer.adopt(cp);
    await store.transaction(async (tx) => {
      if (!(await tx.trail.consumeUpgradeMark())) return; // another server on this host adopted it first, and recorded it
      await engine.writer.append(tx, [
        draft(
          'audit_state_adopted',
          null,
          SYSTEM_ACTOR,
          {
            mode: 'upgrade',
            treeSize: cp.treeSize,
            rootHash: cp.rootHash,
            keyId: cp.keyId,
            pinned,
            pins: witness ? [witness] : [],
            witness: witness ? 'pinned' : 'none: no witness directory held notes at the upgrade',
            replaced: adopted.replaced,
            previousTreeSize: adopted.previous?.treeSize ?? null,
            reason: `first start after the upgrade that introduced the audit signer's state file (${entriesVerified} entries verified)`,
            user: userInfo().username,
            host: hostname(),
          },
          engine.clock(),
        ),
      ]);
    });
    log(`countersign: audit signer: upgrade: adopted the checkpoint of size ${cp.treeSize} as the signer's state (${engine.trail.signer.state.where}) after verifying ${entriesVerified} entries${pinned > 0 ? ` against ${pinned} witness notes` : ''}`, 'warn');
    return cp;
  } catch (err) {
    log(`countersign: audit signer: NOT adopting on upgrade, the signer keeps refusing: ${(err as Error).message}`);
    return null;
  }
}

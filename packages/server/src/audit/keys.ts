/**
 * Which key may sign this trail: the shell around core's key chain (audit/rotation.ts) and the
 * `audit_keys` record (store/audit-keys.ts).
 *
 * - At start (`requireNewestKey`, from `AuditService.checkKey`) a server refuses to run unless it
 *   holds the newest key the trail names. A key whose retirement the record shows — with a
 *   hand-over statement signed by that very key, so a database writer cannot retire a key by
 *   editing a row — is `AUDIT_KEY_RETIRED`: a retired key copied back, or restored from a backup
 *   taken before the rotation, never signs again. So is a key an `audit_key_rotated` entry in
 *   the trail names as retired, should the record's rows be deleted.
 * - The signer asks `signingProblem` before each signature and in the transaction of each
 *   checkpoint insert, so a second server still on the old key stops signing and says why.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { CountersignError, originProblem, checkHandover, fromBase64Of, keyIdOf, toBase64, type ChainCrypto, type SignedHandover } from '@countersign/core';
import type { AuditKeyQueries, RecordedKey } from '../store/audit-keys.ts';
import type { Queries } from '../store/store.ts';
import { sha256, type PublicAuditKey } from './crypto.ts';

const SPKI_PREFIX = Buffer.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);

/** The SubjectPublicKeyInfo (DER) of a raw Ed25519 key. */
export function spkiOfRaw(raw: Uint8Array): Buffer {
  return Buffer.concat([SPKI_PREFIX, raw]);
}

/** Key ids and Ed25519 verification over raw keys, for following a chain of hand-overs. */
export const chainCrypto: ChainCrypto = {
  keyIdOfRaw: (raw) => keyIdOf(sha256, spkiOfRaw(raw)),
  verify: (raw, message, signature) => {
    try {
      return verify(null, message, createPublicKey({ key: spkiOfRaw(raw), format: 'der', type: 'spki' }), signature);
    } catch {
      return false;
    }
  },
};

/** Base64 of a key's raw public key, as `audit_keys` and hand-overs carry it. */
export function rawKeyOf(key: PublicAuditKey): string {
  return toBase64(key.noteKey.rawPublicKey);
}

/** A verifier for a raw key from the record (to verify old checkpoints after a rotation). */
export function publicKeyOfRaw(base64: string): PublicAuditKey | null {
  const raw = fromBase64Of(base64, 32);
  if (!raw) return null;
  const key = createPublicKey({ key: spkiOfRaw(raw), format: 'der', type: 'spki' });
  const keyId = chainCrypto.keyIdOfRaw(raw);
  return {
    keyId,
    publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(),
    noteKey: { keyId, rawPublicKey: raw },
    verify: (message, signature) => chainCrypto.verify(raw, message, signature),
  };
}

/** The hand-over statements recorded, in chain order (each one verified by both its signatures, else refused). */
export async function recordedHandovers(keys: AuditKeyQueries): Promise<SignedHandover[]> {
  const out: SignedHandover[] = [];
  for (const k of await keys.all()) {
    if (k.handedOverAt === null) continue;
    if (k.handover === null) throw new CountersignError('AUDIT_FORK', `the key record of ${k.keyId} says it was retired, but holds no readable hand-over statement: the record was edited`);
    const check = checkHandover(k.handover, chainCrypto);
    if (!check.ok || k.handover.fromKeyId !== k.keyId) throw new CountersignError('AUDIT_FORK', `the recorded hand-over of key ${k.keyId} does not verify (${check.ok ? 'it names another key' : check.reason}): the record was edited`);
    out.push(k.handover);
  }
  return out;
}

/**
 * Whether `key` may sign now, or why not. Two primary-key reads; with `scanTrail` (at start) it
 * also reads the trail's `audit_key_rotated` entries, in case the record's rows were deleted.
 */
export async function signingProblem(q: Queries, key: PublicAuditKey, options: { scanTrail?: boolean } = {}): Promise<CountersignError | null> {
  const keys = q.auditKeys;
  const mine = await keys.get(key.keyId);
  if (mine?.handedOverAt != null) return retiredError(key, mine);
  const current = await keys.current();
  if (current.length > 1) return new CountersignError('AUDIT_KEY_CONFLICT', `the key record names ${current.length} current audit keys (${current.map((c) => c.keyId).join(', ')}): it was edited; nothing is signed`);
  const newest = current[0];
  if (newest && newest.keyId !== key.keyId) {
    return new CountersignError('AUDIT_KEY_RETIRED', `the newest key this trail names is ${newest.keyId}, but this server holds ${key.keyId}: start it with the newest key's file (COUNTERSIGN_AUDIT_KEY_PATH)`, { keyId: key.keyId, current: newest.keyId });
  }
  if (!options.scanTrail) return null;
  // The record deleted? The trail itself remembers every rotation.
  const rotations = await q.listAudit({ type: 'audit_key_rotated', limit: 1000 });
  for (const row of rotations) {
    let data: { handover?: { fromKeyId?: unknown; toKeyId?: unknown; treeSize?: unknown } } = {};
    try {
      data = JSON.parse(row.data) as typeof data;
    } catch {
      // an unreadable entry: verification names it
    }
    if (data.handover?.fromKeyId === key.keyId) {
      return new CountersignError('AUDIT_KEY_RETIRED', `the audit trail records (entry ${row.seq}) that key ${key.keyId} was handed over to ${String(data.handover.toKeyId)} at tree size ${String(data.handover.treeSize)}, and the key record no longer says so: it was edited. A retired key never signs this trail again`, { keyId: key.keyId, seq: Number(row.seq) });
    }
  }
  if (newest === undefined && rotations.length > 0) {
    return new CountersignError('AUDIT_FORK', `the audit trail records ${rotations.length} key rotation(s), but the key record is empty: it was deleted; nothing is signed`);
  }
  return null;
}

/**
 * At start (review finding: a database writer un-retiring a key after retention pruned its
 * rotation entry): the newest checkpoint and the newest retention statement the database holds
 * were signed by some key; if it is not this one, this key may run only if a chain of hand-overs,
 * each verified by both its signatures (`recordedHandovers`), leads from that key to this one.
 * A row saying a key is current proves nothing; a signature by the newer key proves it existed
 * and signed this trail, so an older key without a signed hand-over back to it stays refused.
 */
export async function newestSignerProblem(q: Queries, key: PublicAuditKey): Promise<CountersignError | null> {
  const latest = await q.trail.latestCheckpoint();
  const prunedTo = await q.trail.prunedTo();
  const retention = prunedTo > 0 ? await q.trail.retentionAt(prunedTo) : undefined;
  const signers = [latest && { what: `checkpoint of size ${latest.treeSize}`, keyId: latest.keyId }, retention && { what: `retention statement to ${prunedTo}`, keyId: retention.keyId }];
  let handovers: SignedHandover[] | null = null;
  for (const s of signers) {
    if (!s || s.keyId === key.keyId) continue;
    handovers ??= await recordedHandovers(q.auditKeys);
    let at = s.keyId;
    const seen = new Set<string>([at]);
    for (;;) {
      const next = handovers.find((h) => h.fromKeyId === at);
      if (!next) {
        return new CountersignError(
          'AUDIT_KEY_RETIRED',
          `the newest ${s.what} in the database is signed by key ${s.keyId}, and no hand-over signed by both keys leads from it to this server's key ${key.keyId}: a key that signed before ${s.keyId} took over never signs this trail again (the key record was edited, or this is an old key restored from a backup); nothing is signed`,
          { keyId: key.keyId, newest: s.keyId },
        );
      }
      at = next.toKeyId;
      if (at === key.keyId) break;
      if (seen.has(at)) return new CountersignError('AUDIT_FORK', `the recorded hand-overs return to key ${at}: the key record was edited; nothing is signed`);
      seen.add(at);
    }
  }
  return null;
}

function retiredError(key: PublicAuditKey, mine: RecordedKey): CountersignError {
  const h = mine.handover;
  // Believed only when the retiring key itself signed it: an edited row cannot retire a key.
  const signed = h !== null && h.fromKeyId === key.keyId && checkHandover(h, chainCrypto).ok;
  if (!signed) return new CountersignError('AUDIT_FORK', `the key record says key ${key.keyId} was retired, but no hand-over signed by it backs that: the record was edited; nothing is signed`, { keyId: key.keyId });
  return new CountersignError(
    'AUDIT_KEY_RETIRED',
    `the audit key ${key.keyId} was retired at tree size ${h.treeSize} (${h.timestamp}) and handed over to ${h.toKeyId}: a retired key never signs this trail again. Start this server with the new key's file (COUNTERSIGN_AUDIT_KEY_PATH), the one \`countersign audit rotate-key\` wrote`,
    { keyId: key.keyId, handedOverTo: h.toKeyId, treeSize: h.treeSize },
  );
}

/**
 * At start: the key must be the newest the trail names; a trail with no record yet (a fresh
 * install, or one from before rotation whose newest checkpoint this key signed — checked by the
 * caller) records it, under the rotation lock.
 */
export async function requireNewestKey(store: { transaction<T>(fn: (tx: Queries) => Promise<T>): Promise<T> } & Queries, key: PublicAuditKey, now: number): Promise<void> {
  const problem = await store.transaction(async (tx) => {
    await tx.auditKeys.lockExclusive();
    const p = (await signingProblem(tx, key, { scanTrail: true })) ?? (await newestSignerProblem(tx, key));
    if (p) return p;
    if ((await tx.auditKeys.current()).length === 0) await tx.auditKeys.insert(key.keyId, rawKeyOf(key), now);
    return null;
  });
  if (problem) throw problem;
}

/**
 * The deployment's checkpoint origin (review finding 12), kept from the first start: the
 * configured one (COUNTERSIGN_AUDIT_ORIGIN), or `countersign/<16 random hex digits>` drawn then.
 * Once kept it is the trail's: a different configured origin later refuses the start, so the
 * witnesses' notes of one trail never change their name.
 */
export async function keepOrigin(keys: AuditKeyQueries, configured: string | null, now: number): Promise<string> {
  if (configured !== null && originProblem(configured) !== null) throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_AUDIT_ORIGIN: ${originProblem(configured)}`);
  const kept = (await keys.origin()) ?? (await keys.keepOrigin(configured ?? `countersign/${randomBytes(8).toString('hex')}`, now));
  if (configured !== null && configured !== kept) {
    throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_AUDIT_ORIGIN is ${configured}, but this trail's checkpoints are signed under ${kept} (kept since its first start); the origin of a trail never changes: unset it, or set it to ${kept}`);
  }
  return kept;
}

/**
 * Signing-key rotation: the hand-over statement and the rules for following a chain of them.
 *
 * A rotation retires key A at tree size N (the newest checkpoint A signed) in favour of key B.
 * The statement names both keys (their ids and raw Ed25519 public keys), N and the root at N,
 * and is signed by BOTH keys over the same bytes: A's signature says "B is my successor", B's
 * says "I take over from A at N" (so a verifier pinned to B can also check A's old
 * checkpoints). A verifier pinned to A follows the chain A → B → C …, and then trusts each key
 * only for the tree sizes it covered: A for checkpoints up to N, B for sizes after N up to its
 * own hand-over, and so on. A checkpoint a retired key signed after its hand-over is refused,
 * and a chain that returns to a key it already used is refused, so a retired key — copied back,
 * or restored from a backup taken before the rotation — can never sign the trail again.
 *
 * Pure: hashing, key ids and signature checks are passed in.
 */
import { z } from 'zod';
import { fromBase64Of, utf8 } from './bytes.ts';

export const HANDOVER_ORIGIN = 'countersign.audit.key-handover/v1';

export interface HandoverBody {
  fromKeyId: string;
  /** Base64 of the retiring key's raw 32-byte Ed25519 public key. */
  fromPublicKey: string;
  toKeyId: string;
  /** Base64 of the new key's raw 32-byte Ed25519 public key. */
  toPublicKey: string;
  /** The tree size the retiring key's authority ends at (its last checkpoint), and the root there. */
  treeSize: number;
  rootHash: string;
  /** ISO 8601 time of the rotation. */
  timestamp: string;
}

export const SignedHandover = z
  .object({
    fromKeyId: z.string().regex(/^[0-9a-f]{16}$/),
    fromPublicKey: z.string(),
    toKeyId: z.string().regex(/^[0-9a-f]{16}$/),
    toPublicKey: z.string(),
    treeSize: z.number().int().min(0),
    rootHash: z.string(),
    timestamp: z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
    /** Base64 Ed25519 signature of `handoverMessage` by the retiring key. */
    fromSignature: z.string(),
    /** The same, by the new key. */
    toSignature: z.string(),
  })
  .strict();
export type SignedHandover = z.infer<typeof SignedHandover>;

/** The most hand-overs a served chain may list (one a year would take a millennium). */
export const MAX_HANDOVERS = 1000;

/** The body of `GET /v1/audit/keys` as a client reads it: checked before any field is read. */
export const ServedKeyChain = z.object({
  current: z.string().regex(/^[0-9a-f]{16}$/),
  handovers: z.array(SignedHandover).max(MAX_HANDOVERS),
});
export type ServedKeyChain = z.infer<typeof ServedKeyChain>;

/** The signed bytes: origin, both keys, the size and root the old key's authority ends at, the time. */
export function handoverMessage(body: HandoverBody): Uint8Array {
  return utf8(`${HANDOVER_ORIGIN}\n${body.fromKeyId} ${body.fromPublicKey}\n${body.toKeyId} ${body.toPublicKey}\n${body.treeSize}\n${body.rootHash}\n${body.timestamp}\n`);
}

export function handoverBody(h: SignedHandover): HandoverBody {
  return { fromKeyId: h.fromKeyId, fromPublicKey: h.fromPublicKey, toKeyId: h.toKeyId, toPublicKey: h.toPublicKey, treeSize: h.treeSize, rootHash: h.rootHash, timestamp: h.timestamp };
}

/** A key of a followed chain and the tree sizes its checkpoints may cover: (`after`, `upTo`]. */
export interface ChainKey {
  keyId: string;
  rawPublicKey: Uint8Array;
  /** Checkpoints by this key cover sizes above this (the previous key's hand-over size; -1 for the first key). */
  after: number;
  /** …and at most this (its own hand-over size); null for the newest key. */
  upTo: number | null;
  /** When it was handed over (the hand-over statement's time); null for the newest key. */
  retiredAt: string | null;
}

export interface ChainCrypto {
  /** The key id of a raw Ed25519 public key (`keyIdOf` over its SubjectPublicKeyInfo). */
  keyIdOfRaw(rawPublicKey: Uint8Array): string;
  verify(rawPublicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
  /** Root hash length (32). */
  hashSize?: number;
}

export type ChainResult = { ok: true; keys: ChainKey[] } | { ok: false; reason: string };

/** Checks one statement on its own: both keys decode and match their ids, both signatures verify. */
export function checkHandover(h: SignedHandover, crypto: ChainCrypto): { ok: true; from: Uint8Array; to: Uint8Array } | { ok: false; reason: string } {
  const parsed = SignedHandover.safeParse(h);
  if (!parsed.success) return { ok: false, reason: 'the hand-over statement is malformed' };
  const from = fromBase64Of(h.fromPublicKey, 32);
  const to = fromBase64Of(h.toPublicKey, 32);
  if (!from || !to) return { ok: false, reason: 'a public key in the hand-over is not 32 bytes of base64' };
  if (!fromBase64Of(h.rootHash, crypto.hashSize ?? 32)) return { ok: false, reason: 'the hand-over root is not a base64 hash' };
  if (crypto.keyIdOfRaw(from) !== h.fromKeyId || crypto.keyIdOfRaw(to) !== h.toKeyId) return { ok: false, reason: 'a key id in the hand-over is not the id of the public key beside it' };
  if (h.fromKeyId === h.toKeyId) return { ok: false, reason: `the hand-over from ${h.fromKeyId} is to the same key` };
  const message = handoverMessage(handoverBody(h));
  const fromSig = fromBase64Of(h.fromSignature, 64);
  const toSig = fromBase64Of(h.toSignature, 64);
  if (!fromSig || !crypto.verify(from, message, fromSig)) return { ok: false, reason: `the hand-over from ${h.fromKeyId} to ${h.toKeyId} is not signed by the retiring key ${h.fromKeyId}` };
  if (!toSig || !crypto.verify(to, message, toSig)) return { ok: false, reason: `the hand-over from ${h.fromKeyId} to ${h.toKeyId} is not signed by the new key ${h.toKeyId}` };
  return { ok: true, from, to };
}

/**
 * Follows the hand-overs (in any order) from the pinned key. The statements must form one line
 * A → B → C … with growing sizes, each signed by both of its keys, never returning to a key
 * already used, and the pinned key must be on it. Hand-overs before the pinned key are followed
 * backwards through their new key's signature (which the pinned key, or a key it took over from,
 * made). Returns every key of the line with the sizes it may sign; a line that forks (two
 * hand-overs from one key), repeats a key, or does not reach the pinned key is refused.
 */
export function followKeyChain(pinned: { keyId: string; rawPublicKey: Uint8Array }, handovers: readonly SignedHandover[], crypto: ChainCrypto): ChainResult {
  if (crypto.keyIdOfRaw(pinned.rawPublicKey) !== pinned.keyId) return { ok: false, reason: 'the pinned key id is not the id of the pinned public key' };
  const byFrom = new Map<string, SignedHandover>();
  const byTo = new Map<string, SignedHandover>();
  for (const h of handovers) {
    const check = checkHandover(h, crypto);
    if (!check.ok) return check;
    if (byFrom.has(h.fromKeyId)) return { ok: false, reason: `two hand-overs from key ${h.fromKeyId}: the chain forks` };
    if (byTo.has(h.toKeyId)) return { ok: false, reason: `two hand-overs to key ${h.toKeyId}: a key was handed back to` };
    byFrom.set(h.fromKeyId, h);
    byTo.set(h.toKeyId, h);
  }
  // Walk back to the first key, then forward, so the whole line is in order.
  let first = pinned.keyId;
  const seenBack = new Set([first]);
  for (let h = byTo.get(first); h; h = byTo.get(first)) {
    first = h.fromKeyId;
    if (seenBack.has(first)) return { ok: false, reason: `the hand-overs return to key ${first}: a key was handed back to` };
    seenBack.add(first);
  }
  const keys: ChainKey[] = [];
  const used = new Set<string>();
  let current = first;
  let raw: Uint8Array = first === pinned.keyId ? pinned.rawPublicKey : fromBase64Of(byFrom.get(first)!.fromPublicKey, 32)!;
  let after = -1;
  for (;;) {
    if (used.has(current)) return { ok: false, reason: `the hand-overs return to key ${current}: a key was handed back to` };
    used.add(current);
    const next = byFrom.get(current);
    if (!next) {
      keys.push({ keyId: current, rawPublicKey: raw, after, upTo: null, retiredAt: null });
      break;
    }
    if (next.treeSize < after) return { ok: false, reason: `the hand-over from ${current} at size ${next.treeSize} comes before the hand-over to it (size ${after})` };
    if (keys.length > 0 && next.treeSize === after) return { ok: false, reason: `key ${current} hands over at the size it took over at (${after}): it covered nothing` };
    keys.push({ keyId: current, rawPublicKey: raw, after, upTo: next.treeSize, retiredAt: next.timestamp });
    after = next.treeSize;
    current = next.toKeyId;
    raw = fromBase64Of(next.toPublicKey, 32)!;
  }
  if (!used.has(pinned.keyId)) return { ok: false, reason: `the hand-overs do not lead from the pinned key ${pinned.keyId}` };
  if (used.size !== byFrom.size + 1) return { ok: false, reason: `some hand-overs are not on the line through the pinned key ${pinned.keyId}` };
  return { ok: true, keys };
}

/** The key whose checkpoints may cover `treeSize` (each size has exactly one). */
export function keyForSize(keys: readonly ChainKey[], treeSize: number): ChainKey | undefined {
  return keys.find((k) => treeSize > k.after && (k.upTo === null || treeSize <= k.upTo));
}

/** Why `keyId` may not sign a checkpoint of `treeSize` under this chain, or null if it may. */
export function checkpointKeyProblem(keys: readonly ChainKey[], keyId: string, treeSize: number): string | null {
  const key = keys.find((k) => k.keyId === keyId);
  if (!key) return `key ${keyId} is not on the followed key chain (${keys.map((k) => k.keyId).join(' → ')})`;
  if (key.upTo !== null && treeSize > key.upTo) return `key ${keyId} was retired at tree size ${key.upTo} (handed over to ${keys[keys.indexOf(key) + 1]?.keyId}), but signed a checkpoint for size ${treeSize}: a retired key signed after its hand-over`;
  if (treeSize <= key.after) return `key ${keyId} took over at tree size ${key.after}, but signed a checkpoint for size ${treeSize}, before it`;
  return null;
}

/**
 * Whether `keyId` may have signed a retention statement pruning to `prunedTo`: the newest key may
 * prune anything it covers; a retired key only what it had itself covered (up to its hand-over),
 * and only in a statement dated no later than its hand-over.
 */
export function retentionKeyProblem(keys: readonly ChainKey[], keyId: string, prunedTo: number, timestamp?: string): string | null {
  const key = keys.find((k) => k.keyId === keyId);
  if (!key) return `key ${keyId} is not on the followed key chain`;
  if (key.upTo !== null && prunedTo > key.upTo) return `the retention statement to ${prunedTo} is signed by key ${keyId}, retired at ${key.upTo}`;
  // A retired key signs nothing after its hand-over: a statement dated later is a stolen key's.
  if (key.retiredAt !== null && (timestamp === undefined || !(Date.parse(timestamp) <= Date.parse(key.retiredAt)))) {
    return `the retention statement to ${prunedTo} is signed by key ${keyId} at ${timestamp ?? 'no stated time'}, after its hand-over at ${key.retiredAt}: a retired key signs nothing after it`;
  }
  return null;
}

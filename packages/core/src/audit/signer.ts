/**
 * The signer's own memory of what it has signed, and the one rule it signs by: a new tree must
 * be a consistent extension (RFC 9162 consistency proof) of the last tree it signed. The state is
 * kept by the shell outside the database, next to the key, so someone who can rewrite the
 * database (entries, tree nodes, checkpoints) cannot make the signer forget what it signed.
 *
 * Pure: the shell reads the state file, fetches proofs from the store, and asks here.
 */
import { canonicalJson } from '../canonical.ts';
import { fromBase64Of, toBase64 } from './bytes.ts';
import { verifyConsistency, type MerkleHasher } from './merkle.ts';
import { SignedCheckpoint } from './signed.ts';

export const SIGNER_STATE_FORMAT = 'countersign-signer-state/v1';

/** A tree the signer has signed (or adopted): its size and root. */
export interface TreeHead {
  treeSize: number;
  /** Base64 root hash. */
  rootHash: string;
}

export interface SignerState extends TreeHead {
  /** The key this state belongs to: a state is never carried over to another key (rotation hands over explicitly). */
  keyId: string;
  /** The checkpoint signed (or adopted) at `treeSize`; null only for the empty start. */
  checkpoint: SignedCheckpoint | null;
}

export function signerStateJson(state: SignerState): string {
  return `${canonicalJson({
    checkpoint: state.checkpoint === null ? null : { ...state.checkpoint },
    format: SIGNER_STATE_FORMAT,
    keyId: state.keyId,
    rootHash: state.rootHash,
    treeSize: state.treeSize,
  })}\n`;
}

export type SignerStateParse = { ok: true; state: SignerState } | { ok: false; reason: string };

/** Parses a state file strictly: a damaged state is refused, never read as "nothing signed yet". */
export function parseSignerState(text: string, hashSize = 32): SignerStateParse {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'not a JSON object' };
  const v = value as Record<string, unknown>;
  if (v.format !== SIGNER_STATE_FORMAT) return { ok: false, reason: `not a ${SIGNER_STATE_FORMAT} file` };
  if (Object.keys(v).length !== 5) return { ok: false, reason: 'unexpected fields' };
  if (typeof v.keyId !== 'string' || !/^[0-9a-f]{16}$/.test(v.keyId)) return { ok: false, reason: 'bad keyId' };
  if (typeof v.treeSize !== 'number' || !Number.isSafeInteger(v.treeSize) || v.treeSize < 0) return { ok: false, reason: 'bad treeSize' };
  if (!fromBase64Of(v.rootHash, hashSize)) return { ok: false, reason: 'bad rootHash' };
  let checkpoint: SignedCheckpoint | null = null;
  if (v.checkpoint !== null) {
    const cp = SignedCheckpoint.strict().safeParse(v.checkpoint);
    if (!cp.success) return { ok: false, reason: 'bad checkpoint' };
    checkpoint = cp.data;
    if (checkpoint.treeSize !== v.treeSize || checkpoint.rootHash !== v.rootHash || checkpoint.keyId !== v.keyId) {
      return { ok: false, reason: 'the checkpoint does not match the state' };
    }
  } else if (v.treeSize !== 0) {
    return { ok: false, reason: 'a non-empty state needs its checkpoint' };
  }
  return { ok: true, state: { keyId: v.keyId, treeSize: v.treeSize, rootHash: v.rootHash as string, checkpoint } };
}

/** The state before anything is signed: the empty tree. */
export function emptySignerState(hasher: MerkleHasher, keyId: string): SignerState {
  return { keyId, treeSize: 0, rootHash: toBase64(hasher.emptyRoot()), checkpoint: null };
}

export type ExtensionCheck = { ok: true } | { ok: false; reason: string };

/**
 * Whether `next` is a consistent extension of `from`, given the consistency proof between them
 * (base64 hashes, as the store serves them). The one rule the signer signs by, and the one a
 * verifier pins a checkpoint with.
 */
export function checkExtension(hasher: MerkleHasher, from: TreeHead, next: TreeHead, proof: readonly string[]): ExtensionCheck {
  if (next.treeSize < from.treeSize) {
    return { ok: false, reason: `the trail shrank: ${from.treeSize} entries were signed, the tree now has ${next.treeSize}` };
  }
  const root1 = fromBase64Of(from.rootHash, hasher.size);
  const root2 = fromBase64Of(next.rootHash, hasher.size);
  const path = proof.map((p) => fromBase64Of(p, hasher.size));
  if (!root1 || !root2 || path.some((p) => p === null)) return { ok: false, reason: 'a root or proof hash is not base64 of the hash length' };
  const check = verifyConsistency(hasher, from.treeSize, next.treeSize, path as Uint8Array[], root1, root2);
  if (check.ok) return check;
  return {
    ok: false,
    reason:
      next.treeSize === from.treeSize
        ? `the tree of ${next.treeSize} entries now has another root than the one signed: history was rewritten`
        : `the tree of ${next.treeSize} entries does not extend the signed tree of ${from.treeSize} (${check.reason}): history was rewritten`,
  };
}

/**
 * What Countersign signs, byte for byte: audit leaves, checkpoints and decision receipts. The
 * signing and the hash function live in the shell (node:crypto, WebCrypto); these functions
 * only fix the bytes, so every signer and verifier agrees on them.
 *
 * Each message starts with its own origin line, so a signature over one kind can never be
 * passed off as another.
 */
import { z } from 'zod';
import { canonicalJson, payloadKey } from '../canonical.ts';
import type { Actor, Decision, JsonObject, Receipt } from '../schemas.ts';
import { toHex, utf8 } from './bytes.ts';
import type { HashFn } from './merkle.ts';

/** One audit entry as the tree commits to it. */
export interface AuditLeaf {
  seq: number;
  /** ISO 8601, millisecond precision, UTC. */
  at: string;
  type: string;
  requestId: string | null;
  actor: { type: string; id: string; name: string };
  data: unknown;
}

/**
 * The leaf bytes of an entry: canonical JSON (sorted keys, no whitespace) of exactly these
 * fields, UTF-8 encoded. An export writes this text verbatim, so a verifier hashes the bytes it
 * reads.
 */
export function auditLeafJson(entry: AuditLeaf): string {
  return canonicalJson({
    actor: { id: entry.actor.id, name: entry.actor.name, type: entry.actor.type },
    at: entry.at,
    data: entry.data,
    requestId: entry.requestId,
    seq: entry.seq,
    type: entry.type,
  });
}

export const CHECKPOINT_ORIGIN = 'countersign.audit.checkpoint/v1';

/**
 * A deployment's own checkpoint origin (review finding 12): checkpoints (and the signed notes
 * witnesses keep) start with it instead of the one fixed `CHECKPOINT_ORIGIN`, so a note of one
 * deployment cannot be passed off as another's. A C2SP-style log name: lower-case host-like
 * first part, then `/`-separated path parts. Origins starting `countersign.` are reserved for
 * Countersign's own message kinds (receipts, retention, hand-overs), so no checkpoint can ever be
 * the bytes of another kind of statement.
 */
const DEPLOYMENT_ORIGIN = /^[a-z0-9][a-z0-9.-]{0,62}(?:\/[A-Za-z0-9._-]{1,64}){1,4}$/;

/** Why `origin` cannot be a deployment's checkpoint origin, or null. */
export function originProblem(origin: string): string | null {
  if (!DEPLOYMENT_ORIGIN.test(origin)) return `"${origin.slice(0, 80)}" is not a log origin like example.com/countersign (a lower-case name, then one to four /-separated parts)`;
  if (origin.startsWith('countersign.')) return `"${origin}" starts with "countersign.", which is reserved for Countersign's own message kinds`;
  return null;
}

export interface CheckpointBody {
  /** The deployment's origin (the first line); absent: `CHECKPOINT_ORIGIN` (checkpoints signed before origins were per deployment). */
  origin?: string | undefined;
  treeSize: number;
  /** Base64 of the tree's root hash at `treeSize`. */
  rootHash: string;
  /** ISO 8601 time of signing. */
  timestamp: string;
}

export const SignedCheckpoint = z.object({
  /** The deployment's checkpoint origin (absent on checkpoints signed before origins were per deployment). */
  origin: z.string().optional(),
  treeSize: z.number().int().min(0),
  rootHash: z.string(),
  timestamp: z.string(),
  /** Which key signed: the first 16 hex digits of SHA-256 of its SubjectPublicKeyInfo (DER). */
  keyId: z.string(),
  /** Base64 Ed25519 signature of `checkpointMessage`. */
  signature: z.string(),
});
export type SignedCheckpoint = z.infer<typeof SignedCheckpoint>;

/** The signed text of a checkpoint: origin, size, root, time, one per line (in the spirit of C2SP tlog-checkpoint). */
export function checkpointMessage(body: CheckpointBody): Uint8Array {
  // An origin that is not a valid deployment origin gives bytes nobody signs (the signer refuses
  // such an origin), so a checkpoint carrying one never verifies.
  const origin = body.origin === undefined ? CHECKPOINT_ORIGIN : originProblem(body.origin) === null ? body.origin : '\u0000invalid origin';
  return utf8(`${origin}\n${body.treeSize}\n${body.rootHash}\n${body.timestamp}\n`);
}

export const RECEIPT_ORIGIN = 'countersign.receipt/v1';

export type ReceiptBody = Omit<Receipt, 'signature'>;

/** What makes an approval single-use and short-lived: chosen by the shell (randomness, clock), signed into the receipt. */
export interface ReceiptClaim {
  /** Unguessable, unique per approval (the server draws it, e.g. 16 random bytes in hex). */
  nonce: string;
  /** ISO 8601; `receiptExpiry` computes it from the decision time and the policy. */
  expiresAt: string;
}

/** SHA-256 (hex) of the canonical JSON of `{action, args}`: what an approval lets run. */
export function payloadHash(hash: HashFn, action: string, args: JsonObject): string {
  return toHex(hash(utf8(payloadKey(action, args))));
}

/**
 * The receipt body for a decision; `payloadHash` is null unless it approved something to run.
 *
 * With `claim`, a runnable approval gets a version 2 receipt carrying the nonce and expiry it is
 * claimed with; without (or for anything that is not runnable) the body is exactly version 1,
 * so every receipt signed before claims existed verifies unchanged.
 */
export function receiptBody(hash: HashFn, requestId: string, decision: Decision, keyId: string, claim?: ReceiptClaim): ReceiptBody {
  const runnable = decision.outcome === 'approved' && decision.action !== null && decision.args !== null;
  const body: ReceiptBody = {
    version: 1,
    requestId,
    outcome: decision.outcome,
    decidedBy: decision.decidedBy,
    deciders: decision.deciders.map((d: Actor) => ({ type: d.type, id: d.id, name: d.name })),
    decidedAt: decision.at,
    payloadHash: runnable ? payloadHash(hash, decision.action!, decision.args!) : null,
    keyId,
  };
  if (!runnable || claim === undefined) return body;
  return { ...body, version: 2, nonce: claim.nonce, expiresAt: claim.expiresAt };
}

/**
 * The signed bytes. Version 1 signs exactly its eight fields, as it always did; version 2 adds
 * `nonce` and `expiresAt`. The version is itself signed, so a version 2 receipt cannot be passed
 * off as version 1 with its expiry stripped. A version 2 body without both fields, and a version 1
 * body with either, is refused (thrown), never signed or verified with those fields unsigned.
 */
export function receiptMessage(body: ReceiptBody): Uint8Array {
  const { version, requestId, outcome, decidedBy, deciders, decidedAt, payloadHash: hashOfPayload, keyId } = body;
  const common = { version, requestId, outcome, decidedBy, deciders, decidedAt, payloadHash: hashOfPayload, keyId };
  if (version === 1) {
    // Version 1 does not sign these: a body carrying them would verify with an expiry (or a
    // nonce) anyone could have written, so it is refused, as a version 2 body without them is.
    if (Object.hasOwn(body, 'nonce') || Object.hasOwn(body, 'expiresAt')) {
      throw new TypeError('receiptMessage: a version 1 receipt carries nonce or expiresAt, which version 1 does not sign');
    }
    return utf8(`${RECEIPT_ORIGIN}\n${canonicalJson(common)}`);
  }
  if (typeof body.nonce !== 'string' || body.nonce === '' || typeof body.expiresAt !== 'string' || body.expiresAt === '') {
    throw new TypeError('receiptMessage: a version 2 receipt needs its nonce and expiresAt');
  }
  return utf8(`${RECEIPT_ORIGIN}\n${canonicalJson({ ...common, nonce: body.nonce, expiresAt: body.expiresAt })}`);
}

/** A key's id: the first 16 hex digits of the hash of its SubjectPublicKeyInfo (DER bytes). */
export function keyIdOf(hash: HashFn, spki: Uint8Array): string {
  return toHex(hash(spki)).slice(0, 16);
}

export const RETENTION_ORIGIN = 'countersign.audit.retention/v1';

/**
 * What retention signs when it removes entries 1 … `prunedTo`: the compact tree it keeps at that
 * size (its perfect subtree roots, largest first, base64) and when. An export of a pruned trail
 * starts from this statement, so a verifier can tell a base the signer pruned to from one made
 * by deleting rows and moving a mark in the database.
 */
export interface RetentionBody {
  prunedTo: number;
  frontier: readonly string[];
  /** ISO 8601 time of pruning. */
  timestamp: string;
}

export const SignedRetention = z.object({
  prunedTo: z.number().int().min(1),
  frontier: z.array(z.string()),
  timestamp: z.string(),
  keyId: z.string(),
  signature: z.string(),
});
export type SignedRetention = z.infer<typeof SignedRetention>;

/** The signed text: origin, size, the frontier (space-separated), time, one per line. */
export function retentionMessage(body: RetentionBody): Uint8Array {
  if (!Number.isSafeInteger(body.prunedTo) || body.prunedTo < 1 || body.frontier.length === 0 || body.frontier.some((h) => !/^[A-Za-z0-9+/=]+$/.test(h))) {
    throw new TypeError('retentionMessage: a retention statement needs a size ≥ 1 and base64 frontier hashes');
  }
  return utf8(`${RETENTION_ORIGIN}\n${body.prunedTo}\n${body.frontier.join(' ')}\n${body.timestamp}\n`);
}

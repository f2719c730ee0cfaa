/**
 * Decision receipts, checked before anything runs. The server signs every decision with its
 * audit key (Ed25519): the request id, the SHA-256 of the canonical JSON of the approved
 * `{action, args}`, the outcome, who decided and when. Checking it here means a decision that
 * was forged (no server key), altered in transit, or replayed from another request or onto
 * other args is refused, not executed.
 *
 * WebCrypto only (`globalThis.crypto.subtle`, Ed25519 and SHA-256): no node: imports, so the SDK
 * stays portable.
 */
import { followChain, rawOfSpki, spkiOfRaw } from './key-chain.ts';
import {
  CountersignError,
  bytesEqual,
  checkpointMessage,
  decisionLeafProblem,
  fromBase64,
  fromBase64Of,
  inclusionSides,
  checkpointKeyProblem,
  ServedKeyChain,
  type ChainKey,
  type SignedHandover,
  type SignedCheckpoint,
  payloadKey,
  receiptMessage,
  toHex,
  utf8,
  type Decision,
  type JsonObject,
  type ReceiptBody,
} from '@countersign/core';

/** The part of WebCrypto used here, described structurally so no DOM or Node typings are needed. */
interface Subtle {
  digest(algorithm: 'SHA-256', data: Uint8Array): Promise<ArrayBuffer>;
  importKey(format: 'spki', keyData: Uint8Array, algorithm: { name: 'Ed25519' }, extractable: false, usages: ['verify']): Promise<unknown>;
  verify(algorithm: { name: 'Ed25519' }, key: unknown, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
}

interface LoadedKey {
  /** null: only the key id was pinned and the server serves another key (rotated): the chain supplies it. */
  key: unknown | null;
  keyId: string;
  raw: Uint8Array | null;
  /** With a key-id pin the server's key did not match: the id it served. */
  served?: string;
}

/** How long a learned key chain is used before it is fetched again (it is also re-read when an unknown key signs). */
export const CHAIN_TTL_MS = 60_000;

/** One hand-over statement, every signed field and both signatures, as a comparable string. */
function statementKey(h: SignedHandover): string {
  return JSON.stringify([h.fromKeyId, h.fromPublicKey, h.toKeyId, h.toPublicKey, h.treeSize, h.rootHash, h.timestamp, h.fromSignature, h.toSignature]);
}

/** The server's key chain (`GET /v1/audit/keys`); its body is checked (core `ServedKeyChain`) before use. */
export interface KeyChainSource {
  (): Promise<unknown>;
}

function subtle(): Subtle {
  const s = (globalThis as { crypto?: { subtle?: Subtle } }).crypto?.subtle;
  if (!s) throw new CountersignError('RECEIPT_MISMATCH', 'this runtime has no WebCrypto, so decision receipts cannot be checked; refusing to run');
  return s;
}

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}

/** The SubjectPublicKeyInfo bytes of a PEM public key. */
function spkiOf(pem: string): Uint8Array {
  const match = /-----BEGIN PUBLIC KEY-----([\s\S]*?)-----END PUBLIC KEY-----/.exec(pem);
  const der = match ? fromBase64(match[1]!.replace(/\s+/g, '')) : null;
  if (!der) throw new CountersignError('VALIDATION_FAILED', 'the audit public key is not a PEM "PUBLIC KEY"');
  return der;
}

async function load(pem: string): Promise<LoadedKey> {
  const spki = spkiOf(pem);
  let key: unknown;
  try {
    key = await subtle().importKey('spki', spki, { name: 'Ed25519' }, false, ['verify']);
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `the audit public key is not an Ed25519 key: ${(err as Error).message}`);
  }
  return { key, keyId: toHex(await sha256(spki)).slice(0, 16), raw: rawOfSpki(spki) };
}

/** The server's inclusion proof of one entry (`GET /v1/audit/proof/inclusion`). */
export interface InclusionEvidence {
  seq: number;
  leafIndex: number;
  treeSize: number;
  /** The entry's leaf JSON (its UTF-8 bytes are the leaf). */
  leaf: string;
  inclusionPath: string[];
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export class ReceiptVerifier {
  #loaded: Promise<LoadedKey> | undefined;
  /** The chain followed from the pinned key, once a receipt or checkpoint named another key. */
  #chain: ChainKey[] | null = null;
  /** The hand-over statements of `#chain`, in chain order, as learned: a later chain must extend them. */
  #statements: string[] | null = null;
  #chainAt = 0;

  /**
   * `source` gives the server's public key (PEM); it is asked once, and again only after a
   * failure. Once a key loaded, it is kept for the verifier's life: that is the pin (a key
   * served later is never adopted). With `expectKeyId`, a key with another id is refused.
   */
  constructor(
    private readonly source: () => Promise<string>,
    private readonly options: { expectKeyId?: string | undefined; chain?: KeyChainSource | undefined; chainTtlMs?: number | undefined; now?: (() => number) | undefined } = {},
  ) {}

  /** Starts fetching the key now (e.g. alongside creating a request), so a check later costs no round trip. */
  prefetch(): void {
    this.#key().catch(() => {});
  }

  #key(): Promise<LoadedKey> {
    this.#loaded ??= this.source()
      .then(load)
      .then((loaded) => {
        const expected = this.options.expectKeyId;
        if (expected !== undefined && loaded.keyId !== expected) {
          // Rotated since the pin? Only the signed chain from the pinned id can say (see #keyFor).
          if (this.options.chain) return { key: null, keyId: expected, raw: null, served: loaded.keyId };
          throw new Error(`the server served key ${loaded.keyId}, not the pinned key ${expected}`);
        }
        return loaded;
      });
    this.#loaded.catch(() => (this.#loaded = undefined));
    return this.#loaded;
  }

  /**
   * Throws RECEIPT_MISMATCH unless `decision` carries a receipt signed by the server's key for
   * request `requestId` whose facts match the decision, and, when `runs` is given, whose payload
   * hash is exactly that action and args.
   */
  async check(requestId: string, decision: Decision, runs?: { action: string; args: JsonObject }): Promise<void> {
    const refuse = (why: string): never => {
      throw new CountersignError('RECEIPT_MISMATCH', `decision receipt for ${requestId}: ${why}; refusing to run`, { requestId, decision });
    };
    const receipt = decision.receipt;
    if (!receipt) return refuse('the decision carries no signed receipt');
    const pinned = await this.#key().catch((err: unknown) => {
      throw new CountersignError('RECEIPT_MISMATCH', `cannot get the server's audit public key to check the receipt of ${requestId}: ${(err as Error).message}; refusing to run`, {
        requestId,
      });
    });
    const key = await this.#keyFor(receipt.keyId, null, pinned, (why) => refuse(why));
    const { signature, ...body } = receipt;
    const sig = fromBase64(signature);
    const valid = sig !== null && (await subtle().verify({ name: 'Ed25519' }, key, sig, receiptMessage(body as ReceiptBody)));
    if (!valid) refuse('the signature does not verify');
    if (receipt.requestId !== requestId) refuse(`it was issued for ${receipt.requestId}`);
    if (receipt.outcome !== decision.outcome || receipt.decidedBy !== decision.decidedBy || receipt.decidedAt !== decision.at) {
      refuse('the decision differs from what was signed');
    }
    const ids = (xs: ReadonlyArray<{ type: string; id: string }>) => xs.map((x) => `${x.type}:${x.id}`).join(',');
    if (ids(receipt.deciders) !== ids(decision.deciders)) refuse('the deciders differ from the signed ones');
    if (decision.outcome === 'approved') {
      if (decision.action === null || decision.args === null) refuse('an approval without an action and args');
      const signed = await this.#payloadHash(decision.action!, decision.args!);
      if (receipt.payloadHash !== signed) refuse('the approved action and args differ from the signed ones');
    }
    if (runs) {
      if (receipt.outcome !== 'approved') refuse(`the signed outcome is ${receipt.outcome}`);
      if (receipt.payloadHash !== (await this.#payloadHash(runs.action, runs.args))) refuse(`it does not cover running ${runs.action} with these args`);
    }
  }

  /**
   * Optional, stronger than the receipt alone: throws RECEIPT_MISMATCH unless the decision's
   * audit entry is included in `evidence.checkpoint` — the entry at `proof.seq` recording this
   * very decision: its outcome, time, deciders, reason, alternative, modification and the
   * receipt's payload hash (core `decisionLeafProblem`). The checkpoint must be signed by the
   * same pinned key; typically it is a later one than the decision, e.g. one a witness holds. `evidence.proof` is the server's
   * inclusion proof (`GET /v1/audit/proof/inclusion?seq=…&treeSize=<checkpoint size>`). A decision
   * that is in the checkpoint cannot be removed from the trail without the rewrite showing.
   */
  async checkIncluded(requestId: string, decision: Decision, evidence: { checkpoint: SignedCheckpoint; proof: InclusionEvidence }): Promise<void> {
    const refuse = (why: string): never => {
      throw new CountersignError('RECEIPT_MISMATCH', `decision ${requestId} is not shown in the signed checkpoint: ${why}`, { requestId });
    };
    await this.check(requestId, decision);
    const { checkpoint, proof } = evidence;
    const key = await this.#keyFor(checkpoint.keyId, checkpoint.treeSize, await this.#key(), (why) => refuse(`the checkpoint: ${why}`));
    const sig = fromBase64Of(checkpoint.signature, 64);
    if (!sig || !(await subtle().verify({ name: 'Ed25519' }, key, sig, checkpointMessage(checkpoint)))) refuse('the checkpoint signature does not verify');
    if (proof.treeSize !== checkpoint.treeSize || proof.leafIndex !== proof.seq - 1) refuse('the proof is for another tree size or leaf');
    // The leaf is the decision's own entry: the same position, request, outcome, time, deciders, reason and payload (core decides).
    const problem = decisionLeafProblem(proof.leaf, { seq: proof.seq, requestId, decision, payloadHash: decision.receipt?.payloadHash ?? null });
    if (problem !== null) refuse(problem);
    // Fold the path (WebCrypto hashes asynchronously, so core gives the sides, not the fold).
    const sides = inclusionSides(proof.leafIndex, proof.treeSize, proof.inclusionPath.length);
    const root = fromBase64Of(checkpoint.rootHash, 32);
    const path = proof.inclusionPath.map((p) => fromBase64Of(p, 32));
    if (!sides || !root || path.some((p) => p === null)) refuse('the proof has the wrong shape');
    const leafBytes = utf8(proof.leaf);
    let r = await sha256(concat(new Uint8Array([0]), leafBytes));
    for (let i = 0; i < sides!.length; i++) {
      r = await sha256(sides![i] === 'left' ? concat(new Uint8Array([1]), path[i]!, r) : concat(new Uint8Array([1]), r, path[i]!));
    }
    if (!bytesEqual(r, root!)) refuse('the inclusion proof does not lead to the signed root');
  }

  /**
   * The key that may have signed a receipt (`treeSize` null: it must be the newest key) or a
   * checkpoint of `treeSize`: the pinned key itself, or — after a rotation — a key the signed
   * chain from the pinned key reaches (client/src/key-chain.ts). A retired key is refused for
   * receipts and for checkpoints after its hand-over, once the chain is known.
   */
  async #keyFor(keyId: string, treeSize: number | null, pinned: LoadedKey, refuse: (why: string) => never): Promise<unknown> {
    const chainProblem = (keys: ChainKey[]): string | null => {
      if (treeSize !== null) return checkpointKeyProblem(keys, keyId, treeSize);
      const newest = keys[keys.length - 1]!;
      if (newest.keyId === keyId) return null;
      const mine = keys.find((k) => k.keyId === keyId);
      return mine ? `signed by key ${keyId}, which was handed over to a newer key at tree size ${mine.upTo}: a retired key signs no receipt` : `signed by key ${keyId}, not the server's key ${pinned.keyId} (pinned), nor a key its signed chain hands over to`;
    };
    if (!this.options.chain) {
      if (keyId === pinned.keyId && pinned.key !== null) return pinned.key;
      return refuse(`signed by key ${keyId}, not the server's key ${pinned.keyId}`);
    }
    // With a chain source the chain is known from the first check on, and re-read when it is
    // older than the TTL or a key it does not name signed: a receipt must come from its newest key.
    const stale = this.#chain === null || this.#now() - this.#chainAt >= (this.options.chainTtlMs ?? CHAIN_TTL_MS) || !this.#chain.some((k) => k.keyId === keyId);
    if (stale) await this.#learnChain(pinned, keyId, refuse);
    const problem = chainProblem(this.#chain!);
    if (problem) refuse(problem);
    if (keyId === pinned.keyId && pinned.key !== null) return pinned.key;
    const found = this.#chain!.find((k) => k.keyId === keyId)!;
    try {
      return await subtle().importKey('spki', spkiOfRaw(found.rawPublicKey), { name: 'Ed25519' }, false, ['verify']);
    } catch (err) {
      return refuse(`key ${keyId} from the chain is not an Ed25519 key: ${(err as Error).message}`);
    }
  }

  #now(): number {
    return (this.options.now ?? Date.now)();
  }

  /**
   * Fetches the served chain, checks its shape (zod, bounded), follows it from the pinned key and
   * requires it to extend the chain learned before: the same hand-over statements in the same
   * order, then perhaps more. The first chain learned is trusted on first use, from the pinned key
   * alone (each step signed by both keys); a later chain that drops or replaces a statement is a
   * fork — e.g. a stolen retired key signing a hand-over to a key of its own — and is refused.
   */
  async #learnChain(pinned: LoadedKey, keyId: string, refuse: (why: string) => never): Promise<void> {
    let body: unknown;
    try {
      body = await this.options.chain!();
    } catch (err) {
      // A server from before key rotation has no chain route: it has never handed over, which is
      // what an empty chain says. Trusted on first use like any chain; once a chain with hand-overs
      // was learned, the empty one does not extend it and is refused as a fork below.
      if (err instanceof CountersignError && err.code === 'NOT_FOUND') body = { current: pinned.keyId, handovers: [] };
      else return refuse(`the audit key chain could not be fetched to check key ${keyId} (pinned ${pinned.keyId}): ${(err as Error).message}`);
    }
    const served = ServedKeyChain.safeParse(body);
    if (!served.success) return refuse(`the audit key chain the server served is malformed (${served.error.issues[0]?.message ?? 'invalid'})`);
    let keys: ChainKey[];
    try {
      keys = await followChain(subtle(), { keyId: pinned.keyId, raw: pinned.raw }, served.data.handovers);
    } catch (err) {
      if (pinned.served === undefined) throw err;
      return refuse(`the server served key ${pinned.served}, not the pinned key ${pinned.keyId}, and no hand-over signed by the pinned key leads to it (${(err as Error).message})`);
    }
    const byFrom = new Map(served.data.handovers.map((h) => [h.fromKeyId, h]));
    const statements = keys.slice(0, -1).map((k) => statementKey(byFrom.get(k.keyId)!));
    const known = this.#statements;
    if (known !== null) {
      const at = known.findIndex((st, i) => statements[i] !== st);
      if (at !== -1) {
        return refuse(
          `the audit key chain the server served now does not contain the chain this client learned before (hand-over ${at + 1} of ${known.length} differs or is missing): the chain forked — a retired key signed another hand-over, or another server answers`,
        );
      }
    }
    this.#statements = statements;
    this.#chain = keys;
    this.#chainAt = this.#now();
  }

  async #payloadHash(action: string, args: JsonObject): Promise<string> {
    return toHex(await sha256(utf8(payloadKey(action, args))));
  }
}

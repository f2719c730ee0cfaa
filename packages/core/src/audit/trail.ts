/**
 * The exported audit trail (JSON Lines) and its verifier. The format, one JSON value per line,
 * each in canonical form (sorted keys, no whitespace):
 *
 *   {"checkpoints":2,"format":"countersign-audit-trail/v1","keyId":"…","kind":"header","treeSize":1500}
 *   {"frontier":[…],"keyId":"…","kind":"base","signature":"…","timestamp":"…","treeSize":500}
 *                                                                           only when entries 1–500 were pruned: the
 *                                                                           signed retention statement,
 *   {…the checkpoint for size 500…}                                         and then its checkpoint
 *   {"entry":{…the leaf JSON…},"kind":"entry","leafHash":"<base64>"}       one per entry, seq 1, 2, …
 *   {"keyId":"…","kind":"checkpoint","rootHash":"…","signature":"…","timestamp":"…","treeSize":1000}
 *   …                                                                        each right after entry treeSize
 *
 * The verifier recomputes the Merkle tree from the entries' own bytes, checks every checkpoint's
 * signature and that its root is the recomputed root at its size (so consecutive checkpoints
 * are consistent: each is a prefix of the next), and stops at the first fault, naming its line.
 * `leafHash` is the server's record of each leaf: unauthenticated on its own, but it names the
 * exact entry that was altered, where the signed roots alone only bound it between checkpoints.
 *
 * A pruned base must be a retention statement signed by the trusted key (`retentionMessage`):
 * deleting old rows and moving the prune mark in the database gives a base nobody signed.
 * Checkpoints the verifier already holds (from a witness, an earlier export) can be pinned: the
 * trail must then reach each one's size with exactly its root, so a rewritten history or an
 * export cut back to an earlier checkpoint fails.
 *
 * After a key rotation the export carries every hand-over statement right after the header
 * (`{"fromKeyId":…,"kind":"handover",…}`, see audit/rotation.ts), and the header names the newest
 * key. A verifier pinned to any key of the chain follows it (with `rawPublicKey`, `keyIdOfRaw`
 * and `verifyWithKey`), then accepts each checkpoint only from the key that covered its size: a
 * retired key's checkpoint after its hand-over is `KEY_RETIRED`; a chain that does not lead
 * from the pinned key is `KEY_MISMATCH`. The root at each hand-over's size must be the one both
 * keys signed (`FORK`), unless that size was pruned (then it is counted in `handoversPruned`:
 * the statement is still checked by both signatures).
 *
 * Pure and streaming: feed lines with `push`, then call `finish`. Hashing and signature checks
 * are passed in.
 */
import { canonicalJson } from '../canonical.ts';
import { bytesEqual, fromBase64Of, toBase64, utf8 } from './bytes.ts';
import { CompactTree, type MerkleHasher } from './merkle.ts';
import { checkpointKeyProblem, followKeyChain, retentionKeyProblem, SignedHandover, type ChainKey } from './rotation.ts';
import { checkpointMessage, retentionMessage, type SignedCheckpoint, type SignedRetention } from './signed.ts';

export const TRAIL_FORMAT = 'countersign-audit-trail/v1';

export interface TrailHeader {
  treeSize: number;
  checkpoints: number;
  keyId: string;
}

export function trailHeaderLine(header: TrailHeader): string {
  return canonicalJson({ checkpoints: header.checkpoints, format: TRAIL_FORMAT, keyId: header.keyId, kind: 'header', treeSize: header.treeSize });
}

const ENTRY_PREFIX = '{"entry":';
const ENTRY_SUFFIX = ',"kind":"entry","leafHash":"';

/** An entry line from its leaf JSON (`auditLeafJson`) and leaf hash. */
export function trailEntryLine(leafJson: string, leafHash: Uint8Array): string {
  return `${ENTRY_PREFIX}${leafJson}${ENTRY_SUFFIX}${toBase64(leafHash)}"}`;
}

/**
 * The base of a trail whose first `treeSize` entries were removed by retention: the compact
 * tree at that size (its perfect subtree roots, largest first). The checkpoint signed at that
 * size follows it and authenticates it; entries then go on from `treeSize + 1`.
 */
export function trailBaseLine(statement: SignedRetention): string {
  const { prunedTo, frontier, timestamp, keyId, signature } = statement;
  return canonicalJson({ frontier: [...frontier], keyId, kind: 'base', signature, timestamp, treeSize: prunedTo });
}

/** A hand-over statement as an export line (after the header, before everything else). */
export function trailHandoverLine(h: SignedHandover): string {
  return canonicalJson({ ...h, kind: 'handover' });
}

export function trailCheckpointLine(cp: SignedCheckpoint): string {
  if (cp.origin !== undefined) return canonicalJson({ keyId: cp.keyId, kind: 'checkpoint', origin: cp.origin, rootHash: cp.rootHash, signature: cp.signature, timestamp: cp.timestamp, treeSize: cp.treeSize });
  return canonicalJson({ keyId: cp.keyId, kind: 'checkpoint', rootHash: cp.rootHash, signature: cp.signature, timestamp: cp.timestamp, treeSize: cp.treeSize });
}

export type TrailFaultCode =
  | 'MALFORMED'
  | 'HEADER'
  | 'KEY_MISMATCH'
  | 'SEQUENCE'
  | 'LEAF_MISMATCH'
  | 'CHECKPOINT_PLACEMENT'
  | 'BAD_SIGNATURE'
  | 'ROOT_MISMATCH'
  | 'UNCOVERED'
  | 'TRUNCATED'
  /** The pruned base carries no retention statement signed by the trusted key. */
  | 'UNSIGNED_BASE'
  /** The trail's root at a pinned checkpoint's size is not the pinned root: history was rewritten. */
  | 'FORK'
  /** The trail ends before a pinned checkpoint's size: it was cut back. */
  | 'PIN_NOT_REACHED'
  /** A pinned checkpoint lies in the pruned prefix: this export cannot show it (verify live, which proves it). */
  | 'PIN_PRUNED'
  /** A key signed a checkpoint (or a retention statement) for a size after it was handed over. */
  | 'KEY_RETIRED'
  /** A hand-over statement is malformed, not signed by both keys, or the line of keys forks or returns to a key. */
  | 'BAD_HANDOVER'
  /** A checkpoint (or pin) names another deployment's origin than the trail's: a note of one deployment passed off as another's. */
  | 'ORIGIN_MISMATCH';

export interface TrailFault {
  code: TrailFaultCode;
  /** 1-based line of the file where the fault is. */
  line: number;
  /** The entry concerned, when there is one. */
  seq?: number;
  message: string;
}

export interface TrailSummary {
  treeSize: number;
  /** Entries 1 … this were pruned by retention before the export (0: none); the tree still covers them. */
  prunedTo: number;
  /** When they were pruned (the signed retention statement), or null. */
  prunedAt: string | null;
  /** Entries whose bytes were read and hashed: `treeSize - prunedTo` (pruned entries no longer exist, so they are not counted). */
  entriesVerified: number;
  /** Pinned checkpoints the trail was shown to extend. */
  pinned: number;
  /** Sizes of pinned checkpoints in the pruned prefix that were NOT checked (only with `skipPrunedPins`). */
  pinsSkipped: number[];
  rootHash: string;
  checkpoints: number;
  /** The last (covering) checkpoint. */
  checkpoint: SignedCheckpoint | null;
  /** The key ids the trail was signed with, oldest first (one unless the key was rotated). */
  keys: string[];
  /** Hand-over statements followed, and how many of those lie in the pruned prefix (checked by their signatures only). */
  handovers: number;
  handoversPruned: number;
  /** The deployment's checkpoint origin the trail's checkpoints carry, or null (only checkpoints from before per-deployment origins). */
  origin: string | null;
}

export type TrailResult = ({ ok: true } & TrailSummary) | { ok: false; fault: TrailFault; entriesChecked: number };

export interface TrailVerifierOptions {
  hasher: MerkleHasher;
  /** The trusted key's id (see `SignedCheckpoint.keyId`). */
  keyId: string;
  /** Ed25519 (or other) verification with the trusted public key. */
  verifySignature(message: Uint8Array, signature: Uint8Array): boolean;
  /** Largest signature accepted, bytes (Ed25519: 64). */
  signatureLength?: number;
  /**
   * Checkpoints already held (a witness's, an earlier export's): the trail must extend each one.
   * Each must be signed by the trusted key.
   */
  pinned?: readonly SignedCheckpoint[];
  /**
   * A pin in the pruned prefix cannot be shown by an export (the entries that would show it are
   * gone), so it fails (PIN_PRUNED) — unless this is set: then it is skipped and reported in
   * `pinsSkipped`, never counted as checked. Live verification proves such pins instead.
   */
  skipPrunedPins?: boolean;
  /**
   * The deployment's checkpoint origin, when known (the live server's, or given): every
   * checkpoint and pin that carries an origin must carry this one. Without it, the first origin
   * seen is the trail's, and all later ones (and every pin's) must be the same.
   */
  origin?: string;
  /** The trusted key's raw Ed25519 public key: needed to follow hand-overs (key rotation). */
  rawPublicKey?: Uint8Array;
  /** The key id of a raw public key (to follow hand-overs). */
  keyIdOfRaw?: (rawPublicKey: Uint8Array) => string;
  /** Verification with a key the chain hands over to (to follow hand-overs). */
  verifyWithKey?: (rawPublicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;
  /** Told each entry once its bytes verified, with its leaf JSON (for `--since`). */
  onEntry?: (seq: number, leafJson: string) => void;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export class TrailVerifier {
  readonly #options: TrailVerifierOptions;
  #tree: CompactTree;
  #line = 0;
  /** The pruned base, until its checkpoint has verified it. */
  #base: { size: number; line: number; verified: boolean; timestamp: string } | null = null;
  /** Pinned checkpoints still to reach, smallest size first. */
  #pins: SignedCheckpoint[] = [];
  #pinsChecked = 0;
  readonly #pinsSkipped: number[] = [];
  #pinFault: TrailFault | null = null;
  #header: TrailHeader | null = null;
  #fault: TrailFault | null = null;
  #checkpoints = 0;
  #last: { cp: SignedCheckpoint; line: number } | null = null;
  /** Hand-over statements read after the header, until the first other line settles the chain. */
  #handovers: SignedHandover[] = [];
  /** The followed key chain (just the trusted key without hand-overs); null until settled. */
  #chain: ChainKey[] | null = null;
  /** Hand-over sizes (and roots both keys signed) still to reach, largest first. */
  #handoverPins: { treeSize: number; rootHash: string; from: string }[] = [];
  #handoversPruned = 0;
  /** Pins by another key than the trusted one: checked once the chain is known. */
  #deferredPins: SignedCheckpoint[] = [];
  #bodyStarted = false;
  /** The trail's origin: given, or the first one a checkpoint carried. */
  #origin: string | undefined;

  constructor(options: TrailVerifierOptions) {
    this.#options = options;
    this.#tree = new CompactTree(options.hasher);
    this.#origin = options.origin;
    this.#pinFault = this.#loadPins(options.pinned ?? []);
  }

  /** Origins the pins carry (each must be the trail's, once the trail's is known). */
  #pinOrigins = new Set<string>();

  #pinOriginProblem(): string | null {
    for (const o of this.#pinOrigins) {
      if (this.#origin === undefined || o !== this.#origin) {
        return `a pinned checkpoint names the origin ${o}, but this trail's origin is ${this.#origin ?? `${'countersign.audit.checkpoint/v1'} (none of its own)`}: it belongs to another deployment`;
      }
    }
    return null;
  }

  /** A fault message when `origin` is not the trail's (fixing the trail's origin on first sight), else null. */
  #originProblem(origin: string | undefined, what: string): string | null {
    if (origin === undefined) return null;
    this.#origin ??= origin;
    return origin === this.#origin ? null : `${what} names the origin ${origin}, but this trail's origin is ${this.#origin}: it belongs to another deployment`;
  }

  /** Verification with key `keyId` of the chain (the trusted key's own function for it). */
  #verifyBy(keyId: string, message: Uint8Array, signature: Uint8Array): boolean {
    if (keyId === this.#options.keyId) return this.#options.verifySignature(message, signature);
    const key = this.#chain?.find((k) => k.keyId === keyId);
    return key !== undefined && this.#options.verifyWithKey !== undefined && this.#options.verifyWithKey(key.rawPublicKey, message, signature);
  }

  /** Sorts the pins and checks their signatures; a bad pin is a fault before any line is read. */
  #loadPins(pins: readonly SignedCheckpoint[]): TrailFault | null {
    const bySize = new Map<number, SignedCheckpoint>(this.#pins.map((p) => [p.treeSize, p]));
    for (const pin of pins) {
      const fault = (message: string): TrailFault => ({ code: 'BAD_SIGNATURE', line: 0, message });
      if (this.#chain === null && pin.keyId !== this.#options.keyId) {
        if (this.#options.verifyWithKey === undefined) return { code: 'KEY_MISMATCH', line: 0, message: `the pinned checkpoint for size ${pin.treeSize} is signed by key ${pin.keyId}, the trusted key is ${this.#options.keyId}` };
        this.#deferredPins.push(pin); // another key of the chain, perhaps: checked once the chain is read
        continue;
      }
      if (this.#chain !== null) {
        const problem = checkpointKeyProblem(this.#chain, pin.keyId, pin.treeSize);
        if (problem) return { code: this.#chain.some((k) => k.keyId === pin.keyId) ? 'KEY_RETIRED' : 'KEY_MISMATCH', line: 0, message: `the pinned checkpoint for size ${pin.treeSize}: ${problem}` };
      }
      if (pin.origin !== undefined) this.#pinOrigins.add(pin.origin);
      const originProblem = this.#options.origin !== undefined && pin.origin !== undefined && pin.origin !== this.#options.origin ? `the pinned checkpoint for size ${pin.treeSize} names the origin ${pin.origin}, not this trail's ${this.#options.origin}: it belongs to another deployment` : null;
      if (originProblem) return { code: 'ORIGIN_MISMATCH', line: 0, message: originProblem };
      const sig = fromBase64Of(pin.signature, this.#options.signatureLength ?? 64);
      if (!sig || !fromBase64Of(pin.rootHash, this.#options.hasher.size) || !isCount(pin.treeSize) || !ISO.test(pin.timestamp)) return fault(`the pinned checkpoint for size ${pin.treeSize} is malformed`);
      if (!this.#verifyBy(pin.keyId, checkpointMessage(pin), sig)) return fault(`the pinned checkpoint for size ${pin.treeSize} does not verify with the trusted key`);
      if (pin.treeSize === 0) {
        if (pin.rootHash !== toBase64(this.#options.hasher.emptyRoot())) return { code: 'FORK', line: 0, message: 'the pinned checkpoint for the empty tree has another root than the empty tree' };
        this.#pinsChecked++;
        continue;
      }
      const same = bySize.get(pin.treeSize);
      if (same && same.rootHash !== pin.rootHash) {
        return { code: 'FORK', line: 0, message: `two pinned checkpoints, both signed by the trusted key, give tree size ${pin.treeSize} different roots: the signer was made to sign a fork` };
      }
      bySize.set(pin.treeSize, pin);
    }
    this.#pins = [...bySize.values()].sort((a, b) => b.treeSize - a.treeSize); // popped from the end
    return null;
  }

  /** Checks every pin at the current tree size (called whenever the size changes). */
  #checkPins(line: number): boolean {
    for (;;) {
      const h = this.#handoverPins[this.#handoverPins.length - 1];
      if (!h || h.treeSize > this.#tree.size) break;
      this.#handoverPins.pop();
      if (h.treeSize < this.#tree.size) {
        this.#handoversPruned++; // in the pruned prefix: its two signatures are what shows it
        continue;
      }
      if (toBase64(this.#tree.root()) !== h.rootHash) {
        return this.#fail('FORK', line, `line ${line}: at tree size ${h.treeSize} the trail's root is not the root both keys signed when key ${h.from} handed over: history up to entry seq ${h.treeSize} was rewritten`, h.treeSize);
      }
    }
    for (;;) {
      const pin = this.#pins[this.#pins.length - 1];
      if (!pin || pin.treeSize > this.#tree.size) return true;
      this.#pins.pop();
      if (pin.treeSize < this.#tree.size) {
        // Only possible below a pruned base: the entries that would show it are gone.
        if (this.#options.skipPrunedPins) {
          this.#pinsSkipped.push(pin.treeSize);
          continue;
        }
        return this.#fail('PIN_PRUNED', line, `the pinned checkpoint for size ${pin.treeSize} (signed ${pin.timestamp}) lies in the pruned prefix (entries 1–${this.#tree.size}): this export cannot show it; verify against the live server, which proves it, or pin a checkpoint after the prune point`);
      }
      if (toBase64(this.#tree.root()) !== pin.rootHash) {
        const seq = this.#tree.size;
        return this.#fail('FORK', line, `line ${line}: at tree size ${seq} the trail's root is not the root of the pinned checkpoint signed ${pin.timestamp}: history up to entry seq ${seq} was rewritten`, seq);
      }
      this.#pinsChecked++;
    }
  }

  /** Entries verified so far. */
  get entries(): number {
    return this.#tree.size;
  }

  get failed(): boolean {
    return this.#fault !== null;
  }

  /** The header, once read: how many entries to expect (for progress bars). */
  get header(): TrailHeader | null {
    return this.#header;
  }

  /**
   * One line, without its newline. `bytes`, when given, must be the line's UTF-8 bytes as read
   * (saves re-encoding, and hashes exactly what was on disk). Returns false once a fault was
   * found; later lines are ignored.
   */
  push(line: string, bytes?: Uint8Array): boolean {
    if (this.#pinFault && !this.#fault) this.#fault = this.#pinFault;
    if (this.#fault) return false;
    this.#line++;
    if (this.#header === null) return this.#readHeader(line);
    if (this.#chain === null) {
      if (line.startsWith('{"fromKeyId"')) return this.#readHandover(line);
      if (!this.#settleChain(this.#line)) return false;
    }
    const first = !this.#bodyStarted;
    this.#bodyStarted = true;
    if (this.#base && !this.#base.verified && !line.startsWith('{"keyId"')) {
      return this.#fail('CHECKPOINT_PLACEMENT', this.#line, `line ${this.#line}: the pruned-trail base (line ${this.#base.line}) must be followed by the checkpoint signed at its size ${this.#base.size}`);
    }
    if (line.startsWith(ENTRY_PREFIX)) return this.#readEntry(line, bytes);
    if (first && line.startsWith('{"frontier"')) return this.#readBase(line);
    return this.#readCheckpoint(line);
  }

  /** Ends the trail. `endsWithNewline` false means the last line was cut short. */
  finish(options: { endsWithNewline?: boolean } = {}): TrailResult {
    if (this.#pinFault && !this.#fault) this.#fault = this.#pinFault;
    if (!this.#fault && this.#header !== null && this.#chain === null) this.#settleChain(this.#line);
    if (!this.#fault && this.#header !== null) {
      const pinOrigin = this.#pinOriginProblem();
      if (pinOrigin) this.#fail('ORIGIN_MISMATCH', 0, pinOrigin);
    }
    if (!this.#fault) this.#finalChecks(options.endsWithNewline ?? true);
    const prunedTo = this.#base?.size ?? 0;
    if (this.#fault) return { ok: false, fault: this.#fault, entriesChecked: Math.max(0, this.#tree.size - prunedTo) };
    return {
      ok: true,
      treeSize: this.#tree.size,
      prunedTo,
      prunedAt: this.#base?.timestamp ?? null,
      entriesVerified: this.#tree.size - prunedTo,
      pinned: this.#pinsChecked,
      pinsSkipped: [...new Set(this.#pinsSkipped)].sort((a, b) => a - b),
      rootHash: toBase64(this.#tree.root()),
      checkpoints: this.#checkpoints,
      checkpoint: this.#last?.cp ?? null,
      keys: (this.#chain ?? []).map((k) => k.keyId),
      handovers: this.#handovers.length,
      handoversPruned: this.#handoversPruned,
      origin: this.#origin ?? null,
    };
  }

  #readHandover(line: string): boolean {
    const at = this.#line;
    if (this.#options.verifyWithKey === undefined || this.#options.keyIdOfRaw === undefined || this.#options.rawPublicKey === undefined) {
      return this.#fail('BAD_HANDOVER', at, `line ${at}: the trail hands its signing key over (key rotation), and this verifier was not given the means to follow a hand-over`);
    }
    const h = this.#parse(line, 'a hand-over statement');
    if (!h) return false;
    const { kind, ...rest } = h;
    const parsed = SignedHandover.safeParse(rest);
    if (kind !== 'handover' || !parsed.success) return this.#fail('BAD_HANDOVER', at, `line ${at}: malformed hand-over statement`);
    if (this.#header && parsed.data.treeSize > this.#header.treeSize) return this.#fail('HEADER', at, `line ${at}: a hand-over at tree size ${parsed.data.treeSize} is beyond the header's tree size`);
    this.#handovers.push(parsed.data);
    return true;
  }

  /** Follows the hand-overs read (if any) from the trusted key; the header must name the newest key. */
  #settleChain(line: number): boolean {
    const o = this.#options;
    if (this.#handovers.length === 0) {
      this.#chain = [{ keyId: o.keyId, rawPublicKey: o.rawPublicKey ?? new Uint8Array(), after: -1, upTo: null, retiredAt: null }];
    } else {
      const followed = followKeyChain({ keyId: o.keyId, rawPublicKey: o.rawPublicKey! }, this.#handovers, { keyIdOfRaw: o.keyIdOfRaw!, verify: o.verifyWithKey!, hashSize: o.hasher.size });
      if (!followed.ok) {
        const code = /do not lead from the pinned key|not on the line/.test(followed.reason) ? 'KEY_MISMATCH' : 'BAD_HANDOVER';
        return this.#fail(code, line, `the key hand-overs after the header: ${followed.reason}`);
      }
      this.#chain = followed.keys;
      this.#handoverPins = this.#handovers
        .filter((h) => h.treeSize > 0)
        .map((h) => ({ treeSize: h.treeSize, rootHash: h.rootHash, from: h.fromKeyId }))
        .sort((a, b) => b.treeSize - a.treeSize);
    }
    const newest = this.#chain[this.#chain.length - 1]!;
    if (this.#header!.keyId !== newest.keyId) {
      return this.#fail('KEY_MISMATCH', 1, `the header (line 1) says the trail is signed by key ${this.#header!.keyId}, but the trusted public key is ${o.keyId}${this.#chain.length > 1 ? `, whose hand-overs lead to ${newest.keyId}` : ''}`);
    }
    const deferred = this.#deferredPins;
    this.#deferredPins = [];
    const fault = this.#loadPins(deferred);
    if (fault) return this.#fail(fault.code, line, fault.message);
    return true;
  }

  #finalChecks(endsWithNewline: boolean): void {
    const header = this.#header;
    if (header === null) return void this.#fail('TRUNCATED', 1, 'the file is empty: no header line');
    const n = this.#tree.size;
    if (!endsWithNewline) {
      return void this.#fail('TRUNCATED', this.#line, `line ${this.#line} has no newline: the file was cut short`);
    }
    if (n < header.treeSize) {
      const where = n === 0 ? 'before the first entry' : `after entry seq ${n}`;
      return void this.#fail('TRUNCATED', this.#line, `the trail ends at line ${this.#line}, ${where}; its header (line 1) promises ${header.treeSize} entries: entries ${n + 1}–${header.treeSize} are missing`, n + 1);
    }
    if (n > 0 && (this.#last === null || this.#last.cp.treeSize !== n)) {
      const from = (this.#last?.cp.treeSize ?? 0) + 1;
      const after = this.#last ? `the last checkpoint (line ${this.#last.line}, size ${this.#last.cp.treeSize})` : 'the start';
      return void this.#fail('UNCOVERED', this.#line, `the trail ends at line ${this.#line}: entries ${from}–${n} after ${after} are covered by no signed checkpoint`, from);
    }
    if (this.#checkpoints !== header.checkpoints) {
      return void this.#fail('TRUNCATED', 1, `the header (line 1) lists ${header.checkpoints} checkpoints, the file has ${this.#checkpoints}`);
    }
    const beyond = this.#pins[0];
    if (beyond !== undefined) {
      return void this.#fail(
        'PIN_NOT_REACHED',
        this.#line,
        `the trail ends at tree size ${n}, but the pinned checkpoint signed ${beyond.timestamp} covers ${beyond.treeSize} entries: entries ${n + 1}–${beyond.treeSize} were cut off`,
        n + 1,
      );
    }
  }

  #fail(code: TrailFaultCode, line: number, message: string, seq?: number): false {
    this.#fault = { code, line, message, ...(seq !== undefined ? { seq } : {}) };
    return false;
  }

  #parse(line: string, what: string): Record<string, unknown> | null {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.#fail('MALFORMED', this.#line, `line ${this.#line} is not valid JSON (expected ${what})`);
      return null;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.#fail('MALFORMED', this.#line, `line ${this.#line} is not a JSON object (expected ${what})`);
      return null;
    }
    if (canonicalJson(value) !== line) {
      this.#fail('MALFORMED', this.#line, `line ${this.#line} is not in canonical form (sorted keys, no whitespace): it was edited`);
      return null;
    }
    return value as Record<string, unknown>;
  }

  #readHeader(line: string): boolean {
    const h = this.#parse(line, 'the header');
    if (!h) return false;
    if (h.kind !== 'header' || h.format !== TRAIL_FORMAT) {
      return this.#fail('HEADER', 1, `line 1 is not a ${TRAIL_FORMAT} header`);
    }
    if (!isCount(h.treeSize) || !isCount(h.checkpoints) || typeof h.keyId !== 'string' || Object.keys(h).length !== 5) {
      return this.#fail('HEADER', 1, 'the header (line 1) is malformed');
    }
    if (h.keyId !== this.#options.keyId && this.#options.verifyWithKey === undefined) {
      return this.#fail('KEY_MISMATCH', 1, `the header (line 1) says the trail is signed by key ${h.keyId}, but the trusted public key is ${this.#options.keyId}`);
    }
    this.#header = { treeSize: h.treeSize, checkpoints: h.checkpoints, keyId: h.keyId };
    return true;
  }

  #readBase(line: string): boolean {
    const b = this.#parse(line, 'the pruned-trail base');
    if (!b) return false;
    const size = b.treeSize;
    const hashes = Array.isArray(b.frontier) ? b.frontier.map((h) => fromBase64Of(h, this.#options.hasher.size)) : null;
    if (b.kind !== 'base' || !isCount(size) || size === 0 || !hashes || hashes.some((h) => h === null)) {
      return this.#fail('MALFORMED', this.#line, `line ${this.#line}: malformed pruned-trail base`);
    }
    if (Object.keys(b).length === 3 || b.signature === undefined) {
      return this.#fail('UNSIGNED_BASE', this.#line, `line ${this.#line}: the trail starts at entry ${size + 1} from a base that no signed retention statement covers: entries 1–${size} were removed outside retention (or by a server before signed retention)`);
    }
    const { keyId, signature, timestamp } = b;
    if (Object.keys(b).length !== 6 || typeof keyId !== 'string' || typeof signature !== 'string' || typeof timestamp !== 'string' || !ISO.test(timestamp)) {
      return this.#fail('MALFORMED', this.#line, `line ${this.#line}: malformed retention statement in the pruned-trail base`);
    }
    const at = this.#line;
    const problem = retentionKeyProblem(this.#chain!, keyId, size, timestamp);
    if (problem) return this.#fail(this.#chain!.some((k) => k.keyId === keyId) ? 'KEY_RETIRED' : 'KEY_MISMATCH', at, `line ${at}: ${problem}, the trusted key is ${this.#options.keyId}`);
    const sig = fromBase64Of(signature, this.#options.signatureLength ?? 64);
    const frontier = b.frontier as string[];
    if (!sig || !this.#verifyBy(keyId, retentionMessage({ prunedTo: size, frontier, timestamp }), sig)) {
      return this.#fail('UNSIGNED_BASE', at, `line ${at}: the retention statement for entries 1–${size} does not verify with the trusted public key: the base was forged or altered`);
    }
    if (this.#header && size > this.#header.treeSize) return this.#fail('HEADER', this.#line, `line ${this.#line}: the base size ${size} is beyond the header's tree size`);
    try {
      this.#tree = new CompactTree(this.#options.hasher, size, hashes as Uint8Array[]);
    } catch {
      return this.#fail('MALFORMED', this.#line, `line ${this.#line}: a tree of ${size} entries needs other subtree hashes than the base gives`);
    }
    this.#base = { size, line: this.#line, verified: false, timestamp };
    return this.#checkPins(this.#line);
  }

  #readEntry(line: string, bytes: Uint8Array | undefined): boolean {
    const at = this.#line;
    const expected = this.#tree.size + 1;
    const hintStart = line.length - 46;
    if (hintStart <= ENTRY_PREFIX.length || line.slice(hintStart - ENTRY_SUFFIX.length, hintStart) !== ENTRY_SUFFIX || !line.endsWith('"}')) {
      return this.#fail('MALFORMED', at, `line ${at} is not a well-formed entry line (expected entry seq ${expected})`, expected);
    }
    const hint = fromBase64Of(line.slice(hintStart, hintStart + 44), this.#options.hasher.size);
    if (!hint) return this.#fail('MALFORMED', at, `line ${at}: leafHash is not a base64 hash`, expected);
    const leafJson = line.slice(ENTRY_PREFIX.length, hintStart - ENTRY_SUFFIX.length);
    // The entry is hashed as the bytes it is; its JSON is not parsed (that would double the
    // cost), only its seq read. In canonical JSON the entry's own seq is the last `,"seq":`
    // (a string cannot hold an unescaped quote, and `type`, the one key after it, is a string).
    const at2 = leafJson.lastIndexOf(',"seq":');
    const digits = at2 < 0 ? null : /^(\d{1,16}),"type":"/.exec(leafJson.slice(at2 + 7, at2 + 35));
    if (!leafJson.startsWith('{"actor":{') || !leafJson.endsWith('"}') || !digits) {
      return this.#fail('MALFORMED', at, `line ${at}: the entry is not a canonical audit entry (expected entry seq ${expected})`, expected);
    }
    const seq = Number(digits[1]);
    if (seq !== expected) {
      const why =
        seq > expected
          ? seq === expected + 1
            ? `entry seq ${expected} is missing`
            : `entries ${expected}–${seq - 1} are missing`
          : `entry seq ${seq} is out of order or repeated`;
      return this.#fail('SEQUENCE', at, `line ${at}: expected entry seq ${expected}, found seq ${seq}: ${why}`, expected);
    }
    if (this.#header && seq > this.#header.treeSize) {
      return this.#fail('HEADER', at, `line ${at}: entry seq ${seq} is beyond the header's tree size ${this.#header.treeSize}`, seq);
    }
    const leafBytes = bytes ? bytes.subarray(ENTRY_PREFIX.length, bytes.length - (ENTRY_SUFFIX.length + 46)) : utf8(leafJson);
    const leafHash = this.#options.hasher.hashLeaf(leafBytes);
    if (!bytesEqual(leafHash, hint)) {
      return this.#fail('LEAF_MISMATCH', at, `line ${at}: entry seq ${seq} does not hash to its recorded leafHash: the entry (or its leafHash) was altered`, seq);
    }
    this.#tree.append(leafHash);
    this.#options.onEntry?.(seq, leafJson);
    return this.#checkPins(at);
  }

  #readCheckpoint(line: string): boolean {
    const at = this.#line;
    const c = this.#parse(line, 'an entry or a checkpoint');
    if (!c) return false;
    if (c.kind !== 'checkpoint') return this.#fail('MALFORMED', at, `line ${at} is neither an entry nor a checkpoint`);
    const { treeSize, rootHash, timestamp, keyId, signature, origin } = c;
    if (!isCount(treeSize) || typeof rootHash !== 'string' || typeof timestamp !== 'string' || !ISO.test(timestamp) || typeof keyId !== 'string' || typeof signature !== 'string' || (origin !== undefined && typeof origin !== 'string') || Object.keys(c).length !== (origin === undefined ? 6 : 7)) {
      return this.#fail('MALFORMED', at, `line ${at}: malformed checkpoint`);
    }
    const cp: SignedCheckpoint = { ...(origin === undefined ? {} : { origin }), treeSize, rootHash, timestamp, keyId, signature };
    const wrongOrigin = this.#originProblem(origin, `line ${at}: the checkpoint for size ${treeSize}`);
    if (wrongOrigin) return this.#fail('ORIGIN_MISMATCH', at, wrongOrigin);
    const pinOrigin = this.#pinOriginProblem();
    if (pinOrigin) return this.#fail('ORIGIN_MISMATCH', at, pinOrigin);
    const n = this.#tree.size;
    if (treeSize !== n) {
      return this.#fail('CHECKPOINT_PLACEMENT', at, `line ${at}: a checkpoint for tree size ${treeSize} must follow entry seq ${treeSize}, but it follows entry seq ${n}`);
    }
    const previous = this.#last;
    if (previous && treeSize <= previous.cp.treeSize) {
      return this.#fail('CHECKPOINT_PLACEMENT', at, `line ${at}: checkpoint for size ${treeSize} does not grow the tree past the one at line ${previous.line} (size ${previous.cp.treeSize})`);
    }
    const keyProblem = checkpointKeyProblem(this.#chain!, keyId, treeSize);
    if (keyProblem) {
      if (this.#chain!.length === 1) return this.#fail('KEY_MISMATCH', at, `line ${at}: checkpoint (size ${treeSize}) names key ${keyId}, the trusted key is ${this.#options.keyId}`);
      return this.#fail(this.#chain!.some((k) => k.keyId === keyId) ? 'KEY_RETIRED' : 'KEY_MISMATCH', at, `line ${at}: checkpoint (size ${treeSize}): ${keyProblem}`);
    }
    const sig = fromBase64Of(signature, this.#options.signatureLength ?? 64);
    const root = fromBase64Of(rootHash, this.#options.hasher.size);
    if (!sig || !root) return this.#fail('MALFORMED', at, `line ${at}: checkpoint signature or root hash is not canonical base64 of the right length`);
    if (!this.#verifyBy(keyId, checkpointMessage(cp), sig)) {
      return this.#fail('BAD_SIGNATURE', at, `line ${at}: the signature of the checkpoint for size ${treeSize} does not verify with the trusted public key`);
    }
    if (this.#base && !this.#base.verified) {
      if (!bytesEqual(root, this.#tree.root())) {
        return this.#fail('ROOT_MISMATCH', this.#base.line, `line ${this.#base.line}: the pruned-trail base does not produce the root signed by the checkpoint at line ${at} (size ${treeSize}): the base was altered`);
      }
      this.#base.verified = true;
      this.#checkpoints++;
      this.#last = { cp, line: at };
      return true;
    }
    if (!bytesEqual(root, this.#tree.root())) {
      const from = (previous?.cp.treeSize ?? 0) + 1;
      return this.#fail(
        'ROOT_MISMATCH',
        at,
        `line ${at}: entries ${from}–${treeSize} do not produce the signed root of the checkpoint for size ${treeSize}; an entry in that range was altered and its leafHash recomputed`,
        from,
      );
    }
    this.#checkpoints++;
    this.#last = { cp, line: at };
    return true;
  }
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

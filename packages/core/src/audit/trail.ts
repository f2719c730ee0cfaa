/**
 * The exported audit trail (JSON Lines) and its verifier. The format, one JSON value per line,
 * each in canonical form (sorted keys, no whitespace):
 *
 *   {"checkpoints":2,"format":"countersign-audit-trail/v1","keyId":"…","kind":"header","treeSize":1500}
 *   {"frontier":["<base64>",…],"kind":"base","treeSize":500}              only when entries 1–500 were pruned,
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
 * Pure and streaming: feed lines with `push`, then call `finish`. Hashing and signature checks
 * are passed in.
 */
import { canonicalJson } from '../canonical.ts';
import { bytesEqual, fromBase64Of, toBase64, utf8 } from './bytes.ts';
import { CompactTree, type MerkleHasher } from './merkle.ts';
import { checkpointMessage, type SignedCheckpoint } from './signed.ts';

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
export function trailBaseLine(treeSize: number, frontier: readonly Uint8Array[]): string {
  return canonicalJson({ frontier: frontier.map(toBase64), kind: 'base', treeSize });
}

export function trailCheckpointLine(cp: SignedCheckpoint): string {
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
  | 'TRUNCATED';

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
  rootHash: string;
  checkpoints: number;
  /** The last (covering) checkpoint. */
  checkpoint: SignedCheckpoint | null;
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
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export class TrailVerifier {
  readonly #options: TrailVerifierOptions;
  #tree: CompactTree;
  #line = 0;
  /** The pruned base, until its checkpoint has verified it. */
  #base: { size: number; line: number; verified: boolean } | null = null;
  #header: TrailHeader | null = null;
  #fault: TrailFault | null = null;
  #checkpoints = 0;
  #last: { cp: SignedCheckpoint; line: number } | null = null;

  constructor(options: TrailVerifierOptions) {
    this.#options = options;
    this.#tree = new CompactTree(options.hasher);
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
    if (this.#fault) return false;
    this.#line++;
    if (this.#header === null) return this.#readHeader(line);
    if (this.#base && !this.#base.verified && !line.startsWith('{"keyId"')) {
      return this.#fail('CHECKPOINT_PLACEMENT', this.#line, `line ${this.#line}: the pruned-trail base (line ${this.#base.line}) must be followed by the checkpoint signed at its size ${this.#base.size}`);
    }
    if (line.startsWith(ENTRY_PREFIX)) return this.#readEntry(line, bytes);
    if (this.#line === 2 && line.startsWith('{"frontier"')) return this.#readBase(line);
    return this.#readCheckpoint(line);
  }

  /** Ends the trail. `endsWithNewline` false means the last line was cut short. */
  finish(options: { endsWithNewline?: boolean } = {}): TrailResult {
    if (!this.#fault) this.#finalChecks(options.endsWithNewline ?? true);
    if (this.#fault) return { ok: false, fault: this.#fault, entriesChecked: this.#tree.size };
    return {
      ok: true,
      treeSize: this.#tree.size,
      prunedTo: this.#base?.size ?? 0,
      rootHash: toBase64(this.#tree.root()),
      checkpoints: this.#checkpoints,
      checkpoint: this.#last?.cp ?? null,
    };
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
    if (h.keyId !== this.#options.keyId) {
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
    if (b.kind !== 'base' || !isCount(size) || size === 0 || !hashes || hashes.some((h) => h === null) || Object.keys(b).length !== 3) {
      return this.#fail('MALFORMED', 2, 'line 2: malformed pruned-trail base');
    }
    if (this.#header && size > this.#header.treeSize) return this.#fail('HEADER', 2, `line 2: the base size ${size} is beyond the header's tree size`);
    try {
      this.#tree = new CompactTree(this.#options.hasher, size, hashes as Uint8Array[]);
    } catch {
      return this.#fail('MALFORMED', 2, `line 2: a tree of ${size} entries needs other subtree hashes than the base gives`);
    }
    this.#base = { size, line: 2, verified: false };
    return true;
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
    return true;
  }

  #readCheckpoint(line: string): boolean {
    const at = this.#line;
    const c = this.#parse(line, 'an entry or a checkpoint');
    if (!c) return false;
    if (c.kind !== 'checkpoint') return this.#fail('MALFORMED', at, `line ${at} is neither an entry nor a checkpoint`);
    const { treeSize, rootHash, timestamp, keyId, signature } = c;
    if (!isCount(treeSize) || typeof rootHash !== 'string' || typeof timestamp !== 'string' || !ISO.test(timestamp) || typeof keyId !== 'string' || typeof signature !== 'string' || Object.keys(c).length !== 6) {
      return this.#fail('MALFORMED', at, `line ${at}: malformed checkpoint`);
    }
    const cp: SignedCheckpoint = { treeSize, rootHash, timestamp, keyId, signature };
    const n = this.#tree.size;
    if (treeSize !== n) {
      return this.#fail('CHECKPOINT_PLACEMENT', at, `line ${at}: a checkpoint for tree size ${treeSize} must follow entry seq ${treeSize}, but it follows entry seq ${n}`);
    }
    const previous = this.#last;
    if (previous && treeSize <= previous.cp.treeSize) {
      return this.#fail('CHECKPOINT_PLACEMENT', at, `line ${at}: checkpoint for size ${treeSize} does not grow the tree past the one at line ${previous.line} (size ${previous.cp.treeSize})`);
    }
    if (keyId !== this.#options.keyId) {
      return this.#fail('KEY_MISMATCH', at, `line ${at}: checkpoint (size ${treeSize}) names key ${keyId}, the trusted key is ${this.#options.keyId}`);
    }
    const sig = fromBase64Of(signature, this.#options.signatureLength ?? 64);
    const root = fromBase64Of(rootHash, this.#options.hasher.size);
    if (!sig || !root) return this.#fail('MALFORMED', at, `line ${at}: checkpoint signature or root hash is not canonical base64 of the right length`);
    if (!this.#options.verifySignature(checkpointMessage(cp), sig)) {
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

/**
 * The Merkle tree of RFC 6962 / RFC 9162 (and C2SP merkle-tree): leaf hash
 * `H(0x00 || leaf)`, node hash `H(0x01 || left || right)`, left-balanced, so the tree of `n`
 * leaves is the perfect subtrees of the binary digits of `n`, largest first.
 *
 * Pure: the hash function is passed in (`merkleHasher(sha256)`), so this runs in browsers, in
 * the server (node:crypto) and in an offline verifier alike.
 *
 * Sizes and indexes are JavaScript numbers: exact up to 2^53, with no 32-bit bit operations.
 *
 *   const hasher = merkleHasher((b) => createHash('sha256').update(b).digest());
 *   const tree = new CompactTree(hasher);
 *   tree.append(hasher.hashLeaf(utf8('{"seq":1}')));
 *   tree.root();
 */

import { bytesEqual } from './bytes.ts';

export type HashFn = (data: Uint8Array) => Uint8Array;

/** The three hashes a Merkle tree needs. `size` is the hash length in bytes. */
export interface MerkleHasher {
  readonly size: number;
  emptyRoot(): Uint8Array;
  hashLeaf(leaf: Uint8Array): Uint8Array;
  hashChildren(left: Uint8Array, right: Uint8Array): Uint8Array;
}

/** An RFC 6962 hasher over any hash function (SHA-256 in Countersign). */
export function merkleHasher(hash: HashFn): MerkleHasher {
  const empty = hash(new Uint8Array(0));
  return {
    size: empty.length,
    emptyRoot: () => empty.slice(),
    hashLeaf(leaf) {
      const buf = new Uint8Array(leaf.length + 1);
      buf[0] = 0x00;
      buf.set(leaf, 1);
      return hash(buf);
    },
    hashChildren(left, right) {
      const buf = new Uint8Array(1 + left.length + right.length);
      buf[0] = 0x01;
      buf.set(left, 1);
      buf.set(right, 1 + left.length);
      return hash(buf);
    },
  };
}

/** The coordinates of a perfect subtree: leaves `[index * 2^level, (index + 1) * 2^level)`. */
export interface NodeId {
  level: number;
  index: number;
}

/** A half-open range of leaves `[start, end)`. */
export type LeafRange = readonly [start: number, end: number];

/** Largest power of two strictly smaller than `n` (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/**
 * The compact form of a tree: the roots of its perfect subtrees, largest first (one per set
 * bit of `size`). Appending is O(log n) and reports every node it completes, which is what a
 * store keeps to answer proofs later.
 */
export class CompactTree {
  #size: number;
  readonly #hashes: Uint8Array[];

  constructor(
    readonly hasher: MerkleHasher,
    size = 0,
    hashes: readonly Uint8Array[] = [],
  ) {
    if (!isSize(size)) throw new RangeError(`bad tree size ${size}`);
    if (popcount(size) !== hashes.length) {
      throw new RangeError(`a tree of ${size} leaves has ${popcount(size)} subtree roots, got ${hashes.length}`);
    }
    this.#size = size;
    this.#hashes = hashes.slice();
  }

  get size(): number {
    return this.#size;
  }

  /** The perfect subtree roots, largest first (copy). */
  get hashes(): Uint8Array[] {
    return this.#hashes.slice();
  }

  /**
   * Appends one leaf hash. `onNode` hears the leaf itself (level 0) and every perfect subtree
   * the append completes, bottom up.
   */
  append(leafHash: Uint8Array, onNode?: (node: NodeId, hash: Uint8Array) => void): void {
    let hash = leafHash;
    let index = this.#size;
    let level = 0;
    onNode?.({ level, index }, hash);
    let rest = this.#size;
    while (rest % 2 === 1) {
      const left = this.#hashes.pop()!;
      hash = this.hasher.hashChildren(left, hash);
      rest = (rest - 1) / 2;
      index = (index - 1) / 2;
      level++;
      onNode?.({ level, index }, hash);
    }
    this.#hashes.push(hash);
    this.#size++;
  }

  /** The root hash (MTH) of the whole tree. */
  root(): Uint8Array {
    const n = this.#hashes.length;
    if (n === 0) return this.hasher.emptyRoot();
    let root = this.#hashes[n - 1]!;
    for (let i = n - 2; i >= 0; i--) root = this.hasher.hashChildren(this.#hashes[i]!, root);
    return root;
  }

  clone(): CompactTree {
    return new CompactTree(this.hasher, this.#size, this.#hashes);
  }
}

function popcount(n: number): number {
  let count = 0;
  for (let rest = n; rest > 0; rest = Math.floor(rest / 2)) count += rest % 2;
  return count;
}

/** The frontier node ids of a tree of `size` leaves: one perfect subtree per set bit, largest first. */
export function frontierNodes(size: number): NodeId[] {
  return perfectSubtrees(0, size);
}

/**
 * Splits `[start, end)` into perfect subtrees, left to right. For the ranges proofs use
 * (aligned to a power of two at least their length) the sizes decrease, and the range's hash
 * is the right fold of these subtrees' hashes (`rangeHash`).
 */
export function perfectSubtrees(start: number, end: number): NodeId[] {
  const out: NodeId[] = [];
  let at = start;
  while (at < end) {
    let size = 1;
    while (at % (size * 2) === 0 && at + size * 2 <= end) size *= 2;
    out.push({ level: Math.log2(size), index: at / size });
    at += size;
  }
  return out;
}

/** The hash of the subtree over `[start, end)` from stored perfect-subtree hashes. */
export function rangeHash(hasher: MerkleHasher, range: LeafRange, node: (id: NodeId) => Uint8Array): Uint8Array {
  const parts = perfectSubtrees(range[0], range[1]);
  if (parts.length === 0) return hasher.emptyRoot();
  let hash = node(parts[parts.length - 1]!);
  for (let i = parts.length - 2; i >= 0; i--) hash = hasher.hashChildren(node(parts[i]!), hash);
  return hash;
}

/** The subtrees whose hashes make the inclusion proof of leaf `index` in a tree of `size` (RFC 9162 PATH), in proof order. */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  if (!isSize(index) || !isSize(size) || index >= size) throw new RangeError(`no leaf ${index} in a tree of ${size}`);
  const out: LeafRange[] = [];
  const path = (m: number, start: number, end: number): void => {
    const n = end - start;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      path(m, start, start + k);
      out.push([start + k, end]);
    } else {
      path(m - k, start + k, end);
      out.push([start, start + k]);
    }
  };
  path(index, 0, size);
  return out;
}

/** The subtrees whose hashes make the consistency proof from `size1` to `size2` (RFC 9162 PROOF), in proof order. */
export function consistencyProofRanges(size1: number, size2: number): LeafRange[] {
  if (!isSize(size1) || !isSize(size2) || size1 > size2) throw new RangeError(`no consistency proof from ${size1} to ${size2}`);
  if (size1 === 0 || size1 === size2) return [];
  const out: LeafRange[] = [];
  const sub = (m: number, start: number, end: number, whole: boolean): void => {
    const n = end - start;
    if (m === n) {
      if (!whole) out.push([start, end]);
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      sub(m, start, start + k, whole);
      out.push([start + k, end]);
    } else {
      sub(m - k, start + k, end, false);
      out.push([start, start + k]);
    }
  };
  sub(size1, 0, size2, true);
  return out;
}

/** Every perfect subtree the given ranges need, once each. */
export function nodesFor(ranges: readonly LeafRange[]): NodeId[] {
  const seen = new Map<string, NodeId>();
  for (const [start, end] of ranges) {
    for (const id of perfectSubtrees(start, end)) seen.set(`${id.level}/${id.index}`, id);
  }
  return [...seen.values()];
}

export type ProofCheck = { ok: true } | { ok: false; reason: string };

const ok: ProofCheck = { ok: true };
const fail = (reason: string): ProofCheck => ({ ok: false, reason });

/**
 * Verifies that `leafHash` is leaf `index` of the tree of `size` leaves with root `root`
 * (RFC 9162 §2.1.3.2).
 */
export function verifyInclusion(
  hasher: MerkleHasher,
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): ProofCheck {
  if (!isSize(index) || !isSize(size)) return fail('index and tree size must be whole numbers');
  if (index >= size) return fail(`leaf ${index} is outside a tree of ${size}`);
  if (leafHash.length !== hasher.size || root.length !== hasher.size) return fail(`the leaf hash and root must be ${hasher.size} bytes`);
  if (proof.some((p) => p.length !== hasher.size)) return fail(`every proof hash must be ${hasher.size} bytes`);
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) return fail('the proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = hasher.hashChildren(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = hasher.hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return fail('the proof is too short');
  return bytesEqual(r, root) ? ok : fail('the proof does not lead to the root');
}

/**
 * Verifies that the tree of `size1` leaves with root `root1` is a prefix of the tree of
 * `size2` leaves with root `root2` (RFC 9162 §2.1.4.2). A proof from size 0 is empty and only
 * valid for the empty tree's root.
 */
export function verifyConsistency(
  hasher: MerkleHasher,
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): ProofCheck {
  if (!isSize(size1) || !isSize(size2)) return fail('tree sizes must be whole numbers');
  if (size1 > size2) return fail(`size1 (${size1}) is larger than size2 (${size2})`);
  if (size1 === size2) {
    if (proof.length > 0) return fail('equal sizes need an empty proof');
    if (size1 === 0 && !bytesEqual(root1, hasher.emptyRoot())) return fail('the empty tree has another root');
    return bytesEqual(root1, root2) ? ok : fail('equal sizes with different roots');
  }
  if (size1 === 0) {
    if (proof.length > 0) return fail('a proof from the empty tree must be empty');
    if (!bytesEqual(root1, hasher.emptyRoot())) return fail('the empty tree has another root');
    return root2.length === hasher.size ? ok : fail(`root2 must be ${hasher.size} bytes`);
  }
  if (proof.length === 0) return fail('the proof is empty');
  if (proof.some((p) => p.length !== hasher.size)) return fail(`every proof hash must be ${hasher.size} bytes`);
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) return fail('the proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      fr = hasher.hashChildren(c, fr);
      sr = hasher.hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = hasher.hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return fail('the proof is too short');
  if (!bytesEqual(fr, root1)) return fail('the proof does not lead to root1');
  if (!bytesEqual(sr, root2)) return fail('the proof does not lead to root2');
  return ok;
}

function isPowerOfTwo(n: number): boolean {
  let rest = n;
  while (rest > 1 && rest % 2 === 0) rest /= 2;
  return rest === 1;
}

/**
 * A whole tree in memory, every perfect subtree kept: proofs for any size up to its own. For
 * tests and small tools; the server keeps the same nodes in its database.
 */
export class MemoryTree {
  readonly #levels: Uint8Array[][] = [];
  readonly #compact: CompactTree;

  constructor(readonly hasher: MerkleHasher) {
    this.#compact = new CompactTree(hasher);
  }

  get size(): number {
    return this.#compact.size;
  }

  append(leafHash: Uint8Array): void {
    this.#compact.append(leafHash, ({ level, index }, hash) => {
      (this.#levels[level] ??= [])[index] = hash;
    });
  }

  node({ level, index }: NodeId): Uint8Array {
    const hash = this.#levels[level]?.[index];
    if (!hash) throw new RangeError(`no node ${level}/${index}`);
    return hash;
  }

  leafHash(index: number): Uint8Array {
    return this.node({ level: 0, index });
  }

  /** The root at any size up to the current one. */
  root(size = this.size): Uint8Array {
    if (size > this.size) throw new RangeError(`the tree has only ${this.size} leaves`);
    return rangeHash(this.hasher, [0, size], (id) => this.node(id));
  }

  inclusionProof(index: number, size = this.size): Uint8Array[] {
    if (size > this.size) throw new RangeError(`the tree has only ${this.size} leaves`);
    return inclusionProofRanges(index, size).map((r) => rangeHash(this.hasher, r, (id) => this.node(id)));
  }

  consistencyProof(size1: number, size2 = this.size): Uint8Array[] {
    if (size2 > this.size) throw new RangeError(`the tree has only ${this.size} leaves`);
    return consistencyProofRanges(size1, size2).map((r) => rangeHash(this.hasher, r, (id) => this.node(id)));
  }
}

/**
 * For an inclusion proof of leaf `index` in a tree of `size` with `proofLength` hashes: on which
 * side each proof hash goes as the path is folded up (`left`: hash(p, r); `right`: hash(r, p)),
 * or null when a proof of that length cannot be right. The same walk as `verifyInclusion`, for
 * callers whose hash is asynchronous (WebCrypto in the SDK).
 */
export function inclusionSides(index: number, size: number, proofLength: number): Array<'left' | 'right'> | null {
  if (!isSize(index) || !isSize(size) || index >= size || !isSize(proofLength)) return null;
  let fn = index;
  let sn = size - 1;
  const sides: Array<'left' | 'right'> = [];
  for (let i = 0; i < proofLength; i++) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      sides.push('left');
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else sides.push('right');
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? sides : null;
}

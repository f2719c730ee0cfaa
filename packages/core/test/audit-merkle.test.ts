/**
 * The Merkle tree against the RFC 6962 / RFC 9162 test vectors of transparency-dev/merkle
 * (vectors/merkle in the repository, copied from that project: written by others, so passing means agreeing
 * with the standard),
 * a naive reference implementation, and fast-check properties.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CompactTree,
  MemoryTree,
  fromBase64,
  merkleHasher,
  perfectSubtrees,
  toBase64,
  toHex,
  utf8,
  verifyConsistency,
  verifyInclusion,
  type MerkleHasher,
} from '../src/index.ts';

const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());
const hasher: MerkleHasher = merkleHasher(sha256);

const VECTORS = [resolve(import.meta.dirname, '../../../vectors/merkle')].find(existsSync);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.json') ? [path] : [];
  });
}

/** Vectors hold base64 that is sometimes deliberately not a hash; decode leniently as the Go code does. */
const b64 = (s: string | null | undefined): Uint8Array => new Uint8Array(Buffer.from(s ?? '', 'base64'));

interface InclusionVector {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

interface ConsistencyVector {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

describe('RFC 6962 test vectors (transparency-dev/merkle testdata)', () => {
  it('finds the vectors', () => {
    expect(VECTORS, 'vectors/merkle must exist in the repository').toBeDefined();
  });
  const root = VECTORS ?? '';
  const inclusion = VECTORS ? files(join(root, 'inclusion')) : [];
  const consistency = VECTORS ? files(join(root, 'consistency')) : [];

  it('has both kinds, with happy paths and corruptions', () => {
    expect(inclusion.length).toBeGreaterThan(50);
    expect(consistency.length).toBeGreaterThan(50);
  });

  it.each(inclusion.map((f) => [relative(root, f), f]))('inclusion %s', (_name, file) => {
    const v = JSON.parse(readFileSync(file, 'utf8')) as InclusionVector;
    const result = verifyInclusion(hasher, v.leafIdx, v.treeSize, b64(v.leafHash), (v.proof ?? []).map(b64), b64(v.root));
    expect(result.ok, `${v.desc}: ${result.ok ? 'verified' : result.reason}`).toBe(!v.wantErr);
  });

  it.each(consistency.map((f) => [relative(root, f), f]))('consistency %s', (_name, file) => {
    const v = JSON.parse(readFileSync(file, 'utf8')) as ConsistencyVector;
    const result = verifyConsistency(hasher, v.size1, v.size2, (v.proof ?? []).map(b64), b64(v.root1), b64(v.root2));
    expect(result.ok, `${v.desc}: ${result.ok ? 'verified' : result.reason}`).toBe(!v.wantErr);
  });

  it('the happy-path proofs are exactly the ones this tree generates over the RFC 6962 data set', () => {
    // The classic 8 leaves of RFC 6962's tests; the vectors' roots and proofs come from them.
    const leaves = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'];
    const tree = new MemoryTree(hasher);
    for (const hex of leaves) tree.append(hasher.hashLeaf(new Uint8Array(Buffer.from(hex, 'hex'))));
    for (const file of inclusion.filter((f) => f.endsWith('happy-path.json'))) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as InclusionVector;
      expect(toBase64(tree.root(v.treeSize))).toBe(v.root);
      expect(toBase64(tree.leafHash(v.leafIdx))).toBe(v.leafHash);
      expect(tree.inclusionProof(v.leafIdx, v.treeSize).map(toBase64)).toEqual(v.proof ?? []);
    }
    for (const file of consistency.filter((f) => f.endsWith('happy-path.json'))) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as ConsistencyVector;
      expect(toBase64(tree.root(v.size1))).toBe(v.root1);
      expect(toBase64(tree.root(v.size2))).toBe(v.root2);
      expect(tree.consistencyProof(v.size1, v.size2).map(toBase64)).toEqual(v.proof ?? []);
    }
  });
});

/** MTH straight from the RFC's recursive definition. */
function referenceRoot(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return hasher.hashLeaf(leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return hasher.hashChildren(referenceRoot(leaves.slice(0, k)), referenceRoot(leaves.slice(k)));
}

/** Distinct leaves, so "another leaf" is really another leaf. */
const leafData = fc.uniqueArray(fc.uint8Array({ maxLength: 12 }), {
  minLength: 1,
  maxLength: 70,
  selector: (bytes) => Buffer.from(bytes).toString('hex'),
});

function build(data: readonly Uint8Array[]): MemoryTree {
  const tree = new MemoryTree(hasher);
  for (const d of data) tree.append(hasher.hashLeaf(d));
  return tree;
}

/** Flips one bit of one of `hashes`. */
function flip(hashes: readonly Uint8Array[], which: number, bit: number): Uint8Array[] {
  return hashes.map((h, i) => {
    if (i !== which % hashes.length) return h;
    const copy = h.slice();
    copy[Math.floor(bit / 8) % copy.length]! ^= 1 << (bit % 8);
    return copy;
  });
}

describe('Merkle tree properties', () => {
  it('known answers: the empty tree and one leaf', () => {
    expect(toHex(new CompactTree(hasher).root())).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const one = new CompactTree(hasher);
    one.append(hasher.hashLeaf(utf8('')));
    expect(toHex(one.root())).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  });

  it('the compact tree and every prefix root equal the RFC definition', () => {
    fc.assert(
      fc.property(leafData, (data) => {
        const tree = build(data);
        const compact = new CompactTree(hasher);
        data.forEach((d, i) => {
          compact.append(hasher.hashLeaf(d));
          expect(compact.root()).toEqual(referenceRoot(data.slice(0, i + 1)));
          expect(tree.root(i + 1)).toEqual(compact.root());
        });
      }),
      { numRuns: 60 },
    );
  });

  it('an append completes at most log2(n)+1 nodes and keeps one root per set bit of the size', () => {
    const compact = new CompactTree(hasher);
    for (let i = 0; i < 1000; i++) {
      let nodes = 0;
      compact.append(hasher.hashLeaf(utf8(String(i))), () => nodes++);
      expect(nodes).toBeLessThanOrEqual(Math.floor(Math.log2(i + 1)) + 1);
      expect(compact.hashes.length).toBe([...(i + 1).toString(2)].filter((b) => b === '1').length);
    }
  });

  it('every inclusion proof verifies; a changed leaf, proof node, root or index fails', () => {
    fc.assert(
      fc.property(leafData, fc.nat(), fc.nat(), fc.nat(), (data, a, b, bit) => {
        const tree = build(data);
        const size = 1 + (a % data.length);
        const index = b % size;
        const leaf = tree.leafHash(index);
        const root = tree.root(size);
        const proof = tree.inclusionProof(index, size);
        expect(verifyInclusion(hasher, index, size, leaf, proof, root)).toEqual({ ok: true });
        expect(verifyInclusion(hasher, index, size, flip([leaf], 0, bit)[0]!, proof, root).ok).toBe(false);
        expect(verifyInclusion(hasher, index, size, leaf, proof, flip([root], 0, bit)[0]!).ok).toBe(false);
        if (proof.length > 0) {
          expect(verifyInclusion(hasher, index, size, leaf, flip(proof, bit, bit), root).ok).toBe(false);
          expect(verifyInclusion(hasher, index, size, leaf, proof.slice(1), root).ok).toBe(false);
          expect(verifyInclusion(hasher, index, size, leaf, [...proof, proof[0]!], root).ok).toBe(false);
        }
        if (size > 1) expect(verifyInclusion(hasher, (index + 1) % size, size, leaf, proof, root).ok).toBe(false);
        // A different leaf's data never verifies at this place.
        const other = hasher.hashLeaf(new Uint8Array([...data[index]!, 1]));
        expect(verifyInclusion(hasher, index, size, other, proof, root).ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('every consistency proof verifies; a changed proof node or either root fails', () => {
    fc.assert(
      fc.property(leafData, fc.nat(), fc.nat(), fc.nat(), (data, a, b, bit) => {
        const tree = build(data);
        const size2 = 1 + (a % data.length);
        const size1 = 1 + (b % size2);
        const root1 = tree.root(size1);
        const root2 = tree.root(size2);
        const proof = tree.consistencyProof(size1, size2);
        expect(verifyConsistency(hasher, size1, size2, proof, root1, root2)).toEqual({ ok: true });
        expect(verifyConsistency(hasher, size1, size2, proof, flip([root1], 0, bit)[0]!, root2).ok).toBe(false);
        expect(verifyConsistency(hasher, size1, size2, proof, root1, flip([root2], 0, bit)[0]!).ok).toBe(false);
        if (proof.length > 0) {
          expect(verifyConsistency(hasher, size1, size2, flip(proof, bit, bit), root1, root2).ok).toBe(false);
          expect(verifyConsistency(hasher, size1, size2, proof.slice(0, -1), root1, root2).ok).toBe(false);
        }
        if (size1 < size2) {
          // A tree that differs anywhere in the first size1 leaves is not a prefix.
          const forked = build(data.map((d, i) => (i === b % size1 ? new Uint8Array([...d, 7]) : d)));
          expect(verifyConsistency(hasher, size1, size2, proof, forked.root(size1), root2).ok).toBe(false);
          // …nor does the old root extend to the forked tree, whatever proof the forked log offers.
          expect(verifyConsistency(hasher, size1, size2, forked.consistencyProof(size1, size2), root1, forked.root(size2)).ok).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('from the empty tree only the empty root and an empty proof verify', () => {
    const tree = build([utf8('a'), utf8('b')]);
    expect(verifyConsistency(hasher, 0, 2, [], hasher.emptyRoot(), tree.root()).ok).toBe(true);
    expect(verifyConsistency(hasher, 0, 2, [], tree.root(1), tree.root()).ok).toBe(false);
    expect(verifyConsistency(hasher, 0, 2, [tree.root(1)], hasher.emptyRoot(), tree.root()).ok).toBe(false);
  });

  it('splits ranges into perfect subtrees, largest first', () => {
    expect(perfectSubtrees(0, 13)).toEqual([
      { level: 3, index: 0 },
      { level: 2, index: 2 },
      { level: 0, index: 12 },
    ]);
    expect(perfectSubtrees(8, 16)).toEqual([{ level: 3, index: 1 }]);
  });
});

describe('base64', () => {
  it('round-trips and agrees with Buffer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const text = toBase64(bytes);
        expect(text).toBe(Buffer.from(bytes).toString('base64'));
        expect(fromBase64(text)).toEqual(bytes);
      }),
    );
  });

  it('refuses every spelling but the canonical one', () => {
    const hash = sha256(utf8('x'));
    const text = toBase64(hash); // 44 chars; the last data char carries 4 bits and 2 bits of padding
    expect(fromBase64(text)).toEqual(hash);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const sibling = alphabet[alphabet.indexOf(text[42]!) ^ 1]!; // differs only in a padding bit
    // Buffer accepts the sibling as the same bytes; a strict decoder must not.
    expect(new Uint8Array(Buffer.from(text.slice(0, 42) + sibling + '=', 'base64'))).toEqual(hash);
    expect(fromBase64(text.slice(0, 42) + sibling + '=')).toBeNull();
    expect(fromBase64(text.slice(0, 43))).toBeNull();
    expect(fromBase64(`${text.slice(0, 40)}*${text.slice(41)}`)).toBeNull();
    expect(fromBase64('A=BC')).toBeNull();
  });
});

/**
 * SHA-256 and RFC 6962 tree hashing on node:crypto: what the audit tables' hashes are computed
 * with (store/trail.ts), shared with the audit signing side (audit/crypto.ts re-exports it).
 */
import { hash } from 'node:crypto';
import type { HashFn, MerkleHasher } from '@countersign/core';

/** One-shot SHA-256 (`crypto.hash`: no Hash object per call, which is most of the cost for small inputs). */
export const sha256: HashFn = (data) => hash('sha256', data, 'buffer');

const EMPTY = sha256(new Uint8Array(0));

/** RFC 6962 hashing on node:crypto. Copying the prefix and data into one buffer is cheaper than a streaming Hash. */
export const hasher: MerkleHasher = {
  size: 32,
  emptyRoot: () => EMPTY.slice(),
  hashLeaf(leaf) {
    const buf = Buffer.allocUnsafe(leaf.length + 1);
    buf[0] = 0x00;
    buf.set(leaf, 1);
    return hash('sha256', buf, 'buffer');
  },
  hashChildren(left, right) {
    const buf = Buffer.allocUnsafe(1 + left.length + right.length);
    buf[0] = 0x01;
    buf.set(left, 1);
    buf.set(right, 1 + left.length);
    return hash('sha256', buf, 'buffer');
  },
};

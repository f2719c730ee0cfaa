/**
 * Review of branch `trail`: `Countersign.verifyInclusion` accepts a leaf that records other
 * deciders than the signed receipt — "who approved" is the field a DB writer rewrites (before
 * the entry is checkpointed, the signer signs whatever the DB holds past its state).
 * FAILS on the branch as reviewed.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryTree, auditLeafJson, checkpointMessage, merkleHasher, payloadHash, receiptBody, receiptMessage, toBase64, utf8, type Decision, type SignedCheckpoint } from '@countersign/core';
import { Countersign } from '../src/index.ts';

const sha = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());

describe('review: verifyInclusion binds the deciders', () => {
  it('refuses a leaf whose deciders are not the receipt\'s', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
    const keyId = Buffer.from(sha(spki)).toString('hex').slice(0, 16);
    const requestId = 'req_review1';
    const alice = { type: 'operator' as const, id: 'op_alice', name: 'alice' };
    const base: Omit<Decision, 'receipt'> = { outcome: 'approved', decidedBy: 'reviewers', deciders: [alice], reason: null, at: '2026-01-01T00:00:00.000Z', action: 'block_ip', args: { ip: '203.0.113.9' }, alternative: null, modified: false };
    const body = receiptBody(sha, requestId, base as Decision, keyId);
    const decision: Decision = { ...base, receipt: { ...body, signature: sign(null, receiptMessage(body), privateKey).toString('base64') } };

    // The entry as the DB writer left it: approved by mallory.
    const leaf = auditLeafJson({
      seq: 2,
      at: decision.at,
      type: 'approved',
      requestId,
      actor: { type: 'operator', id: 'op_mallory', name: 'mallory' },
      data: { decidedBy: 'reviewers', deciders: ['mallory'], reason: null, alternative: null, modified: false, payloadHash: payloadHash(sha, 'block_ip', { ip: '203.0.113.9' }) },
    });
    const hasher = merkleHasher(sha);
    const tree = new MemoryTree(hasher);
    tree.append(hasher.hashLeaf(utf8('{"seq":1}')));
    tree.append(hasher.hashLeaf(utf8(leaf)));
    tree.append(hasher.hashLeaf(utf8('{"seq":3}')));
    const cpBody = { treeSize: 3, rootHash: toBase64(tree.root()), timestamp: '2026-01-01T00:01:00.000Z' };
    const checkpoint: SignedCheckpoint = { ...cpBody, keyId, signature: sign(null, checkpointMessage(cpBody), privateKey).toString('base64') };
    const proof = { seq: 2, leafIndex: 1, treeSize: 3, leaf, inclusionPath: tree.inclusionProof(1, 3).map(toBase64) };

    const cs = new Countersign({ env: {}, url: 'http://127.0.0.1:9', apiKey: 'cs_agent_x', auditPublicKey: pem, onReportError: () => {} });
    await expect(cs.verifyInclusion(requestId, decision, { checkpoint, proof })).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
  });
});

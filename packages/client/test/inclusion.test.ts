/**
 * Receipts checked against a later signed checkpoint (`Countersign.verifyInclusion`), against a
 * real server: a decision's `approved` entry is shown included in a checkpoint signed after it by
 * the pinned key; a proof for another entry, a checkpoint edited or signed by another key, or a
 * proof that does not lead to the signed root is refused (RECEIPT_MISMATCH).
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointMessage, type SignedCheckpoint } from '@countersign/core';
import { Countersign } from '../src/index.ts';
import { api, startServer, type TestServer } from './support/server.ts';

describe('decision inclusion in a signed checkpoint', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  }, 60_000);
  afterAll(async () => {
    await server.stop();
  });

  it('shows an approval is in a later checkpoint, and refuses every forged piece of evidence', async () => {
    const pem = (await (await fetch(`${server.url}/v1/audit/public-key`, { headers: { authorization: `Bearer ${server.agentKey}` } })).text()).trim();
    const cs = new Countersign({ env: {}, url: server.url, apiKey: server.agentKey, auditPublicKey: pem, onReportError: () => {} });
    const handle = await cs.requestApproval({ action: 'block_ip', args: { ip: '203.0.113.9' }, confidence: 0.97, context: { threatScore: 0.95 } });
    const decision = await handle.decision();
    expect(decision.outcome).toBe('approved');
    // More history after the decision, then a checkpoint over all of it.
    for (let i = 0; i < 5; i++) await api(server, '/v1/requests', { token: server.agentKey, body: { action: 'block_ip', args: { ip: `198.51.100.${i}` }, confidence: 0.97, context: { threatScore: 0.95 } } });
    const checkpoint = (await api<SignedCheckpoint>(server, '/v1/audit/checkpoints', { body: {} })).body;
    const entries = (await api<{ items: Array<{ seq: number; type: string }> }>(server, `/v1/requests/${handle.id}/audit`)).body.items;
    const seqOf = (type: string) => entries.find((e) => e.type === type)!.seq;
    const proofOf = async (seq: number) => (await api<any>(server, `/v1/audit/proof/inclusion?seq=${seq}&treeSize=${checkpoint.treeSize}`)).body;
    const proof = await proofOf(seqOf('approved'));
    await expect(cs.verifyInclusion(handle.id, decision, { checkpoint, proof })).resolves.toBeUndefined();

    const refused = (evidence: { checkpoint: SignedCheckpoint; proof: any }) => expect(cs.verifyInclusion(handle.id, decision, evidence)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    await refused({ checkpoint, proof: await proofOf(seqOf('created')) }); // another entry of the request
    await refused({ checkpoint: { ...checkpoint, treeSize: checkpoint.treeSize + 1 }, proof }); // an edited checkpoint
    await refused({ checkpoint, proof: { ...proof, inclusionPath: [...proof.inclusionPath].reverse() } });
    await refused({ checkpoint, proof: { ...proof, leaf: proof.leaf.replace('"decidedBy":"policy"', '"decidedBy":"reviewers"') } });
    const other = generateKeyPairSync('ed25519');
    await refused({ checkpoint: { ...checkpoint, signature: sign(null, checkpointMessage(checkpoint), other.privateKey).toString('base64') }, proof });
  }, 60_000);
});

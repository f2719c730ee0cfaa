/**
 * Red-team review of key rotation in the SDK (branch rotation). Each test is an attack that
 * should be refused; a failing test is an open defect.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handoverMessage, receiptMessage, type Decision, type HandoverBody, type SignedHandover } from '@countersign/core';
import { Countersign } from '../src/index.ts';
import { ReceiptVerifier } from '../src/receipts.ts';

const BIN = fileURLToPath(new URL('../../server/bin/countersign.js', import.meta.url));
const AUTO = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } } as const;

let dir: string;
let oldPem: string;
let oldKeyId: string;
let retiredKeyPath: string;
let chain: { current: string; handovers: SignedHandover[] };
let decision: Decision;
let requestId: string;

const rawOf = (k: KeyObject) => (k.export({ type: 'spki', format: 'der' }) as Buffer).subarray(12);
const idOf = (k: KeyObject) => createHash('sha256').update(k.export({ type: 'spki', format: 'der' }) as Buffer).digest('hex').slice(0, 16);
const signReceipt = (d: Decision, keyId: string, priv: KeyObject): Decision => {
  const { signature: _s, ...body } = d.receipt!;
  const b = { ...body, keyId };
  return { ...d, receipt: { ...b, signature: sign(null, receiptMessage(b), priv).toString('base64') } };
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-sdk-review-rotation-'));
  const database = `sqlite:${join(dir, 'cs.db')}`;
  const keyPath = join(dir, 'countersign-audit-key.pem');
  const before = await Countersign.embedded({ env: {}, database, auditKey: keyPath });
  oldPem = await before.gateway.auditPublicKey!();
  await (await before.requestApproval({ ...AUTO })).decision();
  await before.close();
  const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'audit', 'rotate-key', '--database', database, '--audit-key', keyPath, '--reason', 'review', '--json'], {
    env: { ...process.env, COUNTERSIGN_AUDIT_WITNESS_DIR: '' },
  });
  const rotated = JSON.parse(stdout) as { fromKeyId: string; retiredKeyPath: string };
  oldKeyId = rotated.fromKeyId;
  retiredKeyPath = rotated.retiredKeyPath;
  const after = await Countersign.embedded({ env: {}, database, auditKey: keyPath, auditPublicKey: oldPem });
  const handle = await after.requestApproval({ ...AUTO, args: { ip: '203.0.113.8' } });
  decision = await handle.decision();
  requestId = handle.id;
  chain = await after.gateway.auditKeyChain!();
  await after.close();
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('review: SDK key-chain attacks', () => {
  it('an SDK that learned the chain A → B refuses a later chain A → X (a stolen retired key A signing a forged hand-over): the chain it knows only grows', async () => {
    let served = chain;
    const v = new ReceiptVerifier(async () => oldPem, { chain: async () => served });
    await v.check(requestId, decision); // learns A → B
    // Mallory holds the retired private key A (stolen from the retired-key file) and a key X of her own.
    const a = createPrivateKey(readFileSync(retiredKeyPath, 'utf8'));
    const x = generateKeyPairSync('ed25519');
    const genuine = chain.handovers[0]!;
    const body: HandoverBody = {
      fromKeyId: oldKeyId,
      fromPublicKey: genuine.fromPublicKey,
      toKeyId: idOf(x.publicKey),
      toPublicKey: rawOf(x.publicKey).toString('base64'),
      treeSize: genuine.treeSize,
      rootHash: genuine.rootHash,
      timestamp: genuine.timestamp,
    };
    const m = handoverMessage(body);
    const forged: SignedHandover = { ...body, fromSignature: sign(null, m, a).toString('base64'), toSignature: sign(null, m, x.privateKey).toString('base64') };
    served = { current: body.toKeyId, handovers: [forged] };
    await expect(v.check(requestId, signReceipt(decision, body.toKeyId, x.privateKey))).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
  });

  it('an SDK pinned to the old key, with the server\'s chain available, refuses a receipt the retired key signed (a second server still on the old key)', async () => {
    const a = createPrivateKey(readFileSync(retiredKeyPath, 'utf8'));
    const fresh = new ReceiptVerifier(async () => oldPem, { chain: async () => chain });
    await expect(fresh.check(requestId, signReceipt(decision, oldKeyId, a))).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
  });

  it('a malformed served chain is a RECEIPT_MISMATCH refusal, not a TypeError', async () => {
    const v = new ReceiptVerifier(async () => oldPem, { chain: async () => ({ current: 'x', handovers: [null as unknown as SignedHandover] }) });
    await expect(v.check(requestId, decision)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
  });
});

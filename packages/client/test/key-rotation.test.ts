/**
 * The SDK pinned to the old audit key, after `countersign audit rotate-key` (the real CLI, as a
 * child process) handed the trail to a new key: it follows the signed chain to verify receipts
 * the new key signed, and refuses a chain that is not signed by its pinned key, a tampered one,
 * none at all, and — once it knows the chain — a receipt the retired key signed.
 */
import { createPrivateKey, sign } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CountersignError, receiptMessage, type Decision, type SignedHandover } from '@countersign/core';
import { Countersign } from '../src/index.ts';
import { ReceiptVerifier } from '../src/receipts.ts';

const BIN = fileURLToPath(new URL('../../server/bin/countersign.js', import.meta.url));
const AUTO = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } } as const;

let dir: string;
let database: string;
let keyPath: string;
let oldPem: string;
let oldKeyId: string;
let retiredKeyPath: string;
let chain: { current: string; handovers: SignedHandover[] };
let decision: Decision;
let requestId: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-sdk-rotation-'));
  database = `sqlite:${join(dir, 'cs.db')}`;
  keyPath = join(dir, 'countersign-audit-key.pem');
  const before = await Countersign.embedded({ env: {}, database, auditKey: keyPath });
  oldPem = await before.gateway.auditPublicKey!();
  const first = await before.requestApproval({ ...AUTO });
  await first.decision();
  await before.close();
  const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'audit', 'rotate-key', '--database', database, '--audit-key', keyPath, '--reason', 'test rotation', '--json'], {
    env: { ...process.env, COUNTERSIGN_AUDIT_WITNESS_DIR: '' },
  });
  const rotated = JSON.parse(stdout) as { fromKeyId: string; toKeyId: string; retiredKeyPath: string };
  oldKeyId = rotated.fromKeyId;
  retiredKeyPath = rotated.retiredKeyPath;
  // Pinned to the OLD key, against the server now running on the new one.
  const after = await Countersign.embedded({ env: {}, database, auditKey: keyPath, auditPublicKey: oldPem });
  const handle = await after.requestApproval({ ...AUTO, args: { ip: '203.0.113.8' } });
  decision = await handle.decision(); // verified through the chain, or this throws
  requestId = handle.id;
  chain = await after.gateway.auditKeyChain!();
  await after.close();
  expect(decision.receipt!.keyId).toBe(rotated.toKeyId);
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const verifier = (served: () => Promise<{ current: string; handovers: SignedHandover[] }>, pem = oldPem) => new ReceiptVerifier(async () => pem, { chain: served });

describe('an SDK pinned to the old audit key', () => {
  it('follows the signed chain to the new key (PEM pin, and a key-id pin while the server serves the new key)', async () => {
    expect(chain.handovers).toHaveLength(1);
    expect(chain.handovers[0]!.fromKeyId).toBe(oldKeyId);
    await expect(verifier(async () => chain).check(requestId, decision)).resolves.toBeUndefined();
    const newPem = readFileSync(keyPath, 'utf8'); // private PEM: derive the public one the server would serve
    const { createPublicKey } = await import('node:crypto');
    const served = createPublicKey(newPem).export({ type: 'spki', format: 'pem' }).toString();
    const byId = new ReceiptVerifier(async () => served, { expectKeyId: oldKeyId, chain: async () => chain });
    await expect(byId.check(requestId, decision)).resolves.toBeUndefined();
  });

  it('refuses a receipt of the new key when no chain is served, or one that does not start at the pinned key', async () => {
    await expect(verifier(async () => ({ current: chain.current, handovers: [] })).check(requestId, decision)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    // Pinned to another key (Mallory's view of "the old key"): the same genuine chain proves nothing to it.
    const { generateKeyPairSync } = await import('node:crypto');
    const other = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await expect(verifier(async () => chain, other).check(requestId, decision)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
  });

  it('refuses a tampered chain: a signature swapped, the new key replaced, the size moved', async () => {
    const h = chain.handovers[0]!;
    const tampered: SignedHandover[] = [
      { ...h, fromSignature: h.toSignature },
      { ...h, toSignature: h.fromSignature },
      { ...h, treeSize: h.treeSize + 1 },
      { ...h, toPublicKey: h.fromPublicKey },
    ];
    for (const t of tampered) {
      await expect(verifier(async () => ({ current: chain.current, handovers: [t] })).check(requestId, decision)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    }
  });

  it('with a chain source, refuses a receipt the retired key signed (a server still on the old key, or a stolen retired key)', async () => {
    const v = verifier(async () => chain);
    await v.check(requestId, decision); // learns the chain
    const { signature: _sig, ...body } = decision.receipt!;
    const oldBody = { ...body, keyId: oldKeyId };
    const oldSigned = { ...decision, receipt: { ...oldBody, signature: sign(null, receiptMessage(oldBody), createPrivateKey(readFileSync(retiredKeyPath, 'utf8'))).toString('base64') } };
    // With no chain source, the pin alone accepts it (the SDK cannot know of a rotation it is never shown)…
    await expect(new ReceiptVerifier(async () => oldPem).check(requestId, oldSigned)).resolves.toBeUndefined();
    // …with one, it is refused: after learning the chain, and on a fresh verifier too (it fetches the chain on its first check).
    await expect(v.check(requestId, oldSigned)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH', message: expect.stringContaining('retired key') });
    await expect(verifier(async () => chain).check(requestId, oldSigned)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH', message: expect.stringContaining('retired key') });
  });
});

describe('the SDK re-reads the key chain', () => {
  it('after its TTL, so a rotation it was not shown is learned even while the old key still signs', async () => {
    let now = 0;
    let served: { current: string; handovers: SignedHandover[] } = { current: oldKeyId, handovers: [] };
    let fetches = 0;
    const v = new ReceiptVerifier(async () => oldPem, {
      chain: async () => {
        fetches++;
        return served;
      },
      chainTtlMs: 60_000,
      now: () => now,
    });
    const { signature: _sig, ...body } = decision.receipt!;
    const oldBody = { ...body, keyId: oldKeyId };
    const oldSigned = { ...decision, receipt: { ...oldBody, signature: sign(null, receiptMessage(oldBody), createPrivateKey(readFileSync(retiredKeyPath, 'utf8'))).toString('base64') } };
    await v.check(requestId, oldSigned); // the chain served so far has no hand-over: the old key is current
    served = chain;
    now = 59_999;
    await v.check(requestId, oldSigned); // within the TTL: not re-read
    expect(fetches).toBe(1);
    now = 60_000;
    await expect(v.check(requestId, oldSigned)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH', message: expect.stringContaining('retired key') });
    expect(fetches).toBe(2);
  });
});

describe('a server from before key rotation (no GET /v1/audit/keys: 404 NOT_FOUND)', () => {
  const noRoute = async (): Promise<never> => {
    throw new CountersignError('NOT_FOUND', 'no route GET /v1/audit/keys');
  };
  const oldSignedDecision = () => {
    const { signature: _sig, ...body } = decision.receipt!;
    const oldBody = { ...body, keyId: oldKeyId };
    return { ...decision, receipt: { ...oldBody, signature: sign(null, receiptMessage(oldBody), createPrivateKey(readFileSync(retiredKeyPath, 'utf8'))).toString('base64') } };
  };

  it('has never handed over: a receipt of the pinned key verifies, one of any other key is refused', async () => {
    await expect(verifier(noRoute).check(requestId, oldSignedDecision())).resolves.toBeUndefined();
    await expect(verifier(noRoute).check(requestId, decision)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
  });

  it('once a chain with a hand-over was learned, the route going missing is a fork, not an empty chain', async () => {
    let now = 0;
    let source: () => Promise<unknown> = async () => chain;
    const v = new ReceiptVerifier(async () => oldPem, { chain: () => source(), chainTtlMs: 1000, now: () => now });
    await v.check(requestId, decision);
    source = noRoute;
    now = 5000;
    await expect(v.check(requestId, oldSignedDecision())).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH', message: expect.stringContaining('forked') });
  });

  it('any other failure to fetch the chain still refuses', async () => {
    const down = async (): Promise<never> => {
      throw new CountersignError('NETWORK_ERROR', 'connection refused');
    };
    await expect(verifier(down).check(requestId, oldSignedDecision())).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH', message: expect.stringContaining('could not be fetched') });
  });
});

/**
 * Core's key-chain rules (audit/rotation.ts) against the attacks on rotation: a chain that hands
 * back to a used key, forks, does not pass the pinned key, is signed by only one of its keys, or
 * puts a retired key's checkpoint after its hand-over.
 */
import { createHash, generateKeyPairSync, sign, verify, createPublicKey, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkpointKeyProblem, followKeyChain, handoverMessage, keyIdOf, retentionKeyProblem, toBase64, type ChainCrypto, type ChainKey, type SignedHandover } from '../src/index.ts';

const PREFIX = Buffer.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);
const sha = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());
const crypto: ChainCrypto = {
  keyIdOfRaw: (raw) => keyIdOf(sha, Buffer.concat([PREFIX, raw])),
  verify: (raw, m, s) => verify(null, m, createPublicKey({ key: Buffer.concat([PREFIX, raw]), format: 'der', type: 'spki' }), s),
};
interface K {
  priv: KeyObject;
  raw: Uint8Array;
  id: string;
}
const key = (): K => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }).subarray(12));
  return { priv: privateKey, raw, id: crypto.keyIdOfRaw(raw) };
};
const ROOT = toBase64(new Uint8Array(32));
function handover(from: K, to: K, treeSize: number, signers: { from?: K; to?: K } = {}): SignedHandover {
  const body = { fromKeyId: from.id, fromPublicKey: toBase64(from.raw), toKeyId: to.id, toPublicKey: toBase64(to.raw), treeSize, rootHash: ROOT, timestamp: '2026-01-01T00:00:00.000Z' };
  const m = handoverMessage(body);
  return { ...body, fromSignature: sign(null, m, (signers.from ?? from).priv).toString('base64'), toSignature: sign(null, m, (signers.to ?? to).priv).toString('base64') };
}

describe('followKeyChain', () => {
  const [a, b, c, d] = [key(), key(), key(), key()];
  const line = [handover(a, b, 10), handover(b, c, 20)];

  it('follows A → B → C from any key on it, in any order, with each key covering its sizes', () => {
    for (const pinned of [a, b, c]) {
      const r = followKeyChain({ keyId: pinned.id, rawPublicKey: pinned.raw }, [...line].reverse(), crypto);
      expect(r.ok && r.keys.map((k) => [k.keyId, k.after, k.upTo])).toEqual([
        [a.id, -1, 10],
        [b.id, 10, 20],
        [c.id, 20, null],
      ]);
    }
    const keys = (followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, line, crypto) as unknown as { keys: ChainKey[] }).keys;
    expect(checkpointKeyProblem(keys, a.id, 10)).toBeNull();
    expect(checkpointKeyProblem(keys, a.id, 11)).toMatch(/retired/);
    expect(checkpointKeyProblem(keys, b.id, 10)).toMatch(/before it/);
    expect(checkpointKeyProblem(keys, c.id, 21)).toBeNull();
    expect(checkpointKeyProblem(keys, d.id, 21)).toMatch(/not on the followed key chain/);
    expect(retentionKeyProblem(keys, c.id, 5)).toBeNull();
    expect(retentionKeyProblem(keys, a.id, 11)).toMatch(/retired/);
  });

  it('refuses a chain that hands back to a key it used (A → B → A)', () => {
    const r = followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [handover(a, b, 10), handover(b, a, 20)], crypto);
    expect(r.ok).toBe(false);
  });

  it('refuses a fork (two hand-overs from one key) and statements off the line', () => {
    expect(followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [handover(a, b, 10), handover(a, c, 10)], crypto)).toMatchObject({ ok: false, reason: expect.stringMatching(/forks/) });
    expect(followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [handover(a, b, 10), handover(c, d, 30)], crypto)).toMatchObject({ ok: false });
  });

  it('refuses a chain that does not pass the pinned key', () => {
    expect(followKeyChain({ keyId: d.id, rawPublicKey: d.raw }, line, crypto)).toMatchObject({ ok: false });
  });

  it('refuses a statement signed by only one of its keys (either one), or with a key id not of its key', () => {
    expect(followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [handover(a, b, 10, { to: d })], crypto)).toMatchObject({ ok: false, reason: expect.stringMatching(/new key/) });
    expect(followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [handover(a, b, 10, { from: d })], crypto)).toMatchObject({ ok: false, reason: expect.stringMatching(/retiring key/) });
    expect(followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [{ ...handover(a, b, 10), toKeyId: c.id }], crypto)).toMatchObject({ ok: false });
  });

  it('refuses sizes that go backwards (B hands over before it took over)', () => {
    expect(followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [handover(a, b, 20), handover(b, c, 10)], crypto)).toMatchObject({ ok: false });
    expect(followKeyChain({ keyId: a.id, rawPublicKey: a.raw }, [handover(a, b, 20), handover(b, c, 20)], crypto)).toMatchObject({ ok: false });
  });
});

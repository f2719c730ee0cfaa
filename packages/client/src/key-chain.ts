/**
 * Following the audit key's hand-overs (key rotation) in the SDK, with WebCrypto. The SDK is
 * pinned to a key; after a rotation the server signs receipts with a newer one. The server's
 * `GET /v1/audit/keys` lists the hand-over statements, each signed by both its old and its new
 * key; fetched over any transport, it proves nothing by itself: core's `followKeyChain` accepts it
 * only as a line of keys through the pinned key, each step signed by both keys, never returning to
 * a key. WebCrypto is asynchronous and core is not, so every key id and signature the statements
 * carry is computed first, and core decides over the results.
 */
import { CountersignError, followKeyChain, fromBase64Of, handoverBody, handoverMessage, toHex, type ChainKey, type SignedHandover } from '@countersign/core';

/** The part of WebCrypto used here. */
export interface ChainSubtle {
  digest(algorithm: 'SHA-256', data: Uint8Array): Promise<ArrayBuffer>;
  importKey(format: 'spki', keyData: Uint8Array, algorithm: { name: 'Ed25519' }, extractable: false, usages: ['verify']): Promise<unknown>;
  verify(algorithm: { name: 'Ed25519' }, key: unknown, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
}

const SPKI_PREFIX = new Uint8Array([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);

export function spkiOfRaw(raw: Uint8Array): Uint8Array {
  const out = new Uint8Array(SPKI_PREFIX.length + raw.length);
  out.set(SPKI_PREFIX);
  out.set(raw, SPKI_PREFIX.length);
  return out;
}

/** The raw key inside an Ed25519 SubjectPublicKeyInfo, or null. */
export function rawOfSpki(spki: Uint8Array): Uint8Array | null {
  if (spki.length !== SPKI_PREFIX.length + 32 || SPKI_PREFIX.some((b, i) => spki[i] !== b)) return null;
  return spki.slice(SPKI_PREFIX.length);
}

const hexOf = (bytes: Uint8Array) => toHex(bytes);

/**
 * The keys of the chain through the pinned key (see core `followKeyChain`), or RECEIPT_MISMATCH.
 * `pinned.raw` may be null when only the key id was pinned: the chain's statements then supply
 * the key, which must hash to that id.
 */
export async function followChain(subtle: ChainSubtle, pinned: { keyId: string; raw: Uint8Array | null }, handovers: readonly SignedHandover[]): Promise<ChainKey[]> {
  const refuse = (why: string): never => {
    throw new CountersignError('RECEIPT_MISMATCH', `the audit key chain the server served does not lead from the pinned key ${pinned.keyId}: ${why}`);
  };
  if (!Array.isArray(handovers) || handovers.length > 1000) refuse('not a list of hand-overs');
  const ids = new Map<string, string>();
  const verified = new Set<string>();
  for (const h of handovers) {
    for (const [pub, sig] of [
      [h.fromPublicKey, h.fromSignature],
      [h.toPublicKey, h.toSignature],
    ] as const) {
      const raw = fromBase64Of(pub, 32);
      const s = fromBase64Of(sig, 64);
      if (!raw || !s) continue; // core refuses the statement
      const spki = spkiOfRaw(raw);
      ids.set(hexOf(raw), hexOf(new Uint8Array(await subtle.digest('SHA-256', spki))).slice(0, 16));
      let ok = false;
      try {
        const key = await subtle.importKey('spki', spki, { name: 'Ed25519' }, false, ['verify']);
        ok = await subtle.verify({ name: 'Ed25519' }, key, s, handoverMessage(handoverBody(h)));
      } catch {
        ok = false;
      }
      if (ok) verified.add(`${hexOf(raw)}|${hexOf(s)}|${hexOf(handoverMessage(handoverBody(h)))}`);
    }
  }
  let raw = pinned.raw;
  if (raw === null) {
    // A key id pin: the statements carry the key; its id must be the pin.
    for (const h of handovers) {
      if (h.fromKeyId === pinned.keyId) raw = fromBase64Of(h.fromPublicKey, 32);
      else if (h.toKeyId === pinned.keyId) raw = fromBase64Of(h.toPublicKey, 32);
      if (raw) break;
    }
    if (!raw) return refuse('no hand-over names it');
  }
  if (!ids.has(hexOf(raw))) ids.set(hexOf(raw), hexOf(new Uint8Array(await subtle.digest('SHA-256', spkiOfRaw(raw)))).slice(0, 16));
  const followed = followKeyChain({ keyId: pinned.keyId, rawPublicKey: raw }, handovers, {
    keyIdOfRaw: (r) => ids.get(hexOf(r)) ?? '',
    verify: (r, message, signature) => verified.has(`${hexOf(r)}|${hexOf(signature)}|${hexOf(message)}`),
  });
  if (!followed.ok) return refuse(followed.reason);
  return followed.keys;
}

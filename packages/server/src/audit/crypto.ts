/**
 * node:crypto for the audit trail: SHA-256 for the Merkle tree, and the Ed25519 key that signs
 * checkpoints and decision receipts.
 *
 * The key lives in a PEM file outside the database (PKCS#8, mode 0600), created on first
 * start: someone who can write the database still cannot sign a checkpoint that covers an
 * edited trail. Servers that share one database must share the key file.
 */
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, hash, sign, verify, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CountersignError, ed25519RawKey, keyIdOf, toBase64, type HashFn, type MerkleHasher, type NoteKey } from '@countersign/core';

// The hashing the tree is stored with lives with its tables (store/hashing.ts); signing stays here.
import { hasher, sha256 } from '../store/hashing.ts';
export { hasher, sha256 };

export interface PublicAuditKey {
  /** First 16 hex digits of SHA-256 of the SubjectPublicKeyInfo. */
  readonly keyId: string;
  readonly publicKeyPem: string;
  /** The key as a signed-note verifier names it (checkpoint notes for witnesses). */
  readonly noteKey: NoteKey;
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

export interface AuditKey extends PublicAuditKey {
  /** Where the private key is kept; null for a key that lives only in this process. */
  readonly path: string | null;
  /** Base64 Ed25519 signature. */
  sign(message: Uint8Array): string;
  /** A secret derived from the private key for `label` (HMAC-SHA256), e.g. the redaction key: stable as long as the key file is. */
  derive(label: string): Buffer;
}

function publicPart(publicKey: KeyObject): PublicAuditKey {
  if (publicKey.asymmetricKeyType !== 'ed25519') {
    throw new CountersignError('VALIDATION_FAILED', `the audit key must be Ed25519 (got ${publicKey.asymmetricKeyType ?? 'unknown'})`);
  }
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const keyId = keyIdOf(sha256, spki);
  return {
    keyId,
    noteKey: { keyId, rawPublicKey: ed25519RawKey(new Uint8Array(spki))! },
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    verify: (message, signature) => {
      try {
        return verify(null, message, publicKey, signature);
      } catch {
        return false;
      }
    },
  };
}

function fromPrivate(privateKey: KeyObject, path: string | null): AuditKey {
  const pub = publicPart(createPublicKey(privateKey));
  const material = privateKey.export({ type: 'pkcs8', format: 'der' });
  return {
    ...pub,
    path,
    sign: (message) => toBase64(sign(null, message, privateKey)),
    derive: (label) => createHmac('sha256', material).update(`countersign/${label}`).digest(),
  };
}

/** A verifier for a public key in PEM (SPKI) form, e.g. the file given to `audit verify --public-key`. */
export function publicKeyFromPem(pem: string): PublicAuditKey {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `not a PEM public key: ${(err as Error).message}`);
  }
  return publicPart(key);
}

/** A fresh key that lives in memory only (in-memory databases, tests). */
export function ephemeralAuditKey(): AuditKey {
  return fromPrivate(generateKeyPairSync('ed25519').privateKey, null);
}

/**
 * Reads the key at `path`, creating it (and its directory) when there is none. Creation is
 * exclusive, so two servers starting at once end up with the same key.
 */
export function loadOrCreateAuditKey(path: string): AuditKey {
  const existing = readKey(path);
  if (existing) return existing;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 }); // a new directory is private, like the key
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    writeFileSync(path, pem, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new CountersignError('STORE_UNAVAILABLE', `cannot create the audit key ${path}: ${(err as Error).message}`);
    }
  }
  const created = readKey(path);
  if (!created) throw new CountersignError('STORE_UNAVAILABLE', `the audit key ${path} vanished after it was created`);
  return created;
}

function readKey(path: string): AuditKey | null {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CountersignError('STORE_UNAVAILABLE', `cannot read the audit key ${path}: ${(err as Error).message}`);
  }
  try {
    return fromPrivate(createPrivateKey(pem), path);
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `${path} is not an Ed25519 private key in PEM: ${(err as Error).message}`);
  }
}

/**
 * Step-up MFA primitives: RFC 6238 TOTP through `otplib` (SHA-1, 6 digits, 30 s steps, one step
 * of clock drift either way), secrets sealed with AES-256-GCM when an encryption key is
 * configured, and the number-matching code shown on a critical request's card.
 */
import { createHash, createHmac } from 'node:crypto';
import { gcmOpen, keyTextVariants, type Sealer } from '../store/sealing.ts';
import { generateSecret, generateURI, generateSync, verifySync } from 'otplib';

export const TOTP_PERIOD_SECONDS = 30;

export function newTotpSecret(): string {
  return generateSecret();
}

export function totpUri(secret: string, account: string, issuer = 'Countersign'): string {
  return generateURI({ issuer, label: account, secret });
}

/** The code for `atMs` (tests, and the CLI's `mfa code` helper for scripted setups). */
export function totpCode(secret: string, atMs: number): string {
  return generateSync({ secret, epoch: Math.floor(atMs / 1000) });
}

/**
 * The RFC 6238 time step a code belongs to, when it is valid within ±1 step of `atMs`; null
 * otherwise. Steps at or before `afterStep` are refused (single use).
 */
export function verifyTotp(secret: string, code: string, atMs: number, afterStep?: number | null): number | null {
  const result = verifySync({
    secret,
    token: code,
    epoch: Math.floor(atMs / 1000),
    epochTolerance: TOTP_PERIOD_SECONDS,
    ...(afterStep != null ? { afterTimeStep: afterStep } : {}),
  });
  return result.valid && 'timeStep' in result ? result.timeStep : null;
}

/**
 * Seals TOTP secrets at rest, under the store's keys (store/sealing.ts: `enc:v2:<keyId>:…`, so
 * `countersign keys rotate-encryption` re-seals them with everything else). With no key they are
 * stored as `plain:` (the database is then as sensitive as the authenticators themselves; set
 * COUNTERSIGN_ENCRYPTION_KEY to avoid that). Secrets sealed before key ids,
 * `enc:v1:<iv>:<tag>:<body>`, were sealed under SHA-256 of the key's text; they still open under
 * the current or a previous key.
 */
export class SecretBox {
  constructor(private readonly sealer: Sealer) {}

  get encrypts(): boolean {
    return this.sealer.encrypts;
  }

  seal(secret: string): string {
    return this.sealer.encrypts ? this.sealer.seal(secret) : `plain:${secret}`;
  }

  /** Throws when the stored value is sealed and its key is not configured, or it was altered (fail closed). */
  open(stored: string): string {
    if (stored.startsWith('plain:')) return stored.slice('plain:'.length);
    if (stored.startsWith('enc:v2:')) return this.sealer.open(stored, 'operator_totp.secret');
    const [tag0, version, iv, tag, body] = stored.split(':');
    if (tag0 !== 'enc' || version !== 'v1' || iv === undefined || tag === undefined || body === undefined) {
      throw new Error('unrecognised TOTP secret format');
    }
    const keys = this.sealer.keys.all;
    if (keys.length === 0) throw new Error('TOTP secrets are encrypted and COUNTERSIGN_ENCRYPTION_KEY is not set');
    for (const key of keys) {
      // The configured text was the key material then; SHA-256 turned it into the 32 bytes AES-256
      // needs. The same key written another way derives another key, so each way is tried.
      for (const text of keyTextVariants(key)) {
        const derived = createHash('sha256').update(`countersign-totp:${text}`).digest();
        try {
          return gcmOpen(derived, Buffer.from(iv, 'base64'), Buffer.from(tag, 'base64'), Buffer.from(body, 'base64'));
        } catch {
          // the next way of writing it, or the next key
        }
      }
    }
    throw new Error('the TOTP secret was sealed under a key that is neither COUNTERSIGN_ENCRYPTION_KEY nor in COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS, or it was altered');
  }
}

/** Two digits derived from the request id under the database's secret: stable, unguessable from outside. */
export function matchCodeFor(secret: string, requestId: string): string {
  const mac = createHmac('sha256', secret).update(`match:${requestId}`).digest();
  return String(mac.readUInt32BE(0) % 100).padStart(2, '0');
}

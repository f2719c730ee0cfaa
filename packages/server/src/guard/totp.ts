/**
 * Step-up MFA primitives: RFC 6238 TOTP through `otplib` (SHA-1, 6 digits, 30 s steps, one step
 * of clock drift either way), secrets sealed with AES-256-GCM when an encryption key is
 * configured, and the number-matching code shown on a critical request's card.
 */
import { createHash, createHmac } from 'node:crypto';
import { gcmOpen, gcmSeal } from '../store/sealing.ts';
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
 * Seals TOTP secrets at rest. With no key they are stored as `plain:` (the database is then as
 * sensitive as the authenticators themselves; set COUNTERSIGN_ENCRYPTION_KEY to avoid that).
 */
export class SecretBox {
  private readonly key: Buffer | null;

  constructor(passphrase: string | undefined) {
    // Any string works as the key material; SHA-256 turns it into the 32 bytes AES-256 needs.
    this.key = passphrase ? createHash('sha256').update(`countersign-totp:${passphrase}`).digest() : null;
  }

  get encrypts(): boolean {
    return this.key !== null;
  }

  seal(secret: string): string {
    if (!this.key) return `plain:${secret}`;
    // The one AES-256-GCM implementation (store/sealing.ts), in this column's own layout.
    const { iv, tag, body } = gcmSeal(this.key, secret);
    return `enc:v1:${iv.toString('base64')}:${tag.toString('base64')}:${body.toString('base64')}`;
  }

  /** Throws when the stored value is sealed and the key is missing or different (fail closed). */
  open(stored: string): string {
    if (stored.startsWith('plain:')) return stored.slice('plain:'.length);
    const [tag0, version, iv, tag, body] = stored.split(':');
    if (tag0 !== 'enc' || version !== 'v1' || iv === undefined || tag === undefined || body === undefined) {
      throw new Error('unrecognised TOTP secret format');
    }
    if (!this.key) throw new Error('TOTP secrets are encrypted and COUNTERSIGN_ENCRYPTION_KEY is not set');
    return gcmOpen(this.key, Buffer.from(iv, 'base64'), Buffer.from(tag, 'base64'), Buffer.from(body, 'base64'));
  }
}

/** Two digits derived from the request id under the database's secret: stable, unguessable from outside. */
export function matchCodeFor(secret: string, requestId: string): string {
  const mac = createHmac('sha256', secret).update(`match:${requestId}`).digest();
  return String(mac.readUInt32BE(0) % 100).padStart(2, '0');
}

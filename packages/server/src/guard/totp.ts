/**
 * Step-up MFA primitives: RFC 6238 TOTP through `otplib` (SHA-1, 6 digits, 30 s steps, one step
 * of clock drift either way), secrets sealed with AES-256-GCM when an encryption key is
 * configured, and the number-matching code shown on a critical request's card.
 */
import { createHash, createHmac } from 'node:crypto';
import { Sealer, gcmOpen, keyTextVariants } from '../store/sealing.ts';
import type { ServerSecret } from '../keys/server-secret.ts';
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
 * The key TOTP seeds are sealed under when no COUNTERSIGN_ENCRYPTION_KEY is set: derived from the
 * server secret file (keys/server-secret.ts), so the database alone never holds a usable seed.
 */
export function seedSealer(secret: ServerSecret): Sealer {
  return Sealer.fromKey(secret.derive('totp-seed-key').toString('hex'));
}

/**
 * Seals TOTP secrets at rest, always (issue 13, point 8): under COUNTERSIGN_ENCRYPTION_KEY when it
 * is set (store/sealing.ts: `enc:v2:<keyId>:…`, so `countersign keys rotate-encryption` re-seals
 * them with everything else), else under the seed key derived from the server secret file (the
 * same format, its own key id). Seeds stored `plain:` by earlier versions still open, and are
 * sealed at start (`GuardService.sealPlainSeeds`). Secrets sealed before key ids,
 * `enc:v1:<iv>:<tag>:<body>`, were sealed under SHA-256 of the key's text; they still open under
 * the current or a previous key.
 */
export class SecretBox {
  constructor(
    private readonly sealer: Sealer,
    /** The server secret's seed key; without it (tools that have no secret file) nothing new is sealed plain either: seal throws. */
    private readonly seedKey: Sealer | null = null,
  ) {}

  get encrypts(): boolean {
    return this.sealer.encrypts || this.seedKey !== null;
  }

  /** The key id new seeds are sealed under. */
  get keyId(): string | null {
    return (this.sealer.encrypts ? this.sealer.keys.current?.id : this.seedKey?.keys.current?.id) ?? null;
  }

  seal(secret: string): string {
    if (this.sealer.encrypts) return this.sealer.seal(secret);
    if (this.seedKey) return this.seedKey.seal(secret);
    throw new Error('no key to seal a TOTP seed under: set COUNTERSIGN_ENCRYPTION_KEY or give the server secret file');
  }

  /**
   * Seals an operator's seed bound to them: the sealed text is `bound:<operatorId>:<seed>`, so a
   * sealed seed copied onto another operator's row does not open for them (AES-GCM authenticates it).
   */
  sealFor(seed: string, operatorId: string): string {
    return this.seal(`bound:${operatorId}:${seed}`);
  }

  /**
   * The seed of `operatorId`'s stored value, for step-up and confirmation. Fails closed on a
   * `plain:` seed (a database writer could plant one; they are sealed once, at the start of the
   * secret-file era) and on a seal bound to someone else or not bound at all.
   */
  openFor(stored: string, operatorId: string): string {
    if (stored.startsWith('plain:')) throw new Error('a plain TOTP seed is refused; re-enrol');
    const text = this.open(stored);
    const prefix = `bound:${operatorId}:`;
    if (!text.startsWith(prefix)) throw new Error('the TOTP seed is not sealed for this operator; re-enrol');
    return text.slice(prefix.length);
  }

  /** The seed of a value stored before seals were bound (plain or unbound), or null when it is already bound. */
  openLegacy(stored: string): string | null {
    const text = this.open(stored);
    return text.startsWith('bound:') ? null : text;
  }

  /** The sealed text as stored (`bound:…` for current seals); for re-sealing under another key. Throws when the stored value is sealed and its key is not configured, or it was altered (fail closed). */
  open(stored: string): string {
    if (stored.startsWith('plain:')) return stored.slice('plain:'.length);
    if (stored.startsWith('enc:v2:') && this.seedKey) {
      const id = this.seedKey.keyIdOf(stored);
      if (id !== null && this.seedKey.keys.byId(id)) return this.seedKey.open(stored, 'operator_totp.secret');
    }
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

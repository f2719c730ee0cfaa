/**
 * Encryption at rest (COUNTERSIGN_ENCRYPTION_KEY): the one AES-256-GCM implementation of the
 * server. The request columns holding agent-supplied content (args, context — the evidence —,
 * alternatives, description, the decision that embeds the approved args) and the reviews'
 * modified args are sealed on write and opened on read, at the row boundary of the store
 * (store.ts, store/guard.ts, store/trail.ts). A sealed value is self-describing,
 * `enc:v2:<keyId>:<base64(iv | tag | ciphertext)>` with a random 12-byte IV per value and the
 * non-secret fingerprint of the key that sealed it, so plain rows written before a key was set
 * stay readable, and old keys (COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS) keep opening what they sealed
 * until `countersign keys rotate-encryption` has re-sealed it (keys/rotation.ts). Values from
 * before key ids, `enc:v1:<base64>`, are opened by trying the current key, then the previous ones
 * (the GCM tag makes a wrong key fail, never decrypt to garbage). A sealed value read without its
 * key (or altered: the GCM tag) fails closed with STORE_UNAVAILABLE — the ciphertext is never
 * handed out as args. The audit trail holds only payload hashes, never these columns, so it
 * verifies without the key. TOTP secrets (guard/totp.ts) use the same keys and format.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { CountersignError } from '@countersign/core';

/** Values sealed before key ids (read only: tried under every configured key). */
export const SEALED_PREFIX_V1 = 'enc:v1:';
const V2 = /^enc:v2:([0-9a-f]{16}):/;
/**
 * Without a key a value that itself begins with `enc:` (a description can be any text) is stored
 * behind this escape, so it is never mistaken for a sealed value on read.
 */
export const ESCAPED_PREFIX = 'enc:plain:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const KEY_FORMAT = 'must be 32 bytes, as 64 hex characters or base64 (e.g. `openssl rand -base64 32`)';

/**
 * The key: exactly 32 bytes, as 64 hex characters or as base64 (standard or URL-safe, padding
 * optional). Anything else is refused (the server does not start); `name` says which setting.
 */
export function parseEncryptionKey(raw: string, name = 'COUNTERSIGN_ENCRYPTION_KEY'): Buffer {
  const text = raw.trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(text)) {
    const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length === 32) return key;
  }
  throw new CountersignError('VALIDATION_FAILED', `${name} ${KEY_FORMAT}`);
}

/**
 * A key's id: 16 hex characters of HMAC-SHA256(key, "countersign key id"). It names the key in
 * sealed values, errors and the audit trail without revealing anything about it.
 */
export function encryptionKeyId(key: Buffer): string {
  return createHmac('sha256', key).update('countersign key id').digest().subarray(0, 8).toString('hex');
}

export interface EncryptionKey {
  readonly id: string;
  readonly bytes: Buffer;
  /** The configured text: `enc:v1:` TOTP secrets were sealed under a key derived from it. */
  readonly text: string;
  /** The text exactly as configured (untrimmed), also tried for `enc:v1:` TOTP secrets. */
  readonly raw: string;
}

/**
 * The texts an `enc:v1:` TOTP secret's key may have been derived from: that derivation used the
 * configured text itself, so the same 32 bytes written another way (hex, base64 with or without
 * padding, URL-safe), or with the trailing newline a secrets file adds, derive another key.
 */
export function keyTextVariants(key: EncryptionKey): string[] {
  const b64 = key.bytes.toString('base64');
  const url = key.bytes.toString('base64url');
  const forms = [key.raw, key.text, key.bytes.toString('hex'), key.bytes.toString('hex').toUpperCase(), b64, b64.replace(/=+$/, ''), url, `${url}=`];
  return [...new Set(forms.flatMap((t) => [t, `${t}\n`, `${t}\r\n`]))];
}

/**
 * The current key (seals every new value) and the previous ones (only open). Previous keys
 * without a current one are refused: new values must have a key to be sealed under.
 */
export class Keyring {
  static readonly empty = new Keyring(null, []);

  /** `previous`: COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS, comma-separated keys in the same formats. */
  static fromConfig(current: string | undefined, previous?: string | undefined): Keyring {
    const raws = (previous ?? '').split(',').filter((t) => t.trim() !== '');
    if (!current) {
      if (raws.length > 0) {
        throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS is set but COUNTERSIGN_ENCRYPTION_KEY is not: set the new key too (new values are sealed under it)');
      }
      return Keyring.empty;
    }
    const make = (raw: string, name: string): EncryptionKey => {
      const bytes = parseEncryptionKey(raw.trim(), name);
      return { id: encryptionKeyId(bytes), bytes, text: raw.trim(), raw };
    };
    const head = make(current, 'COUNTERSIGN_ENCRYPTION_KEY');
    const rest = raws.map((t, i) => make(t, raws.length > 1 ? `COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS (key ${i + 1} of ${raws.length})` : 'COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS'));
    return new Keyring(head, rest.filter((k, i) => k.id !== head.id && rest.findIndex((o) => o.id === k.id) === i));
  }

  private constructor(
    readonly current: EncryptionKey | null,
    readonly previous: readonly EncryptionKey[],
  ) {}

  /** Current first: the order `enc:v1:` values are tried in. */
  get all(): readonly EncryptionKey[] {
    return this.current ? [this.current, ...this.previous] : [];
  }

  byId(id: string): EncryptionKey | undefined {
    return this.all.find((k) => k.id === id);
  }
}

/** AES-256-GCM with a fresh random 12-byte IV. */
export function gcmSeal(key: Buffer, plaintext: string): { iv: Buffer; tag: Buffer; body: Buffer } {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { iv, tag: cipher.getAuthTag(), body };
}

/** Throws when the tag does not match (wrong key or altered bytes). */
export function gcmOpen(key: Buffer, iv: Buffer, tag: Buffer, body: Buffer): string {
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
}

/** Sealed or escaped: a value the codec must look at on read. */
function isMarked(value: unknown): boolean {
  return typeof value === 'string' && value.startsWith('enc:');
}

export function isSealed(value: string | null | undefined): boolean {
  return typeof value === 'string' && value.startsWith('enc:') && !value.startsWith(ESCAPED_PREFIX);
}

/** Request columns sealed at rest (what an agent supplied, and the decision embedding approved args). */
export const SEALED_REQUEST_COLUMNS = ['args', 'context', 'alternatives', 'description', 'decision'] as const;
/** Review columns sealed at rest (a reviewer's modified args). */
export const SEALED_REVIEW_COLUMNS = ['args'] as const;

type Row = { id?: string } & Record<string, unknown>;

function unpack(packed: Buffer): { iv: Buffer; tag: Buffer; body: Buffer } {
  if (packed.length < IV_BYTES + TAG_BYTES) throw new Error('too short');
  return { iv: packed.subarray(0, IV_BYTES), tag: packed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES), body: packed.subarray(IV_BYTES + TAG_BYTES) };
}

export class Sealer {
  /** No key: values are written plain; sealed values met on read fail closed. */
  static readonly none = new Sealer(Keyring.empty);

  /** COUNTERSIGN_ENCRYPTION_KEY and COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS; a malformed key throws. */
  static fromKey(raw: string | undefined, previous?: string | undefined): Sealer {
    const keys = Keyring.fromConfig(raw, previous);
    return keys === Keyring.empty ? Sealer.none : new Sealer(keys);
  }

  constructor(readonly keys: Keyring) {}

  get encrypts(): boolean {
    return this.keys.current !== null;
  }

  /** What every value sealed now begins with (`enc:v2:<keyId>:`); null without a key. */
  get currentPrefix(): string | null {
    return this.keys.current ? `enc:v2:${this.keys.current.id}:` : null;
  }

  seal(value: string): string;
  seal(value: string | null): string | null;
  seal(value: string | null): string | null {
    if (value === null) return value;
    const key = this.keys.current;
    if (!key) return value.startsWith('enc:') ? ESCAPED_PREFIX + value : value;
    const { iv, tag, body } = gcmSeal(key.bytes, value);
    return `enc:v2:${key.id}:${Buffer.concat([iv, tag, body]).toString('base64')}`;
  }

  /** The id of the key `value` names (`enc:v2:` only); null for anything else. */
  keyIdOf(value: string): string | null {
    return V2.exec(value)?.[1] ?? null;
  }

  /** Plain values pass through; sealed ones are opened or the read fails (STORE_UNAVAILABLE). */
  open(value: string, where: string): string;
  open(value: string | null, where: string): string | null;
  open(value: string | null, where: string): string | null {
    if (value === null || !value.startsWith('enc:')) return value;
    if (value.startsWith(ESCAPED_PREFIX)) return value.slice(ESCAPED_PREFIX.length);
    const id = this.keyIdOf(value);
    if (id === null && !value.startsWith(SEALED_PREFIX_V1)) {
      throw new CountersignError('STORE_UNAVAILABLE', `${where} has an unrecognised encryption format (${value.slice(0, 12)}…)`);
    }
    if (!this.keys.current) {
      const under = id === null ? '' : ` (sealed under key ${id})`;
      throw new CountersignError('STORE_UNAVAILABLE', `${where} is encrypted at rest and COUNTERSIGN_ENCRYPTION_KEY is not set${under}`);
    }
    if (id !== null) {
      const key = this.keys.byId(id);
      if (!key) {
        throw new CountersignError(
          'STORE_UNAVAILABLE',
          `${where} is sealed under encryption key ${id}, which is neither COUNTERSIGN_ENCRYPTION_KEY (${this.keys.current.id}) nor in COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS`,
          { keyId: id },
        );
      }
      try {
        const { iv, tag, body } = unpack(Buffer.from(value.slice(`enc:v2:${id}:`.length), 'base64'));
        return gcmOpen(key.bytes, iv, tag, body);
      } catch {
        throw new CountersignError('STORE_UNAVAILABLE', `${where} cannot be decrypted under key ${id}: the stored value was altered`, { keyId: id });
      }
    }
    const packed = Buffer.from(value.slice(SEALED_PREFIX_V1.length), 'base64');
    for (const key of this.keys.all) {
      try {
        const { iv, tag, body } = unpack(packed);
        return gcmOpen(key.bytes, iv, tag, body);
      } catch {
        // the next key
      }
    }
    throw new CountersignError(
      'STORE_UNAVAILABLE',
      `${where} cannot be decrypted: no configured key (COUNTERSIGN_ENCRYPTION_KEY or COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS) is the key it was written with, or the stored value was altered`,
    );
  }

  /** A copy of `row` with the named columns (those present) sealed. */
  sealRow<T extends object>(row: T, columns: readonly string[]): T {
    const src = row as Row;
    if (!this.encrypts && !columns.some((c) => isMarked(src[c]))) return row;
    const out: Row = { ...(row as Row) };
    for (const c of columns) if (typeof out[c] === 'string') out[c] = this.seal(out[c] as string);
    return out as T;
  }

  /** A copy of `row` with the named columns (those present) opened; `table` names the row in errors. */
  openRow<T extends object>(row: T, columns: readonly string[], table: string): T {
    const src = row as Row;
    if (!columns.some((c) => isMarked(src[c]))) return row;
    const out: Row = { ...src };
    for (const c of columns) {
      if (typeof out[c] === 'string') out[c] = this.open(out[c] as string, `${table}.${c} of ${String(src.id ?? src.request_id ?? '?')}`);
    }
    return out as T;
  }

  sealRequest<T extends object>(row: T): T {
    return this.sealRow(row, SEALED_REQUEST_COLUMNS);
  }

  openRequest<T extends object>(row: T): T {
    return this.openRow(row, SEALED_REQUEST_COLUMNS, 'requests');
  }

  sealReview<T extends object>(row: T): T {
    return this.sealRow(row, SEALED_REVIEW_COLUMNS);
  }

  openReview<T extends object>(row: T): T {
    return this.openRow(row, SEALED_REVIEW_COLUMNS, 'reviews');
  }
}

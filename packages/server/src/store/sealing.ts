/**
 * Encryption at rest (COUNTERSIGN_ENCRYPTION_KEY): the one AES-256-GCM implementation of the
 * server. The request columns holding agent-supplied content (args, context — the evidence —,
 * alternatives, description, the decision that embeds the approved args) and the reviews'
 * modified args are sealed on write and opened on read, at the row boundary of the store
 * (store.ts, guard/store.ts, audit/store.ts). A sealed value is self-describing,
 * `enc:v1:<base64(iv | tag | ciphertext)>` with a random 12-byte IV per value, so plain rows
 * written before a key was set stay readable, and a sealed row read without the key (or with a
 * different one, or altered: the GCM tag) fails closed with STORE_UNAVAILABLE — the ciphertext
 * is never handed out as args. The audit trail holds only payload hashes, never these columns,
 * so it verifies without the key. TOTP secrets (guard/totp.ts) use the same cipher functions.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { CountersignError } from '@countersign/core';

export const SEALED_PREFIX = 'enc:v1:';
/**
 * Without a key a value that itself begins with `enc:` (a description can be any text) is stored
 * behind this escape, so it is never mistaken for a sealed value on read.
 */
const ESCAPED_PREFIX = 'enc:plain:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * The key: exactly 32 bytes, as 64 hex characters or as base64 (standard or URL-safe, padding
 * optional). Anything else is refused (the server does not start).
 */
export function parseEncryptionKey(raw: string): Buffer {
  const text = raw.trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(text)) {
    const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length === 32) return key;
  }
  throw new CountersignError(
    'VALIDATION_FAILED',
    'COUNTERSIGN_ENCRYPTION_KEY must be 32 bytes, as 64 hex characters or base64 (e.g. `openssl rand -base64 32`)',
  );
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
  return typeof value === 'string' && value.startsWith(SEALED_PREFIX);
}

/** Request columns sealed at rest (what an agent supplied, and the decision embedding approved args). */
export const SEALED_REQUEST_COLUMNS = ['args', 'context', 'alternatives', 'description', 'decision'] as const;
/** Review columns sealed at rest (a reviewer's modified args). */
export const SEALED_REVIEW_COLUMNS = ['args'] as const;

type Row = { id?: string } & Record<string, unknown>;

export class Sealer {
  /** No key: values are written plain; sealed values met on read fail closed. */
  static readonly none = new Sealer(null);

  static fromKey(raw: string | undefined): Sealer {
    return raw ? new Sealer(parseEncryptionKey(raw)) : Sealer.none;
  }

  private constructor(private readonly key: Buffer | null) {}

  get encrypts(): boolean {
    return this.key !== null;
  }

  seal(value: string): string;
  seal(value: string | null): string | null;
  seal(value: string | null): string | null {
    if (value === null) return value;
    if (!this.key) return value.startsWith('enc:') ? ESCAPED_PREFIX + value : value;
    const { iv, tag, body } = gcmSeal(this.key, value);
    return SEALED_PREFIX + Buffer.concat([iv, tag, body]).toString('base64');
  }

  /** Plain values pass through; sealed ones are opened or the read fails (STORE_UNAVAILABLE). */
  open(value: string, where: string): string;
  open(value: string | null, where: string): string | null;
  open(value: string | null, where: string): string | null {
    if (value === null || !value.startsWith('enc:')) return value;
    if (value.startsWith(ESCAPED_PREFIX)) return value.slice(ESCAPED_PREFIX.length);
    if (!value.startsWith(SEALED_PREFIX)) {
      throw new CountersignError('STORE_UNAVAILABLE', `${where} has an unrecognised encryption format (${value.slice(0, 12)}…)`);
    }
    if (!this.key) {
      throw new CountersignError('STORE_UNAVAILABLE', `${where} is encrypted at rest and COUNTERSIGN_ENCRYPTION_KEY is not set`);
    }
    const packed = Buffer.from(value.slice(SEALED_PREFIX.length), 'base64');
    try {
      if (packed.length < IV_BYTES + TAG_BYTES) throw new Error('too short');
      return gcmOpen(this.key, packed.subarray(0, IV_BYTES), packed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES), packed.subarray(IV_BYTES + TAG_BYTES));
    } catch {
      throw new CountersignError(
        'STORE_UNAVAILABLE',
        `${where} cannot be decrypted: COUNTERSIGN_ENCRYPTION_KEY is not the key it was written with, or the stored value was altered`,
      );
    }
  }

  /** A copy of `row` with the named columns (those present) sealed. */
  sealRow<T extends object>(row: T, columns: readonly string[]): T {
    const src = row as Row;
    if (!this.key && !columns.some((c) => isMarked(src[c]))) return row;
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

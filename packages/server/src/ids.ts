import { createHash, randomBytes } from 'node:crypto';

const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';

function encodeTime(ms: number, length: number): string {
  let out = '';
  let rest = ms;
  for (let i = 0; i < length; i++) {
    out = CROCKFORD[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

function encodeRandom(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) out += CROCKFORD[byte % 32];
  return out;
}

/**
 * Time-sortable ids in the spirit of ULID (`req_01j…`): 10 characters of millisecond time,
 * then 16 random ones, so listings by id roughly follow creation order.
 */
export function newId(prefix: string, now = Date.now()): string {
  return `${prefix}_${encodeTime(now, 10)}${encodeRandom(randomBytes(16))}`;
}

/** A long random credential. Only its SHA-256 is stored; the value is shown once. */
export function newSecret(prefix: 'csk' | 'cso' | 'css'): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** What listings show of a credential: enough to recognise it, never enough to use it. */
export function secretPrefix(secret: string): string {
  return secret.slice(0, 10);
}

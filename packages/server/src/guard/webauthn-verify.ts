/**
 * WebAuthn ceremonies verified with node:crypto (W3C Web Authentication Level 2, §7.1 and §7.2):
 * the client data (type, challenge, origin), the authenticator data (rpIdHash, the UP and UV
 * flags, the sign counter, the attested credential), the attestation statement (`none`, and
 * `packed`: self attestation, or a certificate's key over the same bytes; no trust chain is
 * checked, so an attestation says nothing about the maker) and the assertion's signature under a
 * COSE key (ES256 on P-256, RS256). A small CBOR reader (RFC 8949, definite lengths only) reads the
 * attestation object and the COSE key; anything it does not expect is refused.
 *
 * Pure apart from crypto: the caller supplies the expected challenge, origins and rpId, and judges
 * the counter it returns against the stored one (`counterOk`).
 */
import { X509Certificate, createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';

export type WebAuthnFailure = 'format' | 'type' | 'challenge' | 'origin' | 'rpId' | 'user_presence' | 'user_verification' | 'attestation' | 'algorithm' | 'signature' | 'counter';

export class WebAuthnError extends Error {
  constructor(
    readonly reason: WebAuthnFailure,
    message: string,
  ) {
    super(message);
  }
}

const fail = (reason: WebAuthnFailure, message: string): never => {
  throw new WebAuthnError(reason, message);
};

export function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

export function fromB64url(text: string): Buffer {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) fail('format', 'not base64url');
  return Buffer.from(text, 'base64url');
}

// ---- CBOR (the subset attestation objects and COSE keys use) ----

type Cbor = number | bigint | string | Buffer | boolean | null | undefined | Cbor[] | Map<Cbor, Cbor>;

const MAX_DEPTH = 8;

/** Decodes one CBOR item at `offset`; returns it and where it ended. */
export function decodeCbor(buf: Buffer, offset = 0, depth = 0): { value: Cbor; end: number } {
  if (depth > MAX_DEPTH) fail('format', 'CBOR nested too deep');
  const need = (n: number) => {
    if (offset + n > buf.length) fail('format', 'CBOR truncated');
  };
  need(1);
  const head = buf[offset]!;
  offset += 1;
  const major = head >> 5;
  const info = head & 0x1f;
  let arg: number;
  if (info < 24) arg = info;
  else if (info === 24) {
    need(1);
    arg = buf[offset]!;
    offset += 1;
  } else if (info === 25) {
    need(2);
    arg = buf.readUInt16BE(offset);
    offset += 2;
  } else if (info === 26) {
    need(4);
    arg = buf.readUInt32BE(offset);
    offset += 4;
  } else if (info === 27) {
    need(8);
    const big = buf.readBigUInt64BE(offset);
    offset += 8;
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) fail('format', 'CBOR integer too large');
    arg = Number(big);
  } else return fail('format', 'CBOR indefinite lengths are not accepted');
  switch (major) {
    case 0:
      return { value: arg, end: offset };
    case 1:
      return { value: -1 - arg, end: offset };
    case 2:
      need(arg);
      return { value: buf.subarray(offset, offset + arg), end: offset + arg };
    case 3:
      need(arg);
      return { value: buf.subarray(offset, offset + arg).toString('utf8'), end: offset + arg };
    case 4: {
      if (arg > 64) fail('format', 'CBOR array too long');
      const out: Cbor[] = [];
      for (let i = 0; i < arg; i++) {
        const item = decodeCbor(buf, offset, depth + 1);
        out.push(item.value);
        offset = item.end;
      }
      return { value: out, end: offset };
    }
    case 5: {
      if (arg > 64) fail('format', 'CBOR map too long');
      const map = new Map<Cbor, Cbor>();
      for (let i = 0; i < arg; i++) {
        const k = decodeCbor(buf, offset, depth + 1);
        const v = decodeCbor(buf, k.end, depth + 1);
        if (typeof k.value !== 'number' && typeof k.value !== 'string') fail('format', 'CBOR map keys must be integers or text');
        if (map.has(k.value)) fail('format', 'CBOR map key repeated');
        map.set(k.value, v.value);
        offset = v.end;
      }
      return { value: map, end: offset };
    }
    case 7:
      if (info === 20) return { value: false, end: offset };
      if (info === 21) return { value: true, end: offset };
      if (info === 22) return { value: null, end: offset };
      return fail('format', 'CBOR simple value or float not accepted');
    default:
      return fail('format', 'CBOR tags are not accepted');
  }
}

// ---- authenticator data ----

export interface AuthenticatorData {
  rpIdHash: Buffer;
  up: boolean;
  uv: boolean;
  signCount: number;
  attested: { aaguid: string; credentialId: Buffer; publicKey: Buffer } | null;
}

export function parseAuthenticatorData(data: Buffer): AuthenticatorData {
  if (data.length < 37) fail('format', 'authenticator data is too short');
  const flags = data[32]!;
  const out: AuthenticatorData = { rpIdHash: data.subarray(0, 32), up: (flags & 0x01) !== 0, uv: (flags & 0x04) !== 0, signCount: data.readUInt32BE(33), attested: null };
  let offset = 37;
  if (flags & 0x40) {
    if (data.length < offset + 18) fail('format', 'attested credential data is truncated');
    const aaguid = data.subarray(offset, offset + 16).toString('hex');
    const idLength = data.readUInt16BE(offset + 16);
    offset += 18;
    if (idLength > 1023 || data.length < offset + idLength) fail('format', 'credential id is truncated or too long');
    const credentialId = data.subarray(offset, offset + idLength);
    offset += idLength;
    const key = decodeCbor(data, offset);
    out.attested = { aaguid, credentialId, publicKey: data.subarray(offset, key.end) };
    offset = key.end;
  }
  if (flags & 0x80) {
    const ext = decodeCbor(data, offset);
    offset = ext.end;
  }
  if (offset !== data.length) fail('format', 'authenticator data has trailing bytes');
  return out;
}

// ---- COSE keys ----

/** COSE algorithms accepted: ES256 (-7) and RS256 (-257). */
export const COSE_ALGORITHMS = [-7, -257] as const;

export function coseKey(cose: Buffer): { alg: number; key: KeyObject } {
  const { value, end } = decodeCbor(cose);
  if (!(value instanceof Map) || end !== cose.length) return fail('format', 'the credential public key is not a COSE key');
  const kty = value.get(1);
  const alg = value.get(3);
  if (kty === 2 && alg === -7) {
    const crv = value.get(-1);
    const x = value.get(-2);
    const y = value.get(-3);
    if (crv !== 1 || !Buffer.isBuffer(x) || !Buffer.isBuffer(y) || x.length !== 32 || y.length !== 32) fail('algorithm', 'an ES256 key must be on P-256');
    return { alg, key: publicKeyOf({ kty: 'EC', crv: 'P-256', x: b64url(x as Buffer), y: b64url(y as Buffer) }) };
  }
  if (kty === 3 && alg === -257) {
    const n = value.get(-1);
    const e = value.get(-2);
    if (!Buffer.isBuffer(n) || !Buffer.isBuffer(e)) return fail('algorithm', 'an RS256 key needs a modulus and a public exponent');
    // The modulus as written may carry leading zero bytes: its size is counted from its first set bit.
    if (bitLength(n) < 2048) fail('algorithm', 'an RS256 key must be RSA of at least 2048 bits');
    // e = 1 makes "signatures" from public data alone; any other e is odd and at least 3, and in practice 65537.
    if (!rsaExponentOk(e)) fail('algorithm', 'an RS256 key’s public exponent must be odd and at least 3 (65537 in practice)');
    return { alg, key: publicKeyOf({ kty: 'RSA', n: b64url(n), e: b64url(e) }) };
  }
  return fail('algorithm', `COSE key type ${String(kty)} with algorithm ${String(alg)} is not accepted (ES256 or RS256)`);
}

/** Bits in a big-endian unsigned integer, leading zero bytes not counted. */
function bitLength(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  if (i === bytes.length) return 0;
  return (bytes.length - i - 1) * 8 + (32 - Math.clz32(bytes[i]!));
}

/** An RSA public exponent: odd, at least 3, at most 8 bytes (node refuses nothing here, so this is the check). */
export function rsaExponentOk(e: Buffer): boolean {
  let i = 0;
  while (i < e.length && e[i] === 0) i++;
  const digits = e.subarray(i);
  if (digits.length === 0 || digits.length > 8) return false;
  const value = BigInt(`0x${digits.toString('hex')}`);
  return value >= 3n && (value & 1n) === 1n;
}

/** A COSE key as a node KeyObject; a key node refuses (a point off the curve, a malformed modulus) is a clear `algorithm` failure, not an internal error. */
function publicKeyOf(jwk: Record<string, string>): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    return fail('algorithm', `the credential public key is not a valid ${jwk.kty === 'EC' ? 'P-256 point' : 'RSA key'} (${(err as Error).message})`);
  }
}

/** The key types each COSE algorithm may be used with: an RS256 signature is never checked under an EC key, nor ES256 under RSA. */
const KEY_TYPE_OF: Record<number, string> = { [-7]: 'ec', [-257]: 'rsa' };

function verifySignature(alg: number, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  if (KEY_TYPE_OF[alg] === undefined || key.asymmetricKeyType !== KEY_TYPE_OF[alg]) return false;
  if (alg === -7 && key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return false;
  try {
    // ES256 signatures are DER (WebAuthn §6.5.6), node's default for EC keys; RS256 is PKCS #1 v1.5.
    return cryptoVerify('sha256', data, key, signature);
  } catch {
    return false;
  }
}

// ---- client data ----

interface ClientData {
  type: string;
  challenge: string;
  origin: string;
  crossOrigin?: boolean;
}

function clientData(raw: Buffer, type: 'webauthn.create' | 'webauthn.get'): ClientData {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    return fail('format', 'clientDataJSON is not JSON');
  }
  const c = parsed as Partial<ClientData>;
  if (typeof c !== 'object' || c === null || typeof c.type !== 'string' || typeof c.challenge !== 'string' || typeof c.origin !== 'string') fail('format', 'clientDataJSON lacks type, challenge or origin');
  if (c.type !== type) fail('type', `clientDataJSON type is ${c.type}, expected ${type}`);
  if (c.crossOrigin === true) fail('origin', 'a cross-origin (iframe) ceremony is refused');
  return c as ClientData;
}

export interface Expected {
  /** Judges the challenge the browser signed (base64url from clientDataJSON); throws a WebAuthnError('challenge') when it is not the one expected. */
  challenge: (challenge: string) => void;
  origins: readonly string[];
  rpId: string;
  requireUserVerification: boolean;
}

function checkCommon(c: ClientData, auth: AuthenticatorData, expected: Expected): void {
  if (!expected.origins.includes(c.origin)) fail('origin', `the ceremony was made at ${c.origin}, not at ${expected.origins.join(' or ')}`);
  expected.challenge(c.challenge);
  if (!auth.rpIdHash.equals(createHash('sha256').update(expected.rpId).digest())) fail('rpId', `the authenticator signed for another relying party than ${expected.rpId}`);
  if (!auth.up) fail('user_presence', 'the authenticator did not confirm user presence');
  if (expected.requireUserVerification && !auth.uv) fail('user_verification', 'the authenticator did not verify the user (PIN or biometric), which policy requires');
}

export interface Registered {
  credentialId: Buffer;
  /** The COSE key as the authenticator gave it. */
  publicKey: Buffer;
  alg: number;
  signCount: number;
  aaguid: string;
  fmt: string;
  uv: boolean;
}

/** The registration ceremony (§7.1): the new credential, or a WebAuthnError. */
export function verifyRegistration(input: { credentialId: Buffer; clientDataJSON: Buffer; attestationObject: Buffer }, expected: Expected): Registered {
  const c = clientData(input.clientDataJSON, 'webauthn.create');
  const { value, end } = decodeCbor(input.attestationObject);
  if (!(value instanceof Map) || end !== input.attestationObject.length) return fail('format', 'attestationObject is not a CBOR map');
  const fmt = value.get('fmt');
  const attStmt = value.get('attStmt');
  const authData = value.get('authData');
  if (typeof fmt !== 'string' || !(attStmt instanceof Map) || !Buffer.isBuffer(authData)) return fail('format', 'attestationObject lacks fmt, attStmt or authData');
  const auth = parseAuthenticatorData(authData);
  checkCommon(c, auth, expected);
  if (!auth.attested) return fail('format', 'the registration carries no attested credential');
  if (!auth.attested.credentialId.equals(input.credentialId)) fail('format', 'the credential id does not match the attested one');
  const { alg, key } = coseKey(auth.attested.publicKey);
  const clientHash = createHash('sha256').update(input.clientDataJSON).digest();
  if (fmt === 'none') {
    if (attStmt.size !== 0) fail('attestation', 'a `none` attestation must have an empty statement');
  } else if (fmt === 'packed') {
    const sig = attStmt.get('sig');
    const stmtAlg = attStmt.get('alg');
    const x5c = attStmt.get('x5c');
    if (!Buffer.isBuffer(sig) || typeof stmtAlg !== 'number') fail('attestation', 'a packed attestation needs alg and sig');
    const signed = Buffer.concat([authData, clientHash]);
    if (x5c !== undefined) {
      if (!Array.isArray(x5c) || x5c.length === 0 || !Buffer.isBuffer(x5c[0])) fail('attestation', 'x5c must be a list of certificates');
      let certKey: KeyObject;
      try {
        certKey = new X509Certificate((x5c as Buffer[])[0]!).publicKey;
      } catch {
        return fail('attestation', 'the attestation certificate does not parse');
      }
      if (stmtAlg !== -7 && stmtAlg !== -257) fail('attestation', `attestation algorithm ${String(stmtAlg)} is not accepted`);
      if (!verifySignature(stmtAlg as number, certKey, signed, sig as Buffer)) fail('attestation', 'the packed attestation signature does not verify');
    } else {
      if (stmtAlg !== alg) fail('attestation', 'a self attestation must use the credential’s own algorithm');
      if (!verifySignature(alg, key, signed, sig as Buffer)) fail('attestation', 'the packed self attestation signature does not verify');
    }
  } else fail('attestation', `attestation format ${fmt} is not accepted (none or packed)`);
  return { credentialId: auth.attested.credentialId, publicKey: auth.attested.publicKey, alg, signCount: auth.signCount, aaguid: auth.attested.aaguid, fmt, uv: auth.uv };
}

/** The assertion ceremony (§7.2) under a stored COSE key: the new counter and UV, or a WebAuthnError. */
export function verifyAssertion(input: { clientDataJSON: Buffer; authenticatorData: Buffer; signature: Buffer }, publicKey: Buffer, expected: Expected): { signCount: number; uv: boolean } {
  const c = clientData(input.clientDataJSON, 'webauthn.get');
  const auth = parseAuthenticatorData(input.authenticatorData);
  checkCommon(c, auth, expected);
  const { alg, key } = coseKey(publicKey);
  const signed = Buffer.concat([input.authenticatorData, createHash('sha256').update(input.clientDataJSON).digest()]);
  if (!verifySignature(alg, key, signed, input.signature)) fail('signature', 'the assertion signature does not verify under the enrolled key');
  return { signCount: auth.signCount, uv: auth.uv };
}

/**
 * §7.2 step 21: a counter that does not move forward, when either side is non-zero, means the
 * credential may have been cloned. Authenticators that keep no counter (always 0) pass.
 */
export function counterOk(stored: number, received: number): boolean {
  if (stored === 0 && received === 0) return true;
  return received > stored;
}

/** The challenge the browser signed, as its clientDataJSON says (base64url), for finding the nonce it names before verifying. */
export function challengeOf(clientDataJSON: Buffer): string {
  return clientData(clientDataJSON, 'webauthn.get').challenge;
}

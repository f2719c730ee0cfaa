/**
 * A software WebAuthn authenticator for server-side tests: a P-256 (or RSA) key made with
 * node:crypto, the registration and assertion bytes built as the W3C spec lays them out (client
 * data JSON, authenticator data, a `none` or `packed` self attestation, CBOR and COSE), so the
 * server's verifier meets the same wire format a browser sends. Each knob an attack needs is a
 * parameter: the origin, the rpId, the counter, the flags, the challenge.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

type Item = number | string | Buffer | Item[] | Map<number | string, Item>;

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 256) return Buffer.from([(major << 5) | 24, n]);
  if (n < 65536) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

export function cbor(x: Item): Buffer {
  if (typeof x === 'number') return x >= 0 ? head(0, x) : head(1, -1 - x);
  if (typeof x === 'string') return Buffer.concat([head(3, Buffer.byteLength(x)), Buffer.from(x)]);
  if (Buffer.isBuffer(x)) return Buffer.concat([head(2, x.length), x]);
  if (Array.isArray(x)) return Buffer.concat([head(4, x.length), ...x.map(cbor)]);
  return Buffer.concat([head(5, x.size), ...[...x].flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

export interface SoftOptions {
  origin: string;
  rpId: string;
  alg?: -7 | -257;
}

export class SoftAuthenticator {
  readonly credentialId = randomBytes(32);
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  counter = 0;

  constructor(readonly options: SoftOptions) {
    const pair = options.alg === -257 ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKey = pair.privateKey;
    this.publicKey = pair.publicKey;
  }

  /** A copy holding the same key and counter: what a cloned authenticator is. */
  clone(): SoftAuthenticator {
    const copy = Object.create(SoftAuthenticator.prototype) as SoftAuthenticator;
    Object.assign(copy, this);
    return copy;
  }

  cose(): Buffer {
    const jwk = this.publicKey.export({ format: 'jwk' }) as { x?: string; y?: string; n?: string; e?: string };
    if (this.options.alg === -257) {
      return cbor(new Map<number, Item>([[1, 3], [3, -257], [-1, Buffer.from(jwk.n!, 'base64url')], [-2, Buffer.from(jwk.e!, 'base64url')]]));
    }
    return cbor(new Map<number, Item>([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x!, 'base64url')], [-3, Buffer.from(jwk.y!, 'base64url')]]));
  }

  private authData(rpId: string, flags: number, counter: number, attested: boolean): Buffer {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const parts: Buffer[] = [createHash('sha256').update(rpId).digest(), Buffer.from([flags | (attested ? 0x40 : 0)]), c];
    if (attested) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(this.credentialId.length);
      parts.push(Buffer.alloc(16), len, this.credentialId, this.cose());
    }
    return Buffer.concat(parts);
  }

  private clientData(type: string, challenge: string, origin: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }));
  }

  /** The body for POST /v1/operators/me/webauthn, answering `options.challenge`. */
  register(challenge: string, opts: { fmt?: 'none' | 'packed'; uv?: boolean; origin?: string; rpId?: string } = {}) {
    const clientDataJSON = this.clientData('webauthn.create', challenge, opts.origin ?? this.options.origin);
    const authData = this.authData(opts.rpId ?? this.options.rpId, 0x01 | (opts.uv === false ? 0 : 0x04), this.counter, true);
    const attStmt = new Map<string, Item>();
    if (opts.fmt === 'packed') {
      attStmt.set('alg', this.options.alg ?? -7);
      attStmt.set('sig', sign('sha256', Buffer.concat([authData, createHash('sha256').update(clientDataJSON).digest()]), this.privateKey));
    }
    const attestationObject = cbor(new Map<string, Item>([['fmt', opts.fmt ?? 'none'], ['attStmt', attStmt], ['authData', authData]]));
    return { credentialId: b64u(this.credentialId), clientDataJSON: b64u(clientDataJSON), attestationObject: b64u(attestationObject), transports: ['internal'], name: 'soft key' };
  }

  /** An assertion over `challenge` (base64url); the counter moves first unless `counter` is given. */
  assert(challenge: string, opts: { origin?: string; rpId?: string; uv?: boolean; up?: boolean; counter?: number; type?: string } = {}) {
    if (opts.counter === undefined) this.counter += 1;
    const counter = opts.counter ?? this.counter;
    const clientDataJSON = this.clientData(opts.type ?? 'webauthn.get', challenge, opts.origin ?? this.options.origin);
    const flags = (opts.up === false ? 0 : 0x01) | (opts.uv === false ? 0 : 0x04);
    const authenticatorData = this.authData(opts.rpId ?? this.options.rpId, flags, counter, false);
    const signature = sign('sha256', Buffer.concat([authenticatorData, createHash('sha256').update(clientDataJSON).digest()]), this.privateKey);
    return { credentialId: b64u(this.credentialId), clientDataJSON: b64u(clientDataJSON), authenticatorData: b64u(authenticatorData), signature: b64u(signature) };
  }
}

/**
 * The browser side of WebAuthn step-up (issue 20): the server's options (binary fields base64url)
 * turned into what `navigator.credentials.create/get` take, and the credential they return
 * turned back into base64url JSON for the server. The server verifies everything; nothing here
 * decides. `payloadHashOf` is the hash the server binds an approval's challenge to: SHA-256 of
 * the payload key (core canonical `payloadKey`), the same value as `payload.payloadHash`.
 */
import { payloadKey } from '@countersign/core/canonical';

const toBytes = (b64url: string): Uint8Array<ArrayBuffer> => {
  const b64 = b64url.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(b64url.length / 4) * 4, '=');
  const raw = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
};

const toB64url = (buf: ArrayBuffer): string => {
  const bytes = new Uint8Array(buf);
  let raw = '';
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};

export const webauthnAvailable = (): boolean => typeof window !== 'undefined' && typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;

export interface Descriptor {
  type: string;
  id: string;
  transports: string[];
}

export interface CreationOptions {
  rp: { id: string; name: string };
  user: { id: string; name: string; displayName: string };
  challenge: string;
  pubKeyCredParams: Array<{ type: string; alg: number }>;
  timeout: number;
  attestation: string;
  authenticatorSelection: Record<string, string>;
  excludeCredentials: Descriptor[];
  /** Proof the enrolment needs of a factor you already have (null: none yet): a TOTP code, or an assertion over `webauthn`. */
  stepUp: StepUp | null;
}

/** What a change to your factors (adding or revoking a passkey) asks of you; the server decides. */
export interface StepUp {
  factors: Array<'totp' | 'webauthn'>;
  webauthn: RequestOptions | null;
}

export interface RequestOptions {
  challenge: string;
  rpId: string;
  allowCredentials: Descriptor[];
  userVerification: string;
  timeout: number;
}

const descriptor = (d: Descriptor): PublicKeyCredentialDescriptor => ({ type: 'public-key', id: toBytes(d.id), transports: d.transports as AuthenticatorTransport[] });

/** Runs the registration ceremony; the body for POST /v1/operators/me/webauthn. */
export async function createPasskey(o: CreationOptions, name: string) {
  const cred = (await navigator.credentials.create({
    publicKey: {
      rp: o.rp,
      user: { id: toBytes(o.user.id), name: o.user.name, displayName: o.user.displayName },
      challenge: toBytes(o.challenge),
      pubKeyCredParams: o.pubKeyCredParams.map((p) => ({ type: 'public-key' as const, alg: p.alg })),
      timeout: o.timeout,
      attestation: o.attestation as AttestationConveyancePreference,
      authenticatorSelection: o.authenticatorSelection as AuthenticatorSelectionCriteria,
      excludeCredentials: o.excludeCredentials.map(descriptor),
    },
  })) as PublicKeyCredential | null;
  if (!cred) throw new Error('the browser created no credential');
  const r = cred.response as AuthenticatorAttestationResponse;
  return {
    credentialId: toB64url(cred.rawId),
    clientDataJSON: toB64url(r.clientDataJSON),
    attestationObject: toB64url(r.attestationObject),
    transports: typeof r.getTransports === 'function' ? r.getTransports().slice(0, 10) : [],
    ...(name.trim() ? { name: name.trim().slice(0, 100) } : {}),
  };
}

/** Runs the assertion ceremony over the server's challenge; the `webauthn` field of a review. */
export async function getAssertion(o: RequestOptions) {
  const cred = (await navigator.credentials.get({
    publicKey: { challenge: toBytes(o.challenge), rpId: o.rpId, allowCredentials: o.allowCredentials.map(descriptor), userVerification: o.userVerification as UserVerificationRequirement, timeout: o.timeout },
  })) as PublicKeyCredential | null;
  if (!cred) throw new Error('the browser returned no assertion');
  const r = cred.response as AuthenticatorAssertionResponse;
  return {
    credentialId: toB64url(cred.rawId),
    clientDataJSON: toB64url(r.clientDataJSON),
    authenticatorData: toB64url(r.authenticatorData),
    signature: toB64url(r.signature),
    ...(r.userHandle ? { userHandle: toB64url(r.userHandle) } : {}),
  };
}

/** SHA-256 hex of the payload key: the payload hash an approval's challenge is bound to. */
export async function payloadHashOf(action: string, args: Record<string, unknown>): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(payloadKey(action, args)));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

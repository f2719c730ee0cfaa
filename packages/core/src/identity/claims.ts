/**
 * What a verified ID token says, and whether it lets someone in: the relying party's decisions
 * (OpenID Connect Core 1.0 §3.1.3.7), pure. The server checks the signature against the
 * provider's JWKS first (jose); everything about the claims is decided here, once.
 */
import type { Role } from '../schemas.ts';

export interface ExpectedToken {
  readonly issuer: string;
  readonly clientId: string;
  /** The nonce bound to this browser's sign-in. */
  readonly nonce: string;
  readonly allowedDomains: readonly string[];
  readonly requireVerifiedEmail: boolean;
  readonly groupsClaim: string;
  /** The claim holding the address (default `email`). */
  readonly emailClaim?: string;
  /** ms since the epoch. */
  readonly now: number;
  /** Allowed clock difference with the provider, seconds (default 60). */
  readonly skewSeconds?: number;
  /** An ID token issued longer ago than this is refused (default 600 s). */
  readonly maxAgeSeconds?: number;
}

export type TokenRefusal =
  | 'issuer'
  | 'audience'
  | 'authorized_party'
  | 'expired'
  | 'issued_in_future'
  | 'too_old'
  | 'nonce'
  | 'subject'
  | 'email_missing'
  | 'email_unverified'
  | 'email_not_ascii'
  | 'domain';

export interface SignInIdentity {
  readonly issuer: string;
  readonly subject: string;
  /** ASCII only, lower case. */
  readonly email: string;
  readonly displayName: string | null;
  /** The provider's groups as sent (strings only, at most MAX_GROUPS). */
  readonly groups: readonly string[];
  /** False when the token carried no groups claim at all. */
  readonly groupsPresent: boolean;
}

export type TokenCheck = { ok: true; identity: SignInIdentity } | { ok: false; reason: TokenRefusal; message: string };

/** More groups than this in one claim are not read (the provider should filter to the app's groups). */
export const MAX_GROUPS = 1000;

const refuse = (reason: TokenRefusal, message: string): TokenCheck => ({ ok: false, reason, message });

export function checkIdTokenClaims(claims: Readonly<Record<string, unknown>>, expected: ExpectedToken): TokenCheck {
  const skew = expected.skewSeconds ?? 60;
  const nowSec = expected.now / 1000;
  if (claims.iss !== expected.issuer) return refuse('issuer', 'the ID token was issued by another issuer');
  const aud = claims.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? (aud as string[]) : [];
  if (!audiences.includes(expected.clientId)) return refuse('audience', 'the ID token is for another client');
  // Several audiences: the authorized party must be us (and if it is present, it must be us anyway).
  if ((audiences.length > 1 || claims.azp !== undefined) && claims.azp !== expected.clientId) return refuse('authorized_party', 'the ID token was issued to another authorized party');
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp) || claims.exp + skew <= nowSec) return refuse('expired', 'the ID token has expired');
  if (typeof claims.iat !== 'number' || !Number.isFinite(claims.iat)) return refuse('too_old', 'the ID token has no issue time');
  if (claims.iat - skew > nowSec) return refuse('issued_in_future', 'the ID token was issued in the future (clocks apart?)');
  if (nowSec - claims.iat > (expected.maxAgeSeconds ?? 600) + skew) return refuse('too_old', 'the ID token was issued too long ago');
  if (typeof claims.nonce !== 'string' || claims.nonce !== expected.nonce) return refuse('nonce', 'the ID token is not for this sign-in (nonce)');
  if (typeof claims.sub !== 'string' || claims.sub.length === 0 || claims.sub.length > 255) return refuse('subject', 'the ID token has no usable subject');
  const emailKey = expected.emailClaim ?? 'email';
  const address = Object.hasOwn(claims, emailKey) ? claims[emailKey] : undefined;
  const trimmed = typeof address === 'string' ? address.trim() : '';
  // Review F3: full Unicode case folding maps look-alikes onto ASCII (U+212A KELVIN SIGN → k), so
  // one address would sign in as another. Without IDNA here, a non-ASCII address is refused.
  if (!isAscii(trimmed)) return refuse('email_not_ascii', 'the address has characters outside ASCII; this server accepts ASCII addresses only (internationalised addresses are not supported)');
  const email = asciiLower(trimmed);
  const domain = emailDomain(email);
  if (domain === null) return refuse('email_missing', 'the ID token carries no usable email address (request the email scope)');
  // Review F7: `email_verified` vouches for the `email` claim only (OpenID Connect Core §5.1). Another
  // claim (Entra ID's preferred_username) is verified by nothing in the token ("nOAuth"), so it is
  // accepted only where the deployment said so (requireVerifiedEmail: false) and links by subject.
  if (emailKey !== 'email' && expected.requireVerifiedEmail) {
    return refuse('email_unverified', `email_verified vouches for the email claim only, not for ${emailKey.slice(0, 100)}; set requireVerifiedEmail: false to accept it unverified (see the README on the nOAuth risk)`);
  }
  const verified = emailKey === 'email' ? claims.email_verified : undefined;
  if (verified === false || verified === 'false' || (expected.requireVerifiedEmail && verified !== true && verified !== 'true')) {
    return refuse('email_unverified', 'the identity provider has not verified this email address');
  }
  if (!expected.allowedDomains.includes(domain)) return refuse('domain', `accounts of ${domain} may not sign in here`);
  const raw = Object.hasOwn(claims, expected.groupsClaim) ? claims[expected.groupsClaim] : undefined;
  const groupsPresent = raw !== undefined;
  const list = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : [];
  const groups = list.slice(0, MAX_GROUPS).filter((g): g is string => typeof g === 'string' && g.length > 0 && g.length <= 256);
  const name = typeof claims.name === 'string' && claims.name.trim() !== '' ? claims.name.trim().slice(0, 200) : null;
  return { ok: true, identity: { issuer: expected.issuer, subject: claims.sub, email, displayName: name, groups, groupsPresent } };
}

/** The domain of a plain `local@domain` address (lower case), or null. */
export function emailDomain(email: string): string | null {
  if (email.length > 320 || email.length < 3) return null;
  const at = email.lastIndexOf('@');
  if (at <= 0 || at === email.length - 1) return null;
  for (let i = 0; i < email.length; i++) {
    const c = email.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x3c || c === 0x3e || c === 0x22) return null; // spaces, controls, < > "
  }
  // One `@` only (the old `domain.includes('@')` after lastIndexOf could never be true).
  if (email.indexOf('@') !== at) return null;
  return email.slice(at + 1);
}

/**
 * The roles and operator groups an operator gets from the provider's groups: the union of the
 * role map's roles over every group it names, and the names of those groups (an unmapped group
 * gives nothing). No mapped group: no roles (fail closed).
 */
export function rolesFromGroups(groups: readonly string[], roleMap: Readonly<Record<string, readonly Role[]>>): { roles: Role[]; groups: string[] } {
  const roles = new Set<Role>();
  const mapped = new Set<string>();
  for (const group of groups) {
    if (!Object.hasOwn(roleMap, group)) continue;
    mapped.add(group);
    for (const role of roleMap[group]!) roles.add(role);
  }
  return { roles: [...roles].sort(), groups: [...mapped].sort() };
}

/** Whether every character is ASCII (U+0000–U+007F). */
export function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * Lower case for A–Z only: never folds a non-ASCII character onto an ASCII one (JavaScript's
 * `toLowerCase` maps U+212A KELVIN SIGN to `k` and U+0130 to `i̇`), so two keys are equal only
 * if the texts differ in ASCII case alone.
 */
export function asciiLower(text: string): string {
  return text.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * An operator name for an identity: the address in lower case (ASCII letters only) with anything but letters, digits
 * and `_ . @ -` turned into `_`, at most 100 characters. Two addresses may meet in one name: the
 * second is refused (names link to nobody; the subject and SCIM id do).
 */
export function operatorNameFor(address: string): string {
  let out = '';
  for (const ch of asciiLower(address.trim())) out += /^[a-z0-9_.@-]$/.test(ch) ? ch : '_';
  return out.slice(0, 100);
}

/**
 * Red-team review of branch `sso` (issue 20): core `checkIdTokenClaims`, pure. Each test asserts
 * the secure behaviour, so it FAILS on `sso`; the comment names the finding.
 */
import { describe, expect, it } from 'vitest';
import { checkIdTokenClaims, operatorNameFor } from '../src/index.ts';

const NOW = 1_800_000_000_000;
const expected = { issuer: 'https://idp.example.com', clientId: 'cs', nonce: 'n-1', allowedDomains: ['example.com'], requireVerifiedEmail: true, groupsClaim: 'groups', now: NOW };
const base = { iss: 'https://idp.example.com', aud: 'cs', sub: 'u1', iat: NOW / 1000, exp: NOW / 1000 + 300, nonce: 'n-1', email_verified: true, groups: ['soc'] };

describe('red-team review of sso: ID token claims', () => {
  // FINDING 7 (medium): `email_verified` vouches for the `email` claim only (OpenID Connect Core
  // §5.1). With `emailClaim: preferred_username` (the README's Entra ID set-up) the check still
  // reads `email_verified`, so a token whose *email* is verified lets an unverified, user- or
  // tenant-chosen `preferred_username` through as if verified ("nOAuth"): here the verified
  // address is at another domain altogether, and the domain allowlist passes on the unverified one.
  it('F7: email_verified about `email` does not vouch for another claim named by emailClaim', () => {
    const claims = { ...base, email: 'eve@evil.test', preferred_username: 'kate@example.com' };
    const out = checkIdTokenClaims(claims, { ...expected, emailClaim: 'preferred_username' });
    expect(out.ok).toBe(false);
  });

  // FINDING 3, at its root (medium): full Unicode case folding maps U+212A KELVIN SIGN onto ASCII
  // `k`. The domain allowlist then admits an address at another (IDN) domain that the provider
  // verified, `ban\u212A.example` (xn--ban-…): a different domain from `bank.example`.
  it('F3a: an address whose domain is spelt with KELVIN SIGN is not at the allowed ASCII domain', () => {
    const out = checkIdTokenClaims({ ...base, email: 'eve@ban\u212A.example' }, { ...expected, allowedDomains: ['bank.example'] });
    expect(out.ok).toBe(false);
  });

  it('F3b: an address with KELVIN SIGN is not reported as the ASCII address, nor named as its operator', () => {
    const out = checkIdTokenClaims({ ...base, email: '\u212Aate@example.com' }, expected);
    if (out.ok) expect(out.identity.email).not.toBe('kate@example.com');
    expect(operatorNameFor('\u212Aate@example.com')).not.toBe('kate@example.com');
  });
});

/**
 * Core identity decisions (issue 20), pure: ID token claims, the role map, operator names, the
 * identity file, and SCIM parsing of hostile input (linear time, clear refusals).
 */
import { describe, expect, it } from 'vitest';
import { applyUserPatch, checkIdTokenClaims, operatorNameFor, parseIdentityFile, parseScimFilter, readPatch, readScimUser, readScimUserReplacement, replaceScimUser, rolesFromGroups, ScimProblem } from '../src/index.ts';

const NOW = 1_800_000_000_000;
const expected = { issuer: 'https://idp.example.com', clientId: 'cs', nonce: 'n-1', allowedDomains: ['example.com'], requireVerifiedEmail: true, groupsClaim: 'groups', now: NOW };
const good = { iss: 'https://idp.example.com', aud: 'cs', sub: 'u1', iat: NOW / 1000, exp: NOW / 1000 + 300, nonce: 'n-1', email: 'Ann@Example.com', email_verified: true, groups: ['soc'] };

describe('checkIdTokenClaims', () => {
  it('accepts a good token and lower-cases the address', () => {
    expect(checkIdTokenClaims(good, expected)).toMatchObject({ ok: true, identity: { subject: 'u1', email: 'ann@example.com', groups: ['soc'], groupsPresent: true } });
  });
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['issuer', { iss: 'https://idp.example.com/' }, 'issuer'],
    ['audience', { aud: ['other'] }, 'audience'],
    ['azp when several audiences', { aud: ['cs', 'other'] }, 'authorized_party'],
    ['azp naming another client', { azp: 'other' }, 'authorized_party'],
    ['expired beyond the skew', { exp: NOW / 1000 - 61 }, 'expired'],
    ['no exp', { exp: undefined }, 'expired'],
    ['issued in the future', { iat: NOW / 1000 + 120 }, 'issued_in_future'],
    ['too old', { iat: NOW / 1000 - 3600, exp: NOW / 1000 + 300 }, 'too_old'],
    ['nonce', { nonce: 'n-2' }, 'nonce'],
    ['no nonce', { nonce: undefined }, 'nonce'],
    ['empty subject', { sub: '' }, 'subject'],
    ['no email', { email: undefined }, 'email_missing'],
    ['two @', { email: 'a@b@example.com' }, 'email_missing'],
    ['unverified', { email_verified: false }, 'email_unverified'],
    ['verification not stated', { email_verified: undefined }, 'email_unverified'],
    ['domain', { email: 'ann@example.com.evil.test' }, 'domain'],
    ['subdomain is not the domain', { email: 'ann@sub.example.com' }, 'domain'],
  ];
  it.each(cases)('refuses: %s', (_name, change, reason) => {
    const out = checkIdTokenClaims({ ...good, ...change }, expected);
    expect(out).toMatchObject({ ok: false, reason });
  });
  it('reads the address from another claim when configured, never from the prototype', () => {
    const entra = { ...good, email: undefined, email_verified: undefined, preferred_username: 'Ann@Example.com' };
    expect(checkIdTokenClaims(entra, { ...expected, emailClaim: 'preferred_username', requireVerifiedEmail: false })).toMatchObject({ ok: true, identity: { email: 'ann@example.com' } });
    expect(checkIdTokenClaims(good, { ...expected, emailClaim: '__proto__' })).toMatchObject({ ok: false, reason: 'email_missing' });
    expect(checkIdTokenClaims(good, { ...expected, groupsClaim: 'constructor' })).toMatchObject({ ok: true, identity: { groups: [], groupsPresent: false } });
  });
});

describe('rolesFromGroups and operator names', () => {
  const map = Object.assign(Object.create(null), { 'sec-leads': ['lead', 'reviewer'], soc: ['reviewer'], 'on-call': [] });
  it('is the union over mapped groups; unmapped and prototype names give nothing', () => {
    expect(rolesFromGroups(['soc', 'sec-leads', 'x'], map)).toEqual({ roles: ['lead', 'reviewer'], groups: ['sec-leads', 'soc'] });
    expect(rolesFromGroups(['on-call', 'toString', '__proto__'], map)).toEqual({ roles: [], groups: ['on-call'] });
  });
  it('operator names keep only safe characters', () => {
    expect(operatorNameFor(' Ann.O+Brien@Example.com ')).toBe('ann.o_brien@example.com');
  });
});

describe('the identity file', () => {
  const base = (oidc: string) => `oidc:\n${oidc}\nroleMap:\n  soc: [reviewer]\n`;
  const ok = `  issuer: https://idp.example.com\n  clientId: cs\n  redirectUrl: https://cs.example.com/sso/callback\n  allowedDomains: [Example.com]`;
  it('parses with defaults', () => {
    const s = parseIdentityFile(base(ok), 'f.yaml');
    expect(s.oidc).toMatchObject({ scopes: ['openid', 'email', 'profile'], groupsClaim: 'groups', emailClaim: 'email', allowedDomains: ['example.com'], tokenEndpointAuth: 'client_secret_basic', sessionTtlMs: 8 * 3600_000 });
  });
  it('takes another emailClaim only with requireVerifiedEmail: false said explicitly (review F7)', () => {
    const s = parseIdentityFile(base(`${ok}\n  emailClaim: preferred_username\n  requireVerifiedEmail: false`), 'f.yaml');
    expect(s.oidc).toMatchObject({ emailClaim: 'preferred_username', requireVerifiedEmail: false });
  });
  it.each([
    ['an unknown key', `${ok}\n  clientSecret: hunter2`, /clientSecret/],
    ['http off loopback', ok.replace('https://idp', 'http://idp'), /https is required/],
    ['no openid scope', `${ok}\n  scopes: [email]`, /must include openid/],
    ['a wildcard domain', ok.replace('[Example.com]', '["*.example.com"]'), /allowedDomains/],
    ['a role that does not exist', ok, /roleMap/],
    ['another emailClaim with email_verified required (review F7)', `${ok}\n  emailClaim: preferred_username`, /requireVerifiedEmail: false/],
    ['a domain with KELVIN SIGN (review F3)', ok.replace('[Example.com]', '["ban\u212A.example"]'), /allowedDomains/],
  ])('refuses %s, naming it', (name, oidc, message) => {
    const text = name === 'a role that does not exist' ? `oidc:\n${oidc}\nroleMap:\n  soc: [god]\n` : base(oidc);
    expect(() => parseIdentityFile(text, 'f.yaml')).toThrow(message);
  });
});

describe('SCIM parsing', () => {
  it('filters: only attr eq "value"; anything else is invalidFilter', () => {
    expect(parseScimFilter('userName eq "a@b.c"', ['username'])).toEqual({ attribute: 'username', value: 'a@b.c' });
    expect(parseScimFilter('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x"', ['username'])).toMatchObject({ attribute: 'username' });
    for (const bad of ['userName co "a"', 'userName eq a', 'userName eq "a" or id eq "b"', 'password eq "x"', '']) {
      expect(() => parseScimFilter(bad, ['username'])).toThrow(ScimProblem);
    }
  });
  it('a user body: userName required, control characters refused, the password never read back', () => {
    expect(() => readScimUser({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'] })).toThrow(/userName/);
    expect(() => readScimUser({ userName: 'a\u0007b' })).toThrow(/control characters/);
    const u = readScimUser({ userName: 'ann@example.com', password: 'secret', active: 'False' });
    expect(u).toMatchObject({ userName: 'ann@example.com', active: false });
    expect(JSON.stringify(u)).not.toContain('secret');
  });
  it('a PUT without active keeps the current value (review2 F8); a POST without it is active; a PUT with it applies it', () => {
    expect(readScimUser({ userName: 'ann@example.com' }).active).toBe(true);
    const off = readScimUser({ userName: 'ann@example.com', active: false });
    expect(readScimUserReplacement({ userName: 'ann@example.com', displayName: 'Ann' }).active).toBeNull();
    expect(replaceScimUser(off, readScimUserReplacement({ userName: 'ann@example.com', displayName: 'Ann' }))).toMatchObject({ active: false, displayName: 'Ann' });
    expect(replaceScimUser(off, readScimUserReplacement({ userName: 'ann@example.com', active: 'True' })).active).toBe(true);
    expect(() => readScimUserReplacement({ userName: 'ann@example.com', active: 'maybe' })).toThrow(/active/);
  });
  it('PATCH: Entra and Okta shapes apply; an unknown op is refused', () => {
    const user = readScimUser({ userName: 'ann@example.com', active: true, emails: [{ value: 'a@example.com', type: 'work', primary: true }] });
    const ops = readPatch({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'Replace', path: 'emails[type eq "work"].value', value: 'b@example.com' }, { op: 'replace', value: { active: false } }] });
    expect(applyUserPatch(user, ops)).toMatchObject({ active: false, emails: [{ value: 'b@example.com', type: 'work' }] });
    expect(() => readPatch({ Operations: [{ op: 'explode', path: 'active' }] })).toThrow(ScimProblem);
  });
  it('hostile input is refused cleanly (hand-written scanners, no backtracking regular expression)', () => {
    const long = 'a'.repeat(900);
    for (let i = 0; i < 200; i++) {
      expect(() => parseScimFilter(`${long} eq "${'\\"'.repeat(40)}`, ['username'])).toThrow(ScimProblem);
      expect(() => readPatch({ Operations: [{ op: 'replace', path: `emails[${'['.repeat(500)}`, value: 'x' }] })).toThrow(ScimProblem);
    }
    expect(() => parseScimFilter('x'.repeat(1001), ['username'])).toThrow(/too long/);
  });
});

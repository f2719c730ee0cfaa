/**
 * Single sign-on for the dashboard (issue 20): `GET /sso/status` (is it configured, and the
 * button's label), `GET /sso/login` (starts a sign-in: a row with the state, nonce and PKCE
 * verifier, bound to this browser by a short-lived cookie, then off to the provider) and
 * `GET /sso/callback` (the provider sends the browser back: the login taken once, the state
 * compared, the code exchanged, the ID token verified and checked, the operator provisioned,
 * a session cookie set as `POST /v1/session` sets it).
 *
 * The login cookie is `SameSite=Lax` (the provider's redirect back is a cross-site top-level
 * navigation, which a `Strict` cookie would not ride on), `HttpOnly`, `__Host-` over TLS, and
 * holds only a random id whose SHA-256 names the row. Failures answer a small page saying why.
 */
import { checkIdTokenClaims } from '@countersign/core';
import type { Context, Hono } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { sessionIdHash } from '../../engine/credentials.ts';
import { randomToken, SignInFailure, type OidcClient } from '../../identity/oidc.ts';
import type { Provisioning } from '../../identity/provisioning.ts';
import { LOGIN_TTL_MS } from '../../identity/provisioning.ts';
import { SECURITY_HEADERS } from '../dashboard.ts';
import type { Sessions } from '../session.ts';
import { clientIp } from './guard.ts';

/** The address a sign-in is counted against: an IPv4 address, or an IPv6 address's /64 (one host usually holds a whole /64). */
export function clientKey(ip: string | null): string | null {
  if (ip === null || ip === '') return null;
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (!v4.includes(':')) return v4.slice(0, 64);
  const [head] = v4.split('::');
  const groups = v4.includes('::') ? (head === '' ? [] : head!.split(':')) : v4.split(':');
  const full = [...groups, '0', '0', '0', '0'].slice(0, 4);
  return `${full.map((g) => g.toLowerCase()).join(':')}::/64`;
}

export const LOGIN_COOKIE = 'countersign_sso';
export const SECURE_LOGIN_COOKIE = `__Host-${LOGIN_COOKIE}`;
const LOGIN_VALUE = /^[A-Za-z0-9_-]{43}$/;

export interface SsoParts {
  oidc: OidcClient;
  provisioning: Provisioning;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

function page(c: Context, status: 400 | 403 | 429 | 502 | 503, title: string, message: string): Response {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Countersign: ${escapeHtml(title)}</title></head>
<body><main><h1>${escapeHtml(title)}</h1><p role="alert">${escapeHtml(message)}</p><p><a href="/">Back to sign in</a></p></main></body></html>
`;
  return c.body(html, status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
}

export function registerSsoRoutes(app: Hono<any>, sessions: Sessions, sso: SsoParts | null, trustProxy = false): void {
  app.get('/sso/status', (c) => {
    c.header('cache-control', 'no-store');
    return c.json(sso ? { enabled: true, label: sso.oidc.settings.label, loginPath: '/sso/login' } : { enabled: false });
  });
  if (!sso) {
    const off = (c: Context) => page(c, 400, 'Single sign-on is off', 'This server has no identity provider configured; sign in with an operator token.');
    app.get('/sso/login', off);
    app.get('/sso/callback', off);
    return;
  }
  const { oidc, provisioning } = sso;
  const cookieName = (c: Context) => (sessions.isSecure(c) ? SECURE_LOGIN_COOKIE : LOGIN_COOKIE);

  app.get('/sso/login', async (c) => {
    const id = randomToken();
    const state = randomToken();
    const nonce = randomToken();
    const verifier = randomToken();
    let target: string;
    try {
      target = await oidc.authorizationUrl({ state, nonce, verifier });
      await provisioning.beginLogin({ id_hash: sessionIdHash(id), state, nonce, verifier, client: clientKey(clientIp(c, trustProxy)) });
    } catch (err) {
      if (err instanceof SignInFailure) return page(c, 502, 'Sign-in is unavailable', err.message);
      if ((err as { code?: string }).code === 'RATE_LIMITED') return page(c, 429, 'Sign-in is busy', (err as Error).message);
      throw err;
    }
    const secure = sessions.isSecure(c);
    setCookie(c, cookieName(c), id, { httpOnly: true, sameSite: 'Lax', secure, path: '/', maxAge: Math.floor(LOGIN_TTL_MS / 1000) });
    c.header('cache-control', 'no-store');
    return c.redirect(target, 302);
  });

  app.get('/sso/callback', async (c) => {
    c.header('cache-control', 'no-store');
    const raw = getCookie(c, cookieName(c));
    deleteCookie(c, cookieName(c), { path: '/', secure: sessions.isSecure(c) });
    const error = c.req.query('error');
    if (error !== undefined) return page(c, 403, 'Sign-in was not completed', `The identity provider answered: ${error.slice(0, 100)}${c.req.query('error_description') ? ` (${c.req.query('error_description')!.slice(0, 200)})` : ''}.`);
    const code = c.req.query('code');
    const state = c.req.query('state');
    if (!code || !state || code.length > 2048 || state.length > 256) return page(c, 400, 'Sign-in failed', 'The answer from the identity provider has no code or state.');
    if (raw === undefined || !LOGIN_VALUE.test(raw)) return page(c, 400, 'Sign-in failed', 'This browser did not start this sign-in (no sign-in cookie). Start again.');
    const login = await provisioning.takeLogin(sessionIdHash(raw), state);
    if (!login) return page(c, 400, 'Sign-in failed', 'This sign-in is unknown, used, lapsed, or its state does not match. Start again.');
    let claims: Record<string, unknown>;
    try {
      claims = await oidc.exchange(code, login.verifier);
    } catch (err) {
      if (err instanceof SignInFailure) return page(c, err.reason === 'provider' ? 502 : 403, 'Sign-in failed', err.message);
      throw err;
    }
    const s = oidc.settings;
    const checked = checkIdTokenClaims(claims, { issuer: s.issuer, clientId: s.clientId, nonce: login.nonce, allowedDomains: s.allowedDomains, requireVerifiedEmail: s.requireVerifiedEmail, groupsClaim: s.groupsClaim, emailClaim: s.emailClaim, now: Date.now() });
    if (!checked.ok) {
      // Refusals about the token itself (another client, a nonce from another sign-in) are not
      // audited: anyone holding some token can cause them. Refusals about the person are.
      if (checked.reason === 'domain' || checked.reason === 'email_unverified' || checked.reason === 'email_not_ascii') await provisioning.recordRefusal(s.issuer, claims.sub, checked.reason);
      return page(c, 403, 'Sign-in refused', checked.message);
    }
    const outcome = await provisioning.signIn(checked.identity, s.sessionTtlMs);
    if (!outcome.ok) return page(c, 403, 'Sign-in refused', outcome.message);
    sessions.setCookie(c, sessions.cookieValue(outcome.session.id), outcome.session.expiresAt);
    return c.redirect('/', 302);
  });
}

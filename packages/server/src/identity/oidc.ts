/**
 * The OpenID Connect relying party (authorization code flow with PKCE S256): discovery, the
 * authorization URL, the code exchange and the ID token's signature against the provider's JWKS
 * (jose). What the verified claims allow is core `checkIdTokenClaims`'s decision.
 *
 * Discovery (`<issuer>/.well-known/openid-configuration`) is read once and kept for an hour; the
 * document must name the configured issuer exactly (OpenID Connect Discovery §4.3), or nothing
 * is trusted from it. Only asymmetric signatures are accepted (never `none`, never HS*).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { CountersignError, type OidcSettings } from '@countersign/core';

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const DISCOVERY_TTL_MS = 3_600_000;
const FETCH_TIMEOUT_MS = 10_000;
const MAX_RESPONSE_BYTES = 512 * 1024;

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  code_challenge_methods_supported?: string[];
}

/** Why a code exchange failed, in words a person can act on (the page shows it). */
export class SignInFailure extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'SignInFailure';
  }
}

export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

export function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

async function readJson(res: Response, what: string): Promise<unknown> {
  const length = Number(res.headers.get('content-length') ?? 0);
  if (length > MAX_RESPONSE_BYTES) throw new SignInFailure('provider', `${what}: the answer is too large`);
  const text = await res.text();
  if (text.length > MAX_RESPONSE_BYTES) throw new SignInFailure('provider', `${what}: the answer is too large`);
  try {
    return JSON.parse(text);
  } catch {
    throw new SignInFailure('provider', `${what}: the answer is not JSON (HTTP ${res.status})`);
  }
}

function allowedUrl(value: unknown, issuer: URL): value is string {
  if (typeof value !== 'string') return false;
  try {
    const url = new URL(value);
    if (url.protocol === 'https:') return true;
    // http only where the issuer itself is plain http on loopback (config refuses it elsewhere).
    return url.protocol === 'http:' && issuer.protocol === 'http:' && url.hostname === issuer.hostname;
  } catch {
    return false;
  }
}

export class OidcClient {
  private discovery: { doc: Discovery; until: number } | undefined;
  private jwks: { uri: string; get: JWTVerifyGetKey } | undefined;

  constructor(
    readonly settings: OidcSettings,
    private readonly clientSecret: string | null,
    private readonly now: () => number = Date.now,
  ) {}

  async discover(): Promise<Discovery> {
    if (this.discovery && this.discovery.until > this.now()) return this.discovery.doc;
    const url = `${this.settings.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'error', headers: { accept: 'application/json' } });
    } catch (err) {
      throw new SignInFailure('provider', `the identity provider cannot be reached (${(err as Error).message})`);
    }
    if (!res.ok) throw new SignInFailure('provider', `the identity provider's discovery document answered HTTP ${res.status}`);
    const doc = (await readJson(res, 'discovery')) as Partial<Discovery>;
    if (doc.issuer !== this.settings.issuer) throw new SignInFailure('provider', 'the discovery document names another issuer than the one configured');
    const issuer = new URL(this.settings.issuer);
    for (const key of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
      if (!allowedUrl(doc[key], issuer)) throw new SignInFailure('provider', `the discovery document has no usable ${key}`);
    }
    if (doc.code_challenge_methods_supported !== undefined && !(Array.isArray(doc.code_challenge_methods_supported) && doc.code_challenge_methods_supported.includes('S256'))) {
      throw new SignInFailure('provider', 'the identity provider does not support PKCE with S256');
    }
    this.discovery = { doc: doc as Discovery, until: this.now() + DISCOVERY_TTL_MS };
    return doc as Discovery;
  }

  async authorizationUrl(input: { state: string; nonce: string; verifier: string }): Promise<string> {
    const { authorization_endpoint } = await this.discover();
    const url = new URL(authorization_endpoint);
    const params = {
      response_type: 'code',
      client_id: this.settings.clientId,
      redirect_uri: this.settings.redirectUrl,
      scope: this.settings.scopes.join(' '),
      state: input.state,
      nonce: input.nonce,
      code_challenge: pkceChallenge(input.verifier),
      code_challenge_method: 'S256',
    };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url.toString();
  }

  /** Exchanges the code (with the PKCE verifier) and returns the ID token's claims once its signature verifies. */
  async exchange(code: string, verifier: string): Promise<Record<string, unknown>> {
    const doc = await this.discover();
    const form = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: this.settings.redirectUrl, code_verifier: verifier });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const auth = this.settings.tokenEndpointAuth;
    if (auth === 'client_secret_basic') {
      // RFC 6749 §2.3.1: each part form-encoded before base64.
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(this.settings.clientId)}:${enc(this.clientSecret ?? '')}`).toString('base64')}`;
    } else {
      form.set('client_id', this.settings.clientId);
      if (auth === 'client_secret_post') form.set('client_secret', this.clientSecret ?? '');
    }
    let res: Response;
    try {
      res = await fetch(doc.token_endpoint, { method: 'POST', body: form, headers, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'error' });
    } catch (err) {
      throw new SignInFailure('provider', `the identity provider's token endpoint cannot be reached (${(err as Error).message})`);
    }
    const body = (await readJson(res, 'token endpoint')) as Record<string, unknown>;
    if (!res.ok) {
      const error = typeof body.error === 'string' ? body.error.slice(0, 100) : `HTTP ${res.status}`;
      throw new SignInFailure('code_refused', `the identity provider refused the sign-in code (${error}); start again`);
    }
    if (typeof body.id_token !== 'string') throw new SignInFailure('provider', 'the identity provider sent no ID token');
    if (!this.jwks || this.jwks.uri !== doc.jwks_uri) this.jwks = { uri: doc.jwks_uri, get: createRemoteJWKSet(new URL(doc.jwks_uri), { timeoutDuration: FETCH_TIMEOUT_MS, cooldownDuration: 30_000 }) };
    try {
      const { payload } = await jwtVerify(body.id_token, this.jwks.get, { algorithms: ALGORITHMS, clockTolerance: 60, currentDate: new Date(this.now()) });
      return payload as Record<string, unknown>;
    } catch (err) {
      // jose checks exp/nbf/iat with the signature; name those apart from a bad signature.
      const code = (err as { code?: string }).code;
      if (code === 'ERR_JWT_EXPIRED') throw new SignInFailure('expired', 'the ID token has expired');
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') throw new SignInFailure('claims', `the ID token's claims do not hold (${(err as Error).message.slice(0, 120)})`);
      if (code === 'ERR_JOSE_ALG_NOT_ALLOWED') throw new SignInFailure('algorithm', 'the ID token is signed with an algorithm that is not accepted (only RS*, PS*, ES*, EdDSA)');
      throw new SignInFailure('signature', `the ID token's signature does not verify against the provider's keys (${(err as Error).message.slice(0, 120)})`);
    }
  }
}

/** The client secret the config names, or a clear refusal to start. */
export function clientSecretFrom(settings: OidcSettings, env: Readonly<Record<string, string | undefined>>): string | null {
  if (settings.tokenEndpointAuth === 'none') return null;
  const secret = env[settings.clientSecretEnv];
  if (!secret) throw new CountersignError('VALIDATION_FAILED', `oidc: the client secret is read from ${settings.clientSecretEnv}, which is not set (or set tokenEndpointAuth: none for a public client)`);
  return secret;
}

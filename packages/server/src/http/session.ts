/**
 * Dashboard sessions: an operator exchanges their token once (`POST /v1/session`) for an
 * `HttpOnly`, `SameSite=Strict` cookie, so the token never lives in the page's JavaScript.
 *
 * The cookie is stateless and signed: `v1.<token hash>.<nonce>.<expiry>.<HMAC>`. Each request
 * re-resolves the token hash through the engine, so revoking the operator's token ends every
 * session made from it. Signing out stores the session's nonce (the `nonces` table, until the
 * cookie would have expired), so a copy of the cookie dies on every server sharing the database. The HMAC key is `COUNTERSIGN_SESSION_SECRET`; without it each process
 * draws a random key (a restart signs everyone out, and servers behind one load balancer need
 * the shared secret).
 *
 * CSRF: a state-changing call made with the cookie must carry `X-Countersign-CSRF`, a value
 * derived from the session (returned at sign-in and by `GET /v1/session`), and must not come
 * from another site (`Origin` / `Sec-Fetch-Site`). Bearer calls (agents, CLI) are untouched:
 * a browser never attaches an `Authorization` header on its own.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody, Role } from '@countersign/core';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { Engine } from '../engine/engine.ts';
import type { Principal } from '../engine/principal.ts';
import { sha256Hex } from '../ids.ts';
import { type ApiEnv as Env } from './routes/contract.ts';


export const SESSION_COOKIE = 'countersign_session';
/** With `Secure`, the `__Host-` prefix also pins the cookie to this host and path `/`. */
export const SECURE_SESSION_COOKIE = `__Host-${SESSION_COOKIE}`;
export const CSRF_HEADER = 'x-countersign-csrf';
export const DEFAULT_SESSION_TTL_MS = 12 * 3600_000;

export interface SessionOptions {
  /** HMAC key (at least 32 characters). Default: random per process. */
  secret?: string | undefined;
  /** Session lifetime in ms. Default 12 hours. */
  ttlMs?: number | undefined;
  /** Believe `X-Forwarded-Proto` / `X-Forwarded-Host` (only behind a proxy you run). */
  trustProxy?: boolean | undefined;
  now?: () => number;
}

interface Session {
  tokenHash: string;
  nonce: string;
  expiresAt: number;
}

const b64 = (buf: Buffer) => buf.toString('base64url');
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export class Sessions {
  private readonly key: Buffer;
  private readonly ttlMs: number;
  private readonly now: () => number;
  readonly trustProxy: boolean;
  /** Signed-out sessions this process knows of (nonce → expiry), refused without asking the database. */
  private readonly ended = new Map<string, number>();

  constructor(options: SessionOptions = {}) {
    if (options.secret !== undefined && options.secret.length < 32) {
      throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_SESSION_SECRET must be at least 32 characters');
    }
    this.key = options.secret === undefined ? randomBytes(32) : Buffer.from(options.secret, 'utf8');
    this.ttlMs = options.ttlMs ?? DEFAULT_SESSION_TTL_MS;
    this.trustProxy = options.trustProxy ?? false;
    this.now = options.now ?? Date.now;
  }

  private mac(text: string): Buffer {
    return createHmac('sha256', this.key).update(text).digest();
  }

  issue(tokenHash: string): { cookie: string; csrfToken: string; expiresAt: number } {
    if (!/^[0-9a-f]{64}$/.test(tokenHash)) throw new Error('a token hash is 64 hex digits');
    const nonce = b64(randomBytes(16));
    const expiresAt = this.now() + this.ttlMs;
    const body = `v1.${b64(Buffer.from(tokenHash, 'hex'))}.${nonce}.${expiresAt.toString(36)}`;
    return { cookie: `${body}.${b64(this.mac(body))}`, csrfToken: this.csrfToken(nonce), expiresAt };
  }

  /** The session in a cookie value, or null when it is malformed, forged, expired or signed out. */
  verify(value: string | undefined): Session | null {
    if (!value || value.length > 300) return null;
    const parts = value.split('.');
    if (parts.length !== 5 || parts[0] !== 'v1') return null;
    const [, hash, nonce, exp, sig] = parts as [string, string, string, string, string];
    const expected = this.mac(`v1.${hash}.${nonce}.${exp}`);
    const given = Buffer.from(sig, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const expiresAt = parseInt(exp, 36);
    const tokenHash = Buffer.from(hash, 'base64url').toString('hex');
    if (!Number.isFinite(expiresAt) || expiresAt <= this.now() || tokenHash.length !== 64) return null;
    if (this.ended.has(nonce)) return null;
    return { tokenHash, nonce, expiresAt };
  }

  csrfToken(nonce: string): string {
    return b64(this.mac(`csrf.${nonce}`));
  }

  /**
   * For a long-lived stream: a check of whether its session still holds — not expired and not
   * signed out here (both asked every time, in memory), and not signed out on another server nor
   * its token revoked (asked of the database at most every `recheckMs`).
   */
  watch(session: Session, engine: Engine, recheckMs = 5_000): () => Promise<boolean> {
    let checkedAt = this.now();
    let valid = true;
    return async () => {
      if (!valid || session.expiresAt <= this.now() || this.ended.has(session.nonce)) return (valid = false);
      if (this.now() - checkedAt < recheckMs) return true;
      checkedAt = this.now();
      valid = !(await engine.sessionEnded(session.nonce)) && (await engine.authenticateHash(session.tokenHash))?.kind === 'operator';
      return valid;
    };
  }

  checkCsrf(session: Session, given: string | undefined): boolean {
    if (!given) return false;
    const a = Buffer.from(given);
    const b = Buffer.from(this.csrfToken(session.nonce));
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** Signs a session out here at once, and (through the database) on every server sharing it. */
  async end(session: Session, engine: Engine): Promise<void> {
    const now = this.now();
    for (const [nonce, until] of this.ended) if (until <= now) this.ended.delete(nonce);
    this.ended.set(session.nonce, session.expiresAt);
    await engine.endSession(session.nonce, session.expiresAt);
  }

  /** True when the client reached us over TLS (directly, or through a trusted proxy). */
  isSecure(c: Context): boolean {
    if (new URL(c.req.url).protocol === 'https:') return true;
    if (!this.trustProxy) return false;
    return (c.req.header('x-forwarded-proto') ?? '').split(',')[0]?.trim().toLowerCase() === 'https';
  }

  /** The origin the browser used to reach us. */
  ownOrigin(c: Context): string {
    const url = new URL(c.req.url);
    const forwardedHost = this.trustProxy ? c.req.header('x-forwarded-host')?.split(',')[0]?.trim() : undefined;
    const host = forwardedHost || c.req.header('host') || url.host;
    return `${this.isSecure(c) ? 'https' : 'http'}://${host}`.toLowerCase();
  }

  /** Refuses a browser call that another site started (login CSRF included). */
  checkSameSite(c: Context): void {
    const site = c.req.header('sec-fetch-site');
    if (site !== undefined && site !== 'same-origin' && site !== 'none') {
      throw new CountersignError('FORBIDDEN', 'cross-site request refused', { reason: 'csrf' });
    }
    const origin = c.req.header('origin');
    if (origin !== undefined && origin.toLowerCase() !== this.ownOrigin(c)) {
      throw new CountersignError('FORBIDDEN', `cross-origin request from ${origin.slice(0, 100)} refused`, { reason: 'csrf' });
    }
  }

  readCookie(c: Context): string | undefined {
    return getCookie(c, SECURE_SESSION_COOKIE) ?? getCookie(c, SESSION_COOKIE);
  }

  /**
   * The operator behind the session cookie, or undefined when there is no cookie. A bad or
   * expired cookie, a revoked token, or a state-changing call without the CSRF token is refused.
   */
  async principal(c: Context, engine: Engine): Promise<{ principal: Principal; session: Session } | undefined> {
    const value = this.readCookie(c);
    if (value === undefined) return undefined;
    const session = this.verify(value);
    if (!session) throw new CountersignError('UNAUTHENTICATED', 'the session has expired or is invalid; sign in again');
    if (await engine.sessionEnded(session.nonce)) {
      this.ended.set(session.nonce, session.expiresAt);
      throw new CountersignError('UNAUTHENTICATED', 'this session was signed out; sign in again');
    }
    const principal = await engine.authenticateHash(session.tokenHash);
    if (!principal || principal.kind !== 'operator') {
      throw new CountersignError('UNAUTHENTICATED', 'the token behind this session was revoked; sign in again');
    }
    if (!SAFE_METHODS.has(c.req.method)) {
      this.checkSameSite(c);
      if (!this.checkCsrf(session, c.req.header(CSRF_HEADER))) {
        throw new CountersignError('FORBIDDEN', `send the session's CSRF token in the ${CSRF_HEADER} header`, { reason: 'csrf' });
      }
    }
    return { principal, session };
  }

  setCookie(c: Context, value: string, expiresAt: number): void {
    const secure = this.isSecure(c);
    setCookie(c, secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE, value, {
      httpOnly: true,
      sameSite: 'Strict',
      secure,
      path: '/',
      maxAge: Math.max(0, Math.floor((expiresAt - this.now()) / 1000)),
    });
  }

  clearCookie(c: Context): void {
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    if (this.isSecure(c)) deleteCookie(c, SECURE_SESSION_COOKIE, { path: '/', secure: true });
  }
}

// ---- routes ----

const SessionInfo = z.object({
  operator: z.object({ id: z.string(), name: z.string(), roles: z.array(Role) }),
  /** Send back as `X-Countersign-CSRF` on every state-changing call made with the cookie. */
  csrfToken: z.string().nullable(),
  expiresAt: z.string().nullable(),
});

const SignInBody = z.strictObject({ token: z.string().min(1).max(200) });

const errors = {
  400: { content: { 'application/json': { schema: ErrorBody } }, description: 'Bad input' },
  401: { content: { 'application/json': { schema: ErrorBody } }, description: 'Unknown token or no session' },
  403: { content: { 'application/json': { schema: ErrorBody } }, description: 'Cross-site request or missing CSRF token' },
};

export const signInRoute = createRoute({
  method: 'post',
  path: '/v1/session',
  summary: 'Sign in to the dashboard: exchange an operator token for a session cookie (HttpOnly, SameSite=Strict)',
  request: { body: { content: { 'application/json': { schema: SignInBody } }, required: true } },
  responses: { 200: { content: { 'application/json': { schema: SessionInfo } }, description: 'Signed in; the cookie is set' }, ...errors },
});

export const sessionRoute = createRoute({
  method: 'get',
  path: '/v1/session',
  summary: 'The signed-in operator and the CSRF token of this session',
  security: [{ bearer: [] }],
  responses: { 200: { content: { 'application/json': { schema: SessionInfo } }, description: 'The session' }, ...errors },
});

export const signOutRoute = createRoute({
  method: 'delete',
  path: '/v1/session',
  summary: 'Sign out: the cookie is cleared and the session ends',
  security: [{ bearer: [] }],
  responses: { 200: { content: { 'application/json': { schema: z.object({ signedOut: z.boolean() }) } }, description: 'Signed out' }, ...errors },
});

/** True for the one `/v1` call that needs no credential: signing in. */
export function isSignIn(c: Context): boolean {
  return c.req.method === 'POST' && c.req.path === signInRoute.path;
}

export function registerSessionRoutes(app: OpenAPIHono<Env>, engine: Engine, sessions: Sessions): void {
  app.openapi(signInRoute, async (c) => {
    sessions.checkSameSite(c);
    const { token } = c.req.valid('json');
    const principal = await engine.authenticate(token);
    if (!principal) throw new CountersignError('UNAUTHENTICATED', 'unknown or revoked token');
    if (principal.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot sign in to the dashboard; use an operator token');
    const issued = sessions.issue(sha256Hex(token));
    sessions.setCookie(c, issued.cookie, issued.expiresAt);
    c.header('cache-control', 'no-store');
    return c.json(
      {
        operator: { id: principal.operatorId, name: principal.name, roles: principal.roles },
        csrfToken: issued.csrfToken,
        expiresAt: new Date(issued.expiresAt).toISOString(),
      },
      200,
    );
  });

  app.openapi(sessionRoute, async (c) => {
    const p = c.get('principal');
    if (p.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator');
    const session = sessions.verify(sessions.readCookie(c));
    c.header('cache-control', 'no-store');
    return c.json(
      {
        operator: { id: p.operatorId, name: p.name, roles: p.roles },
        csrfToken: session && !c.req.header('authorization') ? sessions.csrfToken(session.nonce) : null,
        expiresAt: session ? new Date(session.expiresAt).toISOString() : null,
      },
      200,
    );
  });

  app.openapi(signOutRoute, async (c) => {
    const session = sessions.verify(sessions.readCookie(c));
    if (session) await sessions.end(session, engine);
    sessions.clearCookie(c);
    return c.json({ signedOut: true }, 200);
  });
}

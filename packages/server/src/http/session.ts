/**
 * Dashboard sessions: an operator exchanges their token once (`POST /v1/session`) for an
 * `HttpOnly`, `SameSite=Strict` cookie, so the token never lives in the page's JavaScript.
 *
 * The cookie is `v2.<id>`: 32 random bytes, of which the database keeps only the SHA-256
 * (`sessions`, engine/credentials.ts) with the token it was made from. Nothing in the database
 * or in a credential hash yields a cookie (issue 13, point 8). Signing out deletes the row, and
 * so does revoking or rotating the token, disabling or removing the operator: every server
 * sharing the database refuses the cookie within the credential cache (2 s). Servers need no
 * shared session secret.
 *
 * Over TLS only the `__Host-` cookie is read (point 18): a plain `countersign_session` cookie
 * tossed in from a sibling subdomain is ignored, so it cannot sign the browser in as someone else.
 *
 * CSRF: a state-changing call made with the cookie must carry `X-Countersign-CSRF`, an HMAC keyed
 * by the session id (returned at sign-in and by `GET /v1/session`), and must not come from
 * another site (`Origin` / `Sec-Fetch-Site`). Bearer calls (agents, CLI) are untouched: a
 * browser never attaches an `Authorization` header on its own.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody, Role } from '@countersign/core';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { Engine } from '../engine/engine.ts';
import type { Principal } from '../engine/principal.ts';
import { type ApiEnv as Env } from './routes/contract.ts';


export const SESSION_COOKIE = 'countersign_session';
/** With `Secure`, the `__Host-` prefix also pins the cookie to this host and path `/`. */
export const SECURE_SESSION_COOKIE = `__Host-${SESSION_COOKIE}`;
export const CSRF_HEADER = 'x-countersign-csrf';
export const DEFAULT_SESSION_TTL_MS = 12 * 3600_000;
/** Open streams ask whether their session still holds this often (through the 2 s credential cache). */
export const STREAM_RECHECK_MS = 1_000;

export interface SessionOptions {
  /** Accepted for compatibility (COUNTERSIGN_SESSION_SECRET); sessions are server-side now and need no shared key. */
  secret?: string | undefined;
  /** Session lifetime in ms. Default 12 hours. */
  ttlMs?: number | undefined;
  /** Believe `X-Forwarded-Proto` / `X-Forwarded-Host` (only behind a proxy you run). */
  trustProxy?: boolean | undefined;
  now?: () => number;
}

/** A session as the cookie names it: the random id (never stored) and, once resolved, when it ends. */
export interface Session {
  id: string;
  expiresAt: number;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const COOKIE_VALUE = /^v2\.([A-Za-z0-9_-]{43})$/;

export class Sessions {
  private readonly ttlMs: number;
  private readonly now: () => number;
  readonly trustProxy: boolean;

  constructor(options: SessionOptions = {}) {
    if (options.secret !== undefined && options.secret.length < 32) {
      throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_SESSION_SECRET must be at least 32 characters');
    }
    this.ttlMs = options.ttlMs ?? DEFAULT_SESSION_TTL_MS;
    this.trustProxy = options.trustProxy ?? false;
    this.now = options.now ?? Date.now;
  }

  /** The session id in a cookie value, or null when it is malformed. */
  parse(value: string | undefined): string | null {
    const match = value === undefined ? null : COOKIE_VALUE.exec(value);
    return match ? match[1]! : null;
  }

  cookieValue(id: string): string {
    return `v2.${id}`;
  }

  csrfToken(id: string): string {
    return createHmac('sha256', id).update('countersign csrf').digest('base64url');
  }

  /** Signs an operator in: a new server-side session for their token. */
  async open(engine: Engine, token: string) {
    return engine.credentials.openSession(token, this.ttlMs);
  }

  /**
   * For a long-lived stream: the session's operator as they stand now (roles included), or
   * undefined once the session no longer holds — expired, signed out, its token or operator no
   * longer valid — and from then on.
   */
  current(session: Session, engine: Engine): () => Promise<Principal | undefined> {
    let valid = true;
    return async () => {
      if (!valid || session.expiresAt <= this.now()) {
        valid = false;
        return undefined;
      }
      const now = await engine.credentials.sessionPrincipal(session.id);
      valid = now !== undefined;
      return now?.principal;
    };
  }

  checkCsrf(session: Session, given: string | undefined): boolean {
    if (!given) return false;
    const a = Buffer.from(given);
    const b = Buffer.from(this.csrfToken(session.id));
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** Signs a session out on every server sharing the database (its row is deleted). */
  async end(id: string, engine: Engine): Promise<void> {
    await engine.credentials.endSession(id);
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

  /** Over TLS only the `__Host-` cookie counts; over plain HTTP (no `Secure` cookies exist there) the plain one. */
  readCookie(c: Context): string | undefined {
    return this.isSecure(c) ? getCookie(c, SECURE_SESSION_COOKIE) : getCookie(c, SESSION_COOKIE);
  }

  /**
   * The operator behind the session cookie, or undefined when there is no cookie. A malformed,
   * unknown, expired or signed-out session, a revoked token or a disabled operator, or a
   * state-changing call without the CSRF token, is refused.
   */
  async principal(c: Context, engine: Engine): Promise<{ principal: Principal; session: Session } | undefined> {
    const value = this.readCookie(c);
    if (value === undefined) return undefined;
    const id = this.parse(value);
    if (id === null) throw new CountersignError('UNAUTHENTICATED', 'the session cookie is invalid; sign in again');
    const found = await engine.credentials.sessionPrincipal(id);
    if (!found) throw new CountersignError('UNAUTHENTICATED', 'this session has ended (signed out, expired, or its token was revoked); sign in again');
    const session = { id, expiresAt: found.expiresAt };
    if (!SAFE_METHODS.has(c.req.method)) {
      this.checkSameSite(c);
      if (!this.checkCsrf(session, c.req.header(CSRF_HEADER))) {
        throw new CountersignError('FORBIDDEN', `send the session's CSRF token in the ${CSRF_HEADER} header`, { reason: 'csrf' });
      }
    }
    return { principal: found.principal, session };
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
    const issued = await sessions.open(engine, token);
    const principal = issued.principal;
    sessions.setCookie(c, sessions.cookieValue(issued.id), issued.expiresAt);
    c.header('cache-control', 'no-store');
    return c.json(
      {
        operator: { id: principal.operatorId, name: principal.name, roles: principal.roles },
        csrfToken: sessions.csrfToken(issued.id),
        expiresAt: new Date(issued.expiresAt).toISOString(),
      },
      200,
    );
  });

  app.openapi(sessionRoute, async (c) => {
    const p = c.get('principal');
    if (p.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator');
    const session = c.req.header('authorization') ? null : c.get('session');
    c.header('cache-control', 'no-store');
    return c.json(
      {
        operator: { id: p.operatorId, name: p.name, roles: p.roles },
        csrfToken: session ? sessions.csrfToken(session.id) : null,
        expiresAt: session ? new Date(session.expiresAt).toISOString() : null,
      },
      200,
    );
  });

  app.openapi(signOutRoute, async (c) => {
    const id = sessions.parse(sessions.readCookie(c));
    if (id !== null) await sessions.end(id, engine);
    sessions.clearCookie(c);
    return c.json({ signedOut: true }, 200);
  });
}

/**
 * The HTTP API. Handlers translate HTTP to engine calls and back, nothing more: every decision
 * is the engine's, every error leaves through the one handler in errors.ts.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, type ApprovalRequest, type WaitLimits } from '@countersign/core';
import type { MiddlewareHandler } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { registerAuditRoutes } from './routes/audit.ts';
import { registerCredentialRoutes } from './routes/credentials.ts';
import { registerExecutionRoutes } from './routes/execution.ts';
import { registerPolicyRoutes } from './routes/policy.ts';
import { registerAgentRoutes } from './routes/agents.ts';
import { registerEscalationRoutes } from '../scheduler/http.ts';
import { clientIp, registerGuardRoutes } from './routes/guard.ts';
import { registerOperatorViews } from './routes/operator-views.ts';
import { registerScreenRoutes } from './routes/screen.ts';
import { registerForwardingRoutes } from './routes/forwarding.ts';
import type { ForwardDestination } from '../forwarding/config.ts';
import { answerError as scimAnswerError, registerScimRoutes, SCIM_PATH_PREFIX } from './routes/scim.ts';
import { registerScimTokenRoutes } from './routes/scim-tokens.ts';
import { registerSsoRoutes } from './routes/sso.ts';
import type { Runtime } from '../runtime.ts';
import { ChannelRegistry } from '../channels/registry.ts';
import { mountSlackActions, SLACK_ACTIONS_PATH, SLACK_MAX_BODY } from '../channels/slack-actions.ts';
import { mountTeamsActions, TEAMS_ACTIONS_PATH, TEAMS_MAX_BODY } from '../channels/teams-actions.ts';
import { JIRA_MAX_BODY, JIRA_WEBHOOK_PREFIX, mountTicketRoutes, SERVICENOW_CALLBACK_PREFIX, SERVICENOW_MAX_BODY } from '../channels/tickets.ts';
import { boundedBody } from './body-limit.ts';
import { WaitSlots } from './wait-slots.ts';
import type { Engine } from '../engine/engine.ts';
import { registerDashboardApi } from './dashboard-api.ts';
import { mountDashboard } from './dashboard.ts';
import { errorResponse, toCountersignError } from './errors.ts';
import { jsonNewline } from './json-newline.ts';
import { instrumentEngine, renderMetrics } from './metrics.ts';
import { registerSummaryRoute } from './metrics-summary.ts';
import * as routes from './routes/contract.ts';
import { isSignIn, registerSessionRoutes, Sessions, type SessionOptions } from './session.ts';
import { grantsHeld, watchCredential } from './stream-auth.ts';
import { type ApiEnv as Env } from './routes/contract.ts';


export interface AppOptions {
  engine: Engine;
  version?: string;
  /** Largest accepted request body, bytes. */
  maxBodyBytes?: number;
  /** Seconds between SSE keep-alive comments. */
  heartbeatSeconds?: number;
  log?: (message: string) => void;
  /** Called once for each request created (not for an idempotent replay): `serve`'s COUNTERSIGN_DEBUG routing line (log.ts). */
  onCreated?: ((request: ApprovalRequest) => void) | undefined;
  /** Dashboard sign-in (session cookies); see session.ts. */
  session?: SessionOptions;
  /** Where the built dashboard is; default packages/dashboard/dist. */
  dashboardDir?: string | undefined;
  /** Notification channels of the active policy (Slack button clicks are checked against them). */
  channels?: ChannelRegistry | undefined;
  /** Where people open the dashboard (the refreshed Teams card's links); default: the request's own origin. */
  reviewBase?: string | undefined;
  /** Single sign-on and SCIM provisioning (runtime.ts `identity`); absent: neither. */
  identity?: Runtime['identity'] | undefined;
  /** Concurrent long-polls and event streams per principal and in all (config.ts `TransportConfig`); default 64 and 800. */
  waits?: WaitLimits | undefined;
  /** The SIEM destinations this server forwards to (config.ts `forward`), for `GET /v1/forwarding`. */
  forwarding?: readonly ForwardDestination[] | undefined;
}

const JSON_TYPE = /^application\/([\w.-]+\+)?json$/i;

export function createApp(options: AppOptions): OpenAPIHono<Env> {
  const { engine } = options;
  const log = options.log ?? console.error;
  const app = new OpenAPIHono<Env>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const issues = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message, code: i.code }));
      const where = result.target === 'json' ? 'body' : result.target;
      const first = issues[0];
      const message = first ? `invalid ${where}: ${first.path || '(root)'}: ${first.message}` : `invalid ${where}`;
      const code = result.target === 'param' ? 'BAD_ID' : 'VALIDATION_FAILED';
      return errorResponse(c, new CountersignError(code, message, { target: where, issues }));
    },
  });

  app.use('*', jsonNewline);
  app.onError((err, c) => (c.req.path.startsWith(SCIM_PATH_PREFIX) ? scimAnswerError(c, err) : errorResponse(c, toCountersignError(err, log))));
  app.notFound((c) => errorResponse(c, new CountersignError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`)));

  // First of all: every body on every route is bounded while it streams (http/body-limit.ts).
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  // Signed callbacks are small; each path is held to its own limit while the body streams.
  const callbackLimit = (path: string): number | undefined => {
    if (path === SLACK_ACTIONS_PATH) return SLACK_MAX_BODY;
    if (path === TEAMS_ACTIONS_PATH) return TEAMS_MAX_BODY;
    if (path.startsWith(SERVICENOW_CALLBACK_PREFIX)) return SERVICENOW_MAX_BODY;
    if (path.startsWith(JIRA_WEBHOOK_PREFIX)) return JIRA_MAX_BODY;
    return undefined;
  };
  app.use('*', boundedBody({ limit: maxBodyBytes, limitFor: (path) => { const limit = callbackLimit(path); return limit === undefined ? undefined : Math.min(limit, maxBodyBytes); } }));

  /** Pending entries older than this make /healthz degraded (the integrator runs every INTEGRATION_POLL_MS). */
  const INTEGRATION_STALL_MS = 5_000;
  app.get('/healthz', async (c) => {
    try {
      await engine.ping();
      const health = { status: 'ok', version: options.version ?? '0.1.0', policyVersion: engine.policy.version, database: engine.databaseDialect };
      // The audit signer refuses to sign (AUDIT_FORK): the server runs, but its trail is not being witnessed.
      const refusal = engine.trail.signer.refusal;
      if (refusal) return c.json({ ...health, status: 'degraded', audit: { code: refusal.kind === 'key_retired' ? 'AUDIT_KEY_RETIRED' : 'AUDIT_FORK', kind: refusal.kind, reason: refusal.reason, since: new Date(refusal.since).toISOString() } });
      // Entries left pending longer than a few polls: the integrator is stalled (or another
      // session holds its lock), so committed entries are not in the tree nor in any checkpoint.
      const lag = await engine.auditIntegrationLag();
      if (lag && lag.ms > INTEGRATION_STALL_MS) {
        return c.json({ ...health, status: 'degraded', audit: { code: 'AUDIT_INTEGRATION_STALLED', reason: `the oldest audit entry not yet integrated is ${Math.round(lag.ms / 1000)} s old`, since: Number.isNaN(new Date(lag.since).getTime()) ? null : new Date(lag.since).toISOString() } });
      }
      return c.json(health);
    } catch {
      return c.json({ status: 'unavailable' }, 503);
    }
  });

  // Signed by Slack, the Bot Framework, ServiceNow or Jira, not by a bearer token: mounted before the /v1 body, JSON and auth middleware.
  const channelRegistry = options.channels ?? new ChannelRegistry(engine);
  mountSlackActions(app, engine, channelRegistry);
  mountTeamsActions(app, engine, channelRegistry, { reviewBase: options.reviewBase });
  mountTicketRoutes(app, engine, channelRegistry, log);

  const sessions = new Sessions(options.session);
  // Outside /v1: the provider's redirects and the SCIM client carry no operator credential.
  const identity = options.identity ?? null;
  registerSsoRoutes(app, sessions, identity?.oidc ? { oidc: identity.oidc, provisioning: identity.provisioning } : null, options.session?.trustProxy);
  registerScimRoutes(app, identity?.scim ? identity.provisioning : null);

  app.use('/v1/*', parseJsonBody);
  app.use('/v1/*', authenticate(engine, sessions));
  instrumentEngine(engine);

  app.get('/metrics', async (c) => {
    const { contentType, body } = await renderMetrics(engine);
    return c.body(body, 200, { 'content-type': contentType, 'cache-control': 'no-store' });
  });

  registerSessionRoutes(app, engine, sessions);
  const waits = new WaitSlots(options.waits ?? { perPrincipal: 64, total: 800 });
  registerDashboardApi(app, engine, { heartbeatSeconds: options.heartbeatSeconds, log, waits });
  registerSummaryRoute(app, engine);
  registerOperatorViews(app, engine, options.session?.trustProxy); // before GET /v1/requests/{id}

  app.openapi(routes.createRequestRoute, async (c) => {
    const { request, replayed } = await engine.createRequest(c.get('principal'), c.req.valid('json'));
    if (!replayed) options.onCreated?.(request);
    return c.json(request, replayed ? 200 : 201);
  });

  app.openapi(routes.getRequestRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { waitSeconds } = c.req.valid('query');
    const principal = c.get('principal');
    if (!waitSeconds) return c.json(await engine.getRequest(principal, id, { ip: clientIp(c, options.session?.trustProxy) }), 200);
    // A long-poll ends with its credential, like a stream (http/stream-auth.ts).
    const release = waits.acquire(principal); // 429 when this credential (or the server) holds too many waits
    const waiting = new AbortController();
    const onAbort = () => waiting.abort();
    c.req.raw.signal.addEventListener('abort', onAbort);
    let lost = false;
    const stop = watchCredential(c.get('stillAuthorized'), () => ((lost = true), waiting.abort()));
    try {
      const request = await engine.waitForDecision(principal, id, waitSeconds * 1000, waiting.signal);
      // Checked once more before anything is sent: a check the database could not answer while
      // waiting did not end the wait (an outage is not a revocation), so this one decides; if the
      // database is still away it throws, and the agent gets 503 STORE_UNAVAILABLE, not the answer.
      if (lost || !(await c.get('stillAuthorized')())) throw new CountersignError('UNAUTHENTICATED', 'the credential was revoked or its session ended while waiting');
      return c.json(request, 200);
    } finally {
      stop();
      c.req.raw.signal.removeEventListener('abort', onAbort);
      release();
    }
  });

  app.openapi(routes.requestEventsRoute, async (c) => {
    const { id } = c.req.valid('param');
    const principal = c.get('principal');
    await engine.getRequest(principal, id); // 404s before the stream starts
    const heartbeatMs = (options.heartbeatSeconds ?? 15) * 1000;
    const release = waits.acquire(principal);
    return streamSSE(c, async (stream) => {
      try {
        await requestEvents(stream);
      } finally {
        release();
      }
    }) as never;

    async function requestEvents(stream: SSEStreamingApi): Promise<void> {
      const aborted = new AbortController();
      stream.onAbort(() => aborted.abort());
      // Ends with the credential, and on a change of its roles or groups (http/stream-auth.ts).
      const held = grantsHeld(c.get('principalNow'), principal);
      const stopWatch = watchCredential(held, () => aborted.abort());
      let last: ApprovalRequest | null = null;
      let eventId = 0;
      try {
      while (!aborted.signal.aborted) {
        // Subscribe before reading, so a change between the read and the wait is never missed.
        const changed = engine.wakeups.next(id, heartbeatMs, aborted.signal);
        const current = await engine.getRequest(principal, id, { ip: clientIp(c, options.session?.trustProxy) });
        if (last === null || current.updatedAt !== last.updatedAt || current.status !== last.status) {
          if (!(await held())) break;
          await stream.writeSSE({ event: 'state', id: String(++eventId), data: JSON.stringify(current) });
        }
        last = current;
        if (isClosed(last)) break;
        const why = await changed;
        if (why === 'aborted') break;
        if (why === 'timeout') {
          if (!(await held())) break; // signed out, expired, revoked or re-roled: the stream ends too
          await stream.write(': keep-alive\n\n');
        }
      }
      } finally {
        stopWatch();
      }
      if (last && (await held().catch(() => false))) await stream.writeSSE({ event: 'end', data: JSON.stringify({ status: last.status }) });
    }
  });

  app.openapi(routes.listRequestsRoute, async (c) => c.json(await engine.listRequests(c.get('principal'), c.req.valid('query'), { ip: clientIp(c, options.session?.trustProxy) }), 200));

  app.openapi(routes.reviewRoute, async (c) =>
    c.json(await engine.review(c.get('principal'), c.req.valid('param').id, c.req.valid('json'), { ip: clientIp(c, options.session?.trustProxy) }), 200),
  );

  registerExecutionRoutes(app, engine);
  app.openapi(routes.cancelRoute, async (c) => {
    const bodyIn = (await hasBody(c.req.raw)) ? c.req.valid('json') : {};
    return c.json(await engine.cancel(c.get('principal'), c.req.valid('param').id, bodyIn ?? {}), 200);
  });

  app.openapi(routes.requestAuditRoute, async (c) =>
    c.json({ items: await engine.auditForRequest(c.get('principal'), c.req.valid('param').id) }, 200),
  );

  app.openapi(routes.auditRoute, async (c) => c.json(await engine.trail.query(c.get('principal'), c.req.valid('query')), 200));

  registerAuditRoutes(app, engine);
  registerEscalationRoutes(app, engine);
  registerGuardRoutes(app, engine);
  registerCredentialRoutes(app, engine);
  registerScreenRoutes(app, engine);
  registerForwardingRoutes(app, engine, options.forwarding ?? []);
  registerScimTokenRoutes(app, identity?.scim ? identity.provisioning : null);

  app.openapi(routes.createOperatorRoute, async (c) => c.json(await engine.createOperator(c.get('principal'), c.req.valid('json')), 201));
  app.openapi(routes.listOperatorsRoute, async (c) => c.json({ items: await engine.listOperators(c.get('principal')) }, 200));
  app.openapi(routes.createKeyRoute, async (c) => c.json(await engine.createAgentKey(c.get('principal'), c.req.valid('json').agent), 201));

  app.openapi(routes.meRoute, async (c) => {
    const p = c.get('principal');
    return c.json(
      p.kind === 'agent'
        ? { kind: 'agent' as const, id: p.agentId, name: p.agentName, roles: [] }
        : { kind: 'operator' as const, id: p.operatorId, name: p.name, roles: p.roles },
      200,
    );
  });

  app.openapi(routes.policyRoute, async (c) => {
    const p = c.get('principal');
    if (p.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
    const { version, hash, source, policy } = engine.policy;
    return c.json({ version, hash, source, policy }, 200);
  });
  registerPolicyRoutes(app, engine);
  registerAgentRoutes(app, engine);

  mountDashboard(app, { dir: options.dashboardDir });

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An agent API key (csk_…) or an operator token (cso_…)',
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'Countersign',
      version: options.version ?? '0.1.0',
      description: 'Human-in-the-loop approval gateway. Errors: {"error": {"code", "message", "details"?}}; codes in docs/errors.md.',
    },
  });
  return app;
}

function isClosed(request: ApprovalRequest): boolean {
  return ['rejected', 'expired', 'cancelled', 'executed', 'execution_failed', 'lapsed'].includes(request.status);
}

async function hasBody(req: Request): Promise<boolean> {
  const length = req.headers.get('content-length');
  if (length !== null) return Number(length) > 0;
  return req.headers.get('content-type') !== null;
}

/**
 * Reads JSON bodies up front so malformed JSON and wrong media types get their own codes
 * (the validator then reuses Hono's cached parse).
 */
const parseJsonBody: MiddlewareHandler = async (c, next) => {
  if (c.req.method === 'GET' || c.req.method === 'HEAD' || c.req.method === 'OPTIONS') return next();
  const type = c.req.header('content-type');
  if (!(await hasBody(c.req.raw)) && !type) return next();
  const mediaType = (type ?? '').split(';')[0]?.trim() ?? '';
  if (!JSON_TYPE.test(mediaType)) {
    throw new CountersignError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  }
  // An empty body reads as `{}`: `POST /v1/operators/me/totp` needs none, and a route that does
  // need one then names the missing fields (VALIDATION_FAILED) rather than saying BAD_JSON.
  // (Hono keeps each body read as a promise in `bodyCache`, typed as the value; json() parses `text`.)
  if ((await c.req.text()).trim() === '') (c.req.bodyCache as Record<string, unknown>).text = Promise.resolve('{}');
  try {
    await c.req.json();
  } catch {
    throw new CountersignError('BAD_JSON', 'request body is not valid JSON');
  }
  return next();
};

function authenticate(engine: Engine, sessions: Sessions): MiddlewareHandler<Env> {
  return async (c, next) => {
    if (isSignIn(c)) return next();
    if (c.req.header('authorization') === undefined) {
      // The dashboard: a session cookie (with CSRF checks on state-changing calls).
      const session = await sessions.principal(c, engine);
      if (session) {
        c.set('principal', session.principal);
        c.set('session', session.session);
        const now = sessions.current(session.session, engine);
        c.set('principalNow', now);
        c.set('stillAuthorized', async () => (await now()) !== undefined);
        return next();
      }
    }
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match?.[1]) {
      throw new CountersignError('UNAUTHENTICATED', 'send a credential as "Authorization: Bearer <token>"');
    }
    const token = match[1];
    const principal = await engine.authenticate(token);
    if (!principal) throw new CountersignError('UNAUTHENTICATED', 'unknown or revoked credential');
    c.set('principal', principal);
    c.set('principalNow', () => engine.authenticate(token));
    c.set('stillAuthorized', async () => (await engine.authenticate(token)) !== undefined);
    return next();
  };
}

/**
 * The API calls only the dashboard needs: a live stream of request changes for the queue, and
 * post-hoc feedback on automatically approved requests. Both are ordinary `/v1` routes (Bearer
 * or session cookie), documented in `/openapi.json`.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ApprovalRequest, CountersignError, ErrorBody } from '@countersign/core';
import { streamSSE } from 'hono/streaming';
import { grantsHeld, watchCredential } from './stream-auth.ts';
import type { Engine } from '../engine/engine.ts';
import type { Principal } from '../engine/principal.ts';
import { recordFeedback } from './metrics.ts';
import { WaitSlots } from './wait-slots.ts';
import { AuditEntrySchema, RequestId } from './routes/contract.ts';
import { type ApiEnv as Env } from './routes/contract.ts';


/** Reads a changed request without an operator's identity; operators may read every request. */
const FEED_READER: Principal = { kind: 'operator', operatorId: 'system:feed', name: 'request feed', roles: ['auditor'], groups: [] };
/** A client that falls this far behind is dropped; it reconnects and reloads the queue. */
const MAX_BACKLOG = 1_000;

/**
 * One per app: hears "request X changed" from the engine's Wakeups (on PostgreSQL, from every
 * process through NOTIFY), reads each changed request once and hands it to every connected
 * stream. Idle, it flushes on the next turn of the event loop; under load, changes arriving while
 * a flush runs are coalesced (an id changed ten times is read once). Reads are serial, so a
 * stream never sees an older state after a newer one.
 */
export class RequestFeed {
  private readonly clients = new Set<(request: ApprovalRequest) => void>();
  private readonly resyncs = new Set<() => void>();
  private readonly changed = new Set<string>();
  private scheduled = false;
  private flushing = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly options: { log?: (message: string) => void } = {},
  ) {}

  /**
   * `onResync` is called when changes may have been missed (this process lost and regained its
   * database notifications, engine/wakeups.ts `resync`): the stream should end, so the browser
   * reconnects and reloads the queue.
   */
  subscribe(client: (request: ApprovalRequest) => void, onResync?: () => void): () => void {
    this.clients.add(client);
    if (onResync) this.resyncs.add(onResync);
    this.unsubscribe ??= this.engine.wakeups.subscribeAll(
      (id) => this.enqueue(id),
      () => {
        for (const resync of [...this.resyncs]) resync();
      },
    );
    return () => {
      this.clients.delete(client);
      if (onResync) this.resyncs.delete(onResync);
      if (this.clients.size === 0) {
        this.unsubscribe?.();
        this.unsubscribe = undefined;
        this.changed.clear();
      }
    };
  }

  get size(): number {
    return this.clients.size;
  }

  private enqueue(id: string): void {
    this.changed.add(id);
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    this.flushing = true;
    try {
      while (this.changed.size > 0) {
        const ids = [...this.changed];
        this.changed.clear();
        for (const id of ids) {
          if (this.clients.size === 0) return;
          try {
            const request = await this.engine.getRequest(FEED_READER, id);
            // Computed for the feed's own principal, so meaningless to the readers: leave it out.
            delete request.actionable;
            for (const client of [...this.clients]) client(request);
          } catch (err) {
            if (!(err instanceof CountersignError && err.code === 'NOT_FOUND')) {
              (this.options.log ?? console.error)(`countersign: request feed could not read ${id}: ${(err as Error).message}`);
            }
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}

export const eventsRoute = createRoute({
  method: 'get',
  path: '/v1/events',
  summary:
    'Server-sent events of request changes (operators): "ready" once subscribed (load the queue then), then "request" with the whole request each time one is created or changes',
  security: [{ bearer: [] }],
  responses: {
    200: { content: { 'text/event-stream': { schema: z.string() } }, description: 'SSE stream' },
    401: { content: { 'application/json': { schema: ErrorBody } }, description: 'No credential' },
    403: { content: { 'application/json': { schema: ErrorBody } }, description: 'Not an operator' },
  },
});

export const FeedbackBody = z.strictObject({
  verdict: z.enum(['should_have_asked', 'ok']),
  note: z.string().max(2_000).optional(),
});

export const feedbackRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/feedback',
  summary: 'Post-hoc feedback on a request the policy approved on its own: "should_have_asked" or "ok" (an audit entry)',
  security: [{ bearer: [] }],
  request: {
    params: z.object({ id: RequestId }),
    body: { content: { 'application/json': { schema: FeedbackBody } }, required: true },
  },
  responses: {
    201: { content: { 'application/json': { schema: AuditEntrySchema } }, description: 'The feedback entry' },
    400: { content: { 'application/json': { schema: ErrorBody } }, description: 'Bad input' },
    403: { content: { 'application/json': { schema: ErrorBody } }, description: 'Not an operator' },
    404: { content: { 'application/json': { schema: ErrorBody } }, description: 'No such request' },
    409: { content: { 'application/json': { schema: ErrorBody } }, description: 'The request was not approved by policy' },
  },
});

export function registerDashboardApi(
  app: OpenAPIHono<Env>,
  engine: Engine,
  options: { heartbeatSeconds?: number | undefined; log?: ((message: string) => void) | undefined; waits?: WaitSlots | undefined } = {},
): RequestFeed {
  const feed = new RequestFeed(engine, { log: options.log });
  const waits = options.waits ?? new WaitSlots({ perPrincipal: 64, total: 800 });

  app.openapi(eventsRoute, async (c) => {
    if (c.get('principal').kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
    const heartbeatMs = (options.heartbeatSeconds ?? 15) * 1000;
    const release = waits.acquire(c.get('principal')); // 429 when this operator (or the server) holds too many
    c.header('cache-control', 'no-store');
    return streamSSE(c, async (stream) => {
      const backlog: ApprovalRequest[] = [];
      let wake: (() => void) | undefined;
      let closed = false;
      const unsubscribe = feed.subscribe(
        (request) => {
          if (backlog.length >= MAX_BACKLOG) {
            closed = true; // too slow: drop it; the browser reconnects and reloads
          } else {
            backlog.push(request);
          }
          wake?.();
        },
        () => {
          closed = true; // changes may have been missed while the database was away: reconnect and reload
          wake?.();
        },
      );
      stream.onAbort(() => {
        closed = true;
        wake?.();
      });
      // Revoked, disabled, signed out, re-roled: the stream is closed within a second or so (http/stream-auth.ts).
      const held = grantsHeld(c.get('principalNow'), c.get('principal')); // the credential, with the roles it opened with
      const stopWatch = watchCredential(held, () => {
        closed = true;
        wake?.();
      });
      let eventId = 0;
      try {
        // Subscribed before saying so: whatever the client loads after "ready" is not missed.
        await stream.writeSSE({ event: 'ready', data: '{}' });
        while (!closed) {
          const next = backlog.shift();
          if (next) {
            if (!(await held())) break; // signed out, expired or revoked: nothing more is sent
            await stream.writeSSE({ event: 'request', id: String(++eventId), data: JSON.stringify(next) });
            continue;
          }
          const timedOut = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(true), heartbeatMs);
            wake = () => {
              clearTimeout(timer);
              resolve(false);
            };
          });
          wake = undefined;
          if (timedOut && !closed) {
            if (!(await held())) break; // signed out, expired or revoked: the stream ends too
            await stream.write(': keep-alive\n\n');
          }
        }
      } finally {
        stopWatch();
        unsubscribe();
        release();
      }
    }) as never;
  });

  app.openapi(feedbackRoute, async (c) => {
    const body = c.req.valid('json');
    const entry = await engine.recordFeedback(c.get('principal'), c.req.valid('param').id, body);
    recordFeedback(body.verdict);
    return c.json(entry, 201);
  });

  return feed;
}

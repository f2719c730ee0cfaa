/**
 * Every request body is bounded while it streams, on every route (the API, the session, Slack's
 * button clicks), before any handler sees it. A declared `Content-Length` over the limit is
 * refused before a byte is read; a chunked body (or one whose length is undeclared) is read here,
 * counting, and refused the moment it passes the limit, so at most `limit` bytes (plus one
 * network chunk) are ever held for one request, whatever the sender claims or sends.
 *
 * The refusal is 413 `BODY_TOO_LARGE` with `Connection: close` (set by errors.ts), and the rest
 * of the body is never read: Node ends the connection once the 413 is written, so a keep-alive
 * client opens a fresh one for its next request instead of failing on a half-read socket.
 *
 *   app.use('*', boundedBody({ limit: 1 << 20, limitFor: (path) => (path === SLACK ? 64 << 10 : undefined) }));
 */
import { CountersignError } from '@countersign/core';
import type { MiddlewareHandler } from 'hono';

export interface BodyLimitOptions {
  /** Largest accepted body, bytes. */
  limit: number;
  /** A smaller limit for some paths (Slack's callbacks take 64 KiB). */
  limitFor?: (path: string) => number | undefined;
}

export function boundedBody(options: BodyLimitOptions): MiddlewareHandler {
  return async (c, next) => {
    const body = c.req.raw.body;
    if (!body) return next(); // GET and HEAD: no body is read (Node discards one, within the request timeout)
    const limit = options.limitFor?.(c.req.path) ?? options.limit;
    const tooLarge = () => new CountersignError('BODY_TOO_LARGE', `request body is larger than ${limit} bytes`, { limit });
    const declared = c.req.raw.headers.get('content-length');
    if (declared !== null && !c.req.raw.headers.has('transfer-encoding')) {
      // Node's parser never delivers more than the declared length, so the declaration bounds it.
      if (!/^\d{1,15}$/.test(declared.trim()) || Number(declared) > limit) throw tooLarge();
      return next();
    }
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        // Not cancel(): that destroys the socket before the 413 is written. The unread rest is
        // dropped when Node closes the connection after the response.
        reader.releaseLock();
        throw tooLarge();
      }
      chunks.push(value);
    }
    const whole = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      whole.set(chunk, offset);
      offset += chunk.byteLength;
    }
    c.req.raw = new Request(c.req.raw, { body: whole });
    return next();
  };
}

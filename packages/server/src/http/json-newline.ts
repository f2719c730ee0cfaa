/**
 * Every JSON response ends with a newline, so `curl -s …` leaves the shell prompt on its own line
 * and line-oriented tools (`tail`, `jq -c`, log shippers) see one whole line. One middleware, on
 * the outside of every route, error responses included; streams (SSE, JSON Lines) are left alone.
 */
import type { MiddlewareHandler } from 'hono';

const JSON_RESPONSE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i;

export const jsonNewline: MiddlewareHandler = async (c, next) => {
  await next();
  const res = c.res;
  if (!JSON_RESPONSE.test(res.headers.get('content-type') ?? '') || res.body === null) return;
  const text = await res.text();
  if (text.endsWith('\n')) {
    c.res = undefined as unknown as Response; // (Hono merges the old response's headers into a new one otherwise)
    c.res = new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
    return;
  }
  const headers = new Headers(res.headers);
  headers.delete('content-length');
  c.res = undefined as unknown as Response;
  c.res = new Response(`${text}\n`, { status: res.status, statusText: res.statusText, headers });
};

/**
 * A real HTTP proxy on loopback in front of a real server, whose behaviour each test scripts:
 * relay, rewrite an answer, answer by itself, or drop the connection after the server answered
 * (the "committed, but the response was lost" case).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Upstream {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface Exchange {
  method: string;
  /** Path and query, e.g. `/v1/requests/req_…?waitSeconds=60`. */
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Sends the request on to the server (optionally to another path) and returns its answer. */
  forward(path?: string): Promise<Upstream>;
}

/** An answer to send, or `'drop'` to destroy the client's connection without answering. */
export type Handler = (exchange: Exchange) => Promise<Upstream | 'drop'>;

export interface TestProxy {
  url: string;
  /** Every exchange seen, in order (method and path). */
  seen: Array<{ method: string; path: string }>;
  handler: Handler;
  close(): Promise<void>;
}

export const relay: Handler = (exchange) => exchange.forward();

export async function startProxy(upstream: string, handler: Handler = relay): Promise<TestProxy> {
  const proxy: TestProxy = { url: '', seen: [], handler, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const method = req.method ?? 'GET';
      const path = req.url ?? '/';
      proxy.seen.push({ method, path });
      const forward = async (to = path): Promise<Upstream> => {
        const headers: Record<string, string> = {};
        for (const name of ['authorization', 'content-type', 'accept']) {
          const value = req.headers[name];
          if (typeof value === 'string') headers[name] = value;
        }
        const answer = await fetch(`${upstream}${to}`, { method, headers, ...(body && method !== 'GET' ? { body } : {}) });
        const out: Record<string, string> = {};
        answer.headers.forEach((v, k) => {
          if (k === 'content-type' || k === 'retry-after') out[k] = v;
        });
        return { status: answer.status, headers: out, body: await answer.text() };
      };
      proxy
        .handler({ method, path, headers: req.headers, body, forward })
        .then((answer) => {
          if (answer === 'drop') {
            req.socket.destroy();
            return;
          }
          res.writeHead(answer.status, answer.headers);
          res.end(answer.body);
        })
        .catch((err: unknown) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`proxy: ${(err as Error).message}`);
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

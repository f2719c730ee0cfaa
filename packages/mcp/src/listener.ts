/**
 * The `--http` listener shared by `serve` and `proxy`: MCP Streamable HTTP at `/mcp`, one MCP
 * server per session. It fails closed on three fronts before the SDK sees a byte:
 *
 * - authentication: every request needs `Authorization: Bearer <token>` (compared in constant
 *   time); a listener never starts without a token;
 * - DNS rebinding: a request carrying an `Origin` that is not in `allowedOrigins` is refused,
 *   and on a loopback bind the `Host` must name loopback (a rebinding page's Host is its own
 *   domain);
 * - exposure: it binds 127.0.0.1 unless told otherwise.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

export interface ListenerOptions {
  port: number;
  host?: string | undefined;
  token: string;
  allowedOrigins?: readonly string[] | undefined;
  /** Makes the MCP server of a new session. */
  session: (sessionId: string) => Server | McpServer;
  maxBodyBytes?: number | undefined;
}

export interface Listener {
  url: string;
  port: number;
  close(): Promise<void>;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function isLoopback(host: string): boolean {
  // An exact IPv4 loopback literal: `127.0.0.1.evil.example` is a name anyone can point anywhere.
  return LOOPBACK_HOSTS.has(host) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The hostname part of a Host header (`name:port`, `[v6]:port`). */
function hostname(header: string): string {
  if (header.startsWith('[')) return header.slice(0, header.indexOf(']') + 1);
  const colon = header.lastIndexOf(':');
  return (colon === -1 ? header : header.slice(0, colon)).toLowerCase();
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function refuse(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json', ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}) });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error(`body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

export async function startListener(options: ListenerOptions): Promise<Listener> {
  const host = options.host ?? '127.0.0.1';
  const expected = digest(options.token);
  const origins = new Set(options.allowedOrigins ?? []);
  const limit = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const sessions = new Map<string, { transport: StreamableHTTPServerTransport; server: Server | McpServer }>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://listener');
    if (url.pathname !== '/mcp') return refuse(res, 404, 'not found: the MCP endpoint is /mcp');
    const origin = req.headers.origin;
    if (origin !== undefined && !origins.has(origin)) return refuse(res, 403, `origin ${origin} is not allowed`);
    if (isLoopback(host) && !isLoopback(hostname(req.headers.host ?? ''))) return refuse(res, 403, 'Host must name this loopback listener');
    const auth = req.headers.authorization ?? '';
    const presented = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    if (!presented || !timingSafeEqual(digest(presented), expected)) return refuse(res, 401, 'a valid bearer token is required');

    const sessionHeader = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(sessionHeader) ? sessionHeader[0] : sessionHeader;
    if (sessionId !== undefined) {
      const known = sessions.get(sessionId);
      if (!known) return refuse(res, 404, 'unknown or closed session');
      if (req.method === 'POST') {
        let body: unknown;
        try {
          body = await readJson(req, limit);
        } catch (err) {
          return refuse(res, 400, `bad request body: ${(err as Error).message}`);
        }
        return known.transport.handleRequest(req, res, body);
      }
      return known.transport.handleRequest(req, res);
    }
    if (req.method !== 'POST') return refuse(res, 400, 'no session: start with an initialize request');
    let body: unknown;
    try {
      body = await readJson(req, limit);
    } catch (err) {
      return refuse(res, 400, `bad request body: ${(err as Error).message}`);
    }
    if (!isInitializeRequest(body)) return refuse(res, 400, 'no session: start with an initialize request');
    const id = randomUUID();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => id });
    const server = options.session(id);
    sessions.set(id, { transport, server });
    transport.onclose = () => {
      sessions.delete(id);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  };

  const http: HttpServer = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) refuse(res, 500, `internal error: ${(err as Error).message}`);
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, host, () => resolve());
  });
  const { port } = http.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/mcp`,
    port,
    async close() {
      for (const { transport, server } of sessions.values()) {
        await server.close().catch(() => {});
        await transport.close().catch(() => {});
      }
      sessions.clear();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

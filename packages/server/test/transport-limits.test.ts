/**
 * Issue 13, points 4, 9, 14 and 15, over real sockets against a real server on a SQLite file:
 * bodies bounded while they stream on every route (chunked included), 413 with the connection
 * really closed, slow clients dropped, a connection cap, and a cap on the long-polls and event
 * streams one credential (or everyone) may hold. Bounds are generous: the machine is loaded.
 */
import { Agent, request as httpRequest } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CountersignError } from '@countersign/core';
import { resolveServerConfig, resolveTransportConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/serve.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { QUEUED } from './support/engine.ts';
import { runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

const MiB = 1024 * 1024;

interface Started {
  server: RunningServer;
  database: TestDatabase;
  dir: string;
  admin: string;
  agent: string;
  host: string;
  port: number;
}

async function start(env: Record<string, string> = {}): Promise<Started> {
  const database = sqliteDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'countersign-transport-'));
  const config = resolveServerConfig({ database: database.url, port: 0 }, env, dir);
  const server = await startServer(config, () => {});
  return { server, database, dir, admin: server.bootstrap!.adminToken, agent: server.bootstrap!.agentKey, host: '127.0.0.1', port: server.port };
}

async function stop(s: Started | undefined): Promise<void> {
  if (!s) return;
  await s.server.close();
  await s.database.drop();
  rmSync(s.dir, { recursive: true, force: true });
}

async function call<T = any>(s: Started, token: string, path: string, body?: unknown): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(`${s.server.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as T, headers: res.headers };
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves when the socket is fully closed (by either side), with what it received. */
function closed(socket: Socket): { done: Promise<void>; received: () => string; closedAt: () => number | undefined } {
  let text = '';
  let at: number | undefined;
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const done = new Promise<void>((resolve) => {
    socket.once('close', () => {
      at = Date.now();
      resolve();
    });
  });
  socket.on('error', () => {});
  return { done, received: () => text, closedAt: () => at };
}

/**
 * Sends a chunked body of up to `total` bytes as fast as the server takes it, stopping when the
 * server closes the connection. Returns how much was written and the raw response.
 */
async function sendChunked(port: number, path: string, total: number, headers: Record<string, string> = {}): Promise<{ written: number; response: string; closed: boolean }> {
  const socket = await openSocket(port);
  const watch = closed(socket);
  const head = [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', 'Connection: keep-alive', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
  socket.write(head);
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const framed = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
  let written = 0;
  let isClosed = false;
  void watch.done.then(() => (isClosed = true));
  while (written < total && !isClosed && !socket.destroyed) {
    const ok = socket.write(framed);
    written += chunk.length;
    if (!ok) {
      // Wait for the server to read more, or to close; a server that stops reading without
      // closing would hang here, and the test's timeout catches it.
      await Promise.race([new Promise((r) => socket.once('drain', r)), watch.done]);
    }
  }
  if (!isClosed && !socket.destroyed) socket.write('0\r\n\r\n');
  await Promise.race([watch.done, new Promise((r) => setTimeout(r, 20_000))]);
  const wasClosed = watch.closedAt() !== undefined;
  socket.destroy();
  return { written, response: watch.received(), closed: wasClosed };
}

function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
}

function headerOf(raw: string, name: string): string | undefined {
  const head = raw.split('\r\n\r\n')[0] ?? '';
  return new RegExp(`^${name}: *(.*)$`, 'im').exec(head)?.[1]?.trim();
}

function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

describe('bounded bodies on every route (points 4 and 9)', () => {
  let database: TestDatabase;
  let child: ServerProcess;
  let port: number;

  beforeAll(async () => {
    database = sqliteDatabase();
    child = await startServerProcess(database.url);
    port = Number(new URL(child.url).port);
  });
  afterAll(async () => {
    await child?.stop();
    await database?.drop();
  });

  it('a 300 MiB chunked body to the unauthenticated Slack endpoint is cut off at 64 KiB: 413, Connection: close, the socket closed, RSS bounded', async () => {
    const before = rssOf(child.child.pid!);
    const { written, response, closed: wasClosed } = await sendChunked(port, '/v1/integrations/slack/actions', 300 * MiB, {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(statusOf(response)).toBe(413);
    expect(headerOf(response, 'connection')).toBe('close');
    expect(response).toContain('"BODY_TOO_LARGE"');
    expect(wasClosed).toBe(true);
    // The server stopped reading: what got through is the limit plus socket buffers, nowhere near 300 MiB.
    expect(written).toBeLessThan(64 * MiB);
    // Before: 112 MB → 957 MB. Generous: 100 MB of growth allowed.
    expect(rssOf(child.child.pid!) - before).toBeLessThan(100 * MiB);
    const health = await fetch(`${child.url}/healthz`);
    expect(health.status).toBe(200);
  });

  it.each([
    ['the API (create)', '/v1/requests', true],
    ['the session sign-in', '/v1/session', false],
    ['a route that never reads a body (POST /healthz)', '/healthz', false],
    ['an unknown path', '/nowhere', false],
  ])('a chunked body past 1 MiB to %s is refused with 413 and the connection closed', async (_name, path, authed) => {
    const { written, response, closed: wasClosed } = await sendChunked(port, path, 40 * MiB, {
      'content-type': 'application/json',
      ...(authed ? { authorization: `Bearer ${child.bootstrap!.agentKey}` } : {}),
    });
    expect(statusOf(response)).toBe(413);
    expect(headerOf(response, 'connection')).toBe('close');
    expect(wasClosed).toBe(true);
    expect(written).toBeLessThan(40 * MiB);
  });

  it('a declared Content-Length over the limit is refused before the body is sent', async () => {
    const socket = await openSocket(port);
    const watch = closed(socket);
    socket.write(['POST /v1/requests HTTP/1.1', 'Host: x', 'Content-Type: application/json', `Content-Length: ${300 * MiB}`, '', ''].join('\r\n'));
    await watch.done;
    expect(statusOf(watch.received())).toBe(413);
    expect(headerOf(watch.received(), 'connection')).toBe('close');
  });

  it('a body with both Transfer-Encoding and Content-Length (request smuggling) is refused and the server goes on', async () => {
    const socket = await openSocket(port);
    const watch = closed(socket);
    socket.write(['POST /v1/requests HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 4', 'Transfer-Encoding: chunked', '', '0', '', ''].join('\r\n'));
    await Promise.race([watch.done, new Promise((r) => setTimeout(r, 10_000))]);
    socket.destroy();
    expect(statusOf(watch.received())).toBe(400);
    expect((await fetch(`${child.url}/healthz`)).status).toBe(200);
  });

  it('a keep-alive client whose body was too large sends its next request without a socket error', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (method: string, path: string, body?: Buffer) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, method, path, agent, headers: body ? { 'content-type': 'application/json', 'content-length': body.length } : {} }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      for (let i = 0; i < 3; i++) {
        const big = await send('POST', '/v1/requests', Buffer.alloc(2 * MiB, 'x'));
        expect(big).toEqual({ status: 413, connection: 'close' });
        const next = await send('GET', '/healthz');
        expect(next.status).toBe(200);
      }
    } finally {
      agent.destroy();
    }
  });
});

describe('slow clients and the connection cap (point 15)', () => {
  let s: Started | undefined;
  beforeAll(async () => {
    s = await start({ COUNTERSIGN_HEADERS_TIMEOUT_MS: '1000', COUNTERSIGN_REQUEST_TIMEOUT_MS: '2000', COUNTERSIGN_KEEPALIVE_TIMEOUT_MS: '1000', COUNTERSIGN_MAX_CONNECTIONS: '200' });
  });
  afterAll(() => stop(s));

  it('sockets sending headers or a body a byte at a time, or nothing, or idling after a request, are dropped within seconds, and others are still served', async () => {
    const port = s!.port;
    const drip = async (lines: string) => {
      const socket = await openSocket(port);
      const watch = closed(socket);
      let i = 0;
      const timer = setInterval(() => {
        if (socket.destroyed || i >= lines.length) return;
        socket.write(lines[i++]!);
      }, 400);
      return { watch, stop: () => clearInterval(timer), socket };
    };
    const headerHead = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(200);
    const bodyHead = `POST /v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"token":"${'a'.repeat(480)}`;
    const started = Date.now();
    const slow = [
      ...(await Promise.all(Array.from({ length: 40 }, () => drip(headerHead)))),
      ...(await Promise.all(Array.from({ length: 20 }, async () => {
        const d = await drip(bodyHead.slice(bodyHead.indexOf('\r\n\r\n') + 4));
        d.socket.write(bodyHead.slice(0, bodyHead.indexOf('\r\n\r\n') + 4)); // headers at once, then the body drips
        return d;
      }))),
    ];
    // Sockets that send nothing at all, and one that goes idle after a keep-alive request.
    const silent = await Promise.all(Array.from({ length: 20 }, async () => {
      const socket = await openSocket(port);
      return { watch: closed(socket), stop: () => {}, socket };
    }));
    const idle = await openSocket(port);
    const idleWatch = closed(idle);
    idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    slow.push(...silent, { watch: idleWatch, stop: () => {}, socket: idle });
    // While they drip, the server answers others.
    expect((await fetch(`${s!.server.url}/healthz`)).status).toBe(200);
    const all = Promise.all(slow.map((d) => d.watch.done));
    const bound = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000));
    const outcome = await Promise.race([all.then(() => 'closed' as const), bound]);
    for (const d of slow) {
      d.stop();
      d.socket.destroy();
    }
    expect(outcome).toBe('closed');
    expect(statusOf(idleWatch.received())).toBe(200); // answered, then closed when idle
    // Node's defaults (60 s headers, 300 s request, checked every 30 s) kept them past 75 s.
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await fetch(`${s!.server.url}/healthz`)).status).toBe(200);
  });
});

describe('the connection cap', () => {
  let s: Started | undefined;
  beforeAll(async () => {
    s = await start({ COUNTERSIGN_MAX_CONNECTIONS: '5', COUNTERSIGN_HEADERS_TIMEOUT_MS: '20000' });
  });
  afterAll(() => stop(s));

  it('refuses connections past maxConnections and serves again once they close', async () => {
    const held = await Promise.all(Array.from({ length: 5 }, () => openSocket(s!.port)));
    await new Promise((r) => setTimeout(r, 200));
    const extra = await openSocket(s!.port);
    const watch = closed(extra);
    extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const outcome = await Promise.race([watch.done.then(() => 'closed'), new Promise((r) => setTimeout(() => r('open'), 5_000))]);
    expect(outcome).toBe('closed');
    expect(watch.received()).toBe(''); // dropped, never answered
    for (const socket of held) socket.destroy();
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = await fetch(`${s!.server.url}/healthz`).then((r) => r.status).catch(() => 0);
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });
});

describe('bounded waiting: long-polls and event streams per credential and in all (point 14)', () => {
  let s: Started | undefined;
  let requestId: string;
  let otherAgent: string;
  let otherRequest: string;
  beforeAll(async () => {
    s = await start({ COUNTERSIGN_MAX_WAITS_PER_PRINCIPAL: '3', COUNTERSIGN_MAX_WAITS: '5' });
    requestId = (await call<{ id: string }>(s, s.agent, '/v1/requests', QUEUED)).body.id;
    otherAgent = (await call<{ key: string }>(s, s.admin, '/v1/keys', { agent: 'other-bot' })).body.key;
    otherRequest = (await call<{ id: string }>(s, otherAgent, '/v1/requests', QUEUED)).body.id;
  });
  afterAll(() => stop(s));

  /** Opens a long-poll and resolves when its headers arrive (429) or never (held open); abort to end it. */
  function longPoll(token: string, path = `/v1/requests/${requestId}?waitSeconds=60`) {
    const controller = new AbortController();
    const response = fetch(`${s!.server.url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal }).catch(() => undefined);
    return { response, abort: () => controller.abort() };
  }

  async function settled<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
    return Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
  }

  it('refuses the 4th wait of one agent with 429 RATE_LIMITED and retryAfter, streams included; the cap is per process total too; slots come back when clients leave', async () => {
    const mine = [longPoll(s!.agent), longPoll(s!.agent), longPoll(s!.agent, `/v1/requests/${requestId}/events`)];
    // The third is an event stream: its headers come at once.
    await new Promise((r) => setTimeout(r, 500));
    expect(await settled(mine[0]!.response, 10)).toBe('pending');

    const fourth = await fetch(`${s!.server.url}/v1/requests/${requestId}?waitSeconds=60`, { headers: { authorization: `Bearer ${s!.agent}` } });
    expect(fourth.status).toBe(429);
    expect(Number(fourth.headers.get('retry-after'))).toBeGreaterThan(0);
    const refused = (await fourth.json()) as { error: { code: string; details: { retryAfter: number; limit: string } } };
    expect(refused.error.code).toBe('RATE_LIMITED');
    expect(refused.error.details).toMatchObject({ limit: 'waits_per_principal', max: 3 });
    expect(refused.error.details.retryAfter).toBeGreaterThan(0);
    const stream = await fetch(`${s!.server.url}/v1/requests/${requestId}/events`, { headers: { authorization: `Bearer ${s!.agent}` } });
    expect(stream.status).toBe(429);

    // A plain read is not a wait and is never refused.
    expect((await call(s!, s!.agent, `/v1/requests/${requestId}`)).status).toBe(200);

    // Another agent still gets in, up to the server's total of 5, and the operator's /v1/events counts too.
    const theirs = [longPoll(otherAgent, `/v1/requests/${otherRequest}?waitSeconds=60`)];
    const feed = longPoll(s!.admin, '/v1/events');
    await new Promise((r) => setTimeout(r, 500));
    const full = await fetch(`${s!.server.url}/v1/requests/${otherRequest}?waitSeconds=60`, { headers: { authorization: `Bearer ${otherAgent}` } });
    expect(full.status).toBe(429);
    expect(((await full.json()) as { error: { details: { limit: string } } }).error.details.limit).toBe('waits_total');

    // Clients that go away give their slots back (no leak): the first agent can wait again.
    for (const w of [...mine, ...theirs, feed]) w.abort();
    const deadline = Date.now() + 10_000;
    let again: { response: Promise<Response | undefined>; abort: () => void } | undefined;
    let status: number | 'pending' = 429;
    while (Date.now() < deadline) {
      again = longPoll(s!.agent);
      const r = await settled(again.response, 300);
      status = r === 'pending' ? 'pending' : (r?.status ?? 0);
      if (status === 'pending') break;
      await new Promise((r2) => setTimeout(r2, 200));
    }
    expect(status).toBe('pending'); // held open: admitted
    again?.abort();
  });

  it('a long-poll that is answered gives its slot back', async () => {
    for (let i = 0; i < 8; i++) {
      const res = await call<{ status: string }>(s!, s!.agent, `/v1/requests/${requestId}?waitSeconds=1`);
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('pending');
    }
  });
});

describe('transport settings (config.ts)', () => {
  it('resolves flag > COUNTERSIGN_* > file > default, and names a wrong value', () => {
    expect(resolveTransportConfig({}, {}, {})).toMatchObject({ maxBodyBytes: MiB, maxConnections: 1000, headersTimeoutMs: 10_000, waitsPerPrincipal: 64, waitsTotal: 800 });
    expect(resolveTransportConfig({ maxConnections: 7 }, { COUNTERSIGN_MAX_CONNECTIONS: '9' }, { maxConnections: 11 }).maxConnections).toBe(7);
    expect(resolveTransportConfig({}, { COUNTERSIGN_MAX_CONNECTIONS: '9' }, { maxConnections: 11 }).maxConnections).toBe(9);
    expect(resolveTransportConfig({}, {}, { maxConnections: 11 }).maxConnections).toBe(11);
    for (const [name, value] of [
      ['COUNTERSIGN_MAX_BODY_BYTES', '1e9'],
      ['COUNTERSIGN_MAX_CONNECTIONS', '0'],
      ['COUNTERSIGN_HEADERS_TIMEOUT_MS', 'soon'],
      ['COUNTERSIGN_MAX_WAITS', '-1'],
      ['COUNTERSIGN_KEEPALIVE_TIMEOUT_MS', '1.5'],
    ] as const) {
      expect(() => resolveTransportConfig({}, { [name]: value })).toThrow(name);
    }
    expect(() => resolveTransportConfig({}, { COUNTERSIGN_HEADERS_TIMEOUT_MS: '40000', COUNTERSIGN_REQUEST_TIMEOUT_MS: '30000' })).toThrow('must not exceed');
    expect(() => resolveTransportConfig({}, { COUNTERSIGN_MAX_WAITS_PER_PRINCIPAL: '10', COUNTERSIGN_MAX_WAITS: '5' })).toThrow('must not exceed');
  });

  it('a smaller COUNTERSIGN_MAX_BODY_BYTES holds on the API', async () => {
    const s = await start({ COUNTERSIGN_MAX_BODY_BYTES: '2048' });
    try {
      const res = await call(s, s.agent, '/v1/requests', { ...QUEUED, description: 'x'.repeat(4096) });
      expect(res.status).toBe(413);
      expect(res.body.error.code).toBe('BODY_TOO_LARGE');
    } finally {
      await stop(s);
    }
  });
});

describe('a port already in use (issue 11 point 10)', () => {
  it('is ADDRESS_IN_USE with a hint, from startServer and from the CLI, not INTERNAL', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const database = sqliteDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'countersign-port-'));
    try {
      const config = resolveServerConfig({ database: database.url, port }, {}, dir);
      const err = await startServer(config, () => {}).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(CountersignError);
      expect((err as CountersignError).code).toBe('ADDRESS_IN_USE');
      expect((err as CountersignError).message).toContain(`127.0.0.1:${port}`);
      expect(JSON.stringify((err as CountersignError).details)).toContain('--port');

      const run = await runCli(['serve', '--port', String(port), '--database', database.url], { COUNTERSIGN_POLICY: '' }, dir);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('error ADDRESS_IN_USE');
      expect(run.stderr).toContain('hint:');
      expect(run.stderr).not.toContain('INTERNAL');
    } finally {
      blocker.close();
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * `countersign-mcp serve`: Countersign's own tools over MCP, against a real Countersign server,
 * in memory and as the real process over Streamable HTTP (with its authentication and Origin
 * checks).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Countersign } from '@countersign/client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCountersignServer } from '../src/index.ts';
import { api, getRequest, pending, review, startCountersign, type TestCountersign } from './support/countersign.ts';

const BIN = fileURLToPath(new URL('../bin/countersign-mcp.js', import.meta.url));
let cs: TestCountersign;
let auditorToken: string;

beforeAll(async () => {
  cs = await startCountersign();
  const created = await api<{ token: string }>(cs, '/v1/operators', { body: { name: 'mcp-auditor', roles: ['auditor'] } });
  expect(created.status).toBe(201);
  auditorToken = created.body.token;
}, 60_000);
afterAll(async () => {
  await cs?.stop();
});

async function connect(operatorToken?: string): Promise<Client> {
  const server = createCountersignServer({
    countersign: new Countersign({ url: cs.url, apiKey: cs.agentKey }),
    url: cs.url,
    agentKey: cs.agentKey,
    operatorToken,
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(a);
  const client = new Client({ name: 'agent', version: '1.0.0' });
  await client.connect(b);
  return client;
}

const call = (client: Client, name: string, args: Record<string, unknown>) =>
  client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 }) as Promise<CallToolResult>;
const text = (r: CallToolResult) => (r.content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('');

describe('countersign-mcp serve tools', () => {
  let client: Client;
  beforeAll(async () => {
    client = await connect();
  });

  it('lists the five tools, each with an output schema and annotations', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      'countersign_check_status',
      'countersign_check_velocity',
      'countersign_cooldown_status',
      'countersign_detect_slicing',
      'countersign_request_approval',
    ]);
    for (const tool of tools) {
      expect(tool.outputSchema, tool.name).toBeDefined();
      expect(tool.annotations, tool.name).toMatchObject({ openWorldHint: true });
    }
    expect(tools.find((t) => t.name === 'countersign_check_status')!.annotations).toMatchObject({ readOnlyHint: true });
    const schema = tools.find((t) => t.name === 'countersign_request_approval')!.inputSchema as { properties: Record<string, { maximum?: number }> };
    expect(schema.properties.waitSeconds!.maximum).toBe(50);
  });

  it('request_approval: pending is a normal answer, not an error; check_status long-polls until the decision', async () => {
    const result = await call(client, 'countersign_request_approval', { action: 'delete_file', args: { path: '/tmp/serve-a' }, waitSeconds: 1 });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ status: 'pending', decided: false, action: 'delete_file' });
    const requestId = (result.structuredContent as { requestId: string }).requestId;

    const started = Date.now();
    const waiting = call(client, 'countersign_check_status', { requestId, waitSeconds: 30 });
    await new Promise((r) => setTimeout(r, 500));
    await review(cs, requestId, { verdict: 'approve', args: { path: '/tmp/serve-a-only' } });
    const status = await waiting;
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(status.structuredContent).toMatchObject({
      requestId,
      status: 'approved',
      outcome: 'approved',
      approvedAction: 'delete_file',
      approvedArgs: { path: '/tmp/serve-a-only' },
      modified: true,
      receiptVerified: true,
    });
  });

  it('request_approval waits inside the call (waitSeconds) and reports a rejection with its reason', async () => {
    const running = call(client, 'countersign_request_approval', { action: 'delete_file', args: { path: '/tmp/serve-b' }, waitSeconds: 30, idempotencyKey: 'serve-b' });
    const [request] = await pending(cs, 'delete_file', (r) => r.args.path === '/tmp/serve-b');
    await review(cs, request!.id, { verdict: 'reject', reason: 'keep it' });
    const result = await running;
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ status: 'rejected', outcome: 'rejected', reason: 'keep it', approvedArgs: null });
    // The idempotency key returns the same request.
    const again = await call(client, 'countersign_request_approval', { action: 'delete_file', args: { path: '/tmp/serve-b' }, idempotencyKey: 'serve-b' });
    expect((again.structuredContent as { requestId: string }).requestId).toBe(request!.id);
  });

  it('refuses waitSeconds over 50 and bad requests with a clear error, filing nothing', async () => {
    const tooLong = await call(client, 'countersign_request_approval', { action: 'delete_file', args: { path: '/tmp/serve-c' }, waitSeconds: 51 });
    expect(tooLong.isError).toBe(true);
    const reserved = await call(client, 'countersign_request_approval', { action: 'countersign.aggregate', args: {} });
    expect(reserved.isError).toBe(true);
    expect(text(reserved)).toContain('VALIDATION_FAILED');
    const { body } = await api<{ items: Array<{ args: { path?: string } }> }>(cs, '/v1/requests?limit=500');
    expect(body.items.filter((r) => r.args.path === '/tmp/serve-c')).toHaveLength(0);
  });

  it('check_status of a request that is not this agent\'s is NOT_FOUND', async () => {
    // An operator proposes one (operators act as agent operator:<name>): not this agent's.
    const other = await api<{ id: string }>(cs, '/v1/requests', { body: { action: 'delete_file', args: { path: '/tmp/not-yours' } } });
    expect(other.status).toBe(201);
    const result = await call(client, 'countersign_check_status', { requestId: other.body.id, waitSeconds: 0 });
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('NOT_FOUND');
  });

  it('velocity, cool-down and slicing say plainly that an agent key cannot read them', async () => {
    for (const [name, args] of [
      ['countersign_check_velocity', { approver: 'admin' }],
      ['countersign_cooldown_status', { approver: 'admin' }],
      ['countersign_detect_slicing', {}],
    ] as const) {
      const result = await call(client, name, args);
      expect(result.isError, name).toBe(true);
      expect(text(result), name).toContain('COUNTERSIGN_TOKEN');
    }
  });

  it('with an auditor token they answer from the server', async () => {
    const audited = await connect(auditorToken);
    const velocity = await call(audited, 'countersign_check_velocity', { approver: 'admin' });
    expect(velocity.isError).toBeFalsy();
    expect(velocity.structuredContent).toMatchObject({ result: expect.objectContaining({}) });
    const cooldown = await call(audited, 'countersign_cooldown_status', { approver: 'admin' });
    expect(cooldown.structuredContent).toMatchObject({ result: { active: false } });
    const slicing = await call(audited, 'countersign_detect_slicing', { windowMinutes: 60 });
    expect(slicing.isError).toBeFalsy();
    expect(slicing.structuredContent).toMatchObject({ result: { attackDetected: expect.any(Boolean) } });
  });
});

describe('countersign-mcp serve --http', () => {
  const TOKEN = 'test-listener-token-0123456789abcdef';
  let child: ChildProcess;
  let url: string;

  beforeAll(async () => {
    const clean: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) clean[k] = v;
    child = spawn(process.execPath, [BIN, 'serve', '--http', '0', '--json'], {
      env: { ...clean, COUNTERSIGN_URL: cs.url, COUNTERSIGN_AGENT_KEY: cs.agentKey, COUNTERSIGN_MCP_TOKEN: TOKEN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    url = (JSON.parse(line) as { url: string }).url;
  }, 60_000);
  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  const raw = (headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const target = new URL(url);
      const req = httpRequest(
        { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }));
    });

  it('binds loopback', () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  });

  it('refuses a missing or wrong token, a foreign Origin, and a foreign Host (DNS rebinding)', async () => {
    expect(await raw({})).toBe(401);
    expect(await raw({ authorization: 'Bearer wrong-token-wrong-token-wrong' })).toBe(401);
    expect(await raw({ authorization: `Bearer ${TOKEN}`, origin: 'https://evil.example' })).toBe(403);
    expect(await raw({ authorization: `Bearer ${TOKEN}`, host: 'evil.example:80' })).toBe(403);
    expect(await raw({ authorization: `Bearer ${TOKEN}` })).toBe(200);
  });

  it('serves the tools to an authenticated MCP client', async () => {
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
    const result = (await client.callTool({ name: 'countersign_request_approval', arguments: { action: 'delete_file', args: { path: '/tmp/http-serve' } } })) as CallToolResult;
    expect(result.structuredContent).toMatchObject({ status: 'pending' });
    const requestId = (result.structuredContent as { requestId: string }).requestId;
    expect((await getRequest(cs, requestId)).args).toEqual({ path: '/tmp/http-serve' });
    await client.close();
  });
});

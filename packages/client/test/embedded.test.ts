/** The same SDK over the embedded engine (loaded at runtime from @countersign/server). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedGateway as ServerEmbeddedGateway } from '@countersign/server';
import { Countersign, CountersignError, type ApprovalRequest } from '../src/index.ts';

let cs: Countersign;
let gateway: ServerEmbeddedGateway;

beforeAll(async () => {
  const client = await Countersign.embedded({ env: {}, database: 'sqlite::memory:', decisionTimeoutMs: 10_000 });
  cs = client;
  gateway = client.gateway as unknown as ServerEmbeddedGateway;
}, 30_000);

afterAll(async () => {
  await cs?.close();
});

/** An operator's view of the queue, through the engine. */
async function nextPending(g: ServerEmbeddedGateway, host: string, timeoutMs = 5_000): Promise<ApprovalRequest> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { items } = await g.engine.listRequests(g.admin, { status: 'pending', limit: 500 });
    const found = items.find((r) => r.args.host === host);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no pending request for ${host}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function caught(promise: Promise<unknown>): Promise<CountersignError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CountersignError);
    return err as CountersignError;
  }
  throw new Error('expected a CountersignError');
}

describe('embedded mode', () => {
  it('exposes the engine, its admin and its agent', () => {
    expect(gateway.agent).toMatchObject({ kind: 'agent', agentName: 'embedded-agent' });
    expect(gateway.admin).toMatchObject({ kind: 'operator', roles: ['admin'] });
    expect(typeof gateway.engine.review).toBe('function');
  });

  it('auto-approves by policy, like the server', async () => {
    const handle = await cs.requestApproval({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } });
    expect(handle.status).toBe('approved');
    expect(await handle.decision()).toMatchObject({ outcome: 'approved', decidedBy: 'policy' });
  });

  it('guard(): the reviewer modifies the args through the engine; fn runs with them; execution is recorded', async () => {
    const calls: Array<{ host: string }> = [];
    const isolate = cs.guard(
      async (args: { host: string }) => {
        calls.push(args);
        return { isolated: args.host };
      },
      { action: 'isolate_host', confidence: 0.82 },
    );
    const running = isolate({ host: 'emb-1' });
    const pending = await nextPending(gateway, 'emb-1');
    await gateway.engine.review(gateway.admin, pending.id, { verdict: 'approve', args: { host: 'emb-2' } });
    expect(await running).toEqual({ isolated: 'emb-2' });
    expect(calls).toEqual([{ host: 'emb-2' }]);
    const after = await gateway.engine.getRequest(gateway.admin, pending.id);
    expect(after.status).toBe('executed');
    expect(after.execution).toMatchObject({ status: 'succeeded', result: { isolated: 'emb-2' } });
  });

  it('guard(): an alternative, a rejection and a failure behave as over HTTP', async () => {
    const ran: string[] = [];
    const isolate = cs.guard(
      async (args: { host: string }) => {
        if (args.host === 'emb-boom') throw new Error('agent offline');
        ran.push(`isolate ${args.host}`);
        return 'isolated';
      },
      {
        action: 'isolate_host',
        confidence: 0.82,
        alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: '/tmp/x' }, run: async () => (ran.push('quarantine'), 'quarantined') }],
      },
    );

    const alt = isolate({ host: 'emb-alt' });
    await gateway.review((await nextPending(gateway, 'emb-alt')).id, { verdict: 'approve', alternative: 'quarantine' });
    expect(await alt).toBe('quarantined');

    const rejected = caught(isolate({ host: 'emb-rej' }));
    await gateway.review((await nextPending(gateway, 'emb-rej')).id, { verdict: 'reject', reason: 'wrong host' });
    const err = await rejected;
    expect(err.code).toBe('APPROVAL_REJECTED');
    expect(err.message).toContain('wrong host');

    const failing = isolate({ host: 'emb-boom' }).catch((e: unknown) => e);
    const boomId = (await nextPending(gateway, 'emb-boom')).id;
    await gateway.review(boomId, { verdict: 'approve' });
    expect(((await failing) as Error).message).toBe('agent offline');
    expect((await gateway.engine.getRequest(gateway.admin, boomId)).status).toBe('execution_failed');
    expect(ran).toEqual(['quarantine']);
  });

  it('decision() wakes on the engine commit; events() yields pending then approved', async () => {
    const handle = await cs.requestApproval({ action: 'isolate_host', args: { host: 'emb-wait' }, confidence: 0.82 });
    let wokeAt = 0;
    const waiting = handle.decision().then((d) => ((wokeAt = performance.now()), d));
    await new Promise((r) => setTimeout(r, 100));
    await gateway.review(handle.id, { verdict: 'approve' });
    const reviewedAt = performance.now();
    expect((await waiting).outcome).toBe('approved');
    console.log(`[wake-up latency, embedded] ${(wokeAt - reviewedAt).toFixed(2)} ms after review() returned`);
    expect(wokeAt - reviewedAt).toBeLessThan(1000);

    const second = await cs.requestApproval({ action: 'isolate_host', args: { host: 'emb-events' }, confidence: 0.82 });
    const statuses: string[] = [];
    for await (const state of second.events()) {
      statuses.push(state.status);
      if (state.status === 'pending') await gateway.review(second.id, { verdict: 'approve' });
      else break;
    }
    expect(statuses).toEqual(['pending', 'approved']);
  });

  it('validates bodies and keeps error codes', async () => {
    expect((await caught(cs.requestApproval({ action: 'not an action' }))).code).toBe('VALIDATION_FAILED');
    expect((await caught(cs.handle('req_00000000000000000000000000'))).code).toBe('NOT_FOUND');
    const handle = await cs.requestApproval({ action: 'isolate_host', args: { host: 'emb-cancel' }, confidence: 0.82 });
    await handle.cancel('not needed');
    expect((await caught(handle.decision())).code).toBe('APPROVAL_CANCELLED');
    expect((await caught(handle.reportExecution({ status: 'succeeded' }))).code).toBe('ALREADY_DECIDED');
    const reviewer = await gateway.operator('rita', ['reviewer']);
    const other = await cs.requestApproval({ action: 'isolate_host', args: { host: 'emb-rita' }, confidence: 0.82 });
    await gateway.review(other.id, { verdict: 'approve' }, reviewer);
    expect((await other.decision()).deciders.map((d) => d.name)).toEqual(['rita']);
  });
});

describe('embedded mode options', () => {
  it('a request past its timeoutSeconds expires: APPROVAL_EXPIRED', async () => {
    const handle = await cs.requestApproval({ action: 'isolate_host', args: { host: 'emb-expire' }, confidence: 0.82, timeoutSeconds: 1 });
    const err = await caught(handle.decision({ timeoutMs: 8_000 }));
    expect(err.code).toBe('APPROVAL_EXPIRED');
    expect(handle.status).toBe('expired');
  }, 10_000);

  it('uses the given policy text, and refuses an invalid one', async () => {
    const strict = await Countersign.embedded({ env: {}, policy: 'requireApproval: [block_ip]\n', agent: 'strict-agent' });
    try {
      const handle = await strict.requestApproval({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } });
      expect(handle.status).toBe('pending');
      expect(handle.request.agentName).toBe('strict-agent');
    } finally {
      await strict.close();
    }
    const err = await caught(Countersign.embedded({ env: {}, policy: 'automation: { ful: 0.9 }\n' }));
    expect(err.code).toBe('POLICY_INVALID');
  });
});

describe('embedded mode on a file', () => {
  it('keeps a request across close and reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cs-embedded-'));
    const database = `sqlite:${join(dir, 'agent.db')}`;
    try {
      const first = await Countersign.embedded({ env: {}, database, agent: 'file-agent' });
      const handle = await first.requestApproval({ action: 'isolate_host', args: { host: 'emb-file' }, confidence: 0.82 });
      expect(handle.status).toBe('pending');
      await first.close();

      const second = await Countersign.embedded({ env: {}, database, agent: 'file-agent' });
      try {
        const again = await second.handle(handle.id);
        expect(again.status).toBe('pending');
        expect(again.request.args).toEqual({ host: 'emb-file' });
        const g = second.gateway as unknown as ServerEmbeddedGateway;
        expect(g.admin.roles).toContain('admin');
        const waiting = again.decision({ timeoutMs: 5_000 });
        await g.review(handle.id, { verdict: 'approve' });
        expect((await waiting).outcome).toBe('approved');
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

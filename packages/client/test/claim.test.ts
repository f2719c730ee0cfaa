/**
 * The SDK claims before it runs anything (issue 12): guard() and handle.run() claim the approval
 * once with its receipt, and a refused claim (a replay, an expired receipt) never runs the
 * function. Against a real `countersign serve` process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalRequest } from '@countersign/core';
import { Countersign, CountersignError } from '../src/index.ts';
import { api, startServer, type TestServer } from './support/server.ts';

const AUTO = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } };

describe('the SDK claims before it runs', () => {
  let server: TestServer;
  let cs: Countersign;
  beforeAll(async () => {
    server = await startServer();
    cs = new Countersign({ env: {}, url: server.url, apiKey: server.agentKey, onReportError: () => {} });
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('guard(): the approval is already claimed (executing) when the function runs, and executed after', async () => {
    let seen: string | undefined;
    let id: string | undefined;
    const block = cs.guard(
      async (args: { ip: string }) => {
        const queue = await api<{ items: ApprovalRequest[] }>(server, '/v1/requests?limit=5');
        const mine = queue.body.items.find((r) => r.args.ip === args.ip)!;
        id = mine.id;
        seen = mine.status;
        return 'blocked';
      },
      { action: 'block_ip', confidence: 0.97, context: { threatScore: 0.95 } },
    );
    expect(await block({ ip: '203.0.113.20' })).toBe('blocked');
    expect(seen).toBe('executing');
    expect((await api<ApprovalRequest>(server, `/v1/requests/${id}`)).body.status).toBe('executed');
    const trail = (await api<{ items: Array<{ type: string }> }>(server, `/v1/requests/${id}/audit`)).body.items.map((e) => e.type);
    expect(trail).toEqual(['created', 'approved', 'execution_started', 'executed']);
  });

  it('replay: an approval claimed elsewhere first (another process with the receipt) is ALREADY_EXECUTED, and the function never runs', async () => {
    const handle = await cs.requestApproval({ ...AUTO, args: { ip: '203.0.113.21' } });
    const decision = await handle.decision();
    // Someone else (a copy of the agent, a replaying attacker with the receipt) claims it first.
    const thief = await api(server, `/v1/requests/${handle.id}/execution`, { token: server.agentKey, body: { status: 'started', receipt: decision.receipt } });
    expect(thief.status).toBe(200);
    let ran = false;
    const err = await handle
      .run(async () => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect((err as CountersignError).code).toBe('ALREADY_EXECUTED');
    expect(ran).toBe(false);
  });

  it('guard() with an idempotency key: a retry after the run is ALREADY_DECIDED, and runs nothing', async () => {
    let runs = 0;
    const block = cs.guard(
      async () => {
        runs++;
        return 'ok';
      },
      { action: 'block_ip', confidence: 0.97, context: { threatScore: 0.95 }, idempotencyKey: () => `claim-idem-${server.url}` },
    );
    expect(await block({ ip: '203.0.113.22' })).toBe('ok');
    const retry = await block({ ip: '203.0.113.22' }).catch((e: unknown) => e);
    expect((retry as CountersignError).code).toBe('ALREADY_DECIDED');
    expect(runs).toBe(1);
  });

  it('handle.run(): waits, checks, claims, runs and reports in one call', async () => {
    const handle = await cs.requestApproval({ ...AUTO, args: { ip: '203.0.113.23' } });
    const out = await handle.run(async (d) => `ran ${String(d.args?.ip)}`);
    expect(out).toBe('ran 203.0.113.23');
    expect(handle.status).toBe('executed');
    const failing = await cs.requestApproval({ ...AUTO, args: { ip: '203.0.113.24' } });
    await expect(failing.run(async () => Promise.reject(new Error('EDR 503')))).rejects.toThrow('EDR 503');
    expect(failing.status).toBe('execution_failed');
  });
});

describe('an expired approval is never run', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ policy: 'levels:\n  low: { approvalValidFor: 1s }\n  medium: { approvalValidFor: 1s }\n' });
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('a guarded call that reaches its claim after approvalValidFor gets RECEIPT_EXPIRED and does not run', async () => {
    const cs = new Countersign({ env: {}, url: server.url, apiKey: server.agentKey, onReportError: () => {} });
    const handle = await cs.requestApproval(AUTO);
    const decision = await handle.decision();
    expect(decision.receipt?.version).toBe(2);
    await new Promise((r) => setTimeout(r, Date.parse(decision.receipt!.expiresAt!) - Date.now() + 200));
    let ran = false;
    const err = await handle
      .run(async () => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect((err as CountersignError).code).toBe('RECEIPT_EXPIRED');
    expect(ran).toBe(false);
    expect(handle.status).toBe('approved');
  });
});

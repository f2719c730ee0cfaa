/**
 * Red-team review of issue 12's claim contract (branch review-claim): SDK paths that skip the
 * claim or fail open. Each test states what must hold and fails on claim cf4ebf6.
 */
import { describe, expect, it } from 'vitest';
import type { AgentGateway, ApprovalRequest, ExecutionBody } from '@countersign/core';
import { countersignCanUseTool, Countersign, CountersignError } from '../src/index.ts';
import { CountersignDouble, approve } from '../src/testing.ts';

const opts = (toolUseID: string) => ({ signal: new AbortController().signal, toolUseID });

describe('review: countersignCanUseTool (Claude Agent SDK) must claim before it allows', () => {
  it('the same tool use asked twice (the SDK re-asks / a resumed session) is allowed only once', async () => {
    const double = await CountersignDouble.create();
    double.decide('Bash', approve({ byPolicy: true }));
    const canUseTool = countersignCanUseTool(double.client());
    const first = await canUseTool('Bash', { command: 'rm -rf /srv/old' }, opts('toolu_1'));
    expect(first.behavior).toBe('allow');
    const second = await canUseTool('Bash', { command: 'rm -rf /srv/old' }, opts('toolu_1'));
    // One approval, one run: the second answer must be deny (ALREADY_EXECUTED at the claim).
    expect(second.behavior).toBe('deny');
    expect(double.claims).toHaveLength(1);
  });

  it('an approval past approvalValidFor is never allowed (RECEIPT_EXPIRED)', async () => {
    const double = await CountersignDouble.create({ approvalValidForMs: 1_000 });
    double.decide('Bash', approve({ byPolicy: true }));
    const cs = double.client();
    // Approved now (idempotency key from the tool use id), asked again after the validity.
    const old = await cs.requestApproval({ action: 'Bash', args: { command: 'deploy' }, idempotencyKey: 'claude-agent-sdk:toolu_2' });
    double.advance(2 * 60 * 60 * 1000);
    // The lapsed approval itself cannot be claimed …
    expect(((await old.claim(old.request.decision!).catch((e: unknown) => e)) as CountersignError).code).toBe('RECEIPT_EXPIRED');
    // … so the tool use is allowed only on a fresh approval filed under its key (finding 8), claimed once.
    const late = await countersignCanUseTool(cs)('Bash', { command: 'deploy' }, opts('toolu_2'));
    expect(late.behavior).toBe('allow');
    expect(double.claims).toHaveLength(1);
    expect(double.claims[0]).not.toBe(old.id);
  });
});

describe('review: handle.claim() must not treat any 2xx answer as a claim', () => {
  it('a gateway that answers the claim with the request still `approved` does not get the function run', async () => {
    const double = await CountersignDouble.create();
    double.decide('block_ip', approve({ byPolicy: true }));
    // A non-conforming gateway (an old proxy, a buggy embedded adapter, a MITM replaying the
    // last GET): it answers 200 with the current state instead of claiming.
    const lax: AgentGateway = new Proxy(double as unknown as AgentGateway, {
      get(target, prop, receiver) {
        if (prop === 'reportExecution') {
          return async (id: string, body: ExecutionBody): Promise<ApprovalRequest> =>
            body.status === 'started' ? target.getRequest(id) : target.reportExecution(id, body);
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const cs = new Countersign({ gateway: lax, auditPublicKey: double.auditPublicKeyPem, onReportError: () => {} } as never);
    let ran = 0;
    const block = cs.guard(async () => void ran++, { action: 'block_ip' });
    const err = await block({ ip: '203.0.113.9' }).catch((e: unknown) => e);
    expect(ran).toBe(0);
    expect(err).toBeInstanceOf(CountersignError);
  });
});

describe('review: an expired approval under an idempotency key can be filed anew (finding 8)', () => {
  it('guard() with a deterministic key (every adapter uses one per tool call) reaches a fresh approval once the old one lapsed', async () => {
    const double = await CountersignDouble.create({ approvalValidForMs: 1_000 });
    double.decide('block_ip', approve({ byPolicy: true }));
    const cs = double.client({ onReportError: () => {} });
    const old = await cs.requestApproval({ action: 'block_ip', args: { ip: '203.0.113.5' }, idempotencyKey: 'call-1' });
    double.advance(10_000);
    let ran = 0;
    const block = cs.guard(async () => void ran++, { action: 'block_ip', idempotencyKey: () => 'call-1' });
    // The lapsed approval is never run; the key files a new request, which is claimed and run once.
    expect(await block({ ip: '203.0.113.5' }).catch((e: unknown) => e)).not.toBeInstanceOf(CountersignError);
    expect(ran).toBe(1);
    expect(double.claims).toHaveLength(1);
    expect(double.claims[0]).not.toBe(old.id);
    // The claimed one is not lapsed: the same key now replays it, and the claim is ALREADY_EXECUTED.
    expect(((await block({ ip: '203.0.113.5' }).catch((e: unknown) => e)) as CountersignError).code).toMatch(/^ALREADY_(EXECUTED|DECIDED)$/);
    expect(ran).toBe(1);
  });
});

describe('red team: a claim answered with another request or a closed status is not a claim', () => {
  const laxWith = (double: CountersignDouble, answer: (real: ApprovalRequest) => ApprovalRequest) =>
    new Proxy(double as unknown as AgentGateway, {
      get(target, prop, receiver) {
        if (prop === 'reportExecution') {
          return async (id: string, body: ExecutionBody): Promise<ApprovalRequest> => {
            const real = await target.reportExecution(id, body);
            return body.status === 'started' ? answer(real) : real;
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  it.each([
    ['another request id', (r: ApprovalRequest) => ({ ...r, id: 'req_other' })],
    ['status executed', (r: ApprovalRequest) => ({ ...r, status: 'executed' as const })],
  ])('%s: handle.run() does not call the function', async (_name, answer) => {
    const double = await CountersignDouble.create();
    double.decide('block_ip', approve({ byPolicy: true }));
    const cs = new Countersign({ gateway: laxWith(double, answer), auditPublicKey: double.auditPublicKeyPem, onReportError: () => {} } as never);
    const handle = await cs.requestApproval({ action: 'block_ip', args: { ip: '203.0.113.7' } });
    let ran = 0;
    const err = await handle.run(async () => void ran++).catch((e: unknown) => e);
    expect(ran).toBe(0);
    expect((err as CountersignError).code).toBe('RECEIPT_MISMATCH');
  });
});

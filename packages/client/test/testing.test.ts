/**
 * The scripted test double, through the package's public subpath, used as an agent developer
 * would: a real Countersign and guard() over it, decisions scripted, receipts really checked.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Countersign, CountersignError } from '@countersign/client';
import {
  CountersignDouble,
  approve,
  chooseAlternative,
  expire,
  forgedApproval,
  modify,
  reject,
  timeOut,
} from '@countersign/client/testing';

let double: CountersignDouble;
let cs: Countersign<CountersignDouble>;
let ran: Array<{ fn: string; args: unknown }>;

beforeEach(async () => {
  double = await CountersignDouble.create();
  cs = double.client({ decisionTimeoutMs: 2_000 });
  ran = [];
});
afterEach(() => double.close());

const isolate = () =>
  cs.guard(
    async (args: { host: string; mode?: string }) => {
      ran.push({ fn: 'isolate', args });
      return `isolated ${args.host}`;
    },
    {
      action: 'isolate_host',
      alternatives: [
        {
          name: 'quarantine',
          action: 'quarantine_file',
          args: ({ host }) => ({ host, path: '/tmp/x' }),
          run: async (args) => {
            ran.push({ fn: 'quarantine', args });
            return 'quarantined';
          },
        },
      ],
    },
  );

async function failure(promise: Promise<unknown>): Promise<CountersignError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CountersignError);
  return err as CountersignError;
}

describe('a scripted double behind the real client', () => {
  it('approve: runs as asked, waits through pending, and records the execution', async () => {
    double.decide('isolate_host', approve({ afterMs: 30 }));
    expect(await isolate()({ host: 'ws-1' })).toBe('isolated ws-1');
    expect(ran).toEqual([{ fn: 'isolate', args: { host: 'ws-1' } }]);
    expect(double.executions).toMatchObject([{ action: 'isolate_host', status: 'succeeded', result: 'isolated ws-1' }]);
    expect(double.requests[0]!.status).toBe('executed');
    expect(double.requests[0]!.decision!.receipt!.keyId).toBe(double.keyId);
  });

  it('claims as a server does: once with a version 2 receipt; a replay is ALREADY_EXECUTED, an expired approval RECEIPT_EXPIRED, and neither runs', async () => {
    double.decide('isolate_host', approve());
    expect(await isolate()({ host: 'ws-c1' })).toBe('isolated ws-c1');
    const first = double.requests[0]!;
    expect(double.claims).toEqual([first.id]);
    expect(first.decision!.receipt).toMatchObject({ version: 2, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) });
    const handle = await cs.handle(first.id);
    await expect(handle.claim(first.decision!)).rejects.toMatchObject({ code: 'ALREADY_EXECUTED' });

    const late = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-c2' } });
    const decision = await late.decision();
    double.advance(60 * 60 * 1000);
    let ran2 = false;
    const err = await failure(late.run(async () => (ran2 = true)));
    expect(err.code).toBe('RECEIPT_EXPIRED');
    expect(ran2).toBe(false);
    // Another request's receipt, or this one's edited, claims nothing.
    const third = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-c3' } });
    await third.decision();
    await expect(third.claim(decision)).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    await expect(third.claim({ ...third.request.decision!, receipt: { ...third.request.decision!.receipt!, nonce: 'f'.repeat(32) } })).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    await expect(third.reportExecution({ status: 'succeeded' })).rejects.toMatchObject({ code: 'ILLEGAL_TRANSITION' }); // claim first
    expect(double.claims).toEqual([first.id]);
  });

  it('advance(validFor) expires an approval even when the double\'s clock ran ahead of the wall clock (many readings in one millisecond)', async () => {
    double.decide('isolate_host', approve());
    // Each reading of the double's clock is at least 1 ms after the last: a burst of creates puts it ahead of Date.now().
    for (let i = 0; i < 300; i++) await cs.requestApproval({ action: 'isolate_host', args: { host: `burst-${i}` } });
    const late = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-late' } });
    await late.decision();
    double.advance(60 * 60 * 1000); // exactly the default validity
    const err = await failure(late.run(async () => 'ran'));
    expect(err.code).toBe('RECEIPT_EXPIRED');
  });

  it('modify: runs with the reviewer\'s args; choose alternative: runs the alternative', async () => {
    double.decideOnce('isolate_host', modify({ host: 'ws-1', mode: 'network-only' })).decideOnce('isolate_host', chooseAlternative('quarantine'));
    await isolate()({ host: 'ws-1' });
    await isolate()({ host: 'ws-2' });
    expect(ran).toEqual([
      { fn: 'isolate', args: { host: 'ws-1', mode: 'network-only' } },
      { fn: 'quarantine', args: { host: 'ws-2', path: '/tmp/x' } },
    ]);
  });

  it('reject, expire and time out: nothing runs, each with its code', async () => {
    double.decideOnce('isolate_host', reject('domain controller')).decideOnce('isolate_host', expire()).decideOnce('isolate_host', timeOut());
    const rejected = await failure(isolate()({ host: 'dc-01' }));
    expect(rejected.code).toBe('APPROVAL_REJECTED');
    expect(rejected.message).toMatch(/rejected by test-reviewer: domain controller/);
    expect((await failure(isolate()({ host: 'ws-3' }))).code).toBe('APPROVAL_EXPIRED');
    const impatient = cs.guard(async () => ran.push({ fn: 'never', args: null }), { action: 'isolate_host', timeoutMs: 100 });
    expect((await failure(impatient({ host: 'ws-4' }))).code).toBe('WAIT_TIMEOUT');
    expect(ran).toEqual([]);
    expect(double.requests.at(-1)!.status).toBe('cancelled'); // the guard withdrew it
  });

  it('policy decisions come back decided at create', async () => {
    double.decide('block_ip', approve({ byPolicy: true }));
    const handle = await cs.requestApproval({ action: 'block_ip', args: { ip: '203.0.113.7' } });
    expect(handle.status).toBe('approved');
    expect(handle.assessment.route).toBe('auto_approve');
    await expect(handle.decision()).resolves.toMatchObject({ decidedBy: 'policy', args: { ip: '203.0.113.7' } });
    double.decide('block_ip', reject('blocked', { byPolicy: true }));
    const blocked = await cs.requestApproval({ action: 'block_ip', args: { ip: '203.0.113.8' } });
    expect((await failure(blocked.decision())).message).toMatch(/blocked by policy: blocked/);
  });

  it('the real receipt check runs: a forged approval is refused, and so is every receipt under another pinned key', async () => {
    double.decide('isolate_host', forgedApproval({ host: 'dc-01' }));
    const forged = await failure(isolate()({ host: 'ws-5' }));
    expect(forged.code).toBe('RECEIPT_MISMATCH');
    expect(ran).toEqual([]);
    // Refused before the claim: nothing claimed, nothing reported.
    expect(double.claims).toEqual([]);
    expect(double.executions).toEqual([]);

    const other = await CountersignDouble.create();
    const mispinned = new Countersign({ env: {}, gateway: double, auditPublicKey: other.auditPublicKeyPem, onReportError: () => {} });
    double.decide('isolate_host', approve());
    const run = mispinned.guard(async () => ran.push({ fn: 'never', args: null }), { action: 'isolate_host' });
    expect((await failure(run({ host: 'ws-6' }))).message).toMatch(/signed by key [0-9a-f]{16}, not the server's key/);
    expect(ran).toEqual([]);
  });

  it('scripts can look at the request; an unscripted action fails loudly; idempotency keys re-attach', async () => {
    double.decide('isolate_host', (request) => (request.args.host === 'dc-01' ? reject('never a DC') : approve()));
    await isolate()({ host: 'ws-7' });
    expect((await failure(isolate()({ host: 'dc-01' }))).code).toBe('APPROVAL_REJECTED');

    const unscripted = await failure(cs.requestApproval({ action: 'wire_transfer', args: {} }));
    expect(unscripted.code).toBe('NOT_IMPLEMENTED');
    expect(unscripted.message).toMatch(/double\.decide\('wire_transfer'/);

    const first = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-8' }, idempotencyKey: 'k-1' });
    const again = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-8' }, idempotencyKey: 'k-1' });
    expect(again.id).toBe(first.id);
    expect(again.replayed).toBe(true);
  });

  it('an alternative the agent never offered is reported as a rejection naming the offers', async () => {
    double.decide('isolate_host', chooseAlternative('wipe'));
    const err = await failure(isolate()({ host: 'ws-9' }));
    expect(err.code).toBe('APPROVAL_REJECTED');
    expect(err.message).toMatch(/never offered \(offered: quarantine\)/);
  });
});

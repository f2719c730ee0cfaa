/** The engine against both real databases: lifecycle, authz, idempotency, races, waits, audit. */
import { CountersignError, CreateRequestBody } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

const body = (input: unknown) => CreateRequestBody.parse(input);

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    if (err instanceof CountersignError) return err.code;
    throw err;
  }
}

describe.each(ENGINES)('engine: $name', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;

  beforeAll(async () => {
    database = make();
    t = await openTestEngine(database.url);
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('auto-approves what policy allows, durably and audited', async () => {
    const { request, replayed } = await t.engine.createRequest(t.agent, body(AUTO));
    expect(replayed).toBe(false);
    expect(request.status).toBe('approved');
    expect(request.assessment).toMatchObject({ automationLevel: 'full', route: 'auto_approve', requiresApproval: false });
    expect(request.decision).toMatchObject({ outcome: 'approved', decidedBy: 'policy', action: 'block_ip', args: AUTO.args });
    const audit = await t.engine.auditForRequest(t.admin, request.id);
    expect(audit.map((e) => e.type)).toEqual(['created', 'approved']);
  });

  it('queues what needs a human, and an operator approves it', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(QUEUED));
    expect(request.status).toBe('pending');
    expect(request.assessment.requiresApproval).toBe(true);
    expect(request.assessment.slaDueAt).not.toBeNull();
    const alice = await t.operator('alice');
    const decided = await t.engine.review(alice, request.id, { verdict: 'approve', reason: 'confirmed with IR' });
    expect(decided.status).toBe('approved');
    expect(decided.decision).toMatchObject({ decidedBy: 'reviewers', deciders: [{ name: 'alice' }], reason: 'confirmed with IR' });
    expect(decided.reviews).toHaveLength(1);
    const audit = await t.engine.auditForRequest(t.admin, request.id);
    expect(audit.map((e) => e.type)).toEqual(['created', 'queued', 'reviewed', 'approved']);
    expect(audit[2]?.actor).toEqual({ type: 'operator', id: alice.kind === 'operator' ? alice.operatorId : '', name: 'alice' });
  });

  it('records execution and closes the record', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(AUTO));
    expect(await codeOf(t.engine.reportExecution(t.agent, request.id, { status: 'succeeded' }))).toBe('ILLEGAL_TRANSITION'); // claim first
    const claimed = await t.engine.reportExecution(t.agent, request.id, { status: 'started', receipt: request.decision!.receipt! });
    expect(claimed.status).toBe('executing');
    const done = await t.engine.reportExecution(t.agent, request.id, { status: 'succeeded', result: { blocked: true } });
    expect(done.status).toBe('executed');
    expect(done.execution).toMatchObject({ status: 'succeeded', result: { blocked: true } });
    expect(await codeOf(t.engine.reportExecution(t.agent, request.id, { status: 'failed' }))).toBe('ALREADY_EXECUTED');
  });

  it('is idempotent per agent on idempotencyKey, and refuses a reused key with another body', async () => {
    const first = await t.engine.createRequest(t.agent, body({ ...QUEUED, idempotencyKey: 'incident-7' }));
    const again = await t.engine.createRequest(t.agent, body({ ...QUEUED, idempotencyKey: 'incident-7' }));
    expect(again.replayed).toBe(true);
    expect(again.request.id).toBe(first.request.id);
    expect(await codeOf(t.engine.createRequest(t.agent, body({ ...QUEUED, confidence: 0.5, idempotencyKey: 'incident-7' })))).toBe(
      'IDEMPOTENCY_CONFLICT',
    );
    const other = await t.agentNamed('other-bot');
    const theirs = await t.engine.createRequest(other, body({ ...QUEUED, idempotencyKey: 'incident-7' }));
    expect(theirs.request.id).not.toBe(first.request.id);
  });

  it('returns one request for concurrent creates with one idempotency key', async () => {
    const results = await Promise.all(
      Array.from({ length: 10 }, () => t.engine.createRequest(t.agent, body({ ...QUEUED, idempotencyKey: 'race-1' }))),
    );
    expect(new Set(results.map((r) => r.request.id)).size).toBe(1);
    expect(results.filter((r) => !r.replayed).length).toBe(1);
  });

  it('never lets an agent review, and never lets an operator review their own request', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(QUEUED));
    expect(await codeOf(t.engine.review(t.agent, request.id, { verdict: 'approve' }))).toBe('FORBIDDEN');
    const olga = await t.operator('olga', ['reviewer']);
    const own = await t.engine.createRequest(olga, body(QUEUED));
    expect(own.request.agentName).toBe('operator:olga');
    expect(await codeOf(t.engine.review(olga, own.request.id, { verdict: 'approve' }))).toBe('SELF_REVIEW');
    const auditor = await t.operator('audrey', ['auditor']);
    expect(await codeOf(t.engine.review(auditor, request.id, { verdict: 'approve' }))).toBe('NOT_ELIGIBLE');
    expect((await t.engine.getRequest(t.admin, request.id)).status).toBe('pending');
  });

  it('fails closed on approvals the policy wants step-up MFA for when the reviewer has no TOTP, but lets them be rejected', async () => {
    const { request } = await t.engine.createRequest(t.agent, body({ action: 'delete_data', args: { path: '/x' }, confidence: 0.99, riskLevel: 'critical' }));
    expect(request.assessment).toMatchObject({ riskLevel: 'critical', mfaRequired: true, route: 'review' });
    const mona = await t.operator('mona', ['director']);
    expect(await codeOf(t.engine.review(mona, request.id, { verdict: 'approve', totp: '123456' }))).toBe('MFA_REQUIRED');
    expect((await t.engine.getRequest(t.admin, request.id)).reviews).toHaveLength(0);
    const rejected = await t.engine.review(mona, request.id, { verdict: 'reject', reason: 'too broad' });
    expect(rejected.status).toBe('rejected');
  });

  it('tells each operator whether they may act on a pending request now (actionable)', async () => {
    const { request } = await t.engine.createRequest(t.agent, body({ ...QUEUED, approvers: [{ role: 'manager' }] }));
    const stages = request.assessment.approval!.stages;
    expect(stages.at(-1)).toMatchObject({ role: 'manager' });
    const rita = await t.operator('rita-actionable', ['reviewer']);
    const ray = await t.operator('ray-actionable', ['reviewer']);
    const max = await t.operator('max-actionable', ['manager']);
    const seen = async (who: typeof rita) => (await t.engine.getRequest(who, request.id)).actionable;
    // Walk the stages with the least senior eligible reviewer each time.
    for (let i = 0; i < stages.length - 1; i++) {
      expect(await seen(rita)).toBe(true);
      await t.engine.review(rita, request.id, { verdict: 'approve' });
      expect(await seen(rita)).toBe(false); // voted already
    }
    expect(await seen(ray)).toBe(false); // the manager stage is not his
    expect(await seen(max)).toBe(true);
    const listed = await t.engine.listRequests(max, { status: 'pending', limit: 500 });
    expect(listed.items.find((r) => r.id === request.id)?.actionable).toBe(true);
    expect((await t.engine.getRequest(t.agent, request.id)).actionable).toBeUndefined(); // agents are not told
    const own = await t.engine.createRequest(rita, body(QUEUED));
    expect(await seen(rita).then(() => t.engine.getRequest(rita, own.request.id)).then((r) => r.actionable)).toBe(false); // own request
  });

  it('hides other agents\' requests from an agent', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(QUEUED));
    const other = await t.agentNamed('nosy-bot');
    expect(await codeOf(t.engine.getRequest(other, request.id))).toBe('NOT_FOUND');
    expect(await codeOf(t.engine.cancel(other, request.id))).toBe('NOT_FOUND');
    expect(await codeOf(t.engine.listRequests(t.agent))).toBe('FORBIDDEN');
  });

  it('lets the requesting agent cancel while pending, not after', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(QUEUED));
    const cancelled = await t.engine.cancel(t.agent, request.id, { reason: 'incident closed' });
    expect(cancelled.status).toBe('cancelled');
    expect(await codeOf(t.engine.review(t.admin, request.id, { verdict: 'approve' }))).toBe('ALREADY_DECIDED');
  });

  it('produces exactly one decision from 100 concurrent approve/reject calls', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(QUEUED));
    const reviewers = await Promise.all(Array.from({ length: 10 }, (_, i) => t.operator(`racer${i}`)));
    const calls = Array.from({ length: 100 }, (_, i) => {
      const who = reviewers[i % reviewers.length]!;
      return t.engine.review(who, request.id, i % 2 ? { verdict: 'approve' } : { verdict: 'reject', reason: 'race' });
    });
    const settled = await Promise.allSettled(calls);
    const ok = settled.filter((s) => s.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    for (const s of settled) {
      if (s.status === 'rejected') {
        expect(s.reason).toBeInstanceOf(CountersignError);
        expect(['ALREADY_DECIDED', 'ALREADY_REVIEWED']).toContain((s.reason as CountersignError).code);
      }
    }
    const final = await t.engine.getRequest(t.admin, request.id);
    expect(final.reviews).toHaveLength(1);
    const decisions = (await t.engine.auditForRequest(t.admin, request.id)).filter((e) => e.type === 'approved' || e.type === 'rejected');
    expect(decisions).toHaveLength(1);
  });

  it('wakes a waiter as soon as the request is decided', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(QUEUED));
    const started = Date.now();
    const waiting = t.engine.waitForDecision(t.agent, request.id, 10_000);
    await new Promise((r) => setTimeout(r, 50));
    const decidedAt = Date.now();
    await t.engine.review(t.admin, request.id, { verdict: 'reject', reason: 'not this host' });
    const woke = await waiting;
    const elapsed = Date.now() - decidedAt;
    expect(woke.status).toBe('rejected');
    expect(woke.decision?.reason).toBe('not this host');
    expect(elapsed).toBeLessThan(2_000);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('returns the current state when a wait runs out', async () => {
    const { request } = await t.engine.createRequest(t.agent, body(QUEUED));
    const woke = await t.engine.waitForDecision(t.agent, request.id, 200);
    expect(woke.status).toBe('pending');
  });

  it('expires pending requests whose timeoutSeconds passed, fail-closed', async () => {
    let now = Date.now();
    const clocked = await Engine.open({ connection: await connect(database.url), now: () => now });
    await clocked.activatePolicy((await import('@countersign/core')).DEFAULT_POLICY_YAML, 'test');
    const { request } = await clocked.createRequest(t.agent, body({ ...QUEUED, timeoutSeconds: 60 }));
    const scheduler = new Scheduler(clocked);
    expect((await scheduler.tick()).fired).toBe(0);
    now += 61_000;
    expect((await scheduler.tick()).fired).toBeGreaterThanOrEqual(1);
    const after = await clocked.getRequest(t.admin, request.id);
    expect(after.status).toBe('expired');
    expect(after.decision).toMatchObject({ outcome: 'expired', decidedBy: 'timeout', action: null });
    await clocked.close();
  });

  it('lists the queue (most urgent first; one risk level here, so oldest first) and pages with a cursor', async () => {
    const page1 = await t.engine.listRequests(t.admin, { status: 'pending', limit: 2 });
    expect(page1.items.every((r) => r.status === 'pending')).toBe(true);
    expect(page1.nextCursor).not.toBeNull();
    const page2 = await t.engine.listRequests(t.admin, { status: 'pending', limit: 2, cursor: page1.nextCursor! });
    const ids = [...page1.items, ...page2.items].map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(page1.items[0]!.createdAt <= page2.items[0]!.createdAt).toBe(true);
    expect(await codeOf(t.engine.listRequests(t.admin, { cursor: 'garbage' }))).toBe('VALIDATION_FAILED');
  });

  it('keeps the last good policy when a new one is invalid, and versions a changed one', async () => {
    const before = t.engine.policy.version;
    expect(await codeOf(t.engine.activatePolicy('automation: { full: 7 }', 'bad.yaml'))).toBe('POLICY_INVALID');
    expect(t.engine.policy.version).toBe(before);
    const next = await t.engine.activatePolicy('automation: { full: 0.99 }\n', 'stricter.yaml');
    expect(next.version).toBe(before + 1);
    const { request } = await t.engine.createRequest(t.agent, body(AUTO));
    expect(request.policyVersion).toBe(before + 1);
    expect((await t.engine.listAudit(t.admin, { type: 'policy_loaded' })).length).toBeGreaterThanOrEqual(2);
  });

  it('refuses bootstrap once credentials exist, and refuses weak given secrets', async () => {
    expect(await t.engine.bootstrap()).toBeNull();
    expect(await codeOf(t.engine.bootstrap({ adminToken: 'short' }))).toBe('VALIDATION_FAILED');
  });
});

describe('engine: postgres, two processes sharing one database', () => {
  it('a decision made through one engine wakes a waiter on the other (LISTEN/NOTIFY)', async () => {
    const database = ENGINES[1]!.make();
    const a = await openTestEngine(database.url);
    const b = await Engine.open({ connection: await connect(database.url) });
    await b.activatePolicy((await import('@countersign/core')).DEFAULT_POLICY_YAML, 'test');
    try {
      const { request } = await a.engine.createRequest(a.agent, body(QUEUED));
      const waiting = b.waitForDecision(a.agent, request.id, 10_000);
      await new Promise((r) => setTimeout(r, 100));
      const decidedAt = Date.now();
      await a.engine.review(a.admin, request.id, { verdict: 'approve' });
      const woke = await waiting;
      expect(woke.status).toBe('approved');
      expect(Date.now() - decidedAt).toBeLessThan(2_000);
    } finally {
      await a.engine.close();
      await b.close();
      await database.drop();
    }
  });
});

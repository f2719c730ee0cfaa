/**
 * Red-team review of branch `gate` (issue 12): attacks that still get a payload run with less
 * than it requires alone. Each test asserts the secure behaviour, so it FAILS on `gate`.
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CreateRequestBody, canonicalJson } from '@countersign/core';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const hash = (action: string, args: Record<string, unknown>) => createHash('sha256').update(canonicalJson({ action, args })).digest('hex');

async function clocked(url: string, policy: string) {
  const clock = { now: Date.now() };
  const engine = await Engine.open({ connection: await connect(url), now: () => clock.now });
  await engine.activatePolicy(policy, 'test');
  const boot = (await engine.bootstrap())!;
  const admin = (await engine.authenticate(boot.adminToken))!;
  const agent = (await engine.authenticate(boot.agentKey))!;
  let n = 0;
  return {
    engine,
    admin,
    agent,
    clock,
    async op(name: string, roles: Array<'reviewer' | 'lead' | 'manager' | 'director'>): Promise<Principal> {
      const { token } = await engine.createOperator(admin, { name: `${name}-${n++}`, roles });
      return (await engine.authenticate(token))!;
    },
  };
}

describe.each(ENGINES)('gate attacks from the review ($name)', ({ make }) => {
  let database: TestDatabase;
  let t: Awaited<ReturnType<typeof clocked>>;
  afterEach(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('A: timeout approval runs a modified payload without re-judging it (blocked by the active policy)', async () => {
    const V1 = `
levels: { high: { sla: 2s } }
escalation:
  onFinalTimeout: approve
  levels:
    - { role: lead, after: 2s }
rules:
  - { name: two, when: { action: rotate_keys }, then: { approvals: 2 } }
`;
    const V2 = `${V1}
contentPatterns:
  prod: "production"
`.replace('rules:\n', 'rules:\n  - { name: no-prod, when: { action: [rotate_keys], contentPattern: [prod] }, then: { block: true } }\n');
    database = make();
    t = await clocked(database.url, V1);
    const scheduler = new Scheduler(t.engine);
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'staging' }, confidence: 0.9 }));
    expect(request.status).toBe('pending');
    const a = await t.op('a', ['reviewer']);
    const b = await t.op('b', ['reviewer']);
    // One reviewer proposes production (1 of 2 approvals).
    expect((await t.engine.review(a, request.id, { verdict: 'approve', args: { scope: 'production' } })).status).toBe('pending');
    // Policy now blocks production key rotation; a reviewer can no longer approve it...
    await t.engine.activatePolicy(V2, 'test');
    await expect(
      t.engine.review(b, request.id, { verdict: 'approve', seenPayloadHash: hash('rotate_keys', { scope: 'production' }) }),
    ).rejects.toMatchObject({ code: 'BLOCKED_BY_POLICY' });
    // ...but silence does.
    for (let i = 0; i < 6; i++) {
      t.clock.now += 24 * 3600_000;
      await scheduler.tick();
    }
    const done = await t.engine.getRequest(t.admin, request.id);
    expect(done.decision?.args).not.toEqual({ scope: 'production' });
    expect(done.status).not.toBe('approved');
  }, 60_000);

  it('A2: timeout approval of the original re-assesses it: blocked by the active policy, it expires', async () => {
    const V1 = `
levels: { high: { sla: 2s } }
escalation:
  onFinalTimeout: approve
  levels:
    - { role: lead, after: 2s }
rules:
  - { name: two, when: { action: rotate_keys }, then: { approvals: 2 } }
`;
    const V2 = V1.replace('rules:\n', 'rules:\n  - { name: no-rotate, when: { action: rotate_keys }, then: { block: true } }\n');
    database = make();
    t = await clocked(database.url, V1);
    const scheduler = new Scheduler(t.engine);
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'staging' }, confidence: 0.9 }));
    const a = await t.op('a', ['reviewer']);
    expect((await t.engine.review(a, request.id, { verdict: 'approve' })).status).toBe('pending');
    await t.engine.activatePolicy(V2, 'test');
    for (let i = 0; i < 6; i++) {
      t.clock.now += 24 * 3600_000;
      await scheduler.tick();
    }
    const done = await t.engine.getRequest(t.admin, request.id);
    expect(done.status).toBe('expired');
    expect(done.decision?.reason).toContain('no-rotate');
  }, 60_000);

  it('A3: with the active policy allowing it, silence still approves the original as asked (the feature is kept)', async () => {
    const V1 = `
levels: { high: { sla: 2s } }
escalation:
  onFinalTimeout: approve
  levels:
    - { role: lead, after: 2s }
rules:
  - { name: two, when: { action: rotate_keys }, then: { approvals: 2 } }
`;
    database = make();
    t = await clocked(database.url, V1);
    const scheduler = new Scheduler(t.engine);
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'staging' }, confidence: 0.9 }));
    // Tick a day at a time until it is decided (more ticks would let the unclaimed approval lapse).
    let done = await t.engine.getRequest(t.admin, request.id);
    for (let i = 0; i < 6 && done.status === 'pending'; i++) {
      t.clock.now += 24 * 3600_000;
      await scheduler.tick();
      done = await t.engine.getRequest(t.admin, request.id);
    }
    expect(done.status).toBe('approved');
    expect(done.decision).toMatchObject({ decidedBy: 'timeout', action: 'rotate_keys', args: { scope: 'staging' }, alternative: null, modified: false });
  }, 60_000);

  it('B: after a policy reload, a vote recorded at stage index 0 (lead) counts as the new stage 0 (director)', async () => {
    const V1 = `
rules:
  - { name: orig, when: { action: rotate_keys }, then: { approvers: [{ role: lead }], approvals: 2 } }
  - { name: alt, when: { action: pay_vendor }, then: { approvers: [{ role: lead }], approvals: 2 } }
`;
    const V2 = V1.replace(
      "- { name: alt, when: { action: pay_vendor }, then: { approvers: [{ role: lead }], approvals: 2 } }",
      "- { name: alt, when: { action: pay_vendor }, then: { approvers: [{ role: director }, { role: lead }] } }",
    );
    database = make();
    t = await clocked(database.url, V1);
    const { request } = await t.engine.createRequest(
      t.agent,
      CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'qa' }, confidence: 0.9, alternatives: [{ name: 'vendor', action: 'pay_vendor', args: { vendor: 'acme' } }] }),
    );
    const [a, b, c] = [await t.op('a', ['lead']), await t.op('b', ['lead']), await t.op('c', ['lead'])];
    expect((await t.engine.review(a, request.id, { verdict: 'approve', alternative: 'vendor' })).status).toBe('pending');
    await t.engine.activatePolicy(V2, 'test'); // pay_vendor now needs a director first
    const seen = (await t.engine.getRequest(b, request.id)).payload!.payloadHash;
    await t.engine.review(b, request.id, { verdict: 'approve', seenPayloadHash: seen }).catch(() => undefined);
    const seen2 = (await t.engine.getRequest(c, request.id)).payload!.payloadHash;
    const last = await t.engine.review(c, request.id, { verdict: 'approve', seenPayloadHash: seen2 }).catch((e: unknown) => e);
    const done = await t.engine.getRequest(t.admin, request.id);
    if (done.status === 'approved') expect(done.decision).toMatchObject({ action: 'pay_vendor', alternative: 'vendor' }); // what ran
    // Nobody with the director role ever voted: pay_vendor must not be approved.
    expect({ status: done.status, deciders: done.decision?.deciders.map((d) => d.name) }, JSON.stringify(last).slice(0, 300)).not.toMatchObject({ status: 'approved' });
  }, 60_000);
});

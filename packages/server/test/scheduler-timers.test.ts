/**
 * Durable timers and escalation through the real engine and store, on SQLite and PostgreSQL,
 * with a clock the test moves: escalation step by step, final timeout (reject and approve),
 * exactly-once firing under concurrent schedulers, extension racing a claim, cancellation on
 * decision.
 */
import { CreateRequestBody, type ApprovalRequest } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const CHAIN = `
levels: { high: { sla: 2s } }
escalation:
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 2s }
    - { role: director, after: 2s }
rules:
  - { name: needs-manager, when: { action: wire_transfer }, then: { approvers: [{ role: manager }] } }
  - { name: needs-alice, when: { action: reset_password }, then: { approvers: [{ operator: alice }] } }
  - { name: starts-high, when: { action: drop_table }, then: { startLevel: 2 } }
`;
const body = (extra: Record<string, unknown> = {}) =>
  CreateRequestBody.parse({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82, ...extra });

interface Clocked {
  engine: Engine;
  admin: Principal;
  agent: Principal;
  clock: { now: number };
  operator(name: string, roles: Array<'reviewer' | 'lead' | 'manager' | 'director'>): Promise<Principal>;
}

async function clocked(url: string, policy: string, start = Date.now()): Promise<Clocked> {
  const clock = { now: start };
  const engine = await Engine.open({ connection: await connect(url), now: () => clock.now });
  await engine.activatePolicy(policy, 'test');
  const boot = await engine.bootstrap();
  let admin: Principal;
  let agent: Principal;
  if (boot) {
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
  } else {
    const op = (await engine.store.findOperatorByName('admin'))!;
    admin = { kind: 'operator', operatorId: op.id, name: op.name, roles: ['admin'], groups: [] };
    const ag = (await engine.store.findAgentByName('demo-agent'))!;
    agent = { kind: 'agent', agentId: ag.id, agentName: ag.name };
  }
  return {
    engine,
    admin,
    agent,
    clock,
    async operator(name, roles) {
      const { token } = await engine.createOperator(admin, { name, roles });
      return (await engine.authenticate(token))!;
    },
  };
}

const types = async (t: Clocked, id: string) => (await t.engine.auditForRequest(t.admin, id)).map((e) => e.type);

describe.each(ENGINES)('scheduler and escalation: $name', ({ make }) => {
  let database: TestDatabase;
  let t: Clocked;
  let scheduler: Scheduler;

  beforeAll(async () => {
    database = make();
    t = await clocked(database.url, CHAIN);
    scheduler = new Scheduler(t.engine);
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('escalates level by level at each deadline, then expires fail-closed with the reason', async () => {
    const { request } = await t.engine.createRequest(t.agent, body());
    expect(request.escalation).toMatchObject({ level: 1, levels: 3, role: 'lead', extended: false, onFinalTimeout: 'reject' });
    const start = t.clock.now;

    t.clock.now = start + 1_999;
    await scheduler.tick();
    expect((await t.engine.getRequest(t.admin, request.id)).escalation?.level).toBe(1);

    t.clock.now = start + 2_000;
    expect(await scheduler.tick()).toMatchObject({ fired: 1, escalated: 1, decided: 0, errors: 0 });
    const second = await t.engine.getRequest(t.admin, request.id);
    expect(second.escalation).toMatchObject({ level: 2, role: 'manager', dueAt: new Date(start + 4_000).toISOString() });
    expect(second.status).toBe('pending');

    t.clock.now = start + 4_000;
    await scheduler.tick();
    expect((await t.engine.getRequest(t.admin, request.id)).escalation?.level).toBe(3);

    t.clock.now = start + 6_000;
    await scheduler.tick();
    const done = await t.engine.getRequest(t.agent, request.id);
    expect(done.status).toBe('expired');
    expect(done.decision).toMatchObject({ outcome: 'expired', decidedBy: 'timeout', action: null });
    expect(done.decision?.reason).toBe('no decision by the end of escalation level 3 (director); onFinalTimeout: reject');

    expect(await types(t, request.id)).toEqual(['created', 'queued', 'escalated', 'escalated', 'expired']);
    const audit = await t.engine.auditForRequest(t.admin, request.id);
    expect(audit[2]!.data).toMatchObject({ from: 1, to: 2, role: 'manager' });
    expect(audit[3]!.data).toMatchObject({ from: 2, to: 3, role: 'director' });
    expect(await t.engine.store.timers.requestTimers(request.id)).toEqual([]);
  });

  it('a rule may start a request at a higher level; it escalates from there', async () => {
    const { request } = await t.engine.createRequest(t.agent, body({ action: 'drop_table', args: { table: 'users' } }));
    expect(request.escalation).toMatchObject({ level: 2, role: 'manager', dueAt: new Date(t.clock.now + 2_000).toISOString() });
    expect((await t.engine.auditForRequest(t.admin, request.id))[1]!.data).toMatchObject({ escalation: { level: 2 } });
    t.clock.now += 2_000;
    await scheduler.tick();
    expect((await t.engine.getRequest(t.admin, request.id)).escalation).toMatchObject({ level: 3, role: 'director' });
    t.clock.now += 2_000;
    await scheduler.tick();
    expect((await t.engine.getRequest(t.admin, request.id)).status).toBe('expired');
  });

  it('a late tick moves one level, with the new deadline counted from when it fired', async () => {
    const { request } = await t.engine.createRequest(t.agent, body());
    t.clock.now += 60_000; // the server was down for a minute
    await scheduler.tick();
    const after = await t.engine.getRequest(t.admin, request.id);
    expect(after.escalation).toMatchObject({ level: 2, dueAt: new Date(t.clock.now + 2_000).toISOString() });
    const [entry] = (await t.engine.auditForRequest(t.admin, request.id)).filter((e) => e.type === 'escalated');
    expect((entry!.data as { lateMs: number }).lateMs).toBe(58_000);
  });

  it('the agent’s own timeoutSeconds still expires the request, and cancels its escalation', async () => {
    const { request } = await t.engine.createRequest(t.agent, body({ timeoutSeconds: 1 }));
    expect((await t.engine.store.timers.requestTimers(request.id)).map((x) => x.kind)).toEqual(['expire']);
    t.clock.now += 1_000;
    await scheduler.tick();
    const done = await t.engine.getRequest(t.admin, request.id);
    expect(done.status).toBe('expired');
    expect(done.decision?.reason).toContain('timeoutSeconds');
  });

  it('a decision cancels the request’s timers; its due escalation then fires nothing', async () => {
    const { request } = await t.engine.createRequest(t.agent, body({ timeoutSeconds: 600 }));
    expect(await t.engine.store.timers.requestTimers(request.id)).toHaveLength(2);
    await t.engine.review(t.admin, request.id, { verdict: 'approve' });
    expect(await t.engine.store.timers.requestTimers(request.id)).toEqual([]);
    t.clock.now += 700_000;
    await scheduler.tick();
    expect(await types(t, request.id)).toEqual(['created', 'queued', 'reviewed', 'approved']);
  });

  it('fires each timer exactly once when several schedulers tick at the same moment', async () => {
    for (let i = 0; i < 4; i++) {
      t.clock.now += 2_000; // run the earlier tests' chains to their end first
      await scheduler.tick();
    }
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await t.engine.createRequest(t.agent, body({ args: { host: `ws-${i}` } }))).request.id);
    const other = await clocked(database.url, CHAIN);
    other.clock.now = t.clock.now;
    try {
      t.clock.now += 2_000;
      other.clock.now = t.clock.now;
      const schedulers = [new Scheduler(t.engine, { batch: 7 }), new Scheduler(t.engine, { batch: 5 }), new Scheduler(other.engine, { batch: 3 })];
      const reports = await Promise.all(schedulers.map((s) => s.tick()));
      expect(reports.reduce((n, r) => n + r.fired, 0)).toBe(40);
      expect(reports.reduce((n, r) => n + r.errors, 0)).toBe(0);
      for (const id of ids) {
        expect((await types(t, id)).filter((x) => x === 'escalated')).toHaveLength(1);
      }
    } finally {
      await other.engine.close();
    }
  });

  it('a timer whose lease ran out is taken over by another scheduler, and still fires once', async () => {
    const { request } = await t.engine.createRequest(t.agent, body());
    t.clock.now += 2_000;
    const mine = <T extends { request_id: string | null }>(rows: T[]) => rows.filter((x) => x.request_id === request.id);
    const [a] = mine(await t.engine.store.timers.claimDue(t.clock.now, 500, 'crashed', 1, ['escalate']));
    expect(mine(await t.engine.store.timers.claimDue(t.clock.now, 500, 'other', 60_000, ['escalate']))).toEqual([]); // leased
    t.clock.now += 5;
    const [b] = mine(await t.engine.store.timers.claimDue(t.clock.now, 500, 'other', 60_000, ['escalate']));
    expect(b).toMatchObject({ id: a!.id, claimed_by: 'other' });
    const outcomes = await Promise.all([t.engine.fireTimer(a!), t.engine.fireTimer(b!)]);
    expect(outcomes.sort()).toEqual(['escalated', 'gone']);
    expect((await types(t, request.id)).filter((x) => x === 'escalated')).toHaveLength(1);
  });

  it('an extension after the claim sends the timer back to wait; it fires at the new deadline', async () => {
    const lead = await t.operator(`lee-${Date.now()}`, ['lead']);
    const { request } = await t.engine.createRequest(t.agent, body());
    t.clock.now += 2_000;
    const [claimed] = (await t.engine.store.timers.claimDue(t.clock.now, 100, 'test', 60_000, ['escalate'])).filter((x) => x.request_id === request.id);
    const extended = await t.engine.extendDeadline(lead, request.id, { seconds: 2, reason: 'owner is on the phone' });
    expect(extended.escalation).toMatchObject({ level: 1, extended: true, dueAt: new Date(t.clock.now + 2_000).toISOString() });
    expect(await t.engine.fireTimer(claimed!)).toBe('gone'); // the extension replaced it with a later timer
    expect((await t.engine.getRequest(t.admin, request.id)).escalation?.level).toBe(1);
    expect((await t.engine.store.timers.requestTimers(request.id))[0]).toMatchObject({ due_at: t.clock.now + 2_000, claimed_by: null });

    expect(await codeOf(t.engine.extendDeadline(lead, request.id, { seconds: 1, reason: 'again' }))).toBe('ALREADY_EXTENDED');
    t.clock.now += 2_000;
    await scheduler.tick();
    expect((await t.engine.getRequest(t.admin, request.id)).escalation?.level).toBe(2);
    const audit = await t.engine.auditForRequest(t.admin, request.id);
    expect(audit.map((e) => e.type)).toEqual(['created', 'queued', 'extended', 'escalated']);
    expect(audit[2]).toMatchObject({ actor: { name: lead.kind === 'operator' ? lead.name : '' }, data: { bySeconds: 2, reason: 'owner is on the phone' } });
  });

  it('extension and reassignment need someone who may review the request now, and a reason', async () => {
    const reviewer = await t.operator(`rita-${Date.now()}`, ['reviewer']);
    const { request } = await t.engine.createRequest(t.agent, body({ action: 'wire_transfer' }));
    expect(await codeOf(t.engine.extendDeadline(reviewer, request.id, { seconds: 1, reason: 'x' }))).toBe('NOT_ELIGIBLE');
    expect(await codeOf(t.engine.extendDeadline(t.agent, request.id, { seconds: 1, reason: 'x' }))).toBe('FORBIDDEN');
    expect(await codeOf(t.engine.extendDeadline(t.admin, request.id, { seconds: 3, reason: 'x' }))).toBe('VALIDATION_FAILED');
    expect(await codeOf(t.engine.reassign(t.admin, request.id, { operator: 'nobody', reason: 'x' }))).toBe('VALIDATION_FAILED');
    const after = await t.engine.reassign(t.admin, request.id, { group: 'ir-oncall', reason: 'night shift' });
    expect(after.escalation?.assignee).toEqual({ group: 'ir-oncall' });
    expect((await types(t, request.id)).slice(-1)).toEqual(['reassigned']);
  });

  it('a reassignment never hands over a stage that names an operator (issue 12 finding 4), nor does escalating', async () => {
    const alice = await t.operator('alice', ['reviewer']);
    const bob = await t.operator('bob', ['reviewer']);
    const mo = await t.operator('mo', ['manager']);
    const needsAlice = body({ action: 'reset_password', args: { user: 'u1' } });

    const one = (await t.engine.createRequest(t.agent, needsAlice)).request;
    expect(one.assessment.approval?.stages).toEqual([{ count: 1, operators: ['alice'], label: 'operator alice' }]);
    expect(await codeOf(t.engine.review(bob, one.id, { verdict: 'approve' }))).toBe('NOT_ELIGIBLE');
    await t.engine.reassign(alice, one.id, { operator: 'bob', reason: 'I am off today' });
    // The stage names alice: reassigning the request moves who is asked, never who may sign it.
    expect(await codeOf(t.engine.review(bob, one.id, { verdict: 'approve' }))).toBe('NOT_ELIGIBLE');
    expect((await t.engine.review(alice, one.id, { verdict: 'approve' })).status).toBe('approved');

    const two = (await t.engine.createRequest(t.agent, { ...needsAlice, args: { user: 'u2' } })).request;
    expect(await codeOf(t.engine.review(mo, two.id, { verdict: 'approve' }))).toBe('NOT_ELIGIBLE');
    t.clock.now += 2_000;
    await scheduler.tick(); // level 2: manager
    // Escalating asks the next level, but a stage that names an operator is still theirs to sign.
    expect(await codeOf(t.engine.review(mo, two.id, { verdict: 'approve' }))).toBe('NOT_ELIGIBLE');
    expect((await t.engine.review(alice, two.id, { verdict: 'approve' })).status).toBe('approved');
  });
});

describe.each(ENGINES)('scheduler: onFinalTimeout approve, $name', ({ make }) => {
  it('approves by timeout only when the policy says so explicitly; the decision says timeout', async () => {
    const database = make();
    const t = await clocked(database.url, CHAIN.replace('escalation:\n', 'escalation:\n  onFinalTimeout: approve\n'));
    try {
      const scheduler = new Scheduler(t.engine);
      const { request } = await t.engine.createRequest(t.agent, body());
      expect(request.escalation?.onFinalTimeout).toBe('approve');
      for (let i = 0; i < 3; i++) {
        t.clock.now += 2_000;
        await scheduler.tick();
      }
      const done: ApprovalRequest = await t.engine.getRequest(t.agent, request.id);
      expect(done.status).toBe('approved');
      expect(done.decision).toMatchObject({ outcome: 'approved', decidedBy: 'timeout', deciders: [], action: 'isolate_host', args: { host: 'ws-042' } });
      expect(await types(t, request.id)).toEqual(['created', 'queued', 'escalated', 'escalated', 'approved']);
      const last = (await t.engine.auditForRequest(t.admin, request.id)).at(-1)!;
      expect(last).toMatchObject({ actor: { type: 'system' }, data: { decidedBy: 'timeout' } });
    } finally {
      await t.engine.close();
      await database.drop();
    }
  });
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

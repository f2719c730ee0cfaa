/**
 * `onSlicing: aggregate` end to end (both databases, a controlled clock, the real scheduler):
 * once slicing is detected, the agent's pending requests and those it sends during the hold
 * are collected for `guard.slicing.collect`, then put before a reviewer as one aggregate review
 * (value summed, evaluated as a whole). One decision decides every member, each bound to its own
 * args with its own receipt; members cannot be approved on their own meanwhile.
 */
import { AGGREGATE_ACTION, CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const MINUTE = 60_000;
const POLICY = DEFAULT_POLICY_YAML.replace(
  'agents: {}',
  'agents:\n  slicer-bot: { onSlicing: aggregate }\n  lone-bot: { onSlicing: aggregate }\n  objector-bot: { onSlicing: aggregate }\n  paused-slicer: { onSlicing: aggregate, whilePaused: hold }',
)
  .replace('  slicing: { hold: 1h, collect: 1m }', '  slicing: { hold: 30m, collect: 2m }');
/** Just under a 10,000 limit, high risk so each needs a human anyway. */
const transfer = (i: number) => ({ action: 'wire_transfer', args: { to: `acct-${i}`, amount: 9_900 }, confidence: 0.9, riskLevel: 'high', context: { value: 9_900 } });

describe.each(ENGINES)('onSlicing: aggregate: $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let scheduler: Scheduler;
  let app: ReturnType<typeof createApp>;
  let clock = Date.UTC(2026, 0, 20, 9, 0, 0);
  let adminToken = '';

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const create = (key: string, body: unknown) => call(key, 'POST', '/v1/requests', CreateRequestBody.parse(body));
  const keyFor = async (agent: string) => (await call(adminToken, 'POST', '/v1/keys', { agent })).json.key as string;
  const reviewer = async (name: string, role = 'lead') => (await call(adminToken, 'POST', '/v1/operators', { name, roles: [role] })).json.token as string;
  const audit = async (type: string) => (await engine.listAudit((await engine.authenticate(adminToken))!, { type, limit: 1000 })).map((e) => ({ requestId: e.requestId, data: e.data as any }));
  const aggregates = async () => (await call(adminToken, 'GET', `/v1/requests?limit=500`)).json.items.filter((r: any) => r.action === AGGREGATE_ACTION);
  /** Sends transfers 90 s apart until the detector fires for this agent (a new `aggregation_started`); returns what was sent and that entry. */
  const sliceUntilDetected = async (agent: string, key: string, from: number) => {
    const startedFor = async () => (await audit('aggregation_started')).filter((e) => e.data.agent === agent);
    const before = (await startedFor()).length;
    const sent: any[] = [];
    for (let i = from; i < from + 10 && (await startedFor()).length === before; i++) {
      clock += 90_000;
      sent.push((await create(key, transfer(i))).json);
    }
    const started = (await startedFor()).at(-1);
    if ((await startedFor()).length === before || !started) throw new Error(`no slicing detected for ${agent}`);
    return { sent, started };
  };

  let approvers = 0;
  /** Approves a request stage by stage, each vote from a new operator of the role that stage asks for; returns the last answer. */
  const approveByStages = async (request: any) => {
    let last: any;
    for (const stage of request.assessment.approval.stages as Array<{ count: number; role?: string }>) {
      for (let i = 0; i < stage.count; i++) {
        const token = (await call(adminToken, 'POST', '/v1/operators', { name: `approver-${approvers++}`, roles: [stage.role ?? 'reviewer'] })).json.token as string;
        last = await call(token, 'POST', `/v1/requests/${request.id}/reviews`, { verdict: 'approve' });
        expect(last.json.error ?? last.status).toBe(200);
      }
    }
    return last;
  };

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock});
    await engine.activatePolicy(POLICY, 'test');
    adminToken = (await engine.bootstrap())!.adminToken;
    app = createApp({ engine, log: () => {} });
    scheduler = new Scheduler(engine, { intervalMs: 60_000 });
  });
  afterAll(async () => {
    await scheduler.stop();
    await engine.close();
    await database.drop();
  });

  it('collects the sliced transfers and those sent during the hold, then puts them before a reviewer as one; one approval decides each, bound to its own args', async () => {
    const key = await keyFor('slicer-bot');
    const rita = await reviewer('rita');
    const { sent, started } = await sliceUntilDetected('slicer-bot', key, 0);
    expect(started.data).toMatchObject({ agent: 'slicer-bot', alerts: expect.arrayContaining(['value_aggregation']) });
    const parked: string[] = started.data.requestIds;
    // Caught on the create whose running total crosses the policy's 10,000 (the second 9,900; finding 7).
    expect(parked.length).toBeGreaterThanOrEqual(2);
    expect(parked).toEqual(expect.arrayContaining(sent.map((r) => r.id)));

    // Collecting: a member cannot be approved on its own.
    const early = await call(rita, 'POST', `/v1/requests/${parked[0]}/reviews`, { verdict: 'approve' });
    expect(early.status).toBe(409);
    expect(early.json.error).toMatchObject({ code: 'AGGREGATED', details: { aggregateId: null, collectingUntil: expect.any(String) } });
    expect((await audit('review_refused')).some((e) => e.requestId === parked[0] && e.data.code === 'AGGREGATED')).toBe(true);
    const card = (await call(rita, 'GET', `/v1/requests/${parked[0]}`)).json;
    expect(card.aggregate).toEqual({ id: null, collectingUntil: early.json.error.details.collectingUntil });
    expect(card.actionable).toBe(false); // the queue offers the aggregate, not its members
    // Nor is a member escalated on its own: its chain stopped when it was parked (the aggregate review has its own).
    const escalated = await call(rita, 'POST', `/v1/requests/${parked[0]}/escalate`, { reason: 'speed it up' });
    expect(escalated.json.error).toMatchObject({ code: 'AGGREGATED', details: { aggregateId: null, collectingUntil: expect.any(String) } });
    expect(escalated.status).toBe(409);
    expect((await engine.store.timers.requestTimers(parked[0]!)).filter((t) => t.kind === 'escalate')).toEqual([]);
    // Nor extended or reassigned on its own (the aggregate is decided as a whole): 409, audited, nothing moved.
    const stateBefore = (await engine.store.timers.escalationsFor([parked[0]!]))[0]?.state;
    const extended = await call(rita, 'POST', `/v1/requests/${parked[0]}/extend`, { seconds: 600, reason: 'need more time' });
    const handed = await call(rita, 'POST', `/v1/requests/${parked[0]}/reassign`, { group: 'payments', reason: 'theirs' });
    for (const refused of [extended, handed]) {
      expect(refused.status).toBe(409);
      expect(refused.json.error).toMatchObject({ code: 'AGGREGATED', details: { aggregateId: null, collectingUntil: expect.any(String) } });
    }
    expect((await engine.store.timers.escalationsFor([parked[0]!]))[0]?.state).toBe(stateBefore);
    const escalationRefusals = (await audit('escalation_refused')).filter((e) => e.requestId === parked[0]);
    expect(escalationRefusals.map((e) => [e.data.what, e.data.code])).toEqual([
      ['escalate', 'AGGREGATED'],
      ['extend', 'AGGREGATED'],
      ['reassign', 'AGGREGATED'],
    ]);
    const queue = (await call(rita, 'GET', '/v1/requests?status=pending&limit=500')).json.items as any[];
    expect(queue.filter((r) => parked.includes(r.id)).map((r) => r.actionable)).toEqual(parked.map(() => false));

    // During the hold a new request joins the same collection.
    clock += 10_000;
    const late = (await create(key, transfer(50))).json;
    expect(late.status).toBe('pending');
    expect(late.assessment.matchedRules).toContainEqual(expect.objectContaining({ name: expect.stringMatching(/^slicing-aggregate:/), reason: expect.stringContaining('onSlicing: aggregate') }));
    expect((await audit('collected')).map((e) => e.requestId)).toContain(late.id);
    expect(await aggregates()).toEqual([]);

    // The collection closes: one aggregate review, its value the sum.
    clock += 2 * MINUTE + 1;
    expect(await scheduler.tick()).toMatchObject({ errors: 0 });
    const [aggregate] = await aggregates();
    const members = [...parked, late.id];
    expect(aggregate).toMatchObject({ status: 'pending', args: { count: members.length, totalValue: 9_900 * members.length } });
    expect(aggregate.args.requests.map((r: any) => r.id).sort()).toEqual([...members].sort());
    expect(aggregate.assessment.route).toBe('review');
    expect(aggregate.context.value).toBe(9_900 * members.length);
    expect((await audit('aggregated')).filter((e) => e.data.aggregateId === aggregate.id).map((e) => e.requestId).sort()).toEqual([...members].sort());

    expect((await call(key, 'GET', `/v1/requests/${late.id}`)).json.aggregate).toEqual({ id: aggregate.id, collectingUntil: null });
    const member = await call(rita, 'POST', `/v1/requests/${late.id}/reviews`, { verdict: 'approve' });
    expect(member.json.error).toMatchObject({ code: 'AGGREGATED', details: { aggregateId: aggregate.id } });
    // Once in the aggregate review: extend and reassign are refused with its id, and audited with it.
    for (const [what, body] of [['extend', { seconds: 600, reason: 'more time' }], ['reassign', { group: 'payments', reason: 'theirs' }], ['escalate', { reason: 'up' }]] as const) {
      const refused = await call(rita, 'POST', `/v1/requests/${late.id}/${what}`, body);
      expect(refused.status).toBe(409);
      expect(refused.json.error).toMatchObject({ code: 'AGGREGATED', details: { aggregateId: aggregate.id } });
    }
    expect((await audit('escalation_refused')).filter((e) => e.requestId === late.id).map((e) => [e.data.what, e.data.aggregateId])).toEqual([
      ['extend', aggregate.id],
      ['reassign', aggregate.id],
      ['escalate', aggregate.id],
    ]);
    // The gate checks who may sign first (rita is not eligible for the manager stage), then the aggregate's rules.
    expect((await call(rita, 'POST', `/v1/requests/${aggregate.id}/reviews`, { verdict: 'approve', args: { count: 1 } })).json.error.code).toBe('NOT_ELIGIBLE');
    const modified = await call(await reviewer('mo', 'director'), 'POST', `/v1/requests/${aggregate.id}/reviews`, { verdict: 'approve', args: { count: 1 } });
    expect(modified.json.error.code).toBe('VALIDATION_FAILED');

    // Approve the aggregate stage by stage, with the reviewers its evaluation asks for: the summed
    // value meets the default policy's large-value rule (a manager) that no single transfer met.
    // The agent is waiting on one of its own requests, not on the aggregate: it wakes all the same.
    const waiting = engine.waitForDecision((await engine.authenticate(key))!, late.id, 10_000);
    expect(aggregate.assessment.matchedRules.map((r: any) => r.name)).toContain('large-value');
    expect(aggregate.assessment.approval.stages.some((s: any) => s.role === 'manager')).toBe(true);
    const last = await approveByStages(aggregate);
    expect(last.json.status).toBe('executed'); // nothing of its own to run: its members run
    expect((await waiting).status).toBe('approved');
    for (const id of members) {
      const r = (await call(key, 'GET', `/v1/requests/${id}`)).json;
      const original = [...sent, late].find((s) => s.id === id) ?? (await call(adminToken, 'GET', `/v1/requests/${id}`)).json;
      expect(r.status).toBe('approved');
      expect(r.decision).toMatchObject({ decidedBy: 'reviewers', action: 'wire_transfer', args: original.args, reason: expect.stringContaining(aggregate.id) });
      expect(r.decision.deciders.map((d: any) => d.name)).toContain('approver-0');
      expect(r.decision.receipt.requestId).toBe(id);
      expect(r.decision.receipt.payloadHash).toBe(engine.trail.payloadHash('wire_transfer', original.args));
    }
    // The agent claims each member's approval with its own receipt and reports its execution as usual.
    const lateNow = (await call(key, 'GET', `/v1/requests/${late.id}`)).json;
    expect((await call(key, 'POST', `/v1/requests/${late.id}/execution`, { status: 'started', receipt: lateNow.decision.receipt })).json.status).toBe('executing');
    expect((await call(key, 'POST', `/v1/requests/${late.id}/execution`, { status: 'succeeded' })).json.status).toBe('executed');
  });

  it('a rejected aggregate rejects every member; rejecting one member alone is allowed while it collects', async () => {
    const key = await keyFor('slicer-bot');
    const ivo = await reviewer('ivo', 'manager'); // the summed value needs a manager, also to reject
    clock += 3 * 60 * MINUTE; // the first hold is over, and its transfers are out of the detector's window
    await scheduler.tick();
    const { started } = await sliceUntilDetected('slicer-bot', key, 100);
    const parked: string[] = started.data.requestIds;
    // Caught on the create whose running total crosses the policy's 10,000 (the second 9,900; finding 7).
    expect(parked.length).toBeGreaterThanOrEqual(2);
    const alone = await call(ivo, 'POST', `/v1/requests/${parked[0]}/reviews`, { verdict: 'reject', reason: 'this one is clearly wrong' });
    expect(alone.json.error ?? alone.json.status).toBe('rejected');

    clock += 2 * MINUTE + 1;
    await scheduler.tick();
    const aggregate = (await aggregates()).find((a: any) => a.status === 'pending');
    expect(aggregate.args.count).toBe(parked.length - 1); // the one already rejected stays out
    // A member's own escalation chain is stopped: it is not extended on its own (the aggregate is
    // decided as a whole), and as time passes it neither escalates nor times out on its own.
    const extended = await call(ivo, 'POST', `/v1/requests/${parked[1]}/extend`, { seconds: 60, reason: 'checking' });
    expect(extended.status).toBe(409);
    expect(extended.json.error).toMatchObject({ code: 'AGGREGATED', details: { aggregateId: aggregate.id } });
    clock += 20 * MINUTE;
    expect(await scheduler.tick()).toMatchObject({ errors: 0 });
    expect((await audit('escalated')).some((e) => e.requestId === parked[1])).toBe(false);
    expect((await call(key, 'GET', `/v1/requests/${parked[1]}`)).json.status).toBe('pending');
    const no = await call(ivo, 'POST', `/v1/requests/${aggregate.id}/reviews`, { verdict: 'reject', reason: 'slicing' });
    expect(no.json.error ?? no.json.status).toBe('rejected');
    for (const id of parked.slice(1)) {
      const r = (await call(key, 'GET', `/v1/requests/${id}`)).json;
      expect(r.status).toBe('rejected');
      expect(r.decision).toMatchObject({ action: null, args: null, reason: expect.stringContaining('slicing') });
    }
  });

  it('pacing requests one per collection does not escape: each becomes an aggregate of one whose total counts the hold so far', async () => {
    const key = await keyFor('lone-bot');
    const manager = await reviewer('ana', 'manager');
    const { started } = await sliceUntilDetected('lone-bot', key, 200);
    const first: string[] = started.data.requestIds;
    clock += 2 * MINUTE + 1;
    await scheduler.tick();
    const paced: string[] = [];
    for (let i = 300; i < 304; i++) {
      clock += 10_000;
      paced.push((await create(key, transfer(i))).json.id);
      clock += 2 * MINUTE + 1; // each collection closes around this one request alone
      expect(await scheduler.tick()).toMatchObject({ errors: 0 });
    }
    const mine = (await aggregates()).filter((a: any) => a.agentName === 'lone-bot');
    expect(mine).toHaveLength(1 + paced.length);
    const last = mine.find((a: any) => a.args.requests[0].id === paced.at(-1));
    expect(last.args).toMatchObject({ count: 1, value: 9_900, earlierInHold: { count: first.length + 3 } });
    expect(last.args.totalValue).toBe(9_900 * (first.length + 4));
    expect(last.assessment.matchedRules.map((r: any) => r.name)).toContain('large-value');
    // Each is decided as an aggregate, never alone.
    expect((await call(manager, 'POST', `/v1/requests/${paced.at(-1)}/reviews`, { verdict: 'approve' })).json.error.code).toBe('AGGREGATED');
    expect(last.assessment.matchedRules.map((r: any) => r.name)).toContain('very-large-value'); // over 50,000 in all: a director too
    expect((await approveByStages(last)).json.status).toBe('executed');
    expect((await call(key, 'GET', `/v1/requests/${paced.at(-1)}`)).json.status).toBe('approved');
  });

  it('an objection raised on a member before it was collected stands when the aggregate is approved', async () => {
    const key = await keyFor('objector-bot');
    const manager = await reviewer('otto', 'manager');
    const lead = await reviewer('lars');
    // deny: 2 on the high level from here on: one rejection does not decide a request.
    await engine.activatePolicy(POLICY.replace('  high:     { sla: 15m, autoApprove: false }', '  high:     { sla: 15m, autoApprove: false, deny: 2 }'), 'test');
    clock += 3 * 60 * MINUTE;
    const { started } = await sliceUntilDetected('objector-bot', key, 400);
    const ids: string[] = started.data.requestIds;
    const objection = await call(lead, 'POST', `/v1/requests/${ids[0]}/reviews`, { verdict: 'reject', reason: 'wrong account' });
    expect(objection.json.error ?? objection.json.status).toBe('pending');
    clock += 2 * MINUTE + 1;
    await scheduler.tick();
    const aggregate = (await aggregates()).find((a: any) => a.agentName === 'objector-bot' && a.status === 'pending');
    expect((await call(manager, 'POST', `/v1/requests/${aggregate.id}/reviews`, { verdict: 'approve' })).json.status).toBe('executed');
    const objected = (await call(key, 'GET', `/v1/requests/${ids[0]}`)).json;
    expect(objected.status).toBe('expired');
    expect(objected.decision).toMatchObject({ action: null, args: null, reason: expect.stringContaining('objected') });
    expect((await call(key, 'GET', `/v1/requests/${ids[1]}`)).json.status).toBe('approved');
    await engine.activatePolicy(POLICY, 'test');
  });

  it('pausing an agent under an aggregate hold (whilePaused: hold) keeps collecting its requests', async () => {
    const key = await keyFor('paused-slicer');
    clock += 3 * 60 * MINUTE;
    await sliceUntilDetected('paused-slicer', key, 500);
    expect((await call(adminToken, 'POST', '/v1/agents/paused-slicer/pause', { minutes: 5, reason: 'looking into slicing' })).status).toBe(200);
    clock += 1_000;
    const held = (await create(key, transfer(550))).json;
    expect(held.status).toBe('pending');
    expect(held.assessment.matchedRules.map((r: any) => r.name)).toContain('agent-paused');
    expect((await audit('collected')).map((e) => e.requestId)).toContain(held.id);
    clock += 6 * MINUTE; // the pause is over
    await scheduler.tick();
    const lars = await reviewer('lara', 'manager');
    expect((await call(lars, 'POST', `/v1/requests/${held.id}/reviews`, { verdict: 'approve' })).json.error.code).toBe('AGGREGATED');
    expect((await aggregates()).some((a: any) => a.args.requests.some((r: any) => r.id === held.id))).toBe(true);
  });

  it('agents cannot send a request in the countersign.* namespace', async () => {
    const key = await keyFor('slicer-bot');
    const res = await app.request('/v1/requests', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: AGGREGATE_ACTION, args: { count: 1, requests: [] } }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBe('VALIDATION_FAILED');
  });
});

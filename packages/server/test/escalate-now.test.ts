/**
 * A reviewer escalates now (`POST /v1/requests/:id/escalate`, `countersign escalate`), on both
 * databases through a real server: one level up exactly as a timeout would (state, timer,
 * notification, audit), refused at the last level and for anyone who may not review it now,
 * one level for two escalations made at once, counted by reason in /metrics, and no way to
 * sign a stage the escalator could not sign before.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POLICY_YAML, type ApprovalRequest } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveServerConfig } from '../src/config.ts';
import { Engine } from '../src/engine/engine.ts';
import { connect } from '../src/store/connect.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';
import { startServer, type RunningServer } from '../src/serve.ts';
import { webhookReceiver, type StandIn } from './support/channel-standins.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const policy = (hook: string) => `
levels: { high: { sla: 10m } }
escalation:
  levels:
    - { role: lead, after: sla, notify: [hook] }
    - { role: manager, after: 20m, notify: [hook] }
    - { role: director, after: 30m, notify: [hook] }
rules:
  - name: two-stage
    when: { action: wire_money }
    then: { approvers: [{ role: lead }, { operator: carol }] }
channels:
  hook: { type: webhook, url: "${hook}" }
`;

type ErrorOut = { error: { code: string; message: string; details?: Record<string, unknown> } };
type Audit = { items: Array<{ type: string; actor: { name?: string; type?: string }; data: Record<string, unknown> }> };

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function escalations(url: string, reason: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = text.match(new RegExp(`^countersign_escalations_total\\{reason="${reason}"\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

describe.each(ENGINES)('escalate now ($name)', ({ make }) => {
  let database: TestDatabase;
  let hook: StandIn;
  let server: RunningServer;
  const tokens: Record<string, string> = {};

  async function call<T>(who: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(`${server.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${tokens[who]}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  }
  const create = async (action = 'isolate_host', host = 'ws-1') =>
    (await call<ApprovalRequest>('agent', '/v1/requests', { action, args: { host }, confidence: 0.82 })).body;
  const escalate = (who: string, id: string, body: Record<string, unknown>) => call<ApprovalRequest & ErrorOut>(who, `/v1/requests/${id}/escalate`, body);
  const audit = async (id: string) => (await call<Audit>('admin', `/v1/requests/${id}/audit`)).body.items.filter((e) => e.type !== 'notified');
  /** Everything a refused escalation must leave alone. */
  const snapshot = async (id: string) => ({
    request: (await call<ApprovalRequest>('admin', `/v1/requests/${id}`)).body,
    audit: await audit(id),
    // Deadlines (delivery attempts of earlier notifications come and go in the background; their rows are counted below).
    timers: (await server.engine.store.timers.requestTimers(id)).filter((t) => t.kind !== 'deliver').map((t) => [t.kind, t.due_at, t.payload]),
    deliveries: (await server.engine.store.timers.listDeliveries({ requestId: id, limit: 50 })).length,
  });

  beforeAll(async () => {
    database = make();
    hook = await webhookReceiver();
    const dir = mkdtempSync(join(tmpdir(), 'countersign-policy-'));
    writeFileSync(join(dir, 'countersign.yaml'), policy(hook.url));
    const env = { COUNTERSIGN_TICK_MS: '50', COUNTERSIGN_WEBHOOK_SECRET: `whsec_${Buffer.from('escalate-now-webhook-signing-key').toString('base64')}` };
    server = await startServer(resolveServerConfig({ database: database.url, port: 0, policy: join(dir, 'countersign.yaml') }, env), () => {});
    tokens['admin'] = server.bootstrap!.adminToken;
    tokens['agent'] = server.bootstrap!.agentKey;
    for (const [name, roles] of [['rita', ['reviewer']], ['lena', ['director']], ['carol', ['reviewer']], ['aud', ['auditor']]] as const) {
      tokens[name] = (await call<{ token: string }>('admin', '/v1/operators', { name, roles })).body.token;
    }
  });
  afterAll(async () => {
    await server.close();
    await hook.close();
    await database.drop();
  });

  it('moves one level up at once, reschedules the timer for the new level, tells the next level with the reason, audits it', async () => {
    const r = await create();
    expect(r.escalation).toMatchObject({ level: 1, levels: 3, role: 'lead' });
    const before = await escalations(server.url, 'manual');
    const t0 = Date.now();
    const res = await escalate('rita', r.id, { reason: 'prod host, needs a manager now' });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('pending');
    expect(res.body.escalation).toMatchObject({ level: 2, levels: 3, role: 'manager', extended: false });
    const due = Date.parse(res.body.escalation!.dueAt);
    expect(due).toBeGreaterThanOrEqual(t0 + 20 * 60_000 - 1000);
    expect(due).toBeLessThanOrEqual(Date.now() + 20 * 60_000);

    // The one escalate timer is the new level's, due at the new deadline (the old one is gone).
    const timers = (await server.engine.store.timers.requestTimers(r.id)).filter((t) => t.kind === 'escalate');
    expect(timers.map((t) => [t.due_at, JSON.parse(t.payload ?? '{}').level])).toEqual([[due, 2]]);

    const entry = (await audit(r.id)).at(-1)!;
    expect(entry).toMatchObject({
      type: 'escalated',
      actor: { name: 'rita' },
      data: { from: 1, to: 2, role: 'manager', reason: 'manual', by: 'rita', text: 'prod host, needs a manager now', dueAt: res.body.escalation!.dueAt },
    });
    expect(await escalations(server.url, 'manual')).toBe(before + 1);

    // Level 2's channel hears of it, with who escalated and why.
    const received = await until('the escalated webhook', async () =>
      hook.received.find((h) => h.body.includes(r.id) && h.body.includes('countersign.request.escalated')),
    );
    expect(received.body).toContain('Escalated now by rita, from level 1 to level 2 (manager): prod host, needs a manager now');
    expect(received.body).toContain('Escalated by a reviewer: approval needed: isolate_host');
  });

  it('is refused at the last level with a clear error, and never decides the request', async () => {
    const r = await create('isolate_host', 'ws-last');
    expect((await escalate('lena', r.id, { reason: 'to 2' })).status).toBe(200);
    expect((await escalate('lena', r.id, { reason: 'to 3', fromLevel: 2 })).body.escalation).toMatchObject({ level: 3, role: 'director' });
    const before = await snapshot(r.id);
    // From the level it is at (lena's own call without fromLevel within a minute would be a repeat), and by someone else.
    for (const [who, body] of [['lena', { reason: 'beyond the last', fromLevel: 3 }], ['rita', { reason: 'beyond the last' }]] as const) {
      const last = await escalate(who, r.id, body);
      expect(last.status).toBe(409);
      expect(last.body.error).toMatchObject({ code: 'ILLEGAL_TRANSITION', details: { reason: 'last_level', level: 3, levels: 3 } });
      expect(last.body.error.message).toContain('level 3 of 3 is the last');
    }
    expect(await snapshot(r.id)).toEqual(before);
    expect(before.request.status).toBe('pending');
  });

  it('the same operator escalating again within a minute without fromLevel is a repeat (a double click): one level, one entry, one count', async () => {
    const r = await create('isolate_host', 'ws-double');
    const metric = await escalations(server.url, 'manual');
    const clicks = await Promise.all([escalate('lena', r.id, { reason: 'double click' }), escalate('lena', r.id, { reason: 'double click' })]);
    for (const click of clicks) {
      expect(click.status, JSON.stringify(click.body)).toBe(200);
      expect(click.body.escalation).toMatchObject({ level: 2, role: 'manager' });
    }
    const moved = await snapshot(r.id);
    // A third, later click (another reason, still within the minute) is answered the same and moves nothing.
    const again = await escalate('lena', r.id, { reason: 'are you there?' });
    expect(again.status).toBe(200);
    expect(again.body.escalation).toMatchObject({ level: 2, dueAt: clicks[0]!.body.escalation!.dueAt });
    expect(await snapshot(r.id)).toEqual(moved);
    expect((await audit(r.id)).filter((e) => e.type === 'escalated')).toHaveLength(1);
    expect(await escalations(server.url, 'manual')).toBe(metric + 1);
    // A bad reason is still refused, repeat or not.
    expect((await escalate('lena', r.id, { reason: 'two\nlines' })).status).toBe(400);
    // Saying from where is meant: it moves on.
    expect((await escalate('lena', r.id, { reason: 'to 3', fromLevel: 2 })).body.escalation).toMatchObject({ level: 3 });
    expect(await escalations(server.url, 'manual')).toBe(metric + 2);
  });

  it('a repeat is only the same operator within the minute: another operator, or the same one a minute later, moves it', async () => {
    const r = await create('isolate_host', 'ws-repeat-window');
    expect((await escalate('lena', r.id, { reason: 'to 2' })).body.escalation).toMatchObject({ level: 2 });
    // Lena's escalation a minute and a second ago (its recorded time moved back, as the clock would).
    const [row] = await server.engine.store.timers.escalationsFor([r.id]);
    const state = JSON.parse(row!.state);
    expect(state.lastManual).toMatchObject({ from: 1, to: 2 });
    state.lastManual.at -= 61_000;
    await server.engine.store.transaction((tx) => tx.timers.updateEscalation({ ...row!, state: JSON.stringify(state) }));
    expect((await escalate('lena', r.id, { reason: 'to 3, a minute on' })).body.escalation).toMatchObject({ level: 3 });
    const other = await create('isolate_host', 'ws-repeat-other');
    expect((await escalate('lena', other.id, { reason: 'to 2' })).body.escalation).toMatchObject({ level: 2 });
    expect((await escalate('rita', other.id, { reason: 'to 3' })).body.escalation).toMatchObject({ level: 3 });
    expect((await audit(other.id)).filter((e) => e.type === 'escalated').map((e) => e.data.by)).toEqual(['lena', 'rita']);
  });

  it('refuses an agent key, an auditor, an operator who may not review it now, a non-pending request, a bad reason: nothing changes', async () => {
    const r = await create('isolate_host', 'ws-refuse');
    const wire = await create('wire_money', 'ws-wire'); // stage 1 needs a lead: rita (reviewer) may not review it
    const before = await snapshot(r.id);
    const wireBefore = await snapshot(wire.id);
    const metric = await escalations(server.url, 'manual');

    const agent = await escalate('agent', r.id, { reason: 'the agent wants it faster' });
    expect(agent.status).toBe(403);
    const auditor = await escalate('aud', r.id, { reason: 'x' });
    expect(auditor.status).toBe(403);
    const ineligible = await escalate('rita', wire.id, { reason: 'x' });
    expect(ineligible.status).toBe(403);
    expect(ineligible.body.error.code).toBe('NOT_ELIGIBLE');
    for (const body of [{}, { reason: '' }, { reason: '   ' }, { reason: 'two\nlines' }, { reason: 'x'.repeat(501) }, { reason: 'x', extra: 1 }, { reason: 'x', fromLevel: -1 }]) {
      const bad = await escalate('lena', r.id, body);
      expect(bad.status, JSON.stringify(body)).toBe(400);
    }
    expect(await snapshot(r.id)).toEqual(before);
    expect(await snapshot(wire.id)).toEqual(wireBefore);

    expect((await call('admin', `/v1/requests/${r.id}/reviews`, { verdict: 'reject', reason: 'no' })).status).toBe(200);
    const decided = await snapshot(r.id);
    const late = await escalate('lena', r.id, { reason: 'too late' });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('ALREADY_DECIDED');
    expect(await snapshot(r.id)).toEqual(decided);
    expect(await escalations(server.url, 'manual')).toBe(metric);
  });

  it('two escalations made at once (from the level both saw) move one level, not two', async () => {
    for (let round = 0; round < 5; round++) {
      const r = await create('isolate_host', `ws-race-${round}`);
      const metric = await escalations(server.url, 'manual');
      const [a, b] = await Promise.all([
        escalate('rita', r.id, { reason: 'first', fromLevel: 1 }),
        escalate('lena', r.id, { reason: 'second', fromLevel: 1 }),
      ]);
      expect([a.status, b.status].sort()).toEqual([200, 409]);
      const loser = a.status === 409 ? a : b;
      expect(loser.body.error).toMatchObject({ code: 'ILLEGAL_TRANSITION', details: { reason: 'level_changed', level: 2 } });
      const now = (await call<ApprovalRequest>('admin', `/v1/requests/${r.id}`)).body;
      expect(now.escalation!.level).toBe(2);
      expect((await audit(r.id)).filter((e) => e.type === 'escalated')).toHaveLength(1);
      expect((await server.engine.store.timers.requestTimers(r.id)).filter((t) => t.kind === 'escalate')).toHaveLength(1);
      expect(await escalations(server.url, 'manual')).toBe(metric + 1);
    }
  });

  it('a timeout and a reviewer at once move one level: the timer claimed before the escalation is gone when it fires', async () => {
    const r = await create('isolate_host', 'ws-timer-race');
    const [timer] = (await server.engine.store.timers.requestTimers(r.id)).filter((t) => t.kind === 'escalate');
    // Due now, and claimed by "another process" in the same transaction that makes it due: a long
    // lease, so this server's scheduler (which ticks on its own) can never take it first.
    const claimed = { ...timer!, due_at: Date.now() - 1, claimed_by: 'other-process', claimed_until: Date.now() + 600_000 };
    await server.engine.store.transaction(async (tx) => {
      await tx.timers.cancelRequestTimers(r.id, ['escalate']);
      await tx.timers.insertTimers([claimed]);
    });
    expect((await server.engine.store.timers.claimDue(Date.now(), 1000, 'this-process', 1000, ['escalate'])).find((t) => t.request_id === r.id)).toBeUndefined();
    expect((await escalate('rita', r.id, { reason: 'now', fromLevel: 1 })).body.escalation).toMatchObject({ level: 2 });
    expect(await server.engine.fireTimer(claimed)).toBe('gone');
    expect((await call<ApprovalRequest>('admin', `/v1/requests/${r.id}`)).body.escalation).toMatchObject({ level: 2 });
    expect((await audit(r.id)).filter((e) => e.type === 'escalated').map((e) => e.data.reason)).toEqual(['manual']);
  });

  it('escalating to a level whose role the escalator holds does not let them sign a stage they could not sign before', async () => {
    // lena (director) may sign stage 1 (a lead); stage 2 names carol. Escalating to level 3 (director) gives her nothing more.
    const r = await create('wire_money', 'ws-attack');
    expect((await escalate('lena', r.id, { reason: 'to 2', fromLevel: 1 })).status).toBe(200);
    expect((await escalate('lena', r.id, { reason: 'to 3', fromLevel: 2 })).body.escalation).toMatchObject({ level: 3, role: 'director' });
    const first = await call<ApprovalRequest>('lena', `/v1/requests/${r.id}/reviews`, { verdict: 'approve' });
    expect(first.status).toBe(200);
    expect(first.body.status).toBe('pending'); // stage 2 (carol) still waits
    const again = await call<ErrorOut>('lena', `/v1/requests/${r.id}/reviews`, { verdict: 'approve' });
    expect(again.status).toBe(403);
    expect(['ALREADY_REVIEWED', 'NOT_ELIGIBLE']).toContain(again.body.error.code);
    // Nor may she escalate at carol's stage (she may not review it now), nor may the admin sign for carol.
    expect((await escalate('lena', r.id, { reason: 'x' })).body.error.code).toBe('NOT_ELIGIBLE');
    expect((await call<ErrorOut>('admin', `/v1/requests/${r.id}/reviews`, { verdict: 'approve' })).body.error.code).toBe('NOT_ELIGIBLE');
    expect((await call<ApprovalRequest>('admin', `/v1/requests/${r.id}`)).body.status).toBe('pending');
    const carol = await call<ApprovalRequest>('carol', `/v1/requests/${r.id}/reviews`, { verdict: 'approve' });
    expect(carol.body.status).toBe('approved');
    expect(carol.body.decision!.deciders.map((d) => d.name).sort()).toEqual(['carol', 'lena']);
  });

  it('the scheduler’s escalations are counted as sla_timeout and audited with that reason', async () => {
    const r = await create('isolate_host', 'ws-sla');
    const metric = await escalations(server.url, 'sla_timeout');
    // Make the current level's timer due now: the scheduler fires it as it would at the deadline.
    const [timer] = (await server.engine.store.timers.requestTimers(r.id)).filter((t) => t.kind === 'escalate');
    await server.engine.store.transaction(async (tx) => {
      await tx.timers.cancelRequestTimers(r.id, ['escalate']);
      await tx.timers.insertTimers([{ ...timer!, due_at: Date.now() - 1 }]);
    });
    const entry = await until('the timeout escalation', async () => (await audit(r.id)).find((e) => e.type === 'escalated'));
    expect(entry).toMatchObject({ actor: { type: 'system' }, data: { from: 1, to: 2, reason: 'sla_timeout' } });
    await until('the sla_timeout metric', async () => ((await escalations(server.url, 'sla_timeout')) === metric + 1 ? true : undefined));
  });
});

describe.each(ENGINES)('escalate now: a proposer cannot move their own four-eyes request ($name)', ({ make }) => {
  it('SELF_REVIEW, and the request stays where it was', async () => {
    const database = make();
    const engine = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
    try {
      await engine.activatePolicy(DEFAULT_POLICY_YAML.replace('agents: {}', 'agents:\n  billing-bot: {}\n'), 'test');
      const root = (await engine.authenticate((await engine.bootstrap())!.adminToken))!;
      await engine.createAgentKey(root, 'billing-bot');
      const independent = async (who: string) => {
        const made = (await engine.authenticate((await engine.createOperator(root, { name: who, roles: ['admin'] })).token))!;
        return (await engine.authenticate((await engine.credentials.rotateToken(made, 'me')).token))!;
      };
      const bob = await independent('bob');
      const carol = await independent('carol');
      await engine.agentConfigs.put(root, 'billing-bot', { enabled: false });
      const proposed = (await engine.agentConfigs.put(bob, 'billing-bot', { enabled: true })) as { status: string; requestId: string };
      expect(proposed.status).toBe('pending_approval');
      const before = await engine.getRequest(root, proposed.requestId);
      await expect(engine.escalate(bob, proposed.requestId, { reason: 'carol is away' })).rejects.toMatchObject({ code: 'SELF_REVIEW' });
      const after = await engine.getRequest(root, proposed.requestId);
      expect(after.escalation).toEqual(before.escalation);
      expect(after.status).toBe('pending');
      // The admin who may sign it may move it on.
      expect((await engine.escalate(carol, proposed.requestId, { reason: 'needs a director' })).escalation).toMatchObject({ level: before.escalation!.level + 1 });
    } finally {
      await engine.close();
      await database.drop();
    }
  });
});

/**
 * Escalation by cool-down (issue 18), through a real server on both databases: an operator's
 * cool-down (automatic from their approvals, or set by a lead) moves every pending request it
 * leaves with nobody free who may approve it up one level at once (`reason: cooldown`: audited,
 * counted, its level's channels told); a request with another free eligible reviewer stays; at the
 * final-authority level it stays pending (`cooldown_stranded`), never approved; the same cool-down
 * fired twice at once moves once; a cool-down ending un-escalates nothing.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApprovalRequest } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveServerConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/serve.ts';
import { webhookReceiver, type StandIn } from './support/channel-standins.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const policy = (hook: string) => `
levels:
  high: { sla: 10m, mfa: false }
escalation:
  levels:
    - { role: reviewer, after: sla, notify: [hook] }
    - { role: lead, after: 20m, notify: [hook] }
    - { operators: [cfo], after: 30m, notify: [hook], finalAuthority: true }
rules:
  - name: carols
    when: { action: carol_job }
    then: { riskAtLeast: high, approvers: [{ operator: carol }] }
  - name: ritas
    when: { action: rita_job }
    then: { riskAtLeast: high, approvers: [{ operator: rita }] }
  - name: team
    when: { action: team_job }
    then: { riskAtLeast: high, approvers: [{ role: reviewer }] }
guard:
  velocity: { perHour: 1000, perDay: 1000, riskLevels: [high, critical] }
  cooldown: { threshold: 2, window: 15m, duration: 30m, riskLevels: [high, critical] }
channels:
  hook: { type: webhook, url: "${hook}" }
`;

type Audit = { items: Array<{ type: string; actor: { name?: string; type?: string }; data: Record<string, unknown> }> };
type ErrorOut = { error: { code: string; message: string } };

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(ENGINES)('escalation by cool-down ($name)', ({ make }) => {
  let database: TestDatabase;
  let hook: StandIn;
  let server: RunningServer;
  const tokens: Record<string, string> = {};
  const ids: Record<string, string> = {};
  let n = 0;

  async function call<T>(who: string, path: string, body?: unknown, method?: string): Promise<{ status: number; body: T }> {
    const res = await fetch(`${server.url}${path}`, {
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      headers: { authorization: `Bearer ${tokens[who]}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  }
  const create = async (action: string) => {
    const r = await call<ApprovalRequest>('agent', '/v1/requests', { action, args: { n: ++n }, confidence: 0.9 });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body;
  };
  const approve = (who: string, id: string) => call<ApprovalRequest & ErrorOut>(who, `/v1/requests/${id}/reviews`, { verdict: 'approve', reason: 'ok' });
  const get = async (id: string) => (await call<ApprovalRequest>('admin', `/v1/requests/${id}`)).body;
  const audit = async (id: string) => (await call<Audit>('admin', `/v1/requests/${id}/audit`)).body.items;
  const cooldownEntries = async (id: string) => (await audit(id)).filter((e) => (e.type === 'escalated' && e.data['reason'] === 'cooldown') || e.type === 'cooldown_stranded');
  const metric = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const m = text.match(/^countersign_escalations_total\{reason="cooldown"\} (\d+)$/m);
    return m ? Number(m[1]) : 0;
  };
  /** Moves a request up to `level` by the clock (each level's timer made due). */
  async function byClock(id: string, level: number): Promise<void> {
    for (;;) {
      const at = (await get(id)).escalation!.level;
      if (at >= level) return;
      const [timer] = (await server.engine.store.timers.requestTimers(id)).filter((t) => t.kind === 'escalate');
      await server.engine.store.transaction(async (tx) => {
        await tx.timers.cancelRequestTimers(id, ['escalate']);
        await tx.timers.insertTimers([{ ...timer!, due_at: Date.now() - 1 }]);
      });
      await until(`level ${at + 1}`, async () => ((await get(id)).escalation!.level > at ? true : undefined));
    }
  }

  beforeAll(async () => {
    database = make();
    hook = await webhookReceiver();
    const dir = mkdtempSync(join(tmpdir(), 'countersign-policy-'));
    writeFileSync(join(dir, 'countersign.yaml'), policy(hook.url));
    const env = { COUNTERSIGN_TICK_MS: '50', COUNTERSIGN_WEBHOOK_SECRET: `whsec_${Buffer.from('cooldown-escalation-webhook-signing').toString('base64')}` };
    server = await startServer(resolveServerConfig({ database: database.url, port: 0, policy: join(dir, 'countersign.yaml') }, env), () => {});
    tokens['admin'] = server.bootstrap!.adminToken;
    tokens['agent'] = server.bootstrap!.agentKey;
    for (const [name, roles] of [['carol', ['reviewer']], ['rita', ['reviewer']], ['cfo', ['reviewer']], ['lena', ['lead']]] as const) {
      const made = await call<{ token: string; operator?: { id: string }; id?: string }>('admin', '/v1/operators', { name, roles: [...roles], groups: [] });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      tokens[name] = made.body.token;
    }
  }, 60_000);
  afterAll(async () => {
    await server.close();
    await hook.close();
    await database.drop();
  });

  it('carol’s automatic cool-down moves her own stage’s request to level 2 at once; a team request (rita is free) stays', async () => {
    const hers = await create('carol_job');
    const team = await create('team_job');
    const atFinal = await create('carol_job');
    await byClock(atFinal.id, 3);
    const before = await metric();
    // Two high-risk approvals within the window: the second starts carol's cool-down (threshold 2).
    for (let i = 0; i < 2; i++) {
      const r = await create('team_job');
      const ok = await approve('carol', r.id);
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    }
    expect((await call<{ active: boolean }>('admin', '/v1/approvers/carol/cooldown')).body.active).toBe(true);
    await until('carol_job escalated', async () => ((await get(hers.id)).escalation!.level === 2 ? true : undefined));
    const [entry] = await cooldownEntries(hers.id);
    expect(entry).toMatchObject({ type: 'escalated', actor: { type: 'system' }, data: { from: 1, to: 2, role: 'lead', reason: 'cooldown', operator: 'carol', eligible: ['carol'] } });
    expect(await metric()).toBe(before + 1);
    // The level's channel heard it, with the reason.
    await until('the escalated notification', async () => (hook.received.some((m) => m.body.includes(hers.id) && m.body.includes('countersign.request.escalated') && m.body.includes('cooling down')) ? true : undefined));
    // rita may still approve the team request: nothing moved.
    expect((await get(team.id)).escalation!.level).toBe(1);
    expect(await cooldownEntries(team.id)).toEqual([]);
    // At the final-authority level the CFO is free: not stranded, nothing changed.
    expect((await get(atFinal.id)).escalation!.level).toBe(3);
    expect(await cooldownEntries(atFinal.id)).toEqual([]);
    // Carol cannot approve while cooling; the lead stand-in does not change her named stage.
    expect((await approve('carol', hers.id)).body.error.code).toBe('COOLDOWN_ACTIVE');
    ids['hers'] = hers.id;
    ids['team'] = team.id;
    ids['atFinal'] = atFinal.id;
  });

  it('a lead’s manual cool-down on rita moves rita’s request (the lead recorded); a role stage with seniors free stays; lifting it un-escalates nothing', async () => {
    const ritas = await create('rita_job');
    const set = await call<{ active: boolean }>('lena', '/v1/approvers/rita/cooldown', { minutes: 30, reason: 'rest' });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    await until('rita_job escalated', async () => ((await get(ritas.id)).escalation!.level === 2 ? true : undefined));
    const entries = await cooldownEntries(ritas.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.data).toMatchObject({ reason: 'cooldown', operator: 'rita', from: 1, to: 2, eligible: ['rita'] });
    const lena = (await call<{ operatorId: string }>('admin', '/v1/approvers/lena/cooldown')).body.operatorId;
    expect(entries[0]!.data['setBy']).toBe(lena);
    // The team request (role reviewer) is not stranded: lena and the admin (more senior) may still approve it.
    expect((await get(ids['team']!)).escalation!.level).toBe(1);
    expect(await cooldownEntries(ids['team']!)).toEqual([]);
    // lena may not review carol's request: her manual cool-down on carol does not hand it (level 2) to the CFO alone.
    const again = await call<{ active: boolean }>('lena', '/v1/approvers/carol/cooldown', { minutes: 30, reason: 'rest more' });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    await until('carol_job stranded at 2', async () => ((await cooldownEntries(ids['hers']!)).some((e) => e.type === 'cooldown_stranded') ? true : undefined));
    expect((await get(ids['hers']!)).escalation).toMatchObject({ level: 2, finalAuthority: false });
    // Lifting rita's cool-down moves nothing back.
    const lifted = await call<{ active: boolean }>('lena', '/v1/approvers/rita/cooldown', { reason: 'back' }, 'DELETE');
    expect(lifted.status, JSON.stringify(lifted.body)).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect((await get(ritas.id)).escalation!.level).toBe(2);
    expect((await get(ids['hers']!)).escalation!.level).toBe(2);
  });

  it('at the final-authority level a cool-down that leaves nobody free strands it: pending, told, never approved', async () => {
    const set = await call<{ active: boolean }>('admin', '/v1/approvers/cfo/cooldown', { minutes: 30, reason: 'rest' });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    await until('stranded', async () => ((await cooldownEntries(ids['atFinal']!)).length === 1 ? true : undefined));
    const stranded = await get(ids['atFinal']!);
    expect(stranded.status).toBe('pending');
    expect(stranded.escalation!.level).toBe(3);
    expect((await cooldownEntries(ids['atFinal']!))[0]).toMatchObject({ type: 'cooldown_stranded', data: { level: 3, operator: 'cfo', eligible: ['carol', 'cfo'] } });
    await until('the stranded notification', async () => (hook.received.some((m) => m.body.includes(ids['atFinal']!) && m.body.includes('stays pending')) ? true : undefined));
  });

  it('the same cool-down fired twice at once (two servers seeing it) moves a request once', async () => {
    // carol is still cooling; a fresh request only she may sign, and a cool-down timer for her judged twice in parallel.
    const r = await create('carol_job');
    const now = Date.now();
    const timer = { id: `cooldown:dup:${now}`, kind: 'cooldown' as const, request_id: null, due_at: now, payload: JSON.stringify({ key: `cooldown:dup:${now}`, operatorId: (await call<{ operatorId: string }>('admin', '/v1/approvers/carol/cooldown')).body.operatorId, operator: 'carol', until: 'later', setBy: null }), claimed_by: null, claimed_until: null, created_at: now };
    await server.engine.store.transaction((tx) => tx.timers.insertTimers([timer]));
    const before = await metric();
    const outcomes = await Promise.all([server.engine.fireTimer(timer), server.engine.fireTimer(timer), server.engine.fireTimer(timer)]);
    await until('escalated once', async () => ((await get(r.id)).escalation!.level === 2 ? true : undefined));
    await new Promise((res) => setTimeout(res, 300)); // and the scheduler, had it claimed the timer too
    expect(await cooldownEntries(r.id)).toHaveLength(1);
    // At most one of the three runs (or the scheduler) made the move; the timer is gone after.
    expect(outcomes.filter((o) => o === 'escalated').length).toBeLessThanOrEqual(1);
    expect(await metric()).toBeGreaterThanOrEqual(before + 1);
    expect((await server.engine.store.timers.claimDue(Date.now() + 60_000, 100, 'probe', 1, ['cooldown'])).map((t) => t.id)).not.toContain(timer.id);
  });
});

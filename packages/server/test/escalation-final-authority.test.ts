/**
 * Escalation as the seeds describe it (issue 18), through a real server on both databases:
 * levels that name operators and groups, a final-authority level whose people decide alone
 * (audited; every other check of the gate still applies; the ways round it refused), critical
 * straight to level 2 (audited and counted as reason="critical"), and channels told per risk level.
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

const policy = (hook: string, riskHook: string) => `
levels:
  high: { sla: 10m, notify: [risk] }
  critical: { sla: 10m, startLevel: 2, notify: [risk] }
escalation:
  levels:
    - { role: lead, after: sla, notify: [hook] }
    - { role: manager, groups: [duty-managers], after: 20m, notify: [hook] }
    - { operators: [cfo], groups: [board], after: 30m, notify: [hook], finalAuthority: true }
rules:
  - name: two-stage
    when: { action: wire_money }
    then: { approvers: [{ role: lead }, { operator: carol }] }
channels:
  hook: { type: webhook, url: "${hook}" }
  risk: { type: webhook, url: "${riskHook}" }
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

describe.each(ENGINES)('escalation: named levels, final authority, start level, notify per risk ($name)', ({ make }) => {
  let database: TestDatabase;
  let hook: StandIn;
  let riskHook: StandIn;
  let server: RunningServer;
  const tokens: Record<string, string> = {};
  let hostN = 0;

  async function call<T>(who: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(`${server.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${tokens[who]}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  }
  const create = async (action: string, extra: Record<string, unknown> = {}) =>
    (await call<ApprovalRequest>('agent', '/v1/requests', { action, args: { host: `ws-${++hostN}` }, confidence: 0.82, ...extra })).body;
  const escalate = (who: string, id: string, reason: string, fromLevel?: number) => call<ApprovalRequest & ErrorOut>(who, `/v1/requests/${id}/escalate`, { reason, ...(fromLevel === undefined ? {} : { fromLevel }) });
  const approve = (who: string, id: string) => call<ApprovalRequest & ErrorOut>(who, `/v1/requests/${id}/reviews`, { verdict: 'approve', reason: 'ok' });
  const get = async (id: string) => (await call<ApprovalRequest>('admin', `/v1/requests/${id}`)).body;
  const audit = async (id: string) => (await call<Audit>('admin', `/v1/requests/${id}/audit`)).body.items.filter((e) => e.type !== 'notified');
  /** Moves a request to level 3 by the clock: each level's timer made due, fired by the scheduler. */
  async function byClockToFinal(id: string): Promise<void> {
    for (const level of [2, 3]) {
      const [timer] = (await server.engine.store.timers.requestTimers(id)).filter((t) => t.kind === 'escalate');
      await server.engine.store.transaction(async (tx) => {
        await tx.timers.cancelRequestTimers(id, ['escalate']);
        await tx.timers.insertTimers([{ ...timer!, due_at: Date.now() - 1 }]);
      });
      await until(`level ${level}`, async () => ((await get(id)).escalation?.level === level ? true : undefined));
    }
  }

  beforeAll(async () => {
    database = make();
    hook = await webhookReceiver();
    riskHook = await webhookReceiver();
    const dir = mkdtempSync(join(tmpdir(), 'countersign-policy-'));
    writeFileSync(join(dir, 'countersign.yaml'), policy(hook.url, riskHook.url));
    const env = { COUNTERSIGN_TICK_MS: '50', COUNTERSIGN_WEBHOOK_SECRET: `whsec_${Buffer.from('final-authority-webhook-signing').toString('base64')}` };
    server = await startServer(resolveServerConfig({ database: database.url, port: 0, policy: join(dir, 'countersign.yaml') }, env), () => {});
    tokens['admin'] = server.bootstrap!.adminToken;
    tokens['agent'] = server.bootstrap!.agentKey;
    const people: Array<[string, string[], string[]]> = [
      ['lena', ['lead'], []],
      ['carol', ['reviewer'], []],
      ['cfo', ['reviewer'], []],
      ['bea', ['reviewer'], ['board']],
      ['dora', ['director'], []],
      ['friend', ['lead'], []],
      ['max', ['lead'], ['board']],
    ];
    for (const [name, roles, groups] of people) {
      const made = await call<{ token: string }>('admin', '/v1/operators', { name, roles, groups });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      tokens[name] = made.body.token;
    }
  });
  afterAll(async () => {
    await server.close();
    await hook.close();
    await riskHook.close();
    await database.drop();
  });

  it('the CFO alone approves the two-stage wire once the clock reaches the final level; it is audited as final authority', async () => {
    const r = await create('wire_money');
    expect(r.escalation).toMatchObject({ level: 1, levels: 3, role: 'lead', finalAuthority: false });
    // Below the final level the CFO is only told: not a lead, not carol.
    expect((await approve('cfo', r.id)).body.error.code).toBe('NOT_ELIGIBLE');
    await byClockToFinal(r.id);
    const at3 = await call<ApprovalRequest>('cfo', `/v1/requests/${r.id}`);
    expect(at3.body.escalation).toMatchObject({ level: 3, role: null, operators: ['cfo'], groups: ['board'], finalAuthority: true });
    expect(at3.body.actionable).toBe(true); // the queue offers it to the CFO now (the gate's dry run)
    // A director is not the final authority: seniority is not membership, and carol's stage stays carol's.
    expect((await call<ApprovalRequest>('dora', `/v1/requests/${r.id}`)).body.actionable).toBe(true); // the lead stage
    const res = await approve('cfo', r.id);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.status).toBe('approved');
    expect(res.body.decision!.deciders.map((d) => d.name)).toEqual(['cfo']);
    const entries = await audit(r.id);
    expect(entries.find((e) => e.type === 'reviewed')!.data).toMatchObject({ verdict: 'approve', finalAuthority: { level: 3, operator: 'cfo' } });
    expect(entries.find((e) => e.type === 'approved')!.data).toMatchObject({ decidedBy: 'reviewers', deciders: ['cfo'], finalAuthority: { level: 3, operator: 'cfo' } });
  });

  it('a member who escalates it by hand to the final level cannot then sign it alone; another member can', async () => {
    const r = await create('wire_money');
    // bea (board) may escalate only what she may review now: she is not a lead, so stage 1 is not hers.
    expect((await escalate('bea', r.id, 'to the board')).body.error.code).toBe('NOT_ELIGIBLE');
    // max is a lead and on the board: he carries it up himself, to his own level…
    expect((await escalate('max', r.id, 'needs a manager')).status).toBe(200);
    // (from level 2, said: the same operator again within a minute without it would be a repeat, not a second jump)
    expect((await escalate('max', r.id, 'to the board', 2)).body.escalation).toMatchObject({ level: 3, finalAuthority: true });
    // …and his approval is an ordinary lead vote (stage 1), not a decision.
    const his = await approve('max', r.id);
    expect(his.status, JSON.stringify(his.body)).toBe(200);
    expect(his.body.status).toBe('pending');
    const entries = await audit(r.id);
    expect(entries.find((e) => e.type === 'reviewed')!.data['finalAuthority']).toBeUndefined();
    // Another member of the board, who did not escalate it, decides alone.
    const hers = await approve('bea', r.id);
    expect(hers.body.status).toBe('approved');
    expect(hers.body.decision!.deciders.map((d) => d.name)).toEqual(['max', 'bea']);
  });

  it('a reassignment to a friend at the final level gives them nothing; the agent cannot vote at all', async () => {
    const r = await create('wire_money');
    await byClockToFinal(r.id);
    const reassigned = await call<ApprovalRequest & ErrorOut>('lena', `/v1/requests/${r.id}/reassign`, { operator: 'friend', reason: 'my friend decides' });
    expect(reassigned.status, JSON.stringify(reassigned.body)).toBe(200);
    expect((await approve('lena', r.id)).body.status).toBe('pending'); // stage 1
    expect((await approve('friend', r.id)).body.error.code).toBe('NOT_ELIGIBLE'); // carol's stage is carol's (or the final authority's)
    expect((await call<ErrorOut>('agent', `/v1/requests/${r.id}/reviews`, { verdict: 'approve' })).status).toBe(403);
    expect((await get(r.id)).status).toBe('pending');
  });

  it('the final authority still needs the step-up MFA of a critical request; and at its timeout the request expires (onFinalTimeout: reject)', async () => {
    const crit = await create('isolate_host', { riskLevel: 'critical' });
    expect(crit.assessment.riskLevel).toBe('critical');
    expect(crit.escalation).toMatchObject({ level: 2 });
    expect((await escalate('dora', crit.id, 'board')).body.escalation).toMatchObject({ level: 3, finalAuthority: true });
    const refused = await approve('cfo', crit.id);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('MFA_REQUIRED');
    // The last level's deadline: no further level, onFinalTimeout applies (reject, the default: fail closed).
    const [timer] = (await server.engine.store.timers.requestTimers(crit.id)).filter((t) => t.kind === 'escalate');
    await server.engine.store.transaction(async (tx) => {
      await tx.timers.cancelRequestTimers(crit.id, ['escalate']);
      await tx.timers.insertTimers([{ ...timer!, due_at: Date.now() - 1 }]);
    });
    const done = await until('the final timeout', async () => {
      const now = await get(crit.id);
      return now.status === 'pending' ? undefined : now;
    });
    expect(done.status).toBe('expired');
    expect(done.decision!.reason).toMatch(/no decision by the end of escalation level 3 \(final authority\); onFinalTimeout: reject/);
  });

  it('critical starts straight at level 2: audited as an escalation with reason critical, counted, and the risk level’s channel is told', async () => {
    const before = await escalations(server.url, 'critical');
    const r = await create('isolate_host', { riskLevel: 'critical' });
    expect(r.escalation).toMatchObject({ level: 2, role: 'manager', groups: ['duty-managers'] });
    const entry = (await audit(r.id)).find((e) => e.type === 'escalated')!;
    expect(entry).toMatchObject({ actor: { type: 'system' }, data: { from: 1, to: 2, role: 'manager', reason: 'critical', riskLevel: 'critical', startedBy: { riskLevel: 'levels.critical.startLevel' } } });
    expect(await escalations(server.url, 'critical')).toBe(before + 1);
    // The risk level's channel hears of the new request (and of its outcome), besides level 2's.
    await until('the risk channel', async () => riskHook.received.find((h) => h.body.includes(r.id) && h.body.includes('countersign.request.requested')));
    await until('the level channel', async () => hook.received.find((h) => h.body.includes(r.id) && h.body.includes('countersign.request.requested')));
    expect((await call('admin', `/v1/requests/${r.id}/reviews`, { verdict: 'reject', reason: 'no' })).status).toBe(200);
    await until('the risk channel hears the outcome', async () => riskHook.received.find((h) => h.body.includes(r.id) && h.body.includes('countersign.request.decided')));
    // A high-risk request starts at level 1: no escalation entry, nothing counted.
    const high = await create('isolate_host');
    expect(high.escalation!.level).toBe(1);
    expect((await audit(high.id)).some((e) => e.type === 'escalated')).toBe(false);
    expect(await escalations(server.url, 'critical')).toBe(before + 1);
  });
});

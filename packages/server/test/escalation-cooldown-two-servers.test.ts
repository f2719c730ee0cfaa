/**
 * Escalation by cool-down across two servers (issue 18): two engines, each its own pool, on one
 * PostgreSQL database. Carol's automatic cool-down queues one `cooldown` timer; both servers fire
 * it at once, and a second cool-down (another key) is fired at the same moment too: each request
 * only she may approve moves up exactly one level, with exactly one `escalated` entry
 * (`reason: cooldown`), and the timer is gone after. (The row lock, the state's `lastCooldown`
 * key and the 60 s repeat guard; SQLite is one writer, covered by escalation-cooldown.test.ts.)
 */
import { CreateRequestBody, type AuditLeaf } from '@countersign/core';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { connect } from '../src/store/connect.ts';
import { postgresDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const POLICY = `
levels:
  high: { sla: 10m, mfa: false }
escalation:
  levels:
    - { role: reviewer, after: sla }
    - { role: lead, after: 20m }
    - { operators: [cfo], after: 30m, finalAuthority: true }
rules:
  - name: carols
    when: { action: carol_job }
    then: { riskAtLeast: high, approvers: [{ operator: carol }] }
  - name: team
    when: { action: team_job }
    then: { riskAtLeast: high, approvers: [{ role: reviewer }] }
guard:
  velocity: { perHour: 1000, perDay: 1000, riskLevels: [high, critical] }
  cooldown: { threshold: 2, window: 15m, duration: 30m, riskLevels: [high, critical] }
`;

describe('escalation by cool-down: two servers on one PostgreSQL database', () => {
  it('the same cool-down (and a second one) fired on both servers at once moves each stranded request one level, once', async () => {
    const database = postgresDatabase();
    const a = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
    let b: Engine | undefined;
    try {
      await a.activatePolicy(POLICY, 'test');
      const boot = (await a.bootstrap())!;
      const admin = (await a.authenticate(boot.adminToken))!;
      const agent = (await a.authenticate(boot.agentKey))!;
      const carol = (await a.authenticate((await a.createOperator(admin, { name: 'carol', roles: ['reviewer'] })).token))!;
      await a.createOperator(admin, { name: 'cfo', roles: ['reviewer'] });
      b = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
      await b.activatePolicy(POLICY, 'test');
      let n = 0;
      const create = async (action: string) => (await a.createRequest(agent, CreateRequestBody.parse({ action, args: { n: ++n }, confidence: 0.9 }))).request.id;
      const hers: string[] = [];
      for (let i = 0; i < 6; i++) hers.push(await create('carol_job'));
      for (let i = 0; i < 2; i++) await a.review(carol, await create('team_job'), { verdict: 'approve' });
      const due = await a.store.timers.claimDue(Date.now() + 1000, 100, 'test', 60_000, ['cooldown']);
      expect(due).toHaveLength(1);
      const timer = due[0]!;
      const second = { ...timer, id: `${timer.id}:second`, payload: JSON.stringify({ ...JSON.parse(timer.payload), key: `${timer.id}:second` }) };
      await a.store.transaction((tx) => tx.timers.insertTimers([second]));
      const outcomes = await Promise.all([a.fireTimer(timer), b.fireTimer(timer), b.fireTimer(second), a.fireTimer(second)]);
      expect(outcomes.filter((o) => o === 'escalated').length).toBeGreaterThanOrEqual(1);
      for (const id of hers) {
        const r = await a.getRequest(admin, id);
        expect(r.escalation!.level).toBe(2);
        const moves = (await a.auditForRequest(admin, id)).filter((e: AuditLeaf) => e.type === 'escalated');
        expect(moves).toHaveLength(1);
        expect(moves[0]!.data).toMatchObject({ reason: 'cooldown', operator: 'carol', from: 1, to: 2 });
      }
      expect(await a.store.timers.claimDue(Date.now() + 60_000, 100, 'probe', 1, ['cooldown'])).toEqual([]);
    } finally {
      await b?.close();
      await a.close();
      await database.drop();
    }
  }, 120_000);
});

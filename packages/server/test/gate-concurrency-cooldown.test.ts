/**
 * Issue 12, finding 5, the limit gate-concurrency.test.ts does not race: the cool-down threshold.
 * Two servers (two engines, each its own pool) on one PostgreSQL database, 20 concurrent
 * high-risk approvals by one reviewer with `cooldown.threshold: 3`: exactly 3 are accepted (the
 * third starts the cool-down), the rest are refused COOLDOWN_ACTIVE, and exactly 3
 * `approval_events` rows exist. The count is read and recorded under the approver's advisory
 * lock (store/counters.ts); with `CounterQueries.lock` a no-op this test fails (see the report).
 */
import { CreateRequestBody } from '@countersign/core';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { connect } from '../src/store/connect.ts';
import { postgresDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const POLICY = `
rules:
  - name: risky
    when: { action: [risky_op] }
    then: { riskAtLeast: high, review: true }
guard:
  velocity: { perHour: 1000, perDay: 1000, riskLevels: [high, critical] }
  cooldown: { threshold: 3, window: 15m, duration: 30m, riskLevels: [high, critical] }
`;

describe("the cool-down threshold holds across two servers on one PostgreSQL database", () => {
  it('20 concurrent high-risk approvals by one reviewer with threshold 3: exactly 3 accepted', async () => {
    const database = postgresDatabase();
    const a = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
    let b: Engine | undefined;
    try {
      await a.activatePolicy(POLICY, 'test');
      const boot = (await a.bootstrap())!;
      const admin = (await a.authenticate(boot.adminToken))!;
      const agent = (await a.authenticate(boot.agentKey))!;
      const { token } = await a.createOperator(admin, { name: 'rae', roles: ['reviewer'] });
      const reviewer = (await a.authenticate(token))!;
      b = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
      await b.activatePolicy(POLICY, 'test');
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push((await a.createRequest(agent, CreateRequestBody.parse({ action: 'risky_op', args: { n: i }, confidence: 0.9 }))).request.id);
      const servers = [a, b];
      const outcomes = await Promise.allSettled(ids.map((id, i) => servers[i % 2]!.review(reviewer, id, { verdict: 'approve' })));
      const accepted = outcomes.filter((o) => o.status === 'fulfilled');
      const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [(o.reason as { code?: string }).code] : []));
      expect(accepted).toHaveLength(3);
      expect(refused).toEqual(Array.from({ length: 17 }, () => 'COOLDOWN_ACTIVE'));
      const rows = await (a.store as unknown as { db: { selectFrom(t: string): any } }).db.selectFrom('approval_events').select((eb: any) => eb.fn.countAll().as('n')).executeTakeFirst();
      expect(Number(rows.n)).toBe(3);
    } finally {
      await b?.close();
      await a.close();
      await database.drop();
    }
  }, 60_000);
});

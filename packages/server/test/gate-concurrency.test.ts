/**
 * Issue 12, finding 5: the approver velocity limit and the agent rate limit were read-then-write
 * under READ COMMITTED, so on PostgreSQL 20 concurrent high-risk approvals with `perHour: 3`
 * let 11 through, and 30 concurrent creates with `perMinute: 5` let 15–16 through. Now each is
 * checked and recorded under a per-principal advisory lock on insert-only counters
 * (store/counters.ts). Two real server processes share one PostgreSQL database here, and the
 * requests are split between them. (With `CounterQueries.lock` made a no-op, this test fails:
 * see the lead's report.)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { CreateRequestBody } from '@countersign/core';
import { Engine } from '../src/engine/engine.ts';
import { loadOrCreateServerSecret } from '../src/keys/server-secret.ts';
import { connect } from '../src/store/connect.ts';
import { PG_BASE_URL, postgresDatabase } from './support/databases.ts';
import { api, startServerProcess, testKeyPaths, type ServerProcess } from './support/server-process.ts';

const POLICY = `
rules:
  - name: risky
    when: { action: [risky_op] }
    then: { riskAtLeast: high, review: true }
agents:
  burst-bot: { limits: { perMinute: 5 } }
guard:
  velocity: { perHour: 3, perDay: 50, riskLevels: [high, critical] }
  cooldown: { threshold: 100, window: 15m, duration: 30m, riskLevels: [high, critical] }
`;

function policyFile(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-gate-'));
  const file = join(dir, 'countersign.yaml');
  writeFileSync(file, yaml);
  return file;
}

describe('the gate\'s limits hold across two server processes on one PostgreSQL database', () => {
  it('20 concurrent high-risk approvals by one reviewer with perHour: 3 let exactly 3 through; 30 concurrent creates with perMinute: 5 let exactly 5', async () => {
    const database = postgresDatabase();
    const schema = new URL(database.url).searchParams.get('schema')!;
    // The same server secret file as the server processes: rows this engine writes are MACed under it.
    const engine = await Engine.open({ connection: await connect(database.url), serverSecret: loadOrCreateServerSecret(testKeyPaths(database.url).serverSecret) });
    const servers: ServerProcess[] = [];
    try {
      await engine.activatePolicy(POLICY, 'test');
      const boot = (await engine.bootstrap())!;
      const admin = (await engine.authenticate(boot.adminToken))!;
      const agent = (await engine.authenticate(boot.agentKey))!;
      const { token: reviewer } = await engine.createOperator(admin, { name: 'rae', roles: ['reviewer'] });
      const { key: burstKey } = await engine.createAgentKey(admin, 'burst-bot');
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const { request } = await engine.createRequest(agent, CreateRequestBody.parse({ action: 'risky_op', args: { n: i }, confidence: 0.9 }));
        expect(request.assessment.riskLevel).toBe('high');
        ids.push(request.id);
      }
      const env = { COUNTERSIGN_POLICY: policyFile(POLICY), COUNTERSIGN_TICK_MS: '60000' };
      servers.push(await startServerProcess(database.url, env), await startServerProcess(database.url, env));

      const approvals = await Promise.all(ids.map((id, i) => api<any>(servers[i % 2]!.url, reviewer, `/v1/requests/${id}/reviews`, { body: { verdict: 'approve' } })));
      const accepted = approvals.filter((r) => r.status === 200);
      const refused = approvals.filter((r) => r.status !== 200);
      expect(accepted).toHaveLength(3);
      expect(refused.every((r) => r.body.error.code === 'VELOCITY_LIMITED')).toBe(true);

      const creates = await Promise.all(
        Array.from({ length: 30 }, (_, i) => api<any>(servers[i % 2]!.url, burstKey, '/v1/requests', { body: { action: 'send_report', args: { n: i }, confidence: 0.99 } })),
      );
      const created = creates.filter((r) => r.status === 201);
      const limited = creates.filter((r) => r.status === 429);
      expect(created).toHaveLength(5);
      expect(limited).toHaveLength(25);
      expect(limited.every((r) => r.body.error.code === 'RATE_LIMITED' && r.body.error.details.retryAfter >= 1)).toBe(true);

      const client = new pg.Client({ connectionString: PG_BASE_URL });
      await client.connect();
      try {
        const events = await client.query(`SELECT count(*)::int AS n FROM ${schema}.approval_events`);
        expect(events.rows[0].n).toBe(3);
        const approved = await client.query(`SELECT count(*)::int AS n FROM ${schema}.requests WHERE status = 'approved' AND action = 'risky_op'`);
        expect(approved.rows[0].n).toBe(3);
      } finally {
        await client.end();
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
      await engine.close();
      await database.drop();
    }
  }, 120_000);
});

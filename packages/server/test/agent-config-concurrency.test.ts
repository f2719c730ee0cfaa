/**
 * Per-agent limits set through the API hold under concurrency on PostgreSQL exactly as the
 * global ones do (gate-concurrency.test.ts): two real server processes on one database, the
 * overlay set with the real CLI (`countersign agents config set`), 30 concurrent creates against a
 * per-agent `limits.perMinute: 5`, 20 concurrent high-risk approvals against a per-agent
 * `velocity.perHour: 3`. Then the CLI's get and a loosening that waits for another admin.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { postgresDatabase } from './support/databases.ts';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

const POLICY = `
rules:
  - name: risky
    when: { action: [risky_op] }
    then: { riskAtLeast: high, review: true }
guard:
  cooldown: { threshold: 100, window: 15m, duration: 30m, riskLevels: [high, critical] }
`;

describe('per-agent limits from the API hold across two server processes on one PostgreSQL database', () => {
  it('30 concurrent creates with an overlay perMinute: 5 let exactly 5 through; 20 concurrent approvals with an overlay velocity perHour: 3 let exactly 3', async () => {
    const database = postgresDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'countersign-agentcfg-'));
    const policyFile = join(dir, 'countersign.yaml');
    writeFileSync(policyFile, POLICY);
    const env = { COUNTERSIGN_POLICY: policyFile, COUNTERSIGN_TICK_MS: '60000' };
    const servers: ServerProcess[] = [];
    try {
      servers.push(await startServerProcess(database.url, env));
      servers.push(await startServerProcess(database.url, env));
      const [a, b] = servers as [ServerProcess, ServerProcess];
      const admin = a.bootstrap!.adminToken;
      const cli = (args: string[], token = admin) => runCli(args, { COUNTERSIGN_URL: a.url, COUNTERSIGN_TOKEN: token });
      const burstKey = (await api<any>(a.url, admin, '/v1/keys', { body: { agent: 'burst-bot' } })).body.key as string;
      const riskyKey = (await api<any>(a.url, admin, '/v1/keys', { body: { agent: 'risky-bot' } })).body.key as string;
      const reviewer = (await api<any>(a.url, admin, '/v1/operators', { body: { name: 'rae', roles: ['reviewer'] } })).body.token as string;

      // Tightening: applied at once by one admin.
      const setLimit = await cli(['agents', 'config', 'set', 'burst-bot', 'limits.perMinute=5']);
      expect(setLimit.stderr).toBe('');
      expect(setLimit.stdout).toContain('configuration version 1 applied');
      const setVelocity = await cli(['agents', 'config', 'set', 'risky-bot', 'velocity.perHour=3', '--json']);
      expect(JSON.parse(setVelocity.stdout)).toMatchObject({ status: 'applied', version: 1 });

      const creates = await Promise.all(Array.from({ length: 30 }, (_, i) => api<any>(servers[i % 2]!.url, burstKey, '/v1/requests', { body: { action: 'send_report', args: { n: i }, confidence: 0.99 } })));
      expect(creates.filter((r) => r.status === 201)).toHaveLength(5);
      const limited = creates.filter((r) => r.status === 429);
      expect(limited).toHaveLength(25);
      expect(limited.every((r) => r.body.error.code === 'RATE_LIMITED')).toBe(true);

      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await api<any>(b.url, riskyKey, '/v1/requests', { body: { action: 'risky_op', args: { n: i }, confidence: 0.9 } });
        expect(r.body.assessment.riskLevel).toBe('high');
        ids.push(r.body.id);
      }
      const approvals = await Promise.all(ids.map((id, i) => api<any>(servers[i % 2]!.url, reviewer, `/v1/requests/${id}/reviews`, { body: { verdict: 'approve' } })));
      expect(approvals.filter((r) => r.status === 200)).toHaveLength(3);
      expect(approvals.filter((r) => r.status !== 200).every((r) => r.body.error.code === 'VELOCITY_LIMITED')).toBe(true);

      // The CLI shows where each value came from; lifting the limit waits for another admin.
      const got = await cli(['agents', 'config', 'get', 'burst-bot']);
      expect(got.stdout).toMatch(/limits\.perMinute\s+5\s+overlay/);
      expect(got.stdout).toMatch(/levels\.medium\.autoApprove\s+true\s+policy \(levels\.medium\.autoApprove\)/);
      const lift = await cli(['agents', 'config', 'set', 'burst-bot', '--unset', 'limits.perMinute']);
      expect(lift.stdout).toContain('another admin must approve it');
      expect(lift.stdout).toContain('limits.perMinute');
      const own = await cli(['approve', /request (req_[0-9a-z]+)/.exec(lift.stdout)![1]!]);
      expect(own.code).not.toBe(0);
      expect(own.stderr).toContain('SELF_REVIEW');
      const bad = await cli(['agents', 'config', 'set', 'burst-bot', 'limits.perMinut=5']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('agents.burst-bot.limits.perMinut');
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
      await database.drop();
    }
  }, 120_000);
});

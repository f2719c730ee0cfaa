/**
 * The escalation issue's acceptance scenarios through the real `countersign serve` binary:
 * a 2-second SLA escalating to the end of its chain, approval by timeout, SIGKILL while
 * deadlines fall, and two processes sharing 1,000 due timers on one PostgreSQL database.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Countersign } from '@countersign/client';
import { CountersignError, CreateRequestBody, type ApprovalRequest } from '@countersign/core';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, PG_BASE_URL, postgresDatabase, sqliteDatabase } from './support/databases.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';
import { webhookReceiver } from './support/channel-standins.ts';

function policyFile(yaml: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'countersign-policy-')), 'countersign.yaml');
  writeFileSync(path, yaml);
  return path;
}

const FAST = { COUNTERSIGN_TICK_MS: '100' };
const CHAIN_2S = `
levels: { high: { sla: 2s } }
escalation:
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 2s }
    - { role: director, after: 2s }
`;
const QUEUED = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 };

type Audit = { items: Array<{ type: string; at: string; data: Record<string, unknown> }> };

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('acceptance: a 2-second SLA escalates to level 2, then 3, then expires as rejected', () => {
  it('the waiting agent receives expired with the reason; the audit trail shows each step; each level is told', async () => {
    const database = sqliteDatabase();
    const hook = await webhookReceiver();
    const secret = `whsec_${Buffer.from('acceptance-webhook-signing-key!!').toString('base64')}`;
    const policy = CHAIN_2S.replace('after: sla }', 'after: sla, notify: [soc] }').replace(/after: 2s }/g, 'after: 2s, notify: [soc] }') + `channels:\n  soc: { type: webhook, url: "${hook.url}" }\n`;
    const server = await startServerProcess(database.url, { ...FAST, COUNTERSIGN_POLICY: policyFile(policy), COUNTERSIGN_WEBHOOK_SECRET: secret });
    try {
      const { agentKey, adminToken } = server.bootstrap!;
      const cs = new Countersign({ url: server.url, apiKey: agentKey });
      const started = Date.now();
      const handle = await cs.requestApproval(QUEUED);
      expect(handle.request.escalation).toMatchObject({ level: 1, levels: 3, role: 'lead' });

      const levels: number[] = [];
      const watching = (async () => {
        for await (const state of handle.events()) if (state.escalation) levels.push(state.escalation.level);
      })();
      const err = await handle.decision({ timeoutMs: 20_000 }).catch((e: unknown) => e);
      await watching;
      const elapsed = Date.now() - started;
      expect(err).toBeInstanceOf(CountersignError);
      expect((err as CountersignError).code).toBe('APPROVAL_EXPIRED');
      expect((err as CountersignError).message).toContain('no decision by the end of escalation level 3 (director); onFinalTimeout: reject');
      expect(elapsed).toBeGreaterThanOrEqual(5_900);
      expect(elapsed).toBeLessThan(9_000);
      expect([...new Set(levels)]).toEqual([1, 2, 3]); // the agent's event stream saw each level

      const { body: request } = await api<ApprovalRequest>(server.url, adminToken, `/v1/requests/${handle.id}`);
      expect(request).toMatchObject({ status: 'expired', decision: { outcome: 'expired', decidedBy: 'timeout' } });
      const { body: all } = await api<Audit>(server.url, adminToken, `/v1/requests/${handle.id}/audit`);
      const audit = { items: all.items.filter((e) => e.type !== 'notified') }; // deliveries interleave; counted below
      expect(audit.items.map((e) => e.type)).toEqual(['created', 'queued', 'escalated', 'escalated', 'expired']);
      expect(audit.items[2]!.data).toMatchObject({ from: 1, to: 2, role: 'manager' });
      expect(audit.items[3]!.data).toMatchObject({ from: 2, to: 3, role: 'director' });
      const at = audit.items.map((e) => Date.parse(e.at));
      expect(at[2]! - at[0]!).toBeGreaterThanOrEqual(2_000);
      expect(at[3]! - at[2]!).toBeGreaterThanOrEqual(2_000);
      expect(at[4]! - at[3]!).toBeGreaterThanOrEqual(2_000);

      // Every level's channel heard of it, signed per Standard Webhooks, and of the outcome.
      await until('the decided notification', async () => (hook.received.length >= 4 ? true : undefined));
      const events = hook.received.map((r) => {
        const headers = { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
        return (new Webhook(secret).verify(r.body, headers) as { type: string; data: { sla: { level: number } } });
      });
      expect(events.map((e) => e.type)).toEqual(['countersign.request.requested', 'countersign.request.escalated', 'countersign.request.escalated', 'countersign.request.decided']);
      expect(events.slice(0, 3).map((e) => e.data.sla.level)).toEqual([1, 2, 3]);
      await until('four notified entries', async () => {
        const { body } = await api<Audit>(server.url, adminToken, `/v1/requests/${handle.id}/audit`);
        return body.items.filter((e) => e.type === 'notified').length === 4 ? true : undefined;
      });
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/countersign_escalations_total\{reason="sla_timeout"\} 2/);
      expect(metrics).toMatch(/countersign_notification_deliveries_total\{channel="soc",result="delivered"\} 4/);
    } finally {
      await server.stop();
      await hook.close();
      await database.drop();
    }
  });

  it('with onFinalTimeout: approve written explicitly, it is approved with decidedBy timeout', async () => {
    const database = sqliteDatabase();
    const policy = `levels: { high: { sla: 1s } }\nescalation:\n  levels: [{ role: lead, after: sla }, { role: manager, after: 1s }]\n  onFinalTimeout: approve\n`;
    const server = await startServerProcess(database.url, { ...FAST, COUNTERSIGN_POLICY: policyFile(policy) });
    try {
      const { agentKey } = server.bootstrap!;
      const cs = new Countersign({ url: server.url, apiKey: agentKey });
      const handle = await cs.requestApproval(QUEUED);
      const decision = await handle.decision({ timeoutMs: 15_000 });
      expect(decision).toMatchObject({ outcome: 'approved', decidedBy: 'timeout', action: 'isolate_host', args: { host: 'ws-042' } });
    } finally {
      await server.stop();
      await database.drop();
    }
  });
});

describe.each(ENGINES)('acceptance: SIGKILL while 50 deadlines fall ($name)', ({ make }) => {
  it('after restart each request escalates exactly once, also when the restart is killed mid-tick', async () => {
    const database = make();
    const policy = policyFile(`levels: { high: { sla: 2s } }\nescalation:\n  levels: [{ role: lead, after: sla }, { role: manager, after: 1h }]\n`);
    const env = { ...FAST, COUNTERSIGN_POLICY: policy, COUNTERSIGN_TIMER_LEASE_MS: '500' };
    let server: ServerProcess | undefined = await startServerProcess(database.url, env);
    const { agentKey, adminToken } = server.bootstrap!;
    try {
      const ids = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const res = await api<ApprovalRequest>(server!.url, agentKey, '/v1/requests', { body: { ...QUEUED, args: { host: `ws-${i}` } } });
          expect(res.body.status).toBe('pending');
          return res.body.id;
        }),
      );
      await server.kill();
      await new Promise((r) => setTimeout(r, 2_500)); // every deadline falls while nothing runs

      // Restart, and kill it again a moment into its first ticks (some timers fired, some leased).
      server = await startServerProcess(database.url, env);
      await new Promise((r) => setTimeout(r, 30));
      await server.kill();
      server = await startServerProcess(database.url, env);

      const counts = async () => {
        const per = await Promise.all(
          ids.map(async (id) => (await api<Audit>(server!.url, adminToken, `/v1/requests/${id}/audit`)).body.items.filter((e) => e.type === 'escalated').length),
        );
        return per;
      };
      await until('50 escalations', async () => ((await counts()).every((n) => n >= 1) ? true : undefined));
      await new Promise((r) => setTimeout(r, 1_000)); // leases of the killed run expire: nothing fires twice
      expect(await counts()).toEqual(ids.map(() => 1));
      for (const id of ids.slice(0, 5)) {
        const { body } = await api<ApprovalRequest>(server.url, adminToken, `/v1/requests/${id}`);
        expect(body.escalation).toMatchObject({ level: 2, role: 'manager' });
      }
    } finally {
      await server?.kill();
      await database.drop();
    }
    // Three server starts and 50 audit reads a round: 11–15 s on a quiet machine, over 30 s under load.
  }, 120_000);
});

describe('acceptance: two server processes on one PostgreSQL database', () => {
  it('1,000 timers due at the same moment fire exactly once in total', async () => {
    const database = postgresDatabase();
    // 1,000 creates in one go: above the default agent limit (600 a minute), so the test lifts it.
    const yaml = `levels: { high: { sla: 1h } }\nescalation:\n  levels: [{ role: lead, after: sla }, { role: manager, after: 1h }]\nguard:\n  agentLimits: { perMinute: 100000 }\n`;
    const engine = await Engine.open({ connection: await connect(database.url) });
    const schema = new URL(database.url).searchParams.get('schema')!;
    const servers: ServerProcess[] = [];
    try {
      await engine.activatePolicy(yaml, 'test');
      const boot = (await engine.bootstrap())!;
      const agent = (await engine.authenticate(boot.agentKey))!;
      const ids: string[] = [];
      const t0 = Date.now();
      for (let i = 0; i < 1000; i += 50) {
        const batch = await Promise.all(
          Array.from({ length: 50 }, (_, j) => engine.createRequest(agent, CreateRequestBody.parse({ ...QUEUED, args: { host: `ws-${i + j}` } }))),
        );
        ids.push(...batch.map((b) => b.request.id));
      }
      const t1 = Date.now();
      const env = { ...FAST, COUNTERSIGN_POLICY: policyFile(yaml) };
      servers.push(await startServerProcess(database.url, env), await startServerProcess(database.url, env));

      const client = new pg.Client({ connectionString: PG_BASE_URL });
      await client.connect();
      try {
        const now = Date.now();
        const moved = await client.query(`UPDATE ${schema}.timers SET due_at = $1 WHERE kind = 'escalate'`, [now]);
        expect(moved.rowCount).toBe(1000);
        await until('every due timer fired', async () => {
          const r = await client.query(`SELECT count(*)::int AS n FROM ${schema}.timers WHERE kind = 'escalate' AND due_at <= $1`, [now]);
          return r.rows[0].n === 0 ? true : undefined;
        }, 60_000);
        console.log(`1,000 requests created in ${t1 - t0} ms; 1,000 due timers fired by two processes in ${Date.now() - now} ms`);
        await new Promise((r) => setTimeout(r, 500));
        const fired = await client.query(`SELECT request_id, count(*)::int AS n FROM ${schema}.audit_log WHERE type = 'escalated' GROUP BY request_id`);
        expect(fired.rows).toHaveLength(1000);
        expect(fired.rows.every((r: { n: number }) => r.n === 1)).toBe(true);
        expect(new Set(fired.rows.map((r: { request_id: string }) => r.request_id))).toEqual(new Set(ids));
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

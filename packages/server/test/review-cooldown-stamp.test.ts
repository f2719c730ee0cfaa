/**
 * Red-team review of escalation by cool-down (issue 18): `fireCooldown` reads the clock once, at
 * the start of the sweep (`at`), and stamps every move with it (`enteredAt`, the new level's
 * `dueAt`). A sweep takes seconds to minutes (ARCHITECTURE measures 3-4 ms a pending request;
 * the scheduler's lease is 30 s). A request moved late in the sweep is therefore recorded as
 * having entered its level long before it did: its new deadline is shortened by the sweep's
 * length, and the 60 s repeat guard (`now - enteredAt < ESCALATION_REPEAT_MS`) runs out early, so
 * another cool-down (or a reviewer) can move it a second level moments after the first move.
 * Here the sweep's page read is slowed by 1.5 s (a big queue stand-in); the move is then stamped
 * as made before the page it was judged from had even been read.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApprovalRequest, EscalationState } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveServerConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/serve.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const POLICY = `
levels:
  high: { sla: 10m, mfa: false }
escalation:
  levels:
    - { role: reviewer, after: sla }
    - { role: lead, after: 20m }
    - { role: director, after: 30m }
rules:
  - name: carols
    when: { action: carol_job }
    then: { riskAtLeast: high, approvers: [{ operator: carol }] }
guard:
  velocity: { perHour: 1000, perDay: 1000, riskLevels: [high, critical] }
  cooldown: { threshold: 50, window: 15m, duration: 30m, riskLevels: [high, critical] }
`;

const SLOW_MS = 1500;

describe.each(ENGINES)('review: a cool-down move is stamped with the time it was made ($name)', ({ make }) => {
  let database: TestDatabase;
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

  beforeAll(async () => {
    database = make();
    const dir = mkdtempSync(join(tmpdir(), 'countersign-policy-'));
    writeFileSync(join(dir, 'countersign.yaml'), POLICY);
    server = await startServer(resolveServerConfig({ database: database.url, port: 0, policy: join(dir, 'countersign.yaml') }, { COUNTERSIGN_TICK_MS: '50' }), () => {});
    tokens['admin'] = server.bootstrap!.adminToken;
    tokens['agent'] = server.bootstrap!.agentKey;
    for (const [name, roles] of [['carol', ['reviewer']], ['lena', ['lead']]] as const) {
      const made = await call<{ token: string }>('admin', '/v1/operators', { name, roles: [...roles], groups: [] });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      tokens[name] = made.body.token;
    }
  }, 60_000);
  afterAll(async () => {
    await server.close();
    await database.drop();
  });

  it('review-cooldown: a request moved late in a slow sweep has enteredAt no earlier than the read it was judged from', async () => {
    const r = await call<ApprovalRequest>('agent', '/v1/requests', { action: 'carol_job', args: { n: 1 }, confidence: 0.9 });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const store = server.engine.store;
    const list = store.listRequests.bind(store);
    let pageReadAt = 0;
    // The sweep's page read (pending, oldest first, 200 a page) is slow, as on a big queue.
    store.listRequests = (async (q: Parameters<typeof list>[0]) => {
      const page = await list(q);
      if (q.status === 'pending' && q.order === 'oldest' && q.limit === 200) {
        await new Promise((res) => setTimeout(res, SLOW_MS));
        pageReadAt = Date.now();
      }
      return page;
    }) as typeof store.listRequests;
    try {
      const set = await call<{ active: boolean }>('lena', '/v1/approvers/carol/cooldown', { minutes: 30, reason: 'rest' });
      expect(set.status, JSON.stringify(set.body)).toBe(200);
      const end = Date.now() + 20_000;
      let state: EscalationState | undefined;
      while (Date.now() < end) {
        const [row] = await store.timers.escalationsFor([r.body.id]);
        const s = row ? (JSON.parse(row.state) as EscalationState) : undefined;
        if (s && s.level === 2) {
          state = s;
          break;
        }
        await new Promise((res) => setTimeout(res, 50));
      }
      expect(state, 'carol_job moved by the cool-down').toBeDefined();
      expect(pageReadAt).toBeGreaterThan(0);
      // The move cannot have been made before the page it was judged from was read.
      expect(state!.enteredAt).toBeGreaterThanOrEqual(pageReadAt - 5);
    } finally {
      store.listRequests = list;
    }
  }, 40_000);
});

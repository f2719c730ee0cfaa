/**
 * Issue 11, point 5: embedded mode has a human path. An embedded gateway and `countersign serve`
 * on the same SQLite file, as separate processes (the gateway in this test process, the server
 * and the CLI spawned as real binaries): whoever creates the file first, a person gets an admin
 * token, decides from the CLI, and the embedded waiter hears the decision within a couple of
 * seconds (cross-process wake-ups through PRAGMA data_version), not at its long-poll timeout.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createEmbeddedGateway, MEMORY_HINT, type EmbeddedGateway } from '../src/embedded.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

function database(): TestDatabase {
  const db = sqliteDatabase();
  cleanups.push(() => db.drop());
  return db;
}

async function gatewayOn(url: string, agent = 'embedded-agent'): Promise<EmbeddedGateway> {
  const g = await createEmbeddedGateway({ database: url, agent, sweepIntervalMs: 200, onWarning: () => {} });
  cleanups.push(() => g.close());
  return g;
}

async function server(url: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  const s = await startServerProcess(url, env);
  cleanups.push(() => s.stop());
  return s;
}

const PENDING = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 };

/** Approves through the real CLI; returns when the CLI process has exited. */
async function cliApprove(url: string, token: string, id: string): Promise<void> {
  const run = await runCli(['approve', id, '--reason', 'confirmed with IR'], { COUNTERSIGN_URL: url, COUNTERSIGN_TOKEN: token });
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
}

describe('embedded mode beside serve, on one SQLite file', () => {
  it('embedded first: serve on its file prints an admin token, and the CLI decides what the embedded agent waits for', async () => {
    const db = database();
    const gateway = await gatewayOn(db.url);
    // The embedded admin acts in-process and has no token anyone could lose.
    expect(gateway.admin.name).toBe('admin');
    const { request } = await gateway.createRequest(PENDING);
    expect(request.status).toBe('pending');

    const s = await server(db.url);
    expect(s.bootstrap, 'serve must give a person a way in').not.toBeNull();
    const token = s.bootstrap!.adminToken;
    const me = await api<{ name: string; roles: string[] }>(s.url, token, '/v1/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ name: 'admin', roles: ['admin'] });
    // The same operator the gateway acts as: one admin per database, not two.
    const ops = await api<{ items: Array<{ name: string }> }>(s.url, token, '/v1/operators');
    expect(ops.body.items.filter((o) => o.name === 'admin')).toHaveLength(1);
    const trail = await api<{ items: Array<{ type: string; data: Record<string, unknown> }> }>(s.url, token, '/v1/audit?type=operator_token_issued');
    expect(trail.body.items).toHaveLength(1);
    expect(trail.body.items[0]!.data).toMatchObject({ name: 'admin' });

    const waiting = gateway.getRequest(request.id, { waitSeconds: 60 });
    await cliApprove(s.url, token, request.id);
    const approvedAt = Date.now();
    const decided = await waiting;
    const heardAfter = Date.now() - approvedAt;
    expect(decided.status).toBe('approved');
    // Within a couple of seconds (polled every 250 ms); the long-poll alone would have taken 60 s.
    expect(heardAfter).toBeLessThan(5_000);
    console.log(`[cross-process wake-up, embedded waiter] heard a CLI approval ${heardAfter} ms after the CLI exited`);
  }, 180_000);

  it('server first: the embedded waiter notices a CLI approval within a couple of seconds', async () => {
    const db = database();
    const s = await server(db.url);
    const token = s.bootstrap!.adminToken;
    const gateway = await gatewayOn(db.url, 'embedded-beside-serve');
    // The gateway uses the admin serve created rather than making its own.
    expect(gateway.admin.operatorId).toBe(((await api<{ id: string }>(s.url, token, '/v1/me')).body).id);
    for (const host of ['ws-1', 'ws-2']) {
      const { request } = await gateway.createRequest({ ...PENDING, args: { host } });
      const waiting = gateway.getRequest(request.id, { waitSeconds: 60 });
      await cliApprove(s.url, token, request.id);
      const approvedAt = Date.now();
      expect((await waiting).status).toBe('approved');
      expect(Date.now() - approvedAt).toBeLessThan(5_000);
    }
  }, 180_000);

  it('the other direction: a server long-poll hears an approval given through gateway.review()', async () => {
    const db = database();
    const s = await server(db.url);
    const gateway = await gatewayOn(db.url, 'embedded-reviewer');
    const created = await api<{ id: string; status: string }>(s.url, s.bootstrap!.agentKey, '/v1/requests', { body: PENDING });
    expect(created.body.status).toBe('pending');
    const id = created.body.id;
    const waiting = api<{ status: string }>(s.url, s.bootstrap!.agentKey, `/v1/requests/${id}?waitSeconds=60`);
    await new Promise((r) => setTimeout(r, 300));
    await gateway.review(id, { verdict: 'approve', reason: 'in-process reviewer' });
    const reviewedAt = Date.now();
    expect((await waiting).body.status).toBe('approved');
    expect(Date.now() - reviewedAt).toBeLessThan(5_000);
  }, 180_000);

  it('a second serve start prints nothing new, and no restart ever mints an admin once a person held a token', async () => {
    const db = database();
    const first = await server(db.url);
    const token = first.bootstrap!.adminToken;
    await first.stop();
    const second = await server(db.url);
    expect(second.bootstrap).toBeNull();
    expect((await api(second.url, token, '/v1/me')).status).toBe(200);
    await second.stop();
    // An embedded gateway opening the file afterwards does not make a second admin or a token.
    const gateway = await gatewayOn(db.url, 'later-agent');
    expect(gateway.admin.name).toBe('admin');
    expect(await gateway.engine.store.countOperatorTokens()).toBe(1);
    await gateway.close();
    const third = await server(db.url);
    expect(third.bootstrap).toBeNull();
  }, 180_000);
});

describe('embedded mode on sqlite::memory:', () => {
  it('says once, when a request first waits for a human, that only gateway.review() can decide it', async () => {
    const warnings: string[] = [];
    const g = await createEmbeddedGateway({ database: 'sqlite::memory:', onWarning: (m) => warnings.push(m) });
    cleanups.push(() => g.close());
    await g.createRequest({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } });
    expect(warnings).toEqual([]); // decided by policy: nothing to say
    const first = await g.createRequest(PENDING);
    await g.createRequest({ ...PENDING, args: { host: 'ws-043' } });
    expect(warnings).toEqual([MEMORY_HINT.replace('{id}', first.request.id)]);
    expect(warnings[0]).toMatch(/gateway\.review\(/);
    expect(warnings[0]).toMatch(/countersign serve --database sqlite:/);
    // And review() is that path.
    expect((await g.review(first.request.id, { verdict: 'approve' })).status).toBe('approved');
  });

  it('on a file, it says nothing (the CLI and the dashboard can reach it through serve)', async () => {
    const warnings: string[] = [];
    const g = await createEmbeddedGateway({ database: database().url, onWarning: (m) => warnings.push(m) });
    cleanups.push(() => g.close());
    await g.createRequest(PENDING);
    expect(warnings).toEqual([]);
  });

  it('the CLI, with COUNTERSIGN_DATABASE_URL=sqlite::memory: and no server, explains why it cannot reach it', async () => {
    const run = await runCli(['status'], { COUNTERSIGN_URL: 'http://127.0.0.1:9', COUNTERSIGN_TOKEN: 'cso_x', COUNTERSIGN_DATABASE_URL: 'sqlite::memory:' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/NETWORK_ERROR/);
    expect(run.stderr).toMatch(/sqlite::memory:.*only the process that opened it/);
    expect(run.stderr).toMatch(/gateway\.review\(\)/);
    const plain = await runCli(['status'], { COUNTERSIGN_URL: 'http://127.0.0.1:9', COUNTERSIGN_TOKEN: 'cso_x' });
    expect(plain.stderr).not.toMatch(/memory/);
  }, 90_000);
});

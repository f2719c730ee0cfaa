/**
 * Issue 13, points 9 and 11: the database going away never kills the server, requests meanwhile
 * get 503 STORE_UNAVAILABLE (never 500 INTERNAL), and after it is back every waiting agent and
 * stream re-checks, so a decision made during the outage is not missed.
 *
 * - PostgreSQL, dropped connections: the real `countersign serve` processes, each with its own
 *   `application_name` (PGAPPNAME), have their backends killed with `pg_terminate_backend` (the
 *   57P01 a restart sends) while agents create and wait.
 * - PostgreSQL, a real outage: a private cluster (initdb into a temp dir, its own port, run as the
 *   postgres OS user) that the test stops and starts. Serial, and nothing else uses it.
 * - SQLite: another process holds the file's write lock.
 *
 * Bounds are generous (loaded machine); the old code crashed or hung past them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PG_BASE_URL, postgresDatabase, sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { QUEUED } from './support/engine.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function terminate(appName: string): Promise<number> {
  const client = new pg.Client({ connectionString: PG_BASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [appName]);
    return rows.length;
  } finally {
    await client.end();
  }
}

async function backendsOf(appName: string): Promise<number> {
  const client = new pg.Client({ connectionString: PG_BASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND query ILIKE 'LISTEN%'", [appName]);
    return (rows[0] as { n: number }).n;
  } finally {
    await client.end();
  }
}

function alive(server: ServerProcess): boolean {
  return server.child.exitCode === null && server.child.signalCode === null;
}

/** Reads an SSE stream into a list of `state` statuses until `stop` or the stream ends. */
function watchEvents(url: string, token: string, id: string): { statuses: string[]; stop: () => void; ended: Promise<void> } {
  const statuses: string[] = [];
  const controller = new AbortController();
  const ended = (async () => {
    const res = await fetch(`${url}/v1/requests/${id}/events`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    const decoder = new TextDecoder();
    let text = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
        const event = text.slice(0, end);
        text = text.slice(end + 2);
        const data = /^data: (.*)$/m.exec(event)?.[1];
        if (/^event: state$/m.test(event) && data) statuses.push((JSON.parse(data) as { status: string }).status);
      }
    }
  })().catch(() => {});
  return { statuses, stop: () => controller.abort(), ended };
}

/** Opens the operators' live feed (`/v1/events`) and resolves 'ended' when the server ends it. */
async function feedEnded(url: string, token: string): Promise<'ended'> {
  const res = await fetch(`${url}/v1/events`, { headers: { authorization: `Bearer ${token}` } });
  for await (const _chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    // read until the server closes it
  }
  return 'ended';
}

describe('PostgreSQL: connections killed with pg_terminate_backend (point 11)', () => {
  let database: TestDatabase;
  const s1Name = `cs_s1_${randomBytes(4).toString('hex')}`;
  const s2Name = `cs_s2_${randomBytes(4).toString('hex')}`;
  let s1: ServerProcess;
  let s2: ServerProcess;
  let admin: string;
  let agent: string;

  beforeAll(async () => {
    database = postgresDatabase();
    s1 = await startServerProcess(database.url, { PGAPPNAME: s1Name });
    admin = s1.bootstrap!.adminToken;
    agent = s1.bootstrap!.agentKey;
    s2 = await startServerProcess(database.url, { PGAPPNAME: s2Name });
  }, 60_000);
  afterAll(async () => {
    await s1?.stop();
    await s2?.stop();
    await database?.drop();
  });

  it('survives repeated kills while agents create and wait: every answer is 2xx or 503 STORE_UNAVAILABLE, never 500', async () => {
    const statuses: Array<{ status: number; code?: string }> = [];
    let running = true;
    const worker = async (n: number) => {
      for (let i = 0; running; i++) {
        try {
          const created = await api<{ id: string; error?: { code: string } }>(s1.url, agent, '/v1/requests', { body: { ...QUEUED, idempotencyKey: `w${n}-${i}` } });
          statuses.push({ status: created.status, ...(created.body.error ? { code: created.body.error.code } : {}) });
          if (created.status === 201 || created.status === 200) {
            const waited = await api<{ error?: { code: string } }>(s1.url, agent, `/v1/requests/${created.body.id}?waitSeconds=1`);
            statuses.push({ status: waited.status, ...(waited.body.error ? { code: waited.body.error.code } : {}) });
          }
        } catch {
          statuses.push({ status: -1 }); // a socket error: the process went away
        }
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    for (let k = 0; k < 6; k++) {
      await sleep(400);
      // Each round kills what the server has reconnected since the last one (on a loaded machine
      // it may still be backing off: wait for a backend first, so every round really kills one).
      const until = Date.now() + 10_000;
      while ((await backendsOf(s1Name)) === 0 && Date.now() < until) await sleep(50);
      expect(await terminate(s1Name)).toBeGreaterThan(0);
    }
    await sleep(500);
    running = false;
    await Promise.all(workers);

    expect(alive(s1)).toBe(true);
    const wrong = statuses.filter((s) => ![200, 201, 503].includes(s.status) || (s.status === 503 && s.code !== 'STORE_UNAVAILABLE'));
    expect(wrong).toEqual([]);
    expect(statuses.filter((s) => s.status === 201).length).toBeGreaterThan(0);
    expect(s1.stderr()).not.toMatch(/Unhandled|uncaught|INTERNAL/i);
    // And it recovers by itself: a create goes through, health is ok, the LISTEN connection is back.
    const deadline = Date.now() + 20_000;
    let health = 0;
    while (Date.now() < deadline && health !== 200) {
      health = (await fetch(`${s1.url}/healthz`)).status;
      if (health !== 200) await sleep(200);
    }
    expect(health).toBe(200);
    expect((await api(s1.url, agent, '/v1/requests', { body: QUEUED })).status).toBe(201);
    while (Date.now() < deadline && (await backendsOf(s1Name)) === 0) await sleep(200);
    expect(await backendsOf(s1Name)).toBe(1);
  }, 90_000);

  it('a decision made on another server while this one lost its connections reaches the agent waiting here (long-poll and event stream)', async () => {
    for (let round = 0; round < 3; round++) {
      const { body: created } = await api<{ id: string }>(s1.url, agent, '/v1/requests', { body: QUEUED });
      const events = watchEvents(s1.url, agent, created.id);
      const waiting = api<{ status: string }>(s1.url, agent, `/v1/requests/${created.id}?waitSeconds=60`);
      const feed = feedEnded(s1.url, admin);
      await sleep(500); // all are subscribed
      const started = Date.now();
      expect(await terminate(s1Name)).toBeGreaterThan(0);
      // Decided elsewhere at once: its NOTIFY goes out while s1 has no LISTEN connection.
      const reviewed = await api<{ status: string }>(s2.url, admin, `/v1/requests/${created.id}/reviews`, { body: { verdict: 'approve' } });
      expect(reviewed.status).toBe(200);
      const answer = await waiting;
      expect(answer.status).toBe(200);
      expect(answer.body.status).toBe('approved');
      // The old server never listened again: the poll sat out its 60 s.
      expect(Date.now() - started).toBeLessThan(20_000);
      const until = Date.now() + 20_000;
      while (Date.now() < until && !events.statuses.includes('approved')) await sleep(100);
      events.stop();
      expect(events.statuses).toContain('approved');
      // The dashboard's live feed may have missed changes: it is ended, so the browser reloads.
      expect(await Promise.race([feed, sleep(20_000).then(() => 'still open')])).toBe('ended');
    }
    expect(alive(s1)).toBe(true);
  }, 120_000);
});

const PG_BIN = (() => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const version = readdirSync(root).sort().at(-1);
  return version ? join(root, version, 'bin') : undefined;
})();

/** A private PostgreSQL cluster in a temp dir, on its own port, run as the `postgres` OS user when we are root. */
class PrivateCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'countersign-pgcluster-'));
  readonly port = 20_000 + Math.floor(Math.random() * 20_000);

  private run(tool: string, args: string[]): void {
    const path = join(PG_BIN!, tool);
    const asRoot = process.getuid?.() === 0;
    const result = asRoot ? spawnSync('runuser', ['-u', 'postgres', '--', path, ...args], { encoding: 'utf8' }) : spawnSync(path, args, { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${tool} failed: ${result.stderr || result.stdout}`);
  }

  init(): void {
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(this.dir, uid, gid);
      chmodSync(this.dir, 0o700);
    }
    this.run('initdb', ['-D', join(this.dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  }

  start(): void {
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-l', join(this.dir, 'log'), '-w', '-t', '60', '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  }

  stop(): void {
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'fast', '-w', '-t', '60', 'stop']);
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  destroy(): void {
    try {
      this.stop();
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe.skipIf(!PG_BIN)('PostgreSQL: a real outage, the cluster stopped and started (points 9 and 11)', () => {
  let cluster: PrivateCluster;
  let server: ServerProcess;
  let admin: string;
  let agent: string;

  beforeAll(async () => {
    cluster = new PrivateCluster();
    cluster.init();
    cluster.start();
    server = await startServerProcess(cluster.url, { COUNTERSIGN_AUDIT_KEY_PATH: join(cluster.dir, 'audit-key.pem') });
    admin = server.bootstrap!.adminToken;
    agent = server.bootstrap!.agentKey;
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    cluster?.destroy();
  });

  it('answers 503 STORE_UNAVAILABLE while the database is down, stays up, recovers by itself, and the waiting agent still hears a decision', async () => {
    const { body: created } = await api<{ id: string }>(server.url, agent, '/v1/requests', { body: QUEUED });
    const waiting = api<{ status: string }>(server.url, agent, `/v1/requests/${created.id}?waitSeconds=90`);
    await sleep(300);

    cluster.stop();
    const during = [
      await api<{ error: { code: string } }>(server.url, agent, '/v1/requests', { body: QUEUED }),
      await api<{ error: { code: string } }>(server.url, admin, `/v1/requests/${created.id}`),
      await api<{ error: { code: string } }>(server.url, admin, '/v1/requests?status=pending'),
      await api<{ error: { code: string } }>(server.url, admin, `/v1/requests/${created.id}/reviews`, { body: { verdict: 'approve' } }),
    ];
    for (const res of during) {
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('STORE_UNAVAILABLE');
    }
    expect((await fetch(`${server.url}/healthz`)).status).toBe(503);
    await sleep(3_000); // the LISTEN connection backs off meanwhile
    expect(alive(server)).toBe(true);

    cluster.start();
    const deadline = Date.now() + 30_000;
    let status = 0;
    while (Date.now() < deadline && status !== 201) {
      status = (await api(server.url, agent, '/v1/requests', { body: QUEUED })).status;
      if (status !== 201) await sleep(250);
    }
    expect(status).toBe(201);
    // Approved right away, possibly before the LISTEN connection is back: the re-check after it reconnects must catch it.
    const reviewed = await api<{ status: string }>(server.url, admin, `/v1/requests/${created.id}/reviews`, { body: { verdict: 'approve' } });
    expect(reviewed.status).toBe(200);
    const answer = await waiting;
    expect(answer.status).toBe(200);
    expect(answer.body.status).toBe('approved');
    expect(alive(server)).toBe(true);
    expect(server.stderr()).not.toMatch(/Unhandled|uncaught|INTERNAL/i);
  }, 180_000);
});

describe('SQLite: a locked file is STORE_UNAVAILABLE (point 9)', () => {
  let database: TestDatabase;
  let server: ServerProcess;
  beforeAll(async () => {
    database = sqliteDatabase();
    server = await startServerProcess(database.url);
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('a write while another process holds the write lock gets 503 STORE_UNAVAILABLE, and works once the lock is gone', async () => {
    const other = new SqliteDatabase(database.url.slice('sqlite:'.length));
    other.pragma('busy_timeout = 10000'); // the server's own writes hold the lock now and then
    other.exec('BEGIN EXCLUSIVE');
    try {
      const res = await api<{ error: { code: string } }>(server.url, server.bootstrap!.agentKey, '/v1/requests', { body: QUEUED });
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('STORE_UNAVAILABLE');
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect((await api(server.url, server.bootstrap!.agentKey, '/v1/requests', { body: QUEUED })).status).toBe(201);
    expect(alive(server)).toBe(true);
  }, 60_000);

  it('a database on a read-only mount: writes get 503 STORE_UNAVAILABLE (or the start is refused with it), never a crash or INTERNAL', async () => {
    const source = mkdtempSync(join(tmpdir(), 'countersign-ro-src-'));
    const target = mkdtempSync(join(tmpdir(), 'countersign-ro-'));
    const first = await startServerProcess(`sqlite:${join(source, 'countersign.db')}`);
    const agentKey = first.bootstrap!.agentKey;
    await first.stop();
    const bind = spawnSync('mount', ['--bind', source, target]);
    const ro = bind.status === 0 ? spawnSync('mount', ['-o', 'remount,bind,ro', target]) : bind;
    try {
      if (ro.status !== 0) {
        console.warn(`skipped: cannot make a read-only bind mount here (${String(ro.stderr).trim()})`);
        return;
      }
      // SQLite opens a read-only file read-only; a start that writes nothing may succeed. Either
      // it refuses to start with STORE_UNAVAILABLE, or every write is a 503 STORE_UNAVAILABLE.
      const outcome = await startServerProcess(`sqlite:${join(target, 'countersign.db')}`).then(
        (p) => p,
        (e: Error) => e.message,
      );
      if (typeof outcome === 'string') {
        expect(outcome).toContain('"code":"STORE_UNAVAILABLE"'); // serve --json prints the error as JSON
        expect(outcome).not.toMatch(/INTERNAL|at .*\.ts:\d+/);
      } else {
        try {
          const res = await api<{ error: { code: string } }>(outcome.url, agentKey, '/v1/requests', { body: QUEUED });
          expect(res.status).toBe(503);
          expect(res.body.error.code).toBe('STORE_UNAVAILABLE');
          expect(alive(outcome)).toBe(true);
        } finally {
          await outcome.stop();
        }
      }
    } finally {
      if (bind.status === 0) spawnSync('umount', [target]);
      rmSync(target, { recursive: true, force: true });
      rmSync(source, { recursive: true, force: true });
    }
  }, 60_000);
});

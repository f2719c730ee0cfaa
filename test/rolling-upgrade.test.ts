/**
 * A rolling upgrade on one PostgreSQL database: the previous release serves, the new release
 * starts beside it (and migrates the shared database while the old server keeps serving), both
 * take traffic, then the old one is stopped. Under load the whole time, nothing may fail and
 * nothing may be lost: every request either server accepted is there, in the state its reviews
 * left it, and the audit trail both servers wrote verifies.
 *
 * "Previous release" is PREVIOUS below: the last commit of main whose CI passed and landed
 * before the migrations 017, 019, 023 and 024 (so the new server really migrates under the old
 * one). There are no published tags; like test/version-skew.test.ts this takes that commit's own
 * packages with `git archive` and runs them from their sources, with this clone's third-party
 * node_modules linked in, so it tests our own code's compatibility across the upgrade.
 *
 * Not covered here: an old server that restarts after the new one migrated. PREVIOUS predates
 * the tolerance for newer migrations (store/connect.ts), so it would refuse the database; from
 * this release on an older server starts beside a newer schema
 * (packages/server/test/migrations-newer-release.test.ts).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresDatabase, type TestDatabase } from '../packages/server/test/support/databases.ts';
import { runCli, testKeyPaths } from '../packages/server/test/support/server-process.ts';

/** main at stop 22 (landed, CI passed): migrations up to 018_gatefin2, without 017, 019, 023, 024. */
const PREVIOUS = 'c856ea2';
const ROOT = resolve(import.meta.dirname, '..');
const OURS = ['core', 'client', 'server', 'mcp'];

interface Server {
  which: 'previous' | 'current';
  url: string;
  child: ChildProcess;
  stderr: () => string;
  bootstrap: { adminToken: string; agentKey: string } | null;
}

let base = '';
let previousBin = '';
let db: TestDatabase;
const children: ChildProcess[] = [];

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'countersign-rolling-'));
  const previous = join(base, 'previous');
  mkdirSync(previous);
  const archive = execFileSync('git', ['archive', '--format=tar', PREVIOUS, ...OURS.map((p) => `packages/${p}`), 'tools/dev'], { cwd: ROOT, maxBuffer: 256 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', previous], { input: archive });
  mkdirSync(join(previous, 'node_modules/@countersign'), { recursive: true });
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    if (entry === '@countersign' || entry === '.bin' || entry.startsWith('.')) continue;
    symlinkSync(join(ROOT, 'node_modules', entry), join(previous, 'node_modules', entry));
  }
  for (const p of OURS) symlinkSync(join(previous, 'packages', p), join(previous, 'node_modules/@countersign', p));
  writeFileSync(join(previous, 'package.json'), '{ "private": true, "type": "module" }\n');
  previousBin = join(previous, 'packages/server/bin/countersign.js');
  // The upgrade is only a test while the new release migrates: it must bring migrations the old one lacks.
  const before = execFileSync('git', ['ls-tree', '--name-only', PREVIOUS, 'packages/server/src/store/migrations/'], { cwd: ROOT, encoding: 'utf8' });
  expect(before).not.toContain('019_rollups');
  db = postgresDatabase();
}, 120_000);

afterAll(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }
  await db?.drop();
  if (base) rmSync(base, { recursive: true, force: true });
}, 30_000);

async function start(which: Server['which']): Promise<Server> {
  const bin = which === 'previous' ? previousBin : join(ROOT, 'packages/server/bin/countersign.js');
  const keys = testKeyPaths(db.url);
  const child = spawn(process.execPath, [bin, 'serve', '--json'], {
    cwd: base,
    env: {
      ...process.env,
      COUNTERSIGN_DATABASE_URL: db.url,
      COUNTERSIGN_PORT: '0',
      COUNTERSIGN_HOST: '127.0.0.1',
      COUNTERSIGN_POLICY: '',
      // One audit key and one server secret for every process on the database, as in production.
      COUNTERSIGN_AUDIT_KEY_PATH: keys.auditKey,
      COUNTERSIGN_SERVER_SECRET_PATH: keys.serverSecret,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const startup = new Promise<string>((ok) => lines.on('line', (line: string) => line.startsWith('{"url"') && ok(line)));
  const line = await Promise.race([
    startup,
    once(child, 'exit').then(([code]) => {
      throw new Error(`the ${which} server exited with ${String(code)}: ${stderr}`);
    }),
  ]);
  const info = JSON.parse(line) as { url: string; bootstrap: Server['bootstrap'] };
  return { which, url: info.url, child, stderr: () => stderr, bootstrap: info.bootstrap };
}

async function stop(server: Server): Promise<void> {
  const exited = once(server.child, 'exit');
  server.child.kill('SIGTERM');
  await exited;
}

interface Outcome {
  id: string;
  expect: 'executed' | 'rejected' | 'approved';
  createdOn: Server['which'];
}

describe(`rolling upgrade from ${PREVIOUS} on one PostgreSQL database`, () => {
  it('the old and the new release serve side by side under load: no errors, nothing lost, the trail verifies', async () => {
    const old = await start('previous');
    const { adminToken, agentKey } = old.bootstrap!;
    const live: Server[] = [old];
    const failures: string[] = [];
    const outcomes: Outcome[] = [];
    let turn = 0;

    async function call(server: Server, token: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
      const res = await fetch(`${server.url}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: await res.json() };
    }
    const pick = () => live[turn++ % live.length]!;
    const other = (s: Server) => live.find((x) => x !== s) ?? s;

    /** One unit of traffic: an auto-approved call run and reported, or a queued one decided on the other server. */
    async function unit(n: number): Promise<void> {
      const on = pick();
      if (n % 2 === 0) {
        const created = await call(on, agentKey, '/v1/requests', { action: 'block_ip', args: { ip: `198.51.100.${n % 250}` }, confidence: 0.97, context: { threatScore: 0.95 } });
        if (created.status !== 201 && created.status !== 200) return void failures.push(`create on ${on.which}: ${created.status} ${JSON.stringify(created.body)}`);
        const id = created.body.id as string;
        if (created.body.status !== 'approved') return void failures.push(`auto create on ${on.which} was ${created.body.status}`);
        // Claimed on the other release with the receipt this one signed (one audit key for both).
        const claim = await call(other(on), agentKey, `/v1/requests/${id}/execution`, { status: 'started', receipt: created.body.decision?.receipt });
        if (claim.status !== 200 || claim.body.status !== 'executing') return void failures.push(`claim on ${other(on).which}: ${claim.status} ${JSON.stringify(claim.body)}`);
        const report = await call(on, agentKey, `/v1/requests/${id}/execution`, { status: 'succeeded' });
        if (report.status !== 200) return void failures.push(`report on ${on.which}: ${report.status} ${JSON.stringify(report.body)}`);
        outcomes.push({ id, expect: 'executed', createdOn: on.which });
      } else {
        const created = await call(on, agentKey, '/v1/requests', { action: 'isolate_host', args: { host: `ws-${n}` }, confidence: 0.82 });
        if (created.status !== 201 && created.status !== 200) return void failures.push(`create on ${on.which}: ${created.status} ${JSON.stringify(created.body)}`);
        const id = created.body.id as string;
        const reviewer = other(on);
        const seen = await call(reviewer, adminToken, `/v1/requests/${id}`);
        if (seen.status !== 200 || seen.body.status !== 'pending') return void failures.push(`read on ${reviewer.which}: ${seen.status} ${JSON.stringify(seen.body).slice(0, 300)}`);
        const review = await call(reviewer, adminToken, `/v1/requests/${id}/reviews`, { verdict: 'reject', reason: `rolling upgrade ${n}` });
        if (review.status !== 200 || review.body.status !== 'rejected') return void failures.push(`reject on ${reviewer.which}: ${review.status} ${JSON.stringify(review.body).slice(0, 300)}`);
        outcomes.push({ id, expect: 'rejected', createdOn: on.which });
      }
      // The queue and the history as each server reads them, rows of the other release included.
      const listing = await call(other(on), adminToken, '/v1/requests?limit=20');
      if (listing.status !== 200) failures.push(`list on ${other(on).which}: ${listing.status} ${JSON.stringify(listing.body).slice(0, 300)}`);
    }

    let running = true;
    let n = 0;
    // Paced, and capped below the default per-agent limit of 600 requests a minute (the whole run
    // lasts about 10 s): a fast machine otherwise meets RATE_LIMITED, which is the limit working.
    const MAX_UNITS = 450;
    const workers = Array.from({ length: 3 }, async () => {
      while (running) {
        if (n >= MAX_UNITS) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        try {
          await unit(n++);
        } catch (err) {
          failures.push(`transport: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 75));
      }
    });
    const phase = (ms: number) => new Promise((r) => setTimeout(r, ms));

    await phase(2_000);
    const beforeNew = outcomes.length;
    const current = await start('current'); // migrates the shared database while the old server serves
    expect(current.bootstrap).toBeNull(); // the same installation: no second first-start
    live.push(current);
    await phase(5_000);
    const bothSides = outcomes.filter((o) => o.createdOn === 'current').length;
    live.splice(live.indexOf(old), 1); // drained first, as a load balancer would
    await phase(300);
    await stop(old);
    await phase(2_000);
    running = false;
    await Promise.all(workers);

    if (failures.length > 0) console.error(`previous server:\n${old.stderr()}\ncurrent server:\n${current.stderr()}`);
    expect(failures).toEqual([]);
    expect(beforeNew).toBeGreaterThan(0);
    expect(bothSides).toBeGreaterThan(0);
    expect(outcomes.filter((o) => o.createdOn === 'previous').length).toBeGreaterThan(beforeNew);

    // The new release migrated the database while the old one ran.
    const client = new pg.Client({ connectionString: db.url.replace(/\?schema=.*/, '') });
    await client.connect();
    try {
      const schema = new URL(db.url).searchParams.get('schema')!;
      const names = (await client.query(`select name from ${client.escapeIdentifier(schema)}.countersign_migrations`)).rows.map((r) => r.name as string);
      expect(names).toEqual(expect.arrayContaining(['017_agent_config', '019_rollups', '023_retrain', '024_gate12']));
    } finally {
      await client.end();
    }

    // Nothing lost: every request either release accepted reads back from the new one as its reviews left it.
    for (const o of outcomes) {
      const read = await call(current, adminToken, `/v1/requests/${o.id}`);
      expect({ id: o.id, status: read.status, state: read.body.status }).toEqual({ id: o.id, status: 200, state: o.expect });
    }

    // The trail both releases wrote verifies, through the new CLI against the new server.
    const verify = await runCli(['audit', 'verify'], { COUNTERSIGN_URL: current.url, COUNTERSIGN_TOKEN: adminToken });
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
    expect(current.stderr()).not.toMatch(/error|unhandled/i);
    await stop(current);
  }, 240_000);
});

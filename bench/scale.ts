/**
 * `npm run bench:scale` (issue 19): a year of history, then the API timed as a client would.
 *
 * 1. A server on a fresh database makes three real requests through the API (auto-approved,
 *    reviewed and approved, left pending): the templates, with the engine's own JSON shapes.
 * 2. The server stops; N requests (default 1,000,000; `--n 200000`) spread over the last 365 days
 *    are written through the store in batches (`Store.insertRequests`, 500 a statement, one
 *    transaction per batch): ~78 % auto-approved, ~2 % blocked, ~18 % reviewed (approved 85 %,
 *    rejected, some expired), the last week's reviewed ones partly still pending; risk levels,
 *    actions and three reviewers mixed; one vote per reviewed decision.
 * 3. The server starts again on that database and is timed over HTTP: the summary (default: 14
 *    days by day; and 90 days), a month's compliance report, the pending queue's first page and
 *    /metrics, each 5 times (median and worst), while the server's RSS is sampled every 10 ms.
 *
 * `--pending P` makes P of the N requests pending (spread evenly over the population, created in
 * the last ten minutes with an hour of SLA left, so the scheduler leaves them alone); without it
 * the mix above leaves about 1 in 550 pending. `--dashboard` (`npm run bench:dashboard`, which
 * also sets `--pending 100000`) then times the dashboard in Chromium (bench/dashboard-scale.ts):
 * the queue's first screen after sign-in and the Metrics screen, with a section of its own.
 *
 * `--db postgres` runs it on a fresh schema of the local PostgreSQL (COUNTERSIGN_TEST_PG_URL).
 * `--keep` leaves the populated database (it prints where) to study its plans (EXPLAIN); `--dry`
 * does not write BENCHMARKS.md (a smaller trial run).
 * The populated rows have no audit entries (bench/trail.ts measures the trail): the database size
 * printed is the requests' and votes', not a deployment's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { connect } from '../packages/server/src/store/connect.ts';
import { Store, type RequestRow } from '../packages/server/src/store/store.ts';
import { ensureDashboardBuilt } from '../packages/server/test/support/dashboard-browser.ts';
import { type DashboardTimes, medianAndWorst, timeDashboard } from './dashboard-scale.ts';
import { writeSection } from './sections.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const N = Number(arg('n') ?? 1_000_000);
const DIALECT = arg('db') === 'postgres' ? 'postgres' : 'sqlite';
const PG_BASE = process.env.COUNTERSIGN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const DAY = 86_400_000;
const BATCH = 500;
const KEEP = process.argv.includes('--keep');
const DRY = process.argv.includes('--dry');
const DASHBOARD = process.argv.includes('--dashboard');
const PENDING = Number(arg('pending') ?? 0);
if (!Number.isInteger(PENDING) || PENDING < 0 || PENDING > N) throw new Error(`--pending takes a whole number from 0 to --n (${N}): ${arg('pending')}`);
const TARGETS = { summary: 300, compliance: 1000, rssMb: 50 };

async function startServer(databaseUrl: string, dir: string): Promise<{ child: ChildProcess; url: string; bootstrap?: { agentKey: string; adminToken: string } }> {
  const policy = join(dir, 'countersign.yaml');
  writeFileSync(policy, 'guard:\n  agentLimits: { perMinute: 100000000 }\n');
  // In the scratch directory: a PostgreSQL server keeps its key files in its working directory.
  const child = spawn(process.execPath, [join(ROOT, 'packages/server/bin/countersign.js'), 'serve', '--json'], {
    cwd: dir,
    env: { ...process.env, COUNTERSIGN_DATABASE_URL: databaseUrl, COUNTERSIGN_PORT: '0', COUNTERSIGN_POLICY: policy, COUNTERSIGN_REVIEWER_LIMITS: 'off' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // A server that dies mid-run (a signal leaves nothing on its stderr) says so, instead of the next fetch's ECONNRESET alone.
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM') console.error(`server ${child.pid} exited: code ${code}, signal ${signal}`);
  });
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  const info = JSON.parse(line) as { url: string; bootstrap?: { agentKey: string; adminToken: string } };
  return { child, url: info.url, ...(info.bootstrap ? { bootstrap: info.bootstrap } : {}) };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** A small deterministic generator, so two runs populate the same mix. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-scale-'));
  const schema = `cs_scale_${randomBytes(4).toString('hex')}`;
  const databaseUrl = DIALECT === 'postgres' ? `${PG_BASE}?schema=${schema}` : `sqlite:${join(dir, 'countersign.db')}`;
  try {
    // 1. Templates through the API.
    const first = await startServer(databaseUrl, dir);
    const { agentKey, adminToken } = first.bootstrap!;
    const agent = { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' };
    const admin = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const post = async (body: unknown) => (await (await fetch(`${first.url}/v1/requests`, { method: 'POST', headers: agent, body: JSON.stringify(body) })).json()) as { id: string };
    const auto = await post({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, description: 'Block the source of a credential-stuffing burst' });
    const reviewed = await post({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 });
    const pending = await post({ action: 'isolate_host', args: { host: 'ws-043' }, confidence: 0.82 });
    const vote = await fetch(`${first.url}/v1/requests/${reviewed.id}/reviews`, { method: 'POST', headers: admin, body: '{"verdict":"approve"}' });
    if (vote.status !== 200) throw new Error(`review failed: ${vote.status} ${await vote.text()}`);
    await stop(first.child);

    // 2. Populate through the store.
    const connection = await connect(databaseUrl);
    const store = new Store(connection, undefined, { pollMs: 3_600_000 });
    const read = async (id: string) => (await store.getRequest(id))!;
    const [tAuto, tReviewed, tPending] = [await read(auto.id), await read(reviewed.id), await read(pending.id)];
    const tVote = (await store.reviewsFor([reviewed.id]))[0]!;
    const rand = rng(19);
    const now = Date.now();
    const levels = ['low', 'medium', 'high', 'critical'];
    const actions = ['block_ip', 'isolate_host', 'disable_user', 'rotate_key', 'quarantine_file'];
    const reviewers = [tVote.operator_id];
    const started = performance.now();
    for (let done = 0; done < N; done += BATCH) {
      const rows: RequestRow[] = [];
      const votes: Array<typeof tVote> = [];
      for (let i = done; i < Math.min(N, done + BATCH); i++) {
        const createdAt = now - Math.floor(((N - i) / N) * 365 * DAY) - Math.floor(rand() * 1000);
        const id = `req_s${i.toString(36).padStart(8, '0')}${randomBytes(4).toString('hex')}`;
        const action = actions[Math.floor(rand() * actions.length)]!;
        const risk = levels[Math.min(3, Math.floor(rand() * rand() * 4.5))]!;
        const roll = rand();
        const base = { created_at: createdAt, updated_at: createdAt, idempotency_key: null, action, action_key: action, risk_level: risk, queue_due_at: tPending.queue_due_at };
        // --pending: the i-th row is one of P evenly spread pending ones when floor(i·P/N) steps up.
        if (PENDING > 0 && Math.floor(((i + 1) * PENDING) / N) > Math.floor((i * PENDING) / N)) {
          const at = now - Math.floor(rand() * 600_000);
          const shift = at - tPending.created_at;
          const sla = new Date(at + 3_600_000).toISOString();
          const assessment = tPending.assessment.replace(/"slaDueAt":"[^"]*"/, `"slaDueAt":"${sla}"`);
          rows.push({
            ...tPending,
            ...base,
            id,
            assessment,
            created_at: at,
            updated_at: at,
            queue_due_at: tPending.queue_due_at + shift,
            expires_at: tPending.expires_at === null ? null : tPending.expires_at + shift,
          });
          continue;
        }
        if (roll < 0.78) {
          rows.push({ ...tAuto, ...base, id, decided_at: createdAt, claim_nonce: null, claim_expires_at: null });
        } else if (roll < 0.8) {
          rows.push({
            ...tAuto,
            ...base,
            id,
            route: 'block',
            status: 'rejected',
            decision: tAuto.decision!.replace('"approved"', '"rejected"'),
            decided_at: createdAt,
            claim_nonce: null,
            claim_expires_at: null,
          });
        } else {
          const sla = new Date(createdAt + 3_600_000).toISOString();
          const assessment = tPending.assessment.replace(/"slaDueAt":"[^"]*"/, `"slaDueAt":"${sla}"`);
          if (now - createdAt < 7 * DAY && rand() < 0.5) {
            rows.push({ ...tPending, ...base, id, assessment });
          } else {
            const took = Math.floor(30_000 + rand() * rand() * 7_200_000);
            const outcome = rand() < 0.85 ? 'approved' : rand() < 0.7 ? 'rejected' : 'expired';
            const decision = (outcome === 'expired' ? tReviewed.decision!.replace('"reviewers"', '"timeout"') : tReviewed.decision!).replace('"approved"', `"${outcome}"`);
            rows.push({ ...tReviewed, ...base, id, assessment, status: outcome, decision, decided_at: createdAt + took, claim_nonce: null, claim_expires_at: null });
            if (outcome !== 'expired') {
              votes.push({
                ...tVote,
                id: `rev_${id}`,
                request_id: id,
                operator_id: reviewers[Math.floor(rand() * reviewers.length)]!,
                verdict: outcome === 'approved' ? 'approve' : 'reject',
                created_at: createdAt + took,
              });
            }
          }
        }
      }
      await store.transaction(async (tx) => {
        await tx.insertRequests(rows);
        for (const v of votes) await tx.insertReview(v);
      });
      if (done % 50_000 === 0 && done > 0) console.log(`populated ${done}/${N} (${Math.round((performance.now() - started) / 1000)} s)`);
    }
    const populateSeconds = (performance.now() - started) / 1000;
    await store.close();
    let sizeMb: number;
    if (DIALECT === 'sqlite') {
      sizeMb = statSync(join(dir, 'countersign.db')).size / 1048576;
    } else {
      const c = new pg.Client({ connectionString: PG_BASE });
      await c.connect();
      // What autovacuum does to a table after this many inserts (autovacuum_vacuum_insert_threshold,
      // PostgreSQL 13+): statistics, and the visibility map that lets the history aggregates read
      // the covering index requests_history without touching the heap. Measured without the vacuum,
      // the 90-day summary's pass reads the whole table from the heap (about 7x slower here).
      await c.query(`vacuum analyze ${schema}.requests`);
      await c.query(`vacuum analyze ${schema}.reviews`);
      sizeMb = Number((await c.query(`select pg_total_relation_size('${schema}.requests') + pg_total_relation_size('${schema}.reviews') as n`)).rows[0].n) / 1048576;
      await c.end();
    }
    console.log(`populated ${N} requests in ${populateSeconds.toFixed(0)} s; database ${sizeMb.toFixed(0)} MiB`);

    // 3. Time the API.
    const server = await startServer(databaseUrl, dir);
    const pid = server.child.pid!;
    await fetch(`${server.url}/healthz`);
    const rssBefore = rssMb(pid);
    let rssPeak = rssBefore;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, rssMb(pid));
    }, 10);
    const iso = (ms: number) => new Date(ms).toISOString();
    const probes: Array<{ name: string; path: string; target?: number }> = [
      { name: 'summary, 14 days by day (default)', path: '/v1/metrics/summary', target: TARGETS.summary },
      { name: 'summary, 90 days by day', path: `/v1/metrics/summary?from=${iso(now - 90 * DAY)}`, target: TARGETS.summary },
      { name: 'compliance report, last 30 days', path: `/v1/reports/compliance?regulation=SOC2&from=${iso(now - 30 * DAY)}`, target: TARGETS.compliance },
      { name: 'compliance report, 365 days', path: `/v1/reports/compliance?regulation=SOC2&from=${iso(now - 366 * DAY)}` },
      { name: 'pending queue, first page', path: '/v1/requests?status=pending&limit=50' },
      { name: '/metrics', path: '/metrics' },
    ];
    const results: Array<{ name: string; median: number; max: number; target?: number }> = [];
    for (const p of probes) {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const res = await fetch(`${server.url}${p.path}`, { headers: { authorization: `Bearer ${adminToken}` } });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`${p.path}: ${res.status}`);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const r = { name: p.name, median: times[2]!, max: times[4]!, ...(p.target ? { target: p.target } : {}) };
      results.push(r);
      console.log(`${r.name}: median ${r.median.toFixed(0)} ms, max ${r.max.toFixed(0)} ms`);
    }
    clearInterval(sampler);
    let dashboard: DashboardTimes | undefined;
    let pendingNow = 0;
    if (DASHBOARD) {
      ensureDashboardBuilt();
      const count = await fetch(`${server.url}/v1/requests/count?status=pending`, { headers: { authorization: `Bearer ${adminToken}` } });
      pendingNow = ((await count.json()) as { total: number }).total;
      const made = await fetch(`${server.url}/v1/operators`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'bench-reviewer', roles: ['reviewer'] }) });
      if (made.status !== 201) throw new Error(`operator: ${made.status} ${await made.text()}`);
      dashboard = await timeDashboard(server.url, ((await made.json()) as { token: string }).token);
      const q = medianAndWorst(dashboard.queue);
      const m = medianAndWorst(dashboard.metrics);
      const a = medianAndWorst(dashboard.summaryApi);
      console.log(
        `dashboard (${pendingNow} pending): queue first screen median ${q.median.toFixed(0)} ms, worst ${q.worst.toFixed(0)} ms; metrics median ${m.median.toFixed(0)} ms, worst ${m.worst.toFixed(0)} ms (summary API median ${a.median.toFixed(0)} ms)`,
      );
      console.log(`queue first screen fetched: ${JSON.stringify(dashboard.queueFetches)}; ${dashboard.moreLine}`);
    }
    const growth = rssPeak - rssBefore;
    console.log(`server RSS ${rssBefore.toFixed(0)} MB before, peak ${rssPeak.toFixed(0)} MB: +${growth.toFixed(0)} MB`);
    await stop(server.child);

    const ok = (v: number, t: number) => (v <= t ? '✅' : '❌');
    const command = `npm run bench:scale -- --n ${N}${PENDING ? ` --pending ${PENDING}` : ''}${DASHBOARD ? ' --dashboard' : ''}${DIALECT === 'postgres' ? ' --db postgres' : ''}`;
    if (dashboard && !DRY) {
      const q = medianAndWorst(dashboard.queue);
      const m = medianAndWorst(dashboard.metrics);
      const a = medianAndWorst(dashboard.summaryApi);
      const f = dashboard.queueFetches;
      const ok1 = (v: number) => (v <= 1000 ? '✅' : '❌');
      writeSection(
        `dashboard${DIALECT === 'postgres' ? 'pg' : 'sqlite'}`,
        `## The dashboard at scale in Chromium: ${pendingNow.toLocaleString('en')} pending of ${N.toLocaleString('en')} requests, ${DIALECT === 'postgres' ? 'PostgreSQL' : 'SQLite'}

Produced by \`${command}\` (\`bench/scale.ts\` populating, \`bench/dashboard-scale.ts\` driving Debian's Chromium headless through playwright-core) on ${new Date().toISOString().slice(0, 10)}.
Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; shared with other work, so numbers vary between runs.
Each run signs in a reviewer in a fresh browser context (${dashboard.runs} runs after one warm-up); the browser and the server share the machine.

| screen (${dashboard.runs} runs) | median | worst | target |
| --- | --- | --- | --- |
| queue: "Sign in" clicked → first row and the "N more" line on screen | ${q.median.toFixed(0)} ms | ${q.worst.toFixed(0)} ms | ≤ 1000 ms ${ok1(q.worst)} |
| Metrics: nav clicked → tiles on screen (7 days by day) | ${m.median.toFixed(0)} ms | ${m.worst.toFixed(0)} ms | ≤ 1000 ms ${ok1(m.worst)} |
| of which the browser waited for \`GET /v1/metrics/summary\` | ${a.median.toFixed(0)} ms | ${a.worst.toFixed(0)} ms | — |

The queue's first screen fetched ${f.calls} \`GET /v1/requests\` page${f.calls === 1 ? '' : 's'} (largest \`limit\` ${f.maxLimit}): ${f.rows} rows, ${(f.bytes / 1024).toFixed(0)} KiB, whatever the size of the queue; it said "${dashboard.moreLine.trim()}".
`,
      );
    }
    // A run with its own pending mix (--pending, --dashboard) leaves the API section of the default mix as it was.
    if (!DRY && PENDING === 0 && !DASHBOARD)
      writeSection(
        `scale${DIALECT === 'postgres' ? 'pg' : 'sqlite'}`,
        `## A year of history: ${N.toLocaleString('en')} requests, ${DIALECT === 'postgres' ? 'PostgreSQL' : 'SQLite'}

Produced by \`${command}\` (\`bench/scale.ts\`) on ${new Date().toISOString().slice(0, 10)}.
Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; shared with other work, so numbers vary between runs.
Populated through the store in ${populateSeconds.toFixed(0)} s (batches of ${BATCH}); requests and votes take ${sizeMb.toFixed(0)} MiB (no audit entries: bench/trail.ts measures those).

| request (5 runs) | median | worst | target |
| --- | --- | --- | --- |
${results.map((r) => `| ${r.name} | ${r.median.toFixed(0)} ms | ${r.max.toFixed(0)} ms | ${r.target ? `≤ ${r.target} ms ${ok(r.max, r.target)}` : '—'} |`).join('\n')}
| server RSS growth over all of the above | +${growth.toFixed(0)} MB (${rssBefore.toFixed(0)} → ${rssPeak.toFixed(0)} MB) | | ≤ ${TARGETS.rssMb} MB ${ok(growth, TARGETS.rssMb)} |
`,
      );
  } finally {
    if (KEEP) console.log(`kept the database: ${databaseUrl}`);
    else rmSync(dir, { recursive: true, force: true });
    if (DIALECT === 'postgres' && !KEEP) {
      const c = new pg.Client({ connectionString: PG_BASE });
      await c.connect();
      await c.query(`drop schema if exists ${schema} cascade`);
      await c.end();
    }
  }
}

await main();

/**
 * The trail no longer serialises creates (issue 14): create throughput and latency with the
 * audit integrator, against bare baselines measured in the same run, on the same database.
 *
 * PostgreSQL (COUNTERSIGN_BENCH_PG_URL, default the local `test` database, a fresh schema):
 * - `countersign serve`, auto-approved creates, 32 connections spread over 32 agent keys, and all on one key;
 * - a bare pooled INSERT behind node:http (bench/bare-db.ts), and pg-boss `send` the same way;
 * - one agent calling alone (one connection): p99;
 * - two servers on the one database together (16 connections each) against one alone (32).
 * SQLite: `countersign serve` against a bare WAL/NORMAL single INSERT behind node:http.
 * Profile: one PostgreSQL create run under `node --cpu-prof`, self time by where it is spent.
 * Receipts: the cost of signing one (Ed25519) beside a create's.
 *
 *   node --import tsx bench/trail.ts     # BENCH_SECONDS (default 6), writes the `trail` section
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import autocannon, { type Result } from 'autocannon';
import pg from 'pg';
import { ephemeralAuditKey } from '../packages/server/src/audit/crypto.ts';
import { writeSection } from './sections.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DURATION = Number(process.env.BENCH_SECONDS ?? 6);
const PG_URL = process.env.COUNTERSIGN_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BODY = JSON.stringify({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, description: 'Block the source of a credential-stuffing burst' });

interface Child {
  child: ChildProcess;
  info: Record<string, unknown>;
}

async function startChild(args: string[], env: Record<string, string> = {}): Promise<Child> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  for await (const line of lines) {
    if (line.startsWith('{')) return { child, info: JSON.parse(line) as Record<string, unknown> };
  }
  throw new Error(`${args.join(' ')} exited before it was ready`);
}

async function stop(c: Child): Promise<void> {
  if (c.child.exitCode !== null) return;
  c.child.kill('SIGTERM');
  await once(c.child, 'exit');
}

const summarize = (r: Result) => ({ rps: Math.round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx + r.timeouts });
type Summary = ReturnType<typeof summarize>;

function load(url: string, keys: string[], connections: number, duration = DURATION): Promise<Result> {
  let n = 0;
  return autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(keys[0] ? { authorization: `Bearer ${keys[0]}` } : {}) },
    body: BODY,
    connections,
    duration,
    setupClient: (client: { setHeaders(h: Record<string, string>): void }) => {
      const key = keys[n++ % Math.max(1, keys.length)];
      client.setHeaders({ 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) });
    },
  } as never);
}

function serve(url: string, dir: string, extraNode: string[] = []): Promise<Child> {
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'guard:\n  agentLimits: { perMinute: 100000000, perHour: 1000000000 }\n');
  return startChild([...extraNode, 'packages/server/bin/countersign.js', 'serve', '--json'], {
    COUNTERSIGN_DATABASE_URL: url,
    COUNTERSIGN_PORT: '0',
    COUNTERSIGN_POLICY: policy,
    COUNTERSIGN_REVIEWER_LIMITS: 'off',
    COUNTERSIGN_AUDIT_KEY_PATH: join(dir, 'audit-key.pem'),
  });
}

async function agentKeys(url: string, adminToken: string, n: number): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${url}/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: `bench-agent-${i}` }) });
    if (res.status !== 201) throw new Error(`key ${i}: ${res.status} ${await res.text()}`);
    keys.push(((await res.json()) as { key: string }).key);
  }
  return keys;
}

async function pendingLeft(schema: string): Promise<{ pending: number; integrated: number }> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    const p = await client.query(`select count(*)::int as n from ${schema}.audit_pending`);
    const h = await client.query(`select seq from ${schema}.audit_head`);
    return { pending: p.rows[0].n as number, integrated: Number(h.rows[0].seq) };
  } finally {
    await client.end();
  }
}

async function dropSchemas(names: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    for (const s of names) await client.query(`drop schema if exists ${s} cascade`);
  } finally {
    await client.end();
  }
}

/** Self time of a .cpuprofile, grouped by where the code lives. */
function profileSummary(path: string): { groups: Array<[string, number]>; top: Array<[string, number]> } {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as { nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>; samples: number[]; timeDeltas: number[] };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  let total = 0;
  const groups = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    total += us;
    const file = url.replace(/^file:\/\//, '');
    const group =
      functionName === '(idle)' ? 'idle (waiting for I/O)'
      : functionName === '(garbage collector)' ? 'garbage collector'
      : functionName === '(program)' ? 'V8/native (program)'
      : /node_modules\/pg|pg-protocol|pg-pool/.test(file) ? 'pg driver'
      : /node_modules\/kysely/.test(file) ? 'kysely'
      : /node_modules\/(hono|@hono)/.test(file) ? 'hono'
      : /node_modules\/zod|zod-openapi/.test(file) ? 'zod (validation)'
      : /packages\/core/.test(file) ? 'countersign core (policy, gate, canonical JSON)'
      : /packages\/server\/src\/store/.test(file) ? 'countersign store'
      : /packages\/server\/src\/audit/.test(file) ? 'countersign audit (writer, redaction, receipts)'
      : /packages\/server/.test(file) ? 'countersign server (engine, http)'
      : file === '' || file.startsWith('node:') ? 'node internals (http, net, crypto, streams)'
      : 'other dependencies';
    groups.set(group, (groups.get(group) ?? 0) + us);
    if (!/^\((idle|program|garbage collector)\)$/.test(functionName)) {
      const name = `${functionName || '(anonymous)'} ${file ? relative(ROOT, file) : ''}:${lineNumber + 1}`;
      fns.set(name, (fns.get(name) ?? 0) + us);
    }
  }
  const pct = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, (100 * v) / total] as [string, number]);
  return { groups: pct(groups), top: pct(fns).slice(0, 12) };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-bench-trail-'));
  const tag = randomBytes(4).toString('hex');
  const schemas = [`bench_trail_${tag}`, `bench_bare_${tag}`, `bench_boss_${tag}`, `bench_boss_${tag}_boss`, `bench_prof_${tag}`];
  const pgUrl = (schema: string) => `${PG_URL}?schema=${schema}`;
  const r: Record<string, Summary> = {};
  const notes: string[] = [];
  const loadBefore = loadavg();
  let profile: ReturnType<typeof profileSummary> | undefined;
  let twoServersLeft = { pending: -1, integrated: -1 };
  try {
    // ---- PostgreSQL: Countersign
    const a = await serve(pgUrl(schemas[0]!), dir);
    const aUrl = a.info.url as string;
    const { adminToken, agentKey } = a.info.bootstrap as { adminToken: string; agentKey: string };
    const keys = await agentKeys(aUrl, adminToken, 32);
    await load(`${aUrl}/v1/requests`, keys, 32, 2); // warm-up
    r.pg32 = summarize(await load(`${aUrl}/v1/requests`, keys, 32));
    r.pg1key = summarize(await load(`${aUrl}/v1/requests`, [agentKey], 32));
    r.pgAlone = summarize(await load(`${aUrl}/v1/requests`, [keys[0]!], 1));
    // Two servers on one database: the second joins the first's schema.
    const b = await serve(pgUrl(schemas[0]!), dir);
    const bUrl = b.info.url as string;
    await load(`${bUrl}/v1/requests`, keys, 16, 2);
    const [ra, rb] = await Promise.all([load(`${aUrl}/v1/requests`, keys.slice(0, 16), 16), load(`${bUrl}/v1/requests`, keys.slice(16), 16)]);
    r.two_a = summarize(ra);
    r.two_b = summarize(rb);
    r.one = summarize(await load(`${aUrl}/v1/requests`, keys, 32));
    await new Promise((res) => setTimeout(res, 1500));
    twoServersLeft = await pendingLeft(schemas[0]!);
    await stop(b);
    await stop(a);

    // ---- PostgreSQL: baselines
    const bare = await startChild(['--import', './tools/dev/register.mjs', 'bench/bare-db.ts', 'pg-insert', pgUrl(schemas[1]!)]);
    await load(bare.info.url as string, [], 32, 2);
    r.pgBare = summarize(await load(bare.info.url as string, [], 32));
    r.pgBareAlone = summarize(await load(bare.info.url as string, [], 1));
    await stop(bare);
    try {
      const boss = await startChild(['--import', './tools/dev/register.mjs', 'bench/bare-db.ts', 'pg-boss', pgUrl(schemas[2]!)]);
      await load(boss.info.url as string, [], 32, 2);
      r.pgBoss = summarize(await load(boss.info.url as string, [], 32));
      await stop(boss);
    } catch (err) {
      notes.push(`pg-boss did not run: ${(err as Error).message}`);
    }

    // ---- SQLite
    const s = await serve(`sqlite:${join(dir, 'cs.db')}`, dir);
    const sKey = (s.info.bootstrap as { agentKey: string }).agentKey;
    await load(`${s.info.url as string}/v1/requests`, [sKey], 32, 2);
    r.sqlite = summarize(await load(`${s.info.url as string}/v1/requests`, [sKey], 32));
    await stop(s);
    const sb = await startChild(['--import', './tools/dev/register.mjs', 'bench/bare-db.ts', 'sqlite-insert', join(dir, 'bare.db')]);
    await load(sb.info.url as string, [], 32, 2);
    r.sqliteBare = summarize(await load(sb.info.url as string, [], 32));
    await stop(sb);

    // ---- Profile of the PostgreSQL create path
    const profDir = join(dir, 'prof');
    const p = await serve(pgUrl(schemas[4]!), dir, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
    const pKeys = await agentKeys(p.info.url as string, (p.info.bootstrap as { adminToken: string }).adminToken, 32);
    await load(`${p.info.url as string}/v1/requests`, pKeys, 32, 2);
    r.prof = summarize(await load(`${p.info.url as string}/v1/requests`, pKeys, 32));
    await stop(p);
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) profile = profileSummary(join(profDir, file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await dropSchemas(schemas).catch(() => {});
  }

  // ---- Receipts: one signature beside one create
  const key = ephemeralAuditKey();
  const message = new Uint8Array(300);
  const n = 5000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) key.sign(message);
  const signUs = Number(process.hrtime.bigint() - t0) / 1e3 / n;

  const loadAfter = loadavg();
  const x = (a: Summary | undefined, b: Summary | undefined) => (a && b ? (a.rps / b.rps).toFixed(2) : '—');
  const ratio = (a: Summary | undefined, b: Summary | undefined) => (a && b ? a.rps / b.rps : undefined);
  // Said plainly in the table: a target this run missed is marked missed, whatever the load.
  const met = (v: number | undefined, ok: (v: number) => boolean) => (v === undefined ? '—' : ok(v) ? 'yes' : '**no**');
  const row = (name: string, s: Summary | undefined) => (s ? `| ${name} | ${s.rps} | ${s.p50} | ${s.p99} | ${s.errors} |` : `| ${name} | — | — | — | — |`);
  const two = r.two_a && r.two_b ? { rps: r.two_a.rps + r.two_b.rps, p50: Math.max(r.two_a.p50, r.two_b.p50), p99: Math.max(r.two_a.p99, r.two_b.p99), errors: r.two_a.errors + r.two_b.errors } : undefined;
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const createUs = r.pg32 ? (1e6 / r.pg32.rps) * cpus().length : 0;
  const md = `## The trail no longer serialises creates (PostgreSQL and SQLite)

Produced by \`npm run bench\` (\`bench/trail.ts\`) on ${new Date().toISOString().slice(0, 10)}.
Machine: ${machine}, shared with other work: load average ${loadBefore.map((l) => l.toFixed(1)).join(' / ')} (1/5/15 min) before the run, ${loadAfter.map((l) => l.toFixed(1)).join(' / ')} after.
autocannon on loopback, ${DURATION} s per run after a 2 s warm-up; servers and baselines are child processes on the same two cores as the load generator.
${loadBefore[0]! > cpus().length ? 'Absolute numbers on a machine this loaded mean little; the' : 'The'} ratios are between runs of this one process, minutes apart.

| run | req/s | p50 ms | p99 ms | errors |
| --- | --- | --- | --- | --- |
${row('PG: countersign create, 32 connections over 32 agent keys', r.pg32)}
${row('PG: countersign create, 32 connections, one agent key', r.pg1key)}
${row('PG: countersign create, one agent alone (1 connection)', r.pgAlone)}
${row('PG: two servers on one database together (16 + 16 connections)', two)}
${row('PG: one server alone, same run (32 connections)', r.one)}
${row('PG: bare pooled INSERT behind node:http (pool of 10)', r.pgBare)}
${row('PG: bare pooled INSERT, 1 connection', r.pgBareAlone)}
${row('PG: pg-boss send behind node:http (pool of 10)', r.pgBoss)}
${row('SQLite: countersign create, 32 connections, one key', r.sqlite)}
${row('SQLite: bare single INSERT, WAL + synchronous=NORMAL', r.sqliteBare)}

| ratio | value | target | met |
| --- | --- | --- | --- |
| PG create (32 keys) / bare INSERT | ${x(r.pg32, r.pgBare)} | ≥ 0.5 (aim) | ${met(ratio(r.pg32, r.pgBare), (v) => v >= 0.5)} |
| PG create (one key) / bare INSERT | ${x(r.pg1key, r.pgBare)} | — | — |
| PG create (32 keys) / pg-boss send | ${x(r.pg32, r.pgBoss)} | > 1 (required) | ${met(ratio(r.pg32, r.pgBoss), (v) => v > 1)} |
| pg-boss send / bare INSERT | ${x(r.pgBoss, r.pgBare)} | (issue: 0.33) | — |
| PG one agent alone, p99 | ${r.pgAlone?.p99 ?? '—'} ms | ≤ 5 ms | ${met(r.pgAlone?.p99, (v) => v <= 5)} |
| two servers together / one alone | ${two && r.one ? (two.rps / r.one.rps).toFixed(2) : '—'} | ≥ 1 | ${met(two && r.one ? two.rps / r.one.rps : undefined, (v) => v >= 1)} |
| SQLite create / bare WAL+NORMAL INSERT | ${x(r.sqlite, r.sqliteBare)} | ≥ 0.3 | ${met(ratio(r.sqlite, r.sqliteBare), (v) => v >= 0.3)} |

After the two-server run and 1.5 s of quiet, ${twoServersLeft.pending} entries were still pending and ${twoServersLeft.integrated} integrated (every create writes its entries to \`audit_pending\`; the integrator gives them seqs and tree leaves in batches).

**Receipts.** Signing one receipt (Ed25519, this machine) takes ${signUs.toFixed(0)} µs; a create costs about ${createUs.toFixed(0)} µs of CPU at the PG 32-key rate above (${cpus().length} cores / req/s). Receipts stay signed per decision: the signature is ${createUs ? ((100 * signUs) / createUs).toFixed(1) : '?'} % of a create, it does not serialise anything (no shared row), and it lets an agent check its decision at once, offline; a checkpoint-inclusion receipt would make the agent wait for integration and the next checkpoint (seconds) for a saving of a few per cent.

**Where the create path's time goes** (PostgreSQL, 32 keys, \`node --cpu-prof\` on the server, ${r.prof?.rps ?? '?'} req/s under the profiler; self time):

| where | share |
| --- | --- |
${(profile?.groups ?? []).map(([k, v]) => `| ${k} | ${v.toFixed(1)} % |`).join('\n')}

Hottest functions (self time):

| function | share |
| --- | --- |
${(profile?.top ?? []).map(([k, v]) => `| \`${k.replace(/\|/g, '\\|')}\` | ${v.toFixed(1)} % |`).join('\n')}
${notes.length ? `\nNotes: ${notes.join('; ')}\n` : ''}
Tunables: \`BENCH_SECONDS\`, \`COUNTERSIGN_BENCH_PG_URL\`.
`;
  console.log(md);
  writeSection('trail', md);
}

await main();

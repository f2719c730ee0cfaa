/**
 * `npm run bench`: Countersign's create throughput against the bare-insert ceiling, and
 * decision-to-wakeup latency for a waiting client. Servers run as child processes (the real
 * `countersign serve` binary); the load generator (autocannon) runs here, so the two compete
 * only for the machine's cores, not for one event loop. Results go to BENCHMARKS.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon, { type Result } from 'autocannon';
import { writeSection } from './sections.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DURATION = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const WAKEUPS = Number(process.env.BENCH_WAKEUPS ?? 1000);

async function startChild(args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  return { child, info: JSON.parse(line) as Record<string, unknown> };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

function summarize(result: Result) {
  return {
    rps: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    ok: result['2xx'],
    errors: result.errors + result.non2xx + result.timeouts,
  };
}

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)]!;
}

const CREATE_BODY = JSON.stringify({
  action: 'block_ip',
  args: { ip: '203.0.113.7' },
  confidence: 0.97,
  description: 'Block the source of a credential-stuffing burst',
  context: { threatScore: 0.95, evidence: ['412 failed logins in 60 s from one address'] },
});

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-bench-'));
  const results: Record<string, ReturnType<typeof summarize>> = {};
  const wake: number[] = [];
  try {
    // 1. Countersign: create auto-decided requests (durable, assessed, audited).
    const cs = await startChild(['packages/server/bin/countersign.js', 'serve', '--json'], {
      COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'countersign.db')}`,
      COUNTERSIGN_PORT: '0',
      // The default policy limits every agent to 600 creates a minute (guard.agentLimits); the
      // throughput run is one agent far above that, so the bench lifts it.
      COUNTERSIGN_POLICY: (() => {
        const file = join(dir, 'countersign.yaml');
        writeFileSync(file, 'guard:\n  agentLimits: { perMinute: 100000000 }\n');
        return file;
      })(),
      // One operator approves every request of the wake-up run: lift the automatic reviewer
      // limits (velocity and cool-down), which would otherwise stop it after five.
      COUNTERSIGN_REVIEWER_LIMITS: 'off',
    });
    const url = cs.info.url as string;
    const { agentKey, adminToken } = cs.info.bootstrap as { agentKey: string; adminToken: string };
    const headers = { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' };
    await autocannon({ url: `${url}/v1/requests`, method: 'POST', headers, body: CREATE_BODY, connections: CONNECTIONS, duration: 2 }); // warm-up
    results.countersign = summarize(
      await autocannon({ url: `${url}/v1/requests`, method: 'POST', headers, body: CREATE_BODY, connections: CONNECTIONS, duration: DURATION }),
    );
    console.log('countersign create', results.countersign);

    // 3. Decision-to-wakeup: an agent long-polls, an operator decides, we time the gap.
    const queued = JSON.stringify({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 });
    const opHeaders = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    for (let i = 0; i < WAKEUPS; i++) {
      const created = (await (await fetch(`${url}/v1/requests`, { method: 'POST', headers, body: queued })).json()) as { id: string };
      const waiting = fetch(`${url}/v1/requests/${created.id}?waitSeconds=30`, { headers }).then(async (res) => {
        const now = performance.timeOrigin + performance.now();
        return { now, body: (await res.json()) as { status: string; decision: { at: string } } };
      });
      await new Promise((r) => setTimeout(r, 3)); // let the waiter arrive first
      const decided = await fetch(`${url}/v1/requests/${created.id}/reviews`, { method: 'POST', headers: opHeaders, body: '{"verdict":"approve"}' });
      if (decided.status !== 200) throw new Error(`review failed: ${decided.status} ${await decided.text()}`);
      const { now, body } = await waiting;
      if (body.status !== 'approved') throw new Error(`waiter saw ${body.status}`);
      wake.push(now - Date.parse(body.decision.at));
    }
    await stop(cs.child);

    // 2. The ceiling: a bare Hono route doing one insert into the same kind of database.
    const bare = await startChild(['--import', './tools/dev/register.mjs', 'bench/bare-server.ts', join(dir, 'bare.db')]);
    const bareUrl = `${bare.info.url as string}/insert`;
    await autocannon({ url: bareUrl, method: 'POST', headers: { 'content-type': 'application/json' }, body: CREATE_BODY, connections: CONNECTIONS, duration: 2 });
    results.bare = summarize(
      await autocannon({ url: bareUrl, method: 'POST', headers: { 'content-type': 'application/json' }, body: CREATE_BODY, connections: CONNECTIONS, duration: DURATION }),
    );
    console.log('bare insert', results.bare);
    await stop(bare.child);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  wake.sort((a, b) => a - b);
  const cs = results.countersign!;
  const bare = results.bare!;
  const ratio = cs.rps / bare.rps;
  const wakeP50 = percentile(wake, 50);
  const wakeP99 = percentile(wake, 99);
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const table = [
    '| measurement | result | target |',
    '| --- | --- | --- |',
    `| create, auto-decided (durable + audited), SQLite | ${cs.rps} req/s · p50 ${cs.p50} ms · p99 ${cs.p99} ms · ${cs.errors} errors | — |`,
    `| bare Hono route, one INSERT, same SQLite settings | ${bare.rps} req/s · p50 ${bare.p50} ms · p99 ${bare.p99} ms · ${bare.errors} errors | ceiling |`,
    `| Countersign / ceiling | ${(ratio * 100).toFixed(0)} % | ≥ 50 % ${ratio >= 0.5 ? '✅' : '❌'} |`,
    `| decision-to-wakeup, long-poll, ${wake.length} decisions | p50 ${wakeP50.toFixed(1)} ms · p99 ${wakeP99.toFixed(1)} ms · max ${wake.at(-1)!.toFixed(1)} ms | p99 ≤ 25 ms ${wakeP99 <= 25 ? '✅' : '❌'} |`,
  ].join('\n');
  console.log(`\n${table}\n`);
  writeSection(
    'http',
    `## HTTP: create throughput and decision-to-wakeup

Produced by \`npm run bench\` (\`bench/run.ts\`) on ${new Date().toISOString().slice(0, 10)}.
Machine: ${machine}. Load: autocannon, ${CONNECTIONS} connections, ${DURATION} s per run after a 2 s warm-up, on loopback.
Both servers are child processes; the load generator shares the same two cores.

${table}

How each number is made:
- **create**: \`POST /v1/requests\` with an agent key for \`block_ip\` at confidence 0.97, which the
  default policy auto-approves. Each request authenticates the key, validates the body, reads the
  agent's history, checks the agent is not paused or over its limits, evaluates the policy, signs
  the decision receipt (Ed25519), and commits the request row plus two audit entries (redacted,
  hashed into the Merkle tree, whose frontier and nodes are written in the same transaction) in
  one transaction (SQLite WAL, \`synchronous=FULL\`) before answering 201.
- **ceiling**: \`bench/bare-server.ts\`, the same HTTP adapter and the same SQLite settings, doing one
  INSERT of the raw body per request and nothing else, each its own transaction (one fsync each).
- Why Countersign can beat the "ceiling": its SQLite store groups the transactions that arrive
  together under one COMMIT (each in its own SAVEPOINT, so a failure undoes only its own writes)
  and answers each request only after that commit is on disk. The fsync, which dominates the bare
  route's cost, is shared by the group. Without grouping (an earlier version of this code) the
  same measurement gave about 37 % of the ceiling. History of this number: 115 % when the
  foundation landed; 49 % once the audit trail (Merkle tree, signed receipts, redaction) and the
  reviewer guards joined the create path; 52–61 % over several runs after the hottest inserts
  stopped paying the query builder on every call (\`store/insert-rows.ts\`). Runs on this shared
  machine vary by several points.
- **decision-to-wakeup**: ${wake.length} times: create a pending \`isolate_host\` request, start
  \`GET /v1/requests/:id?waitSeconds=30\` as the agent, approve it as an operator over HTTP, and take
  the time from the decision timestamp the server records (taken inside the transaction, before
  the commit, so the figure includes the commit) to the moment the waiter's response arrives.
  Same machine, same clock.

Tunables: \`BENCH_SECONDS\`, \`BENCH_CONNECTIONS\`, \`BENCH_WAKEUPS\`.
`,
  );
}

await main();

// Ad-hoc: profile one countersign serve under create load; prints self and inclusive time.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';

const db = process.argv[2] ?? 'pg';
const conns = Number(process.argv[3] ?? 32);
const nkeys = Number(process.argv[4] ?? 32);
const secs = Number(process.env.BENCH_SECONDS ?? 6);
const prof = process.env.NOPROF ? (process.env.EXTRA ? process.env.EXTRA.split(' ') : []) : ['--cpu-prof', '--cpu-prof-dir=' + '/tmp/perf14/prof'];
const dir = mkdtempSync(join(tmpdir(), 'cs-prof-'));
const policy = join(dir, 'policy.yaml');
writeFileSync(policy, 'guard:\n  agentLimits: { perMinute: 100000000, perHour: 1000000000 }\n');
const url = db === 'pg' ? `postgres://postgres@127.0.0.1:5432/test?schema=prof_${randomBytes(3).toString('hex')}` : `sqlite:${join(dir, 'cs.db')}`;
const child = spawn(process.execPath, [...prof, 'packages/server/bin/countersign.js', 'serve', '--json'], {
  env: { ...process.env, COUNTERSIGN_DATABASE_URL: url, COUNTERSIGN_PORT: '0', COUNTERSIGN_POLICY: policy, COUNTERSIGN_REVIEWER_LIMITS: 'off', COUNTERSIGN_AUDIT_KEY_PATH: join(dir, 'k.pem') },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let info: any;
for await (const line of createInterface({ input: child.stdout! })) if (line.startsWith('{')) { info = JSON.parse(line); break; }
child.stdout!.resume();
const base = info.url as string;
const keys: string[] = [];
for (let i = 0; i < nkeys; i++) {
  const res = await fetch(`${base}/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${info.bootstrap.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: `a-${i}` }) });
  keys.push(((await res.json()) as any).key);
}
const BODY = JSON.stringify({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, description: 'Block the source' });
const run = (d: number) => { let n = 0; return autocannon({ url: `${base}/v1/requests`, method: 'POST', body: BODY, connections: conns, duration: d,
  setupClient: (c: any) => c.setHeaders({ 'content-type': 'application/json', authorization: `Bearer ${keys[n++ % keys.length]}` }) } as never); };
await run(2);
const cpu = () => { const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
const c0 = cpu();
const r: any = await run(secs);
const cpuMs = cpu() - c0;
console.log(JSON.stringify({ rps: Math.round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx, n2xx: r['2xx'], cpuUsPerCreate: Math.round((cpuMs * 1000) / r['2xx']) }));
child.kill('SIGTERM'); await once(child, 'exit');
if (prof.length) {
  const f = readdirSync('/tmp/perf14/prof').filter((x) => x.endsWith('.cpuprofile')).sort().pop()!;
  console.log('profile', f);
}

/**
 * CLI cold start, as an installed user meets it: the packages are built, packed and installed
 * into an empty directory outside the repository (test/support/packed.ts), and the installed
 * `countersign` bin (plain node, dist/) is timed against `node -e 0` in the same run, the three
 * commands interleaved so each sees the same machine load:
 *
 * - `countersign --help` (target: at most 3× `node -e 0`);
 * - `countersign status` against a running `countersign serve` (embedded SQLite; target 5×).
 *
 *   node --import ./tools/dev/register.mjs bench/cli-start.ts     # BENCH_CLI_RUNS (default 21)
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildPackInstall, consumerEnv } from '../test/support/packed.ts';
import { writeSection } from './sections.ts';

const RUNS = Number(process.env.BENCH_CLI_RUNS ?? 21);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const installed = buildPackInstall();
const bin = join(installed.app, 'node_modules/.bin/countersign');
const server = spawn(bin, ['serve', '--json'], {
  cwd: installed.app,
  env: consumerEnv({ COUNTERSIGN_DATABASE_URL: `sqlite:${join(installed.app, 'countersign.db')}`, COUNTERSIGN_PORT: '0', COUNTERSIGN_HOST: '127.0.0.1' }),
  stdio: ['ignore', 'pipe', 'inherit'],
});
const [line] = (await once(createInterface({ input: server.stdout! }), 'line')) as [string];
const info = JSON.parse(line) as { url: string; bootstrap: { adminToken: string } };
const clientEnv = consumerEnv({ COUNTERSIGN_URL: info.url, COUNTERSIGN_TOKEN: info.bootstrap.adminToken });

const commands = {
  'node -e 0': [process.execPath, ['-e', '0']],
  'countersign --help': [bin, ['--help']],
  'countersign status': [bin, ['status']],
} as const;
const times: Record<keyof typeof commands, number[]> = { 'node -e 0': [], 'countersign --help': [], 'countersign status': [] };
const loadBefore = loadavg();
for (let i = 0; i < RUNS + 1; i++) {
  for (const [name, [file, args]] of Object.entries(commands) as [keyof typeof commands, readonly [string, readonly string[]]][]) {
    const started = performance.now();
    execFileSync(file, args, { cwd: installed.app, env: clientEnv, stdio: 'ignore' });
    if (i > 0) times[name].push(performance.now() - started); // the first round warms the page cache
  }
}
const loadAfter = loadavg();
server.kill('SIGTERM');
await once(server, 'exit');

const base = median(times['node -e 0']);
const row = (name: keyof typeof commands, target?: number) => {
  const ms = median(times[name]);
  const ratio = ms / base;
  return `| \`${name}\` | ${ms.toFixed(0)} | ${Math.min(...times[name]).toFixed(0)} | ${ratio.toFixed(2)}× | ${target ? `≤ ${target}× ${ratio <= target ? '(met)' : '(**not met**)'}` : ''} |`;
};
const markdown = `## CLI cold start (installed package, plain node)

\`node --import ./tools/dev/register.mjs bench/cli-start.ts\`: the packages built, packed and installed into an empty
directory outside the repository; each command run ${RUNS} times, the three interleaved, after one warm-up round.
\`status\` asks a running \`countersign serve\` (embedded SQLite, loopback, an empty queue). Ratios are of medians in this one run.

Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}.
Load average (1, 5, 15 min): ${loadBefore.map((l) => l.toFixed(2)).join(', ')} before, ${loadAfter.map((l) => l.toFixed(2)).join(', ')} after.

| command | median ms | min ms | vs \`node -e 0\` | target |
| --- | ---: | ---: | ---: | --- |
${row('node -e 0')}
${row('countersign --help', 3)}
${row('countersign status', 5)}
`;
writeSection('cli', markdown);
console.log(markdown);
process.exit(0);

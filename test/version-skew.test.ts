/**
 * Version skew: the previous client against this server, and this client against the previous
 * server. There is no published release yet, so "previous" is a commit of main: PREVIOUS below,
 * the first whose server issues version-2 decision receipts (nonce and expiry) and claims, which
 * is the wire contract the SDK checks. Its core, client, server and mcp packages are taken with
 * `git archive` into a temporary directory and run from their sources (through tsx, as that
 * commit's own bin does), with this clone's third-party node_modules linked in; so this tests
 * our own code's wire compatibility, not old versions of dependencies.
 *
 * Each pairing runs one guarded call end to end: create (auto-approved by the default policy),
 * the receipt checked against the server's audit key, the claim, the execution report; then
 * the request read back as the server recorded it.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** main's first commit with version-2 receipts ("Tests follow the merged rules: decision receipts are version 2"). */
const PREVIOUS = '576969b';
const ROOT = resolve(import.meta.dirname, '..');
const OURS = ['core', 'client', 'server', 'mcp'];
const run = promisify(execFile);

let base = '';
const trees: Record<'previous' | 'current', string> = { previous: '', current: '' };
const servers: ChildProcess[] = [];

/** A directory whose node_modules has this clone's dependencies and @countersign/* from `packages`. */
function tree(dir: string, packages: string): string {
  mkdirSync(join(dir, 'node_modules/@countersign'), { recursive: true });
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    if (entry === '@countersign' || entry === '.bin' || entry.startsWith('.')) continue;
    symlinkSync(join(ROOT, 'node_modules', entry), join(dir, 'node_modules', entry));
  }
  for (const p of OURS) symlinkSync(join(packages, p), join(dir, 'node_modules/@countersign', p));
  writeFileSync(join(dir, 'package.json'), '{ "private": true, "type": "module" }\n');
  return dir;
}

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'countersign-skew-'));
  const previous = join(base, 'previous');
  mkdirSync(previous);
  const archive = execFileSync('git', ['archive', '--format=tar', PREVIOUS, ...OURS.map((p) => `packages/${p}`)], { cwd: ROOT, maxBuffer: 256 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', previous], { input: archive });
  trees.previous = tree(previous, join(previous, 'packages'));
  trees.current = tree(join(base, 'current'), join(ROOT, 'packages'));
  // The pairings are only a test while the two sides differ.
  const changed = execFileSync('git', ['diff', '--stat', PREVIOUS, '--', ...OURS.map((p) => `packages/${p}/src`)], { cwd: ROOT, encoding: 'utf8' });
  expect(changed).not.toBe('');
}, 120_000);

afterAll(async () => {
  for (const s of servers) {
    if (s.exitCode !== null || s.signalCode !== null) continue;
    const exited = once(s, 'exit');
    s.kill('SIGTERM');
    const timer = setTimeout(() => s.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  if (base) rmSync(base, { recursive: true, force: true });
}, 30_000);

async function startServer(which: keyof typeof trees) {
  const dir = mkdtempSync(join(base, `db-${which}-`));
  const bin = join(trees[which], 'node_modules/@countersign/server/bin/countersign.js');
  const child = spawn(process.execPath, [bin, 'serve', '--json'], {
    cwd: dir,
    env: { ...process.env, COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'countersign.db')}`, COUNTERSIGN_PORT: '0', COUNTERSIGN_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const line = await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line').then(([l]) => l as string),
    once(child, 'exit').then(([code]) => {
      throw new Error(`the ${which} server exited with ${String(code)}: ${stderr}`);
    }),
  ]);
  return JSON.parse(line) as { url: string; bootstrap: { adminToken: string; agentKey: string } };
}

const AGENT = `
import { Countersign } from '@countersign/client';
const cs = new Countersign({ url: process.env.COUNTERSIGN_URL, apiKey: process.env.COUNTERSIGN_AGENT_KEY });
let ran = null;
const read = cs.guard(async (args) => { ran = args; return 'done'; }, { action: 'read_ticket', confidence: 0.9 });
const result = await read({ id: 'T-7' });
console.log(JSON.stringify({ result, ran }));
`;

async function agent(which: keyof typeof trees, server: { url: string; bootstrap: { agentKey: string } }) {
  const file = join(trees[which], 'agent.mjs');
  writeFileSync(file, AGENT);
  const { stdout } = await run(process.execPath, ['--import', 'tsx', file], {
    cwd: trees[which],
    env: { ...process.env, COUNTERSIGN_URL: server.url, COUNTERSIGN_AGENT_KEY: server.bootstrap.agentKey },
    encoding: 'utf8',
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { result: string; ran: unknown };
}

async function lastRequest(server: { url: string; bootstrap: { adminToken: string } }) {
  const res = await fetch(`${server.url}/v1/requests?limit=1`, { headers: { authorization: `Bearer ${server.bootstrap.adminToken}` } });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { requests?: { action: string; status: string }[]; items?: { action: string; status: string }[] };
  return (body.requests ?? body.items ?? [])[0];
}

describe(`version skew against ${PREVIOUS}`, () => {
  for (const [client, server] of [
    ['previous', 'current'],
    ['current', 'previous'],
  ] as const) {
    it(`the ${client} client runs a guarded call through the ${server} server`, async () => {
      const info = await startServer(server);
      const out = await agent(client, info);
      expect(out).toEqual({ result: 'done', ran: { id: 'T-7' } });
      expect(await lastRequest(info)).toMatchObject({ action: 'read_ticket', status: 'executed' });
    }, 180_000);
  }
});

/**
 * Issue 11 (the first hour), as a newcomer meets it, with the real binary: the first-start hint
 * on a non-default port and outside the clone (points 6, 7), policy reload on SIGHUP (point 9),
 * and `npm start` with HUP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { cliCommand, firstStartHint } from '../src/cli/commands/serve.ts';
import { BIN } from './support/server-process.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const cleanups: Array<() => void | Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cs-firsthour-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The environment a newcomer's shell has: none of the test runner's COUNTERSIGN_* or npm_* variables. */
function shellEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_') && !k.startsWith('npm_')) env[k] = v;
  return { ...env, ...extra };
}

interface Running {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
  /** Resolves with the first stdout line matching `re` (or rejects after `ms`). */
  line(re: RegExp, ms?: number): Promise<string>;
  /** Resolves once stderr matches `re`. */
  err(re: RegExp, ms?: number): Promise<string>;
  exited: Promise<void>;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Running {
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let errors = '';
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    wake();
  });
  child.stderr!.on('data', (d: Buffer) => {
    errors += d.toString();
    wake();
  });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  const until = <T>(probe: () => T | undefined, what: string, ms: number) =>
    new Promise<T>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`timed out waiting for ${what}; stdout: ${lines.join('\n')}; stderr: ${errors}`)), ms);
      const check = () => {
        const found = probe();
        if (found !== undefined) {
          clearTimeout(timer);
          ok(found);
        } else waiters.push(check);
      };
      check();
    });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return {
    child,
    lines,
    stderr: () => errors,
    line: (re, ms = 60_000) => until(() => lines.find((l) => re.test(l)), String(re), ms),
    err: (re, ms = 60_000) => until(() => (re.test(errors) ? errors : undefined), String(re), ms),
    exited,
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(probe: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (probe()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return probe();
}

function sh(script: string, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    const child = spawn('sh', ['-c', script], { cwd, env: shellEnv() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => ok({ code, stdout, stderr }));
  });
}

describe('the first-start hint (points 6 and 7)', () => {
  it('on a non-default port, outside the clone, prints lines that work when pasted into another shell', async () => {
    const dir = tempDir();
    const server = run(process.execPath, [BIN, 'serve'], dir, shellEnv({ COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'cs.db')}`, COUNTERSIGN_PORT: '0' }));
    const listening = await server.line(/^Countersign listening on /);
    const url = listening.replace('Countersign listening on ', '').trim();
    expect(url).not.toMatch(/:8080$/);
    const statusLine = await server.line(/ status\b/);
    const start = server.lines.findIndex((l) => l.startsWith('Try it'));
    const hint = server.lines.slice(start + 1);
    expect(hint).toContain(`  export COUNTERSIGN_URL=${url}`);
    // Outside the clone `npx countersign` would go to the registry (404): the hint names the script.
    expect(statusLine.trim()).toBe(`node ${BIN} status`);
    // Pasted, from yet another directory, they work: the curl files a request, status lists it.
    const elsewhere = tempDir();
    const pasted = hint.slice(0, hint.indexOf(statusLine) + 1).join('\n');
    const result = await sh(pasted, elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/"status":"pending"/);
    expect(result.stdout).toMatch(/isolate_host/);
    expect(result.stdout).toMatch(/1 pending approval/);
  }, 120_000);

  it('inside the clone it says `npx countersign`, and where the script is for anywhere else', () => {
    expect(cliCommand(ROOT)).toBe('npx countersign');
    expect(cliCommand(join(ROOT, 'packages/server'))).toBe('npx countersign');
    expect(cliCommand(tmpdir())).toBe(`node ${BIN}`);
    expect(cliCommand('/x', '/x', '/odd dir/it\'s/countersign.js')).toBe('npx countersign');
    expect(cliCommand('/y', '/x', "/odd dir/it's/countersign.js")).toBe(`node '/odd dir/it'\\''s/countersign.js'`);
    const hint = firstStartHint('http://127.0.0.1:9090', { adminToken: 'cso_a', agentKey: 'csk_b' }, 'npx countersign', 'node /c/bin/countersign.js');
    expect(hint).toContain('export COUNTERSIGN_URL=http://127.0.0.1:9090');
    expect(hint).toContain('npx countersign status        # inside the clone; from anywhere: node /c/bin/countersign.js status');
  });
});

const GOOD = 'levels:\n  low: { sla: 45m, autoApprove: true }\n';
const TYPOS = 'levls:\n  low: { sla: 45m }\nautomaton:\n  full: 0.9\n';

describe('policy reload on SIGHUP (point 9)', () => {
  it('picks up a countersign.yaml created after start, and a refused reload names every bad key with "did you mean"', async () => {
    const dir = tempDir();
    const server = run(process.execPath, [BIN, 'serve'], dir, shellEnv({ COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'cs.db')}`, COUNTERSIGN_PORT: '0' }));
    expect(await server.line(/policy: /)).toMatch(/built-in default/);
    const pid = Number((await server.line(/pid: /)).match(/pid:\s+(\d+)/)![1]);
    expect(pid).toBe(server.child.pid);

    writeFileSync(join(dir, 'countersign.yaml'), GOOD);
    process.kill(pid, 'SIGHUP');
    // Log lines are JSON on stdout (log.ts); the message is the sentence it always was.
    const active = JSON.parse(await server.line(/policy v\d+ active/)) as { level: string; msg: string };
    expect(active).toMatchObject({ level: 'info' });
    expect(active.msg).toContain(`active (${join(dir, 'countersign.yaml')})`);

    writeFileSync(join(dir, 'countersign.yaml'), TYPOS);
    process.kill(pid, 'SIGHUP');
    const refused = JSON.parse(await server.line(/reload refused.*automaton/)) as { level: string; msg: string };
    expect(refused.level).toBe('error');
    const log = refused.msg;
    expect(log).toMatch(/levls: unknown key \(did you mean "levels"\?\)/);
    expect(log).toMatch(/automaton: unknown key \(did you mean "automation"\?\)/);
    expect(alive(pid)).toBe(true); // still serving, on the last good policy
  }, 120_000);

  it('`npm start`: HUP to the server reloads; HUP to npm (which cannot forward it) stops the server too, leaving no orphan', async () => {
    const dir = tempDir();
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, GOOD);
    const npm = run('npm', ['start', '--silent'], ROOT, shellEnv({ COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'cs.db')}`, COUNTERSIGN_PORT: '0', COUNTERSIGN_POLICY: policy }));
    const pid = Number((await npm.line(/pid: /, 90_000)).match(/pid:\s+(\d+)/)![1]);
    // `exec`: the server is npm's own child, no shell in between, so the pid printed is the one to signal.
    expect(pid).not.toBe(npm.child.pid);
    process.kill(pid, 'SIGHUP');
    await npm.line(/policy v\d+ active/);
    expect(alive(pid)).toBe(true);

    npm.child.kill('SIGHUP');
    await npm.exited;
    expect(await waitFor(() => !alive(pid), 15_000), 'the server outlived npm').toBe(true);
  }, 150_000);
});

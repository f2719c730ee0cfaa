/** Runs the real `countersign` binary as a child process, the way a user would. */
import { createHash } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = fileURLToPath(new URL('../../bin/countersign.js', import.meta.url));

export interface ServerProcess {
  url: string;
  bootstrap: { adminToken: string; agentKey: string } | null;
  child: ChildProcess;
  stderr: () => string;
  /** Everything the server printed on stdout so far: the startup line and the JSON log lines. */
  stdout: () => string;
  /** SIGKILL: no shutdown hooks run. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Where a test's PostgreSQL server processes keep their audit key and server secret: one pair per
 * database, the same on a restart and for every process on that database, never shared with
 * another database (a shared secret path under tmpdir() would let one test's file sign another's rows).
 */
export function testKeyPaths(databaseUrl: string): { auditKey: string; serverSecret: string } {
  const tag = createHash('sha256').update(databaseUrl).digest('hex').slice(0, 16);
  return { auditKey: join(tmpdir(), `countersign-test-audit-key-${tag}.pem`), serverSecret: join(tmpdir(), `countersign-test-server-secret-${tag}`) };
}

export async function startServerProcess(databaseUrl: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--json'], {
    env: {
      ...process.env,
      COUNTERSIGN_DATABASE_URL: databaseUrl,
      COUNTERSIGN_PORT: '0',
      COUNTERSIGN_POLICY: '',
      // The audit key defaults to the working directory for PostgreSQL; keep tests out of the repository.
      // One key per database (its signer state lives next to it, and a key signs one trail), the same on a restart.
      ...(databaseUrl.startsWith('postgres') ? { COUNTERSIGN_AUDIT_KEY_PATH: testKeyPaths(databaseUrl).auditKey, COUNTERSIGN_SERVER_SECRET_PATH: testKeyPaths(databaseUrl).serverSecret } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errors = '';
  child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const lines = createInterface({ input: child.stdout! });
  // The startup line (--json) is the first with a `url`; JSON log lines (log.ts) may come before it.
  let output = '';
  const startup = new Promise<string>((ok) => {
    lines.on('line', (line: string) => {
      output += `${line}\n`;
      if (!line.startsWith('{"url"')) return;
      ok(line);
    });
  });
  const first = await Promise.race([
    startup,
    once(child, 'exit').then(([code]) => {
      throw new Error(`server exited with ${code}: ${errors}`);
    }),
  ]);
  const info = JSON.parse(first) as { url: string; bootstrap: { adminToken: string; agentKey: string } | null };
  const exited = once(child, 'exit');
  return {
    url: info.url,
    bootstrap: info.bootstrap,
    child,
    stderr: () => errors,
    stdout: () => output,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function api<T = unknown>(
  url: string,
  token: string,
  path: string,
  init: { method?: string; body?: unknown } = {},
): Promise<{ status: number; body: T }> {
  const res = await fetch(`${url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: { authorization: `Bearer ${token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `countersign …` once with none of the caller's COUNTERSIGN_* variables, only `env`'s. */
export function runCli(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<CliRun> {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) clean[k] = v;
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { ...(cwd ? { cwd } : {}), env: { ...clean, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => ok({ code, stdout, stderr }));
  });
}

/** A real `countersign serve` child process on a temporary SQLite file, and a few admin helpers. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ApprovalRequest } from '@countersign/core';

const BIN = fileURLToPath(new URL('../../../server/bin/countersign.js', import.meta.url));

export interface TestServer {
  url: string;
  adminToken: string;
  agentKey: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `policy`: YAML merged over the defaults (written to a file the server loads). */
export async function startServer(options: { policy?: string } = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-sdk-'));
  if (options.policy !== undefined) writeFileSync(join(dir, 'policy.yaml'), options.policy);
  const child = spawn(process.execPath, [BIN, 'serve', '--json'], {
    cwd: dir, // no stray ./countersign.yaml is picked up
    env: {
      ...process.env,
      COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'countersign.db')}`,
      COUNTERSIGN_PORT: '0',
      COUNTERSIGN_HOST: '127.0.0.1',
      COUNTERSIGN_POLICY: options.policy === undefined ? '' : join(dir, 'policy.yaml'),
      COUNTERSIGN_ADMIN_TOKEN: '',
      COUNTERSIGN_AGENT_KEY: '',
      // One admin approves dozens of high-risk requests within seconds here; the reviewer
      // protections (cool-downs, velocity limits) would rightly stop that.
      COUNTERSIGN_REVIEWER_LIMITS: 'off',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout! });
  const first = await Promise.race([
    once(lines, 'line').then(([line]) => line as string),
    exited.then(([code]) => {
      throw new Error(`countersign serve exited with ${String(code)}: ${stderr}`);
    }),
  ]);
  const info = JSON.parse(first) as { url: string; bootstrap: { adminToken: string; agentKey: string } };
  return {
    url: info.url,
    adminToken: info.bootstrap.adminToken,
    agentKey: info.bootstrap.agentKey,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function api<T = unknown>(server: TestServer, path: string, init: { token?: string; body?: unknown } = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method: init.body === undefined ? 'GET' : 'POST',
    headers: {
      authorization: `Bearer ${init.token ?? server.adminToken}`,
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** Waits (test-side polling) for the next pending request of `action`, as an operator sees the queue. */
export async function nextPending(
  server: TestServer,
  action: string,
  match: (request: ApprovalRequest) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<ApprovalRequest> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api<{ items: ApprovalRequest[] }>(server, `/v1/requests?status=pending&action=${action}&limit=500`);
    const found = body.items.find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no pending ${action} request within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function review(server: TestServer, id: string, body: Record<string, unknown>, token?: string) {
  return api<ApprovalRequest & { error?: { code: string; message: string } }>(server, `/v1/requests/${id}/reviews`, {
    body,
    ...(token ? { token } : {}),
  });
}

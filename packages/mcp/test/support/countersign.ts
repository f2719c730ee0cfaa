/**
 * A real `countersign serve` child process (the server's own binary) on a temporary SQLite
 * file, with a test policy, plus the operator-side helpers the tests decide with.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ApprovalRequest } from '@countersign/core';

const BIN = fileURLToPath(new URL('../../../server/bin/countersign.js', import.meta.url));

/**
 * Reads are cheap and sure (low weight, reversible); deletes are destructive (and "delete" is a
 * dangerous keyword, so they always need a human). Anything unknown needs a human unless the
 * request is confident (≥ 0.8), which the gateway sends only for hinted or trusted read-only tools.
 */
export const TEST_POLICY = `
actions:
  docs__read_doc: { weight: 0.1, reversible: true, category: investigation }
  docs__delete_doc: { weight: 0.9, reversible: false, category: destructive }
  Read: { weight: 0.1, reversible: true, category: investigation }
`;

export interface TestCountersign {
  url: string;
  adminToken: string;
  agentKey: string;
  stop(): Promise<void>;
}

export async function startCountersign(policy = TEST_POLICY): Promise<TestCountersign> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-mcp-'));
  const policyPath = join(dir, 'countersign.yaml');
  writeFileSync(policyPath, policy);
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) clean[k] = v;
  const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--json'], {
    cwd: dir,
    env: {
      ...clean,
      COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'countersign.db')}`,
      COUNTERSIGN_PORT: '0',
      COUNTERSIGN_HOST: '127.0.0.1',
      COUNTERSIGN_POLICY: policyPath,
      COUNTERSIGN_AUDIT_KEY_PATH: join(dir, 'audit-key.pem'),
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
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function api<T = unknown>(cs: TestCountersign, path: string, init: { token?: string; body?: unknown } = {}) {
  const res = await fetch(`${cs.url}${path}`, {
    method: init.body === undefined ? 'GET' : 'POST',
    headers: {
      authorization: `Bearer ${init.token ?? cs.adminToken}`,
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

export async function getRequest(cs: TestCountersign, id: string): Promise<ApprovalRequest> {
  return (await api<ApprovalRequest>(cs, `/v1/requests/${id}`)).body;
}

/** Waits (test-side polling) for pending requests of `action` matching `match`, as an operator sees the queue. */
export async function pending(
  cs: TestCountersign,
  action: string,
  match: (r: ApprovalRequest) => boolean = () => true,
  count = 1,
  timeoutMs = 10_000,
): Promise<ApprovalRequest[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api<{ items: ApprovalRequest[] }>(cs, `/v1/requests?status=pending&action=${encodeURIComponent(action)}&limit=500`);
    const found = body.items.filter(match);
    if (found.length >= count) return found;
    if (Date.now() > deadline) throw new Error(`fewer than ${count} pending ${action} requests within ${timeoutMs} ms (found ${found.length})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function review(cs: TestCountersign, id: string, body: Record<string, unknown>) {
  const res = await api<ApprovalRequest & { error?: { code: string; message: string } }>(cs, `/v1/requests/${id}/reviews`, { body });
  if (res.status !== 200) throw new Error(`review of ${id} failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

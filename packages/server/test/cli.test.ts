/**
 * The `countersign` client commands end to end: a real server process, real CLI processes, no
 * mocks. One server for the whole file; the tests run concurrently (each works on its own
 * requests, agents and operators), since starting CLI processes is what takes the time.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_YAML, type ApprovalRequest } from '@countersign/core';
import { runCli, type CliRun } from './support/server-process.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const BIN = join(ROOT, 'packages/server/bin/countersign.js');

interface Started {
  url: string;
  bootstrap: { adminToken: string; agentKey: string; operatorId: string; agentId: string };
}

let server: ChildProcessWithoutNullStreams;
let dir: string;
let url: string;
let adminToken: string;
let agentKey: string;
let serverLog = '';

/** Environment for child processes: no COUNTERSIGN_* leaking in from the test runner's shell. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) env[k] = v;
  return { ...env, ...extra };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-cli-'));
  // Screening's default blocks text it scores as an injection; this file checks how the CLI shows
  // hostile text, so such requests are held for review instead, where `show` has them to print.
  const policy = join(dir, 'countersign.yaml');
  writeFileSync(policy, `${DEFAULT_POLICY_YAML}\nscreening:\n  effects:\n    block: { route: review }\n`);
  server = spawn(process.execPath, [BIN, 'serve', '--json'], {
    cwd: dir,
    env: cleanEnv({ COUNTERSIGN_DATABASE_URL: `sqlite:${join(dir, 'x.db')}`, COUNTERSIGN_PORT: '0', COUNTERSIGN_POLICY: policy }),
  });
  server.stderr.on('data', (d: Buffer) => (serverLog += d.toString()));
  const stderr = () => serverLog;
  const first = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start: ${stderr()}`)), 15_000);
    server.once('exit', (code) => fail(new Error(`server exited with ${code}: ${stderr()}`)));
    createInterface({ input: server.stdout }).once('line', (line) => {
      clearTimeout(timer);
      ok(line);
    });
  });
  const started = JSON.parse(first) as Started;
  url = started.url;
  adminToken = started.bootstrap.adminToken;
  agentKey = started.bootstrap.agentKey;
}, 30_000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((ok) => server.once('exit', ok));
    server.kill('SIGTERM');
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Run = CliRun;

/** Runs the CLI as its own process, with COUNTERSIGN_URL/TOKEN set (admin unless overridden). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { COUNTERSIGN_URL: url, COUNTERSIGN_TOKEN: adminToken, ...env }, dir);
}

async function api<T>(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: T }> {
  if (server.exitCode !== null || server.signalCode !== null) {
    throw new Error(`the server exited (${server.exitCode ?? server.signalCode}): ${serverLog}`);
  }
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

async function propose(body: Record<string, unknown> = {}, key = agentKey): Promise<ApprovalRequest> {
  const res = await api<ApprovalRequest>('POST', '/v1/requests', key, {
    action: 'isolate_host',
    args: { host: 'ws-042' },
    confidence: 0.82,
    ...body,
  });
  expect(res.status).toBe(201);
  expect(res.body.status).toBe('pending');
  return res.body;
}

const UNKNOWN_ID = 'req_00000000000000000000000000';

describe.concurrent('countersign client commands', () => {
  it('--help works in a real process (every command is checked in cli-unit.test.ts)', async () => {
    const run = await cli(['approve', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: countersign approve [options] <id>');
    for (const flag of ['--reason', '--args', '--alternative', '--totp', '--url', '--token', '--json']) expect(run.stdout).toContain(flag);
  }, 30_000);

  it('status lists pending requests; approve decides one', async () => {
    const req = await propose();
    const status = await cli(['status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^ID\s+ACTION\s+AGENT\s+RISK\s+CONF\s+AGE\s+LEVEL\s+SLA LEFT/);
    const row = status.stdout.split('\n').find((l) => l.startsWith(req.id));
    expect(row).toMatch(/isolate_host\s+demo-agent\s+(low|medium|high|critical) \d\.\d\d\s+0\.82/);
    expect(status.stdout).toMatch(/\d+ pending approvals?/);

    const approve = await cli(['approve', req.id, '--reason', 'contained']);
    expect(approve.code).toBe(0);
    expect(approve.stdout.trim()).toBe(`approved ${req.id} (decided: approved)`);

    const after = await api<ApprovalRequest>('GET', `/v1/requests/${req.id}`, adminToken);
    expect(after.body.status).toBe('approved');
    expect(after.body.decision?.reason).toBe('contained');
  }, 30_000);

  it('approve with --args sends modified args; bad --args fails before any call', async () => {
    const req = await propose();
    // Non-object JSON ('[1]', 'null', …) is covered in-process in cli-unit.test.ts.
    const [bad, good] = await Promise.all([
      cli(['approve', req.id, '--args', '{not json']),
      cli(['approve', req.id, '--args', '{"host":"ws-043"}', '--json']),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error VALIDATION_FAILED: --args is not valid JSON/);
    expect(good.code).toBe(0);
    const decided = JSON.parse(good.stdout) as ApprovalRequest;
    expect(decided.status).toBe('approved');
    expect(decided.decision?.args).toEqual({ host: 'ws-043' });
    expect(decided.decision?.modified).toBe(true);
  }, 30_000);

  it('reject needs --reason; with one it decides', async () => {
    const req = await propose();
    const none = await cli(['reject', req.id]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain("required option '--reason <text>' not specified");
    expect((await api<ApprovalRequest>('GET', `/v1/requests/${req.id}`, adminToken)).body.status).toBe('pending');

    const run = await cli(['reject', req.id, '--reason', 'false positive']);
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(`rejected ${req.id} (decided: rejected)`);
    expect((await api<ApprovalRequest>('GET', `/v1/requests/${req.id}`, adminToken)).body.status).toBe('rejected');
  }, 30_000);

  it('errors: agent key → FORBIDDEN, unknown id → NOT_FOUND, no token → UNAUTHENTICATED', async () => {
    const req = await propose();
    const [forbidden, notFound, noToken] = await Promise.all([
      cli(['approve', req.id], { COUNTERSIGN_TOKEN: agentKey }),
      cli(['approve', UNKNOWN_ID, '--json']),
      cli(['status'], { COUNTERSIGN_TOKEN: '' }),
    ]);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/^error FORBIDDEN: /);
    expect(notFound.code).toBe(1);
    expect(JSON.parse(notFound.stderr)).toMatchObject({ error: { code: 'NOT_FOUND', message: `no request ${UNKNOWN_ID}` } });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('error UNAUTHENTICATED');
    expect(noToken.stderr).toContain('set COUNTERSIGN_TOKEN or pass --token');
    // The agent's attempt changed nothing.
    expect((await api<ApprovalRequest>('GET', `/v1/requests/${req.id}`, adminToken)).body.status).toBe('pending');
  }, 30_000);

  it('operators add / keys create --json print working credentials', async () => {
    const [op, key, human] = await Promise.all([
      cli(['operators', 'add', '--name', 'alice', '--role', 'reviewer', '--group', 'soc', '--json']),
      cli(['keys', 'create', '--agent', 'billing-bot', '--json']),
      cli(['operators', 'add', '--name', 'bob', '--role', 'lead']),
    ]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^token: cso_\S+$/m);
    expect(human.stdout.match(/cso_/g)).toHaveLength(1);
    expect(human.stdout).toMatch(/shown ONCE/);
    expect(op.code).toBe(0);
    const operator = JSON.parse(op.stdout) as { id: string; token: string; roles: string[] };
    expect(operator.id).toMatch(/^op_/);
    expect(operator.token).toMatch(/^cso_/);
    expect(operator.roles).toEqual(['reviewer']);
    expect(key.code).toBe(0);
    const created = JSON.parse(key.stdout) as { agentId: string; key: string };
    expect(created.agentId).toMatch(/^agt_/);
    expect(created.key).toMatch(/^csk_/);

    // The new agent key proposes; the new operator token approves through the CLI.
    const req = await propose({ action: 'isolate_host', args: { host: 'ws-007' } }, created.key);
    expect(req.agentName).toBe('billing-bot');
    const [byName, list] = await Promise.all([cli(['status', '--agent', 'billing-bot', '--json']), cli(['operators', 'list'])]);
    expect(byName.code).toBe(0);
    expect((JSON.parse(byName.stdout) as ApprovalRequest[]).map((r) => r.id)).toEqual([req.id]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/alice\s+reviewer\s+soc/);
    expect(list.stdout).not.toContain(operator.token);
    const approve = await cli(['approve', req.id], { COUNTERSIGN_TOKEN: operator.token });
    expect(approve.code).toBe(0);
    expect(approve.stdout).toContain(`approved ${req.id}`);
  }, 30_000);

  it('history shows decisions, newest first, without pending requests', async () => {
    const { body: key } = await api<{ key: string }>('POST', '/v1/keys', adminToken, { agent: 'history-bot' });
    const first = await propose({ args: { host: 'hist-1' } }, key.key);
    await api('POST', `/v1/requests/${first.id}/reviews`, adminToken, { verdict: 'reject', reason: 'no' });
    const second = await propose({ args: { host: 'hist-2' } }, key.key);
    await api('POST', `/v1/requests/${second.id}/reviews`, adminToken, { verdict: 'approve' });
    const pending = await propose({ args: { host: 'hist-3' } }, key.key);
    const [run, json] = await Promise.all([cli(['history', '--last', '100']), cli(['history', '--agent', 'history-bot', '--json'])]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ID\s+ACTION\s+AGENT\s+OUTCOME\s+AS\s+DECIDED BY\s+WHEN/);
    const row = run.stdout.split('\n').find((l) => l.startsWith(second.id));
    expect(row).toMatch(/isolate_host\s+history-bot\s+approved\s+as asked\s+reviewers \(admin\)\s+\d+\S* ago/);
    expect(run.stdout).not.toContain(pending.id);
    expect(json.code).toBe(0);
    const items = JSON.parse(json.stdout) as ApprovalRequest[];
    expect(items.map((r) => [r.id, r.status])).toEqual([
      [second.id, 'approved'],
      [first.id, 'rejected'],
    ]);
  }, 30_000);

  it('show escapes control and bidi characters in agent-supplied text', async () => {
    const req = await propose({
      description: 'looks fine \u202e}gnp.exe{ \u001b[31mRED\u001b[0m\u001b]0;pwned\u0007\nsecond line\r\u200bhidden',
      context: { evidence: ['beacon to \u202eevil', { type: 'edr', summary: 'c2 \u001b[2J' }], target: 'ws-042' },
      args: { host: 'ws-042\u2066' },
    });
    const [human, json] = await Promise.all([cli(['show', req.id]), cli(['show', req.id, '--json'])]);
    expect(human.code).toBe(0);
    const out = human.stdout;
    expect(out).toContain('description (AGENT-SUPPLIED');
    expect(out).toContain('evidence (AGENT-SUPPLIED');
    expect(out).toContain('args (AGENT-SUPPLIED');
    expect(out).toContain('\\u202e}gnp.exe{ \\u001b[31mRED\\u001b[0m\\u001b]0;pwned\\u0007');
    expect(out).toContain('second line\\u000d\\u200bhidden');
    expect(out).toContain('beacon to \\u202eevil');
    expect(out).toContain('\\u2066');
    // Nothing dangerous reaches the terminal raw; the newline of a multi-line field stays.
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/);
    expect(out).toMatch(/│ looks fine .*\n\s+│ second line/);
    expect(out).toContain('isolate_host');
    // JSON output stays valid and round-trips to the same text.
    expect(json.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/);
    expect((JSON.parse(json.stdout) as ApprovalRequest).description).toBe(req.description);
  }, 30_000);

  it('config shows the configuration without the token, and works with no server', async () => {
    const [up, upJson, down, downCheck] = await Promise.all([
      cli(['config']),
      cli(['config', '--json']),
      cli(['config', '--url', 'http://127.0.0.1:9']),
      cli(['config', '--url', 'http://127.0.0.1:9', '--check']),
    ]);
    expect(up.code).toBe(0);
    expect(up.stdout).toContain(url);
    expect(up.stdout).toContain(adminToken.slice(0, 6));
    expect(up.stdout).not.toContain(adminToken);
    expect(up.stdout).toMatch(/server:\s+ok/);
    expect(up.stdout).toMatch(/policy:\s+v\d+, sha256 [0-9a-f]+…, from .*countersign\.yaml/);
    const cfg = JSON.parse(upJson.stdout) as Record<string, unknown>;
    expect(cfg).toMatchObject({ url, tokenSet: true, tokenPrefix: adminToken.slice(0, 6), server: { reachable: true, status: 'ok' } });
    expect(cfg.policy).toMatchObject({ version: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/), source: expect.stringMatching(/countersign\.yaml$/) });
    expect(upJson.stdout).not.toContain(adminToken);
    expect(down.code).toBe(0);
    expect(down.stdout).toMatch(/server:\s+unreachable/);
    expect(downCheck.code).toBe(1);
    expect(downCheck.stderr).toContain('error NETWORK_ERROR');
  }, 30_000);

  it('audit tail shows the trail of one request and of everything', async () => {
    const req = await propose();
    await api('POST', `/v1/requests/${req.id}/reviews`, adminToken, { verdict: 'reject', reason: 'no' });
    const [one, all] = await Promise.all([cli(['audit', 'tail', '--request', req.id]), cli(['audit', 'tail', '--limit', '3', '--json'])]);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^SEQ\s+TIME\s+TYPE\s+ACTOR\s+REQUEST/);
    for (const type of ['created', 'queued', 'reviewed', 'rejected']) expect(one.stdout).toMatch(new RegExp(`\\s${type}\\s`));
    expect(all.code).toBe(0);
    const mine = (await api<{ items: Array<{ seq: number; type: string }> }>('GET', `/v1/requests/${req.id}/audit`, adminToken)).body.items;
    const rejectedSeq = mine.find((e) => e.type === 'rejected')?.seq ?? Infinity;
    const entries = JSON.parse(all.stdout) as Array<{ seq: number; type: string }>;
    expect(entries).toHaveLength(3);
    expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => a - b));
    // The tail was read after the rejection, so it ends at or after it.
    expect(entries.at(-1)?.seq).toBeGreaterThanOrEqual(rejectedSeq);
  }, 30_000);
});

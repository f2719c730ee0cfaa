/**
 * The Claude Code PreToolUse hook as Claude Code runs it: the real `countersign-mcp hook
 * claude-code` process, hook JSON (fixtures/) on stdin, the answer on stdout, against a real
 * Countersign server. A reviewer decides through the API while the hook waits.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HookOutput } from '../src/hook.ts';
import type { ApprovalRequest } from '@countersign/core';
import { api, pending as pendingWithin, review, startCountersign, type TestCountersign } from './support/countersign.ts';

// A hook process starts through tsx on a shared, loaded machine: give it time to file its request.
const pending = (c: TestCountersign, action: string, match: (r: ApprovalRequest) => boolean, count = 1) => pendingWithin(c, action, match, count, 45_000);

const BIN = fileURLToPath(new URL('../bin/countersign-mcp.js', import.meta.url));
const fixture = (name: string) => JSON.parse(readFileSync(fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)), 'utf8')) as Record<string, unknown>;

let cs: TestCountersign;
beforeAll(async () => {
  cs = await startCountersign();
}, 60_000);
afterAll(async () => {
  await cs?.stop();
});

interface Run {
  output: Promise<{ code: number | null; stdout: string; stderr: string; ms: number }>;
}

function hook(input: string, args: string[] = [], env: Record<string, string> = {}): Run {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) clean[k] = v;
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, 'hook', 'claude-code', ...args], {
    env: { ...clean, COUNTERSIGN_URL: cs.url, COUNTERSIGN_AGENT_KEY: cs.agentKey, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(input);
  return { output: new Promise((ok) => child.on('close', (code) => ok({ code, stdout, stderr, ms: Date.now() - started }))) };
}

let n = 0;
/** The fixture with its own tool_use_id, so each test is its own tool use. */
function input(name: string, patch: (json: Record<string, unknown>) => void = () => {}): { json: Record<string, unknown>; text: string } {
  const json = fixture(name);
  json.tool_use_id = `toolu_test_${++n}_${Date.now()}`;
  patch(json);
  return { json, text: JSON.stringify(json) };
}

function parsed(stdout: string): HookOutput {
  const lines = stdout.trim().split('\n');
  expect(lines).toHaveLength(1); // exactly one answer
  return JSON.parse(lines[0]!) as HookOutput;
}

const withCommand = (command: string) => (json: Record<string, unknown>) => ((json.tool_input as Record<string, unknown>).command = command);

describe('countersign-mcp hook claude-code', () => {
  it('allow: an approved call answers allow, without updatedInput', async () => {
    const { text } = input('hook-bash.json', withCommand('rm -rf build-allow'));
    const run = hook(text);
    const [request] = await pending(cs, 'Bash', (r) => r.args.command === 'rm -rf build-allow');
    expect(request!.context).toMatchObject({ claudeCode: { sessionId: 'abc123', cwd: '/home/dev/demo', permissionMode: 'default' } });
    await review(cs, request!.id, { verdict: 'approve' });
    const { code, stdout } = await run.output;
    expect(code).toBe(0);
    const out = parsed(stdout);
    expect(out.hookSpecificOutput).toMatchObject({ hookEventName: 'PreToolUse', permissionDecision: 'allow' });
    expect(out.hookSpecificOutput.permissionDecisionReason).toContain(request!.id);
    expect(out.hookSpecificOutput.updatedInput).toBeUndefined();
  });

  it('modified: a reviewer\'s modified args come back as updatedInput', async () => {
    const { text } = input('hook-write.json');
    const run = hook(text);
    const [request] = await pending(cs, 'Write', (r) => r.args.file_path === '/home/dev/demo/.env');
    const safer = { file_path: '/home/dev/demo/.env.example', content: 'API_URL=https://example.com\n' };
    await review(cs, request!.id, { verdict: 'approve', args: safer });
    const out = parsed((await run.output).stdout);
    expect(out.hookSpecificOutput.permissionDecision).toBe('allow');
    expect(out.hookSpecificOutput.updatedInput).toEqual(safer);
  });

  it('deny: a rejection answers deny with the reviewer\'s reason', async () => {
    const { text } = input('hook-bash.json', withCommand('rm -rf build-deny'));
    const run = hook(text);
    const [request] = await pending(cs, 'Bash', (r) => r.args.command === 'rm -rf build-deny');
    await review(cs, request!.id, { verdict: 'reject', reason: 'the build dir holds the release artefacts' });
    const out = parsed((await run.output).stdout);
    expect(out.hookSpecificOutput.permissionDecision).toBe('deny');
    expect(out.hookSpecificOutput.permissionDecisionReason).toContain('the build dir holds the release artefacts');
  });

  it('timeout: answers deny at --timeout (before any hook timeout could kill it) and withdraws the request', async () => {
    const { text } = input('hook-bash.json', withCommand('rm -rf build-timeout'));
    const run = hook(text, ['--timeout', '8']);
    const { code, stdout, ms } = await run.output;
    expect(code).toBe(0);
    expect(ms).toBeGreaterThanOrEqual(8_000);
    expect(ms).toBeLessThan(8_000 + 5_000); // the answer at 8 s, then at most a bounded withdrawal
    const out = parsed(stdout);
    expect(out.hookSpecificOutput.permissionDecision).toBe('deny');
    expect(out.hookSpecificOutput.permissionDecisionReason).toContain('8s');
    // Whatever was filed is withdrawn, nothing is left for a reviewer to approve in vain.
    const { body } = await api<{ items: ApprovalRequest[] }>(cs, '/v1/requests?action=Bash&limit=500');
    const filed = body.items.filter((r) => r.args.command === 'rm -rf build-timeout');
    expect(filed.length).toBeLessThanOrEqual(1);
    for (const r of filed) expect(r.status).toBe('cancelled');
  });

  it('timeout with --on-timeout defer answers defer', async () => {
    const { text } = input('hook-bash.json', withCommand('rm -rf build-defer'));
    const out = parsed((await hook(text, ['--timeout', '2', '--on-timeout', 'defer']).output).stdout);
    expect(out.hookSpecificOutput.permissionDecision).toBe('defer');
  });

  it('the same tool use asked twice (a re-run hook) is one request', async () => {
    const { text } = input('hook-bash.json', withCommand('rm -rf build-twice'));
    const first = hook(text);
    const [request] = await pending(cs, 'Bash', (r) => r.args.command === 'rm -rf build-twice');
    const second = hook(text);
    await new Promise((r) => setTimeout(r, 1_500));
    await review(cs, request!.id, { verdict: 'approve' });
    const outs = [];
    for (const run of [first, second]) {
      const out = parsed((await run.output).stdout).hookSpecificOutput;
      expect(out.permissionDecisionReason).toContain(request!.id);
      outs.push(out);
    }
    // One approval, claimed once: exactly one of the two hooks allows the tool to run.
    expect(outs.map((o) => o.permissionDecision).sort()).toEqual(['allow', 'deny']);
    expect(outs.find((o) => o.permissionDecision === 'deny')!.permissionDecisionReason).toMatch(/ALREADY_EXECUTED/);
    const { body } = await api<{ items: ApprovalRequest[] }>(cs, '/v1/requests?action=Bash&limit=500');
    expect(body.items.filter((r) => r.args.command === 'rm -rf build-twice')).toHaveLength(1);
  });

  it('fails closed: bad JSON, a wrong event, no key, or an unreachable server all answer deny', async () => {
    const answers = await Promise.all([
      hook('{not json').output,
      hook(input('hook-bash.json', (j) => (j.hook_event_name = 'PostToolUse')).text).output,
      hook(input('hook-bash.json').text, [], { COUNTERSIGN_AGENT_KEY: '' }).output,
      hook(input('hook-bash.json').text, ['--timeout', '10'], { COUNTERSIGN_URL: 'http://127.0.0.1:9' }).output,
    ]);
    for (const { code, stdout } of answers) {
      expect(code).toBe(0);
      expect(parsed(stdout).hookSpecificOutput.permissionDecision).toBe('deny');
    }
  });
});

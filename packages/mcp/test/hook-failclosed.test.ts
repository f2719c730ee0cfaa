/**
 * The Claude Code hook never fails open. Claude Code runs a tool call whose hook exited with
 * anything but 0 (with an answer) or 2 (block): a bad flag, a crash or a stop must exit 2. Both
 * entry points are checked: `countersign-mcp hook …` and `countersign hook …`.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BINS = {
  'countersign-mcp': fileURLToPath(new URL('../bin/countersign-mcp.js', import.meta.url)),
  countersign: fileURLToPath(new URL('../../server/bin/countersign.js', import.meta.url)),
};
const INPUT = JSON.stringify({ hook_event_name: 'PreToolUse', session_id: 's1', tool_name: 'Bash', tool_input: { command: 'rm -rf /tmp/x' }, tool_use_id: 'toolu_failclosed' });

/** A server that accepts connections and never answers: the hook waits on it until stopped. */
let silent: Server;
let silentUrl = '';
beforeAll(async () => {
  silent = createServer(() => {});
  await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok));
  silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
});
afterAll(async () => {
  silent.closeAllConnections();
  await new Promise((ok) => silent.close(ok));
});

function run(bin: string, args: string[], opts: { stopAfterMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) env[k] = v;
  const child = spawn(process.execPath, [bin, 'hook', 'claude-code', ...args], {
    env: { ...env, COUNTERSIGN_URL: silentUrl, COUNTERSIGN_AGENT_KEY: `csk_${'a'.repeat(43)}` },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.end(INPUT);
  if (opts.stopAfterMs !== undefined) {
    // Stop it once it is waiting on the server (its start-up under load can take seconds).
    const timer = setTimeout(() => child.kill('SIGTERM'), opts.stopAfterMs);
    child.on('close', () => clearTimeout(timer));
  }
  return new Promise((ok) => child.on('close', (code) => ok({ code, stdout, stderr })));
}

describe.each(Object.entries(BINS))('%s hook claude-code fails closed', (_name, bin) => {
  it('a malformed --timeout blocks the call (exit 2), with the reason on stderr', async () => {
    const out = await run(bin, ['--timeout', 'abc']);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/the tool call is blocked/);
  }, 60_000);

  it('an unknown --on-timeout answer blocks the call', async () => {
    const out = await run(bin, ['--on-timeout', 'ask']);
    expect(out.code).toBe(2);
  }, 60_000);

  it('an unknown flag blocks the call', async () => {
    const out = await run(bin, ['--no-such-flag']);
    expect(out.code).toBe(2);
  }, 60_000);

  it('SIGTERM while waiting for Countersign blocks the call', async () => {
    const out = await run(bin, ['--timeout', '120'], { stopAfterMs: 8_000 });
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/SIGTERM/);
    expect(out.stdout).not.toMatch(/"allow"/);
  }, 60_000);

  it('--help still exits 0', async () => {
    const out = await run(bin, ['--help']);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/PreToolUse/);
  }, 60_000);
});

/**
 * Runs the Python client's unittest suite with the machine's python3 against a real
 * `countersign serve` process, and checks the exit code and that every test ran (none skipped,
 * none silently lost). Also hands Python what core's canonicalJson / payloadHash make of
 * hostile values, so the two implementations are compared byte for byte.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, payloadHash } from '@countersign/core';
import { startServer, type TestServer } from '../../../packages/client/test/support/server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Tests in test_ed25519.py (8), test_canonical.py (4), test_key_chain.py (9) and test_live.py (13). */
const EXPECTED_TESTS = 34;

const HOSTILE: unknown[] = [
  { host: 'ws-1', n: 1e21, small: 1e-7, neg0: -0, f: 0.1 + 0.2, big: 12345678901234567000, int: 9007199254740993 },
  { '\uffff': 1, '😀': 2, é: 3, Z: 4, a: 5, '': 6 },
  { text: 'line\nbreak\ttab "quote" \\ back \u0001 \u001f \u007f \u2028 \u2029 é 😀 \ud800 lone' },
  { nested: { z: [1, { y: null, x: true }], a: [] }, e: {} },
  { numbers: [0, -1, 1.5, 100, 1e20, 1e300, -1.5e-300, 5e-324, 123456.789] },
  { deep: [[[['x']]]], unicode: '\u0000\u0008\u000c' },
];

let server: TestServer;
let dir: string;

beforeAll(async () => {
  server = await startServer();
  dir = mkdtempSync(join(tmpdir(), 'cs-py-'));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the Python client', () => {
  it('passes its unittest suite against a real server', async () => {
    const fixture = join(dir, 'canonical.json');
    const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
    writeFileSync(
      fixture,
      JSON.stringify(
        HOSTILE.map((value) => ({
          value,
          action: 'isolate_host',
          canonical: canonicalJson(value),
          payloadHash: payloadHash(sha256, 'isolate_host', value as never),
        })),
      ),
    );
    // Nothing of the developer's COUNTERSIGN_* environment reaches the tests.
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) env[k] = v;
    Object.assign(env, {
      COUNTERSIGN_TEST_URL: server.url,
      COUNTERSIGN_TEST_AGENT_KEY: server.agentKey,
      COUNTERSIGN_TEST_ADMIN_TOKEN: server.adminToken,
      COUNTERSIGN_TEST_CANONICAL: fixture,
      PYTHONDONTWRITEBYTECODE: '1',
    });
    const result = await run('python3', ['-m', 'unittest', 'discover', '-s', 'test', '-t', '.', '-v'], env);
    const report = `${result.stdout}\n${result.stderr}`;
    expect(result.code, report).toBe(0);
    const ran = /Ran (\d+) tests?/.exec(report);
    expect(Number(ran?.[1]), report).toBe(EXPECTED_TESTS);
    expect(report).toMatch(/\nOK\s*$/);
    expect(report).not.toMatch(/skipped|expected failure/i);
  }, 180_000);
});

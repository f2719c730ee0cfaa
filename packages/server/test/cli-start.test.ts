/**
 * The CLI's cold start, structurally (docs/ARCHITECTURE.md, CLI cold start; the timings are in
 * BENCHMARKS.md, section cli): `countersign --help` and `countersign status` against a running
 * server load commander, the CLI's own modules and core's cheap subpaths, and nothing heavy (zod,
 * re2js, yaml, the screening model, core's index, the store, the engine). Every module each
 * process loads is recorded (support/module-load-recorder.mjs) and checked against the start-up
 * list in support/module-loads.ts. This runs the clone's sources; test/packed-install.test.ts
 * runs the same check on the installed build.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import { BIN, startServerProcess, type ServerProcess } from './support/server-process.ts';
import { offStartPath, recordLoads } from './support/module-loads.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
// The clone runs its sources through tsx: preloaded before the recorder, so the recorder sees
// every module first (tsx's own packages are left out of the check).
const REGISTER = pathToFileURL(join(ROOT, 'tools/dev/register.mjs')).href;
const RUNNER = ['tsx', 'esbuild', 'get-tsconfig', 'resolve-pkg-maps'];

let dir: string;
let server: ServerProcess;

/** The test run's environment (the source condition included), no COUNTERSIGN_* of its own. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) clean[k] = v;
  return { ...clean, NODE_OPTIONS: `${clean.NODE_OPTIONS ?? ''} --import=${REGISTER}`.trim(), ...extra };
}

const cli = (args: string[], extra: Record<string, string> = {}) => recordLoads(process.execPath, [BIN, ...args], { cwd: dir, env: env(extra) });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-cli-start-'));
  server = await startServerProcess(`sqlite:${join(dir, 'x.db')}`);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("the CLI's start-up path", () => {
  it('`countersign --help` loads commander and the CLI, nothing heavy', async () => {
    const run = await cli(['--help']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('Usage: countersign');
    // The record is of this process: the CLI's entry, commander and core's errors are in it.
    expect(run.loaded.some((u) => u.endsWith('/packages/server/src/cli/main.ts'))).toBe(true);
    expect(run.loaded.some((u) => u.includes('/node_modules/commander/'))).toBe(true);
    expect(run.loaded.some((u) => u.endsWith('/packages/core/src/errors.ts'))).toBe(true);
    expect(offStartPath(run.loaded, RUNNER)).toEqual([]);
  }, 60_000);

  it('`countersign status` against a running server loads no more than --help', async () => {
    const run = await cli(['status'], { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: server.bootstrap!.adminToken });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('No pending approvals.');
    expect(offStartPath(run.loaded, RUNNER)).toEqual([]);
  }, 60_000);

  it('the record sees heavy modules where a command loads them (`policy check` parses YAML with the domain)', async () => {
    const policy = join(dir, 'countersign.yaml');
    writeFileSync(policy, DEFAULT_POLICY_YAML);
    const run = await cli(['policy', 'check', policy]);
    expect(run.code, run.stderr).toBe(0);
    const off = offStartPath(run.loaded, RUNNER);
    expect(off).toContain('@countersign/core:index');
    expect(off.some((m) => m.startsWith('zod:'))).toBe(true);
    expect(off.some((m) => m.startsWith('yaml:'))).toBe(true);
  }, 60_000);
});

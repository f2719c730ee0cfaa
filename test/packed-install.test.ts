/**
 * The packed packages, installed into an empty project outside the repository and run with plain
 * node (no tsx, no source condition): the SDK imports, `countersign --version` answers, a
 * `countersign serve` on embedded SQLite takes a request through the SDK and serves the
 * dashboard from inside its own package, `--help` and `status` start without loading the domain,
 * the hook still fails closed when the build is broken, and each entry point's public surface,
 * read from the shipped .d.ts files and from the modules themselves, is the one in
 * packages/server/test/snapshots/exports.json.
 *
 * Slow by nature (build, pack, install: about a minute on an idle two-core machine; see the
 * timings it logs), so it runs once per suite and does everything in one install.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPackInstall, consumerEnv, ROOT, type Installed } from './support/packed.ts';
import { offStartPath, recordLoads } from '../packages/server/test/support/module-loads.ts';

const run = promisify(execFile);
let installed: Installed;
let server: ChildProcess | undefined;
/** The running `countersign serve` of the serve test, for the CLI start-up check after it. */
let served: { url: string; adminToken: string } | undefined;

beforeAll(() => {
  installed = buildPackInstall();
  console.log(`packed install: ${JSON.stringify(installed.timings)} ms; better-sqlite3 addon ${installed.nativeAddon}`);
}, 900_000);

afterAll(async () => {
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = once(server, 'exit');
    server.kill('SIGTERM');
    const timer = setTimeout(() => server?.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  if (installed) rmSync(resolve(installed.app, '..'), { recursive: true, force: true });
});

const bin = () => join(installed.app, 'node_modules/.bin/countersign');
const node = (script: string, env: Record<string, string> = {}) =>
  run(process.execPath, ['--input-type=module', '-e', script], { cwd: installed.app, env: consumerEnv(env), encoding: 'utf8' });

describe('the packed packages, installed outside the repository', () => {
  it('hold their build, not their sources or the repository', () => {
    expect(installed.app.startsWith(ROOT)).toBe(false);
    for (const tgz of installed.tarballs) {
      const name = tgz.split('/').pop()!;
      expect(name, 'a tarball per published package').toMatch(/^countersign-[a-z-]+-\d+\.\d+\.\d+\.tgz$/);
    }
    const pkg = JSON.parse(readFileSync(join(installed.app, 'node_modules/@countersign/server/package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg).toMatchObject({ license: 'MIT', engines: { node: '>=20.19' } });
    expect(() => readFileSync(join(installed.app, 'node_modules/@countersign/server/src/cli/main.ts'))).toThrow();
    expect(readFileSync(join(installed.app, 'node_modules/@countersign/server/dist/dashboard/index.html'), 'utf8')).toContain('<div id="root">');
  });

  it('plain node imports the client', async () => {
    const { stdout } = await node("const m = await import('@countersign/client'); console.log(JSON.stringify([typeof m.Countersign, typeof m.CountersignError]));");
    expect(JSON.parse(stdout)).toEqual(['function', 'function']);
  });

  it('countersign --version', async () => {
    const { stdout } = await run(bin(), ['--version'], { cwd: installed.app, env: consumerEnv(), encoding: 'utf8' });
    expect(stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'packages/server/package.json'), 'utf8')).version);
  });

  it('countersign serve (embedded SQLite, port 0) takes a request through the SDK and serves the dashboard', async () => {
    server = spawn(bin(), ['serve', '--json'], {
      cwd: installed.app,
      env: consumerEnv({ COUNTERSIGN_DATABASE_URL: `sqlite:${join(installed.app, 'countersign.db')}`, COUNTERSIGN_PORT: '0', COUNTERSIGN_HOST: '127.0.0.1' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    server.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const first = await Promise.race([
      once(createInterface({ input: server.stdout! }), 'line').then(([line]) => line as string),
      once(server, 'exit').then(([code]) => {
        throw new Error(`countersign serve exited with ${String(code)}: ${stderr}`);
      }),
    ]);
    const info = JSON.parse(first) as { url: string; database: string; bootstrap: { adminToken: string; agentKey: string } };
    expect(info.database).toBe('sqlite');
    served = { url: info.url, adminToken: info.bootstrap.adminToken };

    const agent = [
      "import { Countersign } from '@countersign/client';",
      'const cs = new Countersign({ url: process.env.COUNTERSIGN_URL, apiKey: process.env.COUNTERSIGN_AGENT_KEY });',
      "const handle = await cs.requestApproval({ action: 'read_ticket', args: { id: 'T-1' }, confidence: 0.9 });",
      'console.log(JSON.stringify({ id: handle.request.id, status: handle.status }));',
    ].join('\n');
    const { stdout } = await node(agent, { COUNTERSIGN_URL: info.url, COUNTERSIGN_AGENT_KEY: info.bootstrap.agentKey });
    const filed = JSON.parse(stdout.trim().split('\n').pop()!) as { id: string; status: string };
    expect(filed.id).toMatch(/^req_/);

    // The server recorded it as the SDK reported, seen through the installed CLI.
    const shown = await run(bin(), ['show', filed.id, '--json'], { cwd: installed.app, env: consumerEnv({ COUNTERSIGN_URL: info.url, COUNTERSIGN_TOKEN: info.bootstrap.adminToken }), encoding: 'utf8' });
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: filed.id, status: filed.status, action: 'read_ticket' });

    const page = await fetch(`${info.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<div id="root">');
  }, 120_000);

  it("the installed CLI's start-up path (--help, status) loads nothing heavy", async () => {
    // The same check as packages/server/test/cli-start.test.ts, on the build users get (dist/, plain node).
    expect(served, 'the serve test ran first').toBeDefined();
    const help = await recordLoads(bin(), ['--help'], { cwd: installed.app, env: consumerEnv() });
    expect(help.code, help.stderr).toBe(0);
    expect(help.loaded.some((u) => u.endsWith('/node_modules/@countersign/server/dist/cli/main.js'))).toBe(true);
    expect(offStartPath(help.loaded)).toEqual([]);
    const status = await recordLoads(bin(), ['status'], { cwd: installed.app, env: consumerEnv({ COUNTERSIGN_URL: served!.url, COUNTERSIGN_TOKEN: served!.adminToken }) });
    expect(status.code, status.stderr).toBe(0);
    expect(offStartPath(status.loaded)).toEqual([]);
  }, 60_000);

  it('the hook fails closed (exit 2) when the installed build cannot load', async () => {
    const main = join(installed.app, 'node_modules/@countersign/server/dist/cli/main.js');
    renameSync(main, `${main}.moved`);
    try {
      const hook = spawn(bin(), ['hook', 'claude-code'], { cwd: installed.app, env: consumerEnv() });
      let stderr = '';
      hook.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      hook.stdin.end(JSON.stringify({ hook_event_name: 'PreToolUse', session_id: 's', tool_name: 'Bash', tool_input: { command: 'true' }, tool_use_id: 't' }));
      const [code] = await once(hook, 'exit');
      expect(code).toBe(2);
      expect(stderr).toMatch(/failed to start.*the tool call is blocked/);
      // Anything else fails loudly (not 0) rather than silently.
      const version = await run(bin(), ['--version'], { cwd: installed.app, env: consumerEnv() }).then(() => 0, (e: { code: number }) => e.code);
      expect(version).not.toBe(0);
    } finally {
      renameSync(`${main}.moved`, main);
    }
  }, 60_000);

  it("each entry point's public surface, from the build, is the exports snapshot", async () => {
    const expected = JSON.parse(readFileSync(join(ROOT, 'packages/server/test/snapshots/exports.json'), 'utf8')) as Record<string, string[]>;
    // Types and values, as a consumer's TypeScript resolves them (package exports, "types").
    const check = join(installed.app, 'surface.ts');
    writeFileSync(check, Object.keys(expected).map((name, i) => `import * as m${i} from '${name}';\nexport { m${i} };`).join('\n'));
    const program = ts.createProgram([check], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2023, strict: true, skipLibCheck: true, noEmit: true, types: [] });
    expect(program.getSemanticDiagnostics(program.getSourceFile(check)).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([]);
    const checker = program.getTypeChecker();
    const fromTypes: Record<string, string[]> = {};
    Object.keys(expected).forEach((name, i) => {
      const local = program.getSourceFile(check)!.statements.find((s): s is ts.ImportDeclaration => ts.isImportDeclaration(s) && (s.moduleSpecifier as ts.StringLiteral).text === name);
      const symbol = checker.getSymbolAtLocation(local!.moduleSpecifier);
      if (!symbol) throw new Error(`no module for ${name} (m${i})`);
      fromTypes[name] = checker.getExportsOfModule(symbol).map((s) => s.getName()).sort();
    });
    expect(fromTypes).toEqual(expected);
    // The values the modules export at run time are all declared (nothing undeclared ships).
    const { stdout } = await node(`const out = {}; for (const name of ${JSON.stringify(Object.keys(expected))}) out[name] = Object.keys(await import(name)); console.log(JSON.stringify(out));`);
    const runtime = JSON.parse(stdout) as Record<string, string[]>;
    for (const [name, keys] of Object.entries(runtime)) {
      expect(keys.length, name).toBeGreaterThan(0);
      expect(keys.filter((k) => !expected[name]!.includes(k)), `${name}: exported at run time but not in the snapshot`).toEqual([]);
    }
  }, 180_000);
});

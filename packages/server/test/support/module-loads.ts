/**
 * What the `countersign` CLI may load before a command's action runs (docs/ARCHITECTURE.md, CLI
 * cold start): commander, the CLI's own modules, and the cheap corners of core and mcp. Anything
 * else (zod, re2js, yaml, the screening model, core's index, the store, the engine, the HTTP
 * stack) belongs inside the action that needs it, as a dynamic import().
 *
 * `recordLoads` runs a command with module-load-recorder.mjs and returns every module URL the
 * process loaded; `offStartPath` names those outside the list below. Both the clone (sources,
 * through tsx) and an installed copy (dist/, plain node) are classified: a URL is read as a
 * package (node_modules/NAME/…, or the clone's packages/NAME/…) and a module inside it.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const RECORDER_URL = new URL('./module-load-recorder.mjs', import.meta.url).href;

/** Per package, the modules (path inside src/ or dist/, no extension) the start-up path may load. */
const START_PATH: Record<string, (module: string) => boolean> = {
  commander: () => true,
  '@countersign/core': (m) => ['errors', 'duration', 'format', 'constants', 'canonical'].includes(m),
  '@countersign/server': (m) => m.startsWith('cli/') || ['bin/countersign', 'environment', 'ids'].includes(m),
  '@countersign/mcp': (m) => ['cli', 'hook-guard'].includes(m),
};

/** A loaded URL as [package, module], or null for Node's built-ins. */
export function moduleOf(url: string): [string, string] | null {
  if (url.startsWith('node:')) return null;
  const installed = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(url);
  const clone = /\/packages\/([^/]+)\/(.*)$/.exec(url);
  const [pkg, rest] = installed ? [installed[1]!, installed[2]!] : clone ? [`@countersign/${clone[1]}`, clone[2]!] : ['(outside any package)', url];
  if (!pkg.startsWith('@countersign/')) return [pkg, rest];
  return [pkg, rest.replace(/^(src|dist)\//, '').replace(/\.(ts|js|mjs)$/, '')];
}

/**
 * The loaded modules that the start-up path may not load, as `package:module`. `runner` names
 * packages of whatever runs the code (the clone's tsx and esbuild), which are not the CLI's.
 */
export function offStartPath(loaded: readonly string[], runner: readonly string[] = []): string[] {
  const off = new Set<string>();
  for (const url of loaded) {
    const m = moduleOf(url);
    if (m && !runner.includes(m[0]) && !START_PATH[m[0]]?.(m[1])) off.add(`${m[0]}:${m[1]}`);
  }
  return [...off].sort();
}

export interface RecordedRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Every module URL the process loaded. */
  loaded: string[];
}

/**
 * Runs `file args…` (a node script, or a bin with a node shebang) with the recorder preloaded
 * through NODE_OPTIONS, after any `--import` already there, so the command runs as it always does.
 */
export function recordLoads(file: string, args: readonly string[], options: { cwd?: string; env: NodeJS.ProcessEnv }): Promise<RecordedRun> {
  const dir = mkdtempSync(join(tmpdir(), 'cs-loads-'));
  const record = join(dir, 'loaded.txt');
  const nodeOptions = `${options.env.NODE_OPTIONS ?? ''} --import=${RECORDER_URL}`.trim();
  return new Promise((ok, fail) => {
    execFile(
      file,
      [...args],
      { ...(options.cwd ? { cwd: options.cwd } : {}), env: { ...options.env, NODE_OPTIONS: nodeOptions, MODULE_LOAD_RECORD: record }, encoding: 'utf8' },
      (err, stdout, stderr) => {
        try {
          if (err && typeof err.code !== 'number') return fail(err);
          const loaded = readFileSync(record, 'utf8')
            .split('\n')
            .filter((l) => l !== '');
          ok({ code: err ? (err.code as number) : 0, stdout, stderr, loaded });
        } catch (e) {
          fail(new Error(`no module record from ${file} ${args.join(' ')}: ${(e as Error).message}; stderr: ${stderr}`));
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  });
}

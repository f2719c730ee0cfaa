/**
 * The packages as a consumer gets them: `npm run build`, `npm pack` of every published package,
 * and an install of the tarballs into an empty directory outside the repository (npm's cache
 * first, the registry only for what it lacks). Used by test/packed-install.test.ts, the
 * version-skew test and bench/cli-start.ts.
 *
 * better-sqlite3 is installed with its scripts skipped and then given the clone's own compiled
 * addon when the versions match (compiling it from source takes minutes on this machine);
 * otherwise it is rebuilt. `nativeAddon` says which happened.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const PUBLISHED = ['core', 'client', 'adapter-kit', 'verify', 'mcp', 'server', 'ai-sdk', 'openai-agents', 'langchain'] as const;

/** The environment of a consumer: no source condition (test/setup.ts adds one), nothing of Countersign's. */
export function consumerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_') && !k.startsWith('npm_') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, ...extra };
}

const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, env: consumerEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });

export interface Installed {
  /** The consumer's project directory (outside the repository). */
  app: string;
  tarballs: string[];
  nativeAddon: 'reused' | 'rebuilt';
  timings: Record<string, number>;
}

/** Builds, packs and installs `source` (a checkout of this repository; default this clone). */
export function buildPackInstall(options: { source?: string; into?: string; packages?: readonly string[]; build?: boolean } = {}): Installed {
  const source = options.source ?? ROOT;
  const base = options.into ?? mkdtempSync(join(tmpdir(), 'countersign-packed-'));
  const timings: Record<string, number> = {};
  const timed = <T>(name: string, f: () => T): T => {
    const started = performance.now();
    try {
      return f();
    } finally {
      timings[name] = Math.round(performance.now() - started);
    }
  };
  if (options.build !== false) timed('build', () => npm(['run', 'build'], source));
  const tgz = join(base, 'tgz');
  mkdirSync(tgz, { recursive: true });
  const packages = options.packages ?? PUBLISHED;
  timed('pack', () => npm(['pack', '--pack-destination', tgz, ...packages.flatMap((p) => ['-w', `@countersign/${p}`])], source));
  const tarballs = readdirSync(tgz).filter((f) => f.endsWith('.tgz')).map((f) => join(tgz, f));
  const app = join(base, 'app');
  mkdirSync(app, { recursive: true });
  writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2)}\n`);
  timed('install', () => npm(['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel', 'error', ...tarballs], app));
  const nativeAddon = timed('native addon', () => provideSqliteAddon(app));
  return { app, tarballs, nativeAddon, timings };
}

function provideSqliteAddon(app: string): 'reused' | 'rebuilt' {
  const installed = join(app, 'node_modules/better-sqlite3');
  if (!existsSync(installed)) return 'reused';
  const version = (dir: string) => (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  const ours = join(ROOT, 'node_modules/better-sqlite3');
  const addon = join(ours, 'build/Release/better_sqlite3.node');
  if (existsSync(addon) && version(ours) === version(installed)) {
    mkdirSync(join(installed, 'build/Release'), { recursive: true });
    copyFileSync(addon, join(installed, 'build/Release/better_sqlite3.node'));
    return 'reused';
  }
  npm(['rebuild', 'better-sqlite3'], app);
  return 'rebuilt';
}

#!/usr/bin/env node
/**
 * `npm run build`: what the published packages hold. The dashboard is built (if its sources
 * changed) and copied into the server package (dist/dashboard/), since an installed server
 * cannot reach outside its own package; then every package is compiled to JavaScript and
 * declarations in dist/ by one `tsc -b` over tsconfig.build.json (dependency order, incremental).
 * A clone runs its sources without this (tools/dev/register.mjs); `npm pack` needs it.
 *
 *   node tools/build.mjs [--clean]
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = ['core', 'client', 'adapter-kit', 'verify', 'mcp', 'server', 'ai-sdk', 'openai-agents', 'langchain'];

function run(args) {
  const result = spawnSync(process.execPath, args, { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`${args.join(' ')} failed (exit ${result.status})`);
}

if (process.argv.includes('--clean')) for (const p of PACKAGES) rmSync(join(ROOT, 'packages', p, 'dist'), { recursive: true, force: true });

run([join(ROOT, 'packages/dashboard/scripts/ensure-built.mjs'), '--quiet']);
const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
run([tsc, '-b', 'tsconfig.build.json']);

const from = join(ROOT, 'packages/dashboard/dist');
const to = join(ROOT, 'packages/server/dist/dashboard');
if (!existsSync(join(from, 'index.html'))) throw new Error(`no dashboard build in ${from}`);
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true, filter: (path) => !path.split(/[\\/]/).pop().startsWith('.') || path === from });

#!/usr/bin/env node
/**
 * Builds the dashboard into dist/ unless it is already up to date with its sources, so
 * `npm start` and the browser tests always serve what is in src/. Cheap when nothing changed
 * (a few stat calls). Safe to run from several processes at once: one builds, the rest wait.
 *
 *   node packages/dashboard/scripts/ensure-built.mjs [--force] [--quiet]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const stamp = join(dist, '.built');
const lock = join(root, '.build-lock');
const force = process.argv.includes('--force');
const quiet = process.argv.includes('--quiet');

function newest(path) {
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let max = s.mtimeMs;
  for (const entry of readdirSync(path)) max = Math.max(max, newest(join(path, entry)));
  return max;
}

function upToDate() {
  if (!existsSync(stamp) || !existsSync(join(dist, 'index.html'))) return false;
  const sources = ['src', 'public', 'index.html', 'vite.config.ts', 'package.json'].map((p) => join(root, p)).filter(existsSync);
  return Math.max(...sources.map(newest)) <= statSync(stamp).mtimeMs;
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function build() {
  const vite = join(dirname(createRequire(join(root, 'package.json')).resolve('vite/package.json')), 'bin', 'vite.js');
  const result = spawnSync(process.execPath, [vite, 'build', '--logLevel', quiet ? 'warn' : 'info'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`vite build failed (exit ${result.status})`);
  writeFileSync(stamp, new Date().toISOString() + '\n');
}

if (!force && upToDate()) process.exit(0);
const deadline = Date.now() + 180_000;
for (;;) {
  try {
    mkdirSync(lock);
    break;
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
    if (Date.now() - statSync(lock, { throwIfNoEntry: false })?.mtimeMs > 180_000) rmSync(lock, { recursive: true, force: true });
    if (Date.now() > deadline) throw new Error(`waited too long for ${lock}`);
    sleep(200);
  }
}
try {
  if (force || !upToDate()) build();
} finally {
  rmSync(lock, { recursive: true, force: true });
}

/** The client must install and run without @countersign/server (and its native driver). */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REPO = fileURLToPath(new URL('../../..', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

describe('package boundaries', () => {
  it('package.json depends on @countersign/core only', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    expect(Object.keys(pkg.dependencies ?? {})).toEqual(['@countersign/core']);
    for (const field of ['devDependencies', 'peerDependencies', 'optionalDependencies', 'bundleDependencies']) {
      expect(Object.keys(pkg[field] ?? {})).not.toContain('@countersign/server');
    }
  });

  it('no source file imports @countersign/server (or a native module) statically', () => {
    const sources = files(join(ROOT, 'src')).filter((f) => f.endsWith('.ts'));
    expect(sources.length).toBeGreaterThan(0);
    const mentions: string[] = [];
    for (const file of sources) {
      const text = readFileSync(file, 'utf8');
      expect(text, file).not.toMatch(/\bfrom\s+['"]@countersign\/server/);
      expect(text, file).not.toMatch(/\bimport\s*\(\s*['"]@countersign\/server/);
      expect(text, file).not.toMatch(/\brequire\s*\(\s*['"]@countersign\/server/);
      expect(text, file).not.toMatch(/['"](better-sqlite3|pg|kysely|hono|@hono\/[^'"]+)['"]/);
      expect(text, file).not.toMatch(/\bfrom\s+['"]node:/); // runs outside Node too
      if (text.includes("'@countersign/server'")) mentions.push(file);
    }
    // The one mention is the runtime specifier of the dynamic import in embedded.ts.
    expect(mentions.map((f) => f.slice(ROOT.length))).toEqual(['src/embedded.ts']);
  });
});

describe('the client installed alone', () => {
  it('imports and runs without @countersign/server; embedded mode says what to install', () => {
    // An app directory holding only the client, core and core's own dependencies.
    const app = mkdtempSync(join(tmpdir(), 'cs-client-alone-'));
    try {
      mkdirSync(join(app, 'node_modules', '@countersign'), { recursive: true });
      symlinkSync(join(REPO, 'packages/client'), join(app, 'node_modules/@countersign/client'));
      symlinkSync(join(REPO, 'packages/core'), join(app, 'node_modules/@countersign/core'));
      // Core's dependencies and theirs, all the way down (each hoisted at the repository's root).
      const dependenciesOf = (dir: string) => Object.keys((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {});
      const linked = new Set<string>();
      const link = (dep: string) => {
        if (linked.has(dep)) return;
        linked.add(dep);
        mkdirSync(join(app, 'node_modules', dep, '..'), { recursive: true });
        symlinkSync(join(REPO, 'node_modules', dep), join(app, 'node_modules', dep));
        for (const next of dependenciesOf(join(REPO, 'node_modules', dep))) link(next);
      };
      for (const dep of dependenciesOf(join(REPO, 'packages/core'))) link(dep);
      writeFileSync(
        join(app, 'agent.mjs'),
        [
          "import { Countersign, CountersignError } from '@countersign/client';",
          'const out = {};',
          "try { await Countersign.embedded(); out.embedded = 'loaded'; } catch (e) { out.embedded = { isCs: e instanceof CountersignError, code: e.code, message: e.message }; }",
          "out.http = typeof new Countersign({ url: 'http://127.0.0.1:1', apiKey: 'csk_0123456789abcdef' }).requestApproval;",
          'console.log(JSON.stringify(out));',
        ].join('\n'),
      );
      // --preserve-symlinks: resolve from the app directory, not from the monorepo the links point into.
      const stdout = execFileSync(
        process.execPath,
        ['--preserve-symlinks', '--conditions=countersign-source', '--import', join(REPO, 'node_modules/tsx/dist/loader.mjs'), 'agent.mjs'],
        { cwd: app, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } },
      );
      const out = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { embedded: { isCs: boolean; code: string; message: string }; http: string };
      expect(out.http).toBe('function');
      expect(out.embedded).toMatchObject({ isCs: true, code: 'NOT_IMPLEMENTED' });
      expect(out.embedded.message).toContain('npm install @countersign/server');
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  }, 30_000);
});

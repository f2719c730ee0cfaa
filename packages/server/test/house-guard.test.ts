/**
 * The house (issue 10): no caller reaches through the engine to its store. Code under src/
 * outside engine/ reads through the engine's methods (engine/views.ts) and, when it wires
 * something to the database, gets the store from the composition root that opened it
 * (runtime.ts, or a CLI command's own `openStore`). Tests may keep using `engine.store`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../src');

/** `engine.store`, `this.engine.store`, `runtime.engine.store`, `Pick<Engine, 'store'>`, across whitespace. */
const REACHES_THROUGH = [/\bengine\s*(\?\.|!\.|\.)\s*store\b/i, /\bEngine\s*,\s*['"]store['"]/, /\bengine\s*\[\s*['"]store['"]\s*\]/i];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|tsx|mts)$/.test(name) ? [path] : [];
  });
}

function reachesThrough(text: string): string[] {
  return text.split('\n').filter((line) => REACHES_THROUGH.some((re) => re.test(line)));
}

describe('no caller reaches through the engine to the store', () => {
  it('the matcher sees the ways of writing it (so the check below can fail)', () => {
    expect(reachesThrough('const t = this.engine.store.timers;')).toHaveLength(1);
    expect(reachesThrough('await engine.store\n  .ping();')).toHaveLength(1);
    expect(reachesThrough("function f(e: Pick<Engine, 'store'>) {}")).toHaveLength(1);
    expect(reachesThrough("engine['store'].ping()")).toHaveLength(1);
    expect(reachesThrough('runtime.engine?.store')).toHaveLength(1);
    expect(reachesThrough('await engine.storedDeliveries({})')).toHaveLength(0);
  });

  it('src/ outside engine/ never reads engine.store', () => {
    const files = sources(SRC).filter((f) => !relative(SRC, f).startsWith('engine/'));
    expect(files.length).toBeGreaterThan(50);
    const found = files.flatMap((f) => reachesThrough(readFileSync(f, 'utf8')).map((line) => `${relative(SRC, f)}: ${line.trim()}`));
    expect(found).toEqual([]);
  });
});

/**
 * Issue 13 point 8 (first bullet): the SQLite file, its WAL and SHM files and the audit key are
 * created 0600 (their new directory 0700), even under a permissive umask; a database file left
 * world-readable by an older version is narrowed when the server opens it.
 */
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveServerConfig } from '../src/config.ts';
import { startServer } from '../src/serve.ts';
import { QUEUED } from './support/engine.ts';

const modeOf = (path: string) => statSync(path).mode & 0o777;

let root: string;
let umask: number;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'countersign-modes-'));
  umask = process.umask(0o000); // the worst case: nothing narrowed by the umask
});
afterAll(() => {
  process.umask(umask);
  rmSync(root, { recursive: true, force: true });
});

async function runOnce(dbFile: string): Promise<void> {
  const server = await startServer(resolveServerConfig({ database: `sqlite:${dbFile}`, port: 0 }, {}, root), () => {});
  try {
    if (server.bootstrap) {
      const res = await fetch(`${server.url}/v1/requests`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.bootstrap.agentKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(QUEUED),
      });
      expect(res.status).toBe(201);
    }
    // Checked while the server runs: the WAL and SHM files exist now.
    for (const path of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) expect([path, modeOf(path)]).toEqual([path, 0o600]);
  } finally {
    await server.close();
  }
}

describe('file modes at rest', () => {
  it('a new database, its WAL and SHM and the audit key next to it are 0600, its new directory 0700', async () => {
    const dir = join(root, 'fresh', 'data');
    const dbFile = join(dir, 'countersign.db');
    await runOnce(dbFile);
    expect(modeOf(dir)).toBe(0o700);
    expect(modeOf(join(dir, 'countersign-audit-key.pem'))).toBe(0o600);
    expect(modeOf(dbFile)).toBe(0o600);
  });

  it('a database file left 0644 (and its WAL 0666) by an older version is narrowed to 0600 at open', async () => {
    const dbFile = join(root, 'old.db');
    await runOnce(dbFile);
    chmodSync(dbFile, 0o644);
    writeFileSync(`${dbFile}-wal`, '');
    chmodSync(`${dbFile}-wal`, 0o666);
    await runOnce(dbFile);
    expect(modeOf(dbFile)).toBe(0o600);
  });
});

/**
 * Issue 11, point 11: a SQLite and a PostgreSQL installation started from the same directory do
 * not silently share `./countersign-audit-key.pem`. The default key file is derived per database;
 * an older PostgreSQL installation whose trail that shared file signed keeps working with it.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultAuditKeyPath, postgresKeyName } from '../src/audit/config.ts';
import { resolveRuntimeConfig } from '../src/config.ts';
import { openRuntime } from '../src/runtime.ts';
import { PG_BASE_URL, postgresDatabase, sqliteDatabase, type TestDatabase } from './support/databases.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function cwd(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cs-keys-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function pg(): TestDatabase {
  const db = postgresDatabase();
  cleanups.push(() => db.drop());
  return db;
}

/** Opens the runtime as `serve` would from `dir`, with nothing set but the database (and an explicit key, if given). */
async function open(url: string, dir: string, auditKey?: string) {
  const logs: string[] = [];
  const config = resolveRuntimeConfig({ database: url, ...(auditKey ? { auditKey } : {}) }, {}, dir);
  const runtime = await openRuntime(config, { policy: { text: DEFAULT_POLICY_YAML, source: 'test' }, log: (l) => logs.push(l) });
  return { runtime, logs, keyId: runtime.engine.trail.key.keyId, keyPath: runtime.engine.trail.key.path };
}

describe('the default audit key file, per database', () => {
  it('differs between SQLite and PostgreSQL, and between PostgreSQL databases and schemas, from one directory', () => {
    const dir = '/srv/cs';
    const paths = [
      defaultAuditKeyPath('sqlite:./countersign.db', dir),
      defaultAuditKeyPath('postgres://postgres@127.0.0.1:5432/countersign', dir),
      defaultAuditKeyPath('postgres://postgres@127.0.0.1:5432/other', dir),
      defaultAuditKeyPath('postgres://postgres@127.0.0.1:5432/countersign?schema=tenant_a', dir),
      defaultAuditKeyPath('postgres://postgres@db.internal/countersign', dir),
    ];
    expect(new Set(paths).size).toBe(paths.length);
    expect(paths[0]).toBe('/srv/cs/countersign-audit-key.pem');
    expect(paths[1]).toBe('/srv/cs/countersign-audit-key.pg-127.0.0.1-5432-countersign.pem');
    expect(paths[3]).toBe('/srv/cs/countersign-audit-key.pg-127.0.0.1-5432-countersign-tenant_a.pem');
    // A password never reaches the file name, and nothing in the URL can climb out of the directory.
    expect(postgresKeyName('postgres://u:s3cret@h/db')).not.toContain('s3cret');
    expect(postgresKeyName('postgres://h/..%2F..%2Fetc%2Fpasswd')).not.toMatch(/\//);
    expect(defaultAuditKeyPath('postgres://h/..%2F..%2Fetc', dir)!.startsWith('/srv/cs/countersign-audit-key.')).toBe(true);
  });

  it('a SQLite and a PostgreSQL installation started from one directory sign with different keys', async () => {
    const dir = cwd();
    const sqlite = await open(`sqlite:${join(dir, 'countersign.db')}`, dir);
    await sqlite.runtime.close();
    const db = pg();
    const postgres = await open(db.url, dir);
    await postgres.runtime.close();
    expect(sqlite.keyPath).toBe(join(dir, 'countersign-audit-key.pem'));
    expect(postgres.keyPath).toBe(join(dir, `countersign-audit-key.${postgresKeyName(db.url)}.pem`));
    expect(postgres.keyId).not.toBe(sqlite.keyId);
    expect(postgres.logs.join('\n')).not.toMatch(/used to share/);
  }, 60_000);

  it('an older PostgreSQL installation whose trail the shared file signed keeps that key, and is told to move it', async () => {
    const dir = cwd();
    const db = pg();
    // As before this change: the PostgreSQL key was ./countersign-audit-key.pem.
    const before = await open(db.url, dir, join(dir, 'countersign-audit-key.pem'));
    await before.runtime.engine.trail.checkpoint();
    await before.runtime.close();
    const after = await open(db.url, dir);
    await after.runtime.close();
    expect(after.keyId).toBe(before.keyId);
    expect(after.keyPath).toBe(join(dir, 'countersign-audit-key.pem'));
    expect(after.logs.join('\n')).toMatch(/used to share; move it to .*countersign-audit-key\.pg-/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.pem'))).toEqual(['countersign-audit-key.pem']);
  }, 60_000);

  it('a shared file that did not sign this PostgreSQL trail is not picked up; the database gets its own', async () => {
    const dir = cwd();
    const sqlite = await open(`sqlite:${join(dir, 'countersign.db')}`, dir);
    await sqlite.runtime.close();
    const db = pg();
    const first = await open(db.url, dir);
    await first.runtime.close();
    expect(first.keyId).not.toBe(sqlite.keyId);
    // And on the next start it stays with its own, even though the shared file is still there.
    const again = await open(db.url, dir);
    await again.runtime.close();
    expect(again.keyId).toBe(first.keyId);
    expect(existsSync(join(dir, 'countersign-audit-key.pem'))).toBe(true);
    expect(PG_BASE_URL).toMatch(/^postgres/);
  }, 60_000);
});

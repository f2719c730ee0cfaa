/**
 * A stalled integrator is visible (review of issue 14): while a session holds the integrator's
 * lock or a row lock on a pending entry, /healthz says `degraded` (AUDIT_INTEGRATION_STALLED)
 * once the oldest pending entry is older than its bound, and the failing batches reach the
 * store's onError (the runtime's log). Real PostgreSQL, real app.
 */
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveRuntimeConfig } from '../src/config.ts';
import { createApp } from '../src/http/app.ts';
import { openRuntime } from '../src/runtime.ts';
import { connect } from '../src/store/connect.ts';
import { PG_BASE_URL, postgresDatabase } from './support/databases.ts';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

const pendingRow = (at: number) => ({ at, type: 'test', request_id: 'req_h', actor_type: 'system' as const, actor_id: 'system', actor_name: 'test', data: '{}' });

describe('PostgreSQL: a stalled integrator', () => {
  it('/healthz is degraded while an old entry stays pending, ok once it is integrated; the failing batches reach onStoreError', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const dir = mkdtempSync(join(tmpdir(), 'cs-integrator-health-'));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const logged: string[] = [];
    const runtime = await openRuntime(resolveRuntimeConfig({ database: db.url, auditKey: join(dir, 'countersign-audit-key.pem') }, {}), { policy: { text: DEFAULT_POLICY_YAML, source: 'test' }, log: (line) => logged.push(line) });
    cleanup.push(() => runtime.close());
    const engine = runtime.engine;
    const health = async () => (await createApp({ engine, log: () => {} }).request('/healthz')).json() as Promise<Record<string, any>>;
    expect((await health()).status).toBe('ok');

    // Committed by another process ten seconds ago (by its clock) and row-locked by a session.
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    await raw.db.insertInto('audit_pending').values(pendingRow(Date.now() - 10_000)).execute();
    const schema = new URL(db.url).searchParams.get('schema')!;
    const holder = new pg.Client({ connectionString: PG_BASE_URL, options: `-c search_path=${schema}` });
    await holder.connect();
    cleanup.push(() => holder.end());
    await holder.query('begin');
    await holder.query('select id from audit_pending for update');

    const stalled = await health();
    expect(stalled).toMatchObject({ status: 'degraded', audit: { code: 'AUDIT_INTEGRATION_STALLED' } });
    expect(stalled.audit.reason).toMatch(/not yet integrated is \d+ s old/);
    // The batch waited for the row lock at most its lock_timeout and failed: reported, not swallowed.
    await engine.store.settleAudit(2500);
    // (the server's log, through the runtime's onStoreError).
    expect(logged.some((m) => /audit integration failed.*lock timeout/i.test(m)), logged.join('; ')).toBe(true);

    await holder.query('rollback');
    expect(await engine.store.settleAudit(3000)).toBe(true);
    expect((await health()).status).toBe('ok');
  }, 30_000);
});

/**
 * The one composition root and the one config: precedence flag > COUNTERSIGN_* env > file >
 * default, frozen; `serve` and embedded mode built by the same runtime, so embedded mode now
 * checkpoints its trail and honours COUNTERSIGN_AUDIT_REDACT_FIELDS like the server.
 */
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveRuntimeConfig, resolveServerConfig } from '../src/config.ts';
import { createEmbeddedGateway } from '../src/embedded.ts';
import { openRuntime } from '../src/runtime.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { QUEUED } from './support/engine.ts';

const dropped: TestDatabase[] = [];
afterAll(async () => {
  for (const d of dropped) await d.drop();
});

describe('config: one pipeline, resolved once', () => {
  it('takes a flag over the environment, the environment over the file, the file over the default', () => {
    const cwd = '/nonexistent-countersign-cwd';
    expect(resolveServerConfig({}, {}, cwd).port).toBe(8080);
    expect(resolveServerConfig({}, {}, cwd, { port: 7001 }).port).toBe(7001);
    expect(resolveServerConfig({}, { COUNTERSIGN_PORT: '7002' }, cwd, { port: 7001 }).port).toBe(7002);
    expect(resolveServerConfig({ port: 7003 }, { COUNTERSIGN_PORT: '7002' }, cwd, { port: 7001 }).port).toBe(7003);
    expect(resolveRuntimeConfig({}, {}, cwd, { database: 'sqlite:/tmp/file.db' }).databaseUrl).toBe('sqlite:/tmp/file.db');
    expect(resolveRuntimeConfig({}, { COUNTERSIGN_DATABASE_URL: 'sqlite:/tmp/env.db' }, cwd, { database: 'sqlite:/tmp/file.db' }).databaseUrl).toBe('sqlite:/tmp/env.db');
    expect(resolveRuntimeConfig({ tickMs: 20 }, { COUNTERSIGN_TICK_MS: '30' }, cwd, { tickMs: 40 }).tickMs).toBe(20);
    expect(resolveRuntimeConfig({ auditKey: '/k/flag.pem' }, { COUNTERSIGN_AUDIT_KEY_PATH: '/k/env.pem' }, cwd).audit.keyPath).toBe('/k/flag.pem');
    expect(resolveRuntimeConfig({}, { COUNTERSIGN_AUDIT_KEY_PATH: '/k/env.pem' }, cwd, { auditKey: '/k/file.pem' }).audit.keyPath).toBe('/k/env.pem');
    expect(resolveRuntimeConfig({}, {}, cwd, { auditKey: '/k/file.pem' }).audit.keyPath).toBe('/k/file.pem');
  });

  it('is frozen, with every part the runtime needs, and refuses a bad value naming it', () => {
    const config = resolveServerConfig({ database: 'sqlite::memory:' }, { COUNTERSIGN_ENCRYPTION_KEY: 'k'.repeat(64), COUNTERSIGN_REVIEWER_LIMITS: 'off', COUNTERSIGN_AUDIT_REDACT_FIELDS: 'hostname' }, '/nonexistent-countersign-cwd');
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.env)).toBe(true);
    expect(Object.isFrozen(config.guard)).toBe(true);
    expect(config.guard.encryptionKey).toBe('k'.repeat(64));
    expect(config.guard.cooldown).toBeDefined();
    expect(config.audit.redactFields).toEqual(['hostname']);
    expect(() => resolveRuntimeConfig({}, { COUNTERSIGN_TICK_MS: 'soon' })).toThrow(/COUNTERSIGN_TICK_MS/);
    expect(() => resolveRuntimeConfig({}, { COUNTERSIGN_REVIEWER_LIMITS: 'maybe' })).toThrow(/COUNTERSIGN_REVIEWER_LIMITS/);
  });
});

describe('runtime: one composition root', () => {
  it('applies the configured redacted fields and signs checkpoints once started', async () => {
    const database = sqliteDatabase();
    dropped.push(database);
    const config = resolveRuntimeConfig({ database: database.url, auditKey: `${database.url.slice('sqlite:'.length)}.key.pem` }, { COUNTERSIGN_AUDIT_REDACT_FIELDS: 'reason' });
    const runtime = await openRuntime(config, { policy: { text: DEFAULT_POLICY_YAML, source: 'test' }, log: () => {} });
    try {
      const boot = (await runtime.engine.bootstrap())!;
      const agent = (await runtime.engine.authenticate(boot.agentKey))!;
      const { request } = await runtime.engine.createRequest(agent, CreateRequestBody.parse(QUEUED));
      await runtime.engine.cancel(agent, request.id, { reason: 'no longer needed' });
      const admin = (await runtime.engine.authenticate(boot.adminToken))!;
      const cancelled = (await runtime.engine.auditForRequest(admin, request.id)).find((e) => e.type === 'cancelled')!;
      expect(cancelled.data).toMatchObject({ reason: runtime.engine.trail.redactionToken('reason', 'no longer needed') });
      expect(await runtime.engine.trail.latestCheckpoint()).toBeNull();
      runtime.start({ reviewBase: 'http://127.0.0.1:1' });
    } finally {
      await runtime.close();
    }
    const connection = await connect(database.url);
    try {
      const rows = await connection.db.selectFrom('audit_checkpoints').select('tree_size').execute();
      expect(rows.length).toBeGreaterThan(0);
    } finally {
      await connection.destroy();
    }
  });

  it('embedded mode is built by it: closing signs a last checkpoint, as the server does', async () => {
    const database = sqliteDatabase();
    dropped.push(database);
    const gateway = await createEmbeddedGateway({ database: database.url, sweepIntervalMs: 50 });
    const { request } = await gateway.createRequest({ ...QUEUED });
    await gateway.review(request.id, { verdict: 'approve' });
    const head = await gateway.engine.trail.head();
    await gateway.close();
    const connection = await connect(database.url);
    try {
      const rows = await connection.db.selectFrom('audit_checkpoints').select('tree_size').orderBy('tree_size', 'desc').execute();
      expect(rows[0]?.tree_size).toBe(head.treeSize);
    } finally {
      await connection.destroy();
    }
  });
});

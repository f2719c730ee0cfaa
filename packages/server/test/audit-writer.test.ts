/**
 * One audit writer: the only appender of entries, redacting and attributing every one of them
 * (the guard's refusals included, which were stored in clear before), with event types from
 * core's catalogue.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { AUDIT_EVENTS, AUDIT_EVENT_TYPES, CreateRequestBody, GUARD_EVENT_TYPES, isAuditEventType } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

const SRC = resolve(import.meta.dirname, '../src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('the audit writer', () => {
  let database: TestDatabase;
  let t: TestEngine;

  beforeAll(async () => {
    database = sqliteDatabase();
    t = await openTestEngine(database.url);
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('is the only caller of Queries.appendAudit in the server', () => {
    const callers = sources(SRC)
      .filter((file) => /\.appendAudit\(/.test(readFileSync(file, 'utf8')))
      .map((file) => relative(SRC, file));
    expect(callers).toEqual(['audit/writer.ts']);
  });

  it("redacts a guard refusal's data: the address an approval came from is stored as its token", async () => {
    const reviewer = await t.operator('ip-reviewer');
    await t.engine.guard.setAllowlist(t.admin, 'ip-reviewer', ['10.0.0.0/8']);
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse(QUEUED));
    await expect(t.engine.review(reviewer, request.id, { verdict: 'approve' }, { ip: '198.51.100.23' })).rejects.toMatchObject({ code: 'IP_NOT_ALLOWED' });
    const refused = (await t.engine.store.auditFor(request.id)).filter((e) => e.type === 'review_refused');
    expect(refused).toHaveLength(1);
    const entry = refused[0]!;
    expect(entry.data).not.toContain('198.51.100.23');
    const data = JSON.parse(entry.data) as { code: string; message: string };
    expect(data.code).toBe('IP_NOT_ALLOWED');
    expect(data.message).toContain(t.engine.trail.redactionToken('ip_address', '198.51.100.23'));
    expect(entry).toMatchObject({ actor_type: 'operator', actor_name: 'ip-reviewer' });
    // The allowlist itself is the control's configuration and stays readable.
    const set = (await t.engine.store.listAudit({ type: 'ip_allowlist_set', limit: 10 })).at(-1)!;
    expect(JSON.parse(set.data)).toMatchObject({ cidrs: ['10.0.0.0/8'] });
  });

  it('takes event types from the catalogue, which names every guard event a report counts', () => {
    for (const type of GUARD_EVENT_TYPES) expect(isAuditEventType(type), type).toBe(true);
    for (const type of ['reviewed', 'approved', 'rejected', 'cancelled', 'expired', 'executed', 'execution_failed', 'execution_started', 'claim_refused', 'review_refused', 'create_refused']) {
      expect(isAuditEventType(type), type).toBe(true);
    }
    expect(isAuditEventType('toString')).toBe(false);
    expect(AUDIT_EVENT_TYPES.length).toBe(Object.keys(AUDIT_EVENTS).length);
  });

  it("writes only catalogued types, with data fields the catalogue names", async () => {
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse(QUEUED));
    const reviewer = await t.operator('catalogue-reviewer');
    const approved = await t.engine.review(reviewer, request.id, { verdict: 'approve', reason: 'ok' });
    // A refused claim (the report comes first), the claim, and the report: each entry's fields are catalogued.
    await expect(t.engine.reportExecution(t.agent, request.id, { status: 'started', receipt: { ...approved.decision!.receipt!, nonce: 'x' } })).rejects.toMatchObject({ code: 'RECEIPT_MISMATCH' });
    await t.engine.reportExecution(t.agent, request.id, { status: 'started', receipt: approved.decision!.receipt! });
    await t.engine.reportExecution(t.agent, request.id, { status: 'failed', error: 'boom' });
    const other = (await t.engine.createRequest(t.agent, CreateRequestBody.parse(QUEUED))).request;
    await t.engine.cancel(t.agent, other.id, { reason: 'not needed' });
    const all = await t.engine.store.listAudit({ limit: 10_000 });
    expect(all.length).toBeGreaterThan(10);
    for (const row of all) {
      expect(isAuditEventType(row.type), row.type).toBe(true);
      const spec = AUDIT_EVENTS[row.type as keyof typeof AUDIT_EVENTS];
      const known = new Set(spec.data.map((f: string) => f.replace(/\?$/, '')));
      for (const key of Object.keys(JSON.parse(row.data) as object)) expect(known.has(key), `${row.type}.${key}`).toBe(true);
    }
  });

  it('the created entry records the confidence the agent claimed (issue 18, the card everywhere)', async () => {
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, confidence: 0.37 }));
    const [created] = await t.engine.store.listAudit({ requestId: request.id, type: 'created', limit: 5 });
    expect(JSON.parse(created!.data)).toMatchObject({ action: QUEUED.action, confidence: 0.37 });
  });
});

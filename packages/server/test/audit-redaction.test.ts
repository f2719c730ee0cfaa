/** What the trail stores: personal data as keyed tokens, the payload as its hash, never the args. */
import { CreateRequestBody, canonicalJson } from '@countersign/core';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../src/engine/engine.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

describe('audit data: redaction and payload hashes', () => {
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

  const entries = async (id: string) => (await t.engine.auditForRequest(t.admin, id)) as Array<AuditEntry & { data: Record<string, unknown> }>;

  it('stores personal data in reasons and errors as tokens that can still be looked up', async () => {
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, args: { host: 'ws-7', ip_address: '198.51.100.4' } }));
    const reviewer = await t.operator('redaction-reviewer');
    const approved = await t.engine.review(reviewer, request.id, { verdict: 'approve', reason: 'confirmed with ann@corp.example, host 198.51.100.4' });
    await t.engine.reportExecution(t.agent, request.id, { status: 'started', receipt: approved.decision!.receipt! });
    await t.engine.reportExecution(t.agent, request.id, { status: 'failed', error: 'EDR refused for user bob@corp.example' });
    const trail = await entries(request.id);
    const reviewed = trail.find((e) => e.type === 'reviewed')!;
    const email = t.engine.trail.redactionToken('email', 'ann@corp.example');
    const ip = t.engine.trail.redactionToken('ip_address', '198.51.100.4');
    expect(reviewed.data.reason).toBe(`confirmed with ${email}, host ${ip}`);
    expect(trail.find((e) => e.type === 'execution_failed')!.data.error).toBe(`EDR refused for user ${t.engine.trail.redactionToken('email', 'bob@corp.example')}`);
    const stored = JSON.stringify(trail);
    expect(stored).not.toContain('ann@corp.example');
    expect(stored).not.toContain('bob@corp.example');
    expect(stored).not.toContain('198.51.100.4');
    // An investigator finds every entry that mentions the address, by its token.
    const all = await t.engine.trail.query(t.admin, { limit: 1000 });
    expect(all.items.filter((e) => JSON.stringify(e.data).includes(email)).map((e) => e.type)).toEqual(['reviewed', 'approved']);
    // The decider's identity is kept.
    expect(trail.find((e) => e.type === 'approved')!.data.deciders).toEqual(['redaction-reviewer']);
  });

  it('binds the proposed and the approved payload by hash, as the receipt does, without storing args', async () => {
    const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, args: { host: 'ws-8' } }));
    const reviewer = await t.operator('payload-reviewer');
    const decided = await t.engine.review(reviewer, request.id, { verdict: 'approve', args: { host: 'ws-9' } });
    const trail = await entries(request.id);
    expect(trail.find((e) => e.type === 'created')!.data.payloadHash).toBe(sha256Hex(canonicalJson({ action: 'isolate_host', args: { host: 'ws-8' } })));
    const approved = trail.find((e) => e.type === 'approved')!;
    expect(approved.data.payloadHash).toBe(sha256Hex(canonicalJson({ action: 'isolate_host', args: { host: 'ws-9' } })));
    expect(approved.data.payloadHash).toBe(decided.decision?.receipt?.payloadHash);
    expect(JSON.stringify(trail)).not.toContain('ws-8');
    const auto = (await t.engine.createRequest(t.agent, CreateRequestBody.parse(AUTO))).request;
    const autoTrail = await entries(auto.id);
    expect(autoTrail.find((e) => e.type === 'approved')!.data.payloadHash).toBe(auto.decision?.receipt?.payloadHash);
  });

  it('takes configured field names', async () => {
    t.engine.trail.setRedactedFields(['reason']);
    try {
      const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse(QUEUED));
      await t.engine.cancel(t.agent, request.id, { reason: 'no longer needed' });
      const cancelled = (await entries(request.id)).find((e) => e.type === 'cancelled')!;
      expect(cancelled.data.reason).toBe(t.engine.trail.redactionToken('reason', 'no longer needed'));
    } finally {
      t.engine.trail.setRedactedFields(undefined);
    }
  });
});

/**
 * Self-approval attempts: a review of one's own request is refused (SELF_REVIEW), the refusal is
 * audited as `review_refused` (the same path as the guard's refusals), and compliance reports
 * count the attempts as violations — on both databases.
 */
import { CreateRequestBody, type ComplianceReport } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

describe.each(ENGINES)('self-approval attempts: $name', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;
  let started: number;
  let ownId = '';

  beforeAll(async () => {
    database = make();
    t = await openTestEngine(database.url);
    started = Date.now() - 1;
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('refuses the attempt, audits it as review_refused, and the report counts it', async () => {
    const olga = await t.operator('olga', ['reviewer']);
    ownId = (await t.engine.createRequest(olga, CreateRequestBody.parse(QUEUED))).request.id;
    for (const verdict of ['approve', 'approve'] as const) {
      await expect(t.engine.review(olga, ownId, { verdict })).rejects.toMatchObject({ code: 'SELF_REVIEW' });
    }
    expect((await t.engine.getRequest(t.admin, ownId)).status).toBe('pending');

    const refused = (await t.engine.store.auditFor(ownId)).filter((e) => e.type === 'review_refused');
    expect(refused).toHaveLength(2);
    expect(JSON.parse(refused[0]!.data)).toMatchObject({ code: 'SELF_REVIEW' });
    expect(refused[0]).toMatchObject({ actor_type: 'operator', actor_name: 'olga' });

    const auditor = (await t.engine.createOperator(t.admin, { name: 'ann', roles: ['auditor'] })).token;
    const app = createApp({ engine: t.engine, log: () => {} });
    const res = await app.request(`/v1/reports/compliance?regulation=SOC2&from=${encodeURIComponent(new Date(started).toISOString())}`, {
      headers: { authorization: `Bearer ${auditor}` },
    });
    expect(res.status).toBe(200);
    const r = (await res.json()) as ComplianceReport;
    expect(r.violations.byKind.self_approval_attempt).toBe(2);
    expect(r.violations.byKind.self_approval).toBe(0);
    expect(r.violations.items.filter((v) => v.kind === 'self_approval_attempt')).toEqual([
      expect.objectContaining({ requestId: ownId, action: QUEUED.action, detail: expect.stringContaining('olga') }),
      expect.objectContaining({ requestId: ownId }),
    ]);
    expect(r.recommendations.join('\n')).toMatch(/2 attempt\(s\) to review one's own request were refused/);

    // A period before the attempts counts none.
    const none = (await (await app.request('/v1/reports/compliance?regulation=SOC2&from=2000-01-01&to=2000-02-01', { headers: { authorization: `Bearer ${auditor}` } })).json()) as ComplianceReport;
    expect(none.violations.byKind.self_approval_attempt).toBe(0);
  });
});

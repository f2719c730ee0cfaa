/** Compliance reports and operator metrics over HTTP, on both databases, from real engine activity. */
import { CreateRequestBody, type ComplianceReport } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.ts';
import type { Principal } from '../src/engine/principal.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

describe.each(ENGINES)('reports: $name', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;
  let app: ReturnType<typeof createApp>;
  let auditor: string;
  let reviewerToken: string;
  let reviewer: Principal;
  let started: number;

  beforeAll(async () => {
    database = make();
    t = await openTestEngine(database.url);
    app = createApp({ engine: t.engine, log: () => {} });
    auditor = (await t.engine.createOperator(t.admin, { name: 'ann-auditor', roles: ['auditor'] })).token;
    const created = await t.engine.createOperator(t.admin, { name: 'rita', roles: ['reviewer'] });
    reviewerToken = created.token;
    reviewer = (await t.engine.authenticate(created.token))!;
    started = Date.now() - 1;
    for (let i = 0; i < 4; i++) await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `203.0.113.${i}` } }));
    const approve = (await t.engine.createRequest(t.agent, CreateRequestBody.parse(QUEUED))).request;
    await t.engine.review(reviewer, approve.id, { verdict: 'approve', args: { host: 'ws-043' } });
    const reject = (await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, args: { host: 'ws-9' } }))).request;
    await t.engine.review(reviewer, reject.id, { verdict: 'reject', reason: 'wrong host' });
    await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, args: { host: 'ws-10' } })); // stays pending
    await t.engine.trail.checkpoint();
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  const get = (path: string, token = auditor) => app.request(path, { headers: { authorization: `Bearer ${token}` } });
  const since = () => new Date(started).toISOString();

  it('reports the period: decisions by who decided, approval rate, review times, overrides, SLA, integrity', async () => {
    const res = await get(`/v1/reports/compliance?regulation=SOC2&from=${encodeURIComponent(since())}`);
    expect(res.status).toBe(200);
    const r = (await res.json()) as ComplianceReport;
    expect(r.decisions).toMatchObject({ requests: 7, decided: 6, pending: 1, automated: 4, humanReviewed: 2, approved: 5, rejected: 1 });
    expect(r.decisions.approvalRate).toBe(0.833);
    expect(r.review.decisions).toBe(2);
    expect(r.review.averageSeconds).not.toBeNull();
    expect(r.overrides).toMatchObject({ modifiedArgs: 1, alternatives: 0, rate: 0.5 });
    expect(r.sla).toMatchObject({ withSla: 2, withinSla: 2, compliance: 1 });
    expect(r.violations.total).toBe(0);
    expect(r.controls.integrity.join()).toContain('CC7.2');
    const latest = await t.engine.trail.latestCheckpoint();
    expect(r.integrity).toMatchObject({ treeSize: latest!.treeSize, rootHash: latest!.rootHash, keyId: t.engine.trail.key.keyId });
    const none = (await (await get(`/v1/reports/compliance?regulation=HIPAA&from=2000-01-01&to=2000-02-01`)).json()) as ComplianceReport;
    expect(none.decisions.requests).toBe(0);
    expect(none.controls.integrity.join()).toContain('§164.312(b)');
  });

  it('renders Markdown and CSV', async () => {
    const md = await get(`/v1/reports/compliance?regulation=GDPR&from=${encodeURIComponent(since())}&format=markdown`);
    expect(md.headers.get('content-type')).toContain('text/markdown');
    const text = await md.text();
    expect(text).toMatch(/^# GDPR compliance report/);
    expect(text).toContain('Art. 22');
    const csv = await get(`/v1/reports/compliance?regulation=PCI-DSS&from=${encodeURIComponent(since())}&format=csv`);
    expect(csv.headers.get('content-type')).toContain('text/csv');
    expect(csv.headers.get('content-disposition')).toMatch(/attachment; filename="countersign-PCI-DSS-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv"/);
    expect(await csv.text()).toContain('"decisions","requests","7"');
  });

  it('is for auditors and senior roles; refuses bad periods', async () => {
    expect((await get(`/v1/reports/compliance?regulation=SOC2&from=2026-01-01`, reviewerToken)).status).toBe(403);
    for (const q of ['regulation=SOX&from=2026-01-01', 'regulation=SOC2', 'regulation=SOC2&from=yesterday', 'regulation=SOC2&from=2026-02-01&to=2026-01-01', 'regulation=SOC2&from=2026-01-01&format=pdf']) {
      const res = await get(`/v1/reports/compliance?${q}`);
      expect(res.status, q).toBe(400);
    }
  });

  it("serves an operator's metrics to themself and to auditors, not to other reviewers", async () => {
    const id = reviewer.kind === 'operator' ? reviewer.operatorId : '';
    const mine = await get(`/v1/metrics/operators/${id}?period=1h`, reviewerToken);
    expect(mine.status).toBe(200);
    expect(await mine.json()).toMatchObject({
      operator: { id, name: 'rita' },
      period: '1h',
      decisionsReviewed: 2,
      approvals: 1,
      rejections: 1,
      approvalRate: 0.5,
      overrides: 1,
      slaCompliance: 1,
    });
    expect((await get(`/v1/metrics/operators/rita`)).status).toBe(200); // by name, as an auditor
    const other = (await t.engine.createOperator(t.admin, { name: 'otto', roles: ['reviewer'] })).token;
    expect((await get(`/v1/metrics/operators/${id}`, other)).status).toBe(403);
    expect((await get(`/v1/metrics/operators/op_nobody`)).status).toBe(404);
    expect((await get(`/v1/metrics/operators/${id}?period=forever`)).status).toBe(400);
  });

  it("counts the guard's refusals and actions of the period from the trail", async () => {
    const from = Date.now() - 1;
    const paused = await t.engine.createAgentKey(t.admin, 'paused-for-report');
    const agent = (await t.engine.authenticate(paused.key))!;
    await t.engine.guard.pause(t.admin, 'paused-for-report', { minutes: 10, reason: 'report test' });
    await expect(t.engine.createRequest(agent, CreateRequestBody.parse(AUTO))).rejects.toThrow(/paused/);
    await t.engine.guard.setCooldown(t.admin, 'rita', { minutes: 5, reason: 'report test' });
    const high = (await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, args: { host: 'ws-report' }, riskLevel: 'high' }))).request;
    await expect(t.engine.review(reviewer, high.id, { verdict: 'approve' })).rejects.toThrow(/cool-down/);
    const r = (await (await get(`/v1/reports/compliance?regulation=SOC2&from=${encodeURIComponent(new Date(from).toISOString())}`)).json()) as ComplianceReport;
    expect(r.protection.refusals).toMatchObject({ AGENT_PAUSED: 1, COOLDOWN_ACTIVE: 1, MFA_INVALID: 0 });
    expect(r.protection.events).toMatchObject({ agent_paused: 1, cooldown_started: 1, slicing_alert: 0 });
    const before = (await (await get(`/v1/reports/compliance?regulation=SOC2&from=2000-01-01&to=2000-02-01`)).json()) as ComplianceReport;
    expect(before.protection.events.agent_paused).toBe(0); // only the period counts
  });
});

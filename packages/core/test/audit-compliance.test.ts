/** Compliance reports from request facts: the figures, the violations, the controls, the renderings. */
import { describe, expect, it } from 'vitest';
import { ComplianceAccumulator, CONTROLS, GUARD_EVENT_TYPES, GUARD_REFUSAL_CODES, REGULATIONS, complianceCsv, complianceMarkdown, type ComplianceFact } from '../src/index.ts';

const T0 = Date.UTC(2026, 0, 5, 9);
let n = 0;

function fact(patch: Partial<ComplianceFact> & { took?: number; decision?: ComplianceFact['decision'] }): ComplianceFact {
  const { took = 60_000, ...rest } = patch;
  const base: ComplianceFact = {
    id: `req_${n++}`,
    action: 'isolate_host',
    status: 'approved',
    riskLevel: 'high',
    createdAt: T0,
    decidedAt: T0 + took,
    slaSeconds: 900,
    requiresApproval: true,
    requesterOperatorId: null,
    decision: { outcome: 'approved', decidedBy: 'reviewers', deciders: [{ type: 'operator', id: 'op_a', name: 'alice' }], modified: false, alternative: null },
  };
  return { ...base, ...rest };
}

const auto = (p: Partial<ComplianceFact> = {}) =>
  fact({ requiresApproval: false, slaSeconds: null, took: 0, decision: { outcome: 'approved', decidedBy: 'policy', deciders: [], modified: false, alternative: null }, riskLevel: 'low', ...p });

function build(facts: ComplianceFact[], escalations = 0) {
  const acc = new ComplianceAccumulator();
  for (const f of facts) acc.add(f);
  return acc.report({
    regulation: 'SOC2',
    from: '2026-01-01T00:00:00.000Z',
    to: '2026-02-01T00:00:00.000Z',
    generatedAt: '2026-02-01T00:00:00.000Z',
    escalations,
    integrity: { treeSize: 42, rootHash: 'cm9vdA==', checkpointAt: '2026-02-01T00:00:00.000Z', keyId: '0123456789abcdef' },
  });
}

describe('compliance report', () => {
  it('counts decisions by who decided, review times (average, p90) and SLA compliance', () => {
    const facts = [
      auto(),
      auto(),
      auto({ decision: { outcome: 'rejected', decidedBy: 'policy', deciders: [], modified: false, alternative: null } }),
      ...Array.from({ length: 10 }, (_, i) => fact({ took: (i + 1) * 60_000 })), // 1..10 min, SLA 15 min
      fact({ took: 20 * 60_000 }), // breach
      fact({ took: 5 * 60_000, decision: { outcome: 'rejected', decidedBy: 'reviewers', deciders: [{ type: 'operator', id: 'op_b', name: 'bob' }], modified: false, alternative: null } }),
      fact({ decidedAt: null, decision: null, status: 'pending' }),
      fact({ took: 30 * 60_000, decision: { outcome: 'expired', decidedBy: 'timeout', deciders: [], modified: false, alternative: null } }),
      fact({ took: 1000, decision: { outcome: 'cancelled', decidedBy: 'agent', deciders: [], modified: false, alternative: null } }),
    ];
    const r = build(facts, 3);
    expect(r.decisions).toEqual({
      requests: 18,
      decided: 17,
      pending: 1,
      automated: 3,
      humanReviewed: 12,
      byTimeout: 1,
      cancelled: 1,
      approved: 13,
      rejected: 2,
      expired: 1,
      approvalRate: 0.813,
      humanReviewRate: 0.833,
    });
    expect(r.review.decisions).toBe(12);
    expect(r.review.averageSeconds).toBe(Math.round(((55 + 20 + 5) * 60 * 10) / 12) / 10);
    // The core quantile (linear interpolation, as the metrics summary): position 11 × 0.9 = 9.9, 540 s + 0.9 × (600 − 540).
    expect(r.review.p90Seconds).toBe(594);
    expect(r.sla).toEqual({ withSla: 13, withinSla: 11, breached: 2, compliance: 0.846 });
    expect(r.escalations).toBe(3);
    expect(r.violations.byKind).toEqual({ critical_without_human: 0, approved_by_timeout: 0, sla_breach: 2, self_approval: 0, self_approval_attempt: 0 });
    expect(r.controls).toBe(CONTROLS.SOC2);
    expect(r.recommendations.join('\n')).toMatch(/SLA compliance is 85%/);
    expect(r.recommendations.join('\n')).toMatch(/1 request\(s\) of the period are still pending/);
  });

  it('flags critical actions without a human, approvals by timeout, self-approval; counts overrides', () => {
    const r = build([
      auto({ riskLevel: 'critical', action: 'delete_data' }),
      fact({ took: 10_000, decision: { outcome: 'approved', decidedBy: 'timeout', deciders: [], modified: false, alternative: null } }),
      fact({ requesterOperatorId: 'op_a' }),
      fact({ decision: { outcome: 'approved', decidedBy: 'reviewers', deciders: [{ type: 'operator', id: 'op_b', name: 'bob' }], modified: true, alternative: null } }),
      fact({ decision: { outcome: 'approved', decidedBy: 'reviewers', deciders: [{ type: 'operator', id: 'op_b', name: 'bob' }], modified: false, alternative: 'quarantine' } }),
    ]);
    expect(r.violations.byKind).toEqual({ critical_without_human: 1, approved_by_timeout: 1, sla_breach: 1, self_approval: 1, self_approval_attempt: 0 });
    expect(r.violations.items.map((v) => v.kind).sort()).toEqual(['approved_by_timeout', 'critical_without_human', 'self_approval', 'sla_breach']);
    expect(r.overrides).toEqual({ modifiedArgs: 1, alternatives: 1, rate: 0.667 });
    const text = r.recommendations.join('\n');
    expect(text).toMatch(/critical-risk action\(s\) ran without a human/);
    expect(text).toMatch(/onFinalTimeout to reject/);
    expect(text).toMatch(/approved their own request/);
    expect(text).toMatch(/Reviewers changed 67%/);
  });

  it('counts refused self-approval attempts as violations, with a recommendation', () => {
    const acc = new ComplianceAccumulator();
    acc.addSelfReviewAttempt({ requestId: 'req_1', action: 'isolate_host', operator: 'olga', at: '2026-01-02T00:00:00.000Z' });
    acc.addSelfReviewAttempt({ requestId: 'req_2', action: 'isolate_host', operator: 'olga', at: '2026-01-03T00:00:00.000Z' });
    const r = acc.report({ regulation: 'SOC2', from: '2026-01-01T00:00:00.000Z', to: '2026-02-01T00:00:00.000Z', generatedAt: '2026-02-01T00:00:00.000Z', escalations: 0, integrity: { treeSize: 0, rootHash: null, checkpointAt: null, keyId: null } });
    expect(r.violations.byKind.self_approval_attempt).toBe(2);
    expect(r.violations.total).toBe(2);
    expect(r.violations.items[0]).toMatchObject({ kind: 'self_approval_attempt', requestId: 'req_1', detail: expect.stringContaining('olga') });
    expect(r.recommendations.join('\n')).toMatch(/2 attempt\(s\) to review one's own request were refused/);
  });

  it("counts the guard's refusals by code and its actions by type, with findings, in JSON, Markdown and CSV", () => {
    const acc = new ComplianceAccumulator();
    for (let i = 0; i < 6; i++) acc.addGuardRefusal('MFA_INVALID');
    acc.addGuardRefusal('IP_NOT_ALLOWED');
    acc.addGuardRefusal('SELF_REVIEW'); // a violation, not a guard refusal
    acc.addGuardRefusal('NOT_A_CODE');
    acc.addGuardEvents({ slicing_alert: 2, aggregated: 5, cooldown_started: 1, unrelated: 9 });
    const r = acc.report({ regulation: 'PCI-DSS', from: '2026-01-01T00:00:00.000Z', to: '2026-02-01T00:00:00.000Z', generatedAt: '2026-02-01T00:00:00.000Z', escalations: 0, integrity: { treeSize: 0, rootHash: null, checkpointAt: null, keyId: null } });
    expect(r.protection.refusals).toMatchObject({ MFA_INVALID: 6, IP_NOT_ALLOWED: 1, VELOCITY_LIMITED: 0 });
    expect(Object.keys(r.protection.refusals)).toEqual([...GUARD_REFUSAL_CODES]);
    expect(r.protection.events).toMatchObject({ slicing_alert: 2, aggregated: 5, cooldown_started: 1, agent_paused: 0 });
    expect(Object.keys(r.protection.events)).toEqual([...GUARD_EVENT_TYPES]);
    const findings = r.recommendations.join('\n');
    expect(findings).toMatch(/6 approvals were refused for a wrong or reused TOTP code/);
    expect(findings).toMatch(/1 approval\(s\) came from outside an IP allowlist/);
    expect(findings).toMatch(/2 slicing alert\(s\)/);
    expect(findings).toMatch(/1 cool-down/);
    expect(r.controls.protection.join()).toContain('8.4 multi-factor authentication');
    const md = complianceMarkdown(r);
    expect(md).toContain('## Reviewer protection');
    expect(md).toContain('| MFA_INVALID | 6 |');
    expect(md).toContain('| aggregated | 5 |');
    expect(complianceCsv(r)).toContain('"protection.refused","MFA_INVALID","6"');
  });

  it('an empty period reports zeros and no findings', () => {
    const r = build([]);
    expect(r.decisions.requests).toBe(0);
    expect(r.decisions.approvalRate).toBeNull();
    expect(r.review.p90Seconds).toBeNull();
    expect(r.recommendations).toEqual(['No findings for this period.']);
  });

  it('names controls for every regulation and section', () => {
    for (const regulation of REGULATIONS) {
      for (const section of ['decisions', 'review', 'sla', 'overrides', 'violations', 'protection', 'integrity'] as const) {
        expect(CONTROLS[regulation][section].length, `${regulation} ${section}`).toBeGreaterThan(0);
      }
    }
    expect(CONTROLS.HIPAA.integrity.join()).toContain('§164.312(b)');
    expect(CONTROLS.GDPR.decisions.join()).toContain('Art. 22');
    expect(CONTROLS['PCI-DSS'].integrity.join()).toMatch(/^10\./);
  });

  it('renders Markdown with escaped agent text, and CSV safe from spreadsheet formulas', () => {
    const r = build([fact({ action: '=HYPERLINK("x")|*evil*', took: 3_600_000 })]);
    const md = complianceMarkdown(r);
    expect(md).toMatch(/^# SOC2 compliance report/);
    expect(md).toContain('| =HYPERLINK\\("x"\\)\\|\\*evil\\* |');
    expect(md).toContain('_Evidences: CC6.1 logical access controls');
    const csv = complianceCsv(r);
    expect(csv.split('\r\n')[0]).toBe('"section","measure","value"');
    expect(csv).toContain('"decisions","requests","1"');
    expect(csv).toContain(`"violation:sla_breach","${r.violations.items[0]!.requestId}","'=HYPERLINK(""x"")|*evil*: decided after 3600 s (SLA 900 s)"`);
  });
});

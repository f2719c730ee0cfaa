import { describe, expect, it } from 'vitest';
import { defaultPolicy, EMPTY_HISTORY, evaluate, parsePolicy, type Policy } from '../src/policy/index.ts';
import { Assessment, CreateRequestBody, type CreateRequestBody as Body } from '../src/schemas.ts';

const NOW = new Date('2024-07-10T12:00:00Z');
const run = (body: Body, policy: Policy = defaultPolicy()) => {
  const a = evaluate({ ...CreateRequestBody.parse(body), agent: 'soc-bot' }, policy, EMPTY_HISTORY, NOW);
  Assessment.parse(a); // every assessment fits the public schema
  return a;
};
const names = (a: ReturnType<typeof run>) => a.matchedRules.map((m) => m.name);

describe('acceptance scenarios (default policy)', () => {
  it('block_ip, confident, high threat → full, auto-approved', () => {
    const a = run({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } });
    expect(a).toMatchObject({ automationLevel: 'full', route: 'auto_approve', requiresApproval: false, approval: null, slaSeconds: null, slaDueAt: null, mfaRequired: false });
    expect(a.riskLevel).toBe('medium');
  });

  it('delete_data on /important at 0.75 → high risk, advisory, review', () => {
    const a = run({ action: 'delete_data', args: { path: '/important/data.db' }, confidence: 0.75 });
    expect(a).toMatchObject({ riskLevel: 'high', automationLevel: 'advisory', route: 'review', requiresApproval: true });
    expect(names(a)).toEqual(['dangerous-action']);
    expect(a.approval).toEqual({ stages: [{ count: 1, label: '1 reviewer' }], deny: 1 });
    expect(a.slaSeconds).toBe(900);
    expect(a.slaDueAt).toBe('2024-07-10T12:15:00.000Z');
  });

  it('isolate_host at 0.82 → high risk caps supervised to advisory → review', () => {
    const a = run({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 });
    expect(a).toMatchObject({ riskLevel: 'high', automationLevel: 'advisory', route: 'review', requiresApproval: true });
    expect(a.reasons).toContain('High risk caps automation at advisory.');
  });

  it('send_alert at 0.9 → supervised, auto-approved', () => {
    expect(run({ action: 'send_alert', confidence: 0.9 })).toMatchObject({ automationLevel: 'supervised', route: 'auto_approve', requiresApproval: false });
  });

  it('a critical hint → manual review whatever the confidence', () => {
    for (const confidence of [0, 0.5, 0.96, 1]) {
      const a = run({ action: 'send_alert', confidence, riskLevel: 'critical' });
      expect(a).toMatchObject({ riskLevel: 'critical', automationLevel: 'manual', route: 'review', requiresApproval: true, mfaRequired: true });
      expect(a.approval).toEqual({ stages: [{ count: 2, label: '2 reviewers' }], deny: 1 });
      expect(a.slaSeconds).toBe(300);
    }
  });

  it('a card number in args → card-numbers rule, review, risk ≥ high; a Luhn failure does not match', () => {
    const a = run({ action: 'send_alert', confidence: 0.99, args: { notes: 'customer card 4111 1111 1111 1111' } });
    expect(names(a)).toEqual(['card-numbers']);
    expect(a.matchedRules[0]?.reason).toBe('payment card numbers in the request: credit_card found in args.notes');
    expect(a).toMatchObject({ route: 'review', riskLevel: 'high' });
    expect(JSON.stringify(a)).not.toContain('4111');
    const b = run({ action: 'send_alert', confidence: 0.99, args: { notes: 'customer card 4111 1111 1111 1112' } });
    expect(names(b)).toEqual([]);
    expect(b.route).toBe('auto_approve');
  });

  it('secrets and SSNs are caught the same way', () => {
    expect(names(run({ action: 'send_alert', confidence: 0.99, description: 'use AKIAIOSFODNN7EXAMPLE' }))).toEqual(['secrets']);
    expect(names(run({ action: 'send_alert', confidence: 0.99, args: { ssn: '123-45-6789' } }))).toEqual(['us-ssn']);
  });

  it('wire_transfer of 12000 → a manager; 60000 → manager then director', () => {
    const a = run({ action: 'wire_transfer', confidence: 0.99, context: { value: 12_000 } });
    expect(names(a)).toEqual(['large-value']);
    expect(a.approval).toEqual({ stages: [{ count: 1, role: 'manager', label: 'manager' }], deny: 1 });
    const b = run({ action: 'wire_transfer', confidence: 0.99, context: { value: 60_000 } });
    expect(names(b)).toEqual(['large-value', 'very-large-value']);
    expect(b.approval?.stages).toEqual([
      { count: 1, role: 'manager', label: 'manager' },
      { count: 1, role: 'director', label: 'director' },
    ]);
    expect(run({ action: 'wire_transfer', confidence: 0.99, context: { value: 9_999 } }).approval?.stages).toEqual([{ count: 1, label: '1 reviewer' }]);
  });

  it('a value rule sends even a low-risk action to the named approver', () => {
    const a = run({ action: 'send_alert', confidence: 0.99, context: { value: 20_000 } });
    expect(a).toMatchObject({ route: 'review', automationLevel: 'advisory' });
    expect(a.approval?.stages).toEqual([{ count: 1, role: 'manager', label: 'manager' }]);
  });
});

describe('routing', () => {
  it('blocks win over everything', () => {
    const p = parsePolicy('rules: [{ name: no-alerts, when: { action: send_alert }, then: { block: true } }]');
    if (!p.ok) throw new Error();
    const a = run({ action: 'send_alert', confidence: 0.99, context: { value: 60_000 }, riskLevel: 'critical' }, p.policy);
    expect(a).toMatchObject({ route: 'block', requiresApproval: false, approval: null, slaSeconds: null, slaDueAt: null, mfaRequired: false });
    expect(a.reasons).toContain('Blocked by policy: no-alerts.');
  });

  it('autoApprove: false on a level sends full automation to review (reported as advisory)', () => {
    const p = parsePolicy('levels: { medium: { autoApprove: false } }');
    if (!p.ok) throw new Error();
    const a = run({ action: 'block_ip', confidence: 0.99 }, p.policy);
    expect(a).toMatchObject({ riskLevel: 'medium', automationLevel: 'advisory', route: 'review' });
    expect(a.reasons).toContain('A human decides: the policy does not auto-approve medium risk.');
    expect(a.slaSeconds).toBe(1800);
  });

  it('low confidence is manual; no confidence counts as 0.5', () => {
    expect(run({ action: 'send_alert', confidence: 0.3 })).toMatchObject({ automationLevel: 'manual', route: 'review' });
    const a = run({ action: 'send_alert' });
    expect(a).toMatchObject({ automationLevel: 'manual', route: 'review' });
    expect(a.reasons).toContain('No confidence given; treated as 0.5, which is the manual band.');
  });

  it('agent-named approvers force review and are added after the policy stages, never replacing them', () => {
    const a = run({ action: 'send_alert', confidence: 0.99, approvers: [{ operator: 'alice' }] });
    expect(a).toMatchObject({ automationLevel: 'advisory', route: 'review' });
    expect(a.approval?.stages).toEqual([
      { count: 1, label: '1 reviewer' },
      { count: 1, operators: ['alice'], label: 'operator alice' },
    ]);
    const b = run({ action: 'wire_transfer', confidence: 0.99, context: { value: 60_000 }, approvers: [{ role: 'reviewer' }, { role: 'director' }, { group: 'finance' }] });
    expect(b.approval?.stages.map((s) => s.label)).toEqual(['manager', 'director', 'reviewer', '1 reviewer in group finance']);
  });

  it('the level quorum applies to each role stage; critical needs MFA', () => {
    const a = run({ action: 'wire_transfer', confidence: 0.99, context: { value: 60_000 }, riskLevel: 'critical' });
    expect(a.approval?.stages).toEqual([
      { count: 2, role: 'manager', label: '2 managers' },
      { count: 2, role: 'director', label: '2 directors' },
    ]);
    expect(a.mfaRequired).toBe(true);
  });

  it('level approvers are used when no rule names approvers', () => {
    const p = parsePolicy('levels: { high: { approvers: [{ role: lead }, { group: secops }] } }');
    if (!p.ok) throw new Error(JSON.stringify(p.errors));
    expect(run({ action: 'isolate_host', confidence: 0.82 }, p.policy).approval?.stages).toEqual([
      { count: 1, role: 'lead', label: 'lead' },
      { count: 1, group: 'secops', label: '1 reviewer in group secops' },
    ]);
  });

  it("the request's timeout shortens the SLA, never lengthens it", () => {
    const short = run({ action: 'isolate_host', confidence: 0.82, timeoutSeconds: 60 });
    expect(short).toMatchObject({ slaSeconds: 60, slaDueAt: '2024-07-10T12:01:00.000Z' });
    expect(run({ action: 'isolate_host', confidence: 0.82, timeoutSeconds: 86_400 }).slaSeconds).toBe(900);
  });

  it('a request too large to scan goes to a human', () => {
    const a = run({ action: 'send_alert', confidence: 0.99, args: { blob: 'x'.repeat(300 * 1024) } });
    expect(a.route).toBe('review');
    expect(names(a)).toEqual(['content-scan-limit']);
  });

  it('rejects an invalid clock', () => {
    expect(() => evaluate({ ...CreateRequestBody.parse({ action: 'x' }), agent: 'a' }, defaultPolicy(), EMPTY_HISTORY, new Date(Number.NaN))).toThrow(TypeError);
  });
});

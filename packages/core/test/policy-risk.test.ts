import { describe, expect, it } from 'vitest';
import { assessRisk, defaultPolicy, EMPTY_HISTORY, parsePolicy, type HistoryStats } from '../src/policy/index.ts';
import { CreateRequestBody, type CreateRequestBody as Body } from '../src/schemas.ts';

const policy = defaultPolicy();
const req = (body: Body) => CreateRequestBody.parse(body);
const factor = (r: ReturnType<typeof assessRisk>, name: string) => {
  const f = r.factors.find((x) => x.name === name);
  if (!f) throw new Error(`no factor ${name}`);
  return f;
};

describe('assessRisk', () => {
  it('returns every factor with value, weight, contribution and a detail', () => {
    const r = assessRisk(req({ action: 'delete_data', args: { path: '/important/data.db' }, confidence: 0.75 }), policy, EMPTY_HISTORY);
    expect(r.factors.map((f) => f.name)).toEqual([
      'severity',
      'targetCriticality',
      'confidence',
      'reversibility',
      'impactScope',
      'history',
      'timeSensitivity',
    ]);
    for (const f of r.factors) {
      expect(f.value).toBeGreaterThanOrEqual(0);
      expect(f.value).toBeLessThanOrEqual(1);
      expect(f.contribution).toBeCloseTo(f.value * f.weight, 3);
      expect(f.detail.length).toBeGreaterThan(0);
    }
    expect(r.score).toBeCloseTo(r.factors.reduce((s, f) => s + f.contribution, 0), 3);
    expect(r.score).toBe(0.755);
    expect(r.level).toBe('high');
    expect(factor(r, 'targetCriticality').detail).toBe('args.path matches target /important/** (critical)');
    expect(factor(r, 'reversibility')).toMatchObject({ value: 1, detail: 'irreversible (policy)' });
  });

  it('uses defaultWeight for unknown actions and says so', () => {
    const f = factor(assessRisk(req({ action: 'frobnicate' }), policy), 'severity');
    expect(f).toMatchObject({ value: 0.5, detail: 'frobnicate is not in the policy; default weight 0.5' });
    // prototype names are not actions
    expect(factor(assessRisk(req({ action: 'constructor' }), policy), 'severity').value).toBe(0.5);
  });

  it('treats missing confidence as 0.5', () => {
    expect(factor(assessRisk(req({ action: 'send_alert' }), policy), 'confidence')).toMatchObject({ value: 0.5 });
    expect(factor(assessRisk(req({ action: 'send_alert', confidence: 0.9 }), policy), 'confidence').value).toBeCloseTo(0.1);
  });

  it('matches targets by glob against the target and common args; the highest wins', () => {
    const t = (body: Body) => factor(assessRisk(req(body), policy), 'targetCriticality');
    expect(t({ action: 'x', context: { target: 'prod-db-01' } })).toMatchObject({ value: 0.7 });
    expect(t({ action: 'x', context: { target: { name: 'PROD-web' } } })).toMatchObject({ value: 0.7 });
    expect(t({ action: 'x', args: { host: 'dc-01' } })).toMatchObject({ value: 1 });
    expect(t({ action: 'x', args: { paths: ['/tmp/a', '/etc/passwd'] } })).toMatchObject({ value: 0.7 });
    expect(t({ action: 'x', args: { path: '/etc/ssh/sshd_config', host: 'dc-7' } })).toMatchObject({ value: 1 });
    expect(t({ action: 'x', args: { path: '/home/bob/notes.txt' } })).toMatchObject({ value: 0.4, detail: expect.stringMatching(/treated as medium/) });
    expect(t({ action: 'x', args: { path: '/importantly/x' } }).value).toBe(0.4);
  });

  it('lets the agent state criticality, but not lower a policy match', () => {
    const t = (body: Body) => factor(assessRisk(req(body), policy), 'targetCriticality');
    expect(t({ action: 'x', context: { target: { name: 'ws-1', criticality: 'high' } } }).value).toBe(0.7);
    expect(t({ action: 'x', context: { target: { name: 'ws-1', criticality: 'low' } } }).value).toBe(0.1);
    expect(t({ action: 'x', args: { path: '/important/a' }, context: { target: { criticality: 'low' } } })).toMatchObject({
      value: 1,
      detail: expect.stringMatching(/agent said low/),
    });
  });

  it('takes the cautious reading of reversibility', () => {
    const rev = (body: Body) => factor(assessRisk(req(body), policy), 'reversibility').value;
    expect(rev({ action: 'block_ip' })).toBe(0);
    expect(rev({ action: 'block_ip', context: { reversible: false } })).toBe(1);
    expect(rev({ action: 'delete_data', context: { reversible: true } })).toBe(1);
    expect(rev({ action: 'frobnicate' })).toBe(0.5);
    expect(rev({ action: 'frobnicate', context: { reversible: true } })).toBe(0);
  });

  it('reads blast radius as counts or scopes', () => {
    const scope = (blastRadius: Body['context'] extends infer C ? (C extends { blastRadius?: infer B } ? B : never) : never) =>
      factor(assessRisk(req({ action: 'x', context: { blastRadius } }), policy), 'impactScope').value;
    expect(scope('single')).toBe(0.1);
    expect(scope('global')).toBe(1);
    expect(scope(1)).toBe(0.1);
    expect(scope(10)).toBeCloseTo(0.4);
    expect(scope(1000)).toBe(1);
    expect(scope({ scope: 'team', count: 1000 })).toBe(1);
    expect(factor(assessRisk(req({ action: 'x' }), policy), 'impactScope').value).toBe(0.25);
  });

  it('lowers risk a little for a clean history and raises it for failures', () => {
    const h = (stats: Partial<HistoryStats>) =>
      factor(assessRisk(req({ action: 'block_ip' }), policy, { ...EMPTY_HISTORY, ...stats }), 'history');
    expect(h({}).value).toBe(0.5);
    const clean = h({ total: 50, approved: 50, succeeded: 50 });
    expect(clean.value).toBeLessThan(0.2);
    expect(clean.detail).toMatch(/100 past outcomes/);
    expect(h({ total: 2, approved: 2 }).value).toBeGreaterThan(0.4); // little evidence, little shift
    expect(h({ total: 20, approved: 10, rejected: 10 }).value).toBeGreaterThan(0.8);
    expect(h({ total: 20, succeeded: 18, failed: 2 }).value).toBe(0.5); // 10% bad reads neutral
    expect(h({ total: -5, approved: Number.NaN }).value).toBe(0.5); // garbage in, neutral out
  });

  it('urgency lowers the risk of reversible protective actions only', () => {
    const ts = (body: Body) => factor(assessRisk(req(body), policy), 'timeSensitivity').value;
    expect(ts({ action: 'block_ip' })).toBe(0.5);
    expect(ts({ action: 'block_ip', context: { threatScore: 0.95 } })).toBeCloseTo(0.025);
    expect(ts({ action: 'block_ip', context: { timeSensitivity: 0.2, threatScore: 0.6 } })).toBeCloseTo(0.2);
    expect(ts({ action: 'delete_data', context: { threatScore: 1 } })).toBe(0.5);
    expect(ts({ action: 'wire_transfer', context: { timeSensitivity: 1 } })).toBe(0.5);
    expect(ts({ action: 'block_ip', context: { threatScore: 1, reversible: false } })).toBe(0.5);
  });

  it('lets the hint raise the level, never lower it, and says so', () => {
    const base = assessRisk(req({ action: 'send_alert', confidence: 0.99 }), policy);
    expect(base.level).toBe('low');
    const raised = assessRisk(req({ action: 'send_alert', confidence: 0.99, riskLevel: 'high' }), policy);
    expect(raised).toMatchObject({ score: base.score, level: 'high' });
    expect(raised.reasons[0]).toMatch(/rated the risk high/);
    const lowered = assessRisk(req({ action: 'delete_data', args: { path: '/important/x' }, riskLevel: 'low' }), policy);
    expect(lowered.level).toBe('high');
    expect(lowered.reasons).toEqual([]);
  });

  it('puts the acceptance actions at the documented levels', () => {
    const level = (body: Body) => assessRisk(req(body), policy).level;
    expect(level({ action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } })).toBe('medium');
    expect(level({ action: 'block_ip', confidence: 0.97 })).toBe('medium');
    expect(level({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 })).toBe('high');
    expect(level({ action: 'isolate_host', confidence: 1 })).toBe('high');
    expect(level({ action: 'delete_data', args: { path: '/important/data.db' }, confidence: 0.75 })).toBe('high');
    expect(level({ action: 'delete_data', args: { path: '/data/x.db' }, confidence: 0.75 })).toBe('high');
    expect(level({ action: 'delete_data', args: { path: '/important/data.db' }, confidence: 0.3 })).toBe('critical');
    expect(level({ action: 'send_alert', confidence: 0.9 })).toBe('low');
  });

  it('normalises factor weights from the policy', () => {
    const r = parsePolicy('riskFactors: { severity: 2, targetCriticality: 0, confidence: 0, reversibility: 0, impactScope: 0, history: 0, timeSensitivity: 0 }');
    expect(r.ok).toBe(false); // weights are 0..1 each
    const ok = parsePolicy('riskFactors: { severity: 1, targetCriticality: 0, confidence: 0, reversibility: 0, impactScope: 0, history: 0, timeSensitivity: 0 }');
    if (!ok.ok) throw new Error(JSON.stringify(ok.errors));
    const a = assessRisk(req({ action: 'isolate_host' }), ok.policy);
    expect(a.score).toBe(0.7);
    expect(factor(a, 'severity').weight).toBe(1);
  });
});

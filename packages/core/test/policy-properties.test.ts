import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assessRisk, defaultPolicy, evaluate, type HistoryStats } from '../src/policy/index.ts';
import { BLAST_SCOPES, CreateRequestBody, RISK_LEVELS, type CreateRequest, type RiskLevel } from '../src/schemas.ts';

const policy = defaultPolicy();
const rank = (l: RiskLevel) => RISK_LEVELS.indexOf(l);

const action = fc.oneof(
  fc.constantFrom(...Object.keys(policy.actions.byName), 'frobnicate', 'bulk_delete', 'undelete', 'constructor'),
  fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/),
);
const unit = fc.double({ min: 0, max: 1, noNaN: true });
const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const argString = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('4111 1111 1111 1111', '/important/db', 'prod-1', 'AKIAIOSFODNN7EXAMPLE', '123-45-6789'));

const body = fc.record(
  {
    action,
    args: fc.dictionary(fc.constantFrom('path', 'host', 'notes', 'ip', 'target', 'x'), argString, { maxKeys: 4 }),
    description: opt(fc.string({ maxLength: 60 })),
    confidence: opt(unit),
    riskLevel: opt(fc.constantFrom(...RISK_LEVELS)),
    context: opt(
      fc.record(
        {
          target: opt(fc.oneof(fc.string({ maxLength: 20 }), fc.record({ name: opt(fc.string({ maxLength: 20 })), criticality: opt(fc.constantFrom(...RISK_LEVELS)) }))),
          blastRadius: opt(fc.oneof(fc.nat({ max: 1_000_000 }), fc.constantFrom(...BLAST_SCOPES))),
          value: opt(fc.double({ min: 0, max: 1e6, noNaN: true })),
          reversible: opt(fc.boolean()),
          timeSensitivity: opt(unit),
          threatScore: opt(unit),
        },
        { requiredKeys: [] },
      ),
    ),
    timeoutSeconds: opt(fc.integer({ min: 1, max: 86_400 })),
  },
  { requiredKeys: ['action'] },
);

const request = body.map((b) => CreateRequestBody.parse(JSON.parse(JSON.stringify(b))) as CreateRequest);
const history: fc.Arbitrary<HistoryStats> = fc.record({
  total: fc.nat({ max: 1000 }),
  approved: fc.nat({ max: 1000 }),
  rejected: fc.nat({ max: 1000 }),
  succeeded: fc.nat({ max: 1000 }),
  failed: fc.nat({ max: 1000 }),
});
const now = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true });
const agent = fc.constantFrom('soc-bot', 'billing-bot', 'toString');

describe('policy properties', () => {
  it('the risk score is always within [0, 1] and rounded to 3 decimals', () => {
    fc.assert(
      fc.property(request, history, (req, h) => {
        const r = assessRisk(req, policy, h);
        expect(r.score).toBeGreaterThanOrEqual(0);
        expect(r.score).toBeLessThanOrEqual(1);
        expect(Math.round(r.score * 1000) / 1000).toBe(r.score);
        for (const f of r.factors) {
          expect(f.value).toBeGreaterThanOrEqual(0);
          expect(f.value).toBeLessThanOrEqual(1);
        }
      }),
    );
  });

  it('raising the risk hint never lowers the level', () => {
    fc.assert(
      fc.property(request, history, now, agent, fc.constantFrom(...RISK_LEVELS), fc.constantFrom(...RISK_LEVELS), (req, h, t, ag, a, b) => {
        const [lo, hi] = rank(a) <= rank(b) ? [a, b] : [b, a];
        const low = evaluate({ ...req, riskLevel: lo, agent: ag }, policy, h, t);
        const high = evaluate({ ...req, riskLevel: hi, agent: ag }, policy, h, t);
        expect(rank(high.riskLevel)).toBeGreaterThanOrEqual(rank(low.riskLevel));
        const none = evaluate({ ...req, riskLevel: undefined, agent: ag }, policy, h, t);
        expect(rank(low.riskLevel)).toBeGreaterThanOrEqual(rank(none.riskLevel));
      }),
    );
  });

  it('a critical level is never auto-approved, and high never runs without a human', () => {
    fc.assert(
      fc.property(request, history, now, agent, (req, h, t, ag) => {
        const a = evaluate({ ...req, agent: ag }, policy, h, t);
        if (a.riskLevel === 'critical') {
          expect(a.route).not.toBe('auto_approve');
          expect(a.automationLevel).toBe('manual');
        }
        if (a.riskLevel === 'high') expect(a.route).not.toBe('auto_approve');
      }),
    );
  });

  it('the assessment is internally consistent', () => {
    fc.assert(
      fc.property(request, history, now, agent, (req, h, t, ag) => {
        const a = evaluate({ ...req, agent: ag }, policy, h, t);
        expect(a.requiresApproval).toBe(a.route === 'review');
        expect(a.approval === null).toBe(a.route !== 'review');
        expect(a.slaDueAt === null).toBe(a.route !== 'review');
        if (a.route === 'auto_approve') expect(['full', 'supervised']).toContain(a.automationLevel);
        if (a.route === 'review') expect(['advisory', 'manual']).toContain(a.automationLevel);
        if (a.mfaRequired) expect(a.route).toBe('review');
      }),
    );
  });

  it('evaluate is deterministic', () => {
    fc.assert(
      fc.property(request, history, now, agent, (req, h, t, ag) => {
        const first = evaluate({ ...req, agent: ag }, policy, h, t);
        const second = evaluate(structuredClone({ ...req, agent: ag }), policy, { ...h }, new Date(t.getTime()));
        expect(second).toEqual(first);
      }),
    );
  });
});

/**
 * weakens(before, after, agent): the four-eyes decision (issue 18). Property-style: for random
 * pairs of agent overlays, a change weakens reports nothing for never lets a request through
 * more easily (route, step-up, enabled, create limits, approver limits), so one admin alone can
 * never switch gating off for an agent.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  agentEnabled,
  agentPolicy,
  evaluate,
  overlayBaselines,
  parsePolicy,
  policyForAgent,
  validateAgentConfig,
  weakens,
  withAgentOverlay,
  EMPTY_HISTORY,
  type AgentConfig,
  type Policy,
} from '../src/policy/index.ts';
import { CreateRequestBody, RISK_LEVELS } from '../src/schemas.ts';

const AGENT = 'bot';
const FILE = parsePolicy('agents:\n  bot: { requireApproval: [send_alert], limits: { perMinute: 30 } }\n');
if (!FILE.ok) throw new Error('test policy invalid');
const file: Policy = FILE.policy;
const NOW = new Date('2025-01-06T10:00:00Z');

const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const actions = fc.subarray(['block_ip', 'send_alert', 'delete_data', 'collect_logs', 'wire_transfer', 'revoke_session']);
const duration = fc.constantFrom('30s', '5m', '15m', '1h', '2h');
const levels = fc.subarray([...RISK_LEVELS], { minLength: 0 });
const level = (autoOk: boolean) =>
  fc.record({ autoApprove: autoOk ? opt(fc.boolean()) : fc.constant(undefined), sla: opt(duration), mfa: opt(fc.boolean()) }, { requiredKeys: [] });

/** Random overlays, each of them valid (only valid ones can ever be stored). */
const overlay: fc.Arbitrary<AgentConfig> = fc
  .record(
    {
      enabled: opt(fc.boolean()),
      requireApproval: opt(actions),
      block: opt(actions),
      minConfidence: opt(fc.constantFrom(0.5, 0.7, 0.9, 0.99)),
      limits: opt(fc.record({ perMinute: opt(fc.integer({ min: 1, max: 100 })), perHour: opt(fc.integer({ min: 1, max: 1000 })) }, { requiredKeys: [] })),
      levels: opt(fc.record({ low: opt(level(true)), medium: opt(level(true)), high: opt(level(false)), critical: opt(level(false)) }, { requiredKeys: [] })),
      velocity: opt(fc.record({ perHour: opt(fc.integer({ min: 1, max: 20 })), perDay: opt(fc.integer({ min: 1, max: 100 })), riskLevels: opt(levels) }, { requiredKeys: [] })),
      cooldown: opt(fc.record({ threshold: opt(fc.integer({ min: 1, max: 10 })), window: opt(duration), duration: opt(duration), riskLevels: opt(levels) }, { requiredKeys: [] })),
      onSlicing: opt(fc.constantFrom('alert', 'pause', 'review', 'aggregate')),
      slicing: opt(fc.record({ hold: opt(duration), collect: opt(duration) }, { requiredKeys: [] })),
      whilePaused: opt(fc.constantFrom('refuse', 'hold')),
    },
    { requiredKeys: [] },
  )
  .map((raw) => JSON.parse(JSON.stringify(raw)) as unknown)
  .map((raw) => {
    const r = validateAgentConfig(AGENT, raw);
    if (!r.ok) throw new Error(`generator made an invalid overlay: ${JSON.stringify(r.errors)}`);
    return r.config;
  });

const request = fc.record({
  action: fc.constantFrom('block_ip', 'send_alert', 'delete_data', 'collect_logs', 'wire_transfer', 'revoke_session', 'isolate_host'),
  confidence: opt(fc.constantFrom(0.3, 0.65, 0.85, 0.96, 0.999)),
  riskLevel: opt(fc.constantFrom(...RISK_LEVELS)),
});

/** The policy with overlay `c`, its loosenings approved against the file as it is (as the server stores them). */
const ov = (c: AgentConfig) => withAgentOverlay(file, AGENT, c, overlayBaselines(file, AGENT, c));

const ROUTE_RANK: Record<string, number> = { auto_approve: 0, review: 1, block: 2 };

describe('weakens', () => {
  it('no change is no loosening', () => {
    fc.assert(fc.property(overlay, (a) => weakens(ov(a), ov(a), AGENT).length === 0), { numRuns: 200 });
  });

  it('(property) when weakens reports nothing, no request gets an easier route or loses step-up, the agent is not enabled, and no limit rises', () => {
    let judged = 0;
    fc.assert(
      fc.property(overlay, overlay, fc.nat(), fc.array(request, { minLength: 1, maxLength: 6 }), (a, rawB, pick, reqs) => {
        // Most pairs: b is a with one or two of rawB's keys (a small change, often a tightening), so changes weakens lets through are common.
        const keys = Object.keys(rawB) as (keyof AgentConfig)[];
        const small = Object.fromEntries(keys.filter((_, i) => i === pick % Math.max(1, keys.length) || i === (pick >> 4) % Math.max(1, keys.length)).map((k) => [k, rawB[k]]));
        const b = pick % 5 === 0 ? rawB : ({ ...a, ...small } as AgentConfig);
        const before = ov(a);
        const after = ov(b);
        if (weakens(before, after, AGENT).length > 0) return true;
        judged++;
        if (agentEnabled(after, AGENT) && !agentEnabled(before, AGENT)) return false;
        const A = policyForAgent(before, AGENT);
        const B = policyForAgent(after, AGENT);
        for (const k of ['perMinute', 'perHour'] as const) {
          const x = A.guard.agentLimits[k];
          const y = B.guard.agentLimits[k];
          if (x !== undefined && (y === undefined || y > x)) return false;
        }
        if (B.guard.velocity.perHour > A.guard.velocity.perHour || B.guard.cooldown.threshold > A.guard.cooldown.threshold) return false;
        for (const r of reqs) {
          const body = CreateRequestBody.parse({ ...r, args: {} });
          const x = evaluate({ ...body, agent: AGENT }, A, EMPTY_HISTORY, NOW);
          const y = evaluate({ ...body, agent: AGENT }, B, EMPTY_HISTORY, NOW);
          if (ROUTE_RANK[x.route] === undefined || ROUTE_RANK[y.route] === undefined) throw new Error(`unknown route ${x.route}/${y.route}`);
          if (ROUTE_RANK[y.route]! < ROUTE_RANK[x.route]!) return false;
          if (x.route === 'review' && y.route === 'review' && x.mfaRequired && !y.mfaRequired) return false;
        }
        return true;
      }),
      { numRuns: 1000 },
    );
    // Not vacuous: a good share of the pairs were changes that weakens let through.
    expect(judged).toBeGreaterThan(50);
  });

  it('(property) a change is a loosening or its reverse is, unless the two are the same for the agent', () => {
    fc.assert(
      fc.property(overlay, overlay, (a, b) => {
        const before = ov(a);
        const after = ov(b);
        const same = JSON.stringify(policyForAgent(before, AGENT).levels) === JSON.stringify(policyForAgent(after, AGENT).levels) && JSON.stringify(before.agents[AGENT]) === JSON.stringify(after.agents[AGENT]);
        return same || weakens(before, after, AGENT).length > 0 || weakens(after, before, AGENT).length > 0 || JSON.stringify(policyForAgent(before, AGENT).guard) === JSON.stringify(policyForAgent(after, AGENT).guard);
      }),
      { numRuns: 200 },
    );
  });

  const cases: Array<[string, unknown, unknown, string]> = [
    ['enabling', { enabled: false }, { enabled: true }, 'enabled'],
    ['enabling by removing the key', { enabled: false }, {}, 'enabled'],
    ['removing a requireApproval entry', { requireApproval: ['send_alert', 'block_ip'] }, { requireApproval: ['send_alert'] }, 'requireApproval'],
    ['unblocking', { block: ['delete_data'] }, {}, 'block'],
    ['raising auto-approval', { levels: { medium: { autoApprove: false } } }, { levels: { medium: { autoApprove: true } } }, 'levels.medium.autoApprove'],
    ['dropping MFA', { levels: { high: { mfa: true } } }, {}, 'levels.high.mfa'],
    ['lifting a create limit', {}, { limits: { perMinute: 1000 } }, 'limits.perMinute'],
    ['raising approver velocity', { velocity: { perHour: 2 } }, { velocity: { perHour: 9 } }, 'velocity.perHour'],
    ['fewer cool-down levels', {}, { cooldown: { riskLevels: ['critical'] } }, 'cooldown.riskLevels'],
    ['softer slicing response', { onSlicing: 'pause' }, { onSlicing: 'alert' }, 'onSlicing'],
    ['holding while paused', {}, { whilePaused: 'hold' }, 'whilePaused'],
    ['lower minConfidence', { minConfidence: 0.9 }, { minConfidence: 0.5 }, 'minConfidence'],
  ];
  for (const [name, x, y, key] of cases) {
    it(`${name} is a loosening (${key})`, () => {
      const a = validateAgentConfig(AGENT, x);
      const b = validateAgentConfig(AGENT, y);
      if (!a.ok || !b.ok) throw new Error('invalid case');
      expect(weakens(ov(a.config), ov(b.config), AGENT).map((l) => l.key)).toContain(key);
    });
  }

  it('an empty overlay list cannot drop the file\'s entries (lists are the union), so it is no change', () => {
    const b = validateAgentConfig(AGENT, { requireApproval: [] });
    if (!b.ok) throw new Error('invalid');
    expect(weakens(file, ov(b.config), AGENT)).toEqual([]);
    expect(ov(b.config).agents[AGENT]!.requireApproval).toEqual(['send_alert']);
  });

  it('tightening changes are not loosenings', () => {
    const b = validateAgentConfig(AGENT, { enabled: false, requireApproval: ['send_alert', 'wire_transfer'], limits: { perMinute: 5 }, levels: { low: { autoApprove: false, mfa: true } }, velocity: { perHour: 1 } });
    if (!b.ok) throw new Error('invalid');
    expect(weakens(file, ov(b.config), AGENT)).toEqual([]);
    // And the reverse of that tightening is a loosening in each respect.
    expect(weakens(ov(b.config), file, AGENT).map((l) => l.key).sort()).toEqual(
      ['enabled', 'levels.low.autoApprove', 'levels.low.mfa', 'limits.perMinute', 'requireApproval', 'velocity.perHour'].sort(),
    );
    expect(agentPolicy(file, AGENT, b.config).guard.agentLimits).toEqual({ perMinute: 5 });
  });
});

/**
 * The overlay merge rule (overlay.ts; review F1, F1b): for every key an agent config can set, a
 * later tightening of the policy file is never masked by an overlay — neither by a value one
 * admin set alone (no baseline: the stricter of both applies) nor by a loosening a second admin
 * approved, once the file is stricter than the value it was approved against.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AGENT_CONFIG_KEYS as KEYS,
  agentEnabled,
  flatOf,
  mergeKey,
  overlayBaselines,
  parseBaselines,
  parsePolicy,
  validateAgentConfig,
  weakens,
  withAgentOverlay,
  type AgentConfig,
  type KeyRule,
  type KeyValue,
  type Policy,
} from '../src/policy/index.ts';
import { RISK_LEVELS } from '../src/schemas.ts';

const AGENT = 'bot';
function policyOf(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}
const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

/** Values of one key, as the merge sees them. */
function domain(rule: KeyRule): fc.Arbitrary<KeyValue> {
  const k = rule.key;
  if (k === 'enabled' || k.endsWith('.autoApprove') || k.endsWith('.mfa')) return fc.boolean();
  if (k === 'requireApproval' || k === 'block') return fc.subarray(['a', 'b', 'c', 'd']);
  if (k.endsWith('.riskLevels')) return fc.subarray([...RISK_LEVELS]);
  if (k === 'onSlicing') return fc.constantFrom(null, 'alert', 'review', 'aggregate', 'pause');
  if (k === 'whilePaused') return fc.constantFrom('refuse', 'hold');
  return fc.option(fc.integer({ min: 1, max: 6 }), { nil: null });
}

describe('mergeKey: one rule for every key', () => {
  for (const rule of KEYS) {
    it(`(property) ${rule.key}: a later file tightening is never masked; a file tightening never loosens what applies`, () => {
      const d = domain(rule);
      fc.assert(
        fc.property(d, d, d, (f0, o, f1) => {
          // The overlay is written while the file says f0; a loosening records f0 as its baseline.
          const b = rule.loosenable && rule.order.tighter(f0, o) ? f0 : undefined;
          const e0 = mergeKey(rule, f0, o, b);
          const e1 = mergeKey(rule, f1, o, b);
          // Never looser than the file unless a second admin approved it against a baseline the file still keeps.
          if (b === undefined || rule.order.tighter(f1, b)) expect(rule.order.tighter(f1, e1)).toBe(false);
          // The file moving to something at least as strict never makes what applies looser.
          if (!rule.order.tighter(f0, f1)) expect(rule.order.tighter(e0, e1)).toBe(false);
          // With no overlay value, the file's applies.
          expect(mergeKey(rule, f1, undefined, b)).toEqual(f1);
          // Tighten-only keys never record a baseline, and never apply looser than the file.
          if (!rule.loosenable) expect(rule.order.tighter(f1, mergeKey(rule, f1, o, f0))).toBe(false);
        }),
        { numRuns: 300 },
      );
    });
  }
});

// Random overlays, as in weakens.test.ts, and random tightenings of the file.
const actions = fc.subarray(['block_ip', 'send_alert', 'delete_data', 'wire_transfer']);
const duration = fc.constantFrom('30s', '5m', '15m', '1h', '2h');
const levels = fc.subarray([...RISK_LEVELS]);
const level = (autoOk: boolean) => fc.record({ autoApprove: autoOk ? opt(fc.boolean()) : fc.constant(undefined), sla: opt(duration), mfa: opt(fc.boolean()) }, { requiredKeys: [] });
const config: fc.Arbitrary<AgentConfig> = fc
  .record(
    {
      enabled: opt(fc.boolean()),
      requireApproval: opt(actions),
      block: opt(actions),
      minConfidence: opt(fc.constantFrom(0.5, 0.7, 0.9)),
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
  .map((raw) => {
    const r = validateAgentConfig(AGENT, JSON.parse(JSON.stringify(raw)));
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    return r.config;
  });

describe('withAgentOverlay over a file that is tightened later', () => {
  const file = policyOf('agents:\n  bot: { requireApproval: [send_alert], limits: { perMinute: 30 } }\n');

  it('(property) for every key: what applies after the file tightens is as strict as the file, unless an approved loosening\'s baseline still holds; and weakens sees no loosening', () => {
    let tightened = 0;
    fc.assert(
      fc.property(config, config, (o, t) => {
        const baselines = overlayBaselines(file, AGENT, o);
        // The later file: the same file with `t` merged in as a tightening (the stricter of both, key by key).
        const later = withAgentOverlay(file, AGENT, t);
        const before = withAgentOverlay(file, AGENT, o, baselines);
        const after = withAgentOverlay(later, AGENT, o, baselines);
        const F = flatOf(later, AGENT);
        const E = flatOf(after, AGENT);
        for (const rule of KEYS) {
          const b = baselines[rule.key];
          if (b === undefined || rule.order.tighter(F[rule.key]!, b)) {
            if (rule.order.tighter(F[rule.key]!, E[rule.key]!)) throw new Error(`${rule.key}: the file's ${JSON.stringify(F[rule.key])} is masked by ${JSON.stringify(E[rule.key])}`);
            tightened++;
          }
        }
        if (!agentEnabled(later, AGENT)) expect(agentEnabled(after, AGENT)).toBe(false);
        // A file tightening never loosens what applies to the agent.
        expect(weakens(before, after, AGENT)).toEqual([]);
      }),
      { numRuns: 500 },
    );
    expect(tightened).toBeGreaterThan(1000);
  });

  it('F1: an overlay `enabled: true` written while the file enables the agent does not survive the file disabling it', () => {
    const on = validateAgentConfig(AGENT, { enabled: true });
    if (!on.ok) throw new Error('invalid');
    const killed = policyOf('agents:\n  bot: { enabled: false }\n');
    expect(agentEnabled(withAgentOverlay(killed, AGENT, on.config, overlayBaselines(file, AGENT, on.config)), AGENT)).toBe(false);
  });

  it('F1b: an overlay list repeating the file does not hide an entry the file adds later', () => {
    const same = validateAgentConfig(AGENT, { requireApproval: ['send_alert'] });
    if (!same.ok) throw new Error('invalid');
    const more = policyOf('agents:\n  bot: { requireApproval: [send_alert, wire_transfer] }\n');
    expect(withAgentOverlay(more, AGENT, same.config, overlayBaselines(file, AGENT, same.config)).agents[AGENT]!.requireApproval).toEqual(['send_alert', 'wire_transfer']);
  });

  it('an approved loosening applies while the file keeps its baseline, and stops once the file is stricter than it', () => {
    const raise = validateAgentConfig(AGENT, { limits: { perMinute: 100 } });
    if (!raise.ok) throw new Error('invalid');
    const baselines = overlayBaselines(file, AGENT, raise.config);
    expect(baselines).toEqual({ 'limits.perMinute': 30 });
    expect(withAgentOverlay(file, AGENT, raise.config, baselines).agents[AGENT]!.limits.perMinute).toBe(100);
    // Without its baseline (one admin, or a stored row that lost it) the loosening never applies.
    expect(withAgentOverlay(file, AGENT, raise.config).agents[AGENT]!.limits.perMinute).toBe(30);
    const tighter = policyOf('agents:\n  bot: { requireApproval: [send_alert], limits: { perMinute: 10 } }\n');
    expect(withAgentOverlay(tighter, AGENT, raise.config, baselines).agents[AGENT]!.limits.perMinute).toBe(10);
    const looser = policyOf('agents:\n  bot: { requireApproval: [send_alert], limits: { perMinute: 50 } }\n');
    expect(withAgentOverlay(looser, AGENT, raise.config, baselines).agents[AGENT]!.limits.perMinute).toBe(100);
  });

  it('parseBaselines keeps only known loosenable keys with plain values', () => {
    expect(parseBaselines({ 'limits.perMinute': 30, enabled: false, requireApproval: ['x'], nope: 1, 'levels.low.sla': { x: 1 } })).toEqual({ 'limits.perMinute': 30 });
    expect(parseBaselines('x')).toEqual({});
  });
});

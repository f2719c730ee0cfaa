/**
 * Per-agent configuration (issue 18): the overlay is validated exactly like the policy file's
 * `agents.<name>`, overlaid on it key by key, applied through policyForAgent, and shown with
 * where each value came from.
 */
import { describe, expect, it } from 'vitest';
import {
  agentEnabled,
  agentPolicy,
  effectiveAgentConfig,
  evaluate,
  overlayBaselines,
  parsePolicy,
  policyForAgent,
  validateAgentConfig,
  withAgentOverlay,
  EMPTY_HISTORY,
  type Policy,
} from '../src/policy/index.ts';
import { CreateRequestBody } from '../src/schemas.ts';

function policyOf(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const FILE = `
agents:
  billing-bot:
    requireApproval: [send_external_email]
    limits: { perMinute: 60 }
    levels: { low: { sla: 2h } }
`;
const NOW = new Date('2025-01-06T10:00:00Z');

describe('validateAgentConfig: the policy file\'s own checks, under the same paths', () => {
  it('names every wrong key as the policy file would, with a suggestion', () => {
    const r = validateAgentConfig('billing-bot', { enabeld: false, levels: { high: { autoApprove: true, sla: 'soon' } }, limits: { perMinute: 0 }, whilePaused: 'maybe' });
    expect(r.ok).toBe(false);
    const paths = r.ok ? [] : r.errors.map((e) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'agents.billing-bot.enabeld',
        'agents.billing-bot.levels.high.sla',
        'agents.billing-bot.levels.high.autoApprove',
        'agents.billing-bot.limits.perMinute',
        'agents.billing-bot.whilePaused',
      ]),
    );
    const typo = r.ok ? undefined : r.errors.find((e) => e.path === 'agents.billing-bot.enabeld');
    expect(typo?.message).toContain('did you mean "enabled"');
  });

  it('refuses what the policy file refuses, with the same message', () => {
    const file = parsePolicy('agents:\n  bot:\n    levels: { critical: { autoApprove: true } }\n');
    const api = validateAgentConfig('bot', { levels: { critical: { autoApprove: true } } });
    expect(file.ok).toBe(false);
    expect(api.ok).toBe(false);
    expect(api.ok ? [] : api.errors).toEqual(file.ok ? [] : file.errors);
  });

  it('refuses a non-mapping and a too-large body', () => {
    expect(validateAgentConfig('bot', [1]).ok).toBe(false);
    expect(validateAgentConfig('bot', { requireApproval: Array.from({ length: 5000 }, (_, i) => `action_number_${i}`) }).ok).toBe(false);
  });

  it('accepts every documented key', () => {
    const r = validateAgentConfig('bot', {
      enabled: false,
      requireApproval: ['wire_transfer'],
      block: ['drop_table'],
      minConfidence: 0.7,
      limits: { perMinute: 5, perHour: 100 },
      levels: { low: { autoApprove: false, sla: '10m', mfa: true }, critical: { sla: '2m' } },
      velocity: { perHour: 2, perDay: 10, riskLevels: ['medium', 'high', 'critical'] },
      cooldown: { threshold: 2, window: '10m', duration: '1h', riskLevels: ['high'] },
      onSlicing: 'review',
      slicing: { hold: '2h', collect: '30s' },
      whilePaused: 'hold',
    });
    expect(r.ok).toBe(true);
  });
});

describe('overlay and policyForAgent', () => {
  const file = policyOf(FILE);

  it('merges the overlay over the file key by key; lists are the union of both', () => {
    const checked = validateAgentConfig('billing-bot', { limits: { perHour: 500 }, requireApproval: ['wire_transfer'], levels: { low: { mfa: true } } });
    if (!checked.ok) throw new Error('invalid');
    const p = withAgentOverlay(file, 'billing-bot', checked.config);
    const a = p.agents['billing-bot']!;
    expect(a.limits).toEqual({ perMinute: 60, perHour: 500 });
    expect(a.requireApproval).toEqual(['send_external_email', 'wire_transfer']);
    expect(a.levels?.low).toMatchObject({ slaMs: 2 * 3_600_000, mfa: true });
    // The file's policy object is untouched.
    expect(file.agents['billing-bot']!.limits).toEqual({ perMinute: 60 });
  });

  it('puts the agent\'s level and guard settings in place of the global ones, for that agent only', () => {
    const checked = validateAgentConfig('billing-bot', { levels: { medium: { autoApprove: false } }, velocity: { perHour: 2 }, whilePaused: 'hold' });
    if (!checked.ok) throw new Error('invalid');
    // whilePaused: hold loosens the file's refuse: it applies with the baseline it was approved against.
    const p = agentPolicy(file, 'billing-bot', checked.config, overlayBaselines(file, 'billing-bot', checked.config));
    expect(agentPolicy(file, 'billing-bot', checked.config).guard.whilePaused).toBe('refuse');
    expect(p.levels.medium.autoApprove).toBe(false);
    expect(p.levels.low.slaMs).toBe(2 * 3_600_000);
    expect(p.guard.velocity).toEqual({ ...file.guard.velocity, perHour: 2 });
    expect(p.guard.whilePaused).toBe('hold');
    expect(p.guard.agentLimits).toEqual({ perMinute: 60 });
    expect(policyForAgent(file, 'other-bot')).toBe(file);
  });

  it('an overlay that turns off auto-approval sends the agent\'s medium-risk request to a human; other agents keep auto-approval', () => {
    const checked = validateAgentConfig('billing-bot', { levels: { medium: { autoApprove: false }, low: { autoApprove: false } } });
    if (!checked.ok) throw new Error('invalid');
    const body = CreateRequestBody.parse({ action: 'block_ip', args: { ip: '10.0.0.1' }, confidence: 0.99 });
    const overlaid = withAgentOverlay(file, 'billing-bot', checked.config);
    const mine = evaluate({ ...body, agent: 'billing-bot' }, policyForAgent(overlaid, 'billing-bot'), EMPTY_HISTORY, NOW);
    const theirs = evaluate({ ...body, agent: 'other-bot' }, policyForAgent(overlaid, 'other-bot'), EMPTY_HISTORY, NOW);
    expect(theirs.route).toBe('auto_approve');
    expect(mine.route).toBe('review');
  });

  it('enabled: false from the file or the overlay disables; an overlay cannot enable what the file disables (enabled is the AND of both)', () => {
    const off = policyOf('agents:\n  bot: { enabled: false }\n');
    expect(agentEnabled(off, 'bot')).toBe(false);
    expect(agentEnabled(off, 'other')).toBe(true);
    const on = validateAgentConfig('bot', { enabled: true });
    if (!on.ok) throw new Error('invalid');
    expect(agentEnabled(withAgentOverlay(off, 'bot', on.config), 'bot')).toBe(false);
    expect(agentEnabled(withAgentOverlay(off, 'bot', on.config, overlayBaselines(off, 'bot', on.config)), 'bot')).toBe(false);
    expect(overlayBaselines(off, 'bot', on.config)).toEqual({});
  });

  it('an agent named like an Object prototype key is its own agent', () => {
    const checked = validateAgentConfig('constructor', { enabled: false });
    if (!checked.ok) throw new Error('invalid');
    expect(agentEnabled(withAgentOverlay(file, 'constructor', checked.config), 'constructor')).toBe(false);
    expect(agentEnabled(file, 'constructor')).toBe(true);
    expect(policyForAgent(file, 'toString')).toBe(file);
  });
});

describe('effectiveAgentConfig: each value and where it came from', () => {
  it('overlay, then the file\'s agents.<name>, then the file\'s global section, then built-in behaviour', () => {
    const file = policyOf(FILE);
    const checked = validateAgentConfig('billing-bot', { enabled: false, levels: { high: { mfa: true } } });
    if (!checked.ok) throw new Error('invalid');
    const rows = new Map(effectiveAgentConfig(file, 'billing-bot', checked.config).map((r) => [r.key, r]));
    expect(rows.get('enabled')).toMatchObject({ value: false, source: 'overlay' });
    expect(rows.get('levels.high.mfa')).toMatchObject({ value: true, source: 'overlay' });
    expect(rows.get('requireApproval')).toMatchObject({ value: ['send_external_email'], source: 'agent', from: 'agents.billing-bot.requireApproval' });
    expect(rows.get('levels.low.sla')).toMatchObject({ value: '2h', source: 'agent' });
    expect(rows.get('levels.medium.sla')).toMatchObject({ value: '30m', source: 'policy', from: 'levels.medium.sla' });
    expect(rows.get('limits.perMinute')).toMatchObject({ value: 60, source: 'agent' });
    expect(rows.get('limits.perHour')).toMatchObject({ value: null, source: 'agent' });
    expect(rows.get('velocity.perHour')).toMatchObject({ value: 10, source: 'policy', from: 'guard.velocity.perHour' });
    expect(rows.get('whilePaused')).toMatchObject({ value: 'refuse', source: 'policy' });
    expect(rows.get('minConfidence')).toMatchObject({ value: null, source: 'default' });
  });

  it('an agent the file does not name falls back to the global settings', () => {
    const file = policyOf(FILE);
    const rows = new Map(effectiveAgentConfig(file, 'new-bot', null).map((r) => [r.key, r]));
    expect(rows.get('enabled')).toMatchObject({ value: true, source: 'default' });
    expect(rows.get('limits.perMinute')).toMatchObject({ value: 600, source: 'policy', from: 'guard.agentLimits.perMinute' });
  });
});

describe('an admin change is never approved by a clock, nor modified', () => {
  it('timeoutOutcome expires a countersign.agent_config request even under onFinalTimeout: approve', async () => {
    const { timeoutOutcome } = await import('../src/gate/timeout.ts');
    const request = { action: 'countersign.agent_config', args: { agent: 'bot', config: { enabled: true } }, alternatives: [], votes: [] };
    expect(timeoutOutcome({ ...request, isAdminChange: true }, { route: 'review', matchedRules: [] }, 'final level timed out').type).toBe('expire');
    expect(timeoutOutcome(request, { route: 'review', matchedRules: [] }, 'final level timed out').type).toBe('timeout_approve');
  });
});

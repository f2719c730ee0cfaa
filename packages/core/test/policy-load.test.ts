import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_YAML, defaultPolicy, parsePolicy, validatePolicy, type PolicyResult } from '../src/policy/index.ts';

function errorsOf(r: PolicyResult): { path: string; message: string }[] {
  if (r.ok) throw new Error('expected the policy to be refused');
  return r.errors;
}

function policyOf(r: PolicyResult) {
  if (!r.ok) throw new Error(`expected a valid policy, got ${JSON.stringify(r.errors)}`);
  return r.policy;
}

const paths = (r: PolicyResult): string[] => errorsOf(r).map((e) => e.path);

describe('default policy', () => {
  it('parses from its own YAML and has the documented defaults', () => {
    const p = defaultPolicy();
    expect(policyOf(parsePolicy(DEFAULT_POLICY_YAML))).toEqual(p);
    expect(p.actions.defaultWeight).toBe(0.5);
    expect(p.actions.byName['block_ip']).toEqual({ weight: 0.5, reversible: true, category: 'containment' });
    expect(p.actions.byName['delete_data']).toMatchObject({ weight: 0.9, reversible: false });
    for (const [name, w] of Object.entries({ send_alert: 0.1, collect_logs: 0.2, isolate_host: 0.7, disable_user: 0.75, delete_file: 0.85 })) {
      expect(p.actions.byName[name]?.weight).toBe(w);
    }
    expect(p.automation).toEqual({ full: 0.95, supervised: 0.8, advisory: 0.6 });
    expect(p.levels.low).toEqual({ slaMs: 3_600_000, autoApprove: true, mfa: false, approvals: 1, approvalValidMs: 3_600_000, notify: [] });
    expect(p.levels.critical).toEqual({ slaMs: 300_000, autoApprove: false, mfa: true, approvals: 2, approvalValidMs: 3_600_000, notify: [] });
    expect(p.escalation.onFinalTimeout).toBe('reject');
    expect(p.escalation.levels[0]).toEqual({ role: 'lead', operators: [], groups: [], after: 'sla', notify: [], finalAuthority: false });
    expect(p.escalation.levels[1]?.after).toBe(600_000);
    expect(p.auditRetentionDays).toBe(365);
    expect(p.dangerousActions).toEqual(expect.arrayContaining(['delete', 'drop', 'remove', 'destroy', 'truncate', 'wipe', 'purge', 'revoke']));
    expect(p.rules.map((r) => r.name)).toEqual(['card-numbers', 'us-ssn', 'secrets', 'large-value', 'very-large-value']);
  });

  it('normalises factor weights to sum to 1', () => {
    const sum = Object.values(defaultPolicy().riskFactors).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(1, 10);
  });

  it('is deeply frozen and plain JSON data', () => {
    const p = defaultPolicy();
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.levels.critical)).toBe(true);
    expect(Object.isFrozen(p.rules[0]?.when)).toBe(true);
    expect(JSON.parse(JSON.stringify(p))).toEqual(p);
  });

  it('an empty file or an empty document is the default policy', () => {
    expect(policyOf(parsePolicy(''))).toEqual(defaultPolicy());
    expect(policyOf(parsePolicy('# nothing here\n'))).toEqual(defaultPolicy());
    expect(policyOf(validatePolicy({}))).toEqual(defaultPolicy());
  });
});

describe('merging over the defaults', () => {
  it('a file that only sets rules keeps weights, bands and levels, and the default rules', () => {
    const p = policyOf(
      parsePolicy(`
rules:
  - name: no-code-after-hours
    when: { action: execute_code, outside: { days: mon-fri, hours: "09:00-17:00", timeZone: Europe/London } }
    then: { block: true }
`),
    );
    const d = defaultPolicy();
    expect(p.actions).toEqual(d.actions);
    expect(p.automation).toEqual(d.automation);
    expect(p.levels).toEqual(d.levels);
    expect(p.rules.map((r) => r.name)).toEqual([...d.rules.map((r) => r.name), 'no-code-after-hours']);
    expect(p.rules.at(-1)?.when.outside).toEqual({
      days: [1, 2, 3, 4, 5],
      hours: { from: 540, to: 1020 },
      timeZone: 'Europe/London',
      label: 'mon-fri 09:00-17:00 Europe/London',
    });
  });

  it('mappings merge key by key', () => {
    const p = policyOf(parsePolicy('levels: { medium: { sla: 10m } }\nactions: { block_ip: { weight: 0.6 }, my_action: { weight: 0.3 } }'));
    expect(p.levels.medium).toEqual({ slaMs: 600_000, autoApprove: true, mfa: false, approvals: 1, approvalValidMs: 3_600_000, notify: [] });
    expect(p.actions.byName['block_ip']).toEqual({ weight: 0.6, reversible: true, category: 'containment' });
    expect(p.actions.byName['my_action']).toEqual({ weight: 0.3 });
    expect(p.actions.byName['delete_data']?.weight).toBe(0.9);
  });

  it('a rule named like a default replaces it; enabled: false removes it', () => {
    const p = policyOf(
      parsePolicy(`
rules:
  - name: large-value
    when: { valueAtLeast: 5000 }
    then: { approvers: [{ role: lead }] }
  - name: us-ssn
    enabled: false
`),
    );
    expect(p.rules.map((r) => r.name)).toEqual(['card-numbers', 'secrets', 'large-value', 'very-large-value']);
    expect(p.rules.find((r) => r.name === 'large-value')?.when.valueAtLeast).toBe(5000);
  });

  it('lists replace the default list', () => {
    const p = policyOf(parsePolicy('dangerousActions: [nuke]\ntargets: [{ match: "db-*", criticality: critical }]'));
    expect(p.dangerousActions).toEqual(['nuke']);
    expect(p.targets).toEqual([{ match: 'db-*', criticality: 'critical' }]);
  });

  it('an empty top-level section keeps its default', () => {
    const p = policyOf(parsePolicy('rules:\nchannels:\n'));
    expect(p.rules).toEqual(defaultPolicy().rules);
    expect(p.channels).toEqual({});
  });

  it('keeps channels free-form, and parses escalation, agents and content patterns', () => {
    const p = policyOf(
      parsePolicy(`
channels:
  slack: { webhookUrlEnv: SLACK_URL, anything: { nested: [1, 2] } }
escalation:
  levels:
    - { role: lead, after: sla, notify: [slack] }
    - { role: director, after: 1h }
  onFinalTimeout: approve
agents:
  billing-bot: { requireApproval: [send_external_email], block: [wire_transfer], minConfidence: 0.7, limits: { perMinute: 60 } }
contentPatterns:
  employee_id: "EMP-\\\\d{6}"
  project: { regex: "project\\\\s+falcon", flags: i }
auditRetentionDays: 2555
`),
    );
    expect(p.channels).toEqual({ slack: { webhookUrlEnv: 'SLACK_URL', anything: { nested: [1, 2] } } });
    expect(p.escalation).toEqual({
      levels: [
        { role: 'lead', operators: [], groups: [], after: 'sla', notify: ['slack'], finalAuthority: false },
        { role: 'director', operators: [], groups: [], after: 3_600_000, notify: [], finalAuthority: false },
      ],
      onFinalTimeout: 'approve',
    });
    expect(p.agents['billing-bot']).toEqual({
      requireApproval: ['send_external_email'],
      block: ['wire_transfer'],
      minConfidence: 0.7,
      limits: { perMinute: 60 },
    });
    expect(p.contentPatterns).toEqual({ employee_id: { regex: 'EMP-\\d{6}', flags: '' }, project: { regex: 'project\\s+falcon', flags: 'i' } });
    expect(p.auditRetentionDays).toBe(2555);
  });

  it('normalises one-or-many conditions to lists', () => {
    const p = policyOf(validatePolicy({ rules: [{ name: 'r', when: { action: 'a_b', agent: ['x', 'y'] }, then: { review: true } }] }));
    expect(p.rules.at(-1)?.when).toEqual({ action: ['a_b'], agent: ['x', 'y'] });
  });
});

describe('refusing invalid policies', () => {
  it('names every wrong key at once (acceptance)', () => {
    const r = parsePolicy(`
levels: { critical: { sla: "5 minutes" } }
automation: { full: 2 }
rules: [{ name: x, when: { bogus: 1 }, then: { review: true } }]
`);
    expect(paths(r)).toEqual(expect.arrayContaining(['levels.critical.sla', 'automation.full', 'rules[0].when.bogus']));
    expect(errorsOf(r)).toHaveLength(3);
    expect(errorsOf(r).find((e) => e.path === 'levels.critical.sla')?.message).toMatch(/duration like 30s, 15m/);
  });

  it('names an unknown top-level key, with a suggestion for a typo', () => {
    const r = parsePolicy('revles: []\nbogus: 1');
    expect(errorsOf(r)).toEqual([
      { path: 'revles', message: 'unknown key (did you mean "rules"?)' },
      { path: 'bogus', message: 'unknown key' },
    ]);
    expect(errorsOf(parsePolicy('rules: [{ name: x, when: { actionMatch: delete }, then: { review: true } }]'))).toEqual([
      { path: 'rules[0].when.actionMatch', message: 'unknown key (did you mean "actionMatches"?)' },
    ]);
  });

  it('names a bad regex and a pattern that matches everything', () => {
    const r = parsePolicy('contentPatterns: { broken: "(unclosed", everything: ".*", flagged: { regex: "x", flags: g } }');
    expect(paths(r).sort()).toEqual(['contentPatterns.broken', 'contentPatterns.everything', 'contentPatterns.flagged']);
    expect(errorsOf(r).find((e) => e.path === 'contentPatterns.broken')?.message).toMatch(/not a valid regular expression/);
  });

  it('names a bad time zone, bad days and bad hours', () => {
    const r = parsePolicy(`
rules:
  - name: tz
    when: { outside: { days: mon-fry, hours: "9-17", timeZone: Europe/Londn } }
    then: { block: true }
  - name: no-zone
    when: { within: { hours: "09:00-17:00" } }
    then: { review: true }
`);
    expect(errorsOf(r)).toEqual(
      expect.arrayContaining([
        { path: 'rules[0].when.outside.timeZone', message: expect.stringMatching(/unknown time zone/) },
        { path: 'rules[0].when.outside.days', message: expect.stringMatching(/unknown day "fry"/) },
        { path: 'rules[0].when.outside.hours', message: expect.stringMatching(/09:00-17:00/) },
        { path: 'rules[1].when.within.timeZone', message: expect.stringMatching(/IANA time zone/) },
      ]),
    );
  });

  it('reports YAML syntax errors with the line', () => {
    const r = parsePolicy('levels:\n  low: { sla: 60m\nrules: []\n');
    expect(errorsOf(r)[0]?.path).toBe('(yaml)');
    expect(errorsOf(r)[0]?.message).toMatch(/^line \d+, column \d+: /);
    expect(paths(parsePolicy('a: 1\na: 2'))).toEqual(['(yaml)']);
  });

  it('refuses a document that is not a mapping', () => {
    expect(errorsOf(parsePolicy('- just\n- a list'))).toEqual([{ path: '(root)', message: expect.stringMatching(/mapping/) }]);
    expect(errorsOf(validatePolicy(42))[0]?.path).toBe('(root)');
  });

  it('checks that bands descend and thresholds ascend, blaming the key that was written', () => {
    expect(errorsOf(parsePolicy('automation: { full: 0.7 }'))).toEqual([
      { path: 'automation.full', message: 'automation.full (0.7) must be at least automation.supervised (0.8)' },
    ]);
    expect(paths(parsePolicy('riskThresholds: { critical: 0.4 }'))).toEqual(['riskThresholds.critical']);
  });

  it('refuses rules that reference unknown patterns, lack when/then, or repeat a name', () => {
    const r = parsePolicy(`
rules:
  - { name: a, when: { contentPattern: [secret, nope] }, then: { review: true } }
  - { name: b, then: { review: true } }
  - { name: c, when: {} }
  - { name: a, when: {}, then: { review: true } }
  - { name: d, when: {}, then: {} }
  - { name: e, when: {}, then: { review: false } }
  - { name: f, enabled: false }
  - { name: g, when: {}, then: { startLevel: 4 } }
`);
    expect(paths(r).sort()).toEqual(
      [
        'rules[0].when.contentPattern[1]',
        'rules[1].when',
        'rules[2].then',
        'rules[3].name',
        'rules[4].then',
        'rules[5].then.review',
        'rules[6].enabled',
        'rules[7].then.startLevel',
      ].sort(),
    );
    expect(errorsOf(r).find((e) => e.path === 'rules[5].then.review')?.message).toMatch(/never remove/);
  });

  it('reserves the names of implicit rules', () => {
    expect(paths(parsePolicy('rules: [{ name: dangerous-action, when: {}, then: { review: true } }]'))).toEqual(['rules[0].name']);
  });

  it('accepts a user pattern referenced by a rule', () => {
    policyOf(parsePolicy('contentPatterns: { ticket: "TCK-\\\\d+" }\nrules: [{ name: t, when: { contentPattern: ticket }, then: { review: true } }]'));
  });

  it('refuses wrong types, auto-approving high/critical, shadowed built-ins and new actions without a weight', () => {
    const r = validatePolicy({
      levels: { critical: { autoApprove: true }, high: { autoApprove: true, approvals: 0 } },
      actions: { new_thing: { reversible: true }, '9bad': { weight: 0.1 } },
      contentPatterns: { email: 'x@y' },
      escalation: { levels: [{ role: 'auditor', after: 'soon' }], onFinalTimeout: 'proceed' },
      agents: { bot: { limits: { perSecond: 5 } } },
      auditRetentionDays: 0,
      requireApproval: ['not valid!'],
      channels: 'slack',
    });
    expect(paths(r).sort()).toEqual(
      [
        'levels.critical.autoApprove',
        'levels.high.autoApprove',
        'levels.high.approvals',
        'actions.new_thing.weight',
        'actions.9bad',
        'contentPatterns.email',
        'escalation.levels[0].role',
        'escalation.levels[0].after',
        'escalation.onFinalTimeout',
        'agents.bot.limits.perSecond',
        'auditRetentionDays',
        'requireApproval[0]',
        'channels',
      ].sort(),
    );
  });

  it('refuses oversized text without parsing it', () => {
    expect(errorsOf(parsePolicy('#'.repeat(1_000_001)))[0]?.path).toBe('(yaml)');
  });
});

describe('guard: reviewer-protection thresholds and guard notifications', () => {
  it('defaults to 10/h, 50/day and 5 in 15 min → 30 min, for high and critical, told to nobody; slicing holds an hour, collects a minute; paused agents refused', () => {
    expect(defaultPolicy().guard).toEqual({
      notify: [],
      velocity: { perHour: 10, perDay: 50, riskLevels: ['high', 'critical'] },
      cooldown: { threshold: 5, windowMinutes: 15, durationMinutes: 30, riskLevels: ['high', 'critical'] },
      slicing: { holdMinutes: 60, collectSeconds: 60 },
      whilePaused: 'refuse',
      agentLimits: { perMinute: 600 },
    });
  });

  it('merges a partial section key by key', () => {
    const p = policyOf(
      parsePolicy('guard: { notify: [hook], velocity: { perHour: 3 }, cooldown: { window: 1h, duration: 2h, riskLevels: [critical] }, slicing: { hold: 15m }, whilePaused: hold }'),
    );
    expect(p.guard).toEqual({
      notify: ['hook'],
      velocity: { perHour: 3, perDay: 50, riskLevels: ['high', 'critical'] },
      cooldown: { threshold: 5, windowMinutes: 60, durationMinutes: 120, riskLevels: ['critical'] },
      slicing: { holdMinutes: 15, collectSeconds: 60 },
      whilePaused: 'hold',
      agentLimits: { perMinute: 600 },
    });
  });

  it('refuses bad values naming each key', () => {
    const r = parsePolicy(`
guard:
  notify: [""]
  velocity: { perHour: 0, perDay: 1.5, riskLevels: [severe] }
  cooldown: { threshold: -1, window: "15 minutes", duration: 30, riskLevels: high, extra: 1 }
  slicing: { hold: forever, collect: 0s, after: 1m }
  whilePaused: wait
`);
    expect(paths(r)).toEqual(
      expect.arrayContaining([
        'guard.notify[0]',
        'guard.velocity.perHour',
        'guard.velocity.perDay',
        'guard.velocity.riskLevels[0]',
        'guard.cooldown.threshold',
        'guard.cooldown.window',
        'guard.cooldown.duration',
        'guard.cooldown.riskLevels',
        'guard.cooldown.extra',
        'guard.slicing.hold',
        'guard.slicing.collect',
        'guard.slicing.after',
        'guard.whilePaused',
      ]),
    );
    expect(errorsOf(r).find((e) => e.path === 'guard.cooldown.window')?.message).toMatch(/duration like 30s, 15m/);
  });
});

describe('agents.<name>.onSlicing', () => {
  it('accepts alert, pause, review and aggregate; anything else is refused naming the key', () => {
    expect(policyOf(parsePolicy('agents:\n  bot: { onSlicing: review }')).agents['bot']?.onSlicing).toBe('review');
    expect(policyOf(parsePolicy('agents:\n  bot: { onSlicing: aggregate }')).agents['bot']?.onSlicing).toBe('aggregate');
    const r = parsePolicy('agents:\n  bot: { onSlicing: quarantine }');
    expect(errorsOf(r)).toEqual([{ path: 'agents.bot.onSlicing', message: expect.stringContaining('alert, pause, review or aggregate') }]);
  });

  it('whilePaused per agent overrides the policy default, and only refuse or hold are accepted', () => {
    const p = policyOf(parsePolicy('guard: { whilePaused: refuse }\nagents:\n  bot: { whilePaused: hold }'));
    expect([p.guard.whilePaused, p.agents['bot']?.whilePaused]).toEqual(['refuse', 'hold']);
    expect(errorsOf(parsePolicy('agents:\n  bot: { whilePaused: queue }'))).toEqual([
      { path: 'agents.bot.whilePaused', message: expect.stringContaining('refuse or hold') },
    ]);
  });
});

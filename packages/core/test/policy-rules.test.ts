import { describe, expect, it } from 'vitest';
import { defaultPolicy, EMPTY_HISTORY, evaluate, parsePolicy, type Policy } from '../src/policy/index.ts';
import { actionMatchesKeyword, actionSegments } from '../src/policy/rules.ts';
import { inWindow, localTime, parseDays, parseHours } from '../src/policy/timewindow.ts';
import { CreateRequestBody, type CreateRequestBody as Body } from '../src/schemas.ts';

function load(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const NOW = new Date('2024-07-10T12:00:00Z'); // a Wednesday
const run = (body: Body, policy: Policy = defaultPolicy(), now = NOW, agent = 'bot') =>
  evaluate({ ...CreateRequestBody.parse(body), agent }, policy, EMPTY_HISTORY, now);
const ruleNames = (a: ReturnType<typeof run>) => a.matchedRules.map((m) => m.name);

describe('actionMatches keywords', () => {
  it('splits action names on _ . : - and camelCase', () => {
    expect(actionSegments('bulkDeleteUsers')).toEqual(['bulk', 'delete', 'users']);
    expect(actionSegments('s3:DeleteObject')).toEqual(['s3', 'delete', 'object']);
    expect(actionSegments('HTTPRequest.send')).toEqual(['http', 'request', 'send']);
  });

  it('matches whole segments only', () => {
    expect(actionMatchesKeyword('delete_data', 'delete')).toBe(true);
    expect(actionMatchesKeyword('bulk_delete', 'delete')).toBe(true);
    expect(actionMatchesKeyword('bulkDelete', 'delete')).toBe(true);
    expect(actionMatchesKeyword('db.drop-table', 'drop_table')).toBe(true);
    expect(actionMatchesKeyword('undelete', 'delete')).toBe(false);
    expect(actionMatchesKeyword('deleted_items_report', 'delete')).toBe(false);
    expect(actionMatchesKeyword('drop_index', 'drop_table')).toBe(false);
  });

  it('the default dangerous-action rule forces review even for confident, low-risk actions', () => {
    const a = run({ action: 'remove_tag', confidence: 0.99 });
    expect(a.route).toBe('review');
    expect(a.automationLevel).toBe('advisory');
    expect(a.matchedRules).toEqual([{ name: 'dangerous-action', reason: 'dangerous action: action remove_tag contains "remove"', effects: ['review'] }]);
    expect(run({ action: 'undelete_file', confidence: 0.99 }).route).toBe('auto_approve');
  });
});

describe('time windows', () => {
  it('parses days and hours', () => {
    expect(parseDays('mon-fri')).toEqual([1, 2, 3, 4, 5]);
    expect(parseDays('fri-mon')).toEqual([0, 1, 5, 6]);
    expect(parseDays(['sat', 'Sunday'])).toEqual([0, 6]);
    expect(parseDays('mon-wed,fri')).toEqual([1, 2, 3, 5]);
    expect(parseDays('funday')).toMatch(/unknown day/);
    expect(parseHours('09:00-17:30')).toEqual({ from: 540, to: 1050 });
    expect(parseHours('22:00-24:00')).toEqual({ from: 1320, to: 1440 });
    expect(parseHours('25:00-26:00')).toMatch(/between/);
    expect(parseHours('09:00-09:00')).toMatch(/empty/);
  });

  it('reads local time in the zone, following DST', () => {
    expect(localTime(new Date('2024-07-10T16:30:00Z'), 'Europe/London')).toMatchObject({ day: 3, minute: 17 * 60 + 30, text: 'Wed 17:30' });
    expect(localTime(new Date('2024-01-10T16:30:00Z'), 'Europe/London')).toMatchObject({ day: 3, minute: 16 * 60 + 30, text: 'Wed 16:30' });
    expect(localTime(new Date('2024-07-10T23:30:00Z'), 'Asia/Tokyo')).toMatchObject({ day: 4, text: 'Thu 08:30' });
  });

  it('handles overnight windows and half-open hours', () => {
    const night = { hours: { from: 22 * 60, to: 6 * 60 }, timeZone: 'UTC', label: '' };
    expect(inWindow(night, new Date('2024-07-10T23:00:00Z')).inside).toBe(true);
    expect(inWindow(night, new Date('2024-07-10T05:59:00Z')).inside).toBe(true);
    expect(inWindow(night, new Date('2024-07-10T06:00:00Z')).inside).toBe(false);
    const day = { hours: { from: 9 * 60, to: 17 * 60 }, timeZone: 'UTC', label: '' };
    expect(inWindow(day, new Date('2024-07-10T09:00:00Z')).inside).toBe(true);
    expect(inWindow(day, new Date('2024-07-10T17:00:00Z')).inside).toBe(false);
  });

  const afterHours = load(`
rules:
  - name: no-code-after-hours
    when: { action: execute_code, outside: { days: mon-fri, hours: "09:00-17:00", timeZone: Europe/London } }
    then: { block: true }
`);

  it('the same UTC time of day is inside business hours in winter and outside in summer (acceptance)', () => {
    const summer = run({ action: 'execute_code', confidence: 0.99 }, afterHours, new Date('2024-07-10T16:30:00Z'));
    expect(summer.route).toBe('block');
    expect(summer.matchedRules[0]).toEqual({
      name: 'no-code-after-hours',
      reason: 'action is execute_code and Wed 17:30 Europe/London is outside mon-fri 09:00-17:00 Europe/London',
      effects: ['block'],
    });
    const winter = run({ action: 'execute_code', confidence: 0.99 }, afterHours, new Date('2024-01-10T16:30:00Z'));
    expect(winter.route).toBe('review');
    expect(ruleNames(winter)).not.toContain('no-code-after-hours');
  });

  it('weekends are outside', () => {
    const saturdayNoon = new Date('2024-07-13T11:00:00Z');
    expect(run({ action: 'execute_code' }, afterHours, saturdayNoon).route).toBe('block');
  });

  it('within matches inside the window', () => {
    const p = load('rules: [{ name: lunch, when: { within: { hours: "12:00-13:00", timeZone: America/New_York } }, then: { review: true } }]');
    expect(ruleNames(run({ action: 'send_alert', confidence: 0.99 }, p, new Date('2024-07-10T16:30:00Z')))).toEqual(['lunch']);
    expect(ruleNames(run({ action: 'send_alert', confidence: 0.99 }, p, new Date('2024-07-10T12:30:00Z')))).toEqual([]);
  });
});

describe('rule conditions and effects', () => {
  it('requires every condition to hold', () => {
    const p = load(`
rules:
  - name: combo
    when: { action: [wire_transfer, pay_invoice], agent: billing-bot, valueAtLeast: 100, confidenceBelow: 0.9 }
    then: { review: true }
`);
    const body = { action: 'pay_invoice', confidence: 0.85, context: { value: 150 } };
    expect(ruleNames(run(body, p, NOW, 'billing-bot'))).toEqual(['combo']);
    expect(run(body, p, NOW, 'billing-bot').matchedRules[0]?.reason).toBe(
      'action is pay_invoice, agent is billing-bot, value 150 ≥ 100 and confidence 0.85 < 0.9',
    );
    expect(ruleNames(run(body, p, NOW, 'other-bot'))).toEqual([]);
    expect(ruleNames(run({ ...body, confidence: 0.95 }, p, NOW, 'billing-bot'))).toEqual([]);
    expect(ruleNames(run({ ...body, context: { value: 50 } }, p, NOW, 'billing-bot'))).toEqual([]);
    expect(ruleNames(run({ ...body, context: {} }, p, NOW, 'billing-bot'))).toEqual([]);
  });

  it('riskAtLeast in `when` sees levels raised by earlier rules', () => {
    const p = load(`
rules:
  - { name: raise, when: { action: send_alert }, then: { riskAtLeast: high } }
  - { name: high-needs-mfa, when: { riskAtLeast: high }, then: { mfa: true } }
`);
    const a = run({ action: 'send_alert', confidence: 0.99 }, p);
    expect(ruleNames(a)).toEqual(['raise', 'high-needs-mfa']);
    expect(a.riskLevel).toBe('high');
    expect(a.mfaRequired).toBe(true);
    expect(a.reasons).toContain('Rule raise raised the risk from low to high.');
  });

  it('a riskAtLeast-only rule does not force review on its own', () => {
    const p = load('rules: [{ name: medium-alerts, when: { action: send_alert }, then: { riskAtLeast: medium } }]');
    const a = run({ action: 'send_alert', confidence: 0.99 }, p);
    expect(a).toMatchObject({ riskLevel: 'medium', route: 'auto_approve' });
  });

  it('approvals sets a quorum, startLevel is carried in effects and reasons', () => {
    const p = load('rules: [{ name: two-eyes, when: { action: reset_password }, then: { approvals: 2, startLevel: 2 } }]');
    const a = run({ action: 'reset_password', confidence: 0.9 }, p);
    expect(a.matchedRules).toEqual([{ name: 'two-eyes', reason: 'action is reset_password', effects: ['approvals 2', 'startLevel 2'] }]);
    expect(a.approval).toEqual({ stages: [{ count: 2, label: '2 reviewers' }], deny: 1 });
    expect(a.reasons).toContain('Escalation starts at level 2 (manager).');
  });

  it('an empty `when` matches every request', () => {
    const p = load('rules: [{ name: everything, when: {}, then: { review: true } }]');
    expect(run({ action: 'send_alert', confidence: 1 }, p).matchedRules).toEqual([
      { name: 'everything', reason: 'matches every request', effects: ['review'] },
    ]);
  });

  it('user content patterns drive rules', () => {
    const p = load(`
contentPatterns: { employee_id: "EMP-\\\\d{6}" }
rules: [{ name: hr-data, when: { contentPattern: [employee_id, email] }, then: { review: true } }]
`);
    const a = run({ action: 'send_alert', confidence: 0.99, args: { who: 'EMP-123456', cc: 'a@b.example' } }, p);
    expect(a.matchedRules).toEqual([{ name: 'hr-data', reason: 'employee_id found in args.who and email found in args.cc', effects: ['review'] }]);
  });

  it('root requireApproval becomes the require-approval rule', () => {
    const p = load('requireApproval: [send_alert]');
    const a = run({ action: 'send_alert', confidence: 0.99 }, p);
    expect(a.route).toBe('review');
    expect(ruleNames(a)).toEqual(['require-approval']);
  });

  it('applies per-agent overrides', () => {
    const p = load(`
agents:
  billing-bot: { requireApproval: [send_external_email], block: [wire_transfer], minConfidence: 0.97 }
`);
    const email = run({ action: 'send_external_email', confidence: 0.99 }, p, NOW, 'billing-bot');
    expect(email.route).toBe('review');
    expect(ruleNames(email)).toEqual(['agent-require-approval']);
    expect(run({ action: 'send_external_email', confidence: 0.99 }, p, NOW, 'other-bot').route).toBe('auto_approve');
    const wire = run({ action: 'wire_transfer', confidence: 0.99 }, p, NOW, 'billing-bot');
    expect(wire.route).toBe('block');
    expect(ruleNames(wire)).toEqual(['agent-block']);
    const unsure = run({ action: 'send_alert', confidence: 0.96 }, p, NOW, 'billing-bot');
    expect(unsure.route).toBe('review');
    expect(unsure.matchedRules[0]).toMatchObject({ name: 'agent-min-confidence', reason: expect.stringMatching(/confidence 0.96 < 0.97/) });
  });
});

/** The value of a request, read from where the policy says it is (issue 12, finding 7). */
import { describe, expect, it } from 'vitest';
import { EMPTY_HISTORY, defaultPolicy, evaluate, parsePolicy, type Policy } from '../src/policy/index.ts';
import { parseAmount, requestValue, valueAt } from '../src/policy/value.ts';
import { Assessment, CreateRequestBody, type CreateRequestBody as Body } from '../src/schemas.ts';

const NOW = new Date('2024-07-10T12:00:00Z');
function policy(yaml: string): Policy {
  const p = parsePolicy(yaml);
  if (!p.ok) throw new Error(JSON.stringify(p.errors));
  return p.policy;
}
const run = (body: Body, p: Policy = defaultPolicy()) => {
  const a = evaluate({ ...CreateRequestBody.parse(body), agent: 'payments-bot' }, p, EMPTY_HISTORY, NOW);
  Assessment.parse(a);
  return a;
};
const names = (a: ReturnType<typeof run>) => a.matchedRules.map((m) => m.name);
const roles = (a: ReturnType<typeof run>) => a.approval?.stages.map((s) => s.role ?? 'any');

const paying = policy(`
actions:
  wire_transfer: { weight: 0.6, value: payment.total }
  pay_invoice: { weight: 0.4 }
`);

describe('parseAmount', () => {
  it.each<[unknown, number | undefined]>([
    [500000, 500000],
    [-500000, 500000],
    [7900.5, 7900.5],
    ['500000', 500000],
    [' 7900 ', 7900],
    ['500,000', 500000],
    ['500,000.25', 500000.25],
    ['+12', 12],
    ['-12', 12],
    ['5,00', undefined],
    ['1e6', undefined],
    ['$500', undefined],
    ['', undefined],
    ['0x10', undefined],
    ['9'.repeat(65), undefined],
    [Number.POSITIVE_INFINITY, undefined],
    [Number.NaN, undefined],
    [true, undefined],
    [null, undefined],
    [{ amount: 1 }, undefined],
  ])('%j → %s', (input, out) => {
    expect(parseAmount(input)).toBe(out);
  });

  it('linear on hostile numeric-looking strings (capped at 64 characters before the regex)', () => {
    const t = performance.now();
    for (let i = 0; i < 10_000; i++) parseAmount(`${'1,111'.repeat(12)}x`);
    expect(performance.now() - t).toBeLessThan(5_000);
  });
});

describe('valueAt', () => {
  const args = { payment: { total: '12,000', lines: [{ amount: 5 }] }, amount: 3 };
  it('walks own keys and array indexes', () => {
    expect(valueAt(args, 'payment.total')).toEqual({ found: true, value: '12,000' });
    expect(valueAt(args, 'payment.lines.0.amount')).toEqual({ found: true, value: 5 });
    expect(valueAt(args, 'payment.lines.1.amount')).toEqual({ found: false });
    expect(valueAt(args, 'payment.constructor')).toEqual({ found: false });
    expect(valueAt(args, 'payment.lines.x')).toEqual({ found: false });
  });
});

describe('evaluate: valueAtLeast reads the args (default policy: 10,000 manager, 50,000 manager then director)', () => {
  it('finding 7: a 500,000 transfer with the amount only in args needs manager then director', () => {
    const a = run({ action: 'wire_transfer', args: { to: 'acct-1', amount: 500_000 }, confidence: 0.9 });
    expect(names(a)).toEqual(expect.arrayContaining(['large-value', 'very-large-value']));
    expect(roles(a)).toEqual(['manager', 'director']);
    expect(a.value).toEqual({ amount: 500_000, args: { path: 'amount', amount: 500_000 } });
  });

  it('args.value is the second fallback; numeric strings count', () => {
    expect(roles(run({ action: 'pay_invoice', args: { value: '60,000' } }))).toEqual(['manager', 'director']);
    const mixed = run({ action: 'pay_invoice', args: { amount: 'lots', value: 20_000 } });
    expect(mixed.value).toEqual({ amount: 20_000, args: { path: 'value', amount: 20_000 } });
    expect(names(mixed)).toContain('value-unreadable');
  });

  it('an agent claiming a small context.value next to a large args.amount gets the larger, and both are reported', () => {
    const a = run({ action: 'wire_transfer', args: { amount: 500_000 }, context: { value: 1 } });
    expect(roles(a)).toEqual(['manager', 'director']);
    expect(a.value).toEqual({ amount: 500_000, args: { path: 'amount', amount: 500_000 }, context: 1 });
    expect(a.matchedRules.find((m) => m.name === 'very-large-value')?.reason).toMatch(/500000 \(the larger: args\.amount; context\.value says 1\)/);
    // And the other way round: a larger context.value counts over a smaller args amount.
    const b = run({ action: 'wire_transfer', args: { amount: 10 }, context: { value: 20_000 } });
    expect(roles(b)).toEqual(['manager']);
    expect(b.value).toMatchObject({ amount: 20_000, context: 20_000 });
  });

  it('D1: a decoy fallback cannot lower the value: the largest readable of amount, value and context.value counts', () => {
    const a = run({ action: 'wire_transfer', args: { amount: 1, value: 500_000 }, context: { value: 1 }, confidence: 0.99 });
    expect(a.route).toBe('review');
    expect(roles(a)).toEqual(['manager', 'director']);
    expect(a.value).toEqual({ amount: 500_000, args: { path: 'value', amount: 500_000 }, context: 1 });
    expect(run({ action: 'wire_transfer', args: { amount: 500_000, value: 1 } }).value?.amount).toBe(500_000);
  });

  it('D1: any unreadable fallback forces review even when another fallback is readable', () => {
    const a = run({ action: 'wire_transfer', args: { amount: 1, value: '500.000,00' }, confidence: 0.99 });
    expect(a.route).toBe('review');
    expect(names(a)).toContain('value-unreadable');
    expect(a.matchedRules.find((m) => m.name === 'value-unreadable')?.reason).toMatch(/args\.value is not a number/);
  });

  it.each<[string, unknown]>([
    ['1e6', '1e6'],
    ['500.000,00', '500.000,00'],
    ['0x7A120', '0x7A120'],
    ['500_000', '500_000'],
    ['[500000]', [500_000]],
  ])('D2: an unreadable value (%s) fails closed: every valueAtLeast rule that could apply fires, and says why', (_label, amount) => {
    const a = run({ action: 'wire_transfer', args: { amount }, context: { value: 1 }, confidence: 0.99 });
    expect(a.route).toBe('review');
    expect(names(a)).toEqual(expect.arrayContaining(['value-unreadable', 'large-value', 'very-large-value']));
    expect(roles(a)).toEqual(['manager', 'director']);
    expect(a.matchedRules.find((m) => m.name === 'very-large-value')?.reason).toMatch(/value unreadable.*treated as ≥ 50000/);
    // The same request with a readable small amount needs nothing of the kind.
    expect(names(run({ action: 'wire_transfer', args: { amount: 1 }, confidence: 0.99 }))).not.toContain('very-large-value');
  });

  it('D2: a valueAtLeast rule whose other conditions do not match still does not fire on an unreadable value', () => {
    const p = policy(`
rules:
  - name: large-value
    enabled: false
  - name: very-large-value
    enabled: false
  - name: big-wire
    when: { action: [wire_transfer], valueAtLeast: 100000 }
    then: { approvals: 3, mfa: true }
  - name: big-invoice
    when: { action: [pay_invoice], valueAtLeast: 100000 }
    then: { approvals: 2 }
`);
    const a = run({ action: 'wire_transfer', args: { amount: '1e6' }, confidence: 0.99 }, p);
    expect(names(a)).toContain('big-wire');
    expect(names(a)).not.toContain('big-invoice');
    expect(a.approval?.stages.reduce((n, s) => n + s.count, 0)).toBe(3);
    expect(a.mfaRequired).toBe(true);
  });

  it('a null fallback is no amount (as if absent), not an unreadable one; a null configured path stays unreadable', () => {
    const a = run({ action: 'wire_transfer', args: { value: null }, context: { value: 20_000 }, confidence: 0.99 });
    expect(names(a)).not.toContain('value-unreadable');
    expect(roles(a)).toEqual(['manager']);
    expect(run({ action: 'wire_transfer', args: { amount: null, value: 500_000 } }).value?.amount).toBe(500_000);
    expect(names(run({ action: 'wire_transfer', args: { payment: { total: null } }, confidence: 0.99 }, paying))).toContain('value-unreadable');
  });

  it('context.value alone still works as before', () => {
    expect(roles(run({ action: 'wire_transfer', args: { to: 'x' }, context: { value: 20_000 } }))).toEqual(['manager']);
    expect(run({ action: 'send_alert', args: {} }).value).toBeUndefined();
  });

  it('a fallback that is present but unreadable sends the request to review where a value rule applies', () => {
    const a = run({ action: 'wire_transfer', args: { amount: '$500,000' }, confidence: 0.99 });
    expect(a.route).toBe('review');
    expect(names(a)).toContain('value-unreadable');
    // With no value rule in the policy it is not a reason to review.
    const quiet = policy('rules:\n  - name: large-value\n    enabled: false\n  - name: very-large-value\n    enabled: false\n');
    expect(names(run({ action: 'send_alert', args: { amount: 'all' }, confidence: 0.99 }, quiet))).not.toContain('value-unreadable');
  });

  it('the policy path (`actions.<name>.value`) is read, and wins over the fallbacks', () => {
    const a = run({ action: 'wire_transfer', args: { payment: { total: '75,000' }, amount: 5 } }, paying);
    expect(roles(a)).toEqual(['manager', 'director']);
    expect(a.value).toEqual({ amount: 75_000, args: { path: 'payment.total', amount: 75_000 } });
    expect(run({ action: 'WireTransfer', args: { payment: { total: 75_000 } } }, paying).value?.amount).toBe(75_000);
  });

  it.each([
    ['missing', { amount: 75_000 }, /args\.payment\.total is missing/],
    ['not a number', { payment: { total: 'seventy-five thousand' } }, /args\.payment\.total is not a number/],
  ])('a configured path that is %s sends the request to review, with the reason named', (_what, args, reason) => {
    const a = run({ action: 'wire_transfer', args, confidence: 0.99 }, paying);
    expect(a.route).toBe('review');
    const m = a.matchedRules.find((r) => r.name === 'value-unreadable');
    expect(m?.reason).toMatch(reason);
  });

  it('the path is validated at load', () => {
    const r = parsePolicy('actions:\n  wire_transfer: { weight: 0.6, value: "a..b" }\n');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.path)).toContain('actions.wire_transfer.value');
    expect(() => requestValue({ action: 'wire_transfer', args: {} }, paying, true)).not.toThrow();
  });
});

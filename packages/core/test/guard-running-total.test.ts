/**
 * Slicing on running totals (issue 12, finding 7): the value detector runs on every create, from
 * counters, keeps totals per agent and rule scope (the actions a rule covers, in normal form) and compares them with the policy's own
 * value thresholds. Scenario runs just under every threshold with varied recipients and memos
 * are caught on the create that crosses it; benign streams are measured for false alarms.
 */
import { describe, expect, it } from 'vitest';
import { EMPTY_HISTORY, evaluate, mergeBucket, parsePolicy, runningTotal, valueAlertsFromSlices, valueThresholds, type Policy, type SlicingAlert, type ValueBucket, type ValueSlice } from '../src/index.ts';
import { CreateRequestBody } from '../src/schemas.ts';

const MINUTE = 60_000;
const WINDOW = 60 * MINUTE;
const BUCKET = MINUTE;
const T0 = Date.parse('2026-01-01T09:00:00.000Z');

const parsed = parsePolicy(`
rules:
  - name: small-wire
    when: { action: wire_transfer, valueAtLeast: 1000 }
    then: { review: true }
  - name: huge-wire
    when: { action: wire_transfer, valueAtLeast: 250000 }
    then: { approvers: [{ role: manager }, { role: director }], approvals: 2 }
  - name: refund-review
    when: { action: refund, valueAtLeast: 500 }
    then: { review: true }
`);
if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
const policy: Policy = parsed.policy;

/** Deterministic PRNG (mulberry32), so every scenario is the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Create {
  at: number;
  agent: string;
  action: string;
  args: Record<string, unknown>;
}

/** Feed creates through evaluate (the value as the policy reads it) and the running total, as the engine would. */
function feed(creates: Create[]): { alerts: (SlicingAlert | null)[]; values: (number | undefined)[]; slices: ValueSlice[] } {
  const store = new Map<string, ValueBucket[]>();
  const slices: ValueSlice[] = [];
  const alerts: (SlicingAlert | null)[] = [];
  const values: (number | undefined)[] = [];
  creates.forEach((c, i) => {
    const a = evaluate({ ...CreateRequestBody.parse({ action: c.action, args: c.args }), agent: c.agent }, policy, EMPTY_HISTORY, new Date(c.at));
    const value = a.value?.amount;
    // Buckets are per agent; inside, totals are keyed per rule scope (valueThresholds), so actions a rule covers together add up.
    const key = c.agent;
    const buckets = store.get(key) ?? [];
    const r = runningTotal({ buckets, value, now: c.at, windowMs: WINDOW, bucketMs: BUCKET, thresholds: valueThresholds(policy, c.agent, c.action), requestId: `req_${i}`, agentId: c.agent, action: c.action });
    if (r.bucket) {
      store.set(key, mergeBucket(buckets, r.bucket, c.at - WINDOW - BUCKET));
      slices.push({ requestId: `req_${i}`, at: c.at, bucket: r.bucket });
    }
    alerts.push(r.alert);
    values.push(value);
  });
  return { alerts, values, slices };
}

describe('valueThresholds', () => {
  it("are the policy's own, for this action, in any spelling", () => {
    // The default policy's large-value (10,000) and very-large-value (50,000) apply to every action.
    const t = (action: string) => valueThresholds(policy, 'bot', action).map((x) => x.threshold);
    expect(t('wire_transfer')).toEqual([1000, 10000, 50000, 250000]);
    expect(t('WireTransfer')).toEqual([1000, 10000, 50000, 250000]);
    expect(t('refund')).toEqual([500, 10000, 50000]);
  });

  it('G3: are keyed per rule scope: a rule without an action condition shares its key across actions', () => {
    const keys = (action: string) => valueThresholds(policy, 'bot', action).map((x) => x.key);
    const wire = keys('wire_transfer');
    const refund = keys('refund');
    expect(wire.filter((k) => refund.includes(k))).toHaveLength(2); // 10,000 and 50,000 (every action)
    expect(new Set([...wire, ...refund]).size).toBe(5);
  });
});

describe('scenario set: just under every threshold, varied recipients and memos', () => {
  const thresholds = [1000, 10000, 50000, 250000];
  const SPELLINGS = ['wire_transfer', 'wireTransfer', 'Wire-Transfer', 'WIRE_TRANSFER'];
  const scenarios = thresholds.flatMap((T) =>
    Array.from({ length: 25 }, (_, n) => {
      const r = rng(T + n);
      let at = T0;
      const creates: Create[] = [];
      let total = 0;
      // Enough slices to pass the threshold, each between 70% and 99.9% of it, paced 5 s to 3 min.
      while (total < 2.2 * T) {
        const amount = Math.floor(T * (0.7 + 0.299 * r()));
        total += amount;
        creates.push({
          at,
          agent: 'payments-bot',
          action: SPELLINGS[Math.floor(r() * SPELLINGS.length)]!,
          args: { amount: r() < 0.5 ? amount : amount.toLocaleString('en-US'), to: `acct-${Math.floor(r() * 1e6)}`, memo: `invoice ${Math.floor(r() * 1e4)}` },
        });
        at += 5_000 + Math.floor(r() * 175_000);
      }
      return { T, creates };
    }),
  );

  it.each(thresholds)('threshold %i: every run is caught on the create that crosses it', (T) => {
    for (const { creates } of scenarios.filter((s) => s.T === T)) {
      const { alerts, values } = feed(creates);
      let sum = 0;
      let crossing = -1;
      for (let i = 0; i < values.length; i++) {
        sum += values[i]!;
        if (sum >= T) {
          crossing = i;
          break;
        }
      }
      expect(crossing).toBeGreaterThan(0);
      const alert = alerts[crossing];
      expect(alert, `run at ${T}: no alert on create ${crossing}`).not.toBeNull();
      expect(alert!.evidence['threshold'] as number).toBeGreaterThanOrEqual(T);
      // Nothing earlier crossed T (an earlier alert, if any, was for a lower threshold).
      for (const a of alerts.slice(0, crossing)) if (a) expect(a.evidence['threshold'] as number).toBeLessThan(T);
    }
  });
  it('the /slicing report (valueAlertsFromSlices over the stored slices) names exactly the creates the create path alerted, with the same thresholds', () => {
    let compared = 0;
    for (const { creates } of scenarios) {
      const { alerts, slices } = feed(creates);
      const end = creates[creates.length - 1]!.at;
      const onCreate = alerts
        .map((a, i) => ({ a, i, at: creates[i]!.at }))
        .filter((x) => x.a !== null && x.at > end - WINDOW)
        .map((x) => `req_${x.i}@${x.a!.evidence['threshold']}`);
      const report = valueAlertsFromSlices(slices, end, WINDOW, 'payments-bot').map((a) => `${a.evidence.requestIds.at(-1)}@${a.evidence['threshold']}`);
      // The create path names the highest threshold crossed; the report lists each crossing, so it holds at least that one.
      for (const x of onCreate) expect(report).toContain(x);
      for (const r of report) expect(onCreate.map((x) => x.split('@')[0])).toContain(r.split('@')[0]);
      compared += onCreate.length;
    }
    expect(compared).toBeGreaterThan(50);
  });
});

describe('false alarms on benign streams (measured)', () => {
  const stream = (seed: number, n: number, gapMs: number, amount: (r: () => number) => number, action = 'refund', agent = 'support-bot'): Create[] => {
    const r = rng(seed);
    return Array.from({ length: n }, (_, i) => ({ at: T0 + i * gapMs, agent, action, args: { amount: amount(r), to: `cust-${i}` } }));
  };
  const alarms = (creates: Create[]) => feed(creates).alerts.filter((a) => a !== null).length;

  it('small refunds, 100 an hour, 5–80 each, against a 500 refund rule: 8 alarms (measured)', () => {
    // Each refund is under the 500 refund threshold, so their running total (about 4,200 in the
    // hour) crosses 500 and each multiple of it: one alarm per multiple (G3: a total of 8 × the
    // threshold is what an attacker slicing 8 refunds would reach). The measured cost of a low threshold.
    const n = alarms(stream(1, 100, 36_000, (r) => 5 + Math.floor(r() * 75)));
    expect(n).toBe(8);
  });

  it('one refund every 10 minutes, 20–60 each: none', () => {
    expect(alarms(stream(2, 48, 10 * MINUTE, (r) => 20 + Math.floor(r() * 40)))).toBe(0);
  });

  it('occasional wires of 100–900 over a day (one every 40 min) against a 1,000 threshold: 10 alarms in 36 creates (measured)', () => {
    // Two such wires within the hour often pass 1,000 together: to the detector that is exactly a
    // two-slice attack on the 1,000 rule. The once-per-window rule bounds it to one alarm an hour.
    const n = alarms(stream(3, 36, 40 * MINUTE, (r) => 100 + Math.floor(r() * 800), 'wire_transfer', 'payments-bot'));
    expect(n).toBe(10);
    // Against 10,000 and up (no 1,000 rule for this action) the same stream is quiet.
    expect(alarms(stream(3, 36, 40 * MINUTE, (r) => 100 + Math.floor(r() * 800), 'pay_invoice', 'payments-bot'))).toBe(0);
  });

  it('requests without a value never count', () => {
    const creates = stream(4, 200, 5_000, () => 0).map((c) => ({ ...c, args: { to: c.args['to'] } }));
    expect(alarms(creates)).toBe(0);
  });

  it('a payroll run (40 × 2,000–4,000 in 10 min) alarms at each multiple crossed: by design, the whole is what a reviewer should see', () => {
    const n = alarms(stream(5, 40, 15_000, (r) => 2000 + Math.floor(r() * 2000), 'wire_transfer', 'payroll-bot'));
    // About 120,000 in all: each multiple of 10,000 (and of 50,000, on the same creates) alarms once,
    // 12 alarms in 40 creates (measured); 1,000 is not counted (every payment is over it).
    expect(n).toBe(12);
  });

  it('two agents are never summed together', () => {
    const a = stream(6, 6, MINUTE, () => 9_000, 'wire_transfer', 'bot-a');
    const b = stream(6, 6, MINUTE, () => 9_000, 'wire_transfer', 'bot-b').map((c) => ({ ...c, at: c.at + 1 }));
    const mixed = [...a, ...b].sort((x, y) => x.at - y.at);
    const res = feed(mixed).alerts;
    // Each agent's 54,000 crosses 10,000 on its second create, 20,000–50,000 on the next four: 5 alerts each, none from the mix.
    expect(res.filter((x) => x !== null).length).toBe(10);
    expect(res.filter((x) => x !== null && x.evidence['sum'] === 18_000).length).toBe(2);
  });

  it('G3: alerts at each multiple of a threshold: 60 slices of 7,900 against 50,000 raise 9 alerts, not one', () => {
    const creates = stream(8, 60, 30_000, () => 7_900, 'pay_invoice', 'payments-bot');
    const alerts = feed(creates).alerts.filter((a): a is SlicingAlert => a !== null && a.evidence['threshold'] === 50_000);
    expect(alerts.map((a) => a.evidence['multiple'])).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('G3: a rule without an action condition cannot be sliced by alternating actions', () => {
    const actions = ['pay_invoice', 'refund_customer', 'send_payout'];
    const creates = stream(9, 7, MINUTE, () => 7_900, 'x', 'alt-bot').map((c, i) => ({ ...c, action: actions[i % 3]! }));
    const alerts = feed(creates).alerts;
    // 7 × 7,900 = 55,300: the 50,000 rule (every action) is crossed on the seventh create.
    expect(alerts[6]?.evidence['threshold']).toBe(50_000);
  });

  it('G3: a rule covering several actions sums them; separate per-action rules do not', () => {
    const p = parsePolicy(`
rules:
  - name: large-value
    enabled: false
  - name: very-large-value
    enabled: false
  - name: payments
    when: { action: [wire_transfer, pay_invoice], valueAtLeast: 20000 }
    then: { review: true }
  - name: refunds
    when: { action: refund, valueAtLeast: 20000 }
    then: { review: true }
`);
    if (!p.ok) throw new Error(JSON.stringify(p.errors));
    const th = (action: string) => valueThresholds(p.policy, 'bot', action);
    expect(th('wire_transfer')[0]!.key).toBe(th('payInvoice')[0]!.key);
    expect(th('refund')[0]!.key).not.toBe(th('wire_transfer')[0]!.key);
    let buckets: ValueBucket[] = [];
    const step = (action: string, i: number) => {
      const now = T0 + i * MINUTE;
      const r = runningTotal({ buckets, value: 7_900, now, windowMs: WINDOW, bucketMs: BUCKET, thresholds: th(action), requestId: `r${i}`, agentId: 'bot', action });
      if (r.bucket) buckets = mergeBucket(buckets, r.bucket, now - WINDOW - BUCKET);
      return r.alert;
    };
    expect(step('wire_transfer', 0)).toBeNull();
    expect(step('pay_invoice', 1)).toBeNull();
    expect(step('refund', 2)).toBeNull(); // refunds are their own total
    expect(step('payInvoice', 3)?.evidence['threshold']).toBe(20_000); // 3 × 7,900 = 23,700 across two actions
  });

  it('the window forgets: slices an hour and more apart never add up', () => {
    expect(alarms(stream(7, 10, 61 * MINUTE, () => 9_900, 'wire_transfer', 'slow-bot'))).toBe(0);
  });
});

describe('cost', () => {
  it('is a pure function of the window buckets: 60 buckets × 4 thresholds, 20,000 creates in well under 10 s', () => {
    let buckets: ValueBucket[] = [];
    const thresholds = [1000, 10000, 50000, 250000];
    const t = performance.now();
    for (let i = 0; i < 20_000; i++) {
      const now = T0 + i * 2_000;
      const r = runningTotal({ buckets, value: 10 + (i % 50), now, windowMs: WINDOW, bucketMs: BUCKET, thresholds, requestId: `r${i}`, agentId: 'a', action: 'wire_transfer' });
      if (r.bucket) buckets = mergeBucket(buckets, r.bucket, now - WINDOW - BUCKET);
    }
    expect(buckets.length).toBeLessThanOrEqual(62);
    expect(performance.now() - t).toBeLessThan(10_000);
  });
});

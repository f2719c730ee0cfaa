/**
 * Slicing scenarios: synthetic request streams for each attack pattern and for benign traffic,
 * several seeds each. Every attack must be caught by its detector; benign streams raise nothing.
 * The detection and false-alarm rates over the whole set are printed.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_SLICING_CONFIG, detectSlicing, type AlertType, type GuardEvent } from '../src/guard/index.ts';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const MIN = 60_000;
const HOUR = 60 * MIN;

/** A small deterministic PRNG (mulberry32), so every scenario is reproducible from its seed. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]! };
}

let counter = 0;
function event(partial: Partial<GuardEvent> & Pick<GuardEvent, 'action' | 'createdAt'>): GuardEvent {
  return { requestId: `req_${++counter}`, agentId: 'agt_bot', args: {}, riskLevel: 'medium', ...partial };
}

const NORMAL_ACTIONS = ['send_alert', 'collect_logs', 'block_ip', 'isolate_host', 'revoke_session'] as const;

/** Steady background: ~3 requests an hour for 25 hours, varied actions and args. */
function background(seed: number, hours = 25, perHour = 3): GuardEvent[] {
  const r = rng(seed);
  const out: GuardEvent[] = [];
  for (let h = hours; h > 0; h--) {
    for (let i = 0; i < perHour; i++) {
      const action = r.pick(NORMAL_ACTIONS);
      out.push(event({ action, createdAt: NOW - h * HOUR + r.int(0, HOUR - 1), args: { target: `host-${r.int(1, 500)}`, note: `case ${r.int(1, 9999)}` } }));
    }
  }
  return out;
}

type Scenario = { name: string; expect: AlertType | null; events: GuardEvent[] };

function attacks(seed: number): Scenario[] {
  const r = rng(seed * 7919);
  const base = background(seed);
  return [
    {
      name: `velocity abuse #${seed}`,
      expect: 'velocity_abuse',
      events: [
        ...base,
        ...((n) =>
          Array.from({ length: n }, (_, i) =>
            event({ action: r.pick(NORMAL_ACTIONS), createdAt: NOW - HOUR + Math.floor(((i + r.next()) * HOUR) / n), args: { target: `host-${r.int(1, 5000)}` } }),
          ))(48 + r.int(0, 20)),
      ],
    },
    {
      name: `value aggregation #${seed}`,
      expect: 'value_aggregation',
      events: [
        ...base,
        ...Array.from({ length: 6 + r.int(0, 14) }, () =>
          event({ action: 'wire_transfer', createdAt: NOW - r.int(1, 55) * MIN, value: 9_900 - r.int(0, 900), args: { to: `acct-${r.int(1, 50)}`, amount: 9_900 } }),
        ),
      ],
    },
    {
      name: `temporal clustering #${seed}`,
      expect: 'temporal_clustering',
      events: (() => {
        const start = NOW - r.int(5, 50) * MIN;
        return [
          ...base,
          ...Array.from({ length: 10 + r.int(0, 10) }, (_, i) =>
            event({ action: 'delete_file', createdAt: start + i * r.int(500, 2500), args: { bucket: 'prod-exports', prefix: '2026/11/', key: `part-${i}` } }),
          ),
        ];
      })(),
    },
    {
      name: `approver fatigue #${seed}`,
      expect: 'approver_fatigue',
      events: [
        ...base,
        // Odd seeds: approvals faster than anyone can read; even seeds: far too many, read slowly.
        ...Array.from({ length: seed % 2 ? 8 + r.int(0, 20) : 22 + r.int(0, 15) }, () => {
          const createdAt = NOW - r.int(2, 58) * MIN;
          const readMs = seed % 2 ? r.int(300, 2_500) : r.int(10_000, 60_000);
          return event({ action: r.pick(NORMAL_ACTIONS), riskLevel: 'high', createdAt, args: { target: `h-${r.int(1, 999)}` }, outcome: 'approved', approverId: 'op_tired', decidedAt: Math.min(NOW, createdAt + readMs) });
        }),
      ],
    },
    {
      name: `pattern repetition #${seed}`,
      expect: 'pattern_repetition',
      events: [
        ...base,
        ...Array.from({ length: 5 + r.int(0, 10) }, (_, i) =>
          event({ action: 'delete_rows', createdAt: NOW - 50 * MIN + i * r.int(60_000, 240_000), args: { table: 'customers', from: i * 1_000, to: i * 1_000 + 999 } }),
        ),
      ],
    },
  ];
}

function benign(seed: number): Scenario[] {
  const r = rng(seed * 104729);
  const base = background(seed);
  const burstStart = NOW - r.int(5, 50) * MIN;
  const reviewer = (i: number) => {
    const createdAt = NOW - HOUR + i * 9 * MIN + r.int(0, 60_000);
    return event({ action: r.pick(NORMAL_ACTIONS), riskLevel: 'high', createdAt, args: { target: `srv-${r.int(1, 900)}` }, outcome: 'approved', approverId: 'op_careful', decidedAt: createdAt + r.int(20_000, 240_000) });
  };
  return [
    { name: `steady normal traffic #${seed}`, expect: null, events: base },
    {
      name: `one legitimate incident burst #${seed}`,
      expect: null,
      events: [
        ...base,
        ...['block_ip', 'isolate_host', 'collect_logs', 'send_alert', 'revoke_session', 'reset_password', 'collect_logs', 'block_ip', 'send_alert', 'quarantine_file'].map((action, i) =>
          event({ action, createdAt: burstStart + i * r.int(1_000, 5_000), args: { target: `host-${r.int(1, 5000)}`, incident: 'INC-1' } }),
        ),
      ],
    },
    {
      name: `small payments all day #${seed}`,
      expect: null,
      events: [
        ...base,
        ...Array.from({ length: 20 }, () => event({ action: 'wire_transfer', createdAt: NOW - r.int(1, 24 * 60) * MIN, value: r.int(50, 5_000), args: { to: `acct-${r.int(1, 300)}` } })),
      ],
    },
    { name: `a careful reviewer #${seed}`, expect: null, events: [...base, ...Array.from({ length: 6 }, (_, i) => reviewer(i))] },
  ];
}

const SEEDS = Array.from({ length: 10 }, (_, i) => i + 1);
const tally = { attacks: 0, caught: 0, benign: 0, falseAlarms: 0 };

describe('slicing detection over synthetic streams', () => {
  it.each(SEEDS.flatMap(attacks))('$name is detected as $expect', ({ events, expect: type }) => {
    const report = detectSlicing(events, NOW);
    tally.attacks++;
    const hit = report.alerts.find((a) => a.type === type);
    if (hit && report.attackDetected) tally.caught++;
    expect(report.attackDetected).toBe(true);
    expect(hit, JSON.stringify(report.alerts.map((a) => a.type))).toBeDefined();
    expect(hit!.confidence).toBeGreaterThanOrEqual(0.5);
    expect(hit!.evidence.requestIds.length).toBeGreaterThan(0);
    // The evidence names requests that exist in the stream.
    const ids = new Set(events.map((e) => e.requestId));
    expect(hit!.evidence.requestIds.every((id) => ids.has(id))).toBe(true);
  });

  it.each(SEEDS.flatMap(benign))('$name raises no alert', ({ events }) => {
    const report = detectSlicing(events, NOW);
    tally.benign++;
    if (report.alerts.length > 0) tally.falseAlarms++;
    expect(report.alerts.map((a) => `${a.type}: ${a.description}`)).toEqual([]);
    expect(report).toEqual({ attackDetected: false, confidence: 0, alerts: [] });
  });

  afterAll(() => {
    console.log(
      `slicing scenarios: detection ${tally.caught}/${tally.attacks} (${((100 * tally.caught) / Math.max(1, tally.attacks)).toFixed(0)}%), ` +
        `false alarms ${tally.falseAlarms}/${tally.benign} (${((100 * tally.falseAlarms) / Math.max(1, tally.benign)).toFixed(0)}%)`,
    );
  });
});

describe('slicing detection: details', () => {
  it('value aggregation: 20 × 9,900 against 10,000 sums and names each request', () => {
    const events = Array.from({ length: 20 }, (_, i) => event({ action: 'wire_transfer', createdAt: NOW - i * MIN, value: 9_900 }));
    const [alert] = detectSlicing(events, NOW).alerts;
    expect(alert).toMatchObject({ type: 'value_aggregation', evidence: { sum: 198_000, threshold: 10_000 } });
    expect(alert!.evidence.requestIds).toHaveLength(20);
  });

  it('looks only inside the window: the same stream an hour later is quiet', () => {
    const events = Array.from({ length: 20 }, (_, i) => event({ action: 'wire_transfer', createdAt: NOW - i * MIN, value: 9_900 }));
    expect(detectSlicing(events, NOW + 2 * HOUR).alerts).toEqual([]);
  });

  it('pattern repetition notices even steps', () => {
    const events = Array.from({ length: 6 }, (_, i) => event({ action: 'delete_rows', createdAt: NOW - (10 - i) * MIN, args: { table: 't', from: i * 500, to: i * 500 + 499 } }));
    const alert = detectSlicing(events, NOW).alerts.find((a) => a.type === 'pattern_repetition');
    expect(alert?.evidence.evenSteps).toBe(true);
  });

  it('is deterministic and bounded: the same input gives the same report, confidences in [0, 0.99]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), (seed) => {
        const events = attacks(seed).flatMap((s) => s.events);
        const a = detectSlicing(events, NOW);
        const b = detectSlicing([...events].reverse(), NOW);
        expect(b).toEqual(a);
        for (const alert of a.alerts) expect(alert.confidence).toBeGreaterThanOrEqual(0), expect(alert.confidence).toBeLessThanOrEqual(0.99);
        expect(a.confidence).toBeLessThanOrEqual(0.99);
      }),
      { numRuns: 25 },
    );
  });

  it('uses its configuration: a higher aggregation threshold hides the 9,900s', () => {
    const events = Array.from({ length: 20 }, (_, i) => event({ action: 'wire_transfer', createdAt: NOW - i * MIN, value: 9_900 }));
    const config = { ...DEFAULT_SLICING_CONFIG, aggregation: { ...DEFAULT_SLICING_CONFIG.aggregation, threshold: 50_000 } };
    expect(detectSlicing(events, NOW, config).alerts.filter((a) => a.type === 'value_aggregation')).toEqual([]);
  });
});

/**
 * Slicing detection on every create (issue 12): `detectOnCreate` judges the request just created
 * against a bounded list of the agent's earlier requests of the same action. Replayed create by
 * create, every clustering and repetition run is caught on the very create at which the full
 * `/slicing` detectors (over the whole history up to that moment) first see it; benign streams are
 * measured for false alarms; the cost is bounded however many fields a payload has.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_SLICING_CONFIG, ON_CREATE_MAX_FIELDS, ON_CREATE_RECENT, detectOnCreate, detectPatternRepetition, detectTemporalClustering, freshAlerts, type AlertType, type GuardEvent, type SlicingAlert, type SlicingSeen } from '../src/guard/index.ts';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const MIN = 60_000;
const HOUR = 60 * MIN;

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
const event = (p: Partial<GuardEvent> & Pick<GuardEvent, 'action' | 'createdAt'>): GuardEvent => ({ requestId: `req_${String(++counter).padStart(6, '0')}`, agentId: 'agt_bot', args: {}, riskLevel: 'medium', ...p });
const ACTIONS = ['send_alert', 'collect_logs', 'block_ip', 'isolate_host', 'revoke_session'];

/** Two hours of varied background, about 6 an hour. */
function background(seed: number): GuardEvent[] {
  const r = rng(seed);
  return Array.from({ length: 12 }, () => event({ action: r.pick(ACTIONS), createdAt: NOW - 2 * HOUR + r.int(0, 2 * HOUR - 1), args: { target: `host-${r.int(1, 500)}`, note: `case ${r.int(1, 9999)}` } }));
}

interface Stream {
  name: string;
  type: AlertType | null;
  events: GuardEvent[];
}

function attacks(seed: number): Stream[] {
  const r = rng(seed * 7919);
  const start = NOW - r.int(5, 50) * MIN;
  const spell = ['delete_file', 'deleteFile', 'Delete-File', 'DELETE_FILE'];
  return [
    {
      name: `clustering #${seed}`,
      type: 'temporal_clustering',
      events: [
        ...background(seed),
        // Near-identical deletes in varied spellings, with varied gaps (0.5–7 s): 8 of them inside a minute.
        ...Array.from({ length: 10 + r.int(0, 10) }, (_, i) => event({ action: r.pick(spell), createdAt: start + i * r.int(500, 7_000), args: { bucket: 'prod-exports', prefix: '2026/11/', key: `part-${r.int(1, 1e6)}` } })),
      ],
    },
    {
      name: `repetition #${seed}`,
      type: 'pattern_repetition',
      events: [
        ...background(seed),
        ...Array.from({ length: 5 + r.int(0, 10) }, (_, i) => event({ action: 'delete_rows', createdAt: NOW - 50 * MIN + i * r.int(60_000, 240_000), args: { table: 'customers', from: i * 1_000, to: i * 1_000 + 999 } })),
      ],
    },
  ];
}

function benign(seed: number): Stream[] {
  const r = rng(seed * 104729);
  const burstStart = NOW - r.int(5, 50) * MIN;
  return [
    { name: `steady traffic #${seed}`, type: null, events: background(seed) },
    {
      name: `an incident burst #${seed}`,
      type: null,
      events: [
        ...background(seed),
        ...['block_ip', 'isolate_host', 'collect_logs', 'send_alert', 'revoke_session', 'reset_password', 'collect_logs', 'block_ip', 'send_alert', 'quarantine_file'].map((action, i) =>
          event({ action, createdAt: burstStart + i * r.int(1_000, 5_000), args: { target: `host-${r.int(1, 5000)}`, incident: 'INC-1' } }),
        ),
      ],
    },
    {
      name: `log collection across a fleet #${seed}`,
      type: null,
      // One action many times in a minute, but each for another host, window and reason.
      events: Array.from({ length: 12 }, (_, i) => event({ action: 'collect_logs', createdAt: burstStart + i * 4_000, args: { host: `srv-${r.int(1, 900)}`, since: `-${r.int(1, 48)}h`, reason: `INC-${r.int(1, 99)}` } })),
    },
  ];
}

const inOrder = (events: GuardEvent[]) => [...events].sort((a, b) => a.createdAt - b.createdAt || (a.requestId < b.requestId ? -1 : 1));

/** Create by create: the index of the first create whose own run alerts `type`, and every alert it raised. */
function replay(events: GuardEvent[], type: AlertType | null) {
  const sorted = inOrder(events);
  let first = -1;
  let alarms = 0;
  sorted.forEach((e, i) => {
    const alerts = detectOnCreate(e, sorted.slice(0, i));
    for (const a of alerts) expect(a.evidence.requestIds).toContain(e.requestId);
    alarms += alerts.length;
    if (first < 0 && alerts.some((a) => a.type === type)) first = i;
  });
  return { sorted, first, alarms };
}

/** The index of the first create after which the full detector, over everything so far, reports `type`. */
function firstByReport(sorted: GuardEvent[], type: AlertType): number {
  const detect = type === 'temporal_clustering' ? detectTemporalClustering : detectPatternRepetition;
  return sorted.findIndex((e, i) => detect(sorted.slice(0, i + 1), e.createdAt, DEFAULT_SLICING_CONFIG).length > 0);
}

const SEEDS = Array.from({ length: 20 }, (_, i) => i + 1);
const tally = { runs: 0, caught: 0, benign: 0, alarms: 0 };

describe('every slicing run is caught on the create that completes it', () => {
  it.each(SEEDS.flatMap(attacks))('$name', ({ events, type }) => {
    const { sorted, first } = replay(events, type);
    const expected = firstByReport(sorted, type!);
    tally.runs++;
    expect(expected, 'the scenario is an attack the full detector sees').toBeGreaterThan(0);
    expect(first).toBe(expected);
    if (first === expected) tally.caught++;
  });

  it.each(SEEDS.flatMap(benign))('$name: no alarm', ({ events }) => {
    const { alarms } = replay(events, null);
    tally.benign++;
    tally.alarms += alarms;
    expect(alarms).toBe(0);
  });

  afterAll(() => {
    console.log(`on-create slicing: ${tally.caught}/${tally.runs} runs caught on the completing create; ${tally.alarms} alarms over ${tally.benign} benign streams`);
  });
});

describe('detectOnCreate: details', () => {
  it('judges only the same agent and action (normal form), inside the window, before the create', () => {
    const t = NOW - 30 * MIN;
    const burst = (agentId: string, action: string, at: number) =>
      Array.from({ length: 7 }, (_, i) => event({ agentId, action, createdAt: at + i * 1_000, args: { bucket: 'b', prefix: 'p', key: `k${i}` } }));
    const current = event({ action: 'delete_file', createdAt: t + 8_000, args: { bucket: 'b', prefix: 'p', key: 'k8' } });
    expect(detectOnCreate(current, burst('agt_other', 'delete_file', t))).toEqual([]);
    expect(detectOnCreate(current, burst('agt_bot', 'copy_file', t))).toEqual([]);
    expect(detectOnCreate(current, burst('agt_bot', 'delete_file', t + 9_000))).toEqual([]); // after the create
    expect(detectOnCreate(current, burst('agt_bot', 'delete_file', t - 61_000))).toEqual([]); // more than burstSeconds before
    const hit = detectOnCreate(current, burst('agt_bot', 'DeleteFile', t));
    expect(hit.map((a) => a.type)).toEqual(['temporal_clustering']);
    expect(hit[0]!.evidence.requestIds).toHaveLength(8);
  });

  it(`reads the newest ${ON_CREATE_RECENT} earlier requests of the action, and as many of the create's own key set`, () => {
    const t = NOW - 30 * MIN;
    const similar = Array.from({ length: 7 }, (_, i) => event({ action: 'delete_file', createdAt: t + i, args: { bucket: 'b', prefix: 'p', key: `k${i}` } }));
    const current = event({ action: 'delete_file', createdAt: t + 1_000, args: { bucket: 'b', prefix: 'p', key: 'k9' } });
    // Many dissimilar requests of other payloads in between do not push the similar ones out (a dilution).
    const otherKeys = Array.from({ length: 3 * ON_CREATE_RECENT }, (_, i) => event({ action: 'delete_file', createdAt: t + 100 + i, args: { other: i, x: `${i}`, y: `y${i}` } }));
    expect(detectOnCreate(current, [...similar, ...otherKeys]).map((a) => a.type)).toEqual(['temporal_clustering']);
    // The bound: ON_CREATE_RECENT newer requests of the same keys with other values do (what a create reads stays bounded).
    const sameKeys = Array.from({ length: ON_CREATE_RECENT }, (_, i) => event({ action: 'delete_file', createdAt: t + 100 + i, args: { bucket: `o${i}`, prefix: `q${i}`, key: `z${i}` } }));
    expect(detectOnCreate(current, [...similar, ...sameKeys])).toEqual([]);
    expect(detectOnCreate(current, [...similar, ...sameKeys.slice(similar.length)]).map((a) => a.type)).toEqual(['temporal_clustering']);
  });

  it(`compares at most ${ON_CREATE_MAX_FIELDS} fields of a payload, and stays fast on large ones`, () => {
    const t = NOW - 30 * MIN;
    const wide = (i: number) => {
      const args: Record<string, string> = {};
      for (let k = 0; k < 2_000; k++) args[`f${k}`] = k < ON_CREATE_MAX_FIELDS ? 'same' : `v${i}-${k}`;
      return args;
    };
    // Beyond the first ON_CREATE_MAX_FIELDS fields everything differs, which is not compared: near-identical to the detector.
    const recent = Array.from({ length: ON_CREATE_RECENT }, (_, i) => event({ action: 'put_object', createdAt: t + i * 100, args: wide(i) }));
    const current = event({ action: 'put_object', createdAt: t + 10_000, args: wide(99) });
    const started = performance.now();
    const alerts = detectOnCreate(current, recent);
    const ms = performance.now() - started;
    expect(alerts.map((a) => a.type)).toContain('temporal_clustering');
    console.log(`detectOnCreate, ${ON_CREATE_RECENT} earlier requests of 2,000 fields: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(500);
  });
});

describe('freshAlerts: what is new for the agent, kept across servers by the shell', () => {
  const alert = (type: AlertType, ids: string[]): SlicingAlert => ({ type, confidence: 0.7, description: type, evidence: { requestIds: ids } });
  const T = NOW;
  const burst = (from: number, n: number) => Array.from({ length: n }, (_, i) => `req_${String(from + i).padStart(4, '0')}`);

  it('records a burst once, again only after the quiet minute as it grows, never twice with the same requests', () => {
    const first = freshAlerts([alert('temporal_clustering', burst(0, 8))], {}, T, MIN);
    expect(first.fresh).toHaveLength(1);
    // The same burst, one create bigger, within the minute: quiet.
    const grown = freshAlerts([alert('temporal_clustering', burst(0, 9))], first.seen, T + 10_000, MIN);
    expect(grown.fresh).toEqual([]);
    expect(grown.seen).toEqual(first.seen);
    // After the minute it is reported again (bigger); with exactly the same requests, never.
    expect(freshAlerts([alert('temporal_clustering', burst(0, 12))], first.seen, T + MIN, MIN).fresh).toHaveLength(1);
    expect(freshAlerts([alert('temporal_clustering', burst(0, 8))], first.seen, T + 10 * MIN, MIN).fresh).toEqual([]);
  });

  it('a decoy burst does not keep a real one quiet: a burst sharing no request with the last is new at once', () => {
    const decoy = freshAlerts([alert('temporal_clustering', burst(0, 8))], {}, T, MIN);
    const real = freshAlerts([alert('temporal_clustering', burst(100, 8))], decoy.seen, T + 5_000, MIN);
    expect(real.fresh.map((a) => a.evidence.requestIds[0])).toEqual(['req_0100']);
  });

  it('types are independent; one finding found twice in one run is kept once (the larger; a crossing once)', () => {
    const seen: SlicingSeen = freshAlerts([alert('temporal_clustering', burst(0, 8))], {}, T, MIN).seen;
    const out = freshAlerts(
      [alert('pattern_repetition', burst(0, 5)), alert('value_aggregation', ['req_0007']), alert('value_aggregation', ['req_0007']), alert('temporal_clustering', burst(0, 9)), alert('pattern_repetition', burst(0, 6))],
      seen,
      T + 1_000,
      MIN,
    );
    expect(out.fresh.map((a) => `${a.type}:${a.evidence.requestIds.length}`).sort()).toEqual(['pattern_repetition:6', 'value_aggregation:1']);
  });

  it('a running-total crossing is new until it is recorded, whoever finds it: the create (its id) or the report (its run, ending with it)', () => {
    const byCreate = freshAlerts([alert('value_aggregation', ['req_0007'])], {}, T, MIN);
    expect(byCreate.fresh).toHaveLength(1);
    // The report finds the same crossing later (its evidence: the run of slices up to the crossing): not new.
    expect(freshAlerts([alert('value_aggregation', burst(1, 7))], byCreate.seen, T + 2 * MIN, MIN).fresh).toEqual([]);
    // Never recorded (the create's step failed): the report's finding is new, and then remembered.
    const byReport = freshAlerts([alert('value_aggregation', burst(1, 7))], {}, T + 2 * MIN, MIN);
    expect(byReport.fresh).toHaveLength(1);
    expect(freshAlerts([alert('value_aggregation', ['req_0007'])], byReport.seen, T + 3 * MIN, MIN).fresh).toEqual([]);
    // The next crossing is new at once (no quiet time for value).
    expect(freshAlerts([alert('value_aggregation', ['req_0013'])], byCreate.seen, T + 1_000, MIN).fresh).toHaveLength(1);
  });

  it('a record without request ids counts as the same burst for its minute (fail towards one more alert after it, not none)', () => {
    const seen: SlicingSeen = { temporal_clustering: { until: T + MIN, signature: 'x' } };
    expect(freshAlerts([alert('temporal_clustering', burst(100, 8))], seen, T, MIN).fresh).toEqual([]);
    expect(freshAlerts([alert('temporal_clustering', burst(100, 8))], seen, T + MIN, MIN).fresh).toHaveLength(1);
  });
});

/**
 * Red-team review of branch gate12 (issue 12: slicing detection on every create). Each test
 * asserts the secure behaviour and FAILS on gate12 a238ee7; see the FINDING comments.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_SLICING_CONFIG, detectOnCreate, detectPatternRepetition, detectTemporalClustering, type GuardEvent } from '../src/guard/index.ts';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const SEC = 1_000;
const MIN = 60 * SEC;

let counter = 0;
const event = (p: Partial<GuardEvent> & Pick<GuardEvent, 'action' | 'createdAt'>): GuardEvent => ({
  requestId: `req_${String(++counter).padStart(6, '0')}`,
  agentId: 'agt_bot',
  args: {},
  riskLevel: 'medium',
  ...p,
});

describe('gate12 review (core)', () => {
  /*
   * FINDING 3 — severity: medium. Attack: delete a table range by range (the textbook
   * pattern_repetition: same action, only `from`/`to` moving), but between two range deletes send
   * 20 harmless-looking requests of the SAME action with other args (other scratch tables).
   * `repetitionChains` links an event only to one of the 20 events before it, so no chain ever
   * forms: neither the per-create detector (`detectOnCreate`) nor the once-a-minute backstop
   * (`detectPatternRepetition`, same chain rule) raises anything. Paced at one range a minute the
   * steps are too sparse for temporal_clustering (8 in 60 s) too, so nothing catches it.
   * Secure: a run of ≥ minRepeats requests differing only in 1–2 numeric fields is a chain however
   * many unrelated requests of the action lie between them (key chains by the payload's shape —
   * keys plus non-numeric values — in a map: still linear).
   */
  it('FINDING 3: range-by-range deletes interleaved with 20 unrelated requests of the action are still pattern_repetition', () => {
    const events: GuardEvent[] = [];
    let t = NOW - 30 * MIN;
    for (let step = 0; step < 8; step++) {
      events.push(event({ action: 'delete_rows', createdAt: t, args: { table: 'customers', from: step * 10_000, to: (step + 1) * 10_000 } }));
      for (let j = 0; j < 20; j++) {
        t += 2 * SEC;
        events.push(event({ action: 'delete_rows', createdAt: t, args: { table: `scratch_${step}_${j}`, from: 0, to: 10 } }));
      }
      t += MIN;
    }
    const now = t;
    const ranges = events.filter((e) => (e.args as { table: string }).table === 'customers');
    // The backstop's view (every request of the window) …
    const report = detectPatternRepetition(events, now, DEFAULT_SLICING_CONFIG).filter((a) => ranges.some((r) => a.evidence.requestIds.includes(r.requestId)));
    // … and the create path's view at the last range delete.
    const last = ranges.at(-1)!;
    const onCreate = detectOnCreate(last, events.filter((e) => e.createdAt < last.createdAt)).filter((a) => a.type === 'pattern_repetition');
    expect(report.length, 'the once-a-minute report sees the range deletes').toBeGreaterThan(0);
    expect(onCreate.length, 'the create that makes the 8th range delete sees the chain').toBeGreaterThan(0);
  });

  /*
   * FINDING 5 — severity: low/medium. Attack: push the similar requests out of the per-create
   * window. Eight near-identical `delete_file` requests within 60 s (a burst by the detector's
   * own rule), but with 50 dissimilar `delete_file` requests between each two (358 creates in a
   * minute, under the default 600/min limit). `detectOnCreate` only reads the 50 newest requests
   * of the action, so at every burst member it sees none of the others and the burst is never
   * caught on create; only the create-triggered, per-process once-a-minute report can (a minute
   * later, and only if the agent creates again). The full detector does see it.
   * Secure: the create that completes the burst is alerted (read the similar requests by a
   * payload fingerprint / shape key, not just the newest 50 of the action).
   */
  it('FINDING 5: a burst diluted with 50 dissimilar requests of the action between members is caught on the create that completes it', () => {
    const events: GuardEvent[] = [];
    let t = NOW - 2 * MIN;
    const members: GuardEvent[] = [];
    for (let i = 0; i < 8; i++) {
      const m = event({ action: 'delete_file', createdAt: t, args: { bucket: 'prod-exports', prefix: '2026/11/', key: `part-${i}` } });
      members.push(m);
      events.push(m);
      for (let j = 0; j < 50; j++) {
        t += 100;
        events.push(event({ action: 'delete_file', createdAt: t, args: { path: `/tmp/scratch/${i}/${j}`, reason: `cleanup ${i * 50 + j}` } }));
      }
      t += 100;
    }
    const last = members.at(-1)!;
    expect(last.createdAt - members[0]!.createdAt).toBeLessThanOrEqual(DEFAULT_SLICING_CONFIG.clustering.burstSeconds * SEC);
    const before = events.filter((e) => e.createdAt < last.createdAt);
    // The full detector (the backstop) finds it: this is a real burst by the product's own rule.
    const full = detectTemporalClustering([...before, last], last.createdAt, DEFAULT_SLICING_CONFIG).filter((a) => a.evidence.requestIds.includes(last.requestId) || a.evidence.requestIds.includes(members[0]!.requestId));
    expect(full.length, 'the full detector sees the burst').toBeGreaterThan(0);
    const onCreate = detectOnCreate(last, before).filter((a) => a.type === 'temporal_clustering');
    expect(onCreate.length, 'the create that completes the burst is alerted').toBeGreaterThan(0);
  });
});

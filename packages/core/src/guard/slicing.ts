/**
 * Slicing-attack detection: one harmful action cut into many small, individually harmless
 * requests, or a reviewer worn down until they click "approve". Pure functions over a window
 * of request history; each alert carries a confidence and the evidence that triggered it, and
 * the policy decides what to do about it (alert, force review, aggregate, pause).
 *
 * Each detector is tuned to stay quiet on steady traffic and on one legitimate burst of varied
 * work (an incident response touching many things at once): it looks for sustained rates, just-
 * under-the-limit values, near-identical repeats and inhumanly fast approvals.
 */
import { normalizeActionName } from '../policy/names.ts';
import { effectiveRules } from '../policy/rules.ts';
import type { Policy } from '../policy/types.ts';
import { argsSimilarity, type FlatArgs, flatDiffering, flatten } from './similarity.ts';
import { DEFAULT_SLICING_CONFIG, type GuardEvent, type SlicingAlert, type SlicingConfig, type SlicingReport } from './types.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** Detectors look at no more than this many events per group, newest first. */
const MAX_GROUP = 2_000;

const round = (n: number) => Math.round(n * 1000) / 1000;
const clamp = (n: number, lo = 0, hi = 0.99) => Math.min(hi, Math.max(lo, n));

function groupBy<K>(events: readonly GuardEvent[], key: (e: GuardEvent) => K | undefined): Map<K, GuardEvent[]> {
  const groups = new Map<K, GuardEvent[]>();
  for (const event of events) {
    const k = key(event);
    if (k === undefined) continue;
    const list = groups.get(k);
    if (list) list.push(event);
    else groups.set(k, [event]);
  }
  for (const list of groups.values()) {
    list.sort((a, b) => a.createdAt - b.createdAt || (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
    if (list.length > MAX_GROUP) list.splice(0, list.length - MAX_GROUP);
  }
  return groups;
}

/** An agent's request rate far above its own baseline, sustained across the window. */
export function detectVelocityAbuse(events: readonly GuardEvent[], now: number, config: SlicingConfig): SlicingAlert[] {
  const { velocity, windowMinutes } = config;
  const windowStart = now - windowMinutes * MINUTE;
  const alerts: SlicingAlert[] = [];
  for (const [agentId, list] of groupBy(events, (e) => e.agentId)) {
    const inWindow = list.filter((e) => e.createdAt > windowStart && e.createdAt <= now);
    if (inWindow.length < velocity.minRequests) continue;
    const before = list.filter((e) => e.createdAt <= windowStart);
    const first = before[0];
    const baselineHours = first ? Math.max(1, (windowStart - first.createdAt) / HOUR) : 1;
    const baselinePerHour = Math.max(velocity.floorPerHour, before.length / baselineHours);
    const bucketMs = (windowMinutes * MINUTE) / velocity.buckets;
    const counts = Array.from({ length: velocity.buckets }, () => 0);
    for (const e of inWindow) {
      const index = Math.min(velocity.buckets - 1, Math.floor((e.createdAt - windowStart) / bucketMs));
      counts[index] = (counts[index] ?? 0) + 1;
    }
    const perHour = counts.map((c) => c / (bucketMs / HOUR));
    const elevated = perHour.filter((rate) => rate >= velocity.factor * baselinePerHour).length;
    if (elevated < velocity.sustainedBuckets) continue;
    const windowRate = inWindow.length / (windowMinutes / 60);
    const ratio = windowRate / baselinePerHour;
    alerts.push({
      type: 'velocity_abuse',
      confidence: round(clamp(0.45 + 0.4 * (elevated / velocity.buckets) + 0.05 * Math.log2(ratio))),
      description: `agent ${agentId} sent ${inWindow.length} requests in ${windowMinutes} min (${round(windowRate)}/h), ${round(ratio)}× its baseline of ${round(baselinePerHour)}/h, elevated in ${elevated} of ${velocity.buckets} intervals`,
      evidence: { requestIds: inWindow.map((e) => e.requestId), agentId, windowRatePerHour: round(windowRate), baselinePerHour: round(baselinePerHour), elevatedIntervals: elevated },
    });
  }
  return alerts;
}

/** Many values just under a threshold whose sum crosses it: 20 × 9,900 against a 10,000 limit. */
export function detectValueAggregation(events: readonly GuardEvent[], now: number, config: SlicingConfig): SlicingAlert[] {
  const { threshold, nearFraction, minCount } = config.aggregation;
  const windowStart = now - config.windowMinutes * MINUTE;
  const alerts: SlicingAlert[] = [];
  const groups = groupBy(events, (e) => (e.value === undefined || e.createdAt <= windowStart || e.createdAt > now ? undefined : `${e.agentId}\u0000${normalizeActionName(e.action)}`));
  for (const list of groups.values()) {
    const near = list.filter((e) => e.value! < threshold && e.value! >= nearFraction * threshold);
    if (near.length < minCount) continue;
    const sum = near.reduce((acc, e) => acc + e.value!, 0);
    if (sum < threshold) continue;
    const head = near[0]!;
    alerts.push({
      type: 'value_aggregation',
      confidence: round(clamp(0.55 + 0.08 * (near.length - minCount) + 0.1 * Math.min(1, sum / threshold / 5))),
      description: `${near.length} ${head.action} requests from agent ${head.agentId}, each just under ${threshold} (≥ ${nearFraction * 100}%), sum ${round(sum)}`,
      evidence: { requestIds: near.map((e) => e.requestId), threshold, sum: round(sum), values: near.map((e) => e.value) },
    });
  }
  return alerts;
}

/** A burst of near-identical requests (same action, similar args) in a short window. */
export function detectTemporalClustering(events: readonly GuardEvent[], now: number, config: SlicingConfig): SlicingAlert[] {
  const { burstSeconds, minBurst, similarity } = config.clustering;
  const windowStart = now - config.windowMinutes * MINUTE;
  const alerts: SlicingAlert[] = [];
  const groups = groupBy(events, (e) => (e.createdAt <= windowStart || e.createdAt > now ? undefined : `${e.agentId}\u0000${normalizeActionName(e.action)}`));
  for (const list of groups.values()) {
    let best: GuardEvent[] = [];
    let j = 0;
    for (let i = 0; i < list.length; i++) {
      const anchor = list[i]!;
      j = Math.max(j, i);
      while (j + 1 < list.length && list[j + 1]!.createdAt - anchor.createdAt <= burstSeconds * 1000) j++;
      if (j - i + 1 < minBurst || j - i + 1 <= best.length) continue;
      const similar = list.slice(i, j + 1).filter((e) => argsSimilarity(anchor.args, e.args) >= similarity);
      if (similar.length > best.length) best = similar;
    }
    if (best.length < minBurst) continue;
    const head = best[0]!;
    const span = (best[best.length - 1]!.createdAt - head.createdAt) / 1000;
    alerts.push({
      type: 'temporal_clustering',
      confidence: round(clamp(0.5 + 0.05 * (best.length - minBurst) + 0.2 * (1 - span / burstSeconds))),
      description: `${best.length} near-identical ${head.action} requests from agent ${head.agentId} within ${round(span)} s`,
      evidence: { requestIds: best.map((e) => e.requestId), burstSeconds: round(span) },
    });
  }
  return alerts;
}

/** One approver approving far more than a person can judge, or faster than they can read. */
export function detectApproverFatigue(events: readonly GuardEvent[], now: number, config: SlicingConfig): SlicingAlert[] {
  const { maxApprovalsPerHour, minReadSeconds, minFastApprovals } = config.fatigue;
  const windowStart = now - config.windowMinutes * MINUTE;
  const alerts: SlicingAlert[] = [];
  const groups = groupBy(events, (e) =>
    e.outcome === 'approved' && e.approverId !== undefined && e.decidedAt !== undefined && e.decidedAt > windowStart && e.decidedAt <= now ? e.approverId : undefined,
  );
  for (const [approverId, list] of groups) {
    const perHour = list.length / (config.windowMinutes / 60);
    const fast = list.filter((e) => e.decidedAt! - e.createdAt < minReadSeconds * 1000);
    const tooMany = perHour >= maxApprovalsPerHour;
    const tooFast = fast.length >= minFastApprovals;
    if (!tooMany && !tooFast) continue;
    const reasons = [
      ...(tooMany ? [`${list.length} approvals in ${config.windowMinutes} min (${round(perHour)}/h, limit ${maxApprovalsPerHour}/h)`] : []),
      ...(tooFast ? [`${fast.length} approvals within ${minReadSeconds} s of the request appearing`] : []),
    ];
    alerts.push({
      type: 'approver_fatigue',
      confidence: round(clamp(0.5 + (tooMany ? 0.2 : 0) + (tooFast ? 0.2 : 0) + 0.02 * fast.length)),
      description: `approver ${approverId}: ${reasons.join('; ')}`,
      evidence: { requestIds: (tooFast ? fast : list).map((e) => e.requestId), approverId, approvalsPerHour: round(perHour), fastApprovals: fast.length },
    });
  }
  return alerts;
}

function numericOnly(diff: readonly string[], fa: FlatArgs, fb: FlatArgs): boolean {
  return diff.every((k) => typeof fa.get(k) === 'number' && typeof fb.get(k) === 'number');
}

/**
 * A payload's shape: its keys with every non-numeric value, numbers only marked, in key order. Two payloads
 * differ only in numeric fields exactly when their shapes are equal, so the chain search looks
 * only among requests of the same shape (issue 12 review: 20 unrelated requests of the action
 * between two steps must not break a chain). Linear in the payload.
 */
export function payloadShape(flat: FlatArgs): string {
  return [...flat]
    .map(([key, value]) => `${JSON.stringify(key)}:${typeof value === 'number' ? '#' : JSON.stringify(value ?? null)}`)
    .sort()
    .join(',');
}

/** A payload's key set, the coarser fingerprint similar payloads usually share. */
export function payloadKeys(flat: FlatArgs): string {
  return [...flat.keys()].sort().map((key) => JSON.stringify(key)).join(',');
}

/**
 * Chains keyed by "which numeric fields move", over one agent's requests of one action in time
 * order: each event joins the chain of the first of the 20 events of its shape (`payloadShape`)
 * before it that it differs from only in 1–2 numeric fields, however many requests of other
 * shapes lie between. Linear: one map lookup and at most 20 comparisons an event. Online: an
 * event appended at the end changes only the chain it joins.
 */
export function repetitionChains(list: readonly GuardEvent[], flat: (e: GuardEvent) => FlatArgs): Map<string, GuardEvent[]> {
  const chains = new Map<string, GuardEvent[]>();
  const members = new Map<string, Set<GuardEvent>>();
  const byShape = new Map<string, GuardEvent[]>();
  for (const current of list) {
    const shape = payloadShape(flat(current));
    const same = byShape.get(shape) ?? [];
    for (let k = same.length - 1; k >= Math.max(0, same.length - 20); k--) {
      const earlier = same[k]!;
      const diff = flatDiffering(flat(earlier), flat(current));
      if (!diff || diff.length === 0 || diff.length > 2 || !numericOnly(diff, flat(earlier), flat(current))) continue;
      const fields = [...diff].sort().join(',');
      const chain = chains.get(fields) ?? [];
      const inChain = members.get(fields) ?? new Set<GuardEvent>();
      if (!inChain.has(earlier)) chain.push(earlier);
      chain.push(current);
      inChain.add(earlier).add(current);
      chains.set(fields, chain);
      members.set(fields, inChain);
      break;
    }
    same.push(current);
    if (same.length > 40) same.splice(0, 20); // only the newest 20 of a shape are ever compared
    byShape.set(shape, same);
  }
  return chains;
}

/** The `pattern_repetition` alert for one chain, or null when it is shorter than `minRepeats`. */
export function repetitionAlert(fields: string, chain: readonly GuardEvent[], flat: (e: GuardEvent) => FlatArgs, minRepeats: number): SlicingAlert | null {
  const unique = [...new Set(chain)];
  if (unique.length < minRepeats) return null;
  const field = fields.split(',')[0]!;
  const values = unique.map((e) => flat(e).get(field) as number).sort((x, y) => x - y);
  const steps = values.slice(1).map((v, i) => v - values[i]!);
  const even = steps.length > 0 && steps.every((s) => s > 0 && Math.abs(s - steps[0]!) <= Math.abs(steps[0]!) * 0.05);
  const head = unique[0]!;
  return {
    type: 'pattern_repetition',
    confidence: round(clamp(0.5 + 0.05 * (unique.length - minRepeats) + (even ? 0.25 : 0))),
    description: `${unique.length} ${head.action} requests from agent ${head.agentId} differing only in ${fields}${even ? ' in even steps' : ''}`,
    evidence: { requestIds: unique.map((e) => e.requestId), fields: fields.split(','), evenSteps: even },
  };
}

/** The same action again and again with only a number or two moving: a table deleted range by range. */
export function detectPatternRepetition(events: readonly GuardEvent[], now: number, config: SlicingConfig): SlicingAlert[] {
  const { minRepeats } = config.repetition;
  const windowStart = now - config.windowMinutes * MINUTE;
  const alerts: SlicingAlert[] = [];
  const groups = groupBy(events, (e) => (e.createdAt <= windowStart || e.createdAt > now ? undefined : `${e.agentId}\u0000${normalizeActionName(e.action)}`));
  for (const list of groups.values()) {
    if (list.length < minRepeats) continue;
    const cache = new Map<GuardEvent, FlatArgs>();
    const flat = (e: GuardEvent) => {
      let f = cache.get(e);
      if (!f) cache.set(e, (f = flatten(e.args)));
      return f;
    };
    for (const [fields, chain] of repetitionChains(list, flat)) {
      const alert = repetitionAlert(fields, chain, flat, minRepeats);
      if (alert) alerts.push(alert);
    }
  }
  return alerts;
}

// ---- running totals against the policy's own value thresholds, on every create ----

/**
 * One value threshold the policy applies, with the key its running total is kept under. The key
 * is the rule's scope (the threshold and the actions it covers, in normal form, or `*` for a rule
 * without an action condition): a rule that covers several actions, or every action, is judged on
 * the total of all of them, so alternating `wire_transfer` and `pay_invoice` (or any two actions
 * under a rule with no action condition) cannot slice it (issue 12 review, G3).
 */
export interface ValueThreshold {
  readonly key: string;
  readonly threshold: number;
}

/**
 * The value thresholds the policy applies to this agent's action: every `valueAtLeast` of a rule
 * that could match it (its `action` and `agent` conditions, names in normal form), ascending.
 * These are the limits slicing tries to stay under, so they are what the running total is
 * compared with (issue 12, finding 7: a fixed 10,000 band missed 20 × 7,900 under a 50,000 rule).
 */
export function valueThresholds(policy: Policy, agent: string, action: string): ValueThreshold[] {
  const normal = normalizeActionName(action);
  const out = new Map<string, ValueThreshold>();
  for (const r of effectiveRules(policy, agent)) {
    const w = r.when;
    if (w.valueAtLeast === undefined) continue;
    if (w.action !== undefined && !w.action.some((a) => normalizeActionName(a) === normal)) continue;
    if (w.agent !== undefined && !w.agent.includes(agent)) continue;
    const scope = w.action === undefined ? '*' : [...new Set(w.action.map(normalizeActionName))].sort().join(',');
    const key = `${w.valueAtLeast}@${scope}`;
    out.set(key, { key, threshold: w.valueAtLeast });
  }
  return [...out.values()].sort((a, b) => a.threshold - b.threshold || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** One time bucket of an agent's values (all actions): insert-only counters in the store. */
export interface ValueBucket {
  /** Bucket start, epoch ms (a multiple of the bucket width). */
  readonly start: number;
  /** Sum and count of the values under each threshold, keyed by `ValueThreshold.key` (a request at or over a threshold is the policy's own business). */
  readonly under: Readonly<Record<string, { readonly sum: number; readonly count: number }>>;
  /**
   * The highest multiple of each threshold (by key) an alert was raised for from this bucket:
   * within the window, each multiple (1×, 2×, 3×…) alerts once. `true` (older buckets) means 1×.
   */
  readonly alerted?: Readonly<Record<string, number | true>>;
}

export interface RunningTotalInput {
  /** This agent's earlier buckets, all actions (any age; older than the window are ignored). */
  readonly buckets: readonly ValueBucket[];
  /** This request's value as the policy reads it (`Assessment.value.amount`); undefined: nothing to add. */
  readonly value: number | undefined;
  readonly now: number;
  readonly windowMs: number;
  readonly bucketMs: number;
  /** `valueThresholds(policy, agent, action)`; a bare number is its own key. */
  readonly thresholds: readonly (ValueThreshold | number)[];
  readonly requestId: string;
  readonly agentId: string;
  readonly action: string;
}

export interface RunningTotalResult {
  /** The bucket to write (insert or add to) for this request; null when it has no value under any threshold. */
  readonly bucket: ValueBucket | null;
  /** An alert when this create takes the window's total of under-threshold values across a multiple of a threshold. */
  readonly alert: SlicingAlert | null;
}

const multipleOf = (m: number | true | undefined): number => (m === true ? 1 : (m ?? 0));

/**
 * The incremental value detector, cheap enough for every create: O(buckets in the window ×
 * thresholds), no request history. For each threshold T the request is under, it adds the value
 * to the window's running total of requests under T (kept per rule scope, see `ValueThreshold`);
 * the create that takes that total across a multiple of T (T, 2T, 3T…) not yet alerted in the
 * window raises a `value_aggregation` alert naming the highest such T — so 60 slices of 7,900
 * against 50,000 raise nine alerts, not one. Recipients, memos and other args do not matter: only
 * the agent, the rule's scope and the sum. A request at or over T is not counted towards T: the
 * policy already judges it on its own.
 */
export function runningTotal(input: RunningTotalInput): RunningTotalResult {
  const { value, now, windowMs, bucketMs } = input;
  if (value === undefined || !Number.isFinite(value) || value <= 0) return { bucket: null, alert: null };
  const thresholds = input.thresholds.map((t) => (typeof t === 'number' ? { key: String(t), threshold: t } : t));
  const applicable = thresholds.filter((t) => value < t.threshold);
  if (applicable.length === 0) return { bucket: null, alert: null };
  const start = Math.floor(now / bucketMs) * bucketMs;
  const from = now - windowMs;
  let crossed: { threshold: number; multiple: number; before: number; count: number } | null = null;
  const alerted: Record<string, number> = {};
  for (const { key, threshold: t } of applicable) {
    let before = 0;
    let count = 0;
    let highest = 0;
    for (const b of input.buckets) {
      // A bucket counts when any of it lies in the window (bucket-width resolution, on the safe side).
      if (b.start + bucketMs <= from || b.start > now) continue;
      const u = b.under[key];
      if (u) {
        before += u.sum;
        count += u.count;
      }
      highest = Math.max(highest, multipleOf(b.alerted?.[key]));
    }
    // Each multiple once per window: a total hovering at k×T as old slices leave the window
    // would otherwise alert again on every re-crossing of the same multiple.
    const multiple = Math.floor((before + value) / t);
    if (multiple >= 1 && multiple > Math.floor(before / t) && multiple > highest) {
      alerted[key] = multiple;
      crossed = { threshold: t, multiple, before, count: count + 1 };
    }
  }
  const under: Record<string, { sum: number; count: number }> = {};
  for (const { key } of applicable) under[key] = { sum: value, count: 1 };
  if (crossed === null) return { bucket: { start, under }, alert: null };
  const bucket: ValueBucket = { start, under, alerted };
  const total = crossed.before + value;
  const times = crossed.multiple > 1 ? `${crossed.multiple} × ` : '';
  return {
    bucket,
    alert: {
      type: 'value_aggregation',
      confidence: round(clamp(0.6 + 0.05 * Math.min(6, crossed.count - 2))),
      description: `${crossed.count} requests from agent ${input.agentId} (now ${normalizeActionName(input.action)}) within ${Math.round(windowMs / MINUTE)} min, each under ${crossed.threshold}, now total ${round(total)}: at or over ${times}the policy's ${crossed.threshold} threshold`,
      evidence: { requestIds: [input.requestId], threshold: crossed.threshold, multiple: crossed.multiple, sum: round(total), previousSum: round(crossed.before), count: crossed.count },
    },
  };
}

/** Adds a bucket written by `runningTotal` into a list (what the store's insert-or-add does), dropping buckets older than `keepFrom`. */
export function mergeBucket(buckets: readonly ValueBucket[], add: ValueBucket, keepFrom: number): ValueBucket[] {
  const out: ValueBucket[] = [];
  let merged = false;
  for (const b of buckets) {
    if (b.start < keepFrom) continue;
    if (b.start !== add.start) {
      out.push(b);
      continue;
    }
    const under: Record<string, { sum: number; count: number }> = { ...b.under };
    for (const [t, u] of Object.entries(add.under)) {
      const prev = under[t];
      under[t] = prev ? { sum: prev.sum + u.sum, count: prev.count + u.count } : { ...u };
    }
    let alerted: Record<string, number> | undefined;
    if (b.alerted || add.alerted) {
      alerted = {};
      for (const src of [b.alerted, add.alerted]) for (const [k, m] of Object.entries(src ?? {})) alerted[k] = Math.max(alerted[k] ?? 0, multipleOf(m));
    }
    out.push({ start: b.start, under, ...(alerted ? { alerted } : {}) });
    merged = true;
  }
  if (!merged) out.push(add);
  return out;
}

/** One create's stored slice (`agent_rate_events`): the bucket `runningTotal` wrote for it. */
export interface ValueSlice {
  readonly requestId: string;
  /** Epoch ms of the create. */
  readonly at: number;
  readonly bucket: ValueBucket;
}

/**
 * The value alerts of a window, for the `/slicing` report, by the create path's own rule: read
 * from the slices `runningTotal` stored on each create, so the report and the create agree (no
 * fixed band, the policy's own thresholds as they were when each create was judged, grouped by
 * rule scope). A slice that crossed a multiple of a threshold (its `alerted`) is an alert, with
 * the window's slices under that threshold up to it as evidence.
 */
export function valueAlertsFromSlices(slices: readonly ValueSlice[], now: number, windowMs: number, agentId: string): SlicingAlert[] {
  const from = now - windowMs;
  const inWindow = slices.filter((x) => x.at > from && x.at <= now).sort((a, b) => a.at - b.at || (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
  const alerts: SlicingAlert[] = [];
  const seen = new Map<string, { ids: string[]; sum: number }>();
  for (const x of inWindow) {
    for (const [key, u] of Object.entries(x.bucket.under)) {
      const run = seen.get(key) ?? { ids: [], sum: 0 };
      run.ids.push(x.requestId);
      run.sum += u.sum;
      seen.set(key, run);
      const multiple = multipleOf(x.bucket.alerted?.[key]);
      if (multiple < 1) continue;
      const threshold = Number(key.split('@')[0]);
      if (!Number.isFinite(threshold) || threshold <= 0) continue;
      const times = multiple > 1 ? `${multiple} × ` : '';
      alerts.push({
        type: 'value_aggregation',
        confidence: round(clamp(0.6 + 0.05 * Math.min(6, run.ids.length - 2))),
        description: `${run.ids.length} requests from agent ${agentId} within ${Math.round(windowMs / MINUTE)} min, each under ${threshold}, total ${round(run.sum)}: at or over ${times}the policy's ${threshold} threshold`,
        evidence: { requestIds: [...run.ids], threshold, multiple, sum: round(run.sum), count: run.ids.length },
      });
    }
  }
  return alerts;
}

export const DETECTORS = [detectVelocityAbuse, detectValueAggregation, detectTemporalClustering, detectApproverFatigue, detectPatternRepetition] as const;

/** The detectors the `/slicing` report runs over request history: every one but the value detector, which is `valueAlertsFromSlices` (the create path's rule). */
export const HISTORY_DETECTORS = [detectVelocityAbuse, detectTemporalClustering, detectApproverFatigue, detectPatternRepetition] as const;

/**
 * Runs every detector. `attackDetected` when any alert reaches 0.5; the overall confidence
 * combines alerts as independent evidence (1 − Π(1 − cᵢ)).
 */
export function detectSlicing(
  events: readonly GuardEvent[],
  now: number,
  config: SlicingConfig = DEFAULT_SLICING_CONFIG,
  options: { readonly detectors?: readonly ((events: readonly GuardEvent[], now: number, config: SlicingConfig) => SlicingAlert[])[]; readonly extra?: readonly SlicingAlert[] } = {},
): SlicingReport {
  const alerts = [...(options.detectors ?? DETECTORS).flatMap((detect) => detect(events, now, config)), ...(options.extra ?? [])].sort(
    (a, b) => b.confidence - a.confidence || a.type.localeCompare(b.type) || a.description.localeCompare(b.description),
  );
  const confidence = round(clamp(1 - alerts.reduce((acc, a) => acc * (1 - a.confidence), 1), 0, 0.99));
  return { attackDetected: alerts.some((a) => a.confidence >= 0.5), confidence: alerts.length ? confidence : 0, alerts };
}

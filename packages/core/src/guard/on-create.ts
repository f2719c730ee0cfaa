/**
 * The history detectors that can judge one create as it happens (issue 12: slicing detection on
 * every create, cheaply). Where the `/slicing` report runs every detector over an agent's whole
 * window, these look only at the request just created and a bounded list of the agent's earlier
 * requests of the same action (normal form): `ON_CREATE_RECENT` of them at most, each flattened
 * to at most `ON_CREATE_MAX_FIELDS` fields, so a create costs O(ON_CREATE_RECENT × fields) however
 * busy the agent or large its args.
 *
 * - `temporal_clustering`: the create and at least `minBurst − 1` earlier requests of the same
 *   action within `burstSeconds` that are similar to it (args similarity ≥ `similarity`). The
 *   create is the anchor (the report anchors on the earliest of a burst): every burst is caught on
 *   the create that brings it to `minBurst`, never a minute later.
 * - `pattern_repetition`: the create joins a chain (only 1–2 numeric fields moving) that reaches
 *   `minRepeats`, by the report's own chain rule (`repetitionChains`), over the bounded list.
 *
 * Both return only alerts the create itself takes part in. Which of them is new (not already
 * recorded for the agent) is the shell's business: it keeps that across servers.
 *
 * Not here, by design: `velocity_abuse` needs `sustainedBuckets` (3) elevated intervals of
 * `windowMinutes / buckets` (10 min) each, so its traffic must span more than 10 minutes before it
 * can fire, and a check once a minute adds at most a tenth to that; a burst inside a minute is this module's
 * (clustering, repetition), the running total's (value) and the hard agent rate limit's (checked
 * and counted atomically on every create). `approver_fatigue` judges approvals, not creates;
 * the gate's velocity and cool-down limits are checked atomically on every approval.
 */
import { normalizeActionName } from '../policy/names.ts';
import type { SlicingResponse } from '../policy/types.ts';
import { payloadKeys, payloadShape, repetitionAlert, repetitionChains } from './slicing.ts';
import { FINGERPRINT_FIELDS, type FlatArgs, flatSimilarity, flatten, payloadFingerprint } from './similarity.ts';
import { DEFAULT_SLICING_CONFIG, type GuardEvent, type SlicingAlert, type SlicingConfig } from './types.ts';

/** At most this many earlier requests of the action are read for a create (newest first). */
export const ON_CREATE_RECENT = 50;
/** At most this many fields of each payload are compared (its `payloadFingerprint`, long strings hashed: size never exempts a payload). */
export const ON_CREATE_MAX_FIELDS = FINGERPRINT_FIELDS;

const MINUTE = 60_000;
const round = (n: number) => Math.round(n * 1000) / 1000;
const clamp = (n: number, lo = 0, hi = 0.99) => Math.min(hi, Math.max(lo, n));

/**
 * The clustering and repetition alerts `current` takes part in, judged against `recent` (the
 * agent's earlier requests; only those of the same agent and action, in the window, before
 * `current`, and the newest `ON_CREATE_RECENT` of them, are read).
 */
export function detectOnCreate(current: GuardEvent, recent: readonly GuardEvent[], config: SlicingConfig = DEFAULT_SLICING_CONFIG): SlicingAlert[] {
  const now = current.createdAt;
  const action = normalizeActionName(current.action);
  const from = now - config.windowMinutes * MINUTE;
  const cache = new Map<GuardEvent, FlatArgs>();
  const flat = (e: GuardEvent) => {
    let f = cache.get(e);
    if (!f) cache.set(e, (f = flatten(payloadFingerprint(e.args))));
    return f;
  };
  const all = recent
    .filter((e) => e.requestId !== current.requestId && e.agentId === current.agentId && e.createdAt > from && e.createdAt <= now && normalizeActionName(e.action) === action)
    .sort((a, b) => a.createdAt - b.createdAt || (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
  // The newest of the action, and the newest of the create's own shape and key set: requests of
  // other payloads in between (a dilution) cannot push the similar ones out (issue 12 review).
  const shape = payloadShape(flat(current));
  const keys = payloadKeys(flat(current));
  const picked = new Set(all.slice(-ON_CREATE_RECENT));
  let sameShape = 0;
  let sameKeys = 0;
  for (let i = all.length - 1; i >= 0 && (sameShape < ON_CREATE_RECENT || sameKeys < ON_CREATE_RECENT); i--) {
    const e = all[i]!;
    if (sameShape < ON_CREATE_RECENT && payloadShape(flat(e)) === shape) {
      sameShape++;
      picked.add(e);
    } else if (sameKeys < ON_CREATE_RECENT && payloadKeys(flat(e)) === keys) {
      sameKeys++;
      picked.add(e);
    }
  }
  const list = all.filter((e) => picked.has(e));
  const alerts: SlicingAlert[] = [];

  const { burstSeconds, minBurst, similarity } = config.clustering;
  const burst = list.filter((e) => now - e.createdAt <= burstSeconds * 1000 && flatSimilarity(flat(current), flat(e)) >= similarity);
  if (burst.length + 1 >= minBurst) {
    const members = [...burst, current];
    const span = (now - members[0]!.createdAt) / 1000;
    alerts.push({
      type: 'temporal_clustering',
      confidence: round(clamp(0.5 + 0.05 * (members.length - minBurst) + 0.2 * (1 - span / burstSeconds))),
      description: `${members.length} near-identical ${current.action} requests from agent ${current.agentId} within ${round(span)} s`,
      evidence: { requestIds: members.map((e) => e.requestId), burstSeconds: round(span) },
    });
  }

  const { minRepeats } = config.repetition;
  if (list.length + 1 >= minRepeats) {
    for (const [fields, chain] of repetitionChains([...list, current], flat)) {
      if (chain[chain.length - 1] !== current) continue;
      const alert = repetitionAlert(fields, chain, flat, minRepeats);
      if (alert) alerts.push(alert);
    }
  }
  return alerts;
}

/** What was last recorded for an agent, per alert type (the shell keeps it in the store, shared by every server). */
export type SlicingSeen = Partial<Record<SlicingAlert['type'], { readonly until: number; readonly signature: string; readonly ids?: readonly string[] }>>;

/** At most this many request ids of the last alert of a type are remembered (the newest). */
export const SEEN_IDS = 500;

/**
 * Which of `alerts` are new for the agent, and what to remember. A `value_aggregation` alert is
 * new unless its crossing (the create that crossed: the newest request it names) was recorded
 * already: the create raises it, and the report raises it again until it is recorded (so a
 * failed recording is late, never lost). Any other type (after
 * dropping an alert whose requests another alert of its type already names) is new unless it has
 * the same evidence (request ids) as the last one recorded, or it shares a request with that one
 * and comes within `quietMs` of it: a burst that goes on is reported again at most once per
 * `quietMs`, as it grows, whichever server's create or report finds it — while a burst with none
 * of the last one's requests is new at once, so a harmless decoy burst cannot keep a real one
 * quiet.
 */
export function freshAlerts(alerts: readonly SlicingAlert[], seen: SlicingSeen, at: number, quietMs: number): { fresh: SlicingAlert[]; seen: SlicingSeen } {
  const next: SlicingSeen = { ...seen };
  const byType = new Map<SlicingAlert['type'], SlicingAlert[]>();
  // One finding once: an alert whose requests are all in another alert of its type (the create's
  // own run and the full report finding the same burst) is dropped; the larger one is kept.
  const bySize = [...alerts].sort((x, y) => y.evidence.requestIds.length - x.evidence.requestIds.length);
  for (const a of bySize) {
    const list = byType.get(a.type) ?? [];
    if (a.type !== 'value_aggregation' && list.some((o) => a.evidence.requestIds.every((id) => o.evidence.requestIds.includes(id)))) continue;
    byType.set(a.type, [...list, a]);
  }
  const fresh: SlicingAlert[] = [];
  for (const [type, list] of byType) {
    if (type === 'value_aggregation') {
      // A crossing is the create that crossed (the newest request an alert names): recorded once,
      // whether the create's own step or a later report (after that step failed) finds it.
      const known = new Set(seen.value_aggregation?.ids ?? []);
      const crossings: string[] = [];
      // In the order given (the create's own alert first, before the report's finding of it).
      for (const a of alerts.filter((x) => x.type === type)) {
        const crossing = a.evidence.requestIds.at(-1);
        if (crossing === undefined || known.has(crossing)) continue;
        known.add(crossing);
        crossings.push(crossing);
        fresh.push(a);
      }
      if (crossings.length > 0) next.value_aggregation = { until: at, signature: 'crossings', ids: [...(seen.value_aggregation?.ids ?? []), ...crossings].slice(-SEEN_IDS) };
      continue;
    }
    const ids = [...new Set(list.flatMap((a) => a.evidence.requestIds))].sort();
    const signature = list.map((a) => [...a.evidence.requestIds].sort().join(',')).sort().join('|');
    const last = seen[type];
    if (last) {
      if (last.signature === signature) continue;
      // A record without ids (unreadable or partial) counts as the same burst: quiet for its minute.
      const previous = Array.isArray(last.ids) ? new Set(last.ids) : null;
      const sameBurst = previous === null || ids.some((id) => previous.has(id));
      if (last.until > at && sameBurst) continue;
    }
    fresh.push(...list);
    next[type] = { until: at + quietMs, signature, ids: ids.slice(-SEEN_IDS) };
  }
  return { fresh, seen: next };
}

/**
 * The review a create is routed to because it raised slicing alerts itself (issue 12 review,
 * finding 1): under `onSlicing: review`, `aggregate` or `pause`, the create that crosses a value
 * threshold or completes a burst is held for a human like the ones after it, with a matched rule
 * naming the alerts (`slicing-alert:<types>`, or `slicing-aggregate:<types>`, the names a slicing
 * hold's creates get). Under `pause` it is held whatever `whilePaused` says: the pause starts with
 * it, and a create refused here would leave its alert naming a request that does not exist.
 * Undefined when nothing reaches 0.5 or the response only records.
 */
export function slicingReview(response: SlicingResponse | undefined, alerts: readonly SlicingAlert[], agent: string): { rule: string; reason: string } | undefined {
  if (response === undefined || response === 'alert') return undefined;
  const types = [...new Set(alerts.filter((a) => a.confidence >= 0.5).map((a) => a.type))].sort();
  if (types.length === 0) return undefined;
  const what = `this request raised slicing alerts (${types.join(', ')})`;
  if (response === 'aggregate') return { rule: `slicing-aggregate:${types.join('+')}`, reason: `${what}; policy onSlicing: aggregate reviews agent ${agent}'s requests together from here` };
  if (response === 'pause') return { rule: `slicing-alert:${types.join('+')}`, reason: `${what}; policy onSlicing: pause pauses agent ${agent}, and holds this request for review` };
  return { rule: `slicing-alert:${types.join('+')}`, reason: `${what}; policy onSlicing: review routes it and agent ${agent}'s later requests to review` };
}

/**
 * The learning loop's arithmetic, pure. Reviewers give screening verdicts (injection / not
 * injection / unsure), separate from approve/reject; these functions turn accepted verdicts into
 * proposals a person applies — nothing here changes a threshold or enables a pattern by itself.
 *
 * Poisoning guards come first: only authorised reviewers count, each source's total weight is
 * capped (a flood of verdicts from one account weighs no more than `maxWeightPerSource`
 * verdicts), and a retrained model is compared with a frozen baseline before it may replace it.
 */
import type { Channel, ScreenAction } from './types.ts';

export const VERDICT_LABELS = ['injection', 'not_injection', 'unsure'] as const;
export type VerdictLabel = (typeof VERDICT_LABELS)[number];

/** One reviewer's verdict on one screened item. */
export interface ScreenVerdict {
  readonly itemId: string;
  readonly channel: Channel;
  /** The calibrated score the item got when it was screened. */
  readonly score: number;
  readonly verdict: VerdictLabel;
  /** Who gave it: the source whose weight is capped. */
  readonly reviewer: string;
  /** The agent whose request the item is from: its items' weight is capped too (one agent cannot choose the threshold). */
  readonly agent?: string;
}

export interface WeightedVerdict {
  readonly itemId: string;
  readonly channel: Channel;
  readonly score: number;
  readonly injection: boolean;
  readonly reviewer: string;
  readonly weight: number;
  /** The agent whose request was judged, when known (calibrateThreshold's one-agent guard). */
  readonly agent?: string;
}

/** The largest share of a channel's counted weight that verdicts on one agent's requests may hold for a threshold to be proposed. */
export const MAX_AGENT_SHARE = 0.5;

export interface VerdictGuard {
  /** Is this reviewer allowed to teach the screen? (Role and account checks live with the caller.) */
  readonly authorised: (reviewer: string) => boolean;
  /** The most total weight one reviewer's verdicts may carry. */
  readonly maxWeightPerSource: number;
  /** The most total weight the verdicts on one agent's requests may carry (default: `maxWeightPerSource`). */
  readonly maxWeightPerAgent?: number;
}

export interface AcceptedVerdicts {
  readonly accepted: readonly WeightedVerdict[];
  readonly refused: { readonly unauthorised: number; readonly unsure: number; readonly superseded: number };
  /** Per reviewer: verdicts counted and the weight each carries. */
  readonly sources: readonly { readonly reviewer: string; readonly verdicts: number; readonly weightEach: number }[];
  /** Per agent whose requests were judged: verdicts counted, the weight they carry after both caps, and that weight's share of the total. */
  readonly agents: readonly { readonly agent: string; readonly verdicts: number; readonly weight: number; readonly share: number }[];
}

/**
 * Apply the poisoning guards. A reviewer's later verdict on the same item replaces the earlier
 * one; `unsure` teaches nothing; each source's verdicts share at most `maxWeightPerSource`; and
 * the verdicts on one agent's requests share at most `maxWeightPerAgent` (an agent that files
 * crafted borderline text for many honest reviewers to judge cannot alone move the threshold).
 */
export function acceptVerdicts(verdicts: readonly ScreenVerdict[], guard: VerdictGuard): AcceptedVerdicts {
  if (!(guard.maxWeightPerSource > 0)) throw new RangeError('maxWeightPerSource must be positive');
  let unauthorised = 0;
  let unsure = 0;
  let superseded = 0;
  const latest = new Map<string, ScreenVerdict>();
  for (const v of verdicts) {
    if (!guard.authorised(v.reviewer)) {
      unauthorised++;
      continue;
    }
    if (!(v.score >= 0 && v.score <= 1)) throw new RangeError(`verdict on ${v.itemId} has score ${v.score}, outside [0, 1]`);
    const key = `${v.reviewer}\u0000${v.itemId}`;
    if (latest.has(key)) superseded++;
    latest.set(key, v);
  }
  const perSource = new Map<string, ScreenVerdict[]>();
  for (const v of latest.values()) {
    if (v.verdict === 'unsure') {
      unsure++;
      continue;
    }
    const list = perSource.get(v.reviewer) ?? [];
    list.push(v);
    perSource.set(v.reviewer, list);
  }
  const accepted: WeightedVerdict[] = [];
  const sources: { reviewer: string; verdicts: number; weightEach: number }[] = [];
  for (const reviewer of [...perSource.keys()].sort()) {
    const list = perSource.get(reviewer) as ScreenVerdict[];
    const weightEach = Math.min(1, guard.maxWeightPerSource / list.length);
    sources.push({ reviewer, verdicts: list.length, weightEach });
    for (const v of list) {
      accepted.push({ itemId: v.itemId, channel: v.channel, score: v.score, injection: v.verdict === 'injection', reviewer, weight: weightEach });
    }
  }
  const agentCap = guard.maxWeightPerAgent ?? guard.maxWeightPerSource;
  if (!(agentCap > 0)) throw new RangeError('maxWeightPerAgent must be positive');
  const agentOf = new Map<WeightedVerdict, string>();
  const byAgent = new Map<string, { verdicts: number; weight: number }>();
  const latestList = [...latest.values()].filter((v) => v.verdict !== 'unsure');
  // accepted[] is in per-reviewer order; find each one's agent by item and reviewer.
  const agentByKey = new Map(latestList.map((v) => [`${v.reviewer}\u0000${v.itemId}`, v.agent ?? '(unknown)']));
  for (const w of accepted) {
    const agent = agentByKey.get(`${w.reviewer}\u0000${w.itemId}`) ?? '(unknown)';
    agentOf.set(w, agent);
    const a = byAgent.get(agent) ?? { verdicts: 0, weight: 0 };
    a.verdicts++;
    a.weight += w.weight;
    byAgent.set(agent, a);
  }
  const scaled: WeightedVerdict[] = accepted.map((w) => {
    const a = byAgent.get(agentOf.get(w) as string) as { weight: number };
    const agent = agentOf.get(w) as string;
    const withAgent = agent === '(unknown)' ? w : { ...w, agent };
    // Verdicts whose request's agent is not known (none from the server) are capped per reviewer only.
    return agent !== '(unknown)' && a.weight > agentCap ? { ...withAgent, weight: (w.weight * agentCap) / a.weight } : withAgent;
  });
  const capped = [...byAgent.entries()].map(([agent, a]) => ({ agent, verdicts: a.verdicts, weight: agent === '(unknown)' ? a.weight : Math.min(a.weight, agentCap) }));
  const total = capped.reduce((t, a) => t + a.weight, 0);
  const agents = capped.sort((x, y) => (x.agent < y.agent ? -1 : x.agent > y.agent ? 1 : 0)).map((a) => ({ ...a, share: total > 0 ? a.weight / total : 0 }));
  return { accepted: scaled, refused: { unauthorised, unsure, superseded }, sources, agents };
}

/** The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError('p must be in (0, 1)');
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  const at = (xs: number[], k: number): number => xs[k] as number;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((at(c, 0) * q + at(c, 1)) * q + at(c, 2)) * q + at(c, 3)) * q + at(c, 4)) * q + at(c, 5)) / ((((at(d, 0) * q + at(d, 1)) * q + at(d, 2)) * q + at(d, 3)) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((at(a, 0) * r + at(a, 1)) * r + at(a, 2)) * r + at(a, 3)) * r + at(a, 4)) * r + at(a, 5)) * q) / (((((at(b, 0) * r + at(b, 1)) * r + at(b, 2)) * r + at(b, 3)) * r + at(b, 4)) * r + 1);
}

/**
 * One-sided Wilson score bounds for a proportion `k / n` at `confidence` (e.g. 0.95). Works with
 * fractional `k` and `n` (weighted verdicts, effective sample sizes).
 */
export function wilsonBounds(k: number, n: number, confidence: number): { lower: number; upper: number } {
  if (n <= 0) return { lower: 0, upper: 1 };
  const z = normalQuantile(confidence);
  const p = Math.min(1, Math.max(0, k / n));
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { lower: Math.max(0, centre - half), upper: Math.min(1, centre + half) };
}

export interface OperatingPoint {
  readonly threshold: number;
  /** Weighted share of not-injection verdicts at or above the threshold. */
  readonly fpr: number;
  /** The Wilson upper bound on that share, with the Kish effective sample size. */
  readonly fprUpper: number;
  /** Weighted share of injection verdicts at or above the threshold. */
  readonly recall: number;
}

export interface ThresholdProposal {
  readonly channel: Channel;
  readonly targetFpr: number;
  readonly confidence: number;
  readonly bound: 'wilson';
  /** Null when the verdicts cannot support any threshold at this target (too few benign verdicts). */
  readonly proposed: number | null;
  readonly current: OperatingPoint;
  readonly atProposed: OperatingPoint | null;
  /** Reviewed items whose flag would change: the measured effect, shown before anyone applies it. */
  readonly effect: { readonly newlyFlagged: number; readonly newlyAllowed: number; readonly benignWeight: number; readonly effectiveBenign: number; readonly attackWeight: number };
  readonly reason: string;
}

function operatingPoint(t: number, benign: readonly WeightedVerdict[], attacks: readonly WeightedVerdict[], nEff: number, confidence: number): OperatingPoint {
  const bw = benign.reduce((s, v) => s + v.weight, 0);
  const aw = attacks.reduce((s, v) => s + v.weight, 0);
  const fp = benign.reduce((s, v) => s + (v.score >= t ? v.weight : 0), 0);
  const tp = attacks.reduce((s, v) => s + (v.score >= t ? v.weight : 0), 0);
  const fpr = bw > 0 ? fp / bw : 0;
  return { threshold: t, fpr, fprUpper: wilsonBounds(fpr * nEff, nEff, confidence).upper, recall: aw > 0 ? tp / aw : 0 };
}

/**
 * Propose a channel's flag threshold (the first non-allow band) from verdicts: the lowest
 * threshold whose false-positive rate on not-injection verdicts is, with `confidence`, at most
 * `targetFpr` (one-sided Wilson bound, Kish effective sample size so capped weights count as
 * what they are). Lowest, because every higher threshold only loses detections.
 *
 * @example calibrateThreshold(accepted, { channel: 'content', targetFpr: 0.02, confidence: 0.95, current: 0.1 })
 */
export function calibrateThreshold(
  verdicts: readonly WeightedVerdict[],
  options: { channel: Channel; targetFpr: number; confidence: number; current: number },
): ThresholdProposal {
  const { channel, targetFpr, confidence, current } = options;
  if (!(targetFpr > 0 && targetFpr < 1)) throw new RangeError('targetFpr must be in (0, 1)');
  if (!(confidence > 0.5 && confidence < 1)) throw new RangeError('confidence must be in (0.5, 1)');
  const mine = verdicts.filter((v) => v.channel === channel);
  const benign = mine.filter((v) => !v.injection);
  const attacks = mine.filter((v) => v.injection);
  const bw = benign.reduce((s, v) => s + v.weight, 0);
  const bw2 = benign.reduce((s, v) => s + v.weight * v.weight, 0);
  const nEff = bw2 > 0 ? (bw * bw) / bw2 : 0;
  const aw = attacks.reduce((s, v) => s + v.weight, 0);
  const cur = operatingPoint(current, benign, attacks, nEff, confidence);
  // Candidates: 0, then just above each benign score (flagging strictly fewer). FPR only falls as
  // the threshold rises, so one ascending sweep over the sorted scores finds the lowest that holds.
  const sorted = [...benign].sort((a, b) => a.score - b.score);
  let proposed: number | null = null;
  let fp = bw;
  const holds = (fpWeight: number): boolean => wilsonBounds(bw > 0 ? (fpWeight / bw) * nEff : 0, nEff, confidence).upper <= targetFpr;
  if (holds(fp)) proposed = 0;
  for (let i = 0; proposed === null && i < sorted.length; ) {
    const score = (sorted[i] as WeightedVerdict).score;
    while (i < sorted.length && (sorted[i] as WeightedVerdict).score === score) fp -= (sorted[i++] as WeightedVerdict).weight;
    const t = nextUp(score);
    if (t <= 1 && holds(Math.max(0, fp))) proposed = t;
  }
  const at = proposed === null ? null : operatingPoint(proposed, benign, attacks, nEff, confidence);
  let newlyFlagged = 0;
  let newlyAllowed = 0;
  if (proposed !== null) {
    for (const v of mine) {
      const before = v.score >= current;
      const after = v.score >= proposed;
      if (after && !before) newlyFlagged++;
      if (before && !after) newlyAllowed++;
    }
  }
  const minN = Math.ceil((normalQuantile(confidence) ** 2 * (1 - targetFpr)) / targetFpr);
  // One agent's text may not choose the threshold (review R5): with more than MAX_AGENT_SHARE of
  // the weight about one agent's requests, however many honest reviewers judged them, no proposal.
  const perAgent = new Map<string, number>();
  let known = 0;
  for (const v of mine) {
    if (v.agent === undefined) continue;
    perAgent.set(v.agent, (perAgent.get(v.agent) ?? 0) + v.weight);
    known += v.weight;
  }
  const top = Math.max(0, ...perAgent.values());
  const dominated = known > 0 && top / (bw + aw) > MAX_AGENT_SHARE;
  if (dominated) {
    return {
      channel,
      targetFpr,
      confidence,
      bound: 'wilson',
      proposed: null,
      current: cur,
      atProposed: null,
      effect: { newlyFlagged: 0, newlyAllowed: 0, benignWeight: bw, effectiveBenign: nEff, attackWeight: aw },
      reason: `${Math.round((top / (bw + aw)) * 100)} % of the counted weight is about one agent's requests (at most ${MAX_AGENT_SHARE * 100} %): a threshold is proposed only from verdicts on several agents' text`,
    };
  }
  return {
    channel,
    targetFpr,
    confidence,
    bound: 'wilson',
    proposed,
    current: cur,
    atProposed: at,
    effect: { newlyFlagged, newlyAllowed, benignWeight: bw, effectiveBenign: nEff, attackWeight: aw },
    reason:
      proposed === null
        ? `no threshold reaches FPR ≤ ${targetFpr} at ${confidence} confidence with ${nEff.toFixed(1)} effective not-injection verdicts (at least ${minN} are needed)`
        : `lowest threshold whose ${Math.round(confidence * 100)} % Wilson upper bound on FPR is within ${targetFpr}`,
  };
}

/** The smallest double above x: a threshold that no longer flags a score of exactly x. */
function nextUp(x: number): number {
  return x + Math.max(Number.EPSILON, Math.abs(x) * Number.EPSILON);
}

export interface ModelSummary {
  /** Per evaluation set: recall (attack sets) or false-positive rate (benign sets). */
  readonly [set: string]: { readonly kind: 'recall' | 'fpr'; readonly value: number };
}

/**
 * The evaluation gate for a periodic retrain: a candidate that regresses on any committed set
 * against the frozen baseline (beyond `tolerance`), or falls under a floor, is refused.
 */
export function evaluationGate(
  candidate: ModelSummary,
  baseline: ModelSummary,
  options: { tolerance: number; floors?: Readonly<Record<string, number>> },
): { accepted: boolean; regressions: readonly { set: string; kind: 'recall' | 'fpr'; baseline: number; candidate: number; reason: string }[] } {
  const regressions: { set: string; kind: 'recall' | 'fpr'; baseline: number; candidate: number; reason: string }[] = [];
  // Fail closed: nothing measured proves nothing, and a floor whose set was not measured does not hold.
  if (Object.keys(baseline).length === 0) regressions.push({ set: '(all)', kind: 'recall', baseline: NaN, candidate: NaN, reason: 'no set was evaluated' });
  for (const set of Object.keys(options.floors ?? {}).sort()) {
    if (!baseline[set] || !candidate[set]) regressions.push({ set, kind: baseline[set]?.kind ?? candidate[set]?.kind ?? 'recall', baseline: baseline[set]?.value ?? NaN, candidate: candidate[set]?.value ?? NaN, reason: 'has a floor but was not evaluated' });
  }
  for (const set of Object.keys(baseline).sort()) {
    const b = baseline[set] as { kind: 'recall' | 'fpr'; value: number };
    const c = candidate[set];
    if (!c) {
      regressions.push({ set, kind: b.kind, baseline: b.value, candidate: NaN, reason: 'not evaluated' });
      continue;
    }
    if (!Number.isFinite(b.value) || !Number.isFinite(c.value) || c.kind !== b.kind) {
      regressions.push({ set, kind: b.kind, baseline: b.value, candidate: c.value, reason: 'not a finite measurement of the same kind' });
      continue;
    }
    const worse = b.kind === 'recall' ? b.value - c.value : c.value - b.value;
    if (worse > options.tolerance) regressions.push({ set, kind: b.kind, baseline: b.value, candidate: c.value, reason: `worse than the frozen baseline by ${worse.toFixed(4)}` });
    const floor = options.floors?.[set];
    if (floor !== undefined && (!Number.isFinite(floor) || (b.kind === 'recall' ? c.value < floor : c.value > floor))) {
      regressions.push({ set, kind: b.kind, baseline: b.value, candidate: c.value, reason: `past the floor ${floor}` });
    }
  }
  return { accepted: regressions.length === 0, regressions };
}

export interface PatternSuggestion {
  readonly ngram: string;
  readonly attacks: number;
  readonly benign: number;
  /** Distinct reviewers whose confirmed attacks contain it. */
  readonly sources: number;
  /** Smoothed log-odds of appearing in a confirmed attack rather than a confirmed benign text. */
  readonly score: number;
  /** Always false: suggestions are for an admin to read, never switched on automatically. */
  readonly enabled: false;
}

function words(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (const ch of text.toLowerCase()) {
    const c = ch.codePointAt(0) as number;
    const word = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c >= 0xc0;
    if (word) cur += ch;
    else if (cur) {
      out.push(cur);
      cur = '';
    }
  }
  if (cur) out.push(cur);
  return out;
}

/**
 * Word n-grams (1–3) that separate confirmed attacks from confirmed benign texts. A suggestion
 * needs `minSupport` attacks from `minSources` distinct reviewers (one account cannot plant a
 * pattern) and at most `maxBenign` benign texts.
 */
export function suggestPatterns(
  attacks: readonly { text: string; reviewer: string }[],
  benign: readonly { text: string }[],
  options: { minSupport?: number; minSources?: number; maxBenign?: number; limit?: number; maxN?: number } = {},
): PatternSuggestion[] {
  const minSupport = options.minSupport ?? 3;
  const minSources = options.minSources ?? 2;
  const maxBenign = options.maxBenign ?? 0;
  const maxN = options.maxN ?? 3;
  const grams = (text: string): Set<string> => {
    const w = words(text).slice(0, 2000);
    const s = new Set<string>();
    for (let n = 1; n <= maxN; n++) for (let i = 0; i + n <= w.length; i++) s.add(w.slice(i, i + n).join(' '));
    return s;
  };
  const attackCount = new Map<string, { n: number; sources: Set<string> }>();
  for (const a of attacks) {
    for (const g of grams(a.text)) {
      const e = attackCount.get(g) ?? { n: 0, sources: new Set<string>() };
      e.n++;
      e.sources.add(a.reviewer);
      attackCount.set(g, e);
    }
  }
  const benignCount = new Map<string, number>();
  for (const b of benign) for (const g of grams(b.text)) if (attackCount.has(g)) benignCount.set(g, (benignCount.get(g) ?? 0) + 1);
  const A = attacks.length;
  const B = benign.length;
  const out: PatternSuggestion[] = [];
  for (const [ngram, e] of attackCount) {
    const b = benignCount.get(ngram) ?? 0;
    if (e.n < minSupport || e.sources.size < minSources || b > maxBenign) continue;
    const score = Math.log((e.n + 0.5) / (A + 1)) - Math.log((b + 0.5) / (B + 1));
    out.push({ ngram, attacks: e.n, benign: b, sources: e.sources.size, score, enabled: false });
  }
  out.sort((x, y) => y.score - x.score || (x.ngram < y.ngram ? -1 : 1));
  // A longer n-gram with the same support says the same as its parts; keep the most specific first.
  return out.slice(0, options.limit ?? 20);
}

/**
 * A random audit sample of auto-allowed items, so the false-negative rate can be estimated.
 * Each allowed item is picked with probability `rate`, at most `max` in all (reservoir sampling
 * past that). `random` returns uniform numbers in [0, 1): core draws no randomness itself.
 */
export function selectAuditSample<T extends { readonly id: string; readonly action: ScreenAction }>(
  items: readonly T[],
  options: { rate: number; max: number },
  random: () => number,
): T[] {
  if (!(options.rate >= 0 && options.rate <= 1)) throw new RangeError('rate must be in [0, 1]');
  const picked: T[] = [];
  let seen = 0;
  for (const item of items) {
    if (item.action !== 'allow') continue;
    if (random() >= options.rate) continue;
    seen++;
    if (picked.length < options.max) picked.push(item);
    else {
      const j = Math.floor(random() * seen);
      if (j < options.max) picked[j] = item;
    }
  }
  return picked;
}

export interface VerdictRates {
  readonly truePositives: number;
  readonly falsePositives: number;
  readonly falseNegatives: number;
  readonly trueNegatives: number;
  /** Of items judged injections, the share the screen flagged. */
  readonly detectionRate: number | null;
  /** Of items judged benign, the share the screen flagged. */
  readonly falsePositiveRate: number | null;
  /** Of audited auto-allowed items, the share judged injections, with its Wilson bounds. */
  readonly falseNegativeRate: { readonly rate: number; readonly lower: number; readonly upper: number; readonly audited: number } | null;
}

/**
 * Detection, false-positive and false-negative rates from verdicts. "Flagged" is any action
 * but `allow`. The false-negative rate comes only from the random audit sample: verdicts people
 * chose to give on allowed items are not a random sample of them.
 */
export function verdictRates(rows: readonly { action: ScreenAction; verdict: VerdictLabel; audited?: boolean }[], confidence = 0.95): VerdictRates {
  let tp = 0, fp = 0, fn = 0, tn = 0, audited = 0, auditedMissed = 0;
  for (const r of rows) {
    if (r.verdict === 'unsure') continue;
    const flagged = r.action !== 'allow';
    const injection = r.verdict === 'injection';
    if (flagged && injection) tp++;
    else if (flagged) fp++;
    else if (injection) fn++;
    else tn++;
    if (r.audited && !flagged) {
      audited++;
      if (injection) auditedMissed++;
    }
  }
  const ratio = (a: number, b: number): number | null => (b > 0 ? a / b : null);
  const w = audited > 0 ? wilsonBounds(auditedMissed, audited, confidence) : null;
  return {
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    trueNegatives: tn,
    detectionRate: ratio(tp, tp + fn),
    falsePositiveRate: ratio(fp, fp + tn),
    falseNegativeRate: w ? { rate: auditedMissed / audited, lower: w.lower, upper: w.upper, audited } : null,
  };
}

/**
 * What-if replay, the comparison half: for each stored request, what its create decided (the
 * stored assessment) against what a candidate policy decides (replay.ts), summed into one report
 * an admin reads before deploying the candidate — how routes, risk levels, approvers and quorum,
 * step-up and the expected review load would change, as counts with a few examples each.
 *
 * Pure and bounded: the accumulator keeps counts and at most `EXAMPLES` examples per change, and
 * at most `MAX_KEYS` distinct changes per dimension (the rest are summed under `(other)`), so a
 * replay over a hundred thousand requests holds a few kilobytes whatever they contain.
 *
 *   const acc = new ReplayAccumulator({ from, to });
 *   for (const stored of page) acc.add(stored, replayRequest(stored, candidate), replayRequest(stored, judging));
 *   const report = acc.report({ limit, limitReached });
 */
import type { ApprovalRequirement, Assessment, Route } from '../schemas.ts';
import { RISK_LEVELS } from '../schemas.ts';
import type { ReplayOutcome, StoredRequestInput } from './replay.ts';
import { isServerHold } from './replay.ts';

/** A candidate's route; `refused` when its argument rules refuse the create before it is stored. */
export type ReplayRoute = Route | 'refused';

export const REPLAY_ROUTES: readonly ReplayRoute[] = ['auto_approve', 'review', 'block', 'refused'];
const EXAMPLES = 3;
const MAX_KEYS = 50;
const MAX_RULES = 200;
const DAY_MS = 86_400_000;

export interface ReplayExample {
  readonly id: string;
  readonly agent: string;
  readonly action: string;
  readonly from: string;
  readonly to: string;
}

export interface ReplayChange {
  readonly from: string;
  readonly to: string;
  readonly count: number;
  readonly examples: readonly ReplayExample[];
}

export interface ReviewLoad {
  /** Requests routed to review. */
  readonly reviews: number;
  /** Approvals those reviews need in all (every stage's quorum), the votes reviewers must give. */
  readonly approvals: number;
  /** Reviews whose approval needs step-up MFA. */
  readonly stepUp: number;
  /** Per day over the period the replay covered. */
  readonly reviewsPerDay: number;
  readonly approvalsPerDay: number;
}

export interface ReplayReport {
  /** The period asked for, and the part the scan covered (all of it unless the limit was reached). */
  readonly period: { readonly from: string; readonly to: string; readonly coveredFrom: string; readonly days: number };
  /** Stored requests read; replayed (aggregate reviews, which no agent files, are skipped). */
  readonly scanned: number;
  readonly replayed: number;
  readonly skipped: number;
  readonly limit: number;
  /** The scan stopped at `limit` (newest first): older requests in the period were not replayed. */
  readonly limitReached: boolean;
  /** Requests whose outcome the candidate changes in any of the ways below. */
  readonly changed: number;
  readonly routes: { readonly before: Readonly<Record<Route, number>>; readonly after: Readonly<Record<ReplayRoute, number>>; readonly changes: readonly ReplayChange[] };
  readonly riskLevels: { readonly before: Readonly<Record<string, number>>; readonly after: Readonly<Record<string, number>>; readonly changes: readonly ReplayChange[] };
  /** Who must approve (stages, quorum, rejections that decide), among requests reviewed under both. */
  readonly approvers: { readonly changes: readonly ReplayChange[] };
  readonly stepUp: { readonly before: number; readonly after: number; readonly changes: readonly ReplayChange[] };
  readonly escalationStart: { readonly changes: readonly ReplayChange[] };
  readonly reviewLoad: { readonly before: ReviewLoad; readonly after: ReviewLoad };
  /** Policy rules matched by a different number of requests (server holds and implicit limits excluded). */
  readonly rules: readonly { readonly name: string; readonly before: number; readonly after: number }[];
  /**
   * The self-check: each request re-evaluated under the policy version that judged it. `differed`
   * counts those whose stored outcome that does not reproduce (a server upgrade changed the
   * evaluator, or a version no longer stored: `unchecked`); their "before" is still what happened.
   */
  readonly reproduced: { readonly checked: number; readonly differed: number; readonly unchecked: number; readonly examples: readonly ReplayExample[] };
  /** What could not be replayed exactly, in words. */
  readonly caveats: readonly string[];
}

/** The facts of one outcome the report compares. */
interface Facts {
  route: ReplayRoute;
  risk: string;
  approvers: string;
  stepUp: boolean;
  startLevel: number;
  approvals: number;
  rules: string[];
}

/** "2 managers, then director; 2 rejections decide" — the approval requirement in words. */
export function approvalText(approval: ApprovalRequirement | null): string {
  if (!approval) return 'no review';
  const stages = approval.stages.map((s) => s.label).join(', then ');
  const deny = approval.deny > 1 ? `; ${approval.deny} rejections decide` : '';
  const modified = approval.modifiedNeedsSecondReviewer ? '; a modification needs a second reviewer' : '';
  return `${stages}${deny}${modified}`;
}

function factsOf(a: Assessment): Facts {
  const review = a.route === 'review';
  return {
    route: a.route,
    risk: a.riskLevel,
    approvers: review ? approvalText(a.approval) : 'no review',
    stepUp: review && a.mfaRequired,
    startLevel: review ? (a.escalationStartLevel ?? 1) : 0,
    approvals: review && a.approval ? a.approval.stages.reduce((n, s) => n + s.count, 0) : 0,
    rules: a.matchedRules.map((r) => r.name).filter((n) => !isServerHold(n)),
  };
}

function outcomeFacts(o: ReplayOutcome): Facts {
  if (!o.refused) return factsOf(o.assessment);
  return { route: 'refused', risk: 'refused', approvers: 'no review', stepUp: false, startLevel: 0, approvals: 0, rules: [] };
}

class Changes {
  private readonly map = new Map<string, { from: string; to: string; count: number; examples: ReplayExample[] }>();
  total = 0;
  add(from: string, to: string, example: Omit<ReplayExample, 'from' | 'to'>): void {
    this.total++;
    let key = `${from}\u0000${to}`;
    if (!this.map.has(key) && this.map.size >= MAX_KEYS) {
      key = '\u0000(other)';
      from = '(other)';
      to = '(other)';
    }
    let entry = this.map.get(key);
    if (!entry) this.map.set(key, (entry = { from, to, count: 0, examples: [] }));
    entry.count++;
    if (entry.examples.length < EXAMPLES) entry.examples.push({ ...example, from, to });
  }
  list(): ReplayChange[] {
    return [...this.map.values()].sort((a, b) => b.count - a.count || a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
  }
}

const zeroRoutes = <K extends string>(keys: readonly K[]): Record<K, number> => Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;

export class ReplayAccumulator {
  private scanned = 0;
  private replayed = 0;
  private skipped = 0;
  private changed = 0;
  private oldest: number | undefined;
  private readonly routesBefore = zeroRoutes<Route>(['auto_approve', 'review', 'block']);
  private readonly routesAfter = zeroRoutes<ReplayRoute>(REPLAY_ROUTES);
  private readonly riskBefore: Record<string, number> = zeroRoutes(RISK_LEVELS);
  private readonly riskAfter: Record<string, number> = { ...zeroRoutes(RISK_LEVELS), refused: 0 };
  private readonly routeChanges = new Changes();
  private readonly riskChanges = new Changes();
  private readonly approverChanges = new Changes();
  private readonly stepUpChanges = new Changes();
  private readonly startChanges = new Changes();
  private readonly load = { before: { reviews: 0, approvals: 0, stepUp: 0 }, after: { reviews: 0, approvals: 0, stepUp: 0 } };
  private readonly rules = new Map<string, { before: number; after: number }>();
  private checked = 0;
  private differed = 0;
  private unchecked = 0;
  private readonly differedExamples: ReplayExample[] = [];
  private inexactHistory = 0;
  private holds = 0;

  constructor(private readonly period: { readonly from: number; readonly to: number }) {}

  /** A request the replay does not judge (an aggregate review, which no agent files). */
  skip(createdAt: number): void {
    this.scanned++;
    this.skipped++;
    this.seen(createdAt);
  }

  /**
   * One stored request: `candidate` is its replay under the candidate policy, `baseline` under
   * the policy version that judged it (undefined when that version is not stored).
   */
  add(stored: StoredRequestInput, candidate: ReplayOutcome, baseline: ReplayOutcome | undefined): void {
    this.scanned++;
    this.replayed++;
    this.seen(stored.createdAt);
    const before = factsOf(stored.assessment);
    const after = outcomeFacts(candidate);
    const ex = { id: stored.id, agent: stored.agent, action: stored.action };
    if (!candidate.exactHistory) this.inexactHistory++;
    if (candidate.keptHold !== null) this.holds++;

    if (baseline === undefined) this.unchecked++;
    else {
      this.checked++;
      const b = outcomeFacts(baseline);
      if (b.route !== before.route || b.risk !== before.risk || b.approvers !== before.approvers || b.stepUp !== before.stepUp || b.startLevel !== before.startLevel) {
        this.differed++;
        if (this.differedExamples.length < EXAMPLES) this.differedExamples.push({ ...ex, from: describe(before), to: describe(b) });
      }
    }

    this.routesBefore[before.route as Route]++;
    this.routesAfter[after.route]++;
    this.riskBefore[before.risk] = (this.riskBefore[before.risk] ?? 0) + 1;
    this.riskAfter[after.risk] = (this.riskAfter[after.risk] ?? 0) + 1;
    let changed = false;
    if (before.route !== after.route) (changed = true), this.routeChanges.add(before.route, after.route, ex);
    // A refused create has no risk level: it shows under routes, not as a risk change.
    if (after.route !== 'refused' && before.risk !== after.risk) (changed = true), this.riskChanges.add(before.risk, after.risk, ex);
    if (before.route === 'review' && after.route === 'review') {
      if (before.approvers !== after.approvers) (changed = true), this.approverChanges.add(before.approvers, after.approvers, ex);
      if (before.stepUp !== after.stepUp) (changed = true), this.stepUpChanges.add(before.stepUp ? 'step-up' : 'no step-up', after.stepUp ? 'step-up' : 'no step-up', ex);
      if (before.startLevel !== after.startLevel) (changed = true), this.startChanges.add(`level ${before.startLevel}`, `level ${after.startLevel}`, ex);
    }
    if (changed) this.changed++;
    for (const [side, f] of [['before', before], ['after', after]] as const) {
      const l = this.load[side];
      if (f.route === 'review') {
        l.reviews++;
        l.approvals += f.approvals;
        if (f.stepUp) l.stepUp++;
      }
      for (const name of new Set(f.rules)) {
        let r = this.rules.get(name);
        if (!r) {
          if (this.rules.size >= MAX_RULES) continue;
          this.rules.set(name, (r = { before: 0, after: 0 }));
        }
        r[side]++;
      }
    }
  }

  report(options: { readonly limit: number; readonly limitReached: boolean }): ReplayReport {
    const coveredFrom = options.limitReached && this.oldest !== undefined ? this.oldest : this.period.from;
    const days = Math.max((this.period.to - coveredFrom) / DAY_MS, 1 / 24);
    const perDay = (l: { reviews: number; approvals: number; stepUp: number }): ReviewLoad => ({
      ...l,
      reviewsPerDay: round2(l.reviews / days),
      approvalsPerDay: round2(l.approvals / days),
    });
    const caveats: string[] = [
      'Creates that were refused before anything was stored (rate limits, a paused agent under whilePaused: refuse, args the policy of the day refused) are not in the history, so they are not replayed.',
      "Reviewers' decisions are not replayed: a request the candidate sends to review counts as review load, not as approved or rejected.",
      'Velocity, cool-down and slicing state are taken as they were; a candidate with other guard settings would have built them up differently.',
    ];
    if (this.holds > 0) caveats.push(`${this.holds} request(s) were held for review by server state at the time (an agent pause or a slicing hold); the replay keeps those holds.`);
    if (this.inexactHistory > 0) caveats.push(`${this.inexactHistory} request(s) did not record the agent history they were scored with and were replayed with none.`);
    if (this.unchecked > 0) caveats.push(`${this.unchecked} request(s) were judged by a policy version no longer stored, so their replay could not be checked against it.`);
    if (this.differed > 0) caveats.push(`${this.differed} request(s) do not reproduce under the policy that judged them (the evaluator changed since); their "before" is what happened then.`);
    if (options.limitReached) caveats.push(`The scan stopped at the limit of ${options.limit} requests (newest first); it covers ${iso(coveredFrom)} onwards.`);
    return {
      period: { from: iso(this.period.from), to: iso(this.period.to), coveredFrom: iso(coveredFrom), days: round2(days) },
      scanned: this.scanned,
      replayed: this.replayed,
      skipped: this.skipped,
      limit: options.limit,
      limitReached: options.limitReached,
      changed: this.changed,
      routes: { before: { ...this.routesBefore }, after: { ...this.routesAfter }, changes: this.routeChanges.list() },
      riskLevels: { before: { ...this.riskBefore }, after: { ...this.riskAfter }, changes: this.riskChanges.list() },
      approvers: { changes: this.approverChanges.list() },
      stepUp: { before: this.load.before.stepUp, after: this.load.after.stepUp, changes: this.stepUpChanges.list() },
      escalationStart: { changes: this.startChanges.list() },
      reviewLoad: { before: perDay(this.load.before), after: perDay(this.load.after) },
      rules: [...this.rules.entries()]
        .filter(([, r]) => r.before !== r.after)
        .map(([name, r]) => ({ name, ...r }))
        .sort((a, b) => Math.abs(b.after - b.before) - Math.abs(a.after - a.before) || a.name.localeCompare(b.name)),
      reproduced: { checked: this.checked, differed: this.differed, unchecked: this.unchecked, examples: [...this.differedExamples] },
      caveats,
    };
  }

  private seen(createdAt: number): void {
    if (this.oldest === undefined || createdAt < this.oldest) this.oldest = createdAt;
  }
}

function describe(f: Facts): string {
  return f.route === 'review' ? `review (${f.risk}; ${f.approvers}${f.stepUp ? '; step-up' : ''})` : `${f.route} (${f.risk})`;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;
const iso = (ms: number): string => new Date(ms).toISOString();

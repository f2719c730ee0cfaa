/**
 * Escalation of a pending request, as plain data and pure functions: where a request starts,
 * what happens when its current level times out, and what a reviewer's extension or
 * reassignment does. The clock is an input (`now`, epoch milliseconds); nothing here reads one.
 *
 * How a chain runs (policy `escalation.levels[]`, `levels.<risk>.sla`):
 *
 *   created ──► level s (startLevel, default 1): levels[s-1].notify are told; it may wait
 *               levels[s-1].after (`sla` = the request's SLA) for a decision
 *           ──► level s+1: new deadline levels[s].after, its role may now stand in, its channels
 *               are told … and so on to the last level
 *           ──► a `finalAuthority` level (the last, once the chain escalated into it): any one of
 *               its named operators or group members may decide alone (final-authority.ts)
 *           ──► last level times out: onFinalTimeout — `reject` (default) expires the request
 *               (fail closed); `approve` approves it with decidedBy `timeout`, only when both the
 *               policy that judged the request and the active policy say so explicitly, and no
 *               reviewer has voted to reject.
 *
 * A policy without escalation levels still has a deadline: the request waits its SLA at
 * "level 0" and then meets onFinalTimeout.
 */
import { CountersignError } from '../errors.ts';
import type { Policy } from '../policy/types.ts';
import type { Assessment, RiskLevel, Role } from '../schemas.ts';

/** One level of the chain, resolved for one request (`sla` already turned into milliseconds). */
export interface EscalationStep {
  /** Null when the level names only operators or groups. */
  readonly role: Role | null;
  /** How long the request may wait at this level before it escalates further. */
  readonly ms: number;
  readonly notify: readonly string[];
  /** The people the level names (absent in states stored before levels could name them). */
  readonly operators?: readonly string[];
  readonly groups?: readonly string[];
  /** The last level's members may decide alone (final-authority.ts). */
  readonly finalAuthority?: boolean;
}

/** What the judging policy said about this request's chain; kept with the request. */
export interface EscalationPlan {
  readonly steps: readonly EscalationStep[];
  /** The request's SLA (its risk level's, or the agent's shorter timeout). */
  readonly slaMs: number;
  readonly onFinalTimeout: 'reject' | 'approve';
  /** Channels the request's risk level names (`levels.<risk>.notify`): told at the start and of the outcome, besides the levels'. */
  readonly riskNotify?: readonly string[];
}

export interface Extension {
  readonly ms: number;
  readonly reason: string;
  readonly by: string;
  readonly at: number;
}

export interface Assignee {
  readonly operator?: string;
  readonly group?: string;
  /** The approval stage that was current when the reassignment was made: the only one it moves (issue 12, finding 4). */
  readonly stage?: number;
  readonly reason: string;
  readonly by: string;
  readonly at: number;
}

export interface EscalationState {
  /** 1-based level in `plan.steps`; 0 when the chain is empty. */
  readonly level: number;
  readonly startLevel: number;
  readonly enteredAt: number;
  /** When the current level times out (epoch ms). */
  readonly dueAt: number;
  /** The one extension a reviewer may grant, once granted. */
  readonly extension: Extension | null;
  readonly assignee: Assignee | null;
  readonly plan: EscalationPlan;
  /** Operator ids who escalated it by hand (`escalateNow`): none of them may decide it as a final authority. */
  readonly escalatedBy?: readonly string[];
  /** The latest escalation by hand: who (operator id), when, and the move (`repeatedEscalation`). */
  readonly lastManual?: ManualEscalation;
  /** The latest cool-down that moved (or, at the last level, stranded) it (gate/cooldown-escalation.ts): a re-run of the same one changes nothing. */
  readonly lastCooldown?: CooldownMove;
  /**
   * The keys of every cool-down that has moved or stranded it (the newest COOLDOWN_KEYS_KEPT), so a
   * re-run of an earlier one is still recognised after another cool-down touched the request.
   */
  readonly cooldownKeys?: readonly string[];
}

/** How many cool-down keys a request's escalation state remembers (`cooldownKeys`). */
export const COOLDOWN_KEYS_KEPT = 64;

export interface CooldownMove {
  /** The cool-down's key (the operator and when it started). */
  readonly key: string;
  /** The operator id whose cool-down it was. */
  readonly operator: string;
  readonly at: number;
  readonly from: number;
  /** Equal to `from` when the level could not escalate (the last level, a final authority). */
  readonly to: number;
}

export interface ManualEscalation {
  readonly by: string;
  readonly at: number;
  readonly from: number;
  readonly to: number;
}

/**
 * How long an operator's escalation without `fromLevel` counts as a repeat of their previous one
 * on the same request (a double click, a retried call): answered as that escalation, no second
 * level jump. Whoever means to go up two levels in a minute says from where (`fromLevel`).
 */
export const ESCALATION_REPEAT_MS = 60_000;

/** Longest extension anyone may grant, whatever the level's own period. */
export const MAX_EXTENSION_MS = 24 * 3_600_000;

export function planOf(policy: Policy, slaMs: number, riskLevel?: RiskLevel): EscalationPlan {
  const riskNotify = riskLevel === undefined ? [] : (policy.levels[riskLevel].notify ?? []);
  return {
    steps: policy.escalation.levels.map((l) => ({
      role: l.role,
      ms: l.after === 'sla' ? slaMs : l.after,
      notify: [...l.notify],
      ...(l.operators.length > 0 ? { operators: [...l.operators] } : {}),
      ...(l.groups.length > 0 ? { groups: [...l.groups] } : {}),
      ...(l.finalAuthority ? { finalAuthority: true } : {}),
    })),
    slaMs,
    onFinalTimeout: policy.escalation.onFinalTimeout,
    ...(riskNotify.length > 0 ? { riskNotify: [...riskNotify] } : {}),
  };
}

function periodOf(plan: EscalationPlan, level: number): number {
  return level === 0 ? plan.slaMs : (plan.steps[level - 1]?.ms ?? plan.slaMs);
}

/**
 * Where a request that goes to review starts, or null when it does not wait for anyone
 * (decided by policy at creation). A start above level 1 (`startLevel`) waits there for that
 * level's period — except under `onFinalTimeout: approve`, where it waits the periods of the
 * levels it skipped as well: starting higher never brings approval by silence sooner (an agent
 * raising its own risk hint to reach a start level cannot hurry its way to a timeout approval).
 */
export function startEscalation(policy: Policy, assessment: Assessment, createdAt: number): EscalationState | null {
  if (assessment.route !== 'review' || assessment.slaSeconds === null) return null;
  const plan = planOf(policy, assessment.slaSeconds * 1000, assessment.riskLevel);
  const wanted = assessment.escalationStartLevel ?? 1;
  const level = plan.steps.length === 0 ? 0 : Math.min(Math.max(wanted, 1), plan.steps.length);
  let wait = periodOf(plan, level);
  if (plan.onFinalTimeout === 'approve') for (let skipped = 1; skipped < level; skipped++) wait += periodOf(plan, skipped);
  return { level, startLevel: level, enteredAt: createdAt, dueAt: createdAt + wait, extension: null, assignee: null, plan };
}

/** Channels told when a request enters `level` (none for level 0). */
export function channelsFor(state: Pick<EscalationState, 'plan'>, level: number): readonly string[] {
  return level === 0 ? [] : (state.plan.steps[level - 1]?.notify ?? []);
}

/** Channels told when the request is created: its start level's and its risk level's (`levels.<risk>.notify`), each once. */
export function channelsAtStart(state: Pick<EscalationState, 'plan' | 'startLevel'>): string[] {
  return [...new Set([...channelsFor(state, state.startLevel), ...(state.plan.riskNotify ?? [])])];
}

/**
 * Why a request started above level 1 (a rule's or its risk level's `startLevel`), or null: the
 * start is audited as an `escalated` entry with reason `critical` and counted as one.
 */
export function startedHigher(state: EscalationState): Extract<DueOutcome, { type: 'escalate' }> | null {
  if (state.startLevel <= 1) return null;
  const step = state.plan.steps[state.startLevel - 1];
  if (!step) return null;
  return { type: 'escalate', from: 1, to: state.startLevel, role: step.role, notify: channelsAtStart(state), state };
}

/** Every channel told about this request so far, each once: who should hear how it ended. */
export function channelsSoFar(state: EscalationState): string[] {
  const names = new Set<string>(state.plan.riskNotify ?? []);
  for (let level = state.startLevel; level <= state.level; level++) for (const c of channelsFor(state, level)) names.add(c);
  return [...names];
}

export function roleAt(state: Pick<EscalationState, 'plan' | 'level'>): Role | null {
  return state.level === 0 ? null : (state.plan.steps[state.level - 1]?.role ?? null);
}

export type DueOutcome =
  | { type: 'escalate'; from: number; to: number; role: Role | null; state: EscalationState; notify: readonly string[] }
  | { type: 'final'; outcome: 'approve' | 'reject'; level: number; reason: string };

/**
 * What happens when the current level's deadline passes. `activePolicy` is the policy running
 * now: approval by timeout needs it to agree with the judging policy (fail closed on a change
 * of mind). A late tick (the server was down) still moves one level, and the new deadline runs
 * from `now`, so a restart never cascades a request through its whole chain at once.
 */
export function onDue(state: EscalationState, activePolicy: Policy, now: number): DueOutcome {
  const up = nextLevel(state, now);
  if (up) return up;
  const last = roleAt(state);
  const final = state.plan.steps[state.level - 1]?.finalAuthority === true ? 'final authority' : null;
  const label = [last, final].filter(Boolean).join(', ');
  const where = state.level === 0 ? 'within its SLA' : `by the end of escalation level ${state.level}${label ? ` (${label})` : ''}`;
  const approve = state.plan.onFinalTimeout === 'approve' && activePolicy.escalation.onFinalTimeout === 'approve';
  const why =
    state.plan.onFinalTimeout === 'approve' && !approve
      ? 'onFinalTimeout: approve was withdrawn by the active policy, so it expires'
      : `onFinalTimeout: ${approve ? 'approve' : 'reject'}`;
  return { type: 'final', outcome: approve ? 'approve' : 'reject', level: state.level, reason: `no decision ${where}; ${why}` };
}

/** The move up one level that a timeout, a reviewer's escalation and a cool-down share, or null at the end of the chain. */
export function nextLevel(state: EscalationState, now: number): Extract<DueOutcome, { type: 'escalate' }> | null {
  const next = state.level + 1;
  const step = state.plan.steps[next - 1];
  // A final-authority level never escalates further (load.ts keeps it last; a stored plan is checked too).
  if (state.level === 0 || !step || state.plan.steps[state.level - 1]?.finalAuthority === true) return null;
  return { type: 'escalate', from: state.level, to: next, role: step.role, notify: step.notify, state: { ...state, level: next, enteredAt: now, dueAt: now + step.ms } };
}

/** Longest reason a reviewer may give for escalating now. */
export const MAX_ESCALATION_REASON = 500;

/**
 * A reviewer escalates now: the same move up one level as a timeout (`onDue`), with the next
 * level's deadline from `now`. It never decides the request: at the last level (or without a
 * chain) it is refused. `fromLevel`, when given, is the level the reviewer saw: if the request
 * has moved on since (a timeout, another reviewer), it is refused, so two escalations made at
 * once move one level. Who may do this is the caller's check (the gate's eligibility now).
 */
export function escalateNow(state: EscalationState, reason: string, now: number, fromLevel?: number, by?: string): Extract<DueOutcome, { type: 'escalate' }> {
  checkEscalationReason(reason);
  if (fromLevel !== undefined && fromLevel !== state.level) {
    throw new CountersignError('ILLEGAL_TRANSITION', `the request is at escalation level ${state.level} now, not ${fromLevel}: it has already moved on`, {
      reason: 'level_changed',
      level: state.level,
    });
  }
  const up = nextLevel(state, now);
  if (!up) {
    const fa = state.plan.steps[state.level - 1]?.finalAuthority === true;
    const last = state.level === 0 ? 'it has no escalation chain' : `level ${state.level} of ${state.plan.steps.length} is the last${fa ? ' (final authority)' : ''}`;
    throw new CountersignError('ILLEGAL_TRANSITION', `cannot escalate: ${last}; decide it, extend it or reassign it`, {
      reason: 'last_level',
      level: state.level,
      levels: state.plan.steps.length,
    });
  }
  if (by === undefined) return up;
  // Whoever escalates by hand may never decide it alone as a final authority (final-authority.ts).
  const escalatedBy = [...new Set([...(state.escalatedBy ?? []), by])];
  return { ...up, state: { ...up.state, escalatedBy, lastManual: { by, at: now, from: up.from, to: up.to } } };
}

/** A reason for escalating now: one line of 1 to MAX_ESCALATION_REASON characters, else VALIDATION_FAILED. */
export function checkEscalationReason(reason: string): void {
  if (reason.trim() === '' || reason.length > MAX_ESCALATION_REASON || /[\r\n\u2028\u2029]/.test(reason)) {
    throw new CountersignError('VALIDATION_FAILED', `an escalation needs a reason: one line of 1 to ${MAX_ESCALATION_REASON} characters`, { field: 'reason' });
  }
}

/**
 * The operator's own previous escalation of this request when this one repeats it: no
 * `fromLevel`, the same operator, less than ESCALATION_REPEAT_MS since (a clock behind the one
 * that wrote it counts as since). The caller answers with the request as it is and moves nothing.
 */
export function repeatedEscalation(state: EscalationState, by: string, now: number, fromLevel?: number): ManualEscalation | null {
  const last = state.lastManual;
  if (fromLevel !== undefined || last === undefined || last.by !== by) return null;
  return now - last.at < ESCALATION_REPEAT_MS ? last : null;
}

/**
 * When the escalation timer should fire, or null when the agent's own hard deadline comes
 * first (that deadline expires the request; escalating at the same instant would only add noise).
 */
export function escalationTimerAt(state: EscalationState, expiresAt: number | null): number | null {
  return expiresAt !== null && expiresAt <= state.dueAt ? null : state.dueAt;
}

/** The longest extension of the current level: its own period, at most a day. */
export function maxExtensionMs(state: EscalationState): number {
  return Math.min(periodOf(state.plan, state.level), MAX_EXTENSION_MS);
}

/** A reviewer grants more time, once per request, by at most `maxExtensionMs`, with a reason. */
export function extend(state: EscalationState, ms: number, reason: string, by: string, now: number): EscalationState {
  if (state.extension) {
    throw new CountersignError('ALREADY_EXTENDED', `the deadline was already extended once, by ${state.extension.by}`, {
      extension: { ...state.extension, at: new Date(state.extension.at).toISOString() },
    });
  }
  const max = maxExtensionMs(state);
  if (!Number.isFinite(ms) || ms < 1000 || ms > max) {
    throw new CountersignError('VALIDATION_FAILED', `an extension is 1s to ${Math.floor(max / 1000)}s at this level`, {
      field: 'by',
      maxSeconds: Math.floor(max / 1000),
    });
  }
  if (!reason.trim()) throw new CountersignError('VALIDATION_FAILED', 'an extension needs a reason', { field: 'reason' });
  return { ...state, dueAt: Math.max(state.dueAt, now) + ms, extension: { ms, reason, by, at: now } };
}

/**
 * Hands the request to another reviewer or group at the current stage (`stage`, its index): the
 * gate lets them sign that stage only, and never one that names operators or a group.
 */
export function reassign(
  state: EscalationState,
  to: { operator?: string | undefined; group?: string | undefined },
  reason: string,
  by: string,
  now: number,
  stage?: number,
): EscalationState {
  if ((to.operator === undefined) === (to.group === undefined)) {
    throw new CountersignError('VALIDATION_FAILED', 'reassign to one operator or one group', { field: 'to' });
  }
  if (!reason.trim()) throw new CountersignError('VALIDATION_FAILED', 'a reassignment needs a reason', { field: 'reason' });
  const target = to.operator !== undefined ? { operator: to.operator } : { group: to.group as string };
  return { ...state, assignee: { ...target, reason, by, at: now, ...(stage !== undefined ? { stage } : {}) } };
}

/** The API's view of the state (`ApprovalRequest.escalation`). */
export function publicEscalation(state: EscalationState) {
  const assignee = state.assignee;
  const step = state.level === 0 ? undefined : state.plan.steps[state.level - 1];
  return {
    level: state.level,
    levels: state.plan.steps.length,
    role: roleAt(state),
    operators: [...(step?.operators ?? [])],
    groups: [...(step?.groups ?? [])],
    // In force only once the chain has escalated into it (a request that starts there is decided by its quorum).
    finalAuthority: step?.finalAuthority === true && state.level > state.startLevel,
    dueAt: new Date(state.dueAt).toISOString(),
    extended: state.extension !== null,
    assignee: assignee ? (assignee.operator !== undefined ? { operator: assignee.operator } : { group: assignee.group as string }) : null,
    onFinalTimeout: state.plan.onFinalTimeout,
  };
}

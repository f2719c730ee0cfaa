/**
 * Escalation by cool-down (issue 18): when an operator enters a cool-down (automatic, from their
 * approval velocity, or set by a lead), a pending request that this leaves with nobody able to
 * approve it at its current level moves up one level at once (`reason: cooldown`). Pure: the
 * shell gathers the facts (the request as the gate sees it, the payload that would run, every
 * active operator and whether a cool-down applies to them now) and does what this says.
 *
 * **Eligible** means exactly: the gate's cheap checks (`precheck`: state, identity, separation,
 * aggregate/pause) pass for a plain approval of the payload that would run now, by that operator,
 * at the request's current level. So it is the gate's own rule, nothing looser:
 *
 * - identity: a reviewing role and eligible for the stage the payload waits on (gate
 *   eligibility.ts: a stage's role or more senior, its group's members, the operators it names;
 *   the current level's role standing in for role stages once escalated into; a reassignee only
 *   at the stage they were given) — or a final authority at a final-authority level;
 * - separation: not the requester (SELF_REVIEW), for an admin change one of its independent
 *   signers, and not someone who already voted (a rejection, or an approval in this round);
 * - aggregate: a member of an aggregate review, a paused or disabled agent's request, has no
 *   eligible approver at all: nobody's cool-down strands it, so nothing moves.
 *
 * What is NOT part of eligibility: IP allowlists, step-up enrolment and velocity limits (they
 * change with where and how someone approves, not who may; velocity frees itself within the
 * hour). An escalation level's `operators`/`groups` widen who is told, not who may sign (except
 * a final authority), so they do not narrow eligibility either: a level that names alice over a
 * role stage is not stranded while another operator of that role is free.
 *
 * **Stranded by this cool-down** means: the cool-down applies to the payload's risk level
 * (`guard.cooldown.riskLevels`; never with limits off), the operator who cools was eligible, and
 * every eligible operator is cooling down. Then:
 *
 * - below the last level: escalate one level (core `nextLevel`, the move a timeout makes), and
 *   record the cooling operator — and the lead who set a manual cool-down — in `escalatedBy`, so
 *   neither can decide it alone as a final authority afterwards;
 * - at the last level or a final-authority level (which never escalates): `stranded` — it stays
 *   pending, its level's channels are told; never approved, its deadline still applies;
 * - a manual cool-down moves a request INTO a final-authority level only if the lead who set it
 *   may review the request now (the rule for escalating by hand); otherwise `stranded` at its
 *   level: a lead cannot hand a request they may not touch to one person by cooling its reviewers;
 * - a repeat changes nothing: the same cool-down again (`lastCooldown.key`, a re-run after a
 *   crash or on a second server, also for a stranded notice), or — for a move — any escalation
 *   of the request less than ESCALATION_REPEAT_MS ago (a timeout, a reviewer, another cool-down:
 *   two cool-downs in the same minute move one level, not two, so no cascade up the chain).
 *
 * Any doubt (the gate throws, the operator is unknown) is `none`: the request keeps waiting for
 * its deadline (fail closed: a cool-down never brings a request nearer a decision by one person).
 */
import { payloadKey } from '../canonical.ts';
import { COOLDOWN_KEYS_KEPT, ESCALATION_REPEAT_MS, nextLevel, type CooldownMove, type DueOutcome, type EscalationState } from '../escalation/state.ts';
import type { Reviewer } from '../lifecycle.ts';
import type { RiskLevel } from '../schemas.ts';
import { precheck, type GatePayload, type GateRequest } from './gate.ts';
import { payloadRequirement } from './requirements.ts';

export interface CooldownCandidate {
  readonly reviewer: Reviewer;
  /** A cool-down (automatic or manual) is running for them now (core `cooldownState(...).active`). */
  readonly coolingDown: boolean;
}

export interface CooldownEscalationInput {
  /** The request as the gate sees it, its `escalation` built from `state` and the policy running now. */
  readonly request: GateRequest;
  /** The payload that would run now (the round's), with its own assessment when it is not the original. */
  readonly payload: GatePayload;
  readonly state: EscalationState;
  /** The operator id entering the cool-down. */
  readonly cooled: string;
  /** The cool-down's key: the same key judged twice moves nothing the second time. */
  readonly key: string;
  /** The lead who set a manual cool-down (operator id), absent for an automatic one. */
  readonly setBy?: string;
  /** Every active operator (the cooled one included). */
  readonly candidates: readonly CooldownCandidate[];
  /** `guard.cooldown.riskLevels` of the policy that judges votes on this request. */
  readonly riskLevels: readonly RiskLevel[];
  /** `COUNTERSIGN_REVIEWER_LIMITS=off`: cool-downs refuse nothing, so they strand nothing. */
  readonly limitsOff?: boolean;
  readonly now: number;
}

export type CooldownEscalation =
  | { readonly type: 'escalate'; readonly up: Extract<DueOutcome, { type: 'escalate' }>; readonly eligible: readonly string[] }
  | { readonly type: 'stranded'; readonly level: number; readonly state: EscalationState; readonly eligible: readonly string[] }
  | { readonly type: 'none'; readonly why: 'limits_off' | 'risk_level' | 'not_eligible' | 'free_reviewer' | 'same_cooldown' | 'repeat' | 'doubt' };

/** Whether the gate's cheap checks let this reviewer approve the payload now (limits, IP and step-up aside). */
export function mayApproveNow(request: GateRequest, payload: GatePayload, reviewer: Reviewer, now: number): boolean {
  try {
    const vote = { verdict: 'approve' as const, seenPayloadKey: payload.key, totp: 'absent' as const, matchCode: 'absent' as const, at: new Date(now).toISOString() };
    const guard = { now, ip: { allowed: true as const }, approvals: [], manualCooldown: null, velocity: { perHour: 0, perDay: 0, riskLevels: [] }, cooldown: { threshold: 0, windowMinutes: 0, durationMinutes: 0, riskLevels: [] } };
    return precheck({ request, payload, reviewer, vote, guard }) === null;
  } catch {
    return false;
  }
}

/** What entering a cool-down does to one pending request (see the module's comment). */
export function cooldownEscalation(input: CooldownEscalationInput): CooldownEscalation {
  const { request, payload, state, now } = input;
  if (input.limitsOff === true) return { type: 'none', why: 'limits_off' };
  let risk: RiskLevel;
  try {
    // As the gate computes it (gate.ts contextOf): the union of the original's and the payload's own.
    const modified = payload.key !== payloadKey(request.action, request.args);
    risk = payloadRequirement(request.assessment, modified || payload.rechecked === true ? payload.assessment : null, modified).riskLevel;
  } catch {
    return { type: 'none', why: 'doubt' };
  }
  if (!input.riskLevels.includes(risk)) return { type: 'none', why: 'risk_level' };
  const eligible = input.candidates.filter((c) => mayApproveNow(request, payload, c.reviewer, now));
  const cooled = eligible.find((c) => c.reviewer.id === input.cooled);
  if (cooled === undefined || !cooled.coolingDown) return { type: 'none', why: 'not_eligible' };
  if (eligible.some((c) => !c.coolingDown)) return { type: 'none', why: 'free_reviewer' };
  if (state.lastCooldown?.key === input.key || state.cooldownKeys?.includes(input.key) === true) return { type: 'none', why: 'same_cooldown' };
  const cooldownKeys = [...(state.cooldownKeys ?? []).filter((k) => k !== input.key), input.key].slice(-COOLDOWN_KEYS_KEPT);
  const names = eligible.map((c) => c.reviewer.name);
  const up = nextLevel(state, now);
  const move = (from: number, to: number): CooldownMove => ({ key: input.key, operator: input.cooled, at: now, from, to });
  const stranded = { type: 'stranded' as const, level: state.level, state: { ...state, lastCooldown: move(state.level, state.level), cooldownKeys }, eligible: names };
  if (up === null) return stranded;
  // A lead's manual cool-down carries a request into a final-authority level only if the lead may review it now
  // (as escalating by hand requires): otherwise cooling its reviewers would let a lead who may not touch it
  // hand it to one person. It is stranded at its level instead (told, never approved).
  const intoFinal = state.plan.steps[up.to - 1]?.finalAuthority === true;
  if (intoFinal && input.setBy !== undefined && !input.candidates.some((c) => c.reviewer.id === input.setBy && mayApproveNow(request, payload, c.reviewer, now))) return stranded;
  // Any move up in the last minute (a timeout, a reviewer, another cool-down; a clock behind counts as since): no second jump.
  if (state.level > state.startLevel && now - state.enteredAt < ESCALATION_REPEAT_MS) return { type: 'none', why: 'repeat' };
  const escalatedBy = [...new Set([...(state.escalatedBy ?? []), input.cooled, ...(input.setBy !== undefined ? [input.setBy] : [])])];
  return { type: 'escalate', up: { ...up, state: { ...up.state, escalatedBy, lastCooldown: move(up.from, up.to), cooldownKeys } }, eligible: names };
}

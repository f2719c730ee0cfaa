/**
 * The one gate: may this reviewer cast this vote on this request now, for the payload that will
 * actually run, and what does the vote do? One ordered list of pure checks over facts the
 * engine gathers (the request, the payload and its own assessment, the reviewer, the vote's
 * step-up facts, the guard's facts), answering with the exact `CountersignError` or with what
 * to record. Every path that decides (HTTP, CLI, dashboard, Slack, scheduler, aggregates) goes
 * through `gate`; `dryRun` is the same list for `actionable`, so the queue never offers what the
 * server will refuse.
 *
 * First the payload's requirements are computed (requirements.ts: the union of the request's
 * and the payload's own), then the checks run in this order, the first refusal wins:
 *
 *   state        pending, and the payload the reviewer saw is still the one they approve
 *   identity     a reviewing role, and eligible for the stage the payload waits on (eligibility.ts)
 *   separation   not their own request (SELF_REVIEW, before any step-up), one vote per round
 *   aggregate    not a member of an aggregate review, its agent not paused nor disabled (approvals only)
 *   ip           inside every allowlist that applies (approvals only)
 *   limits       cool-down, then velocity, at the payload's risk level (approvals only)
 *   stepUp       TOTP when either side needs MFA, the match code when either is critical
 *   requirements the payload is not blocked (any block wins)
 *
 * Rounds: a vote that proposes another payload (modified args, an alternative) starts a new
 * round, and only approvals of the round's payload cast in the round count — earlier approvals
 * were for other args (issue 12, finding 3). Rejections count across rounds.
 *
 * Counters are recorded only when a vote is accepted (`record`): a refused vote, a wrong code
 * or a blocked payload never uses a velocity slot or a TOTP step.
 */
import { canonicalJson, payloadKey } from '../canonical.ts';
import { CountersignError } from '../errors.ts';
import { approverVelocity, cooldownState, type ApprovalRecord, type ApproverLimits, type CooldownConfig, type CooldownState } from '../guard/velocity.ts';
import { alternativeNames, canReviewAtAll, type Reviewer, type Vote } from '../lifecycle.ts';
import type { Alternative, ApprovalStage, Assessment, Decision, JsonObject, Role, Verdict } from '../schemas.ts';
import type { ClaimableStatus } from './claim.ts';
import { stageEligible, type GateEscalation } from './eligibility.ts';
import { isFinalAuthority } from '../escalation/final-authority.ts';
import { payloadRequirement, type PayloadRequirement } from './requirements.ts';

export interface GateRequest {
  readonly id: string;
  readonly status: ClaimableStatus;
  readonly action: string;
  readonly args: JsonObject;
  readonly alternatives: readonly Alternative[];
  /** The request's stored assessment (as asked). */
  readonly assessment: Assessment;
  readonly votes: readonly Vote[];
  readonly requesterOperatorId: string | null;
  /** This request is an aggregate review (`countersign.aggregate`): approved or rejected as a whole. */
  readonly isAggregate: boolean;
  /** This request is an admin change (`countersign.agent_config`, admin-change.ts): approved exactly as asked, never by a clock. */
  readonly isAdminChange?: boolean;
  /**
   * For an admin change: the ids who may sign it now (core admin-change.ts `adminChangeSigners`,
   * the proposal's list less anyone who has since come into the same hands). Missing: nobody.
   */
  readonly adminSigners?: readonly string[] | null;
  /** This request belongs to an aggregate review: it is decided there. */
  readonly aggregated: { readonly aggregateId: string | null; readonly collectingUntil: string | null } | null;
  readonly agentPaused: { readonly until: string; readonly reason: string } | null;
  /**
   * The agent's policy as it applies now (the file with its overlay) says `enabled: false`: its
   * pending requests can be rejected, never approved (review2 F2). The shell reads it from the
   * same policy the vote is judged by.
   */
  readonly agentDisabled: boolean;
  readonly escalation: GateEscalation | null;
}

/** The payload a vote approves: as asked, an alternative, or a reviewer's modification, with its own assessment. */
export interface GatePayload {
  readonly action: string;
  readonly args: JsonObject;
  readonly alternative: string | null;
  /** `payloadKey(action, args)`. */
  readonly key: string;
  /** Its own full policy evaluation (`assessPayload`); null only for the request as asked. */
  readonly assessment: Assessment | null;
  /**
   * The request as asked, re-assessed at the vote because the governance pre-checks judged it
   * again (a validator changed since create: F1): its assessment then joins the requirement too.
   */
  readonly rechecked?: boolean;
}

/** What the shell found when it checked a code: it verifies (the secret is I/O), the gate decides. */
export type StepUpFact = 'absent' | 'valid' | 'invalid' | 'replayed' | 'not_enrolled';

export interface GateVote {
  readonly verdict: Verdict;
  readonly reason?: string | undefined;
  /** The vote proposes these args (a modification) or this alternative; otherwise it approves the current payload. */
  readonly args?: JsonObject | undefined;
  readonly alternative?: string | undefined;
  /**
   * The payload key the approve surface showed; when it is not the one the vote would approve, the
   * vote is refused. Every approve surface must send it: a plain approval without it is refused
   * (PAYLOAD_CHANGED) as soon as the round's payload is not the original.
   */
  readonly seenPayloadKey?: string | undefined;
  readonly totp: StepUpFact;
  /**
   * The WebAuthn assertion, verified by the shell against this request, the payload this vote
   * approves and this verdict (`replayed`: its challenge was used, expired, or made for another
   * approval; `invalid` also covers a bad signature, origin, rpId or a sign counter gone back).
   * Absent for votes that carry none.
   */
  readonly webauthn?: StepUpFact;
  readonly matchCode: 'absent' | 'valid' | 'invalid';
  /** ISO time of the vote. */
  readonly at: string;
}

export type IpFact =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      readonly ip: string | null;
      readonly refusedBy: readonly ({ readonly operator: string } | { readonly role: Role })[];
      /** Each refusing list as a person reads it (`operator nora (10.0.0.0/8)`), for the message. */
      readonly lists?: readonly string[];
    };

export interface GuardFacts {
  /** Epoch ms, the same instant as the vote. */
  readonly now: number;
  readonly ip: IpFact;
  /** The reviewer's approvals in the last day (or the counters' equivalent). */
  readonly approvals: readonly ApprovalRecord[];
  readonly manualCooldown: { readonly until: number; readonly reason: string } | null;
  readonly velocity: ApproverLimits;
  readonly cooldown: CooldownConfig;
  /** `COUNTERSIGN_REVIEWER_LIMITS=off`. */
  readonly limitsOff?: boolean;
}

export interface GateInput {
  readonly request: GateRequest;
  readonly payload: GatePayload;
  readonly reviewer: Reviewer;
  readonly vote: GateVote;
  readonly guard: GuardFacts;
}

/** Facts the checks share, computed once. */
export interface GateContext extends GateInput {
  readonly requirement: PayloadRequirement;
  readonly modified: boolean;
  /** The vote would start a new round (its payload is not the round's). */
  readonly restart: boolean;
  /** Approvals that count for the payload (this round's, unless the vote restarts). */
  readonly counted: readonly Vote[];
  /** Stage the vote would fill, or the stage a rejection is judged at. */
  readonly stageIndex: number;
  readonly stage: ApprovalStage;
  /** When `dryRun` asks: step-up facts are not known yet, so stepUp passes. */
  readonly dry: boolean;
  /**
   * The reviewer decides alone as the final authority (escalation/final-authority.ts): at that
   * level, named by it, not its escalator, not an admin change, and not proposing a payload of
   * their own. Every other check still applies.
   */
  readonly finalAuthority: boolean;
}

export interface GateCheck {
  readonly name: 'state' | 'identity' | 'separation' | 'aggregate' | 'ip' | 'limits' | 'stepUp' | 'requirements';
  readonly check: (ctx: GateContext) => CountersignError | null;
}

export interface GateRecord {
  /** The approval to count towards velocity and cool-down (approvals only). */
  readonly approval: ApprovalRecord | null;
  /** Mark the TOTP step used (conditionally, in the same transaction; a lost race is MFA_INVALID). */
  readonly totpStep: boolean;
  /** The step-up factor this approval was accepted with (audited); null when none was needed. */
  readonly factor: 'totp' | 'webauthn' | null;
  /** This approval starts an automatic cool-down (audit `cooldown_started`, a guard notice). */
  readonly cooldownStarted: CooldownState | null;
}

export type GateResult =
  | {
      readonly ok: true;
      readonly vote: Vote;
      readonly status: 'pending' | 'approved' | 'rejected';
      readonly kinds: readonly ('reviewed' | 'approved' | 'rejected')[];
      readonly decision: Decision | null;
      readonly requirement: PayloadRequirement;
      /** Approvals per stage for the payload after this vote. */
      readonly progress: readonly number[];
      readonly record: GateRecord;
      /** The vote decided alone as the final authority at this escalation level (audited), or null. */
      readonly finalAuthority: { readonly level: number } | null;
    }
  | { readonly ok: false; readonly error: CountersignError; readonly check: GateCheck['name'] };

const err = (code: ConstructorParameters<typeof CountersignError>[0], message: string, details?: unknown) => new CountersignError(code, message, details);
const approving = (ctx: GateContext) => ctx.vote.verdict === 'approve';

/** The round the request is in: the payload key of its latest proposal and the approvals cast for it since. */
export function currentRound(request: Pick<GateRequest, 'action' | 'args' | 'votes'>): { key: string; votes: Vote[] } {
  let key = payloadKey(request.action, request.args);
  let votes: Vote[] = [];
  for (const v of request.votes) {
    if (v.verdict !== 'approve' || v.payloadKey === null) continue;
    if (v.payloadKey !== key) {
      key = v.payloadKey;
      votes = [];
    }
    votes.push(v);
  }
  return { key, votes };
}

/**
 * The payload a vote approves, before its assessment: an alternative by name, modified args,
 * else the round's payload (a plain approval approves what is current, and must have been shown it).
 * Throws UNKNOWN_ALTERNATIVE; the shell evaluates the payload (`assessPayload`) when it is not the original.
 */
export function resolvePayload(
  request: Pick<GateRequest, 'action' | 'args' | 'alternatives' | 'votes'>,
  vote: Pick<GateVote, 'args' | 'alternative'>,
): Omit<GatePayload, 'assessment'> {
  if (vote.alternative !== undefined) {
    const alt = request.alternatives.find((a) => a.name === vote.alternative);
    if (!alt) throw err('UNKNOWN_ALTERNATIVE', `no alternative named "${vote.alternative}"; ${alternativeNames(request.alternatives)}`, { alternatives: request.alternatives.map((a) => a.name) });
    return { action: alt.action, args: alt.args, alternative: alt.name, key: payloadKey(alt.action, alt.args) };
  }
  if (vote.args !== undefined) return { action: request.action, args: vote.args, alternative: null, key: payloadKey(request.action, vote.args) };
  const round = currentRound(request);
  for (let i = request.votes.length - 1; i >= 0; i--) {
    const v = request.votes[i]!;
    if (v.verdict === 'approve' && v.payloadKey === round.key && (v.args !== null || v.alternative !== null)) {
      const p = resolvePayload(request, { args: v.args ?? undefined, alternative: v.alternative ?? undefined });
      if (p.key === round.key) return p;
    }
  }
  return { action: request.action, args: request.args, alternative: null, key: payloadKey(request.action, request.args) };
}

/** A stage's identity: who it asks for (role, group or named operators), not its count or label. */
export function stageKeyOf(stage: ApprovalStage): string {
  return canonicalJson({ role: stage.role ?? null, group: stage.group ?? null, operators: stage.operators ?? null });
}

/**
 * Approvals counted per stage. A vote counts towards the stage it was cast for only while that
 * index still holds the same stage (`stageKey`); after a policy reload reorders or replaces the
 * stages, it counts towards none (fail closed: the stage is signed again).
 */
export function stageProgressOf(stages: readonly ApprovalStage[], votes: readonly Vote[]): number[] {
  const counts = stages.map(() => 0);
  for (const v of votes) if (countsFor(stages, v)) counts[v.stage!] = (counts[v.stage!] ?? 0) + 1;
  return counts;
}

/**
 * Whether a vote counts towards its stage: cast for an index that still holds the same stage. A
 * stored vote with no stage key (cast before migration 009_gate, `stage_key` NULL) counts
 * towards none: which stage it signed cannot be known once the policy may have changed, so that
 * stage is signed again (fail closed). Only an in-memory vote (key undefined) counts by index.
 */
function countsFor(stages: readonly ApprovalStage[], v: Vote): boolean {
  if (v.stage === null || v.stage >= stages.length) return false;
  return v.stageKey === undefined || v.stageKey === stageKeyOf(stages[v.stage]!);
}

function firstUnmet(stages: readonly ApprovalStage[], counts: readonly number[]): number {
  return stages.findIndex((s, i) => (counts[i] ?? 0) < s.count);
}

/** The ordered checks. Exported so tests can run the gate with any one removed. */
export const GATE_CHECKS: readonly GateCheck[] = Object.freeze([
  {
    name: 'state',
    check: (ctx) => {
      const { request, vote, payload } = ctx;
      if (request.status !== 'pending') return err('ALREADY_DECIDED', `request is already ${request.status}`, { status: request.status });
      // A plain approval of a round whose payload is not the original must say what it was
      // shown: otherwise B's approve from an old card completes the quorum on A's modified args.
      // Every approve surface (HTTP, CLI, dashboard, notification links) must send seenPayloadKey.
      const plain = vote.args === undefined && vote.alternative === undefined;
      if (approving(ctx) && plain && vote.seenPayloadKey === undefined && payload.key !== payloadKey(request.action, request.args)) {
        return err('PAYLOAD_CHANGED', 'the arguments that would run were changed since the request was made; read the request again and approve with the seenPayloadKey you were shown', {
          shown: null,
          current: payload.key,
        });
      }
      if (approving(ctx) && vote.seenPayloadKey !== undefined && vote.seenPayloadKey !== payload.key) {
        return err('PAYLOAD_CHANGED', 'the arguments that would run are not the ones you were shown; read the request again', {
          shown: vote.seenPayloadKey,
          current: payload.key,
        });
      }
      return null;
    },
  },
  {
    name: 'identity',
    check: (ctx) => {
      const { reviewer, stage, stageIndex, request } = ctx;
      if (!canReviewAtAll(reviewer)) return err('NOT_ELIGIBLE', `operator "${reviewer.name}" has no reviewing role`);
      // A final authority may decide whatever stage waits (escalation/final-authority.ts); nobody else is widened.
      if (ctx.finalAuthority) return null;
      if (!stageEligible(reviewer, stage, stageIndex, request.escalation)) {
        return err('NOT_ELIGIBLE', `this request now needs: ${stage.label}`, { stage, stageIndex });
      }
      return null;
    },
  },
  {
    name: 'separation',
    check: (ctx) => {
      const { request, reviewer, restart } = ctx;
      if (request.requesterOperatorId !== null && reviewer.id === request.requesterOperatorId) {
        return err('SELF_REVIEW', 'a requester cannot review their own request');
      }
      // Four-eyes (review F4): a second identity of the proposer is the proposer.
      if (request.isAdminChange === true && approving(ctx) && !(request.adminSigners ?? []).includes(reviewer.id)) {
        return err('SELF_REVIEW', 'this admin change can be signed only by an admin who was one when it was proposed and is independent of its proposer: neither holds, or could hold, the other\'s credential (created it, until it rotated its own token, or ever rotated its token), nor made the other admin');
      }
      const rejected = request.votes.some((v) => v.verdict === 'reject' && v.reviewer.id === reviewer.id);
      // One vote per round: approvals of an earlier payload no longer count, so their authors may vote on the new one.
      const inRound = !restart && ctx.counted.some((v) => v.reviewer.id === reviewer.id);
      if (rejected || inRound) return err('ALREADY_REVIEWED', `operator "${reviewer.name}" has already reviewed this request`);
      return null;
    },
  },
  {
    name: 'aggregate',
    check: (ctx) => {
      const { request, vote } = ctx;
      if (!approving(ctx)) return null;
      if (request.isAggregate && (vote.args !== undefined || vote.alternative !== undefined)) {
        return err('VALIDATION_FAILED', 'an aggregate review is approved or rejected as a whole; it cannot be modified or answered with an alternative');
      }
      if (request.isAdminChange === true && (vote.args !== undefined || vote.alternative !== undefined)) {
        return err('VALIDATION_FAILED', 'an admin change is approved or rejected exactly as it was asked; it cannot be modified or answered with an alternative');
      }
      if (request.aggregated !== null) {
        return err('AGGREGATED', 'this request is decided in its aggregate review; it can be rejected alone, not approved', { ...request.aggregated });
      }
      if (request.agentPaused !== null) {
        const p = request.agentPaused;
        return err('AGENT_PAUSED', `this request's agent is paused until ${p.until} (${p.reason}); its requests can be rejected now and approved once the pause ends`, { ...p });
      }
      if (request.agentDisabled) {
        return err('AGENT_DISABLED', "this request's agent is disabled (enabled: false in the policy file or its configuration); its requests can be rejected, not approved, until it is enabled again");
      }
      return null;
    },
  },
  {
    name: 'ip',
    check: (ctx) => {
      if (!approving(ctx)) return null;
      const ip = ctx.guard.ip;
      if (ip.allowed) return null;
      const which = ip.lists && ip.lists.length > 0 ? `the IP allowlist of ${ip.lists.join(' and of ')}` : 'an IP allowlist';
      return err('IP_NOT_ALLOWED', `approvals by ${ctx.reviewer.name} from ${ip.ip ?? 'an unknown address'} are refused by ${which}`, { ip: ip.ip, refusedBy: ip.refusedBy });
    },
  },
  {
    name: 'limits',
    check: (ctx) => {
      if (!approving(ctx) || ctx.guard.limitsOff) return null;
      const { guard, requirement } = ctx;
      const risk = requirement.riskLevel;
      const cool = cooldownState(guard.approvals, guard.now, guard.cooldown, guard.manualCooldown);
      if (cool.active && guard.cooldown.riskLevels.includes(risk)) {
        return err('COOLDOWN_ACTIVE', `you are in a cool-down until ${cool.until} (${cool.reason}); another reviewer must take ${risk}-risk approvals`, cool);
      }
      const v = approverVelocity(guard.approvals, guard.now, risk, guard.velocity);
      if (!v.allowed) {
        return err('VELOCITY_LIMITED', `approval velocity limit reached: ${v.reason}; another reviewer must take it`, { counts: v.counts, limits: v.limits, resetAt: v.resetAt });
      }
      return null;
    },
  },
  {
    name: 'stepUp',
    check: (ctx) => {
      if (!approving(ctx) || ctx.dry) return null;
      const { requirement, vote } = ctx;
      const wa = vote.webauthn ?? 'absent';
      if (requirement.mfa && wa !== 'absent') {
        // An assertion offered is judged, whatever else the vote carries.
        if (wa === 'not_enrolled') return err('MFA_REQUIRED', 'that passkey is not enrolled for you (or was revoked); enrol one in the dashboard (Settings)', { riskLevel: requirement.riskLevel, factor: 'webauthn' });
        if (wa === 'replayed') return err('MFA_INVALID', 'that WebAuthn assertion was made for another approval, or its challenge expired or was used; ask for a new one', { factor: 'webauthn' });
        if (wa !== 'valid') return err('MFA_INVALID', 'the WebAuthn assertion does not verify', { factor: 'webauthn' });
      } else if (requirement.webauthn) {
        return err('MFA_REQUIRED', `policy requires a passkey or security key (WebAuthn) to approve this ${requirement.riskLevel}-risk payload: approve it in the dashboard; a TOTP code, the CLI, Slack, Teams and ticket approvals cannot`, { riskLevel: requirement.riskLevel, factor: 'webauthn' });
      } else if (requirement.mfa) {
        if (vote.totp === 'absent') return err('MFA_REQUIRED', `policy requires a TOTP code (totp) to approve this ${requirement.riskLevel}-risk payload`, { riskLevel: requirement.riskLevel });
        if (vote.totp === 'not_enrolled') return err('MFA_REQUIRED', 'policy requires step-up MFA and you have no confirmed TOTP enrolment (countersign mfa enrol)', { riskLevel: requirement.riskLevel });
        if (vote.totp === 'replayed') return err('MFA_INVALID', 'that TOTP code was already used; wait for the next one');
        if (vote.totp !== 'valid') return err('MFA_INVALID', 'that TOTP code is not valid now');
      }
      if (requirement.matchCode) {
        if (vote.matchCode === 'absent') return err('MATCH_CODE_INVALID', 'critical approvals must repeat the two-digit match code shown on the request card (matchCode)');
        if (vote.matchCode !== 'valid') return err('MATCH_CODE_INVALID', 'the match code does not match the one shown on the request card');
      }
      return null;
    },
  },
  {
    name: 'requirements',
    check: (ctx) => {
      if (!approving(ctx)) return null;
      const { requirement, payload } = ctx;
      if (requirement.blockedBy.length > 0) {
        return err('BLOCKED_BY_POLICY', `${payload.action}${payload.alternative ? ` (alternative "${payload.alternative}")` : ''} is blocked by policy (${requirement.blockedBy.join(', ')}) and can never be approved`, {
          blockedBy: requirement.blockedBy,
          alternative: payload.alternative,
        });
      }
      return null;
    },
  },
]);

/**
 * How the requirement of a payload is computed: `payloadRequirement` (requirements.ts), the union
 * of the original's and the payload's. A parameter only so the property tests can run the gate
 * with one part of the union removed and show each part matters (gate-properties.test.ts).
 */
export type RequirementOf = typeof payloadRequirement;

function contextOf(input: GateInput, dry: boolean, requirementOf: RequirementOf = payloadRequirement): GateContext {
  const { request, payload } = input;
  const originalKey = payloadKey(request.action, request.args);
  const modified = payload.key !== originalKey;
  if (modified && payload.assessment === null) {
    // Fail closed: a payload other than the original is never judged by the original's assessment alone.
    throw err('INTERNAL', 'the gate needs the assessment of the payload that will run');
  }
  const requirement = requirementOf(request.assessment, modified || payload.rechecked === true ? payload.assessment : null, modified);
  const round = currentRound(request);
  const restart = input.vote.verdict === 'approve' && payload.key !== round.key;
  const counted = restart ? [] : round.votes;
  const counts = stageProgressOf(requirement.stages, counted);
  const unmet = firstUnmet(requirement.stages, counts);
  const stageIndex = Math.max(unmet, 0);
  const stage = requirement.stages[stageIndex]!;
  const fa = request.escalation?.finalAuthority ?? null;
  // A final authority decides alone the payload it was shown, never one it proposes in this vote.
  const ownProposal = input.vote.verdict === 'approve' && (input.vote.args !== undefined || input.vote.alternative !== undefined) && payload.key !== round.key;
  const finalAuthority =
    fa !== null &&
    request.isAdminChange !== true &&
    !ownProposal &&
    !(input.vote.verdict === 'approve' && needsMoreThanAsked(input, requirement, fa.level, requirementOf)) &&
    isFinalAuthority(input.reviewer, fa);
  return { ...input, requirement, modified, restart, counted, stageIndex, stage, dry, finalAuthority };
}

/**
 * Whether approving this payload (an alternative or modified args, someone else's proposal the
 * final authority was shown) needs more than the request as asked, whose chain made the final
 * authority: more or other stages, a higher risk level, MFA or the match code, fewer rejections,
 * one reviewer more for a modification — or, on its own, it would have started at the final
 * level or above (decided by its quorum there, final-authority.ts). Then a final authority's
 * approval is an ordinary vote: it decides alone only what the chain escalated to it. Judged
 * on the exact payload that will run; in any doubt (a requirement that differs at all) it needs more.
 */
function needsMoreThanAsked(input: GateInput, requirement: PayloadRequirement, finalLevel: number, requirementOf: RequirementOf): boolean {
  const { request, payload } = input;
  if (payload.key === payloadKey(request.action, request.args)) return false;
  if (payload.assessment === null || (payload.assessment.escalationStartLevel ?? 1) >= finalLevel) return true;
  return canonicalJson(requirement) !== canonicalJson(requirementOf(request.assessment, null, false));
}

/** The checks that need no guard facts: a shell runs them before it takes the approver's lock. */
export const CHEAP_CHECKS: readonly string[] = Object.freeze(['state', 'identity', 'separation', 'aggregate']);

/**
 * The first refusal of the cheap checks (`CHEAP_CHECKS`), or null: what the full gate would also
 * refuse first, since they come first in `GATE_CHECKS`. The guard facts of `input` are not read.
 * Lets the shell refuse before it locks anything (review finding 4: no lock held for a vote that
 * cannot pass), and the full `gate()` still runs every check after.
 */
export function precheck(input: GateInput): CountersignError | null {
  const ctx = contextOf(input, false);
  for (const c of GATE_CHECKS) {
    if (!CHEAP_CHECKS.includes(c.name)) break;
    const e = c.check(ctx);
    if (e) return e;
  }
  return null;
}

/** Run the checks; on success, what the vote does and what to record. */
export function gate(input: GateInput, checks: readonly GateCheck[] = GATE_CHECKS, requirementOf: RequirementOf = payloadRequirement): GateResult {
  const ctx = contextOf(input, false, requirementOf);
  for (const c of checks) {
    const e = c.check(ctx);
    if (e) return { ok: false, error: e, check: c.name };
  }
  return accept(ctx);
}

function accept(ctx: GateContext): GateResult {
  const { vote, reviewer, requirement, payload, request, guard } = ctx;
  const actor = { type: 'operator' as const, id: reviewer.id, name: reviewer.name };
  const record: GateRecord = { approval: null, totpStep: false, factor: null, cooldownStarted: null };
  const finalAuthority = ctx.finalAuthority ? { level: request.escalation!.finalAuthority!.level } : null;
  if (vote.verdict === 'reject') {
    const v: Vote = { reviewer: actor, verdict: 'reject', reason: vote.reason ?? null, args: null, alternative: null, payloadKey: null, stage: null, at: vote.at };
    const rejections = request.votes.filter((x) => x.verdict === 'reject');
    const progress = stageProgressOf(requirement.stages, ctx.counted);
    if (rejections.length + 1 < requirement.deny && !ctx.finalAuthority) return { ok: true, vote: v, status: 'pending', kinds: ['reviewed'], decision: null, requirement, progress, record, finalAuthority: null };
    return {
      ok: true,
      vote: v,
      status: 'rejected',
      kinds: ['reviewed', 'rejected'],
      decision: {
        outcome: 'rejected',
        decidedBy: 'reviewers',
        deciders: [...rejections.map((x) => x.reviewer), actor],
        reason: vote.reason ?? null,
        at: vote.at,
        action: null,
        args: null,
        alternative: null,
        modified: false,
      },
      requirement,
      progress,
      record,
      finalAuthority,
    };
  }
  const v: Vote = {
    reviewer: actor,
    verdict: 'approve',
    reason: vote.reason ?? null,
    args: vote.args ?? null,
    alternative: vote.alternative ?? null,
    payloadKey: payload.key,
    stage: ctx.stageIndex,
    stageKey: stageKeyOf(ctx.stage),
    at: vote.at,
  };
  const approval: ApprovalRecord = { requestId: request.id, at: guard.now, riskLevel: requirement.riskLevel };
  const after = guard.cooldown.riskLevels.includes(requirement.riskLevel) && !guard.limitsOff ? cooldownState([...guard.approvals, approval], guard.now, guard.cooldown) : null;
  const rec: GateRecord = {
    approval,
    totpStep: requirement.mfa && (vote.webauthn ?? 'absent') === 'absent' && vote.totp === 'valid',
    factor: !requirement.mfa ? null : (vote.webauthn ?? 'absent') === 'valid' ? 'webauthn' : 'totp',
    cooldownStarted: after !== null && after.active && after.triggeredBy.includes(request.id) ? after : null,
  };
  const votes = [...ctx.counted, v];
  const progress = stageProgressOf(requirement.stages, votes);
  // The deciders are the approvals that count: a vote that signs no stage of this requirement
  // (a pre-009 vote, a stage replaced by a policy reload) is not named on the decision or receipt.
  const deciders = votes.filter((x) => countsFor(requirement.stages, x)).map((x) => x.reviewer);
  if (firstUnmet(requirement.stages, progress) >= 0 && !ctx.finalAuthority) return { ok: true, vote: v, status: 'pending', kinds: ['reviewed'], decision: null, requirement, progress, record: rec, finalAuthority: null };
  return {
    ok: true,
    vote: v,
    status: 'approved',
    kinds: ['reviewed', 'approved'],
    decision: {
      outcome: 'approved',
      decidedBy: 'reviewers',
      deciders,
      reason: vote.reason ?? null,
      at: vote.at,
      action: payload.action,
      args: payload.args,
      alternative: payload.alternative,
      modified: payload.alternative === null && ctx.modified,
    },
    requirement,
    progress,
    record: rec,
    finalAuthority,
  };
}

export interface Actionable {
  /** A plain approval of the current payload would pass every check but the step-up codes, which it still needs (`stepUp`). */
  readonly actionable: boolean;
  /** Why not: the code and message the server would answer with. */
  readonly reason: { readonly code: string; readonly message: string; readonly check: GateCheck['name'] } | null;
  /** Whether a rejection would be accepted. */
  readonly canReject: boolean;
  readonly stepUp: { readonly mfa: boolean; readonly webauthn: boolean; readonly matchCode: boolean };
  readonly requirement: PayloadRequirement;
}

/**
 * The gate as a dry run, for `actionable`: a plain approval of the current payload (and a
 * rejection), with the step-up codes assumed supplied (the card then asks for them).
 */
export function dryRun(input: Omit<GateInput, 'vote'> & { at: string }, checks: readonly GateCheck[] = GATE_CHECKS): Actionable {
  // The queue shows the current payload, so the dry run approves it as seen.
  const approve: GateVote = { verdict: 'approve', totp: 'valid', matchCode: 'valid', seenPayloadKey: input.payload.key, at: input.at };
  const ctx = contextOf({ ...input, vote: approve }, true);
  let reason: Actionable['reason'] = null;
  for (const c of checks) {
    const e = c.check(ctx);
    if (e) {
      reason = { code: e.code, message: e.message, check: c.name };
      break;
    }
  }
  const rejectCtx = contextOf({ ...input, vote: { ...approve, verdict: 'reject' } }, true);
  const canReject = checks.every((c) => c.check(rejectCtx) === null);
  return { actionable: reason === null, reason, canReject, stepUp: { mfa: ctx.requirement.mfa, webauthn: ctx.requirement.webauthn, matchCode: ctx.requirement.matchCode }, requirement: ctx.requirement };
}

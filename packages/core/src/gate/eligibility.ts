/**
 * Who may sign one stage of a request now (issue 12, finding 4: with `approvers: [{role: lead},
 * {operator: cfo}]` the lead reassigned the request to a friend, approved stage 1, and the
 * friend signed the CFO's stage, because a reassignee could act at any stage their role met).
 *
 * - The stage's own terms decide first (`isEligibleForStage`: role or higher, group, named operators).
 * - **A reassignment moves only the stage that was current when it was made** (`assignee.stage`),
 *   and never a stage that names an operator or a group: those name people, and whoever
 *   reassigns must not be able to pick a friend for them. A reassignee is therefore eligible for
 *   the stage they were given only if its role (if any) is met — the same as anyone; what a
 *   reassignment adds is whom the request is routed and shown to, never signing power.
 *   An assignee recorded without a stage (from before stages were recorded) is given none.
 * - **An extension changes nobody's eligibility** (it only moves the deadline).
 * - **Escalation by time** (past the start level) never lets a stand-in sign a stage that names
 *   operators or a group (issue 12 review, G2: a lead at the escalated level signed the CFO's
 *   stage); only the people it names do. Role stages keep their rule (the role or more senior),
 *   which escalation cannot lower.
 */
import { ROLE_RANK, isEligibleForStage, canReviewAtAll, namesOperator, type Reviewer } from '../lifecycle.ts';
import type { ApprovalStage, Role } from '../schemas.ts';
import type { FinalAuthority } from '../escalation/final-authority.ts';

export interface GateEscalation {
  /** Current and starting level of the escalation chain (1-based). */
  readonly level: number;
  readonly startLevel: number;
  /** The role of the current level, null without a chain. */
  readonly levelRole: Role | null;
  /** The latest reassignment, with the stage index that was current when it was made. */
  readonly assignee: { readonly operator?: string; readonly group?: string; readonly stage?: number } | null;
  /** Whether the deadline was extended; recorded so callers can see it does not matter here. */
  readonly extended: boolean;
  /** At a final-authority level (escalation/final-authority.ts `finalAuthorityOf`): whom it names; absent or null otherwise. */
  readonly finalAuthority?: FinalAuthority | null;
}

function rankOf(roles: readonly Role[]): number {
  return roles.reduce((max, role) => Math.max(max, ROLE_RANK[role]), 0);
}

/** Whether a stage names people (operators or a group), which only its own terms or the escalation chain can widen. */
export function namesPeople(stage: ApprovalStage): boolean {
  return (stage.operators !== undefined && stage.operators.length > 0) || stage.group !== undefined;
}

export function stageEligible(reviewer: Reviewer, stage: ApprovalStage, stageIndex: number, escalation: GateEscalation | null): boolean {
  if (isEligibleForStage(reviewer, stage)) return true;
  if (!canReviewAtAll(reviewer) || escalation === null) return false;
  const rank = rankOf(reviewer.roles);
  const stageRank = stage.role ? ROLE_RANK[stage.role] : ROLE_RANK.reviewer;
  if (rank < stageRank) return false;
  // A stage that names operators or a group is signed by them alone: neither the clock nor a
  // reassignment picks a stand-in for a named person (a lead at level 2 never signs for the CFO).
  if (namesPeople(stage)) return false;
  if (escalation.level > escalation.startLevel && escalation.levelRole !== null) {
    const levelRank = ROLE_RANK[escalation.levelRole];
    if (levelRank >= stageRank && rank >= levelRank) return true;
  }
  const a = escalation.assignee;
  if (a !== null && a.stage === stageIndex && !namesPeople(stage)) {
    if (a.operator !== undefined && namesOperator(a.operator, reviewer)) return true;
    if (a.group !== undefined && reviewer.groups.includes(a.group)) return true;
  }
  return false;
}

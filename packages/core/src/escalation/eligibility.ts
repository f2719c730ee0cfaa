/**
 * Who may act on a pending request once it has escalated or been reassigned. Escalation only
 * ever widens the circle upwards, and never lowers a bar:
 *
 * - once the request has escalated past the level it started at, the current level's role (and
 *   anyone more senior) may stand in for a stage's named operators or group, but only for
 *   stages whose own role is no more senior than that level (at the start level, the approval
 *   requirement alone decides: that level's people are told, not deputised);
 * - a reassignee (an operator by id or name, or a group) may act at any stage whose role they
 *   hold or exceed.
 *
 * Quorum, one vote per person, MFA and self-review rules are unchanged (lifecycle.ts).
 */
import { ROLE_RANK, canReviewAtAll, isEligibleForStage, namesOperator, type Reviewer } from '../lifecycle.ts';
import type { ApprovalStage, Role } from '../schemas.ts';
import { roleAt, type EscalationState } from './state.ts';

export type Eligibility = (reviewer: Reviewer, stage: ApprovalStage) => boolean;

function rankOf(roles: readonly Role[]): number {
  return roles.reduce((max, role) => Math.max(max, ROLE_RANK[role]), 0);
}

export function eligibility(state: EscalationState | null): Eligibility {
  if (!state) return isEligibleForStage;
  const levelRole = state.level > state.startLevel ? roleAt(state) : null;
  const assignee = state.assignee;
  return (reviewer, stage) => {
    if (isEligibleForStage(reviewer, stage)) return true;
    if (!canReviewAtAll(reviewer)) return false;
    const rank = rankOf(reviewer.roles);
    const stageRank = stage.role ? ROLE_RANK[stage.role] : ROLE_RANK.reviewer;
    if (rank < stageRank) return false;
    if (levelRole !== null && ROLE_RANK[levelRole] >= stageRank && rank >= ROLE_RANK[levelRole]) return true;
    if (assignee?.operator !== undefined && namesOperator(assignee.operator, reviewer)) return true;
    if (assignee?.group !== undefined && reviewer.groups.includes(assignee.group)) return true;
    return false;
  };
}

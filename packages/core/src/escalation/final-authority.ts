/**
 * The final authority (policy `escalation.levels[last].finalAuthority: true`): once a request has
 * escalated into that level, any one of the people it names (its `operators`, members of its
 * `groups`) may decide it alone, whatever the quorum. Pure: the gate asks `isFinalAuthority`
 * with the facts `finalAuthorityOf` computed from the stored escalation state and the policy
 * running now.
 *
 * It fails closed on every doubt:
 *
 * - only at the final-authority level, and only once the chain escalated into it (by time or a
 *   reviewer): a request that *starts* there (a rule's or risk level's `startLevel`) is decided by
 *   its quorum, its people told, not empowered — otherwise an agent raising its own risk could
 *   pick a single approver instead of the quorum;
 * - the person must be named by that level both in the plan that judged the request and in the
 *   policy running now (a reload that removes someone takes their power away at once; one that
 *   adds someone gives none to requests already judged);
 * - a role alone never confers it (load.ts refuses a `finalAuthority` level without people),
 *   and a reassignment never does (the assignee is not named by the level);
 * - nobody who escalated the request by hand may use it (`escalatedBy`): a member cannot carry
 *   a request up to their own level and then sign it alone;
 * - an `operators` entry names one operator unambiguously (lifecycle.ts `namesOperator`): an
 *   `op_…` entry is that id only, anything else a name only;
 * - it is never used for admin changes (their signers are fixed: admin-change.ts) — the gate's check.
 *
 * Everything else the gate checks still applies to a final-authority vote: self-review, one
 * vote per round, the exact payload that would run (blocked, MFA, match code), IP allowlists,
 * cool-down and velocity. A final authority decides alone only the payload it was shown: a vote
 * that proposes other args or an alternative counts as an ordinary vote (gate.ts).
 */
import { canReviewAtAll, namesOperator, type Reviewer } from '../lifecycle.ts';
import type { Policy } from '../policy/types.ts';
import type { EscalationState } from './state.ts';

export interface FinalAuthority {
  /** The final-authority level (1-based). */
  readonly level: number;
  /** The people named by that level, in the judging plan and in the active policy: a final authority is in every one. */
  readonly members: ReadonlyArray<{ readonly operators: readonly string[]; readonly groups: readonly string[] }>;
  /** Operator ids who escalated the request by hand. */
  readonly excluded: readonly string[];
}

/** Whether the request is at a final-authority level now, and whom it names; null when not (or in any doubt). */
export function finalAuthorityOf(state: EscalationState | null, active: Pick<Policy, 'escalation'>): FinalAuthority | null {
  if (state === null || state.level === 0 || state.level <= state.startLevel) return null;
  const step = state.plan.steps[state.level - 1];
  if (step?.finalAuthority !== true || state.level !== state.plan.steps.length) return null;
  const now = active.escalation.levels;
  const current = now[state.level - 1];
  if (current?.finalAuthority !== true || state.level !== now.length) return null;
  return {
    level: state.level,
    members: [
      { operators: step.operators ?? [], groups: step.groups ?? [] },
      { operators: current.operators, groups: current.groups },
    ],
    excluded: state.escalatedBy ?? [],
  };
}

/** Whether this reviewer may decide alone as the final authority. */
export function isFinalAuthority(reviewer: Reviewer, fa: FinalAuthority | null | undefined): boolean {
  if (!fa || !canReviewAtAll(reviewer) || fa.excluded.includes(reviewer.id) || fa.members.length === 0) return false;
  return fa.members.every(
    (m) => m.operators.some((o) => namesOperator(o, reviewer)) || m.groups.some((g) => reviewer.groups.includes(g)),
  );
}

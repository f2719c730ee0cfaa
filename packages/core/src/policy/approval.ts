/**
 * Who must approve a reviewed request: an ordered list of stages (DESIGN.md §3: one approver,
 * an N-of-M quorum, or a chain such as manager then director), and one rejection decides.
 *
 * - Stages come from the matched rules' approvers (in sequence, each distinct approver once —
 *   so `very-large-value` [manager, director] absorbs `large-value` [manager]), else from the
 *   risk level's `approvers`, else one stage of `approvals` reviewers of any role.
 * - The quorum (the larger of the level's `approvals` and any rule's `approvals`) applies to
 *   each role or group stage; a named operator is one person, so their stage needs one.
 * - The agent's own `approvers` can only narrow: each becomes an extra stage after the
 *   policy's stages, never a replacement (a compromised agent must not pick a friendlier
 *   approver than the policy demands).
 * - `deny` rejections decide at once (the level's `deny`, default 1); with the level's
 *   `modifiedNeedsSecondReviewer`, a payload a reviewer changed needs one approval more.
 * - A role requirement is met by that role or a more senior one; who is eligible for a stage is
 *   decided in lifecycle.ts (`ROLE_RANK`, `isEligibleForStage`), not here.
 */
import type { ApprovalRequirement, ApprovalStage, ApproverSpec, RiskLevel } from '../schemas.ts';
import { approverKey } from './rules.ts';
import type { Policy } from './types.ts';

/** `manager` / `2 managers`; generic reviewers always carry the number (`1 reviewer`). */
function plural(n: number, word: string): string {
  return n === 1 ? word : `${n} ${word}s`;
}

function reviewers(n: number): string {
  return n === 1 ? '1 reviewer' : `${n} reviewers`;
}

function stageFor(spec: ApproverSpec, quorum: number): ApprovalStage {
  if (spec.operator !== undefined) {
    return {
      count: 1,
      ...(spec.role ? { role: spec.role } : {}),
      ...(spec.group ? { group: spec.group } : {}),
      operators: [spec.operator],
      label: `operator ${spec.operator}`,
    };
  }
  const who = spec.role ? plural(quorum, spec.role) : reviewers(quorum);
  return {
    count: quorum,
    ...(spec.role ? { role: spec.role } : {}),
    ...(spec.group ? { group: spec.group } : {}),
    label: spec.group ? `${who} in group ${spec.group}` : who,
  };
}

export function approvalRequirement(
  level: RiskLevel,
  ruleApprovers: readonly ApproverSpec[],
  ruleApprovals: number | undefined,
  requestApprovers: readonly ApproverSpec[],
  policy: Policy,
): ApprovalRequirement {
  const lvl = policy.levels[level];
  const quorum = Math.max(lvl.approvals, ruleApprovals ?? 1);
  const policySpecs = ruleApprovers.length > 0 ? ruleApprovers : (lvl.approvers ?? []);
  const stages: ApprovalStage[] =
    policySpecs.length > 0 ? policySpecs.map((s) => stageFor(s, quorum)) : [{ count: quorum, label: reviewers(quorum) }];
  const taken = new Set(policySpecs.map(approverKey));
  for (const spec of requestApprovers) {
    const k = approverKey(spec);
    if (taken.has(k)) continue;
    taken.add(k);
    stages.push(stageFor(spec, 1));
  }
  return { stages, deny: lvl.deny ?? 1, ...(lvl.modifiedNeedsSecondReviewer ? { modifiedNeedsSecondReviewer: true } : {}) };
}

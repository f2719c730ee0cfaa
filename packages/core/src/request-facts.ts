/**
 * The numbers of a request that metrics and compliance reports aggregate (issue 19), derived
 * from its assessment and decision. The store keeps them as plain columns beside the JSON
 * (migration 019_rollups), written in the same statement as the JSON they come from, so SQL can
 * count without parsing JSON (and without opening a decision sealed at rest).
 */

export interface DecisionFacts {
  /** `decidedBy` / `outcome` of the decision ('' when a stored decision lacks one); null: undecided. */
  decidedBy: string | null;
  outcome: string | null;
  /** Reviewers changed the args. */
  modified: boolean;
  /** An alternative was chosen. */
  choseAlternative: boolean;
  /** Operator ids among the deciders (the store flags a decision one of them requested: `self_approved`). */
  deciderOperatorIds: string[];
}

export interface AssessmentFacts {
  /** `slaDueAt` as epoch ms, null without one (or an unreadable one). */
  slaDueAt: number | null;
  slaSeconds: number | null;
  requiresApproval: boolean;
}

type Loose = Record<string, unknown> | null | undefined;

export function decisionFacts(decision: Loose): DecisionFacts {
  if (decision === null || decision === undefined) return { decidedBy: null, outcome: null, modified: false, choseAlternative: false, deciderOperatorIds: [] };
  const deciders = Array.isArray(decision.deciders) ? (decision.deciders as Array<Record<string, unknown> | null>) : [];
  return {
    decidedBy: typeof decision.decidedBy === 'string' ? decision.decidedBy : '',
    outcome: typeof decision.outcome === 'string' ? decision.outcome : '',
    modified: decision.modified === true,
    choseAlternative: decision.alternative !== null && decision.alternative !== undefined,
    deciderOperatorIds: deciders.filter((d) => d?.type === 'operator' && typeof d.id === 'string').map((d) => d!.id as string),
  };
}

export function assessmentFacts(assessment: Loose): AssessmentFacts {
  const due = typeof assessment?.slaDueAt === 'string' ? Date.parse(assessment.slaDueAt) : Number.NaN;
  const seconds = assessment?.slaSeconds;
  return {
    slaDueAt: Number.isFinite(due) ? due : null,
    slaSeconds: typeof seconds === 'number' && Number.isFinite(seconds) ? seconds : null,
    requiresApproval: assessment?.requiresApproval === true,
  };
}

/** The one gate: who may decide what, now, over the payload that will run; and the single-use claim of an approval. */
export { approvalDueToLapse, approvalLapsed, claimDeadline, decideClaim, decideExecutionReport, receiptExpiry, type ClaimResult, type ClaimState, type ClaimableStatus } from './claim.ts';
export {
  CHEAP_CHECKS,
  GATE_CHECKS,
  precheck,
  currentRound,
  dryRun,
  gate,
  resolvePayload,
  stageKeyOf,
  stageProgressOf,
  type Actionable,
  type GateCheck,
  type GateContext,
  type GateInput,
  type GatePayload,
  type GateRecord,
  type GateRequest,
  type GateResult,
  type GateVote,
  type GuardFacts,
  type IpFact,
  type RequirementOf,
  type StepUpFact,
} from './gate.ts';
export { namesPeople, stageEligible, type GateEscalation } from './eligibility.ts';
export { MATCH_CODE_LEVELS, payloadRequirement, type PayloadRequirement } from './requirements.ts';
export { assessAlternatives, assessPayload } from './payload.ts';
export { timeoutOutcome, type TimeoutOutcome } from './timeout.ts';
export { cooldownEscalation, mayApproveNow, type CooldownCandidate, type CooldownEscalation, type CooldownEscalationInput } from './cooldown-escalation.ts';

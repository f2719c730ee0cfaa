/**
 * @countersign/core — the pure domain. Every export here is public API; internals stay in
 * their modules. Nothing in this package does I/O, reads a clock or draws randomness.
 */
export * from './schemas.ts';
export { CountersignError, ERROR_CODES, isCountersignError, type ErrorCode } from './errors.ts';
export { parseDuration, formatDuration } from './duration.ts';
export { formatScore } from './format.ts';
export { canonicalJson, payloadKey } from './canonical.ts';
export {
  ROLE_RANK,
  TERMINAL_STATUSES,
  canReviewAtAll,
  canReviewNow,
  currentPayload,
  currentStage,
  isDecided,
  isEligibleForStage,
  namesOperator,
  OPERATOR_ID_PREFIX,
  isTerminal,
  policyDecision,
  stageProgress,
  transition,
  type LifecycleEvent,
  type LifecycleState,
  type Reviewer,
  type Transition,
  type TransitionKind,
  type Vote,
} from './lifecycle.ts';
export type { AgentGateway } from './gateway.ts';
export {
  checkOperatorChange,
  credentialStatus,
  graceEnd,
  highestRank,
  operatorStatus,
  type CredentialRefusal,
  type ManagedOperator,
  type OperatorChange,
  type StoredCredential,
  type StoredOperator,
} from './credentials.ts';
export * from './escalation/index.ts';
export * from './policy/index.ts';
export * from './precheck/index.ts';
export * from './audit/index.ts';
export * from './guard/index.ts';
export * from './gate/index.ts';
export { interpolate, quantile, quantileRanks, rate, slaCompliance, withinSla, type MetricsSummary, type OperatorNumbers, type Rates } from './metrics.ts';
export {
  METRIC_BUCKET_MS,
  ZERO_COUNTS,
  bucketLayout,
  countFact,
  decisionSeconds,
  operatorNumbers,
  ratesOf,
  sortOperators,
  summarizeMetrics,
  type MetricBucket,
  type MetricFact,
  type MetricVote,
  type RateCounts,
} from './metrics-summary.ts';
export { assessmentFacts, decisionFacts, type AssessmentFacts, type DecisionFacts } from './request-facts.ts';
export * from './identity/index.ts';
export { compareUrgency, defaultListOrder, LIST_ORDERS, parseListFilter, queueDeadline, RISK_URGENCY, type ListOrder, type UrgencyKey } from './queue.ts';
export {
  DEFAULT_RECONNECT_BACKOFF,
  WAIT_RETRY_AFTER_SECONDS,
  admitWait,
  reconnectDelay,
  type ReconnectBackoff,
  type WaitAdmission,
  type WaitLimits,
} from './transport.ts';

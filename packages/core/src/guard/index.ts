export { DEFAULT_SLICING_CONFIG, type AlertType, type GuardEvent, type SlicingAlert, type SlicingConfig, type SlicingReport } from './types.ts';
export {
  DETECTORS,
  HISTORY_DETECTORS,
  detectApproverFatigue,
  detectPatternRepetition,
  detectSlicing,
  detectTemporalClustering,
  detectValueAggregation,
  detectVelocityAbuse,
  mergeBucket,
  payloadKeys,
  payloadShape,
  repetitionAlert,
  repetitionChains,
  runningTotal,
  valueAlertsFromSlices,
  valueThresholds,
  type RunningTotalInput,
  type RunningTotalResult,
  type ValueBucket,
  type ValueSlice,
  type ValueThreshold,
} from './slicing.ts';
export {
  DEFAULT_APPROVER_LIMITS,
  DEFAULT_COOLDOWN,
  approverVelocity,
  checkRate,
  cooldownState,
  type ApprovalRecord,
  type ApproverLimits,
  type CooldownConfig,
  type CooldownState,
  type RateCheck,
  type RateWindow,
} from './velocity.ts';
export { FINGERPRINT_CHARS, FINGERPRINT_FIELDS, argsSimilarity, flatSimilarity, flatten, payloadFingerprint, type FlatArgs } from './similarity.ts';
export { ON_CREATE_MAX_FIELDS, ON_CREATE_RECENT, SEEN_IDS, detectOnCreate, freshAlerts, slicingReview, type SlicingSeen } from './on-create.ts';
export { GUARD_NOTICE_KINDS, renderGuardNotice, type GuardNotice, type GuardNoticeData, type GuardNoticeKind } from './notice.ts';
export {
  AGGREGATE_ACTION,
  MAX_AGGREGATE_MEMBERS,
  aggregateRequest,
  assessAggregate,
  strictestOf,
  memberDecision,
  type AggregateMember,
  type EarlierInHold,
} from './aggregate.ts';
export { DEFAULT_LOCKOUT, stepUpLockout, type LockoutConfig, type LockoutState, type StepUpAttempt } from './lockout.ts';

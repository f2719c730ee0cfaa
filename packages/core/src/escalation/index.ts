/** Escalation, deadlines and notifications: what is due, what happens, what is said. Pure. */
export {
  ESCALATION_REPEAT_MS,
  MAX_ESCALATION_REASON,
  MAX_EXTENSION_MS,
  checkEscalationReason,
  repeatedEscalation,
  channelsAtStart,
  channelsFor,
  startedHigher,
  escalateNow,
  channelsSoFar,
  escalationTimerAt,
  extend,
  maxExtensionMs,
  onDue,
  planOf,
  publicEscalation,
  reassign,
  roleAt,
  startEscalation,
  type Assignee,
  type CooldownMove,
  type DueOutcome,
  type EscalationPlan,
  type EscalationState,
  type EscalationStep,
  type Extension,
  type ManualEscalation,
} from './state.ts';
export { eligibility, type Eligibility } from './eligibility.ts';
export { finalAuthorityOf, isFinalAuthority, type FinalAuthority } from './final-authority.ts';
export { DEFAULT_RETRY, nextRetryDelay, type RetryPolicy } from './retry.ts';
export {
  AGENT_SUPPLIED_LABEL,
  clip,
  renderNotification,
  type Notification,
  type NotificationAction,
  type NotificationEvent,
} from './notification.ts';

/** Escalation, deadlines and notifications: what is due, what happens, what is said. Pure. */
export {
  MAX_ESCALATION_REASON,
  MAX_EXTENSION_MS,
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
  type DueOutcome,
  type EscalationPlan,
  type EscalationState,
  type EscalationStep,
  type Extension,
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

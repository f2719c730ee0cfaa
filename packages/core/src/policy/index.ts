/**
 * Policy: load and validate `countersign.yaml`, score risk, run rules, decide the route.
 * Everything here is pure (no I/O, no clock, no randomness).
 */
export { DEFAULT_POLICY_YAML } from './defaults.ts';
export { DEFAULT_APPROVAL_VALID_MS, defaultPolicy, parsePolicy, validateAgentConfig, validatePolicy } from './load.ts';
export {
  MAX_AGENT_CONFIG_CHARS,
  agentEnabled,
  durationText,
  policyForAgent,
  type AgentConfig,
  type AgentConfigResult,
  type EffectiveSetting,
  type SettingSource,
} from './agent-config.ts';
export {
  KEYS as AGENT_CONFIG_KEYS,
  agentPolicy,
  effectiveAgentConfig,
  flatOf,
  mergeKey,
  overlayBaselines,
  parseBaselines,
  withAgentOverlay,
  type Baselines,
  type KeyRule,
  type KeyValue,
} from './overlay.ts';
export { weakens, type Loosening } from './weakens.ts';
export {
  ADMIN_CHANGE_ACTIONS,
  AGENT_CONFIG_ACTION,
  adminChangeAssessment,
  adminChangeSigners,
  actingAs,
  sameHands,
  type LineageEdge,
  isAdminChangeAction,
  needsSecondAdmin,
  type AgentConfigChangeArgs,
} from './admin-change.ts';
export { evaluate, type EvaluationRequest } from './evaluate.ts';
export { checkArgs } from './args.ts';
export { normalizeActionName } from './names.ts';
export { assessRisk, type RiskAssessment } from './risk.ts';
export { scanContent, BUILTIN_PATTERN_NAMES, SCAN_LIMIT_CHARS, type ContentMatch } from './patterns.ts';
export {
  EMPTY_HISTORY,
  type ActionTraits,
  type ArgRule,
  type AgentLevelPolicy,
  type AgentPolicy,
  type EscalationLevel,
  type HistoryStats,
  type LevelPolicy,
  type Policy,
  type PolicyError,
  type PolicyResult,
  type PolicyRule,
  type SlicingResponse,
  type WhilePaused,
  type RiskFactorName,
  type RuleConditions,
  type RuleEffects,
  type TimeWindow,
} from './types.ts';
export { diffPolicies, type PolicyChange } from './diff.ts';
export { historyFromAssessment, isServerHold, replayRequest, type ReplayOutcome, type StoredRequestInput } from './replay.ts';
export {
  REPLAY_ROUTES,
  ReplayAccumulator,
  approvalText,
  type ReplayChange,
  type ReplayExample,
  type ReplayReport,
  type ReplayRoute,
  type ReviewLoad,
} from './replay-report.ts';
export {
  POLICY_ENV_SETTINGS,
  applyPolicyOverrides,
  policyOverridesFrom,
  policyValueSource,
  type PolicyEnvError,
  type PolicyEnvSetting,
  type PolicyOverride,
  type PolicyValueSource,
} from './env.ts';

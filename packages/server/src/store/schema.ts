/**
 * Table shapes, shared by both dialects. JSON columns are text and times are epoch
 * milliseconds in both engines, so rows read back identically from SQLite and PostgreSQL and
 * ordering by time never depends on a collation.
 */
import type { Generated } from 'kysely';
import type { AutomationLevel, Route, Verdict } from '@countersign/core';
import type { DeliveriesTable, EscalationsTable, NoncesTable, TimersTable } from './timers.ts';
import type { AuditCheckpointsTable, AuditNodesTable, AuditRetentionTable, AuditSignerUpgradeTable } from './trail.ts';
import type { AuditKeysTable, AuditOriginTable } from './audit-keys.ts';
import type { AggregateCollectionsTable, AggregateMembersTable } from './aggregates.ts';
import type { MfaAttemptsTable, ServerMarksTable, SessionsTable } from './credentials.ts';
import type { AgentRateEventsTable, AgentValueMinutesTable, ApprovalEventsTable } from './counters.ts';
import type { AgentConfigVersionsTable, AgentConfigsTable } from './agent-configs.ts';
import type { ScreenModelsTable, ScreenRetrainAttemptsTable, ScreenSamplesTable, ScreenVerdictsTable } from './screening.ts';
import type { ForwardCursorsTable } from './forwarding.ts';
import type { WebAuthnChallengesTable, WebAuthnCredentialsTable } from './webauthn.ts';
import type { ScimGroupsTable, ScimMembersTable, ScimTokensTable, ScimUsersTable, SsoIdentitiesTable, SsoLoginsTable } from './identity.ts';
import type { AgentPausesTable, ApproverCooldownsTable, GuardSettingsTable, OperatorIpAllowlistTable, OperatorTotpTable, RoleIpAllowlistTable } from './guard.ts';

export interface AgentsTable {
  id: string;
  name: string;
  created_at: number;
}

export interface ApiKeysTable {
  id: string;
  agent_id: string;
  key_hash: string;
  prefix: string;
  created_at: number;
  created_by: string | null;
  revoked_at: number | null;
  /** Stamped at most once a minute by authentication. */
  last_used_at: number | null;
  /** A rotated key's grace period ends here; null: no end. */
  expires_at: number | null;
  /** HMAC under the server secret (keys/server-secret.ts); a row without a valid one does not authenticate. */
  mac: string | null;
}

export interface OperatorsTable {
  id: string;
  name: string;
  roles: string;
  groups: string;
  created_at: number;
  disabled_at: number | null;
  /** Removed operators keep their row (reviews and the trail name them) but never authenticate again. */
  removed_at: number | null;
  /** 1: made without a token (the embedded gateway's admin), so bootstrap may give it its first; MACed. */
  tokenless: number;
  mac: string | null;
}

export interface OperatorTokensTable {
  id: string;
  operator_id: string;
  token_hash: string;
  prefix: string;
  created_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
  expires_at: number | null;
  mac: string | null;
}

/** Who an audit entry names as its actor (core `AuditActor['type']`). */
export type AuditActorType = 'agent' | 'operator' | 'system';

export interface PoliciesTable {
  version: number;
  hash: string;
  source: string;
  loaded_at: number;
}

export interface RequestsTable {
  id: string;
  agent_id: string;
  requester_operator_id: string | null;
  idempotency_key: string | null;
  body_hash: string;
  action: string;
  args: string;
  description: string | null;
  confidence: number | null;
  risk_hint: string | null;
  context: string;
  alternatives: string;
  approvers: string;
  timeout_seconds: number | null;
  status: string;
  risk_score: number;
  risk_level: string;
  automation_level: AutomationLevel;
  route: Route;
  assessment: string;
  policy_version: number;
  decision: string | null;
  execution: string | null;
  created_at: number;
  updated_at: number;
  decided_at: number | null;
  expires_at: number | null;
  /** The deadline the queue sorts a pending request by (core `queueDeadline`), `NO_DEADLINE` (store/queue.ts) when none; migration 012. */
  queue_due_at: number;
  /**
   * The action's normal form (core `normalizeActionName`), set by `insertRequest` (migration
   * 009_gate, which fills in older rows): history is looked up by it and the `action=` filter
   * compares it; the request keeps the agent's own spelling for display.
   */
  action_key: string;
  /** The nonce signed into the approval's version 2 receipt (migration 009_claim); null unless approved since. */
  claim_nonce: string | null;
  /** Until when the approval may be claimed (policy `levels.<risk>.approvalValidFor`); null unless approved since 009_claim. */
  claim_expires_at: number | null;
  /** When the approval was claimed (`executing`); null until then. */
  claimed_at: number | null;
  // What metrics and reports count (migration 019_rollups, core request-facts.ts), written by the store with the JSON they come from.
  decided_by: string | null;
  outcome: string | null;
  modified: number;
  chose_alternative: number;
  self_approved: number;
  sla_due_at: number | null;
  sla_seconds: number | null;
  requires_approval: number;
}

/** The columns the store derives from a request's assessment and decision (never set by callers). */
export type RequestFactColumn = 'decided_by' | 'outcome' | 'modified' | 'chose_alternative' | 'self_approved' | 'sla_due_at' | 'sla_seconds' | 'requires_approval';

export interface ReviewsTable {
  id: string;
  request_id: string;
  operator_id: string;
  operator_name: string;
  verdict: Verdict;
  reason: string | null;
  args: string | null;
  alternative: string | null;
  payload_key: string | null;
  stage: number | null;
  stage_key: string | null;
  created_at: number;
}

/** An integrated entry: its tree position `seq` (gapless, 1 …) and the leaf it was given (store/trail.ts `leafJsonOf`). */
export interface AuditLogTable {
  seq: number;
  /** The id it had in `audit_pending` (migration 016; `seq` for older entries); not part of the leaf. */
  entry_id: number | null;
  at: number;
  type: string;
  request_id: string | null;
  actor_type: AuditActorType;
  actor_id: string;
  actor_name: string;
  data: string;
}

/**
 * An entry written by the transaction whose change it records, not yet in the tree (migration
 * 016): `id` comes from a sequence (SQLite: AUTOINCREMENT), may commit out of order and leaves
 * gaps. The integrator (store/integrator.ts) moves it to `audit_log` with a seq.
 */
export interface AuditPendingTable {
  id: Generated<number>;
  at: number;
  type: string;
  request_id: string | null;
  actor_type: AuditActorType;
  actor_id: string;
  actor_name: string;
  data: string;
}

/** The integrated tree: its size `seq` and frontier, written only by the integrator (one batch at a time, under this row's lock). */
export interface AuditHeadTable {
  id: number;
  seq: number;
  /** The Merkle tree's compact form (store/trail.ts), JSON array of base64 hashes. */
  frontier: Generated<string>;
  /** Entries 1 … pruned_to were removed by retention; their hashes stay in audit_nodes. */
  pruned_to: Generated<number>;
}

export interface Database {
  agents: AgentsTable;
  api_keys: ApiKeysTable;
  operators: OperatorsTable;
  operator_tokens: OperatorTokensTable;
  policies: PoliciesTable;
  requests: RequestsTable;
  reviews: ReviewsTable;
  audit_log: AuditLogTable;
  audit_pending: AuditPendingTable;
  audit_head: AuditHeadTable;
  audit_nodes: AuditNodesTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_retention: AuditRetentionTable;
  audit_signer_upgrade: AuditSignerUpgradeTable;
  audit_keys: AuditKeysTable;
  audit_origin: AuditOriginTable;
  timers: TimersTable;
  escalations: EscalationsTable;
  deliveries: DeliveriesTable;
  nonces: NoncesTable;
  operator_totp: OperatorTotpTable;
  approver_cooldowns: ApproverCooldownsTable;
  agent_pauses: AgentPausesTable;
  guard_settings: GuardSettingsTable;
  operator_ip_allowlist: OperatorIpAllowlistTable;
  role_ip_allowlist: RoleIpAllowlistTable;
  aggregate_collections: AggregateCollectionsTable;
  aggregate_members: AggregateMembersTable;
  sessions: SessionsTable;
  server_marks: ServerMarksTable;
  mfa_attempts: MfaAttemptsTable;
  approval_events: ApprovalEventsTable;
  agent_rate_events: AgentRateEventsTable;
  agent_value_minutes: AgentValueMinutesTable;
  screen_verdicts: ScreenVerdictsTable;
  screen_samples: ScreenSamplesTable;
  screen_models: ScreenModelsTable;
  screen_retrain_attempts: ScreenRetrainAttemptsTable;
  agent_configs: AgentConfigsTable;
  agent_config_versions: AgentConfigVersionsTable;
  operator_lineage: OperatorLineageTable;
  forward_cursors: ForwardCursorsTable;
  webauthn_credentials: WebAuthnCredentialsTable;
  webauthn_challenges: WebAuthnChallengesTable;
  sso_logins: SsoLoginsTable;
  sso_identities: SsoIdentitiesTable;
  scim_users: ScimUsersTable;
  scim_groups: ScimGroupsTable;
  scim_members: ScimMembersTable;
  scim_tokens: ScimTokensTable;
}

export type { Generated };

/**
 * Who holds or made an operator (migration 017): `created` it (deleted when the operator rotates
 * its own token), rotated or held its `token` (never ends), made it `admin` (never ends). Written
 * only by the credentials desk. Four-eyes reads it: two admins in the same hands, either way,
 * never sign each other's admin changes (core admin-change.ts `sameHands`).
 */
export interface OperatorLineageTable {
  operator_id: string;
  issuer_id: string;
  kind: 'created' | 'admin' | 'token';
  at: number;
}

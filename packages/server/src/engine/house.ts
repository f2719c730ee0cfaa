/**
 * What the engine's rooms share (engine.ts wires them): the store, the clock, the audit writer,
 * the services every room may call, and the rooms themselves, reached at call time so that each
 * room is a plain class over this one context. Also the small checks every room makes.
 */
import { CountersignError, checkArgs, type AuditEventType, type AuditLeaf, type Policy, type PrecheckResult, type RequestStatus, type Role, type Transition } from '@countersign/core';
import type { AuditService } from '../audit/service.ts';
import { draft, type AuditActor, type AuditDraft, type AuditWriter } from '../audit/writer.ts';
import type { GuardService } from '../guard/service.ts';
import type { RequestRow, Store } from '../store/store.ts';
import type { AgentConfigDesk } from './agent-config.ts';
import type { Aggregates } from './aggregates.ts';
import type { Commits } from './commits.ts';
import type { Credentials } from './credentials.ts';
import type { Decisions } from './decisions.ts';
import type { Deliveries } from './deliveries.ts';
import type { Escalation } from './escalation.ts';
import type { Identity } from './identity.ts';
import type { Policies } from './policies.ts';
import type { Principal } from './principal.ts';
import type { Requests } from './requests.ts';
import type { Reviews } from './reviews.ts';
import type { ScreenModels } from './screen-models.ts';
import type { Screener } from './screener.ts';
import type { ScreeningDesk } from './screening.ts';
import type { Views } from './views.ts';
import type { Wakeups } from './wakeups.ts';
import type { PrecheckCaller } from '../precheck/caller.ts';
import type { Prechecks } from './prechecks.ts';

export const WAKE_CHANNEL = 'countersign_requests';

export const HISTORY_CACHE_MS = 1_000;

/** An audit entry as the API shows it: the leaf the Merkle tree commits to. */
export type AuditEntry = AuditLeaf;

export interface ActivePolicy {
  version: number;
  hash: string;
  source: string;
  policy: Policy;
}

/** A committed change to one request, as observers see it: the row as written and the status it left (null when new). */
export interface RequestChange {
  previousStatus: RequestStatus | null;
  row: RequestRow;
}

/** Where a reader is: their address, for the approval allowlists in `actionable` (undefined in-process, as `review` gets it). */
export interface ReaderFrom {
  readonly ip?: string | null | undefined;
}

/** The guard's facts about one pending request, for the dry run: its aggregate review and its agent's pause. */
export interface ReaderGuardFacts {
  aggregate: { id: string | null; collectingUntil: string | null } | undefined;
  paused: { until: string; reason: string } | undefined;
}

/**
 * Why a request moved up a level: its level's deadline passed, a reviewer escalated it, policy
 * started it higher (`critical`), or a cool-down left nobody free to approve it (`cooldown`).
 */
export type EscalationCause = 'sla_timeout' | 'manual' | 'critical' | 'cooldown';

/** A vote the gate accepted (engine/decisions.ts): the transition it makes and the guard's entries to append. */
export interface Gated {
  type: 'gated';
  transition: Transition;
  entries: AuditDraft[];
  /** An approval of an aggregate review: each pending member's pre-check results, gathered before the transaction (engine/aggregates.ts precheckMembers). */
  memberPrechecks?: ReadonlyMap<string, readonly PrecheckResult[]>;
}

export type Operator = Extract<Principal, { kind: 'operator' }>;

/** The engine's rooms and the services they share; one per engine, wired in its constructor. */
export interface House {
  readonly store: Store;
  readonly now: () => number;
  /** The active policy (POLICY_INVALID when none is loaded). */
  readonly policy: () => ActivePolicy;
  readonly trail: AuditService;
  readonly writer: AuditWriter;
  readonly guard: GuardService;
  readonly credentials: Credentials;
  readonly decisions: Decisions;
  readonly agentConfigs: AgentConfigDesk;
  readonly screening: ScreeningDesk;
  readonly screenModels: ScreenModels;
  readonly screener: Screener;
  readonly wakeups: Wakeups;
  readonly commits: Commits;
  /** Governance pre-checks: the validator caller the composition root built (precheck/caller.ts). */
  readonly precheckCaller: PrecheckCaller;
  // The rooms (set once, right after the context is made).
  prechecks: Prechecks;
  policies: Policies;
  identity: Identity;
  requests: Requests;
  reviews: Reviews;
  escalation: Escalation;
  aggregates: Aggregates;
  deliveries: Deliveries;
  views: Views;
}

/** An audit entry to append (audit/writer.ts redacts it and sets its actor). */
export function audit(type: AuditEventType, requestId: string | null, actor: AuditActor, data: unknown, at: number): AuditDraft {
  return draft(type, requestId, actor, data, at);
}

/** Args that break the policy's rules for the action (`actions.<name>.args`) are refused, each problem named. */
export function refuseBadArgs(policy: Policy, action: string, args: Readonly<Record<string, unknown>>, field: string): void {
  const errors = checkArgs(policy, action, args);
  if (errors.length > 0) {
    throw new CountersignError('VALIDATION_FAILED', `${field} do not fit the policy for ${action}: ${errors.join('; ')}`, { field, errors });
  }
}

/** Unknown and not-yours look the same to an agent, so ids cannot be probed. */
export function checkReadable(by: Principal, row: RequestRow | undefined, id: string): asserts row is RequestRow {
  if (!row || (by.kind === 'agent' && row.agent_id !== by.agentId)) {
    throw new CountersignError('NOT_FOUND', `no request ${id}`);
  }
}

export function checkOwner(by: Principal, row: RequestRow): void {
  if (by.kind === 'agent') return; // checkReadable already limited agents to their own
  if (row.requester_operator_id !== by.operatorId) {
    throw new CountersignError('FORBIDDEN', 'only the requesting agent may do this');
  }
}

export function requireOperator(by: Principal): asserts by is Operator {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
}

export function requireRole(by: Principal, role: Role): void {
  requireOperator(by);
  if (!by.roles.includes(role)) throw new CountersignError('FORBIDDEN', `this needs the ${role} role`);
}

/**
 * Four-eyes on admin power (issue 18). A change an admin makes through the API that loosens the
 * gate (weakens.ts) is not applied: it becomes a Countersign request of a reserved action
 * (`countersign.agent_config`), which another admin must approve through the one gate. The
 * requester is the admin (so the gate's separation check refuses their own approval, SELF_REVIEW),
 * the args are exactly what will be applied, reviewers may not modify them or pick an alternative,
 * and a clock never approves one (gate/timeout.ts). `admin.singleAdmin: true` in the policy lets
 * one admin's loosening apply at once.
 *
 * Agents can never create such a request: `CreateRequestBody` refuses every `countersign.*`
 * action and alternative (schemas.ts), and only the engine files these.
 */
import { RESERVED_ACTION_PREFIX, type Assessment, type JsonObject } from '../schemas.ts';
import type { Loosening } from './weakens.ts';
import type { Policy } from './types.ts';

/** A per-agent configuration change that loosens the gate, waiting for a second admin. */
export const AGENT_CONFIG_ACTION = `${RESERVED_ACTION_PREFIX}agent_config`;

/** The reserved actions that are admin changes (approved only by another admin, applied once when approved). */
export const ADMIN_CHANGE_ACTIONS: readonly string[] = Object.freeze([AGENT_CONFIG_ACTION]);

export function isAdminChangeAction(action: string): boolean {
  return ADMIN_CHANGE_ACTIONS.includes(action);
}

/** Whether this change must wait for a second admin: it loosens something, and the policy does not allow a single admin. */
export function needsSecondAdmin(policy: Pick<Policy, 'admin'>, loosenings: readonly Loosening[]): boolean {
  return loosenings.length > 0 && !policy.admin.singleAdmin;
}

/** The args of a `countersign.agent_config` request: what is applied when approved, and what it was judged against. */
export interface AgentConfigChangeArgs {
  readonly agent: string;
  readonly agentId: string;
  /** The whole overlay that replaces the agent's current one. */
  readonly config: JsonObject;
  /** The overlay version it was proposed over: if another change landed meanwhile, it is not applied. */
  readonly baseVersion: number;
  /** What it loosens, in words (for the card). */
  readonly loosens: readonly { key: string; why: string }[];
}

/**
 * The assessment of an admin change: always reviewed, at high risk, by one approver holding the
 * admin role (never the requester: the gate's separation check), step-up MFA as the policy's
 * high level says, the high level's SLA. Pure.
 */
export function adminChangeAssessment(policy: Policy, loosenings: readonly Loosening[], now: Date): Assessment {
  const slaMs = policy.levels.high.slaMs;
  const list = loosenings.map((l) => `${l.key}: ${l.why}`);
  return {
    riskScore: 1,
    riskLevel: 'high',
    factors: [],
    automationLevel: 'manual',
    route: 'review',
    requiresApproval: true,
    matchedRules: [
      {
        name: 'four-eyes',
        reason: `an admin change that loosens the gate needs another admin (${list.join('; ')})`,
        effects: ['review', 'approvers: admin'],
      },
    ],
    approval: { stages: [{ count: 1, role: 'admin', label: 'another admin' }], deny: 1 },
    slaSeconds: slaMs / 1000,
    slaDueAt: new Date(now.getTime() + slaMs).toISOString(),
    mfaRequired: policy.levels.high.mfa,
    reasons: ['Four-eyes on admin power: this change loosens the gate, so another admin must approve it (admin.singleAdmin is not set).', ...list],
  };
}

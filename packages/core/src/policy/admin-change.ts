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
  /** For each key it loosens, the policy file's value it is approved against (core overlay.ts): stored with it when applied. */
  readonly baselines: Readonly<Record<string, unknown>>;
  /** The admins who may sign it (ids): admins when it was proposed who are not in the proposer's hands, nor the proposer in theirs (`adminChangeSigners`). */
  readonly approvers: readonly string[];
  /** What it loosens, in words (for the card). */
  readonly loosens: readonly { key: string; why: string }[];
}

/**
 * The assessment of an admin change: always reviewed, at high risk, by one approver holding the
 * admin role (never the requester: the gate's separation check), step-up MFA as the policy's
 * high level says, the high level's SLA. Pure.
 */
export function adminChangeAssessment(policy: Policy, loosenings: readonly Loosening[], now: Date, approvers: readonly { id: string; name: string }[]): Assessment {
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
    // Who may sign is the gate's separation check (GateRequest.adminSigners, from args.approvers); the label names them.
    approval: {
      stages: [
        {
          count: 1,
          role: 'admin',
          label: approvers.length > 0 ? `another admin (${approvers.map((a) => a.name).join(', ')})` : 'another admin (none is eligible: it waits and expires; see admin.singleAdmin)',
        },
      ],
      deny: 1,
    },
    slaSeconds: slaMs / 1000,
    slaDueAt: new Date(now.getTime() + slaMs).toISOString(),
    mfaRequired: policy.levels.high.mfa,
    // `high: mfa: webauthn`: a change that loosens the gate is approved with a passkey only, like any high-risk request.
    ...(policy.levels.high.mfa && policy.levels.high.webauthn === true ? { webauthnRequired: true } : {}),
    reasons: ['Four-eyes on admin power: this change loosens the gate, so another admin must approve it (admin.singleAdmin is not set).', ...list],
  };
}

/**
 * One edge of operator lineage (migration 017's `operator_lineage`, as the shell reads it):
 *
 * - `holds`: `issuerId` holds or could hold `operatorId`'s credential: it created it and
 *   `operatorId` has not rotated its own token since (the shell drops that edge then), or it
 *   rotated `operatorId`'s token, or held it when `operatorId` was granted admin (those never
 *   end: the holder can do the "own" rotation itself);
 * - `madeAdmin`: `issuerId` created `operatorId` as an admin or granted it the role. It never
 *   ends: whoever made an admin may have made it for an identity they play, and a self-rotation
 *   can be done by whoever holds the token at the time.
 */
export interface LineageEdge {
  readonly operatorId: string;
  readonly issuerId: string;
  readonly kind: 'holds' | 'madeAdmin';
}

function walk(from: Iterable<string>, next: Map<string, string[]>): Set<string> {
  const seen = new Set<string>(from);
  const frontier = [...seen];
  while (frontier.length > 0) {
    for (const n of next.get(frontier.pop()!) ?? []) {
      if (!seen.has(n)) {
        seen.add(n);
        frontier.push(n);
      }
    }
  }
  return seen;
}

function index(edges: readonly LineageEdge[], key: (e: LineageEdge) => string, value: (e: LineageEdge) => string, only?: LineageEdge['kind']): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const e of edges) if (only === undefined || e.kind === only) m.set(key(e), [...(m.get(key(e)) ?? []), value(e)]);
  return m;
}

/**
 * Everyone who holds or could hold `operatorId`'s credential, itself included: the holders of its
 * current secret, the holders of *theirs* (who can act as them and rotate the token again), and
 * so on. Pure.
 */
export function actingAs(operatorId: string, edges: readonly LineageEdge[]): Set<string> {
  return walk([operatorId], index(edges, (e) => e.operatorId, (e) => e.issuerId, 'holds'));
}

/**
 * Whether two operators are one for four-eyes (review F4, review2 F1/F1b): someone who can act
 * as either one, directly or transitively, holds or could hold the other's credential or made the
 * other admin (over both kinds of edge). Two way: an admin who rotated the proposer's token is as
 * much the proposer as an admin the proposer created. Two admins merely made by the same admin,
 * who have each rotated their own token since, are not (that is how four-eyes is set up). Pure.
 */
export function sameHands(a: string, b: string, edges: readonly LineageEdge[]): boolean {
  if (a === b) return true;
  const down = index(edges, (e) => e.issuerId, (e) => e.operatorId);
  return walk(actingAs(a, edges), down).has(b) || walk(actingAs(b, edges), down).has(a);
}

/**
 * Who may sign an admin change by `proposerId`: the active admins (at the time asked: at
 * proposal, then again at each vote, intersected with the proposal's list) other than the
 * proposer and anyone in the same hands (`sameHands`). Empty: nobody may, and the change waits
 * and expires (fail closed); `admin.singleAdmin: true` is the policy's answer for a lone admin.
 */
export function adminChangeSigners(proposerId: string, admins: readonly { id: string; name: string }[], edges: readonly LineageEdge[]): { id: string; name: string }[] {
  return admins.filter((a) => !sameHands(proposerId, a.id, edges));
}

import type { PrecheckConfig } from '../precheck/types.ts';
/**
 * The resolved policy: what the policy file means once it has been validated, merged over the
 * built-in defaults and normalised (durations in milliseconds, one-or-many lists as lists,
 * factor weights summing to 1). Every consumer (risk assessor, rule engine, escalation,
 * guard) reads this shape, never the raw file, so the file's conveniences stay in load.ts.
 *
 * A Policy is plain, deeply frozen data (no RegExp, Map or class instances): it can be shared
 * between concurrent evaluations, hashed and serialised as JSON without surprises.
 */
import type { ApproverSpec, RiskLevel, Role } from '../schemas.ts';
import type { ScreeningConfig } from '../screen/schema.ts';

export const RISK_FACTOR_NAMES = [
  'severity',
  'targetCriticality',
  'confidence',
  'reversibility',
  'impactScope',
  'history',
  'timeSensitivity',
] as const;
export type RiskFactorName = (typeof RISK_FACTOR_NAMES)[number];

export interface ActionTraits {
  /** Inherent severity of the action, 0 (harmless) to 1 (worst case). */
  readonly weight: number;
  /** `true` when the effect can be undone (unblock, re-enable); absent when unknown. */
  readonly reversible?: boolean;
  /** Free-form grouping; `containment`, `notification` and `investigation` count as protective. */
  readonly category?: string;
  /** What the action's args must look like (`checkArgs`); absent: anything. */
  readonly args?: Readonly<Record<string, ArgRule>>;
  /** Args not named under `args` are refused. */
  readonly strictArgs?: boolean;
  /** Where in the args the request's value (amount) is: keys joined by `.` (`amount`, `payment.total`); see value.ts. */
  readonly value?: string;
}

export interface ArgRule {
  readonly type: 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array';
  readonly required?: boolean;
  readonly enum?: readonly (string | number | boolean)[];
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly maxLength?: number;
}

export interface LevelPolicy {
  readonly slaMs: number;
  readonly autoApprove: boolean;
  readonly mfa: boolean;
  /** `mfa: webauthn`: the step-up must be a WebAuthn assertion (TOTP is refused); implies `mfa`. */
  readonly webauthn?: boolean;
  /** Distinct approvals needed (quorum) when a request at this level is reviewed. */
  readonly approvals: number;
  /** Who must approve at this level when no rule names approvers (each is its own stage). */
  readonly approvers?: readonly ApproverSpec[];
  /** Rejections that decide at once; absent means 1. */
  readonly deny?: number;
  /** Modified args (or an alternative) need another approver besides the one who modified them. */
  readonly modifiedNeedsSecondReviewer?: boolean;
  /** How long an approval may be claimed for execution after it is decided (`approvalValidFor`, default 1 hour). */
  readonly approvalValidMs: number;
  /** Channels told of every request at this level that goes to review, besides its escalation level's (`levels.<risk>.notify`). */
  readonly notify: readonly string[];
  /** The escalation level reviewed requests at this risk level start at (`levels.<risk>.startLevel`); absent: 1, or a rule's. */
  readonly startLevel?: number;
}

export interface TargetRule {
  /** Case-insensitive glob: `*` within a path segment, `**` across segments, `?` one character. */
  readonly match: string;
  readonly criticality: RiskLevel;
}

/** A local-time window; days are 0 = Sunday … 6 = Saturday, minutes count from local midnight. */
export interface TimeWindow {
  readonly days?: readonly number[];
  readonly hours?: { readonly from: number; readonly to: number };
  readonly timeZone: string;
  /** The window as written, for reasons shown to reviewers. */
  readonly label: string;
}

export interface RuleConditions {
  readonly action?: readonly string[];
  readonly actionMatches?: readonly string[];
  readonly agent?: readonly string[];
  readonly contentPattern?: readonly string[];
  readonly valueAtLeast?: number;
  readonly riskAtLeast?: RiskLevel;
  readonly confidenceBelow?: number;
  readonly outside?: TimeWindow;
  readonly within?: TimeWindow;
}

/** Rules only ever tighten: every effect adds a requirement, none removes one. */
export interface RuleEffects {
  readonly review?: true;
  readonly block?: true;
  readonly riskAtLeast?: RiskLevel;
  readonly approvers?: readonly ApproverSpec[];
  readonly approvals?: number;
  readonly mfa?: true;
  /** 1-based index into `escalation.levels` where escalation starts. */
  readonly startLevel?: number;
}

export interface PolicyRule {
  readonly name: string;
  readonly description?: string;
  readonly when: RuleConditions;
  readonly then: RuleEffects;
}

export interface EscalationLevel {
  /** The level's role (and anyone more senior); null when the level names only operators or groups. */
  readonly role: Role | null;
  /** Operators (ids or names) this level names: told and shown the request; they sign only what the gate lets them, unless `finalAuthority`. */
  readonly operators: readonly string[];
  /** Groups (operators' `groups`) this level names, as `operators`. */
  readonly groups: readonly string[];
  /** How long a request waits at this level before escalating further: milliseconds, or `sla` for the request's SLA. */
  readonly after: number | 'sla';
  readonly notify: readonly string[];
  /** The last level only: its named operators and group members may decide alone, whatever the quorum (escalation/final-authority.ts). */
  readonly finalAuthority: boolean;
}

/** One risk level's settings an agent has of its own (`agents.<name>.levels.<risk>`); absent keys follow `levels.<risk>`. */
export interface AgentLevelPolicy {
  readonly autoApprove?: boolean;
  readonly slaMs?: number;
  readonly mfa?: boolean;
  /** With `mfa`: WebAuthn only (an overlay's merge writes it; see policy/overlay.ts). */
  readonly webauthn?: boolean;
}

export interface AgentPolicy {
  /** `false`: every request from this agent is refused (AGENT_DISABLED). Absent means enabled. */
  readonly enabled?: boolean;
  readonly requireApproval: readonly string[];
  readonly block: readonly string[];
  readonly minConfidence?: number;
  readonly limits: { readonly perMinute?: number; readonly perHour?: number };
  /**
   * Slicing detection after this agent's creates (at most once a minute): record an alert, also
   * pause the agent, force review of its requests, or aggregate them into one review, for
   * `guard.slicing.holdMinutes`.
   */
  readonly onSlicing?: SlicingResponse;
  /** Overrides `guard.whilePaused` for this agent. */
  readonly whilePaused?: WhilePaused;
  /** Per risk level, over `levels` (policyForAgent applies them). */
  readonly levels?: Readonly<Partial<Record<RiskLevel, AgentLevelPolicy>>>;
  /** Approver velocity on this agent's requests, over `guard.velocity`. */
  readonly velocity?: Partial<GuardPolicy['velocity']>;
  /** Approver cool-down on this agent's requests, over `guard.cooldown`. */
  readonly cooldown?: Partial<GuardPolicy['cooldown']>;
  /** This agent's slicing hold and collection time, over `guard.slicing`. */
  readonly slicing?: Partial<GuardPolicy['slicing']>;
}

export type SlicingResponse = 'alert' | 'pause' | 'review' | 'aggregate';
/** A paused agent's new requests: refused (AGENT_PAUSED), or held for review and approvable only once the pause ends. */
export type WhilePaused = 'refuse' | 'hold';

export interface GuardPolicy {
  readonly notify: readonly string[];
  readonly velocity: { readonly perHour: number; readonly perDay: number; readonly riskLevels: readonly RiskLevel[] };
  readonly cooldown: { readonly threshold: number; readonly windowMinutes: number; readonly durationMinutes: number; readonly riskLevels: readonly RiskLevel[] };
  /** How long a slicing response lasts, and how long an aggregate review collects requests. */
  readonly slicing: { readonly holdMinutes: number; readonly collectSeconds: number };
  readonly whilePaused: WhilePaused;
  /** The create limit of every agent without `agents.<name>.limits` of its own. */
  readonly agentLimits: { readonly perMinute?: number; readonly perHour?: number };
}

/** A user-defined content pattern, kept as source so the policy stays plain data. */
export interface ContentPatternSource {
  readonly regex: string;
  readonly flags: string;
}

export interface Policy {
  readonly actions: {
    readonly defaultWeight: number;
    readonly byName: Readonly<Record<string, ActionTraits>>;
  };
  readonly automation: { readonly full: number; readonly supervised: number; readonly advisory: number };
  readonly levels: Readonly<Record<RiskLevel, LevelPolicy>>;
  readonly riskThresholds: { readonly medium: number; readonly high: number; readonly critical: number };
  /** Normalised to sum to 1, so a score stays within 0..1 whatever the file wrote. */
  readonly riskFactors: Readonly<Record<RiskFactorName, number>>;
  readonly targets: readonly TargetRule[];
  readonly rules: readonly PolicyRule[];
  readonly requireApproval: readonly string[];
  readonly dangerousActions: readonly string[];
  readonly escalation: {
    readonly levels: readonly EscalationLevel[];
    readonly onFinalTimeout: 'reject' | 'approve';
  };
  readonly agents: Readonly<Record<string, AgentPolicy>>;
  readonly channels: Readonly<Record<string, unknown>>;
  /** Protecting reviewers (`guard:`): channels told of guard events, approver velocity limits and cool-downs. */
  readonly guard: GuardPolicy;
  /** Prompt-injection screening (`screening:`), resolved with SecPrompt's bands as the default. */
  readonly screening: ScreeningConfig;
  readonly contentPatterns: Readonly<Record<string, ContentPatternSource>>;
  readonly auditRetentionDays: number;
  /** Four-eyes on admin power: `singleAdmin` lets one admin's loosening of the gate apply without a second admin. */
  readonly admin: { readonly singleAdmin: boolean };
  /** Governance pre-checks (`prechecks:`): validators called before routing, in file order. */
  readonly prechecks: readonly PrecheckConfig[];
}

export interface PolicyError {
  /** Where in the file, e.g. `levels.critical.sla` or `rules[2].when.contentPattern`; `(yaml)` for syntax. */
  readonly path: string;
  readonly message: string;
}

export type PolicyResult = { ok: true; policy: Policy } | { ok: false; errors: PolicyError[] };

/**
 * Past outcomes of this action by this agent, counted by the caller (the store). `total`
 * includes requests still pending; the other four are outcomes and may overlap (a request is
 * first approved, then succeeds).
 */
export interface HistoryStats {
  readonly total: number;
  readonly approved: number;
  readonly rejected: number;
  readonly succeeded: number;
  readonly failed: number;
}

export const EMPTY_HISTORY: HistoryStats = Object.freeze({ total: 0, approved: 0, rejected: 0, succeeded: 0, failed: 0 });

/**
 * The policy file's shape (what an admin writes in `countersign.yaml`), as zod schemas.
 *
 * Every object is strict: an unknown key is an error, because a typo such as `actionMatch:` or
 * `revew: true` would otherwise silently disable the protection it was meant to add. The one
 * exception is `channels`, a free-form object whose shape belongs to the channel adapters.
 *
 * Every key is optional here: a file is merged over the built-in defaults (load.ts), and checks
 * that span keys or need the merged result (band order, references to patterns, rule names)
 * live in load.ts too. Field-level checks (durations, time zones, regexes) live here so that
 * they are reported together with type errors in one pass.
 */
import { z } from 'zod';
import { PrechecksFile } from '../precheck/schema.ts';
import { parseDuration } from '../duration.ts';
import { ActionName, ApproverSpec, RiskLevel, Role } from '../schemas.ts';
import safeRegex from 'safe-regex2';
import { ScreeningPolicy } from '../screen/schema.ts';
import { compileLinear } from './linear.ts';
import { compileUserPattern } from './patterns.ts';
import { isValidTimeZone, parseDays, parseHours } from './timewindow.ts';

const Unit = z
  .number({ error: 'expected a number from 0 to 1' })
  .min(0, { error: 'must be from 0 to 1' })
  .max(1, { error: 'must be from 0 to 1' });

const Duration = z.string({ error: 'expected a duration like 30s, 15m, 2h or 7d' }).refine((s) => parseDuration(s) !== undefined, {
  error: 'expected a duration like 30s, 15m, 2h or 7d',
});

/** A value or a non-empty list of values; each item is checked with `item`, errors at `[i]`. */
function oneOrMany(item: z.ZodType<string>, what: string) {
  return z
    .union([z.string(), z.array(z.string())], { error: `expected ${what} or a list of them` })
    .superRefine((value, ctx) => {
      const items = typeof value === 'string' ? [value] : value;
      if (items.length === 0) ctx.addIssue({ code: 'custom', message: 'the list is empty, so this condition could never match' });
      items.forEach((v, i) => {
        const r = item.safeParse(v);
        if (!r.success) {
          for (const issue of r.error.issues) {
            ctx.addIssue({ code: 'custom', message: issue.message, path: typeof value === 'string' ? [] : [i] });
          }
        }
      });
    });
}

export const PatternName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/, 'pattern names use letters, digits and _ and start with a letter');

export const RuleName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/, 'rule names use letters, digits, _ . - (at most 100)');

/** Keywords for `actionMatches` / `dangerousActions`: one or more name segments, e.g. `delete`, `drop_table`. */
export const ActionKeyword = z
  .string()
  .regex(/^[A-Za-z0-9]+(?:[_.:-][A-Za-z0-9]+)*$/, 'a keyword is a word (or words joined by _ . : -) from action names');

/** One argument's rule (`actions.<name>.args.<key>`): its type, and optionally what values it may take. */
const ArgRuleFile = z
  .strictObject({
    type: z.enum(['string', 'number', 'integer', 'boolean', 'object', 'array'], { error: 'expected string, number, integer, boolean, object or array' }),
    required: z.boolean().optional(),
    enum: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1).max(500).optional(),
    pattern: z.string().min(1).max(500).optional(),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    maxLength: z.int().min(0).max(1_000_000).optional(),
  })
  .superRefine((rule, ctx) => {
    if (rule.pattern !== undefined) {
      const linear = compileLinear(rule.pattern, 'u');
      // It runs on RE2 (linear time): a pattern that needs backtracking (backreferences, lookahead) is refused here.
      if (typeof linear === 'string' && !linear.startsWith('not a valid regular expression')) ctx.addIssue({ code: 'custom', path: ['pattern'], message: linear });
      try {
        new RegExp(rule.pattern, 'u');
        // Agents choose the text this runs on: a pattern that can backtrack exponentially would let one request stall the server.
        if (!safeRegex(rule.pattern, { limit: 1_000_000 })) {
          ctx.addIssue({
            code: 'custom',
            path: ['pattern'],
            message: 'the pattern repeats a group that itself repeats (e.g. (a+)+ or (x-?)*), which can take exponential time on hostile input; write it without nesting, e.g. ^[a-z0-9-]+$',
          });
        }
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['pattern'], message: `not a valid regular expression: ${(err as Error).message}` });
      }
      if (rule.type !== 'string') ctx.addIssue({ code: 'custom', path: ['pattern'], message: 'pattern applies to string arguments only' });
    }
    if ((rule.minimum !== undefined || rule.maximum !== undefined) && rule.type !== 'number' && rule.type !== 'integer') {
      ctx.addIssue({ code: 'custom', path: ['minimum'], message: 'minimum and maximum apply to number or integer arguments only' });
    }
    if (rule.maxLength !== undefined && rule.type !== 'string' && rule.type !== 'array') {
      ctx.addIssue({ code: 'custom', path: ['maxLength'], message: 'maxLength applies to string or array arguments only' });
    }
  });

const ActionTraitsFile = z.strictObject({
  weight: Unit.optional(),
  reversible: z.boolean().optional(),
  category: z.string().min(1).max(100).optional(),
  /** What the action's args must look like; checked on create and on a reviewer's modified args. */
  args: z.record(z.string().min(1).max(200), ArgRuleFile).optional(),
  /** With `true`, args not named under `args` are refused. */
  strictArgs: z.boolean().optional(),
  /** Where the request's value is in its args: keys joined by `.`, e.g. `amount` or `payment.total` (value.ts). */
  value: z
    .string()
    .max(200)
    .regex(/^[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*$/, 'a path into args: keys joined by ".", e.g. amount or payment.total')
    .optional(),
});

const ActionsFile = z.object({ defaultWeight: Unit.optional() }).catchall(ActionTraitsFile);

const LevelFile = z.strictObject({
  sla: Duration.optional(),
  autoApprove: z.boolean().optional(),
  /** Step-up at approval: true (a TOTP code or a WebAuthn assertion), or `webauthn` (a WebAuthn assertion only: phishing-resistant). */
  mfa: z.union([z.boolean(), z.literal('webauthn')], { error: 'must be true, false or webauthn (a passkey or security key, approved in the dashboard)' }).optional(),
  approvals: z.int().min(1).max(20).optional(),
  approvers: z.array(ApproverSpec).min(1).max(10).optional(),
  /** Rejections that decide at once (Teleport's deny threshold); default 1. */
  deny: z.int().min(1).max(20).optional(),
  /** A payload a reviewer modified (args or an alternative) needs one more approval from someone else. */
  modifiedNeedsSecondReviewer: z.boolean().optional(),
  /** How long an approval at this level may still be claimed for execution (its receipt's `expiresAt`); default 1h. */
  approvalValidFor: Duration.refine((d) => {
    const ms = parseDuration(d);
    return ms === undefined || (ms >= 1000 && ms <= 30 * 86_400_000);
  }, { error: 'approvalValidFor must be from 1s to 30d' }).optional(),
  /** Channels (names under `channels`) told of every request at this risk level that goes to review, besides its escalation level's (Tork's notifyAdmin). */
  notify: z.array(z.string().min(1).max(100), { error: 'expected a list of channel names' }).max(20).optional(),
  /** The escalation level requests at this risk level start at (1 = the first), e.g. `critical: { startLevel: 2 }`. */
  startLevel: z.int({ error: 'expected a level number (1 = the first escalation level)' }).min(1, { error: 'levels are numbered from 1' }).optional(),
});

const TimeWindowFile = z
  .strictObject({
    days: z
      .union([z.string(), z.array(z.string()).min(1)], { error: 'expected days like "mon-fri" or a list of days' })
      .superRefine((v, ctx) => {
        const r = parseDays(v);
        if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
      })
      .optional(),
    hours: z
      .string({ error: 'expected hours like "09:00-17:00"' })
      .superRefine((v, ctx) => {
        const r = parseHours(v);
        if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
      })
      .optional(),
    timeZone: z
      .string({ error: 'a time window needs an IANA time zone, e.g. Europe/London or UTC' })
      .refine(isValidTimeZone, { error: 'unknown time zone: use an IANA name such as Europe/London, America/New_York or UTC' }),
  })
  .refine((w) => w.days !== undefined || w.hours !== undefined, { error: 'a time window needs days, hours or both' });

const WhenFile = z.strictObject({
  action: oneOrMany(ActionName, 'an action name').optional(),
  actionMatches: oneOrMany(ActionKeyword, 'a keyword').optional(),
  agent: oneOrMany(z.string().min(1).max(200), 'an agent name').optional(),
  contentPattern: oneOrMany(PatternName, 'a content pattern name').optional(),
  valueAtLeast: z.number().min(0).optional(),
  riskAtLeast: RiskLevel.optional(),
  confidenceBelow: z.number().gt(0).max(1).optional(),
  outside: TimeWindowFile.optional(),
  within: TimeWindowFile.optional(),
});

const onlyTrue = (key: string) =>
  z.literal(true, { error: `only \`${key}: true\` is meaningful: rules add requirements, they never remove them` });

const ThenFile = z
  .strictObject({
    review: onlyTrue('review').optional(),
    block: onlyTrue('block').optional(),
    riskAtLeast: RiskLevel.optional(),
    approvers: z.array(ApproverSpec).min(1).max(10).optional(),
    approvals: z.int().min(1).max(20).optional(),
    mfa: onlyTrue('mfa').optional(),
    startLevel: z.int().min(1).optional(),
  })
  .refine((t) => Object.keys(t).length > 0, { error: 'a rule needs at least one effect' });

export const RuleFile = z.strictObject({
  name: RuleName,
  description: z.string().max(500).optional(),
  /** `false` turns off a default rule of the same name. */
  enabled: z.boolean().optional(),
  when: WhenFile.optional(),
  then: ThenFile.optional(),
});

const EscalationRole = Role.refine((r) => r !== 'auditor', { error: 'auditors cannot approve; escalate to a reviewing role' });

/** Operator ids or names, or group names, on an escalation level: the people that level names. */
const PeopleList = (what: string) =>
  z
    .array(z.string({ error: `expected ${what}` }).min(1).max(100), { error: `expected a list of ${what}` })
    .min(1, { error: `the list is empty: leave ${what === 'operator ids or names' ? 'operators' : 'groups'} out instead` })
    .max(50)
    .superRefine((items, ctx) => {
      const seen = new Set<string>();
      items.forEach((v, i) => {
        if (seen.has(v)) ctx.addIssue({ code: 'custom', path: [i], message: `"${v}" is listed twice` });
        seen.add(v);
      });
    });

/**
 * One escalation level: who is told and shown the request when it gets there (a role and anyone
 * more senior, named operators, members of groups, and the level's `notify` channels). Naming
 * people widens who is told, never who may sign (the gate, issue 12), except on the one
 * `finalAuthority` level, whose named operators and group members may decide alone.
 */
const EscalationLevelFile = z
  .strictObject({
    role: EscalationRole.optional(),
    operators: PeopleList('operator ids or names').optional(),
    groups: PeopleList('group names').optional(),
    after: z.union([z.literal('sla'), Duration], { error: 'expected `sla` or a duration like 10m' }),
    notify: z.array(z.string().min(1).max(100)).max(20).optional(),
    finalAuthority: z.boolean({ error: 'expected true or false' }).optional(),
  })
  .superRefine((l, ctx) => {
    if (l.role === undefined && l.operators === undefined && l.groups === undefined) {
      ctx.addIssue({ code: 'custom', message: 'an escalation level names a role, operators, groups, or several of them' });
    }
    if (l.finalAuthority === true && l.operators === undefined && l.groups === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['finalAuthority'],
        message: 'a finalAuthority level must name the people who may decide alone (operators, groups or both); a role alone is not enough',
      });
    }
  });

const EscalationFile = z
  .strictObject({
    levels: z.array(EscalationLevelFile).max(10).optional(),
    onFinalTimeout: z.enum(['reject', 'approve'], { error: 'expected reject or approve' }).optional(),
  })
  .superRefine((e, ctx) => {
    const levels = e.levels ?? [];
    levels.forEach((l, i) => {
      if (l.finalAuthority !== true) return;
      if (i !== levels.length - 1) {
        ctx.addIssue({
          code: 'custom',
          path: ['levels', i, 'finalAuthority'],
          message: `only the last escalation level may be finalAuthority (it never escalates further); this is level ${i + 1} of ${levels.length}`,
        });
      }
    });
  });

const WhilePaused = z.enum(['refuse', 'hold'], { error: 'expected refuse or hold' });

const GuardRiskLevels = z.array(RiskLevel).max(4);

/** Approver velocity thresholds (`guard.velocity`, and per agent `agents.<name>.velocity`). */
const VelocityFile = z.strictObject({
  perHour: z.int().min(1).optional(),
  perDay: z.int().min(1).optional(),
  riskLevels: GuardRiskLevels.optional(),
});

/** Approver cool-down thresholds (`guard.cooldown`, and per agent `agents.<name>.cooldown`). */
const CooldownFile = z.strictObject({
  threshold: z.int().min(1).optional(),
  window: Duration.optional(),
  duration: Duration.optional(),
  riskLevels: GuardRiskLevels.optional(),
});

/** How long a slicing response lasts and how long an aggregate collects (`guard.slicing`, and per agent). */
const SlicingFile = z.strictObject({ hold: Duration.optional(), collect: Duration.optional() });

/** An agent's create limits (`guard.agentLimits`, and per agent `agents.<name>.limits`). */
const CreateLimitsFile = z.strictObject({ perMinute: z.int().min(1).optional(), perHour: z.int().min(1).optional() });

/** One risk level's settings an agent may have of its own: auto-approval, the review deadline (its timeout) and step-up MFA. */
const AgentLevelFile = z.strictObject({
  autoApprove: z.boolean().optional(),
  sla: Duration.optional(),
  mfa: z.boolean().optional(),
});

/**
 * One agent's settings (`agents.<name>` in the policy file, and the per-agent overlay written
 * through `PUT /v1/agents/:name/config`, which is validated by this same schema: agent-config.ts).
 */
export const AgentFile = z.strictObject({
  /** `false` refuses every request from this agent (AGENT_DISABLED). */
  enabled: z.boolean().optional(),
  requireApproval: z.array(ActionName).optional(),
  block: z.array(ActionName).optional(),
  minConfidence: Unit.optional(),
  limits: CreateLimitsFile.optional(),
  /** Per risk level, over `levels.<risk>`: autoApprove, sla (the review timeout), mfa. */
  levels: z
    .strictObject({ low: AgentLevelFile.optional(), medium: AgentLevelFile.optional(), high: AgentLevelFile.optional(), critical: AgentLevelFile.optional() })
    .optional(),
  /** Approver velocity on this agent's requests, over `guard.velocity`. */
  velocity: VelocityFile.optional(),
  /** Approver cool-down on this agent's requests, over `guard.cooldown`. */
  cooldown: CooldownFile.optional(),
  /**
   * What a slicing alert about this agent does: `alert` (an audit entry and notice), `pause` (and
   * pause it), `review` (its requests need human review) or `aggregate` (its pending and coming
   * requests are reviewed together, as one), each for `guard.slicing.hold`.
   */
  onSlicing: z.enum(['alert', 'pause', 'review', 'aggregate'], { error: 'expected alert, pause, review or aggregate' }).optional(),
  /** This agent's slicing hold and aggregate collection time, over `guard.slicing`. */
  slicing: SlicingFile.optional(),
  /** This agent's requests while it is paused: overrides `guard.whilePaused`. */
  whilePaused: WhilePaused.optional(),
});
export type AgentFile = z.output<typeof AgentFile>;

/** Who may change what the gate does (`admin:`): with `singleAdmin: true`, one admin's loosening applies at once (no second admin). */
const AdminFile = z.strictObject({
  singleAdmin: z.boolean().optional(),
});


/** Protecting reviewers: who hears guard events, and the approver velocity and cool-down thresholds. */
const GuardFile = z.strictObject({
  /** Channels (names under `channels`) told of slicing alerts, agent pauses/resumes and cool-downs. */
  notify: z.array(z.string().min(1).max(100)).max(20).optional(),
  velocity: VelocityFile.optional(),
  cooldown: CooldownFile.optional(),
  /** How long a slicing response (pause, review, aggregate) lasts, and how long an aggregate review collects requests before it is put together. */
  slicing: SlicingFile.optional(),
  /** A paused agent's requests: `refuse` them (AGENT_PAUSED), or `hold` them for review, approvable once the pause ends. */
  whilePaused: WhilePaused.optional(),
  /** Every agent's create limit unless `agents.<name>.limits` sets its own (default 600 a minute): over it, RATE_LIMITED. */
  agentLimits: CreateLimitsFile.optional(),
});

const ContentPatternFile = z
  .union([z.string(), z.strictObject({ regex: z.string(), flags: z.string().optional() })], {
    error: 'expected a regular expression, or { regex, flags }',
  })
  .superRefine((v, ctx) => {
    const source = typeof v === 'string' ? { regex: v, flags: '' } : { regex: v.regex, flags: v.flags ?? '' };
    const r = compileUserPattern(source);
    if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
  });

export const PolicyFile = z.strictObject({
  actions: ActionsFile.optional(),
  automation: z.strictObject({ full: Unit.optional(), supervised: Unit.optional(), advisory: Unit.optional() }).optional(),
  levels: z
    .strictObject({ low: LevelFile.optional(), medium: LevelFile.optional(), high: LevelFile.optional(), critical: LevelFile.optional() })
    .optional(),
  riskThresholds: z
    .strictObject({ medium: z.number().gt(0).max(1).optional(), high: z.number().gt(0).max(1).optional(), critical: z.number().gt(0).max(1).optional() })
    .optional(),
  riskFactors: z
    .strictObject({
      severity: Unit.optional(),
      targetCriticality: Unit.optional(),
      confidence: Unit.optional(),
      reversibility: Unit.optional(),
      impactScope: Unit.optional(),
      history: Unit.optional(),
      timeSensitivity: Unit.optional(),
    })
    .optional(),
  targets: z.array(z.strictObject({ match: z.string().min(1).max(500), criticality: RiskLevel })).max(1000).optional(),
  rules: z.array(RuleFile).max(500).optional(),
  requireApproval: z.array(ActionName).optional(),
  dangerousActions: z.array(ActionKeyword).optional(),
  escalation: EscalationFile.optional(),
  agents: z.record(z.string().min(1).max(200), AgentFile).optional(),
  channels: z.record(z.string(), z.unknown(), { error: 'expected a mapping of channel settings' }).optional(),
  guard: GuardFile.optional(),
  /** Prompt-injection screening (screen/schema.ts): bands per channel, what each action does to a request, the byte budget, the learning loop. */
  screening: ScreeningPolicy.optional(),
  contentPatterns: z.record(PatternName, ContentPatternFile).optional(),
  auditRetentionDays: z.int().min(1).max(36_500).optional(),
  /** Four-eyes on admin power (admin-change.ts): whether one admin alone may loosen the gate. */
  admin: AdminFile.optional(),
  /** Governance pre-checks (precheck/schema.ts): validators called before routing. */
  prechecks: PrechecksFile.optional(),
});
export type PolicyFile = z.output<typeof PolicyFile>;
export type RuleFile = z.output<typeof RuleFile>;

/**
 * Per-agent configuration: `agents.<name>` in the policy file, and the overlay an admin writes
 * through `PUT /v1/agents/:name/config` (issue 18). Both are the same shape (schema.ts
 * `AgentFile`) and are judged by the same checks, so an overlay is "validated exactly like the
 * policy file": the errors name the same paths (`agents.billing-bot.levels.high.autoApprove`).
 *
 * Three pure steps, in this order, wherever an agent's request is judged:
 * 1. `withAgentOverlay(policy, name, overlay, baselines)` (overlay.ts): the overlay over what the
 *    file sets for the agent, key by key, by one rule: never looser than a later tightening of
 *    the file (the stricter of both, or an approved loosening while the file keeps its baseline);
 * 2. `policyForAgent(policy, name)`: the agent's own level, velocity, cool-down, slicing,
 *    whilePaused and limit settings put in place of the global ones, so `evaluate`, the gate and
 *    the guard read one Policy and need no per-agent branches;
 * 3. `effectiveAgentConfig(...)` (overlay.ts): what applies to the agent, each value with where it came from
 *    (the overlay, the file's `agents.<name>`, the file's global section, or the built-in default).
 *
 * @example
 *   const checked = validateAgentConfig('billing-bot', { levels: { medium: { autoApprove: false } } });
 *   if (checked.ok) evaluate(request, agentPolicy(policy, 'billing-bot', checked.config), history, now);
 */
import { parseDuration } from '../duration.ts';
import { RISK_LEVELS, type RiskLevel } from '../schemas.ts';
import { normalizeActionName } from './names.ts';
import { AgentFile } from './schema.ts';
import type { AgentLevelPolicy, AgentPolicy, GuardPolicy, Policy, PolicyError } from './types.ts';
import { deepFreeze, isPlainObject, own } from './util.ts';

export type AgentConfig = AgentFile;

/** A resolved agent setting as it may be partly given: only the keys written are present. */
type PartialAgent = { -readonly [K in keyof AgentPolicy]?: AgentPolicy[K] };

const ms = (d: string | undefined): number | undefined => (d === undefined ? undefined : parseDuration(d));
const defined = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

/** The keys written in one `agents.<name>` mapping (file or overlay), resolved (names in normal form, durations in ms or minutes). */
export function resolveAgentPartial(a: AgentFile): PartialAgent {
  const out: PartialAgent = {};
  if (a.enabled !== undefined) out.enabled = a.enabled;
  if (a.requireApproval !== undefined) out.requireApproval = [...new Set(a.requireApproval.map(normalizeActionName))];
  if (a.block !== undefined) out.block = [...new Set(a.block.map(normalizeActionName))];
  if (a.minConfidence !== undefined) out.minConfidence = a.minConfidence;
  if (a.limits !== undefined) out.limits = defined({ perMinute: a.limits.perMinute, perHour: a.limits.perHour });
  if (a.onSlicing !== undefined) out.onSlicing = a.onSlicing;
  if (a.whilePaused !== undefined) out.whilePaused = a.whilePaused;
  if (a.levels !== undefined) {
    const levels: Partial<Record<RiskLevel, AgentLevelPolicy>> = {};
    for (const lvl of RISK_LEVELS) {
      const l = a.levels[lvl];
      if (l !== undefined) levels[lvl] = defined({ autoApprove: l.autoApprove, slaMs: ms(l.sla), mfa: l.mfa });
    }
    out.levels = levels;
  }
  if (a.velocity !== undefined) out.velocity = defined({ perHour: a.velocity.perHour, perDay: a.velocity.perDay, riskLevels: a.velocity.riskLevels });
  if (a.cooldown !== undefined) {
    const window = ms(a.cooldown.window);
    const duration = ms(a.cooldown.duration);
    out.cooldown = defined({
      threshold: a.cooldown.threshold,
      windowMinutes: window === undefined ? undefined : window / 60_000,
      durationMinutes: duration === undefined ? undefined : duration / 60_000,
      riskLevels: a.cooldown.riskLevels,
    });
  }
  if (a.slicing !== undefined) {
    const hold = ms(a.slicing.hold);
    const collect = ms(a.slicing.collect);
    out.slicing = defined({ holdMinutes: hold === undefined ? undefined : hold / 60_000, collectSeconds: collect === undefined ? undefined : collect / 1000 });
  }
  return out;
}

/** `over` on `base`, as the policy file merges: mappings key by key, lists and values replace. */
function mergeAgent(base: AgentPolicy | undefined, over: PartialAgent): AgentPolicy {
  const levels: Partial<Record<RiskLevel, AgentLevelPolicy>> = {};
  for (const lvl of RISK_LEVELS) {
    const merged = { ...base?.levels?.[lvl], ...over.levels?.[lvl] };
    if (Object.keys(merged).length > 0) levels[lvl] = merged;
  }
  const section = <T extends object>(x: T | undefined, y: T | undefined): T | undefined => {
    const merged = { ...x, ...y } as T;
    return Object.keys(merged).length > 0 ? merged : undefined;
  };
  const velocity = section(base?.velocity, over.velocity);
  const cooldown = section(base?.cooldown, over.cooldown);
  const slicing = section(base?.slicing, over.slicing);
  const enabled = over.enabled ?? base?.enabled;
  const minConfidence = over.minConfidence ?? base?.minConfidence;
  const onSlicing = over.onSlicing ?? base?.onSlicing;
  const whilePaused = over.whilePaused ?? base?.whilePaused;
  return {
    ...(enabled !== undefined ? { enabled } : {}),
    requireApproval: over.requireApproval ?? base?.requireApproval ?? [],
    block: over.block ?? base?.block ?? [],
    ...(minConfidence !== undefined ? { minConfidence } : {}),
    limits: { ...base?.limits, ...over.limits },
    ...(onSlicing !== undefined ? { onSlicing } : {}),
    ...(whilePaused !== undefined ? { whilePaused } : {}),
    ...(Object.keys(levels).length > 0 ? { levels } : {}),
    ...(velocity ? { velocity } : {}),
    ...(cooldown ? { cooldown } : {}),
    ...(slicing ? { slicing } : {}),
  };
}

/** One validated `agents.<name>` mapping, resolved (load.ts uses it for the file's agents). */
export function resolveAgentFile(a: AgentFile): AgentPolicy {
  return mergeAgent(undefined, resolveAgentPartial(a));
}

/**
 * The checks on one agent's mapping that span keys, shared by the policy file (load.ts) and the
 * overlay: the same messages, under `at` (`agents.<name>`).
 */
export function agentChecks(at: string, raw: unknown): PolicyError[] {
  const errors: PolicyError[] = [];
  const levels = isPlainObject(raw) ? raw['levels'] : undefined;
  if (!isPlainObject(levels)) return errors;
  for (const level of ['high', 'critical'] as const) {
    const l = levels[level];
    if (isPlainObject(l) && l['autoApprove'] === true) {
      errors.push({
        path: `${at}.levels.${level}.autoApprove`,
        message:
          level === 'critical'
            ? 'critical risk always needs a human; it cannot be auto-approved'
            : 'high risk is capped at advisory automation, so it is never auto-approved; remove this key',
      });
    }
  }
  return errors;
}

/** Largest agent config accepted (as JSON text); a real one is a few hundred bytes. */
export const MAX_AGENT_CONFIG_CHARS = 64 * 1024;

export type AgentConfigResult = { ok: true; config: AgentConfig } | { ok: false; errors: PolicyError[] };

/**
 * Validates an overlay for agent `name` exactly as the policy file's `agents.<name>` is validated:
 * the same schema (every unknown key named, with "did you mean"), the same cross-key checks, paths
 * as the file would have them. `formatIssues` is load.ts's issue formatter (passed in to keep the
 * modules acyclic).
 */
export function validateAgentConfigWith(
  name: string,
  value: unknown,
  formatIssues: (issues: readonly import('zod').z.core.$ZodIssue[], prefix: readonly PropertyKey[]) => PolicyError[],
  formatPath: (path: readonly PropertyKey[]) => string,
): AgentConfigResult {
  const at = formatPath(['agents', name]);
  if (!isPlainObject(value)) return { ok: false, errors: [{ path: at, message: 'an agent config is a mapping of settings (enabled, requireApproval, levels, …)' }] };
  let size = 0;
  try {
    size = JSON.stringify(value).length;
  } catch {
    return { ok: false, errors: [{ path: at, message: 'not plain JSON data' }] };
  }
  if (size > MAX_AGENT_CONFIG_CHARS) return { ok: false, errors: [{ path: at, message: `larger than ${MAX_AGENT_CONFIG_CHARS} characters` }] };
  const parsed = AgentFile.safeParse(value);
  const errors = [...(parsed.success ? [] : formatIssues(parsed.error.issues, ['agents', name])), ...agentChecks(at, value)];
  if (errors.length > 0 || !parsed.success) return { ok: false, errors };
  return { ok: true, config: deepFreeze(structuredClone(parsed.data)) };
}

const forAgent = new WeakMap<Policy, Map<string, Policy>>();

/**
 * The policy as it applies to agent `name`: its own level settings over `levels`, its velocity,
 * cool-down and slicing over `guard`'s, its `whilePaused` and create limits in place of the
 * guard's. An agent without settings of these kinds gets the policy itself. Memoised per policy.
 */
export function policyForAgent(policy: Policy, name: string): Policy {
  const a = own(policy.agents, name);
  if (!a) return policy;
  const ownLimits = a.limits.perMinute !== undefined || a.limits.perHour !== undefined;
  if (!a.levels && !a.velocity && !a.cooldown && !a.slicing && a.whilePaused === undefined && !ownLimits) return policy;
  let cache = forAgent.get(policy);
  if (!cache) forAgent.set(policy, (cache = new Map()));
  const hit = cache.get(name);
  if (hit) return hit;
  const levels = Object.fromEntries(RISK_LEVELS.map((lvl) => [lvl, { ...policy.levels[lvl], ...a.levels?.[lvl] }])) as unknown as Policy['levels'];
  const guard: GuardPolicy = {
    ...policy.guard,
    velocity: { ...policy.guard.velocity, ...a.velocity },
    cooldown: { ...policy.guard.cooldown, ...a.cooldown },
    slicing: { ...policy.guard.slicing, ...a.slicing },
    whilePaused: a.whilePaused ?? policy.guard.whilePaused,
    agentLimits: ownLimits ? a.limits : policy.guard.agentLimits,
  };
  const out = deepFreeze({ ...policy, levels, guard });
  if (cache.size < 10_000) cache.set(name, out);
  return out;
}

/** Whether agent `name` may file requests under this (overlaid) policy. */
export function agentEnabled(policy: Policy, name: string): boolean {
  return own(policy.agents, name)?.enabled !== false;
}

// ---- the effective configuration, with where each value came from ----

export type SettingSource = 'overlay' | 'agent' | 'policy' | 'default';

export interface EffectiveSetting {
  /** The key as an agent config writes it, e.g. `levels.high.mfa`. */
  readonly key: string;
  /** The value in force, as a policy file writes it (durations as `15m`); null: not set, nothing applies. */
  readonly value: unknown;
  /** `overlay` (the API), `agent` (the file's agents.<name>), `policy` (the file's global section), `default` (built in). */
  readonly source: SettingSource;
  /** Where the value is written: `agents.bot.levels.high.mfa`, `levels.high.mfa`, …; null for built-in behaviour. */
  readonly from: string | null;
  /** When the overlay writes this key: its value, and whether it is what applies (false: the file is as strict or stricter, overlay.ts). */
  readonly overlay?: { readonly value: unknown; readonly applies: boolean };
}

/** A duration as the policy file writes it, exactly (`90s`, `15m`, `2h`, `7d`). */
export function durationText(msValue: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (msValue % size === 0) return `${msValue / size}${unit}`;
  }
  return `${msValue}ms`;
}

export type Getter = (a: AgentPolicy) => unknown;

/** Every key an agent config may set, how to read it from a resolved agent, and its fallback outside `agents.<name>`. */
export function settingTable(policy: Policy): Array<{ key: string; get: Getter; fallback: { value: unknown; from: string | null; source: SettingSource } }> {
  const g = policy.guard;
  const rows: Array<{ key: string; get: Getter; fallback: { value: unknown; from: string | null; source: SettingSource } }> = [
    { key: 'enabled', get: (a) => a.enabled, fallback: { value: true, from: null, source: 'default' } },
    { key: 'requireApproval', get: (a) => (a.requireApproval.length > 0 ? a.requireApproval : undefined), fallback: { value: [], from: null, source: 'default' } },
    { key: 'block', get: (a) => (a.block.length > 0 ? a.block : undefined), fallback: { value: [], from: null, source: 'default' } },
    { key: 'minConfidence', get: (a) => a.minConfidence, fallback: { value: null, from: null, source: 'default' } },
    { key: 'limits.perMinute', get: (a) => a.limits.perMinute, fallback: { value: g.agentLimits.perMinute ?? null, from: 'guard.agentLimits.perMinute', source: 'policy' } },
    { key: 'limits.perHour', get: (a) => a.limits.perHour, fallback: { value: g.agentLimits.perHour ?? null, from: 'guard.agentLimits.perHour', source: 'policy' } },
  ];
  for (const lvl of RISK_LEVELS) {
    const l = policy.levels[lvl];
    rows.push(
      { key: `levels.${lvl}.autoApprove`, get: (a) => a.levels?.[lvl]?.autoApprove, fallback: { value: l.autoApprove, from: `levels.${lvl}.autoApprove`, source: 'policy' } },
      { key: `levels.${lvl}.sla`, get: (a) => (a.levels?.[lvl]?.slaMs === undefined ? undefined : durationText(a.levels[lvl]!.slaMs!)), fallback: { value: durationText(l.slaMs), from: `levels.${lvl}.sla`, source: 'policy' } },
      { key: `levels.${lvl}.mfa`, get: (a) => a.levels?.[lvl]?.mfa, fallback: { value: l.mfa, from: `levels.${lvl}.mfa`, source: 'policy' } },
    );
  }
  rows.push(
    { key: 'velocity.perHour', get: (a) => a.velocity?.perHour, fallback: { value: g.velocity.perHour, from: 'guard.velocity.perHour', source: 'policy' } },
    { key: 'velocity.perDay', get: (a) => a.velocity?.perDay, fallback: { value: g.velocity.perDay, from: 'guard.velocity.perDay', source: 'policy' } },
    { key: 'velocity.riskLevels', get: (a) => a.velocity?.riskLevels, fallback: { value: g.velocity.riskLevels, from: 'guard.velocity.riskLevels', source: 'policy' } },
    { key: 'cooldown.threshold', get: (a) => a.cooldown?.threshold, fallback: { value: g.cooldown.threshold, from: 'guard.cooldown.threshold', source: 'policy' } },
    { key: 'cooldown.window', get: (a) => (a.cooldown?.windowMinutes === undefined ? undefined : durationText(a.cooldown.windowMinutes * 60_000)), fallback: { value: durationText(g.cooldown.windowMinutes * 60_000), from: 'guard.cooldown.window', source: 'policy' } },
    { key: 'cooldown.duration', get: (a) => (a.cooldown?.durationMinutes === undefined ? undefined : durationText(a.cooldown.durationMinutes * 60_000)), fallback: { value: durationText(g.cooldown.durationMinutes * 60_000), from: 'guard.cooldown.duration', source: 'policy' } },
    { key: 'cooldown.riskLevels', get: (a) => a.cooldown?.riskLevels, fallback: { value: g.cooldown.riskLevels, from: 'guard.cooldown.riskLevels', source: 'policy' } },
    { key: 'onSlicing', get: (a) => a.onSlicing, fallback: { value: null, from: null, source: 'default' } },
    { key: 'slicing.hold', get: (a) => (a.slicing?.holdMinutes === undefined ? undefined : durationText(a.slicing.holdMinutes * 60_000)), fallback: { value: durationText(g.slicing.holdMinutes * 60_000), from: 'guard.slicing.hold', source: 'policy' } },
    { key: 'slicing.collect', get: (a) => (a.slicing?.collectSeconds === undefined ? undefined : durationText(a.slicing.collectSeconds * 1000)), fallback: { value: durationText(g.slicing.collectSeconds * 1000), from: 'guard.slicing.collect', source: 'policy' } },
    { key: 'whilePaused', get: (a) => a.whilePaused, fallback: { value: g.whilePaused, from: 'guard.whilePaused', source: 'policy' } },
  );
  return rows;
}

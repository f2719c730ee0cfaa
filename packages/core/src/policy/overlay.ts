/**
 * How an agent's API overlay combines with the policy file (issue 18; review F1, F1b): one rule
 * for every key, so an overlay never pins a value against a later tightening of the file.
 *
 * Every key an agent config can set has an order ("stricter"), in `KEYS`. For key `k`, with the
 * file's value `f` (as it applies to the agent: `agents.<name>`, else the global section), the
 * overlay's value `o` and, when the overlay loosened `k`, the file value `b` it was approved
 * against (its *baseline*):
 *
 *     effective(k) = o                 if b is recorded and f is not stricter than b
 *                  = stricter(f, o)    otherwise
 *
 * - A tightening overlay value (or a repeat of the file's) records no baseline: the stricter of
 *   the two applies, so a later tightening of the file always shows through.
 * - A loosening value needed a second admin (weakens.ts reads the same order); it records the
 *   file's value then (`overlayBaselines`), and stops applying the moment the file makes `k`
 *   stricter than that baseline: the file's reviewed tightening wins over an older approval.
 * - `enabled`, `requireApproval` and `block` are tighten-only: an overlay can switch the agent
 *   off and add entries, never switch on what the file switches off or drop a file entry
 *   (`enabled` is the AND of both, the lists their union). Otherwise the file's kill switch,
 *   already `false`, could never get "stricter than the baseline" again.
 * - Keys with no clear direction (`slicing.collect`) are ordered "any change": a different
 *   overlay value is a loosening with a baseline, and applies only while the file keeps that
 *   baseline; otherwise the file's value applies.
 *
 * `weakens(before, after)` compares two effective policies key by key with the same `tighter`,
 * so a change that one admin may make alone can never loosen what applies.
 */
import { RISK_LEVELS, type RiskLevel } from '../schemas.ts';
import { type AgentConfig, durationText, policyForAgent, resolveAgentPartial, settingTable, type EffectiveSetting } from './agent-config.ts';
import type { AgentPolicy, Policy } from './types.ts';
import { deepFreeze, isPlainObject, own } from './util.ts';

/** One key's value as merged: resolved units (durations in ms for SLAs, minutes or seconds as the guard reads them), null for "not set". */
export type KeyValue = boolean | number | string | readonly string[] | null;
/** Key → value, for the keys of `KEYS` (an overlay's: only those it writes). */
export type FlatAgent = Readonly<Record<string, KeyValue>>;
/** Key → the file's value the overlay's loosening was approved against. */
export type Baselines = Readonly<Record<string, KeyValue>>;

type Order = {
  /** `a` is stricter than `b` in some respect (so going from `a` to `b` loosens). */
  tighter(a: KeyValue, b: KeyValue): boolean;
  /** The stricter of the file's value and the overlay's (the file's when they are not comparable). */
  stricter(file: KeyValue, overlay: KeyValue): KeyValue;
};

const num = (v: KeyValue): number | null => (typeof v === 'number' ? v : null);
const list = (v: KeyValue): readonly string[] => (Array.isArray(v) ? (v as readonly string[]) : []);

/** A cap: lower is stricter; null (no cap) is the loosest. */
const CAP: Order = {
  tighter: (a, b) => num(a) !== null && (num(b) === null || num(a)! < num(b)!),
  stricter: (f, o) => (num(f) === null ? o : num(o) === null ? f : Math.min(num(f)!, num(o)!)),
};
/** A floor or a length of protection: higher is stricter; null (none) is the loosest. */
const FLOOR: Order = {
  tighter: (a, b) => num(a) !== null && (num(b) === null || num(a)! > num(b)!),
  stricter: (f, o) => (num(f) === null ? o : num(o) === null ? f : Math.max(num(f)!, num(o)!)),
};
/** Step-up, three-valued as written: `false < true < 'webauthn'` (a passkey only is the strictest). */
const mfaRank = (v: KeyValue): number => (v === 'webauthn' ? 2 : v === true ? 1 : 0);
const MFA: Order = { tighter: (a, b) => mfaRank(a) > mfaRank(b), stricter: (f, o) => (mfaRank(o) > mfaRank(f) ? o : f) };
/** `false` is stricter (enabled, autoApprove). */
const FALSE_STRICT: Order = { tighter: (a, b) => a === false && b !== false, stricter: (f, o) => !(f === false || o === false) };
/** A set: more members is stricter (what needs approval, what is blocked, which risk levels count). */
const SET: Order = {
  tighter: (a, b) => list(a).some((x) => !list(b).includes(x)),
  stricter: (f, o) => [...new Set([...list(f), ...list(o)])],
};
const ranked = (ranks: readonly (string | null)[]): Order => {
  const r = (v: KeyValue) => ranks.indexOf(typeof v === 'string' ? v : null);
  return { tighter: (a, b) => r(a) > r(b), stricter: (f, o) => (r(o) > r(f) ? o : f) };
};
/** No direction: any change is a loosening, and the file's value wins unless a baseline says otherwise. */
const ANY_CHANGE: Order = { tighter: (a, b) => JSON.stringify(a) !== JSON.stringify(b), stricter: (f) => f };

export interface KeyRule {
  readonly key: string;
  readonly order: Order;
  /** An overlay may loosen it (with a second admin), recording a baseline; false: only ever tightens. */
  readonly loosenable: boolean;
  /** The loosening in words, for the card and the trail. */
  why(before: KeyValue, after: KeyValue): string;
}

const lvlKeys = (lvl: RiskLevel): KeyRule[] => [
  { key: `levels.${lvl}.autoApprove`, order: FALSE_STRICT, loosenable: true, why: () => `auto-approves ${lvl} risk` },
  { key: `levels.${lvl}.sla`, order: CAP, loosenable: true, why: () => `a longer review deadline at ${lvl} risk (escalation comes later)` },
  {
    key: `levels.${lvl}.mfa`,
    order: MFA,
    loosenable: true,
    why: (_, a) => (a === true ? `accepts a TOTP code, not only a passkey (WebAuthn), at ${lvl} risk` : `drops step-up MFA at ${lvl} risk`),
  },
];
const removedFrom = (b: KeyValue, a: KeyValue) => list(b).filter((x) => !list(a).includes(x)).join(', ');

/** Every key an agent config can set, with its order. */
export const KEYS: readonly KeyRule[] = Object.freeze([
  { key: 'enabled', order: FALSE_STRICT, loosenable: false, why: () => 'enables the agent' },
  { key: 'requireApproval', order: SET, loosenable: false, why: (b, a) => `no longer requires approval for ${removedFrom(b, a)}` },
  { key: 'block', order: SET, loosenable: false, why: (b, a) => `no longer blocks ${removedFrom(b, a)}` },
  { key: 'minConfidence', order: FLOOR, loosenable: true, why: () => 'lets it act alone at a lower confidence' },
  { key: 'limits.perMinute', order: CAP, loosenable: true, why: (_, a) => (a === null ? 'lifts its create limit perMinute' : 'raises its create limit perMinute') },
  { key: 'limits.perHour', order: CAP, loosenable: true, why: (_, a) => (a === null ? 'lifts its create limit perHour' : 'raises its create limit perHour') },
  ...RISK_LEVELS.flatMap(lvlKeys),
  { key: 'velocity.perHour', order: CAP, loosenable: true, why: () => 'lets an approver approve more of its requests an hour' },
  { key: 'velocity.perDay', order: CAP, loosenable: true, why: () => 'lets an approver approve more of its requests a day' },
  { key: 'velocity.riskLevels', order: SET, loosenable: true, why: (b, a) => `stops counting approvals at ${removedFrom(b, a)} risk` },
  { key: 'cooldown.threshold', order: CAP, loosenable: true, why: () => 'more approvals before a cool-down starts' },
  { key: 'cooldown.window', order: FLOOR, loosenable: true, why: () => 'a shorter window for counting approvals toward a cool-down' },
  { key: 'cooldown.duration', order: FLOOR, loosenable: true, why: () => 'shorter cool-downs' },
  { key: 'cooldown.riskLevels', order: SET, loosenable: true, why: (b, a) => `no cool-downs at ${removedFrom(b, a)} risk` },
  { key: 'onSlicing', order: ranked([null, 'alert', 'review', 'aggregate', 'pause']), loosenable: true, why: (b, a) => `a slicing alert does ${a ?? 'nothing but report'} instead of ${b}` },
  { key: 'slicing.hold', order: FLOOR, loosenable: true, why: () => 'a slicing response ends sooner' },
  { key: 'slicing.collect', order: ANY_CHANGE, loosenable: true, why: () => 'changes how long an aggregate review collects (either way, a second admin looks)' },
  { key: 'whilePaused', order: ranked(['hold', 'refuse']), loosenable: true, why: () => 'takes its requests while it is paused (held) instead of refusing them' },
]);

const RULES = new Map(KEYS.map((r) => [r.key, r]));

/** What applies to agent `name` under `policy` (its agents.<name>, else the global values), key by key. */
export function flatOf(policy: Policy, name: string): FlatAgent {
  const p = policyForAgent(policy, name);
  const a = own(policy.agents, name);
  const g = p.guard;
  const out: Record<string, KeyValue> = {
    enabled: a?.enabled !== false,
    requireApproval: a?.requireApproval ?? [],
    block: a?.block ?? [],
    minConfidence: a?.minConfidence ?? null,
    'limits.perMinute': g.agentLimits.perMinute ?? null,
    'limits.perHour': g.agentLimits.perHour ?? null,
    'velocity.perHour': g.velocity.perHour,
    'velocity.perDay': g.velocity.perDay,
    'velocity.riskLevels': g.velocity.riskLevels,
    'cooldown.threshold': g.cooldown.threshold,
    'cooldown.window': g.cooldown.windowMinutes,
    'cooldown.duration': g.cooldown.durationMinutes,
    'cooldown.riskLevels': g.cooldown.riskLevels,
    onSlicing: a?.onSlicing ?? null,
    'slicing.hold': g.slicing.holdMinutes,
    'slicing.collect': g.slicing.collectSeconds,
    whilePaused: g.whilePaused,
  };
  for (const lvl of RISK_LEVELS) {
    out[`levels.${lvl}.autoApprove`] = p.levels[lvl].autoApprove;
    out[`levels.${lvl}.sla`] = p.levels[lvl].slaMs;
    // Three-valued (false, true, 'webauthn'), so a tightening to WebAuthn only is seen by the merge.
    out[`levels.${lvl}.mfa`] = p.levels[lvl].mfa && p.levels[lvl].webauthn === true ? 'webauthn' : p.levels[lvl].mfa;
  }
  return out;
}

/** The keys an overlay writes, resolved as `flatOf` reads them. */
export function flatOverlay(overlay: AgentConfig): FlatAgent {
  const o = resolveAgentPartial(overlay);
  const out: Record<string, KeyValue> = {};
  const put = (key: string, v: KeyValue | undefined) => {
    if (v !== undefined) out[key] = v;
  };
  put('enabled', o.enabled);
  put('requireApproval', o.requireApproval);
  put('block', o.block);
  put('minConfidence', o.minConfidence);
  put('limits.perMinute', o.limits?.perMinute);
  put('limits.perHour', o.limits?.perHour);
  for (const lvl of RISK_LEVELS) {
    put(`levels.${lvl}.autoApprove`, o.levels?.[lvl]?.autoApprove);
    put(`levels.${lvl}.sla`, o.levels?.[lvl]?.slaMs);
    put(`levels.${lvl}.mfa`, o.levels?.[lvl]?.mfa);
  }
  put('velocity.perHour', o.velocity?.perHour);
  put('velocity.perDay', o.velocity?.perDay);
  put('velocity.riskLevels', o.velocity?.riskLevels);
  put('cooldown.threshold', o.cooldown?.threshold);
  put('cooldown.window', o.cooldown?.windowMinutes);
  put('cooldown.duration', o.cooldown?.durationMinutes);
  put('cooldown.riskLevels', o.cooldown?.riskLevels);
  put('onSlicing', o.onSlicing);
  put('slicing.hold', o.slicing?.holdMinutes);
  put('slicing.collect', o.slicing?.collectSeconds);
  put('whilePaused', o.whilePaused);
  return out;
}

/** The one rule, for one key (see the module comment). Pure; exported for the property test. */
export function mergeKey(rule: KeyRule, file: KeyValue, overlay: KeyValue | undefined, baseline: KeyValue | undefined): KeyValue {
  if (overlay === undefined) return file;
  if (rule.loosenable && baseline !== undefined && !rule.order.tighter(file, baseline)) return overlay;
  return rule.order.stricter(file, overlay);
}

/** The baselines an overlay records against the file as it is now: the file's value of every key the overlay loosens. */
export function overlayBaselines(filePolicy: Policy, name: string, overlay: AgentConfig | null | undefined): Baselines {
  if (!overlay) return {};
  const file = flatOf(filePolicy, name);
  const over = flatOverlay(overlay);
  const out: Record<string, KeyValue> = {};
  for (const rule of KEYS) {
    const o = over[rule.key];
    if (o !== undefined && rule.loosenable && rule.order.tighter(file[rule.key]!, o)) out[rule.key] = file[rule.key]!;
  }
  return out;
}

/** Baselines read back from storage or a request's args: entries that are not a known loosenable key with a plain value are dropped (dropping one only makes the result stricter). */
export function parseBaselines(value: unknown): Baselines {
  if (!isPlainObject(value)) return {};
  const out: Record<string, KeyValue> = {};
  for (const [k, v] of Object.entries(value)) {
    const rule = RULES.get(k);
    if (!rule?.loosenable) continue;
    const ok = v === null || typeof v === 'boolean' || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
    if (ok) Object.defineProperty(out, k, { enumerable: true, value: v });
  }
  return out;
}

/** The merged values for agent `name`: `mergeKey` for every key. */
export function mergedFlat(filePolicy: Policy, name: string, overlay: AgentConfig, baselines: Baselines = {}): FlatAgent {
  const file = flatOf(filePolicy, name);
  const over = flatOverlay(overlay);
  const out: Record<string, KeyValue> = {};
  for (const rule of KEYS) out[rule.key] = mergeKey(rule, file[rule.key]!, over[rule.key], own(baselines, rule.key));
  return out;
}

/** A resolved agent setting holding every key (what policyForAgent then puts in place of the global ones). */
function agentOf(f: FlatAgent): AgentPolicy {
  const n = (k: string) => f[k] as number;
  const s = (k: string) => f[k] as readonly string[];
  const levels = Object.fromEntries(
    RISK_LEVELS.map((lvl) => {
      const mfa = f[`levels.${lvl}.mfa`];
      // `webauthn` always written: it replaces the level's, so a loosening to `true` really accepts TOTP.
      return [lvl, { autoApprove: f[`levels.${lvl}.autoApprove`] as boolean, slaMs: n(`levels.${lvl}.sla`), mfa: mfa === true || mfa === 'webauthn', webauthn: mfa === 'webauthn' }];
    }),
  ) as AgentPolicy['levels'];
  const limits: { perMinute?: number; perHour?: number } = {};
  if (f['limits.perMinute'] !== null) limits.perMinute = n('limits.perMinute');
  if (f['limits.perHour'] !== null) limits.perHour = n('limits.perHour');
  return {
    ...(f.enabled === false ? { enabled: false } : {}),
    requireApproval: s('requireApproval'),
    block: s('block'),
    ...(f.minConfidence !== null ? { minConfidence: n('minConfidence') } : {}),
    limits,
    ...(f.onSlicing !== null ? { onSlicing: f.onSlicing as AgentPolicy['onSlicing'] & string } : {}),
    whilePaused: f.whilePaused as 'refuse' | 'hold',
    levels,
    velocity: { perHour: n('velocity.perHour'), perDay: n('velocity.perDay'), riskLevels: s('velocity.riskLevels') as RiskLevel[] },
    cooldown: { threshold: n('cooldown.threshold'), windowMinutes: n('cooldown.window'), durationMinutes: n('cooldown.duration'), riskLevels: s('cooldown.riskLevels') as RiskLevel[] },
    slicing: { holdMinutes: n('slicing.hold'), collectSeconds: n('slicing.collect') },
  };
}

/**
 * The policy with `overlay` (and the baselines its loosenings were approved against) merged over
 * what the file sets for agent `name`, by `mergeKey`; the policy itself when there is no overlay.
 */
export function withAgentOverlay(policy: Policy, name: string, overlay: AgentConfig | null | undefined, baselines: Baselines = {}): Policy {
  if (!overlay || Object.keys(overlay).length === 0) return policy;
  const agents: Record<string, AgentPolicy> = {};
  for (const [k, v] of Object.entries(policy.agents)) if (k !== name) Object.defineProperty(agents, k, { enumerable: true, value: v });
  Object.defineProperty(agents, name, { enumerable: true, value: agentOf(mergedFlat(policy, name, overlay, baselines)) });
  return deepFreeze({ ...policy, agents });
}

/** The policy that judges agent `name`'s requests, given its overlay and baselines (or none). */
export function agentPolicy(policy: Policy, name: string, overlay: AgentConfig | null | undefined, baselines: Baselines = {}): Policy {
  return policyForAgent(withAgentOverlay(policy, name, overlay, baselines), name);
}

/**
 * What applies to agent `name` under the file's policy and its overlay, key by key, and where
 * each value came from: `overlay` when the overlay's value is what applies and the file's is
 * not; otherwise the file's source. A key the overlay writes but that does not apply (the file
 * is as strict or stricter) carries `overlay: {value, applies: false}`.
 */
export function effectiveAgentConfig(filePolicy: Policy, name: string, overlay: AgentConfig | null | undefined, baselines: Baselines = {}): EffectiveSetting[] {
  const fileAgent = own(filePolicy.agents, name);
  const overlaid = own(withAgentOverlay(filePolicy, name, overlay, baselines).agents, name);
  const overlayOnly = overlay ? agentOf({ ...flatOf(filePolicy, name), ...flatOverlay(overlay) }) : undefined;
  const file = flatOf(filePolicy, name);
  const over = overlay ? flatOverlay(overlay) : {};
  const merged = overlay ? mergedFlat(filePolicy, name, overlay, baselines) : file;
  const agentPath = (key: string) => `agents.${/^[A-Za-z0-9_-]+$/.test(name) ? name : JSON.stringify(name)}.${key}`;
  const same = (a: KeyValue | undefined, b: KeyValue | undefined) => JSON.stringify(a) === JSON.stringify(b);
  return settingTable(filePolicy).map(({ key, get, fallback }): EffectiveSetting => {
    const written = over[key];
    const shown = written !== undefined && overlayOnly ? get(overlayOnly) : undefined;
    const note = written === undefined ? {} : { overlay: { value: shown ?? null, applies: same(merged[key], written) } };
    if (written !== undefined && same(merged[key], written) && !same(file[key], written)) {
      return { key, value: overlaid ? (get(overlaid) ?? null) : shown, source: 'overlay', from: `PUT /v1/agents/${name}/config`, ...note };
    }
    const merging = !same(merged[key], file[key]) && overlaid ? get(overlaid) : undefined; // the union of both lists
    const fromAgent = fileAgent ? get(fileAgent) : undefined;
    if (merging !== undefined) return { key, value: merging, source: 'overlay', from: `${agentPath(key)} + PUT /v1/agents/${name}/config`, ...note };
    if (fromAgent !== undefined) return { key, value: fromAgent, source: 'agent', from: agentPath(key), ...note };
    if (key.startsWith('limits.') && fileAgent && (fileAgent.limits.perMinute !== undefined || fileAgent.limits.perHour !== undefined)) {
      return { key, value: null, source: 'agent', from: agentPath('limits'), ...note };
    }
    return { key, ...fallback, ...note };
  });
}

export { durationText };

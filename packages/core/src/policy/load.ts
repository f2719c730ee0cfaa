/**
 * Loading a policy: YAML text → plain object → validated file → merged over the defaults →
 * resolved, frozen {@link Policy}.
 *
 * A policy that fails validation is refused as a whole, and the errors name every wrong key
 * at once (the admin fixes the file in one round, and the server keeps its last good policy
 * meanwhile). Paths read like the file: `levels.critical.sla`, `rules[2].when.contentPattern`;
 * YAML syntax errors have the path `(yaml)` and say the line.
 *
 * Merging: mappings merge key by key, lists replace the default list, except `rules`, which
 * merge by name (a rule named like a default replaces it in place, `enabled: false` removes it,
 * other rules are appended). Rules merge rather than replace so that adding one rule does not
 * silently drop the built-in protections for card numbers and secrets. A top-level section
 * left empty in YAML (`rules:` with nothing after it) keeps its default.
 */
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { parseDuration } from '../duration.ts';
import { ActionName, RISK_LEVELS, type RiskLevel } from '../schemas.ts';
import { DEFAULT_POLICY_YAML } from './defaults.ts';
import { resolvePrecheck } from '../precheck/outcomes.ts';
import { BUILTIN_PATTERN_NAMES } from './patterns.ts';
import { normalizeActionName } from './names.ts';
import { IMPLICIT_RULE_NAMES } from './rules.ts';
import { resolveScreening } from '../screen/schema.ts';
import { agentChecks, resolveAgentFile, validateAgentConfigWith, type AgentConfigResult } from './agent-config.ts';
import { PolicyFile, type RuleFile } from './schema.ts';
import { parseDays, parseHours } from './timewindow.ts';
import {
  RISK_FACTOR_NAMES,
  type ActionTraits,
  type AgentPolicy,
  type LevelPolicy,
  type Policy,
  type PolicyError,
  type PolicyResult,
  type PolicyRule,
  type RiskFactorName,
  type TimeWindow,
} from './types.ts';
import { deepFreeze, isPlainObject } from './util.ts';

/** Larger files are refused before parsing; a real policy is a few kilobytes. */
export const MAX_POLICY_CHARS = 1_000_000;

/** An approval not claimed for execution within this long is void (`RECEIPT_EXPIRED`): the agent files anew. */
export const DEFAULT_APPROVAL_VALID_MS = 60 * 60 * 1000;

export function parsePolicy(text: string): PolicyResult {
  if (text.length > MAX_POLICY_CHARS) {
    return { ok: false, errors: [{ path: '(yaml)', message: `the policy is larger than ${MAX_POLICY_CHARS} characters` }] };
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const at = e.linePos?.[0];
        const message = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
        return { path: '(yaml)', message: at ? `line ${at.line}, column ${at.col}: ${message}` : message };
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, errors: [{ path: '(yaml)', message: (err as Error).message }] };
  }
  return validatePolicy(raw ?? {});
}

export function validatePolicy(obj: unknown): PolicyResult {
  const user = isPlainObject(obj) ? dropEmptySections(obj) : obj;
  const errors: PolicyError[] = [];
  const parsed = PolicyFile.safeParse(user);
  if (!parsed.success) errors.push(...parsed.error.issues.flatMap(issueToErrors));
  const merged = isPlainObject(user) ? mergeOverDefaults(defaultRaw(), user) : defaultRaw();
  if (isPlainObject(user)) errors.push(...crossCheck(user, merged));
  if (errors.length > 0) return { ok: false, errors: dedupe(errors) };

  const full = PolicyFile.safeParse(merged);
  if (!full.success) {
    // Unreachable unless the defaults themselves are broken; still refuse rather than guess.
    return { ok: false, errors: full.error.issues.flatMap(issueToErrors) };
  }
  return { ok: true, policy: deepFreeze(resolve(full.data)) };
}

/**
 * An overlay for agent `name` (`PUT /v1/agents/:name/config`), validated exactly as the policy
 * file's `agents.<name>` is: the same schema and checks, errors under the same paths.
 */
export function validateAgentConfig(name: string, value: unknown): AgentConfigResult {
  return validateAgentConfigWith(
    name,
    value,
    (issues, prefix) => dedupe(issues.flatMap((issue) => issueToErrors({ ...issue, path: [...prefix, ...issue.path] } as z.core.$ZodIssue))),
    formatPath,
  );
}

let cachedDefault: Policy | undefined;

/** The built-in policy (parsed from {@link DEFAULT_POLICY_YAML}); frozen and shared. */
export function defaultPolicy(): Policy {
  if (!cachedDefault) {
    const r = validatePolicy({});
    if (!r.ok) throw new Error(`built-in policy is invalid: ${JSON.stringify(r.errors)}`);
    cachedDefault = r.policy;
  }
  return cachedDefault;
}

// ---- merging ----

let cachedDefaultRaw: Record<string, unknown> | undefined;

function defaultRaw(): Record<string, unknown> {
  if (!cachedDefaultRaw) {
    const raw: unknown = parseDocument(DEFAULT_POLICY_YAML).toJS();
    if (!isPlainObject(raw)) throw new Error('built-in policy is not a mapping');
    cachedDefaultRaw = deepFreeze(raw);
  }
  return cachedDefaultRaw;
}

function dropEmptySections(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== null));
}

function mergeValue(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const keys = [...new Set([...Object.keys(base), ...Object.keys(over)])];
  // fromEntries defines own properties, so a `__proto__` key stays data, not a prototype.
  return Object.fromEntries(keys.map((k) => [k, Object.hasOwn(over, k) ? mergeValue(base[k], over[k]) : base[k]]));
}

function mergeRules(base: unknown, over: unknown): unknown {
  if (!Array.isArray(base) || !Array.isArray(over)) return over;
  const out: unknown[] = [...base];
  for (const rule of over) {
    const name = isPlainObject(rule) ? rule['name'] : undefined;
    const disabled = isPlainObject(rule) && rule['enabled'] === false;
    const at = typeof name === 'string' ? out.findIndex((r) => isPlainObject(r) && r['name'] === name) : -1;
    if (at >= 0) {
      if (disabled) out.splice(at, 1);
      else out[at] = rule;
    } else if (!disabled) {
      out.push(rule);
    }
  }
  return out;
}

function mergeOverDefaults(defaults: Record<string, unknown>, user: Record<string, unknown>): Record<string, unknown> {
  const merged = mergeValue(defaults, { ...user, rules: undefined }) as Record<string, unknown>;
  merged['rules'] = Object.hasOwn(user, 'rules') ? mergeRules(defaults['rules'], user['rules']) : defaults['rules'];
  return merged;
}

// ---- checks that span keys or need the merged policy ----

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const get = (o: unknown, ...keys: string[]): unknown =>
  keys.reduce<unknown>((cur, k) => (isPlainObject(cur) && Object.hasOwn(cur, k) ? cur[k] : undefined), o);

/**
 * Checks written defensively over unvalidated data: each looks only at values of the right
 * type, so a value zod already rejected is not reported twice, and all errors come in one pass.
 */
function crossCheck(user: Record<string, unknown>, merged: Record<string, unknown>): PolicyError[] {
  const errors: PolicyError[] = [];
  const push = (path: string, message: string): void => void errors.push({ path, message });

  // Ordered triples: bands descend, thresholds ascend. Blame a key the user wrote.
  const ordered = (section: string, keys: [string, string, string], relation: 'desc' | 'asc'): void => {
    const vals = keys.map((k) => num(get(merged, section, k)));
    for (let i = 0; i < 2; i++) {
      const a = vals[i];
      const b = vals[i + 1];
      if (a === undefined || b === undefined) continue;
      const bad = relation === 'desc' ? a < b : a >= b;
      if (!bad) continue;
      const [ka, kb] = [keys[i] as string, keys[i + 1] as string];
      const blame = get(user, section, ka) !== undefined ? ka : kb;
      const rel = relation === 'desc' ? 'at least' : 'below';
      push(`${section}.${blame}`, `${section}.${ka} (${a}) must be ${rel} ${section}.${kb} (${b})`);
    }
  };
  ordered('automation', ['full', 'supervised', 'advisory'], 'desc');
  ordered('riskThresholds', ['medium', 'high', 'critical'], 'asc');

  const factors = get(merged, 'riskFactors');
  if (isPlainObject(factors)) {
    const sum = RISK_FACTOR_NAMES.reduce((s, k) => s + (num(factors[k]) ?? 0), 0);
    if (sum <= 0) push('riskFactors', 'at least one risk factor needs a weight above 0');
  }

  for (const level of ['high', 'critical'] as const) {
    if (get(user, 'levels', level, 'autoApprove') === true) {
      push(
        `levels.${level}.autoApprove`,
        level === 'critical'
          ? 'critical risk always needs a human; it cannot be auto-approved'
          : 'high risk is capped at advisory automation, so it is never auto-approved; remove this key',
      );
    }
  }

  const userActions = get(user, 'actions');
  if (isPlainObject(userActions)) {
    for (const [name, traits] of Object.entries(userActions)) {
      if (name === 'defaultWeight') continue;
      if (!ActionName.safeParse(name).success) {
        push(formatPath(['actions', name]), 'not a valid action name (a letter, then letters, digits, _ . : -)');
      } else if (isPlainObject(traits) && get(merged, 'actions', name, 'weight') === undefined) {
        push(formatPath(['actions', name, 'weight']), 'required for an action that is not in the defaults');
      }
    }
  }

  // Names are compared in normal form (names.ts), so two keys with one normal form would be one
  // action described twice, and which one applied would depend on key order: refuse, naming both.
  const mergedActions = get(merged, 'actions');
  if (isPlainObject(mergedActions)) {
    const firstOf = new Map<string, string>();
    for (const name of Object.keys(mergedActions)) {
      if (name === 'defaultWeight') continue;
      const normal = normalizeActionName(name);
      const first = firstOf.get(normal);
      if (first === undefined) firstOf.set(normal, name);
      else {
        push(
          formatPath(['actions', name]),
          `"${name}" and "${first}" are the same action (both are compared as "${normal}"); describe it once`,
        );
      }
    }
  }

  const userAgents = get(user, 'agents');
  if (isPlainObject(userAgents)) {
    for (const [name, agent] of Object.entries(userAgents)) errors.push(...agentChecks(formatPath(['agents', name]), agent));
  }

  const userPatterns = get(user, 'contentPatterns');
  if (isPlainObject(userPatterns)) {
    for (const name of Object.keys(userPatterns)) {
      if (BUILTIN_PATTERN_NAMES.includes(name)) push(formatPath(['contentPatterns', name]), `"${name}" is a built-in pattern; choose another name`);
    }
  }
  const mergedPatterns = get(merged, 'contentPatterns');
  const knownPatterns = new Set([...BUILTIN_PATTERN_NAMES, ...(isPlainObject(mergedPatterns) ? Object.keys(mergedPatterns) : [])]);
  const escalationLevels = get(merged, 'escalation', 'levels');
  const levelCount = Array.isArray(escalationLevels) ? escalationLevels.length : 0;
  const defaultRuleNames = new Set(
    (defaultRaw()['rules'] as unknown[]).flatMap((r) => (isPlainObject(r) && typeof r['name'] === 'string' ? [r['name']] : [])),
  );

  for (const lvl of RISK_LEVELS) {
    const start = num(get(merged, 'levels', lvl, 'startLevel'));
    if (start !== undefined && Number.isInteger(start) && start > levelCount) {
      push(`levels.${lvl}.startLevel`, `escalation has ${levelCount} level(s); startLevel ${start} does not exist`);
    }
  }

  const rules = get(user, 'rules');
  if (Array.isArray(rules)) {
    const seen = new Map<string, number>();
    rules.forEach((rule, i) => {
      if (!isPlainObject(rule)) return;
      const at = `rules[${i}]`;
      const name = rule['name'];
      if (typeof name === 'string' && IMPLICIT_RULE_NAMES.includes(name)) {
        push(`${at}.name`, `"${name}" is the name of a built-in implicit rule; choose another name`);
      }
      if (typeof name === 'string') {
        const first = seen.get(name);
        if (first !== undefined) push(`${at}.name`, `duplicate rule name "${name}" (also rules[${first}])`);
        else seen.set(name, i);
      }
      if (rule['enabled'] === false) {
        if (typeof name === 'string' && !defaultRuleNames.has(name)) {
          push(`${at}.enabled`, `there is no default rule named "${name}" to disable`);
        }
        return;
      }
      if (!Object.hasOwn(rule, 'when')) push(`${at}.when`, 'a rule needs `when:` (write `when: {}` to match every request)');
      if (!Object.hasOwn(rule, 'then')) push(`${at}.then`, 'a rule needs `then:` with at least one effect');
      const cp = get(rule, 'when', 'contentPattern');
      const names = typeof cp === 'string' ? [[cp, '']] : Array.isArray(cp) ? cp.map((n, j) => [n, `[${j}]`]) : [];
      for (const [n, suffix] of names) {
        if (typeof n === 'string' && /^[A-Za-z]\w*$/.test(n) && !knownPatterns.has(n)) {
          push(`${at}.when.contentPattern${suffix}`, `unknown content pattern "${n}" (known: ${[...knownPatterns].join(', ')})`);
        }
      }
      const start = num(get(rule, 'then', 'startLevel'));
      if (start !== undefined && Number.isInteger(start) && start > levelCount) {
        push(`${at}.then.startLevel`, `escalation has ${levelCount} level(s); startLevel ${start} does not exist`);
      }
    });
  }
  return errors;
}

// ---- zod issues → errors with readable paths ----

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[^.[\]\s"'`]+$/.test(String(seg))) out += out === '' ? String(seg) : `.${String(seg)}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out === '' ? '(root)' : out;
}

function issueToErrors(issue: z.core.$ZodIssue): PolicyError[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const hint = suggestKey(issue.path, key);
      return { path: formatPath([...issue.path, key]), message: `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}` };
    });
  }
  if (issue.code === 'invalid_key') {
    return [{ path: formatPath(issue.path), message: `invalid name: ${issue.issues.map((i) => i.message).join('; ')}` }];
  }
  if (issue.code === 'invalid_type' && issue.path.length === 0) {
    return [{ path: '(root)', message: 'a policy is a mapping of sections (actions, levels, rules, …)' }];
  }
  return [{ path: formatPath(issue.path), message: issue.message }];
}

/** The keys the schema allows at `path`, found by walking the zod definitions. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let schema: z.core.$ZodType | undefined = PolicyFile;
  const unwrap = (s: z.core.$ZodType | undefined): z.core.$ZodType | undefined => {
    let cur = s;
    while (cur && (cur._zod.def.type === 'optional' || cur._zod.def.type === 'default')) {
      cur = (cur._zod.def as z.core.$ZodOptionalDef).innerType;
    }
    return cur;
  };
  for (const seg of path) {
    schema = unwrap(schema);
    const def = schema?._zod.def;
    if (!def) return [];
    if (def.type === 'object') {
      const d = def as z.core.$ZodObjectDef;
      schema = typeof seg === 'string' && Object.hasOwn(d.shape, seg) ? d.shape[seg] : d.catchall;
    } else if (def.type === 'array') schema = (def as z.core.$ZodArrayDef).element;
    else if (def.type === 'record') schema = (def as z.core.$ZodRecordDef).valueType;
    else return [];
  }
  const def = unwrap(schema)?._zod.def;
  return def?.type === 'object' ? Object.keys((def as z.core.$ZodObjectDef).shape) : [];
}

function suggestKey(path: readonly PropertyKey[], key: string): string | undefined {
  let best: { key: string; d: number } | undefined;
  for (const k of knownKeysAt(path)) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : editDistance(k.toLowerCase(), key.toLowerCase());
    if (d <= (k.length >= 5 ? 2 : 1) && (!best || d < best.d)) best = { key: k, d };
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

function dedupe(errors: PolicyError[]): PolicyError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.path}\u0000${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// ---- resolution ----

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`built-in policy lacks ${what}`);
  return value;
}

const list = <T>(v: T | readonly T[] | undefined): readonly T[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? (v as readonly T[]) : [v as T];

function resolveWindow(w: NonNullable<NonNullable<RuleFile['when']>['outside']>): TimeWindow {
  const days = w.days === undefined ? undefined : parseDays(w.days);
  const hours = w.hours === undefined ? undefined : parseHours(w.hours);
  const dayText = w.days === undefined ? '' : typeof w.days === 'string' ? w.days : w.days.join(',');
  return {
    ...(Array.isArray(days) ? { days } : {}),
    ...(hours !== undefined && typeof hours !== 'string' ? { hours } : {}),
    timeZone: w.timeZone,
    label: [dayText, w.hours ?? '', w.timeZone].filter(Boolean).join(' '),
  };
}

/** A list of action names in normal form (names.ts), each once. */
function normalList(v: string | readonly string[]): readonly string[] {
  return [...new Set((typeof v === 'string' ? [v] : v).map(normalizeActionName))];
}

function resolveRule(r: RuleFile): PolicyRule {
  const w = r.when ?? {};
  const t = r.then ?? {};
  const when = {
    ...(w.action !== undefined ? { action: normalList(w.action) } : {}),
    ...(w.actionMatches !== undefined ? { actionMatches: list(w.actionMatches) } : {}),
    ...(w.agent !== undefined ? { agent: list(w.agent) } : {}),
    ...(w.contentPattern !== undefined ? { contentPattern: list(w.contentPattern) } : {}),
    ...(w.valueAtLeast !== undefined ? { valueAtLeast: w.valueAtLeast } : {}),
    ...(w.riskAtLeast !== undefined ? { riskAtLeast: w.riskAtLeast } : {}),
    ...(w.confidenceBelow !== undefined ? { confidenceBelow: w.confidenceBelow } : {}),
    ...(w.outside !== undefined ? { outside: resolveWindow(w.outside) } : {}),
    ...(w.within !== undefined ? { within: resolveWindow(w.within) } : {}),
  };
  const then = Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined));
  return { name: r.name, ...(r.description !== undefined ? { description: r.description } : {}), when, then };
}

function resolve(f: PolicyFile): Policy {
  const actions = required(f.actions, 'actions');
  const byName: Record<string, ActionTraits> = {};
  for (const [name, traits] of Object.entries(actions)) {
    if (name === 'defaultWeight' || typeof traits !== 'object' || traits === null) continue;
    Object.defineProperty(byName, normalizeActionName(name), {
      enumerable: true,
      value: {
        weight: required(traits.weight, `actions.${name}.weight`),
        ...(traits.reversible !== undefined ? { reversible: traits.reversible } : {}),
        ...(traits.category !== undefined ? { category: traits.category } : {}),
        ...(traits.args !== undefined ? { args: traits.args } : {}),
        ...(traits.strictArgs !== undefined ? { strictArgs: traits.strictArgs } : {}),
        ...(traits.value !== undefined ? { value: traits.value } : {}),
      },
    });
  }

  const levels = Object.fromEntries(
    RISK_LEVELS.map((lvl): [RiskLevel, LevelPolicy] => {
      const l = required(f.levels?.[lvl], `levels.${lvl}`);
      return [
        lvl,
        {
          slaMs: required(parseDuration(required(l.sla, `levels.${lvl}.sla`)), `levels.${lvl}.sla`),
          autoApprove: l.autoApprove ?? false,
          mfa: l.mfa === true || l.mfa === 'webauthn',
          ...(l.mfa === 'webauthn' ? { webauthn: true } : {}),
          approvals: l.approvals ?? 1,
          ...(l.approvers !== undefined ? { approvers: l.approvers } : {}),
          ...(l.deny !== undefined ? { deny: l.deny } : {}),
          ...(l.modifiedNeedsSecondReviewer ? { modifiedNeedsSecondReviewer: true } : {}),
          approvalValidMs: l.approvalValidFor === undefined ? DEFAULT_APPROVAL_VALID_MS : required(parseDuration(l.approvalValidFor), `levels.${lvl}.approvalValidFor`),
          notify: l.notify ?? [],
          ...(l.startLevel !== undefined ? { startLevel: l.startLevel } : {}),
        },
      ];
    }),
  ) as Record<RiskLevel, LevelPolicy>;

  const rawFactors = required(f.riskFactors, 'riskFactors');
  const sum = RISK_FACTOR_NAMES.reduce((s, k) => s + (rawFactors[k] ?? 0), 0);
  const riskFactors = Object.fromEntries(RISK_FACTOR_NAMES.map((k) => [k, (rawFactors[k] ?? 0) / sum])) as Record<RiskFactorName, number>;

  const agents: Record<string, AgentPolicy> = {};
  for (const [name, a] of Object.entries(f.agents ?? {})) {
    Object.defineProperty(agents, name, { enumerable: true, value: resolveAgentFile(a) });
  }

  const escalation = required(f.escalation, 'escalation');
  return {
    actions: { defaultWeight: required(actions.defaultWeight, 'actions.defaultWeight'), byName },
    automation: {
      full: required(f.automation?.full, 'automation.full'),
      supervised: required(f.automation?.supervised, 'automation.supervised'),
      advisory: required(f.automation?.advisory, 'automation.advisory'),
    },
    levels,
    riskThresholds: {
      medium: required(f.riskThresholds?.medium, 'riskThresholds.medium'),
      high: required(f.riskThresholds?.high, 'riskThresholds.high'),
      critical: required(f.riskThresholds?.critical, 'riskThresholds.critical'),
    },
    riskFactors,
    targets: f.targets ?? [],
    rules: (f.rules ?? []).filter((r) => r.enabled !== false).map(resolveRule),
    requireApproval: normalList(f.requireApproval ?? []),
    dangerousActions: f.dangerousActions ?? [],
    escalation: {
      levels: (escalation.levels ?? []).map((l) => ({
        role: l.role ?? null,
        operators: l.operators ?? [],
        groups: l.groups ?? [],
        after: l.after === 'sla' ? 'sla' : required(parseDuration(l.after), 'escalation.levels[].after'),
        notify: l.notify ?? [],
        finalAuthority: l.finalAuthority === true,
      })),
      onFinalTimeout: escalation.onFinalTimeout ?? 'reject',
    },
    agents,
    channels: f.channels ?? {},
    guard: {
      notify: f.guard?.notify ?? [],
      velocity: {
        perHour: required(f.guard?.velocity?.perHour, 'guard.velocity.perHour'),
        perDay: required(f.guard?.velocity?.perDay, 'guard.velocity.perDay'),
        riskLevels: required(f.guard?.velocity?.riskLevels, 'guard.velocity.riskLevels'),
      },
      cooldown: {
        threshold: required(f.guard?.cooldown?.threshold, 'guard.cooldown.threshold'),
        windowMinutes: required(parseDuration(required(f.guard?.cooldown?.window, 'guard.cooldown.window')), 'guard.cooldown.window') / 60_000,
        durationMinutes: required(parseDuration(required(f.guard?.cooldown?.duration, 'guard.cooldown.duration')), 'guard.cooldown.duration') / 60_000,
        riskLevels: required(f.guard?.cooldown?.riskLevels, 'guard.cooldown.riskLevels'),
      },
      slicing: {
        holdMinutes: required(parseDuration(required(f.guard?.slicing?.hold, 'guard.slicing.hold')), 'guard.slicing.hold') / 60_000,
        collectSeconds: required(parseDuration(required(f.guard?.slicing?.collect, 'guard.slicing.collect')), 'guard.slicing.collect') / 1000,
      },
      whilePaused: required(f.guard?.whilePaused, 'guard.whilePaused'),
      agentLimits: {
        ...(f.guard?.agentLimits?.perMinute !== undefined ? { perMinute: f.guard.agentLimits.perMinute } : {}),
        ...(f.guard?.agentLimits?.perHour !== undefined ? { perHour: f.guard.agentLimits.perHour } : {}),
      },
    },
    screening: resolveScreening(f.screening ?? {}),
    contentPatterns: Object.fromEntries(
      Object.entries(f.contentPatterns ?? {}).map(([name, p]) => [
        name,
        typeof p === 'string' ? { regex: p, flags: '' } : { regex: p.regex, flags: p.flags ?? '' },
      ]),
    ),
    auditRetentionDays: required(f.auditRetentionDays, 'auditRetentionDays'),
    admin: { singleAdmin: f.admin?.singleAdmin ?? false },
    prechecks: Object.freeze((f.prechecks ?? []).map(resolvePrecheck)),
  };
}

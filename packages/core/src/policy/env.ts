/**
 * Common policy settings from the environment, for container deployments where writing a policy
 * file is a chore: the review timeouts, the confidence bands and the require-approval list.
 *
 * Precedence, lowest first: the built-in defaults < the policy file < these variables < an
 * agent's own settings (the file's `agents.<name>` and the API overlay, which are per agent and so
 * more specific). The variables are applied to the policy text itself (`applyPolicyOverrides`), so
 * the stored, hashed policy version is the one that runs, and a reload (SIGHUP) applies them again.
 *
 * Pure: the caller passes the environment (server config.ts, the one reader of `process.env`).
 */
import { isMap, parseDocument } from 'yaml';
import { validatePolicy } from './load.ts';

export interface PolicyEnvSetting {
  /** The variable, e.g. COUNTERSIGN_SLA_HIGH. */
  readonly variable: string;
  /** The policy key it sets, as the file spells it. */
  readonly path: readonly string[];
  /** What it means, for `countersign config --effective` and the README. */
  readonly kind: 'duration' | 'unit' | 'actions';
}

const LEVELS = ['low', 'medium', 'high', 'critical'] as const;
const BANDS = ['full', 'supervised', 'advisory'] as const;

/** Every policy setting the environment may set, in the order `config --effective` prints them. */
export const POLICY_ENV_SETTINGS: readonly PolicyEnvSetting[] = Object.freeze([
  ...LEVELS.map((level) => ({ variable: `COUNTERSIGN_SLA_${level.toUpperCase()}`, path: ['levels', level, 'sla'], kind: 'duration' as const })),
  ...BANDS.map((band) => ({ variable: `COUNTERSIGN_AUTOMATION_${band.toUpperCase()}`, path: ['automation', band], kind: 'unit' as const })),
  { variable: 'COUNTERSIGN_REQUIRE_APPROVAL', path: ['requireApproval'], kind: 'actions' as const },
]);

export interface PolicyOverride {
  readonly variable: string;
  readonly path: readonly string[];
  readonly value: string | number | readonly string[];
}

export interface PolicyEnvError {
  readonly variable: string;
  readonly message: string;
}

function parseValue(setting: PolicyEnvSetting, raw: string): string | number | string[] {
  const text = raw.trim();
  if (setting.kind === 'unit') return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  if (setting.kind === 'actions') return text === '' ? [] : text.split(',').map((s) => s.trim());
  return text;
}

function nest(path: readonly string[], value: unknown): Record<string, unknown> {
  let out: unknown = value;
  for (let i = path.length - 1; i >= 0; i--) out = { [path[i]!]: out };
  return out as Record<string, unknown>;
}

/**
 * The overrides the environment sets, each validated as the policy file's key would be (a bad
 * value names its variable). A variable that is unset or empty sets nothing, except
 * COUNTERSIGN_REQUIRE_APPROVAL, where `none` sets the empty list.
 */
export function policyOverridesFrom(env: Readonly<Record<string, string | undefined>>): { overrides: PolicyOverride[]; errors: PolicyEnvError[] } {
  const overrides: PolicyOverride[] = [];
  const errors: PolicyEnvError[] = [];
  for (const setting of POLICY_ENV_SETTINGS) {
    const raw = env[setting.variable];
    if (raw === undefined || raw.trim() === '') continue;
    const value = setting.kind === 'actions' && raw.trim().toLowerCase() === 'none' ? [] : parseValue(setting, raw);
    // A band is checked on its own here (all three at this value, so their order holds); their
    // order is checked with the whole policy, file and environment together, when it activates.
    const probe = setting.kind === 'unit' ? { automation: Object.fromEntries(BANDS.map((b) => [b, value])) } : nest(setting.path, value);
    const result = validatePolicy(probe);
    const key = setting.path.join('.');
    // Only errors about this key: the ordering of bands is checked once the whole policy is known.
    const own = result.ok ? [] : result.errors.filter((e) => e.path === key || e.path.startsWith(`${key}.`) || e.path.startsWith(`${key}[`));
    if (own.length > 0) {
      errors.push({ variable: setting.variable, message: `${setting.variable} (policy ${key}): ${own.map((e) => e.message).join('; ')} (got "${raw}")` });
      continue;
    }
    overrides.push(Object.freeze({ variable: setting.variable, path: setting.path, value }));
  }
  return { overrides, errors };
}

/**
 * The policy text with the overrides written into it (comments and the rest kept), or the text
 * unchanged when there are none. Throws on a text that is not a YAML mapping; the caller
 * validates the result like any policy file.
 */
export function applyPolicyOverrides(text: string, overrides: readonly PolicyOverride[]): string {
  if (overrides.length === 0) return text;
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) return text; // validation reports the YAML error as usual
  if (doc.contents !== null && !isMap(doc.contents)) return text;
  for (const o of overrides) doc.setIn([...o.path], doc.createNode(o.value, { flow: true }));
  return `${doc.toString()}# Set from the environment: ${overrides.map((o) => o.variable).join(', ')}\n`;
}

export type PolicyValueSource = 'default' | 'file' | 'env';

/** Where one env-settable value comes from, given the file's own keys (`null` for no file). */
export function policyValueSource(fileRaw: unknown, overrides: readonly PolicyOverride[], path: readonly string[]): PolicyValueSource {
  if (overrides.some((o) => o.path.join('.') === path.join('.'))) return 'env';
  let at: unknown = fileRaw;
  for (const key of path) {
    if (at === null || typeof at !== 'object' || !(key in (at as Record<string, unknown>))) return 'default';
    at = (at as Record<string, unknown>)[key];
  }
  return at === undefined || at === null ? 'default' : 'file';
}

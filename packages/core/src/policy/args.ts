/**
 * Per-action argument rules (`actions.<name>.args`): what an agent's args, and a reviewer's
 * modified args, must look like before anything is queued or approved. Pure: the policy says,
 * this checks and names every problem by key.
 */
import { compileLinear, type LinearRegex } from './linear.ts';
import type { ArgRule, Policy } from './types.ts';
import { own } from './util.ts';
import { normalizeActionName } from './names.ts';

/**
 * Longer strings are not tested against a pattern. Patterns run on RE2 (linear time), so this is
 * no longer what keeps a pattern cheap; it stays because an argument checked against a pattern is
 * an identifier-like value, and a megabyte of it is more likely an attack than a value.
 */
const PATTERN_LIMIT_CHARS = 1_000;
/** Each rule's pattern compiled once (policies are immutable values; patterns are few). */
const compiled = new Map<string, LinearRegex>();

/** Problems with `args` for `action` under the policy, one per key (empty when fine or when the action has no rules). */
export function checkArgs(policy: Policy, action: string, args: Readonly<Record<string, unknown>>): string[] {
  const traits = own(policy.actions.byName, normalizeActionName(action));
  if (!traits?.args) return [];
  const errors: string[] = [];
  for (const [key, rule] of Object.entries(traits.args)) {
    const present = Object.hasOwn(args, key) && args[key] !== undefined;
    if (!present) {
      if (rule.required) errors.push(`${key}: required by the policy for ${action}`);
      continue;
    }
    const problem = checkValue(args[key], rule);
    if (problem) errors.push(`${key}: ${problem}`);
  }
  if (traits.strictArgs) {
    for (const key of Object.keys(args)) if (!Object.hasOwn(traits.args, key)) errors.push(`${key}: not an argument of ${action} (the policy lists ${Object.keys(traits.args).join(', ') || 'none'})`);
  }
  return errors;
}

function checkValue(value: unknown, rule: ArgRule): string | null {
  const kind = kindOf(value);
  if (!(kind === rule.type || (rule.type === 'number' && kind === 'integer'))) return `expected ${rule.type}, got ${kind}`;
  if (rule.enum && !rule.enum.some((allowed) => allowed === value)) return `must be one of ${rule.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  if (typeof value === 'number') {
    if (rule.minimum !== undefined && value < rule.minimum) return `must be at least ${rule.minimum}`;
    if (rule.maximum !== undefined && value > rule.maximum) return `must be at most ${rule.maximum}`;
  }
  if (typeof value === 'string' || Array.isArray(value)) {
    if (rule.maxLength !== undefined && value.length > rule.maxLength) return `longer than ${rule.maxLength}`;
  }
  if (typeof value === 'string' && rule.pattern !== undefined) {
    if (value.length > PATTERN_LIMIT_CHARS) return `too long (over ${PATTERN_LIMIT_CHARS} characters) to check against its pattern`;
    let re = compiled.get(rule.pattern);
    if (!re) {
      const made = compileLinear(rule.pattern, 'u');
      // The policy schema refuses what RE2 cannot take, so this is a policy built around it: fail closed.
      if (typeof made === 'string') return `its pattern cannot be checked (${made})`;
      re = made;
      if (compiled.size >= 1_000) compiled.clear();
      compiled.set(rule.pattern, re);
    }
    if (!re.test(value)) return `does not match ${rule.pattern}`;
  }
  return null;
}

function kindOf(value: unknown): ArgRule['type'] | 'null' {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  if (typeof value === 'string' || typeof value === 'boolean') return typeof value as 'string' | 'boolean';
  return 'object';
}

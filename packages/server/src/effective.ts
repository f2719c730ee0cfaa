/**
 * `countersign config --effective`: the settings `countersign serve` would run with from this
 * environment and this directory — the log level, the debug line and the policy settings the
 * environment may set — each with where it came from (default, file, env). Computed with the
 * server's own config pipeline (config.ts) and policy reading (serve.ts `readPolicySource`), so a
 * value refused at start is refused here with the same message.
 *
 * An agent's own settings (the file's `agents.<name>`, the API overlay) sit above these, per
 * agent: `countersign agents config get NAME` shows them.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { CountersignError, DEFAULT_POLICY_YAML, POLICY_ENV_SETTINGS, parsePolicy, policyValueSource, type PolicyValueSource } from '@countersign/core';
import { resolveServerConfig, type Environment } from './config.ts';
import { readPolicySource } from './serve.ts';

export interface EffectiveRow {
  readonly key: string;
  readonly value: unknown;
  readonly source: PolicyValueSource;
  /** The variable that sets it. */
  readonly variable: string;
}

export interface EffectiveSettings {
  readonly policySource: string;
  readonly rows: readonly EffectiveRow[];
}

function at(raw: unknown, path: readonly string[]): unknown {
  let value: unknown = raw;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

export function effectiveSettings(env: Environment, cwd: string): EffectiveSettings {
  const config = resolveServerConfig({}, env, cwd);
  const source = readPolicySource(config);
  const checked = parsePolicy(source.text);
  if (!checked.ok) {
    throw new CountersignError('POLICY_INVALID', `the policy (${source.source}) is invalid`, { errors: checked.errors });
  }
  const fileRaw = config.policyPath === null ? null : (parse(readFileSync(config.policyPath, 'utf8')) as unknown);
  const defaults = parse(DEFAULT_POLICY_YAML) as unknown;
  const flag = (name: string) => ((env[name] ?? '').trim() === '' ? 'default' : 'env');
  const rows: EffectiveRow[] = [
    // COUNTERSIGN_DEBUG=1 without a level means debug.
    flag('COUNTERSIGN_LOG_LEVEL') === 'default' && config.logging.debug
      ? { key: 'log level', value: config.logging.level, source: 'env', variable: 'COUNTERSIGN_DEBUG' }
      : { key: 'log level', value: config.logging.level, source: flag('COUNTERSIGN_LOG_LEVEL'), variable: 'COUNTERSIGN_LOG_LEVEL' },
    { key: 'debug routing line', value: config.logging.debug, source: flag('COUNTERSIGN_DEBUG'), variable: 'COUNTERSIGN_DEBUG' },
  ];
  for (const setting of POLICY_ENV_SETTINGS) {
    const from = policyValueSource(fileRaw, config.policyOverrides, setting.path);
    const override = config.policyOverrides.find((o) => o.variable === setting.variable);
    const value = override ? override.value : from === 'file' ? at(fileRaw, setting.path) : at(defaults, setting.path);
    rows.push({ key: setting.path.join('.'), value, source: from, variable: setting.variable });
  }
  return { policySource: source.source, rows };
}

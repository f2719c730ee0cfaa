/**
 * `countersign agents config get|set` (issue 18): an agent's configuration over the policy file,
 * through `GET/PUT /v1/agents/:name/config`. `get` prints every effective setting and where it
 * came from; `set` changes keys of the current overlay (`key=value`, `--unset key`) or replaces it
 * from a JSON file (`--file`), and says whether it applied or waits for another admin.
 */
import { readFileSync } from 'node:fs';
import { CountersignError } from '@countersign/core/errors';
import type { Command } from 'commander';
import { clientFrom, collect, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { safe } from '../format.ts';

const seg = (ref: string) => encodeURIComponent(ref);

interface Setting {
  key: string;
  value: unknown;
  source: string;
  from: string | null;
  /** The overlay writes this key: its value, and whether it applies (false: the file is as strict or stricter). */
  overlay?: { value: unknown; applies: boolean };
}
interface View {
  agent: { id: string; name: string };
  version: number;
  integrity: 'ok' | 'failed';
  overlay: Record<string, unknown>;
  /** For each key the overlay loosens: the policy file's value it was approved against. */
  baselines?: Record<string, unknown>;
  effective: Setting[];
  singleAdmin: boolean;
}
interface PutResult {
  status: 'applied' | 'unchanged' | 'pending_approval';
  version?: number;
  requestId?: string;
  loosens?: { key: string; why: string }[];
}

/** `agents config get`: one line per setting, its value and where it came from. */
export function renderAgentConfig(v: View): string {
  const width = Math.max(...v.effective.map((s) => s.key.length));
  const lines = [`agent ${safe(v.agent.name)} (${safe(v.agent.id)}): overlay version ${v.version}${v.integrity === 'failed' ? ' — FAILS ITS INTEGRITY CHECK: its requests are refused until an admin sets it again' : ''}`];
  const text = (x: unknown) => (x === null || x === undefined ? '-' : typeof x === 'string' ? x : JSON.stringify(x));
  for (const s of v.effective) {
    // An overlay value the file outdoes (as strict or stricter) is written but does not apply: say so.
    const idle = s.overlay && !s.overlay.applies ? `; the overlay's ${safe(text(s.overlay.value))} does not apply (the file is as strict or stricter)` : '';
    lines.push(`  ${s.key.padEnd(width)}  ${safe(text(s.value)).padEnd(16)}  ${s.source}${s.from ? ` (${safe(s.from)})` : ''}${idle}`);
  }
  const baselines = Object.entries(v.baselines ?? {});
  if (baselines.length > 0) {
    lines.push('approved loosenings (each applies while the policy file keeps the value it was approved against):');
    for (const [key, value] of baselines) lines.push(`  ${safe(key)}: approved against the file's ${safe(text(value))}`);
  }
  return lines.join('\n');
}

/** `a.b.c=value` into the overlay; the value is JSON when it parses (numbers, booleans, lists), else a string. */
export function assign(overlay: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new CountersignError('VALIDATION_FAILED', `expected key=value, e.g. enabled=false or levels.high.mfa=true (got "${assignment}")`);
  const path = assignment.slice(0, eq).split('.');
  const text = assignment.slice(eq + 1);
  let value: unknown = text;
  try {
    value = JSON.parse(text);
  } catch {
    // a plain string (a duration, whilePaused: hold, …)
  }
  let at: Record<string, unknown> = overlay;
  for (const key of path.slice(0, -1)) {
    const next = Object.hasOwn(at, key) ? at[key] : undefined;
    if (typeof next !== 'object' || next === null || Array.isArray(next)) Object.defineProperty(at, key, { value: {}, enumerable: true, writable: true, configurable: true });
    at = at[key] as Record<string, unknown>;
  }
  Object.defineProperty(at, path.at(-1)!, { value, enumerable: true, writable: true, configurable: true });
}

/** Removes `a.b.c` from the overlay (and mappings it leaves empty). */
export function unset(overlay: Record<string, unknown>, key: string): void {
  const path = key.split('.');
  const walk = (o: Record<string, unknown>, i: number): void => {
    const k = path[i]!;
    if (!Object.hasOwn(o, k)) return;
    if (i === path.length - 1) delete o[k];
    else if (typeof o[k] === 'object' && o[k] !== null) {
      walk(o[k] as Record<string, unknown>, i + 1);
      if (Object.keys(o[k] as object).length === 0) delete o[k];
    }
  };
  walk(overlay, 0);
}

export function registerAgentConfigCommands(program: Command): void {
  const agents = program.commands.find((c) => c.name() === 'agents') ?? program.command('agents').description('agents');
  const config = agents.command('config').description("an agent's configuration over the policy file (GET/PUT /v1/agents/:name/config)");
  withClientOptions(config.command('get').description('every setting that applies to the agent and where it came from (admin, auditor)').argument('<agent>', 'name or id')).action(
    async (ref: string, flags: CommonFlags) => {
      const out = await clientFrom(flags).get<View>(`/v1/agents/${seg(ref)}/config`);
      if (flags.json) return printJson(out);
      print(renderAgentConfig(out));
    },
  );
  withClientOptions(
    config
      .command('set')
      .description('change the agent\'s overlay (admin): key=value pairs over the current one, or --file; a change that loosens the gate waits for another admin')
      .argument('<agent>', 'name or id')
      .argument('[assignments...]', 'key=value, e.g. enabled=false  limits.perMinute=30  levels.medium.autoApprove=false  requireApproval=["wire_transfer"]')
      .option('--unset <key>', 'remove a key from the overlay (the policy file\'s value applies again); repeatable', collect())
      .option('--file <path>', 'replace the whole overlay with this JSON file ({} clears it)'),
  ).action(async (ref: string, assignments: string[], flags: CommonFlags & { unset?: string[]; file?: string }) => {
    const client = clientFrom(flags);
    let overlay: Record<string, unknown>;
    if (flags.file !== undefined) {
      try {
        overlay = JSON.parse(readFileSync(flags.file, 'utf8')) as Record<string, unknown>;
      } catch (err) {
        throw new CountersignError('VALIDATION_FAILED', `cannot read ${flags.file} as JSON: ${(err as Error).message}`);
      }
    } else {
      if (assignments.length === 0 && (flags.unset ?? []).length === 0) throw new CountersignError('VALIDATION_FAILED', 'nothing to set: give key=value pairs, --unset KEY or --file PATH');
      overlay = structuredClone((await client.get<View>(`/v1/agents/${seg(ref)}/config`)).overlay);
    }
    for (const a of assignments) assign(overlay, a);
    for (const k of flags.unset ?? []) unset(overlay, k);
    const out = await client.request<PutResult>('PUT', `/v1/agents/${seg(ref)}/config`, { body: overlay, auth: true });
    if (flags.json) return printJson(out);
    if (out.status === 'pending_approval') {
      print(`This loosens the gate for ${safe(ref)}, so another admin must approve it: request ${safe(out.requestId ?? '')}`);
      for (const l of out.loosens ?? []) print(`  ${safe(l.key)}: ${safe(l.why)}`);
      print(`Another admin runs: countersign approve ${safe(out.requestId ?? '')}`);
      return;
    }
    print(out.status === 'unchanged' ? `agent ${safe(ref)}: unchanged (version ${out.version})` : `agent ${safe(ref)}: configuration version ${out.version} applied`);
  });
}

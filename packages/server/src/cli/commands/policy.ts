/**
 * `countersign policy check|diff|replay`: the admin's tools for a policy file before it is deployed.
 *
 *   check FILE          validates FILE exactly as `serve` and a SIGHUP reload do (policy-checks.ts:
 *                       every wrong key with "did you mean", channel settings against this shell's
 *                       environment); exit 0 with a one-line summary, else 1 with every error
 *   diff [A] B          what changes from A (default: the server's active policy) to B, by
 *                       effective setting after defaults, one sentence each (core diffPolicies)
 *   replay FILE         POST /v1/policy/replay: how the stored requests of a period would fare under FILE
 *
 * check and diff of two files need no server; diff of one file and replay ask the server.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Policy, ReplayChange, ReplayReport } from '@countersign/core';
import { formatDuration } from '@countersign/core/duration';
import { CountersignError } from '@countersign/core/errors';
import { processEnvironment } from '../../environment.ts';
import { sha256Hex } from '../../ids.ts';
import { ApiClient } from '../http-client.ts';
import { positiveInt, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { plural, safe } from '../format.ts';

/** A replay of the largest period can take a while; the client waits this long. */
const REPLAY_TIMEOUT_MS = 10 * 60_000;

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { field: 'file' });
  }
}

/**
 * FILE validated as the server would at startup: the resolved policy, or POLICY_INVALID with
 * every error. The policy parser and its checks load here, not at the CLI's start-up.
 */
export async function checkPolicyFile(file: string): Promise<{ text: string; policy: Policy }> {
  const text = readText(file);
  const { serverPolicyChecks, validatePolicyText } = await import('../../policy-checks.ts');
  return { text, policy: validatePolicyText(text, file, serverPolicyChecks(processEnvironment())) };
}

export function policySummary(policy: Policy): string {
  const channels = Object.keys(policy.channels);
  return [
    plural(policy.rules.length, 'rule'),
    plural(Object.keys(policy.actions.byName).length, 'described action'),
    plural(policy.escalation.levels.length, 'escalation level'),
    `channels: ${channels.length ? channels.join(', ') : 'none'}`,
  ].join(', ');
}

export function registerPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('check, compare and replay policy files before deploying them');

  policy
    .command('check')
    .description('validate a policy file as the server does at startup and on reload (exit 1 naming every wrong key)')
    .argument('<file>', 'the policy file (YAML)')
    .option('--json', 'print JSON instead of text')
    .action(async (file: string, flags: { json?: boolean }) => {
      const { text, policy: p } = await checkPolicyFile(file);
      const hash = sha256Hex(text);
      if (flags.json) printJson({ valid: true, file, hash, rules: p.rules.length, actions: Object.keys(p.actions.byName).length, escalationLevels: p.escalation.levels.length, channels: Object.keys(p.channels) });
      else print(`policy ${safe(file)} is valid: ${safe(policySummary(p))} (sha256 ${hash.slice(0, 12)}…)`);
    });

  withClientOptions(
    policy
      .command('diff')
      .description("what changes between two policy files, or from the server's active policy to a file, by effective setting")
      .argument('<a>', 'the policy now (a file); with only one argument, the file to compare the active policy with')
      .argument('[b]', 'the policy to compare with (a file)'),
  ).action(async (a: string, b: string | undefined, flags: CommonFlags) => {
    let before: { policy: Policy; label: string };
    let after: { policy: Policy; label: string };
    if (b === undefined) {
      const active = await new ApiClient({ url: flags.url, token: flags.token }).get<{ version: number; policy: Policy }>('/v1/policy');
      before = { policy: active.policy, label: `active policy v${active.version}` };
      after = { policy: (await checkPolicyFile(a)).policy, label: a };
    } else {
      before = { policy: (await checkPolicyFile(a)).policy, label: a };
      after = { policy: (await checkPolicyFile(b)).policy, label: b };
    }
    const { diffPolicies } = await import('@countersign/core');
    const changes = diffPolicies(before.policy, after.policy);
    if (flags.json) {
      printJson({ from: before.label, to: after.label, changes });
      return;
    }
    if (changes.length === 0) {
      print(`no effective change from ${safe(before.label)} to ${safe(after.label)}`);
      return;
    }
    print(`${plural(changes.length, 'change')} from ${safe(before.label)} to ${safe(after.label)}:`);
    for (const c of changes) print(`  ${c.kind === 'added' ? '+' : c.kind === 'removed' ? '-' : '~'} ${safe(c.text)}`);
  });

  withClientOptions(
    policy
      .command('replay')
      .description('what-if: re-evaluate the stored requests of a period under a candidate policy, before deploying it (admin or auditor)')
      .argument('<file>', 'the candidate policy (YAML)')
      .requiredOption('--since <when>', 'a duration back from now (30d, 12h) or an ISO 8601 time')
      .option('--limit <n>', 'most requests scanned, newest first (default 10000)', positiveInt(100_000)),
  ).action(async (file: string, flags: CommonFlags & { since: string; limit?: number }) => {
    // Checked here first, so a bad file fails with the same lines as `policy check` without a server.
    const { text } = await checkPolicyFile(file);
    const client = new ApiClient({ url: flags.url, token: flags.token }, processEnvironment(), REPLAY_TIMEOUT_MS);
    const report = await client.post<ReplayReport & { candidate: { hash: string; rules: number } }>('/v1/policy/replay', {
      policy: text,
      since: flags.since,
      ...(flags.limit !== undefined ? { limit: flags.limit } : {}),
    });
    if (flags.json) printJson(report);
    else print(replayText(report, file));
  });
}

const ROUTE_WORDS: Record<string, string> = { auto_approve: 'auto-approved', review: 'to review', block: 'blocked', refused: 'refused (args)' };
const routeWord = (r: string) => ROUTE_WORDS[r] ?? r;

function changeLines(changes: readonly ReplayChange[], word: (s: string) => string = (s) => s): string[] {
  const lines: string[] = [];
  for (const c of changes) {
    lines.push(`  ${word(c.from)} → ${word(c.to)}: ${c.count}`);
    for (const e of c.examples) lines.push(`      e.g. ${safe(e.id)}  ${safe(e.action)} by ${safe(e.agent)}`);
  }
  return lines;
}

function perDay(n: number): string {
  return n >= 10 ? String(Math.round(n)) : String(Math.round(n * 10) / 10);
}

/** The replay report as an admin reads it. Every value from the server goes through `safe`. */
export function replayText(r: ReplayReport & { candidate: { hash: string; rules: number } }, file: string): string {
  const days = r.period.days;
  const out: string[] = [];
  out.push(`What-if replay of ${safe(file)} (sha256 ${safe(r.candidate.hash.slice(0, 12))}…, ${plural(r.candidate.rules, 'rule')})`);
  out.push(`over ${plural(r.replayed, 'stored request')} from ${safe(r.period.coveredFrom.slice(0, 16).replace('T', ' '))} to ${safe(r.period.to.slice(0, 16).replace('T', ' '))} UTC (${formatDuration(Math.round(days * 86_400_000))})${r.skipped ? `, ${r.skipped} skipped (aggregate reviews or unreadable rows)` : ''}`);
  out.push(r.changed === 0 ? 'Nothing would change.' : `${plural(r.changed, 'request')} would be handled differently.`);
  out.push('');
  out.push('Routes                 now   candidate');
  for (const route of ['auto_approve', 'review', 'block', 'refused']) {
    const now = (r.routes.before as Record<string, number>)[route] ?? 0;
    const next = (r.routes.after as Record<string, number>)[route] ?? 0;
    if (route === 'refused' && now === 0 && next === 0) continue;
    out.push(`  ${routeWord(route).padEnd(18)} ${String(now).padStart(5)}   ${String(next).padStart(5)}`);
  }
  if (r.routes.changes.length) out.push(...changeLines(r.routes.changes, routeWord));
  if (r.riskLevels.changes.length) {
    out.push('', 'Risk levels');
    out.push(...changeLines(r.riskLevels.changes));
  }
  if (r.approvers.changes.length) {
    out.push('', 'Approvers (requests reviewed either way)');
    out.push(...changeLines(r.approvers.changes));
  }
  out.push('', `Step-up MFA: ${r.stepUp.before} → ${r.stepUp.after} request(s)`);
  if (r.stepUp.changes.length) out.push(...changeLines(r.stepUp.changes));
  if (r.escalationStart.changes.length) {
    out.push('', 'Escalation starts at');
    out.push(...changeLines(r.escalationStart.changes));
  }
  const lb = r.reviewLoad.before;
  const la = r.reviewLoad.after;
  out.push('', 'Expected review load');
  out.push(`  reviews:   ${lb.reviews} → ${la.reviews} (${perDay(lb.reviewsPerDay)} → ${perDay(la.reviewsPerDay)} a day)`);
  out.push(`  approvals: ${lb.approvals} → ${la.approvals} votes needed (${perDay(lb.approvalsPerDay)} → ${perDay(la.approvalsPerDay)} a day)`);
  if (r.rules.length) {
    out.push('', 'Rules matching a different number of requests');
    for (const rule of r.rules) out.push(`  ${safe(rule.name)}: ${rule.before} → ${rule.after}`);
  }
  out.push('', `Self-check: ${r.reproduced.checked - r.reproduced.differed} of ${r.reproduced.checked} replayed under the policy that judged them reproduce what happened${r.reproduced.unchecked ? ` (${r.reproduced.unchecked} not checkable)` : ''}.`);
  for (const e of r.reproduced.examples) out.push(`      e.g. ${safe(e.id)}  ${safe(e.action)}: stored ${safe(e.from)}, replayed ${safe(e.to)}`);
  out.push('', 'Not replayed exactly:');
  for (const c of r.caveats) out.push(`  - ${safe(c)}`);
  return out.join('\n');
}

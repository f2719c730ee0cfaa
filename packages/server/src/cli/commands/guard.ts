/**
 * The guard's commands: `mfa enrol|confirm|status` (step-up TOTP for the caller), `approvers
 * velocity|cooldown|allowlist` (a manual cool-down, an operator's approval IP allowlist),
 * `roles allowlist` (a role's), `agents pause|resume|slicing`.
 */
import { Option, type Command } from 'commander';
import { ROLES } from '@countersign/core/constants';
import { CountersignError } from '@countersign/core/errors';
import { clientFrom, collect, positiveInt, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { relative, safe } from '../format.ts';

const seg = (ref: string) => encodeURIComponent(ref);

interface Velocity {
  operatorId: string;
  operator: string;
  riskLevels: string[];
  counts: Record<string, number>;
  limits: Record<string, number>;
  allowed: boolean;
  reason: string | null;
  resetAt: string | null;
}

/** `approvers velocity`: one line per window, then whether another approval would pass. */
export function renderVelocity(v: Velocity, now = Date.now()): string {
  const levels = v.riskLevels.length > 0 ? v.riskLevels.map(safe).join(' and ') : 'no';
  const lines = [`${safe(v.operator)} (${safe(v.operatorId)}): approvals of ${levels}-risk requests`];
  const windows = Object.keys(v.limits);
  const width = Math.max(...windows.map((w) => `last ${w}`.length));
  for (const w of windows) {
    lines.push(`  ${`last ${safe(w)}:`.padEnd(width + 2)}${v.counts[w] ?? 0} of ${v.limits[w]}`);
  }
  // Only the velocity limits: a cool-down is its own state (`approvers cooldown`), so this never says "may approve".
  lines.push(
    v.allowed
      ? '  velocity limit: not reached (a cool-down, if any, is shown by `countersign approvers cooldown`)'
      : `  velocity limit: REACHED — ${safe(v.reason ?? 'limit reached')}; ${v.resetAt ? `a slot frees ${relative(v.resetAt, now)} (${safe(v.resetAt)})` : 'another reviewer must take it'}`,
  );
  return lines.join('\n');
}

/**
 * `<parent> allowlist <ref>`: shows the approval IP allowlist at `path(ref)`; with `--cidr`
 * (repeatable) replaces it, with `--clear` lifts it (admin). Operators' and roles' lists read the same.
 */
function allowlistCommand(parent: Command, what: 'operator' | 'role', argument: string, path: (ref: string) => string): void {
  withClientOptions(
    parent
      .command('allowlist')
      .description(`show the IP allowlist ${what === 'operator' ? 'an' : 'a'} ${what}'s approvals must come from; --cidr sets it, --clear lifts it (admin)`)
      .argument(`<${what}>`, argument)
      .option('--cidr <cidr>', 'an allowed network (10.0.0.0/8, 2001:db8::/32) or address; repeat for several; replaces the list', collect())
      .addOption(new Option('--clear', 'remove the list (other lists that apply to the approver still do)').conflicts('cidr')),
  ).action(async (ref: string, flags: CommonFlags & { cidr?: string[]; clear?: boolean }) => {
    const client = clientFrom(flags);
    const out =
      flags.cidr !== undefined || flags.clear
        ? await client.request<{ cidrs: string[] }>('PUT', path(ref), { body: { cidrs: flags.cidr ?? [] }, auth: true })
        : await client.get<{ cidrs: string[] }>(path(ref));
    if (flags.json) return printJson(out);
    print(out.cidrs.length > 0 ? `${what} ${safe(ref)}: approvals only from ${out.cidrs.map(safe).join(', ')}` : `${what} ${safe(ref)}: no IP allowlist`);
  });
}

export function registerGuardCommands(program: Command): void {
  const mfa = program.command('mfa').description('step-up MFA: enrol a TOTP authenticator for approvals the policy protects');
  withClientOptions(mfa.command('enrol').description('start TOTP enrolment: prints the secret and otpauth:// URI once')).action(async (flags: CommonFlags) => {
    const out = await clientFrom(flags).post<{ secret: string; otpauthUri: string; encryptedAtRest: boolean }>('/v1/operators/me/totp', undefined);
    if (flags.json) return printJson(out);
    print(`secret: ${safe(out.secret)}`);
    print(`uri:    ${safe(out.otpauthUri)}`);
    print('Add it to an authenticator app (scan the URI as a QR code, or type the secret), then run: countersign mfa confirm CODE');
    if (!out.encryptedAtRest) print('note: the server has no COUNTERSIGN_ENCRYPTION_KEY, so it stores this secret unencrypted');
  });
  withClientOptions(mfa.command('confirm').description('confirm enrolment with the current 6-digit code').argument('<code>', 'the code the authenticator shows')).action(
    async (code: string, flags: CommonFlags) => {
      const out = await clientFrom(flags).post<{ confirmedAt: string }>('/v1/operators/me/totp/confirm', { code });
      if (flags.json) return printJson(out);
      print(`TOTP enrolled (${safe(out.confirmedAt)}); approve protected requests with --totp CODE`);
    },
  );
  withClientOptions(mfa.command('status').description('whether you have TOTP enrolled')).action(async (flags: CommonFlags) => {
    const out = await clientFrom(flags).get<{ enrolled: boolean; pending: boolean }>('/v1/operators/me/totp');
    if (flags.json) return printJson(out);
    print(out.enrolled ? 'enrolled' : out.pending ? 'enrolment started, not confirmed' : 'not enrolled');
  });

  const approvers = program.command('approvers').description('approver velocity, cool-downs and IP allowlists');
  withClientOptions(approvers.command('velocity').description("an approver's high/critical approvals against the limits").argument('<operator>', 'name or id')).action(
    async (ref: string, flags: CommonFlags) => {
      const out = await clientFrom(flags).get<Velocity>(`/v1/approvers/${seg(ref)}/velocity`);
      if (flags.json) return printJson(out);
      print(renderVelocity(out));
    },
  );
  withClientOptions(
    approvers
      .command('cooldown')
      .description("show an approver's cool-down; with --minutes and --reason, start one on someone you outrank (lead or more senior); `cooldown lift <operator> --reason` ends a manual one")
      .argument('<operator>', 'name or id (or `lift`, then the operator)')
      .argument('[operator]', 'with `lift`: whose cool-down to end')
      .option('--minutes <n>', 'length of a manual cool-down', positiveInt(7 * 24 * 60))
      .option('--reason <text>', 'why (required with --minutes and with lift)'),
  ).action(async (first: string, second: string | undefined, flags: CommonFlags & { minutes?: number; reason?: string }) => {
    const client = clientFrom(flags);
    const lifting = first === 'lift' && second !== undefined;
    const ref = lifting ? second : first;
    const path = `/v1/approvers/${seg(ref)}/cooldown`;
    if (lifting && !flags.reason) throw new CountersignError('VALIDATION_FAILED', 'say why: cooldown lift <operator> --reason TEXT');
    const out = lifting
      ? await client.delete<Record<string, unknown>>(path, { reason: flags.reason })
      : flags.minutes !== undefined
        ? await client.post<Record<string, unknown>>(path, { minutes: flags.minutes, reason: flags.reason ?? '' })
        : await client.get<Record<string, unknown>>(path);
    if (flags.json) return printJson(out);
    if (lifting) print(`lifted the manual cool-down of ${safe(String(out.operator))}`);
    print(out.active ? `cool-down until ${safe(String(out.until))}: ${safe(String(out.reason))}` : 'no cool-down');
  });
  allowlistCommand(approvers, 'operator', 'name or id', (ref) => `/v1/operators/${seg(ref)}/ip-allowlist`);

  const roles = program.command('roles').description("a role's approval IP allowlist (applies to everyone holding the role, on top of their own)");
  allowlistCommand(roles, 'role', ROLES.join(' | '), (role) => `/v1/roles/${seg(role)}/ip-allowlist`);

  const agents = program.command('agents').description('agent pauses and slicing reports');
  withClientOptions(
    agents
      .command('pause')
      .description("pause an agent: its new requests are refused (lead or more senior)")
      .argument('<agent>', 'name or id')
      .requiredOption('--minutes <n>', 'how long', positiveInt(30 * 24 * 60))
      .requiredOption('--reason <text>', 'why'),
  ).action(async (ref: string, flags: CommonFlags & { minutes: number; reason: string }) => {
    const out = await clientFrom(flags).post<Record<string, unknown>>(`/v1/agents/${seg(ref)}/pause`, { minutes: flags.minutes, reason: flags.reason });
    if (flags.json) return printJson(out);
    print(`${safe(String(out.agent))} paused until ${safe(String(out.until))}`);
  });
  withClientOptions(agents.command('resume').description('end a pause early').argument('<agent>', 'name or id').requiredOption('--reason <text>', 'why')).action(
    async (ref: string, flags: CommonFlags & { reason: string }) => {
      const out = await clientFrom(flags).post<Record<string, unknown>>(`/v1/agents/${seg(ref)}/resume`, { reason: flags.reason });
      if (flags.json) return printJson(out);
      print(`${safe(String(out.agent))} resumed`);
    },
  );
  withClientOptions(
    agents
      .command('slicing')
      .description("slicing-attack report over the agent's recent requests")
      .argument('<agent>', 'name or id')
      .option('--window <minutes>', 'window to judge', positiveInt(24 * 60)),
  ).action(async (ref: string, flags: CommonFlags & { window?: number }) => {
    const out = await clientFrom(flags).get<{ attackDetected: boolean; confidence: number; alerts: Array<{ type: string; confidence: number; description: string }> }>(
      `/v1/agents/${seg(ref)}/slicing`,
      { windowMinutes: flags.window },
    );
    if (flags.json) return printJson(out);
    print(out.attackDetected ? `ATTACK SUSPECTED (confidence ${out.confidence})` : `no attack detected (confidence ${out.confidence})`);
    for (const a of out.alerts) print(`  ${safe(a.type)} ${a.confidence}: ${safe(a.description)}`);
  });
}

/**
 * The credential lifecycle on the command line (issue 13): `keys list|revoke|rotate`,
 * `operators disable|enable|remove|set-roles|rotate-token` (HTTP clients, admin), and
 * `admin recover`, which opens the database itself and needs the server secret file: it is the
 * break-glass for a lost admin token, run on the server host.
 */
import { Option, type Command } from 'commander';
import type { Role } from '@countersign/core';
import { ROLES } from '@countersign/core/constants';
import { CountersignError } from '@countersign/core/errors';
import { clientFrom, collect, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { relative, safe, table } from '../format.ts';
import { idSegment } from '../http-client.ts';

const SHOWN_ONCE = 'This is shown ONCE and cannot be retrieved later; store it now (e.g. in a secret manager).';

interface KeyItem {
  id: string;
  agentName: string;
  status: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
}

export function registerKeyLifecycle(keys: Command): void {
  withClientOptions(keys.command('list').description('agent keys: id, agent, status, created and last used (never the keys)')).action(async (flags: CommonFlags) => {
    const { items } = await clientFrom(flags).get<{ items: KeyItem[] }>('/v1/keys');
    if (flags.json) return printJson(items);
    if (items.length === 0) return print('No keys.');
    const now = Date.now();
    print(
      table(items, [
        { header: 'ID', value: (k) => k.id },
        { header: 'AGENT', value: (k) => k.agentName, max: 32 },
        { header: 'STATUS', value: (k) => (k.status === 'expiring' && k.expiresAt ? `expires ${k.expiresAt}` : k.status) },
        { header: 'CREATED', value: (k) => relative(k.createdAt, now) },
        { header: 'LAST USED', value: (k) => relative(k.lastUsedAt, now) },
      ]),
    );
  });

  withClientOptions(keys.command('revoke').description('revoke an agent key: every server refuses it within seconds, open streams included').argument('<key>', 'key id, or the agent name when it has one usable key')).action(
    async (ref: string, flags: CommonFlags) => {
      const out = await clientFrom(flags).delete<KeyItem>(`/v1/keys/${idSegment(ref)}`);
      if (flags.json) return printJson(out);
      print(`revoked key ${safe(out.id)} of agent ${safe(out.agentName)}`);
    },
  );

  withClientOptions(
    keys
      .command('rotate')
      .description('give the agent a new key (shown once); the old one keeps working for --grace')
      .argument('<key>', 'key id, or the agent name when it has one usable key')
      .option('--grace <seconds>', 'how long the old key stays valid (0 – 604800; default 0: revoked now)'),
  ).action(async (ref: string, flags: CommonFlags & { grace?: string }) => {
    const graceSeconds = flags.grace === undefined ? undefined : Number(flags.grace);
    if (graceSeconds !== undefined && (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > 604_800)) {
      throw new CountersignError('VALIDATION_FAILED', '--grace is a whole number of seconds from 0 to 604800');
    }
    const out = await clientFrom(flags).post<{ keyId: string; agentName: string; key: string; previousKeyId: string; previousValidUntil: string }>(
      `/v1/keys/${idSegment(ref)}/rotate`,
      graceSeconds === undefined ? {} : { graceSeconds },
    );
    if (flags.json) return printJson(out);
    print(`new key ${safe(out.keyId)} for agent ${safe(out.agentName)}; ${safe(out.previousKeyId)} works until ${safe(out.previousValidUntil)}`);
    print(`key: ${safe(out.key)}`);
    print(`warning: ${SHOWN_ONCE}`);
  });
}

export function registerOperatorLifecycle(operators: Command): void {
  const patch = (name: string, description: string, body: (flags: Record<string, unknown>) => Record<string, unknown>, extra?: (c: Command) => Command) => {
    const command = operators.command(name).description(description).argument('<operator>', 'name, id or me');
    withClientOptions(extra ? extra(command) : command).action(async (ref: string, flags: CommonFlags & Record<string, unknown>) => {
      const out = await clientFrom(flags).patch<{ name: string; roles: Role[]; disabled: boolean }>(`/v1/operators/${idSegment(ref)}`, body(flags));
      if (flags.json) return printJson(out);
      print(`${safe(out.name)}: roles ${out.roles.map(safe).join(', ')}${out.disabled ? '; disabled' : ''}`);
    });
  };
  patch('disable', 'disable an operator: their tokens stop working and their sessions end (not the last active admin)', () => ({ disabled: true }));
  patch('enable', 'enable a disabled operator again (their tokens work again; sessions do not come back)', () => ({ disabled: false }));
  patch(
    'set-roles',
    "replace an operator's roles (the last active admin cannot be demoted)",
    (flags) => ({ roles: flags.role }),
    (c) => c.addOption(new Option('--role <role>', `a role; repeat for several (${ROLES.join(', ')})`).argParser(collect(ROLES)).makeOptionMandatory()),
  );

  withClientOptions(operators.command('remove').description('remove an operator: every token revoked, every session ended (their past reviews stay)').argument('<operator>', 'name, id or me')).action(
    async (ref: string, flags: CommonFlags) => {
      const out = await clientFrom(flags).delete<{ name: string; revokedTokenIds: string[] }>(`/v1/operators/${idSegment(ref)}`);
      if (flags.json) return printJson(out);
      print(`removed ${safe(out.name)} (${out.revokedTokenIds.length} token(s) revoked)`);
    },
  );

  withClientOptions(operators.command('rotate-token').description('give an operator a new token (shown once); their old tokens are revoked. `rotate-token me`: a token only you have, so whoever created you or rotated yours no longer holds it (four-eyes)').argument('<operator>', 'name, id or me')).action(
    async (ref: string, flags: CommonFlags) => {
      const out = await clientFrom(flags).post<{ name: string; token: string; revokedTokenIds: string[] }>(`/v1/operators/${idSegment(ref)}/token`, {});
      if (flags.json) return printJson(out);
      print(`new token for ${safe(out.name)}; ${out.revokedTokenIds.length} old token(s) revoked`);
      print(`token: ${safe(out.token)}`);
      print(`warning: ${SHOWN_ONCE}`);
    },
  );
}

export function registerAdminRecover(program: Command): void {
  const admin = program.command('admin').description('break-glass administration, run on the server host');
  admin
    .command('recover')
    .description('mint a new admin token when none is left: needs the database AND the server secret file (a database writer alone cannot)')
    .option('--database <url>', 'sqlite:PATH or postgres://… (env COUNTERSIGN_DATABASE_URL); required: it is never guessed')
    .option('--secret-file <path>', 'the server secret file (env COUNTERSIGN_SERVER_SECRET_PATH; default beside the audit key)')
    .option('--audit-key <path>', 'the audit key, to sign and redact like the server (env COUNTERSIGN_AUDIT_KEY_PATH)')
    .option('--name <name>', 'the operator to (re)make admin; created if new (default recovery-admin)')
    .option('--json', 'print the result as JSON')
    .action(async (flags: { database?: string; secretFile?: string; auditKey?: string; name?: string; json?: boolean }) => {
      const { processEnvironment, resolveRuntimeConfig } = await import('../../config.ts');
      const env = processEnvironment();
      const url = flags.database ?? env.COUNTERSIGN_DATABASE_URL;
      if (!url) throw new CountersignError('VALIDATION_FAILED', 'say which database: --database URL or COUNTERSIGN_DATABASE_URL (the one your servers use)');
      const config = resolveRuntimeConfig({ database: url, auditKey: flags.auditKey }, flags.secretFile ? { ...env, COUNTERSIGN_SERVER_SECRET_PATH: flags.secretFile } : env);
      const { recoverAdmin } = await import('../../keys/recover.ts');
      const out = await recoverAdmin(config, flags.name ?? 'recovery-admin');
      if (flags.json) return printJson(out);
      print(`${out.created ? 'created' : 'restored'} admin operator ${safe(out.name)} (${safe(out.operatorId)}); audited as admin_recovered`);
      print(`token: ${safe(out.token)}`);
      print(`warning: ${SHOWN_ONCE}`);
    });
}

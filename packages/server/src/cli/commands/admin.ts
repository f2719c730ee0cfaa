/** Admin and auditor commands: operators add/list, keys create|rotate-encryption, audit tail. */
import type { AuditEntry } from '../../engine/engine.ts';
import { Option, type Command } from 'commander';
import type { Role } from '@countersign/core';
import { ROLES } from '@countersign/core/constants';
import { clientFrom, collect, positiveInt, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { relative, safe, table } from '../format.ts';
import { idSegment } from '../http-client.ts';
import { registerAuditCommands, registerReportCommand, registerRotateKeyCommand } from './audit.ts';
import { registerRotateEncryption } from './keys.ts';
import { registerAdminRecover, registerKeyLifecycle, registerOperatorLifecycle } from './credentials.ts';

const SHOWN_ONCE = 'This is shown ONCE and cannot be retrieved later; store it now (e.g. in a secret manager).';

export function registerAdminCommands(program: Command): void {
  registerOperators(program);
  registerKeys(program);
  registerAdminRecover(program);
  registerAudit(program);
  registerReportCommand(program);
}

// ---- operators ----

interface NewOperator {
  id: string;
  name: string;
  roles: Role[];
  token: string;
}

interface OperatorItem {
  id: string;
  name: string;
  roles: Role[];
  groups: string[];
  disabled: boolean;
  createdAt: string;
  lastUsedAt: string | null;
}

function registerOperators(program: Command): void {
  const operators = program.command('operators').description('manage operators (the humans who review; admin)');

  withClientOptions(
    operators
      .command('add')
      .description('create an operator and print its token (shown once)')
      .requiredOption('--name <name>', 'operator name (letters, digits and _ . @ -)')
      .addOption(
        new Option('--role <role>', `a role; repeat for several (${ROLES.join(', ')})`).argParser(collect(ROLES)).makeOptionMandatory(),
      )
      .option('--group <group>', 'a group; repeat for several', collect()),
  ).action(async (flags: CommonFlags & { name: string; role: Role[]; group?: string[] }) => {
    const client = clientFrom(flags);
    const body = { name: flags.name, roles: flags.role, ...(flags.group ? { groups: flags.group } : {}) };
    const created = await client.post<NewOperator>('/v1/operators', body);
    if (flags.json) return printJson({ id: created.id, name: created.name, roles: created.roles, token: created.token });
    print(`created operator ${safe(created.name)} (${safe(created.id)}) with roles ${created.roles.map(safe).join(', ')}`);
    print(`token: ${safe(created.token)}`);
    print(`warning: ${SHOWN_ONCE}`);
  });

  withClientOptions(operators.command('list').description('list operators and their roles')).action(async (flags: CommonFlags) => {
    const client = clientFrom(flags);
    const { items } = await client.get<{ items: OperatorItem[] }>('/v1/operators');
    if (flags.json) return printJson(items);
    if (items.length === 0) return print('No operators.');
    const now = Date.now();
    print(
      table(items, [
        { header: 'ID', value: (o) => o.id },
        { header: 'NAME', value: (o) => o.name, max: 32 },
        { header: 'ROLES', value: (o) => o.roles.join(',') },
        { header: 'GROUPS', value: (o) => (o.groups.length > 0 ? o.groups.join(',') : '-'), max: 40 },
        { header: 'CREATED', value: (o) => relative(o.createdAt, now) },
        { header: 'LAST USED', value: (o) => relative(o.lastUsedAt, now) },
        { header: 'STATE', value: (o) => (o.disabled ? 'disabled' : 'active') },
      ]),
    );
  });
  registerOperatorLifecycle(operators);
}

// ---- keys ----

interface NewKey {
  agentId: string;
  agentName: string;
  keyId: string;
  key: string;
}

function registerKeys(program: Command): void {
  const keys = program.command('keys').description('manage agent API keys (admin), and re-seal data after an encryption key change');
  withClientOptions(
    keys
      .command('create')
      .description('create an API key for an agent (the agent is created if new); the key is shown once')
      .requiredOption('--agent <name>', 'agent name (letters, digits and _ . @ -)'),
  ).action(async (flags: CommonFlags & { agent: string }) => {
    const client = clientFrom(flags);
    const created = await client.post<NewKey>('/v1/keys', { agent: flags.agent });
    if (flags.json) return printJson(created);
    print(`created key ${safe(created.keyId)} for agent ${safe(created.agentName)} (${safe(created.agentId)})`);
    print(`key: ${safe(created.key)}`);
    print(`warning: ${SHOWN_ONCE}`);
  });
  registerKeyLifecycle(keys);
  registerRotateEncryption(keys);
}

// ---- audit ----


/** Page size of /v1/audit (AuditQuery.limit maximum). */
const AUDIT_PAGE = 1000;

function registerAudit(program: Command): void {
  const audit = program.command('audit').description('the audit trail');
  registerAuditCommands(audit);
  registerRotateKeyCommand(audit);
  withClientOptions(
    audit
      .command('tail')
      .description('the latest audit entries (of the whole trail, or of one request)')
      .option('--request <id>', "only this request's entries")
      .option('--limit <n>', 'how many (default 20)', positiveInt(10_000)),
  ).action(async (flags: CommonFlags & { request?: string; limit?: number }) => {
    const client = clientFrom(flags);
    const limit = flags.limit ?? 20;
    let entries: AuditEntry[];
    if (flags.request !== undefined) {
      const { items } = await client.get<{ items: AuditEntry[] }>(`/v1/requests/${idSegment(flags.request)}/audit`);
      entries = items.slice(-limit);
    } else {
      // The API reads the trail forwards only (?after=SEQ), so keep the last `limit` while paging.
      entries = [];
      let after = 0;
      for (;;) {
        const { items } = await client.get<{ items: AuditEntry[] }>('/v1/audit', { after, limit: AUDIT_PAGE });
        entries = entries.concat(items).slice(-limit);
        const last = items[items.length - 1];
        if (items.length < AUDIT_PAGE || !last) break;
        after = last.seq;
      }
    }
    if (flags.json) return printJson(entries);
    if (entries.length === 0) return print('No audit entries.');
    print(
      table(entries, [
        { header: 'SEQ', value: (e) => String(e.seq), align: 'right' },
        { header: 'TIME', value: (e) => e.at },
        { header: 'TYPE', value: (e) => e.type, max: 24 },
        { header: 'ACTOR', value: (e) => `${e.actor.type}:${e.actor.name}`, max: 32 },
        { header: 'REQUEST', value: (e) => e.requestId ?? '-' },
        { header: 'DETAIL', value: auditDetail, max: 80 },
      ]),
    );
  });
}

/** What a person wants from an entry at a glance: the vote, what was approved instead, the reason, a refusal's code. */
export function auditDetail(e: Pick<AuditEntry, 'data'>): string {
  const d = (e.data && typeof e.data === 'object' ? e.data : {}) as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v : undefined);
  const parts: string[] = [];
  if (text(d.verdict)) parts.push(String(d.verdict));
  if (text(d.alternative)) parts.push(`alternative ${String(d.alternative)}`);
  else if (d.modifiedArgs === true || d.modified === true || (d.modifiedArgs && typeof d.modifiedArgs === 'object')) parts.push('modified args');
  if (text(d.code)) parts.push(String(d.code));
  const why = text(d.reason) ?? text(d.message);
  if (why) parts.push(`reason: ${why}`);
  return parts.length > 0 ? parts.join('; ') : '-';
}

/**
 * Deadlines and notifications from the command line:
 *   countersign extend ID --by 15m --reason TEXT          (once per request, bounded)
 *   countersign reassign ID --operator NAME|--group NAME --reason TEXT
 *   countersign escalate ID --reason TEXT                  (one level up now; refused at the last)
 *   countersign deliveries [--status failed] [--request ID] [--channel NAME]
 * Like every client command, they go through the HTTP API.
 */
import { Option, InvalidArgumentError, type Command } from 'commander';
import type { ApprovalRequest } from '@countersign/core';
import { parseDuration } from '@countersign/core/duration';
import { CountersignError } from '@countersign/core/errors';
import { clientFrom, positiveInt, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { plural, relative, safe, table, timeLeft } from '../format.ts';
import { idSegment } from '../http-client.ts';

interface DeliveryItem {
  id: string;
  /** null for a guard notice (its event is guard.<kind>). */
  requestId: string | null;
  channel: string;
  event: string;
  status: string;
  attempts: number;
  lastError: string | null;
  createdAt: string;
  updatedAt: string;
}

/** `2/3 manager`, `+` once extended, `→group` when reassigned; `-` when the policy decided at once. */
export function escalationLabel(r: Pick<ApprovalRequest, 'escalation'>): string {
  const e = r.escalation;
  if (!e) return '-';
  const who = e.assignee ? ` →${e.assignee.operator ?? e.assignee.group ?? ''}` : '';
  return `${e.level}/${e.levels}${e.role ? ` ${e.role}` : ''}${e.extended ? ' +' : ''}${who}`;
}

/** Time left at the current level (the escalation deadline), else the assessment's SLA. */
export function slaLeft(r: Pick<ApprovalRequest, 'escalation' | 'assessment'>, now: number): string {
  return timeLeft(r.escalation?.dueAt ?? r.assessment.slaDueAt, now);
}

function duration(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms < 1000 || ms % 1000 !== 0) throw new InvalidArgumentError('expected whole seconds as a duration, like 90s, 15m or 1h.');
  return ms / 1000;
}

export function registerEscalationCommands(program: Command): void {
  withClientOptions(
    program
      .command('extend')
      .description("give a pending request more time at its current escalation level (once per request; at most the level's own period)")
      .argument('<id>', 'request id (req_…)')
      .requiredOption('--by <duration>', 'how much longer: 90s, 15m, 1h', duration)
      .requiredOption('--reason <text>', 'why (required; recorded in the audit trail)'),
  ).action(async (id: string, flags: CommonFlags & { by: number; reason: string }) => {
    if (!flags.reason.trim()) throw new CountersignError('VALIDATION_FAILED', 'an extension needs a reason (--reason TEXT)');
    const request = await clientFrom(flags).post<ApprovalRequest>(`/v1/requests/${idSegment(id)}/extend`, { seconds: flags.by, reason: flags.reason });
    if (flags.json) return printJson(request);
    print(`extended ${safe(request.id)}: level ${escalationLabel(request)}, ${slaLeft(request, Date.now())} left`);
  });

  withClientOptions(
    program
      .command('reassign')
      .description('hand a pending request to another operator or a group')
      .argument('<id>', 'request id (req_…)')
      .option('--operator <name>', 'the operator who takes it over')
      .option('--group <name>', 'the group that takes it over')
      .requiredOption('--reason <text>', 'why (required; recorded in the audit trail)'),
  ).action(async (id: string, flags: CommonFlags & { operator?: string; group?: string; reason: string }) => {
    if ((flags.operator === undefined) === (flags.group === undefined)) {
      throw new CountersignError('VALIDATION_FAILED', 'give one of --operator NAME or --group NAME');
    }
    if (!flags.reason.trim()) throw new CountersignError('VALIDATION_FAILED', 'a reassignment needs a reason (--reason TEXT)');
    const body = { ...(flags.operator !== undefined ? { operator: flags.operator } : { group: flags.group }), reason: flags.reason };
    const request = await clientFrom(flags).post<ApprovalRequest>(`/v1/requests/${idSegment(id)}/reassign`, body);
    if (flags.json) return printJson(request);
    print(`reassigned ${safe(request.id)} to ${safe(flags.operator ?? `group ${flags.group}`)}`);
  });

  withClientOptions(
    program
      .command('escalate')
      .description('move a pending request to its next escalation level now, as its timeout would (refused at the last level)')
      .argument('<id>', 'request id (req_…)')
      .requiredOption('--reason <text>', 'why, one line of at most 500 characters (recorded in the audit trail, told to the next level)'),
  ).action(async (id: string, flags: CommonFlags & { reason: string }) => {
    if (!flags.reason.trim()) throw new CountersignError('VALIDATION_FAILED', 'an escalation needs a reason (--reason TEXT)');
    const client = clientFrom(flags);
    // The level seen here goes with the request: if it moves on meanwhile, the server refuses rather than moving it twice.
    const seen = await client.get<ApprovalRequest>(`/v1/requests/${idSegment(id)}`);
    const body = { reason: flags.reason, ...(seen.escalation ? { fromLevel: seen.escalation.level } : {}) };
    const request = await client.post<ApprovalRequest>(`/v1/requests/${idSegment(id)}/escalate`, body);
    if (flags.json) return printJson(request);
    print(`escalated ${safe(request.id)}: level ${escalationLabel(request)}, ${slaLeft(request, Date.now())} left`);
  });

  withClientOptions(
    program
      .command('deliveries')
      .description('notification deliveries, newest first (--status failed: what did not get through)')
      .addOption(new Option('--status <status>', 'only this status').choices(['pending', 'delivered', 'failed']))
      .option('--request <id>', 'only this request')
      .option('--channel <name>', 'only this channel')
      .option('--limit <n>', 'at most N (default 50)', positiveInt(500)),
  ).action(async (flags: CommonFlags & { status?: string; request?: string; channel?: string; limit?: number }) => {
    const page = await clientFrom(flags).get<{ items: DeliveryItem[] }>('/v1/deliveries', {
      status: flags.status,
      requestId: flags.request,
      channel: flags.channel,
      limit: flags.limit ?? 50,
    });
    if (flags.json) return printJson(page.items);
    if (page.items.length === 0) return print(flags.status ? `No ${safe(flags.status)} deliveries.` : 'No deliveries.');
    const now = Date.now();
    print(
      table(page.items, [
        { header: 'ID', value: (d) => d.id },
        { header: 'REQUEST', value: (d) => d.requestId ?? '-' },
        { header: 'CHANNEL', value: (d) => d.channel, max: 24 },
        { header: 'EVENT', value: (d) => d.event },
        { header: 'STATUS', value: (d) => d.status.toUpperCase() },
        { header: 'TRIES', value: (d) => String(d.attempts), align: 'right' },
        { header: 'WHEN', value: (d) => relative(d.updatedAt, now) },
        { header: 'LAST ERROR', value: (d) => d.lastError ?? '', max: 60 },
      ]),
    );
    print(`\n${plural(page.items.length, 'delivery', 'deliveries')}.`);
  });
}

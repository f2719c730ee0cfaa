/**
 * The reviewer's commands: status (the queue), show, approve, reject, history.
 * All of them go through the HTTP API with an operator token.
 */
import { createHash } from 'node:crypto';
import { Option, type Command } from 'commander';
import type { ApprovalRequest, ApprovalStage, Review, Verdict } from '@countersign/core';
import { canonicalJson } from '@countersign/core/canonical';
import { REQUEST_STATUSES } from '@countersign/core/constants';
import { CountersignError } from '@countersign/core/errors';
import { formatScore } from '@countersign/core/format';
import { clientFrom, positiveInt, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { age, fixed, indentBlock, plural, relative, safe, safeJson, safeMultiline, table, timeLeft } from '../format.ts';
import { idSegment, type ApiClient, type Query } from '../http-client.ts';
import { escalationLabel, slaLeft } from './escalation.ts';

interface RequestCounts {
  total: number;
  critical: number;
  high: number;
  medium: number;
  low: number;
}

interface RequestPage {
  items: ApprovalRequest[];
  nextCursor: string | null;
  counts: RequestCounts;
  remaining: number;
}

/** Server page size upper bound (ListQuery.limit). */
const MAX_PAGE = 500;
/** How many pages a client-side filtered listing reads at most before it gives up. */
const MAX_PAGES = 40;

export function registerRequestCommands(program: Command): void {
  registerStatus(program);
  registerShow(program);
  registerApprove(program);
  registerReject(program);
  registerHistory(program);
}

// ---- status ----

interface StatusFlags extends CommonFlags {
  risk?: string;
  agent?: string;
  action?: string;
  limit?: number;
  mine?: boolean;
}

/** The queue's summary line: the total matching the filters and the count per risk level, most urgent first. */
export function queueSummary(counts: RequestCounts, shown: number, remaining: number): string {
  const levels = (['critical', 'high', 'medium', 'low'] as const).map((l) => `${l} ${counts[l]}`).join(', ');
  const more = remaining > 0 ? `; ${remaining} more not shown (use --limit)` : '';
  return `${plural(counts.total, 'pending approval')} (${levels}); ${shown} shown${more}.`;
}

function registerStatus(program: Command): void {
  withClientOptions(
    program
      .command('status')
      .alias('queue')
      .description('list pending approvals (the review queue), most urgent first: critical before high, medium and low, then the SLA deadline soonest, then oldest')
      .option('--risk <levels>', 'only these risk levels, comma-separated (low, medium, high, critical)')
      .option('--agent <agent>', 'only this agent (its id agt_… or its name)')
      .option('--action <name>', 'only this action (any spelling: wireTransfer = wire_transfer)')
      .option('--limit <n>', 'show at most N requests (default 100)', positiveInt(10_000))
      .option('--mine', 'only the requests I may approve now (the server judges each as it would judge my vote)'),
  ).action(async (flags: StatusFlags) => {
    const client = clientFrom(flags);
    const limit = flags.limit ?? 100;
    const filters = { riskLevel: flags.risk, agentId: flags.agent, action: flags.action };
    const { items, first, more } = await readPages(client, flags.mine ? { ...filters, actionableBy: 'me' } : { ...filters, status: 'pending' }, limit);
    if (flags.json) return printJson(items);
    const remaining = Math.max(0, first.counts.total - items.length);
    const summary = flags.mine ? mineSummary(first.counts.total, items.length, more) : queueSummary(first.counts, items.length, remaining);
    if (items.length === 0) return print(first.counts.total === 0 ? 'No pending approvals.' : summary);
    const now = Date.now();
    print(
      table(items, [
        { header: 'ID', value: (r) => r.id },
        { header: 'ACTION', value: (r) => r.action, max: 32 },
        { header: 'AGENT', value: (r) => r.agentName, max: 24 },
        { header: 'RISK', value: (r) => `${r.assessment.riskLevel} ${formatScore(r.assessment.riskScore)}` },
        { header: 'CONF', value: (r) => fixed(r.confidence), align: 'right' },
        { header: 'AGE', value: (r) => age(r.createdAt, now), align: 'right' },
        { header: 'LEVEL', value: (r) => escalationLabel(r) },
        { header: 'SLA LEFT', value: (r) => slaLeft(r, now) },
      ]),
    );
    print(`\n${summary}`);
  });
}

/** `status --mine`'s summary line: how many I may approve now, of how many pending. */
export function mineSummary(pendingTotal: number, shown: number, more: boolean): string {
  const mine = shown === 0 ? 'None of them is yours to approve now' : `${shown}${more ? '+' : ''} you may approve now${more ? ' (more with --limit)' : ''}`;
  return `${plural(pendingTotal, 'pending approval')}; ${mine}.`;
}

/**
 * Reads /v1/requests page by page (filtered, ordered and counted by the server) until `want`
 * requests are read; `keep` drops some here (history leaves out pending ones).
 */
async function readPages(
  client: ApiClient,
  query: Query,
  want: number,
  keep?: (r: ApprovalRequest) => boolean,
): Promise<{ items: ApprovalRequest[]; more: boolean; first: RequestPage }> {
  const pageSize = Math.min(MAX_PAGE, keep ? Math.max(want * 2, 100) : want);
  const items: ApprovalRequest[] = [];
  let cursor: string | undefined;
  let first: RequestPage | undefined;
  for (let pages = 0; pages < MAX_PAGES; pages++) {
    const page = await client.get<RequestPage>('/v1/requests', { ...query, limit: pageSize, cursor });
    first ??= page;
    for (const r of page.items) {
      if (keep && !keep(r)) continue;
      if (items.length === want) return { items, more: true, first };
      items.push(r);
    }
    if (!page.nextCursor) return { items, more: false, first };
    if (items.length === want) return { items, more: true, first };
    cursor = page.nextCursor;
  }
  return { items, more: true, first: first! };
}

// ---- show ----

function registerShow(program: Command): void {
  withClientOptions(
    program
      .command('show')
      .description('one request in detail: risk, matched rules, agent-supplied content, reviews, decision')
      .argument('<id>', 'request id (req_…)'),
  ).action(async (id: string, flags: CommonFlags) => {
    const client = clientFrom(flags);
    const request = await client.get<ApprovalRequest>(`/v1/requests/${idSegment(id)}`);
    if (flags.json) return printJson(request);
    print(renderRequest(request, Date.now()));
  });
}

const AGENT = '(AGENT-SUPPLIED, untrusted)';
const BAR = '    │ ';

/** The detail view. Every string is escaped; agent-supplied blocks are labelled and fenced. */
export function renderRequest(r: ApprovalRequest, now: number): string {
  const a = r.assessment;
  const out: string[] = [];
  const field = (label: string, value: string) => out.push(`  ${`${label}:`.padEnd(13)}${value}`);
  const section = (title: string) => out.push('', `  ${title}`);

  out.push(`Request ${safe(r.id)}`);
  field('status', safe(r.status));
  field('action', safe(r.action));
  field('agent', `${safe(r.agentName)} (${safe(r.agentId)})`);
  field('created', `${safe(r.createdAt)} (${relative(r.createdAt, now)})`);
  if (r.escalation) {
    const e = r.escalation;
    const left = r.status === 'pending' ? `${timeLeft(e.dueAt, now)} left at this level` : `deadline was ${safe(e.dueAt)}`;
    field('escalation', `level ${escalationLabel(r)}; ${left}; then ${e.level < e.levels ? `level ${e.level + 1}` : `onFinalTimeout: ${safe(e.onFinalTimeout)}`}`);
  }
  if (a.slaDueAt) field('sla due', `${safe(a.slaDueAt)} (${r.status === 'pending' ? timeLeft(a.slaDueAt, now) : relative(a.slaDueAt, now)})`);
  if (r.expiresAt) field('expires', `${safe(r.expiresAt)} (${relative(r.expiresAt, now)})`);
  field('policy', `v${r.policyVersion}`);
  field('risk', `${safe(a.riskLevel)} (score ${formatScore(a.riskScore)})${r.riskHint ? `; agent's hint: ${safe(r.riskHint)}` : ''}`);
  field('confidence', `${fixed(r.confidence)} (agent-supplied)`);
  field('automation', `${safe(a.automationLevel)}; route ${safe(a.route)}${a.mfaRequired ? '; MFA required' : ''}`);
  if (r.payload) field('will run', `${safe(r.payload.action)}${r.payload.alternative ? ` (alternative ${safe(r.payload.alternative)})` : ''} ${safe(JSON.stringify(r.payload.args))} — payload hash ${safe(r.payload.payloadHash)}`);
  if (r.notActionable) field('you cannot approve', `${safe(r.notActionable.message)}${r.notActionable.retryAt ? ` (until ${safe(r.notActionable.retryAt)})` : ''}`);
  if (r.matchCode) field('match code', `${safe(r.matchCode)} (approve with --match-code ${safe(r.matchCode)})`);
  if (a.approval) {
    const stages = a.approval.stages.map((s) => safe(s.label)).join(', then ');
    field('approval', `${stages}; ${plural(a.approval.deny, 'rejection')} decide${a.approval.deny === 1 ? 's' : ''}`);
  }

  section('risk factors:');
  if (a.factors.length === 0) out.push('    (none)');
  else
    out.push(
      indentBlock(
        table(a.factors, [
          { header: 'FACTOR', value: (f) => f.name, max: 28 },
          { header: 'VALUE', value: (f) => fixed(f.value), align: 'right' },
          { header: 'WEIGHT', value: (f) => fixed(f.weight), align: 'right' },
          { header: 'CONTRIB', value: (f) => fixed(f.contribution), align: 'right' },
          { header: 'DETAIL', value: (f) => f.detail, max: 80 },
        ]),
        '    ',
      ),
    );

  section('matched rules:');
  if (a.matchedRules.length === 0) out.push('    (none)');
  for (const rule of a.matchedRules) {
    const effects = rule.effects.length > 0 ? ` [${rule.effects.map(safe).join(', ')}]` : '';
    out.push(`    - ${safe(rule.name)}: ${safe(rule.reason)}${effects}`);
  }
  if (a.reasons.length > 0) {
    section('reasons:');
    for (const reason of a.reasons) out.push(`    - ${safe(reason)}`);
  }

  section(`args ${AGENT}:`);
  out.push(indentBlock(safeJson(r.args), BAR));
  section(`description ${AGENT}:`);
  out.push(r.description ? indentBlock(safeMultiline(r.description), BAR) : '    (none)');
  const { evidence, ...restContext } = r.context;
  if (Array.isArray(evidence) && evidence.length > 0) {
    section(`evidence ${AGENT}:`);
    evidence.forEach((item, i) => out.push(indentBlock(`${i + 1}. ${renderEvidence(item)}`, BAR)));
  }
  if (Object.keys(restContext).length > 0) {
    section(`context ${AGENT}:`);
    out.push(indentBlock(safeJson(restContext), BAR));
  }
  if (r.alternatives.length > 0) {
    section(`alternatives ${AGENT}:`);
    for (const alt of r.alternatives) {
      out.push(`    - ${safe(alt.name)}: ${safe(alt.action)} ${safeJson(alt.args, 0)}`);
      if (alt.description) out.push(indentBlock(safeMultiline(alt.description), '        '));
    }
  }

  section('reviews:');
  if (r.reviews.length === 0) out.push('    (none)');
  for (const v of r.reviews) out.push(`    - ${renderReview(v, now)}`);

  section('decision:');
  out.push(...renderDecision(r, now));
  if (r.execution) {
    section('execution:');
    const e = r.execution;
    out.push(`    ${safe(e.status)} ${relative(e.at, now)} (${safe(e.at)})${e.error ? `: ${safe(e.error)}` : ''}`);
  }
  return out.join('\n');
}

function renderEvidence(item: unknown): string {
  if (typeof item === 'string') return safeMultiline(item);
  if (item && typeof item === 'object') {
    const { type, summary, source, ...rest } = item as Record<string, unknown>;
    const head = [type !== undefined ? `[${safe(type)}]` : '', summary !== undefined ? safeMultiline(summary) : '', source !== undefined ? `(source: ${safe(source)})` : '']
      .filter(Boolean)
      .join(' ');
    const extra = Object.keys(rest).length > 0 ? safeJson(rest) : '';
    return [head, extra].filter(Boolean).join('\n') || '{}';
  }
  return safeJson(item);
}

function renderReview(v: Review, now: number): string {
  const what = v.alternative !== null ? ` (alternative ${safe(v.alternative)})` : v.args !== null ? ` (modified args ${safeJson(v.args, 0)})` : '';
  return `${safe(v.reviewer.name)}: ${safe(v.verdict)}${what}, ${relative(v.at, now)}${v.reason ? ` — ${safe(v.reason)}` : ''}`;
}

function renderDecision(r: ApprovalRequest, now: number): string[] {
  const d = r.decision;
  if (!d) return [`    none yet (${safe(r.status)}${r.status === 'pending' ? `; needs ${stillNeeds(r, 'approve')}` : ''})`];
  const lines = [`    ${safe(d.outcome)} by ${decidedBy(r)}, ${relative(d.at, now)} (${safe(d.at)})`];
  if (d.reason) lines.push(`    reason: ${safe(d.reason)}`);
  if (d.action !== null) {
    const how = d.alternative !== null ? ` (alternative ${safe(d.alternative)})` : d.modified ? ' (modified args)' : '';
    lines.push(`    may run: ${safe(d.action)} ${safeJson(d.args ?? {}, 0)}${how}`);
  }
  return lines;
}

/** What was approved: as asked, with modified args, or an alternative; `-` when nothing may run. */
export function approvedAs(r: ApprovalRequest): string {
  const d = r.decision;
  if (!d || d.action === null) return '-';
  if (d.alternative !== null) return `alternative ${d.alternative}`;
  return d.modified ? 'modified args' : 'as asked';
}

export function decidedBy(r: ApprovalRequest): string {
  const d = r.decision;
  if (!d) return '-';
  // Nobody approved this: the policy's onFinalTimeout: approve did. Say so loudly.
  if (d.decidedBy === 'timeout' && d.outcome === 'approved') return 'TIMEOUT (approved with no human decision)';
  const names = d.deciders.map((x) => safe(x.name));
  return names.length > 0 && d.decidedBy !== 'policy' ? `${safe(d.decidedBy)} (${names.join(', ')})` : safe(d.decidedBy);
}

/**
 * What a pending request still needs. Mirrors the server's rule closely enough for a message:
 * approvals count for the payload they were cast on (a plain approval keeps the current one,
 * modified args or an alternative start a new one), filling the stages in order.
 */
export function stillNeeds(r: ApprovalRequest, verdict: Verdict): string {
  const approval = r.assessment.approval;
  if (!approval) return 'a reviewer';
  const rejects = r.reviews.filter((v) => v.verdict === 'reject').length;
  const rejectPart = `${plural(Math.max(1, approval.deny - rejects), 'more rejection')} to reject`;
  let current = '';
  const keys: string[] = [];
  for (const v of r.reviews) {
    if (v.verdict !== 'approve') continue;
    if (v.alternative !== null) current = `alt:${v.alternative}`;
    else if (v.args !== null) current = `args:${canonicalJson(v.args)}`;
    keys.push(current);
  }
  let count = keys.filter((k) => k === current).length;
  const parts: string[] = [];
  for (const stage of approval.stages) {
    const used = Math.min(count, stage.count);
    count -= used;
    const missing = stage.count - used;
    if (missing > 0) parts.push(`${parts.length === 0 ? plural(missing, 'more approval') : `then ${missing}`} (${stageWho(stage)})`);
  }
  const approvePart = parts.length > 0 ? parts.join(', ') : 'more approvals';
  return verdict === 'reject' ? `${rejectPart}, or ${approvePart}` : approvePart;
}

function stageWho(stage: ApprovalStage): string {
  if (stage.operators && stage.operators.length > 0) return `operator ${stage.operators.map(safe).join(' or ')}`;
  const who = stage.role ? `role ${safe(stage.role)} or higher` : 'any reviewer';
  return stage.group ? `${who} in group ${safe(stage.group)}` : who;
}

// ---- approve / reject ----

interface ApproveFlags extends CommonFlags {
  reason?: string;
  args?: string;
  alternative?: string;
  totp?: string;
  matchCode?: string;
  payloadHash?: string;
}

function registerApprove(program: Command): void {
  withClientOptions(
    program
      .command('approve')
      .description('approve a pending request: as asked, with modified args, or as one of its alternatives')
      .argument('<id>', 'request id (req_…)')
      .option('--reason <text>', 'why (recorded in the audit trail)')
      .option('--args <json>', 'approve with these args instead (a JSON object)')
      .option('--alternative <name>', 'approve one of the alternatives the agent offered, by name')
      .option('--totp <code>', 'one-time code, when the policy asks for MFA')
      .option('--match-code <nn>', 'critical requests: the two-digit match code `show` prints')
      .option('--payload-hash <hex>', 'approve only if what would run is still the payload `show` printed (its payload hash)'),
  ).action(async (id: string, flags: ApproveFlags) => {
    const body: Record<string, unknown> = { verdict: 'approve' };
    if (flags.reason !== undefined) body.reason = flags.reason;
    if (flags.args !== undefined) body.args = parseArgsObject(flags.args);
    if (flags.alternative !== undefined) body.alternative = flags.alternative;
    if (body.args !== undefined && body.alternative !== undefined) {
      throw new CountersignError('VALIDATION_FAILED', 'give either --args or --alternative, not both');
    }
    if (flags.totp !== undefined) body.totp = flags.totp;
    if (flags.matchCode !== undefined) body.matchCode = flags.matchCode;
    // Confirm what will run. Without --payload-hash the CLI fetches the request, and sends back
    // the hash of the payload it fetched only when that is the request as asked (what `approve ID`
    // names). When another reviewer's modification or an alternative is under review, it refuses
    // and names that payload: the hash must come from what a human read (`show`), never be
    // fetched and sent silently (that would defeat PAYLOAD_CHANGED).
    if (flags.payloadHash !== undefined) body.seenPayloadHash = flags.payloadHash;
    else {
      const seen = approvalSeenHash(await clientFrom(flags).get<ApprovalRequest>(`/v1/requests/${idSegment(id)}`));
      if (seen !== undefined) body.seenPayloadHash = seen;
    }
    await review(id, body, 'approve', flags);
  });
}

/**
 * The payload hash `approve ID` may send without --payload-hash: the current payload's, only when
 * it is the request as the agent asked it. Otherwise PAYLOAD_CHANGED naming the payload under
 * review and how to approve it (`show`, then --payload-hash). `undefined`: nothing to pin (the
 * request is no longer pending; the server answers why).
 */
export function approvalSeenHash(request: Pick<ApprovalRequest, 'id' | 'action' | 'args' | 'payload'>): string | undefined {
  const current = request.payload;
  if (!current) return undefined;
  const original = createHash('sha256').update(canonicalJson({ action: request.action, args: request.args })).digest('hex');
  if (current.alternative === null && current.payloadHash === original) return current.payloadHash;
  const what = current.alternative ? `the alternative ${safe(current.alternative)}: ${safe(current.action)} ${safe(JSON.stringify(current.args))}` : `modified arguments: ${safe(current.action)} ${safe(JSON.stringify(current.args))}`;
  throw new CountersignError(
    'PAYLOAD_CHANGED',
    `what would run is no longer the request as asked but ${what} (payload hash ${safe(current.payloadHash)}). Read it with \`countersign show ${safe(request.id)}\`, then approve exactly that with --payload-hash ${safe(current.payloadHash)}`,
    { current: current.payloadHash },
  );
}

function registerReject(program: Command): void {
  withClientOptions(
    program
      .command('reject')
      .description('reject a pending request (a reason is required)')
      .argument('<id>', 'request id (req_…)')
      .requiredOption('--reason <text>', 'why (required; recorded in the audit trail and shown to the agent)')
      .option('--totp <code>', 'one-time code, when the policy asks for MFA'),
  ).action(async (id: string, flags: CommonFlags & { reason: string; totp?: string }) => {
    if (!flags.reason.trim()) throw new CountersignError('VALIDATION_FAILED', 'a rejection needs a reason (--reason TEXT)');
    const body: Record<string, unknown> = { verdict: 'reject', reason: flags.reason };
    if (flags.totp !== undefined) body.totp = flags.totp;
    await review(id, body, 'reject', flags);
  });
}

function parseArgsObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `--args is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CountersignError('VALIDATION_FAILED', '--args must be a JSON object, like \'{"host":"ws-042"}\'');
  }
  return value as Record<string, unknown>;
}

async function review(id: string, body: Record<string, unknown>, verdict: Verdict, flags: CommonFlags): Promise<void> {
  const client = clientFrom(flags);
  const request = await client.post<ApprovalRequest>(`/v1/requests/${idSegment(id)}/reviews`, body);
  if (flags.json) return printJson(request);
  if (request.status === 'pending') {
    print(`vote recorded on ${safe(request.id)}; still pending (needs: ${stillNeeds(request, verdict)})`);
    return;
  }
  const verb = verdict === 'approve' ? 'approved' : 'rejected';
  const d = request.decision;
  const how = d?.alternative ? ` as alternative ${safe(d.alternative)}` : d?.modified ? ' with modified args' : '';
  print(`${verb} ${safe(request.id)}${verdict === 'approve' ? how : ''} (decided: ${safe(request.status)})`);
}

// ---- history ----

interface HistoryFlags extends CommonFlags {
  last?: number;
  agent?: string;
  status?: string;
}

function registerHistory(program: Command): void {
  withClientOptions(
    program
      .command('history')
      .description('decided requests, newest first (by creation time)')
      .option('--last <n>', 'how many (default 20)', positiveInt(10_000))
      .option('--agent <agent>', 'only this agent (an agent id agt_… or an agent name)')
      .addOption(new Option('--status <status>', 'only this outcome').choices(REQUEST_STATUSES.filter((s) => s !== 'pending'))),
  ).action(async (flags: HistoryFlags) => {
    const client = clientFrom(flags);
    const want = flags.last ?? 20;
    const decided = (r: ApprovalRequest) => r.status !== 'pending';
    const { items } = await readPages(client, { status: flags.status, agentId: flags.agent }, want, decided);
    if (flags.json) return printJson(items);
    if (items.length === 0) return print('No decided requests yet.');
    const now = Date.now();
    print(
      table(items, [
        { header: 'ID', value: (r) => r.id },
        { header: 'ACTION', value: (r) => r.action, max: 32 },
        { header: 'AGENT', value: (r) => r.agentName, max: 24 },
        { header: 'OUTCOME', value: (r) => r.status },
        { header: 'AS', value: (r) => approvedAs(r), max: 32 },
        { header: 'DECIDED BY', value: (r) => decidedBy(r), max: 40 },
        { header: 'WHEN', value: (r) => relative(r.decision?.at ?? r.updatedAt, now) },
      ]),
    );
  });
}

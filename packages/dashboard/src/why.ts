/**
 * Words for what the server knows but states as data: why a reviewer cannot act on a request
 * now, what each audit entry means, and an agent's past outcomes counted the way the `history`
 * risk factor counts them. Pure (time comes in as `now` or as ISO strings), so it is tested
 * without a browser.
 */
import type { ApprovalRequest, AuditLeaf, RiskLevel } from '@countersign/core';
import { formatScore } from '@countersign/core/format';

/** `GET /v1/approvers/:id/cooldown`. */
export interface CooldownInfo {
  active: boolean;
  until: string | null;
  /** "5 approvals of high/critical risk within 15 min", or "manual: <the lead's reason>". */
  reason: string | null;
  triggeredBy?: string[];
  config?: { threshold: number; windowMinutes: number; durationMinutes: number; riskLevels: string[] };
}

/** `GET /v1/approvers/:id/velocity`. */
export interface VelocityInfo {
  allowed: boolean;
  reason: string | null;
  resetAt: string | null;
  riskLevels: string[];
}

/** The viewer's own limits, as far as the dashboard could read them (null: not read). */
export interface ViewerLimits {
  cooldown: CooldownInfo | null;
  velocity: VelocityInfo | null;
}

export interface Viewer {
  id: string;
  name: string;
  roles: readonly string[];
}

const pad = (n: number) => String(n).padStart(2, '0');

/** "19:08" today, "2 Dec 19:08" on another day, in the browser's time zone. */
export function clock(iso: string | null | undefined, now: number): string {
  if (!iso) return 'an unknown time';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return 'an unknown time';
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const today = new Date(now);
  const sameDay = d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
  return sameDay ? time : `${d.getDate()} ${d.toLocaleString('en-GB', { month: 'short' })} ${time}`;
}

/** Why the cool-down started, in words: "5 high/critical-risk approvals in 15 minutes", or the lead's reason. */
export function cooldownCause(c: CooldownInfo): { manual: boolean; text: string } {
  if (c.reason?.startsWith('manual: ')) return { manual: true, text: c.reason.slice('manual: '.length) };
  if (c.config) {
    const { threshold, windowMinutes, riskLevels } = c.config;
    return { manual: false, text: `${threshold} ${riskLevels.join('/')}-risk approvals in ${windowMinutes} minutes` };
  }
  return { manual: false, text: c.reason ?? 'a cool-down is active' };
}

/** "You are cooling down until 19:08 (5 high/critical-risk approvals in 15 minutes)". Null when not cooling down. */
export function cooldownSentence(c: CooldownInfo | null, now: number): string | null {
  if (!c?.active) return null;
  const cause = cooldownCause(c);
  return `You are cooling down until ${clock(c.until, now)} (${cause.manual ? `set by a lead: ${cause.text}` : cause.text})`;
}

/** Core's role ranks (reviewer < lead < manager < director < admin); an auditor never reviews. */
const RANK: Readonly<Record<string, number>> = { auditor: 0, reviewer: 1, lead: 2, manager: 3, director: 4, admin: 5 };
const rank = (roles: readonly string[]) => Math.max(0, ...roles.map((r) => RANK[r] ?? 0));

export type NotActionableCode = 'agent_paused' | 'agent_disabled' | 'aggregated' | 'own_request' | 'voted' | 'auditor' | 'cooldown' | 'velocity' | 'stage' | 'unknown';

/**
 * Why the viewer cannot act on a pending request the server marked `actionable: false`, most
 * specific cause first. The server says only *that* it is not actionable; the causes it weighs
 * are all visible to the viewer (votes, the requester, their own cool-down and velocity), so the
 * dashboard names the one that applies. `stage` is what is left: the approval requirement or the
 * escalation level needs someone else.
 */
export interface NotActionable {
  code: NotActionableCode;
  /** The whole reason (the card). */
  text: string;
  /** For a queue row, when the banner above already explains the cause; else the same as `text`. */
  short?: string;
}

/** The gate's refusal codes, as the card's causes. */
const CODE_OF: Readonly<Record<string, NotActionableCode>> = {
  AGENT_PAUSED: 'agent_paused',
  AGENT_DISABLED: 'agent_disabled',
  AGGREGATED: 'aggregated',
  SELF_REVIEW: 'own_request',
  ALREADY_REVIEWED: 'voted',
  COOLDOWN_ACTIVE: 'cooldown',
  VELOCITY_LIMITED: 'velocity',
  NOT_ELIGIBLE: 'stage',
};

export function whyNotActionable(r: ApprovalRequest, viewer: Viewer, limits: ViewerLimits, now: number): NotActionable {
  // The server's own reason (the gate's dry run: the refusal an approval would get now) is exact;
  // say it, except a cool-down, which the viewer's own limits say in local time and plain words.
  const localCooldown = r.notActionable?.code === 'COOLDOWN_ACTIVE' && cooldownSentence(limits.cooldown, now) !== null;
  if (r.notActionable && !localCooldown) {
    const until = r.notActionable.retryAt ? ` This passes at ${clock(r.notActionable.retryAt, now)}.` : '';
    const code = CODE_OF[r.notActionable.code] ?? 'unknown';
    const reject = ['cooldown', 'velocity', 'agent_paused', 'agent_disabled', 'aggregated'].includes(code) ? ' You can still reject it.' : '';
    const text = `${r.notActionable.message.replace(/\.$/, '')}.${until}${reject}`;
    return { code, text, short: text };
  }
  const risk: RiskLevel = r.assessment.riskLevel;
  if (r.agentPaused) return { code: 'agent_paused', text: `Its agent is paused until ${clock(r.agentPaused.until, now)}: approvals wait for the pause to end. You can still reject it.` };
  if (r.aggregate) return { code: 'aggregated', text: 'It is decided together with other requests in an aggregate review. You can still reject it alone.' };
  if (r.agentName === `operator:${viewer.name}`) return { code: 'own_request', text: 'You proposed it, so someone else must review it.' };
  const vote = r.reviews.find((v) => v.reviewer.id === viewer.id);
  if (vote) return { code: 'voted', text: `You already voted (${vote.verdict === 'approve' ? 'approved' : 'rejected'}); it needs another reviewer.` };
  if (viewer.roles.length > 0 && viewer.roles.every((role) => role === 'auditor')) return { code: 'auditor', text: 'Auditors can read requests but not review them.' };
  // A refused approval moves the request up its escalation chain; say so when it left the viewer's reach.
  const role = r.escalation?.role;
  // (Level 1 does not narrow who may act; a later level hands the request to its role.)
  const level = r.escalation?.level ?? 0;
  const above = role && level > 1 && rank(viewer.roles) < (RANK[role] ?? 0) ? ` It has since moved to escalation level ${level} (${role} or more senior).` : '';
  const cooling = cooldownSentence(limits.cooldown, now);
  if (cooling && (limits.cooldown?.config?.riskLevels ?? ['high', 'critical']).includes(risk)) {
    return {
      code: 'cooldown',
      text: `${cooling}. Another reviewer must approve ${risk}-risk requests until then; you can still reject. Nobody can lift their own cool-down.${above}`,
      short: `Your cool-down, until ${clock(limits.cooldown?.until, now)}: another reviewer must approve it; you can still reject.${above}`,
    };
  }
  const velocity = limits.velocity;
  if (velocity && !velocity.allowed && velocity.riskLevels.includes(risk)) {
    return {
      code: 'velocity',
      text: `You reached your approval limit for ${velocity.riskLevels.join('/')} risk (${velocity.reason ?? 'limit reached'}) until ${clock(velocity.resetAt, now)}. Another reviewer must approve it; you can still reject.${above}`,
      short: `Your approval limit (${velocity.reason ?? 'limit reached'}), until ${clock(velocity.resetAt, now)}.${above}`,
    };
  }
  const stages = r.assessment.approval?.stages.map((s) => s.label) ?? [];
  if (stages.length > 0 || role) {
    const needs = stages.length > 0 ? `It needs ${stages.join(', then ')}` : 'It needs another approver';
    return { code: 'stage', text: `${needs}${role && level > 1 ? ` (now at escalation level ${level}: ${role} or more senior)` : ''}, and you are not eligible for the current stage.` };
  }
  return { code: 'unknown', text: 'The server says you cannot act on it now.' };
}

/** Past outcomes counted as core's `history` risk factor counts them: each approval, rejection (or expiry), success and failure is one. */
export interface PastOutcomes {
  requests: number;
  outcomes: number;
  approved: number;
  rejected: number;
  succeeded: number;
  failed: number;
  pending: number;
}

/**
 * The agent's earlier requests for the action, as the risk factor saw them: only those created
 * before `request` (most recent `window`, like the server's), with `executed` counting as an
 * approval *and* a success, so "N past outcomes" here is the same number as the factor's when
 * nothing was decided since.
 */
export function pastOutcomes(items: readonly ApprovalRequest[], request: ApprovalRequest, window = 200): PastOutcomes {
  const earlier = items
    .filter((r) => r.id !== request.id && r.createdAt < request.createdAt)
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0))
    .slice(0, window);
  const t: PastOutcomes = { requests: earlier.length, outcomes: 0, approved: 0, rejected: 0, succeeded: 0, failed: 0, pending: 0 };
  for (const r of earlier) {
    if (r.status === 'approved' || r.status === 'executing' || r.status === 'lapsed') t.approved++;
    else if (r.status === 'executed') (t.approved++, t.succeeded++);
    else if (r.status === 'execution_failed') (t.approved++, t.failed++);
    else if (r.status === 'rejected' || r.status === 'expired') t.rejected++;
    else if (r.status === 'pending') t.pending++;
  }
  t.outcomes = t.approved + t.rejected + t.succeeded + t.failed;
  return t;
}

/** "10 past outcomes (7 approved, 0 rejected, 3 succeeded, 0 failed)": the words of the risk factor. */
export function outcomesText(t: PastOutcomes): string {
  if (t.outcomes === 0) return 'no history for this agent and action';
  return `${t.outcomes} past outcomes (${t.approved} approved, ${t.rejected} rejected, ${t.succeeded} succeeded, ${t.failed} failed)`;
}

/** One audit entry in words. `summary` is system text; `notes` hold people's and agents' text (shown as SafeText); `rest` is whatever is left. */
export interface EntryWords {
  summary: string;
  /** false: the actor is Countersign itself, not worth naming. */
  showActor: boolean;
  notes: Array<{ label: string; text: string }>;
  rest: Record<string, unknown> | null;
}

const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Keys shown in words per entry type (everything else stays in "details"); hashes are for verifiers, not readers. */
const HIDDEN_KEYS = new Set(['payloadHash', 'agentId', 'operatorId', 'deliveryId']);

export function describeEntry(e: AuditLeaf, now: number): EntryWords {
  const d = (e.data !== null && typeof e.data === 'object' && !Array.isArray(e.data) ? e.data : {}) as Record<string, unknown>;
  const used = new Set<string>(HIDDEN_KEYS);
  const take = (key: string) => {
    used.add(key);
    return d[key];
  };
  const notes: EntryWords['notes'] = [];
  const note = (label: string, key: string) => {
    const v = str(take(key));
    if (v) notes.push({ label, text: v });
  };
  let summary: string;
  let showActor = e.actor.type !== 'system';
  switch (e.type) {
    case 'created': {
      const level = str(take('riskLevel'));
      const score = num(take('riskScore'));
      const route = str(take('route'));
      const automation = str(take('automationLevel'));
      const version = num(take('policyVersion'));
      take('action');
      summary = `Proposed${level ? `: ${level} risk${score !== null ? ` (${formatScore(score)})` : ''}` : ''}${automation ? `, automation level ${automation}` : ''}${route ? `, routed to ${route.replace('_', ' ')}` : ''}${version !== null ? ` by policy v${version}` : ''}`;
      const rules = take('matchedRules');
      if (Array.isArray(rules) && rules.length > 0) notes.push({ label: 'Matched rules', text: rules.map(String).join(', ') });
      break;
    }
    case 'queued': {
      const due = str(take('slaDueAt'));
      const approval = take('approval') as { stages?: Array<{ label?: unknown }> } | null | undefined;
      const labels = (approval?.stages ?? []).map((s) => str(s.label)).filter((s): s is string => s !== null);
      take('escalation');
      summary = `Waiting for review${labels.length ? `: needs ${labels.join(', then ')}` : ''}${due ? `; SLA due ${clock(due, now)}` : ''}`;
      break;
    }
    case 'reviewed': {
      const verdict = take('verdict');
      const alternative = str(take('alternative'));
      const modified = take('modifiedArgs') === true;
      const stage = num(take('stage'));
      summary = `Voted to ${verdict === 'approve' ? 'approve' : 'reject'}${alternative ? ' the alternative' : ''}${modified ? ' with modified arguments' : ''}${stage !== null ? ` (stage ${stage + 1})` : ''}`;
      if (alternative) notes.push({ label: 'Alternative', text: alternative });
      note('Reason', 'reason');
      break;
    }
    case 'approved':
    case 'rejected': {
      const by = take('decidedBy');
      const deciders = take('deciders');
      const names = Array.isArray(deciders) ? deciders.map(String).join(', ') : '';
      const alternative = str(take('alternative'));
      const modified = take('modified') === true;
      summary = `${e.type === 'approved' ? 'Approved' : 'Rejected'}${by === 'policy' ? ' by policy' : by === 'timeout' ? ' on timeout' : names ? ` by ${names}` : ''}${alternative ? ' (an alternative)' : ''}${modified ? ' with modified arguments' : ''}`;
      showActor = false;
      if (alternative) notes.push({ label: 'Alternative', text: alternative });
      note('Reason', 'reason');
      break;
    }
    case 'expired':
      summary = 'Expired: no decision in time (rejected, fail closed)';
      take('decidedBy');
      take('deciders');
      note('Reason', 'reason');
      break;
    case 'cancelled':
      summary = 'Cancelled by the agent';
      take('decidedBy');
      take('deciders');
      note('Reason', 'reason');
      break;
    case 'execution_started':
      summary = 'Claimed: the approval was claimed once with its receipt, and may run';
      take('receiptVersion');
      break;
    case 'approval_lapsed':
      summary = 'Lapsed: the approval was never claimed before its claim deadline; it can never run';
      take('lateMs');
      note('Claimable until', 'expiresAt');
      showActor = false;
      break;
    case 'claim_refused': {
      const code = str(take('code'));
      summary = `Claim refused${code ? ` (${code})` : ''}: nothing ran`;
      note('Why', 'message');
      break;
    }
    case 'executed':
    case 'execution_failed':
      take('status');
      summary = e.type === 'executed' ? 'Ran: the agent reported success' : 'Failed: the agent reported the action failed';
      note('Error', 'error');
      break;
    case 'escalated': {
      const from = num(take('from'));
      const to = num(take('to'));
      const role = str(take('role'));
      const cause = take('cause');
      const operator = str(take('operator'));
      // Why it moved: `sla_timeout` (the level's deadline), `manual` (a reviewer, with `by` and their `text`), or
      // `cooldown` (an operator's cool-down left nobody free who may approve it: `operatorId`, `cooldownUntil`, `setBy`, `eligible`).
      const reason = take('reason');
      take('dueAt');
      const notify = take('notify');
      const cooling = cause === 'cooldown' || reason === 'cooldown';
      if (reason === 'cooldown') {
        take('operatorId');
        take('setBy');
        const until = str(take('cooldownUntil'));
        const eligible = take('eligible');
        if (until) notes.push({ label: 'Cooling down until', text: until });
        if (Array.isArray(eligible) && eligible.length > 0) notes.push({ label: 'Everyone who may approve it, all cooling', text: eligible.map(String).join(', ') });
      }
      const why = cooling ? `, because ${operator ?? 'a reviewer'} is cooling down and nobody else who may approve it is free` : reason === 'manual' ? ' by a reviewer' : reason === 'sla_timeout' ? ': no decision in time' : '';
      summary = `Escalated${from !== null && to !== null ? ` from level ${from} to level ${to}` : ''}${role ? ` (${role})` : ''}${why}`;
      if (reason === 'manual') {
        take('by'); // the entry's actor
        note('Reason', 'text');
      }
      if (Array.isArray(notify) && notify.length > 0) notes.push({ label: 'Told', text: notify.map(String).join(', ') });
      break;
    }
    case 'notified':
    case 'delivery_failed': {
      const channel = str(take('channel'));
      const event = str(take('event'));
      const attempts = num(take('attempts'));
      summary = `${e.type === 'notified' ? 'Notified' : 'Notification failed'}${channel ? ` via ${channel}` : ''}${event ? ` (${event})` : ''}${attempts !== null && attempts > 1 ? ` after ${attempts} attempts` : ''}`;
      note('Error', 'error');
      break;
    }
    case 'review_refused':
    case 'create_refused': {
      const code = str(take('code'));
      summary = `${e.type === 'review_refused' ? 'Review refused' : 'Request refused'}${code ? ` (${code})` : ''}`;
      note('Why', 'message');
      break;
    }
    case 'cooldown_stranded': {
      // A cool-down left nobody free at a level that cannot escalate: it stays pending (engine/escalation.ts fireCooldown).
      const level = num(take('level'));
      const operator = str(take('operator'));
      take('operatorId');
      take('setBy');
      const until = str(take('cooldownUntil'));
      const eligible = take('eligible');
      const notify = take('notify');
      summary = `Nobody free to approve it at level ${level ?? '?'}, the last it can reach: ${operator ?? 'a reviewer'} is cooling down${until ? ` until ${until}` : ''}; it stays pending`;
      if (Array.isArray(eligible) && eligible.length > 0) notes.push({ label: 'Everyone who may approve it, all cooling', text: eligible.map(String).join(', ') });
      if (Array.isArray(notify) && notify.length > 0) notes.push({ label: 'Told', text: notify.map(String).join(', ') });
      break;
    }
    case 'extended':
      summary = 'Deadline extended';
      note('Reason', 'reason');
      break;
    case 'reassigned':
      summary = 'Reassigned';
      note('Reason', 'reason');
      break;
    case 'feedback': {
      const verdict = take('verdict');
      summary = verdict === 'should_have_asked' ? 'Flagged: should have asked a human' : 'Marked as fine to run on its own';
      note('Note', 'note');
      break;
    }
    default:
      summary = e.type.charAt(0).toUpperCase() + e.type.slice(1).replace(/_/g, ' ');
      note('Reason', 'reason');
  }
  const restEntries = Object.entries(d).filter(([k]) => !used.has(k));
  return { summary, showActor, notes, rest: restEntries.length > 0 ? Object.fromEntries(restEntries) : null };
}

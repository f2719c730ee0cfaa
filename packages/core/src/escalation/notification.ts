/**
 * The one rendered notification every channel receives. Channels only format it (Block Kit,
 * Adaptive Card, HTML mail, JSON, PagerDuty event); what is said, what is agent-supplied and
 * which actions are offered is decided once, here.
 *
 * Agent-supplied text (description, args, evidence, blast radius, alternative names and
 * descriptions, target) comes from an agent that may be compromised: it is collected under
 * `agentSupplied`, shortened, and each channel escapes it for its format and labels it as
 * agent-supplied. System text (`title`, labels) never embeds agent text except the action
 * name, which the schema restricts to an identifier.
 *
 * Links never decide anything: they open the dashboard's review page, where a signed-in
 * reviewer confirms (mail scanners and link previews fetch every link they see).
 */
import type { ApprovalRequest, RiskLevel } from '../schemas.ts';
import { techniqueLabel } from '../attack.ts';

export type NotificationEvent = 'requested' | 'escalated' | 'reassigned' | 'decided';

export interface NotificationAction {
  /** `approve`, `reject`, or `alternative:<name>` (what a Slack button click sends back). */
  readonly id: string;
  /** System label; for alternatives the agent-supplied name follows in `alternative`. */
  readonly label: string;
  readonly alternative: string | null;
  readonly style: 'primary' | 'danger' | 'default';
  /** The dashboard review page with this choice preselected; opening it decides nothing. */
  readonly url: string;
}

export interface Notification {
  readonly event: NotificationEvent;
  readonly requestId: string;
  readonly title: string;
  readonly action: string;
  readonly agent: string;
  readonly status: ApprovalRequest['status'];
  readonly risk: { readonly level: RiskLevel; readonly score: number };
  readonly confidence: number | null;
  readonly attack: readonly string[];
  /** Each of `attack` with its name from core's table (`T1059.001 PowerShell`; the id alone when unknown): never agent text. */
  readonly attackNames: readonly string[];
  readonly sla: {
    readonly level: number;
    readonly levels: number;
    readonly role: string | null;
    readonly dueAt: string | null;
    /** Seconds left at rendering time; negative when overdue. */
    readonly secondsLeft: number | null;
  };
  readonly agentSupplied: {
    readonly description: string | null;
    readonly args: string;
    readonly target: string | null;
    readonly blastRadius: string | null;
    readonly evidence: readonly string[];
    /** `context.relatedIncidents` (the agent's incident ids), at most 5, each shortened. */
    readonly relatedIncidents: readonly string[];
    readonly alternatives: ReadonlyArray<{ readonly name: string; readonly action: string; readonly description: string | null }>;
  };
  /** Empty once the request is decided. */
  readonly actions: readonly NotificationAction[];
  readonly reviewUrl: string;
  readonly decision: {
    readonly outcome: string;
    readonly by: string;
    readonly reason: string | null;
    /** A cancellation's reason is the agent's own text. */
    readonly reasonFromAgent: boolean;
    readonly at: string;
  } | null;
  /** Event details: escalation levels, reassignment target, extension. */
  readonly detail: string | null;
}

export const AGENT_SUPPLIED_LABEL = 'Agent-supplied (unverified)';

const LIMITS = { description: 600, args: 600, evidence: 300, evidenceItems: 3, short: 200 } as const;

/** Shortens to `max` code points, marking the cut. */
export function clip(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

function describeTarget(target: unknown): string | null {
  if (typeof target === 'string') return clip(target, LIMITS.short);
  if (target && typeof target === 'object') {
    const t = target as Record<string, unknown>;
    const name = [t['name'], t['id']].find((v) => typeof v === 'string') as string | undefined;
    const parts = [name, typeof t['type'] === 'string' ? `(${t['type']})` : undefined, typeof t['criticality'] === 'string' ? `criticality ${t['criticality']}` : undefined];
    const text = parts.filter(Boolean).join(' ');
    return text ? clip(text, LIMITS.short) : null;
  }
  return null;
}

function describeBlast(blast: unknown): string | null {
  if (typeof blast === 'number' || typeof blast === 'string') return clip(String(blast), LIMITS.short);
  if (blast && typeof blast === 'object') {
    const b = blast as Record<string, unknown>;
    const parts = [b['scope'], b['count'] !== undefined ? `${String(b['count'])} affected` : undefined, b['description']].filter(
      (v) => typeof v === 'string' || typeof v === 'number',
    );
    return parts.length > 0 ? clip(parts.map(String).join(', '), LIMITS.short) : null;
  }
  return null;
}

const TECHNIQUE_ID = /^T\d{4}(\.\d{3})?$/;

function describeIncidents(incidents: unknown): string[] {
  if (!Array.isArray(incidents)) return [];
  const items = incidents.slice(0, 5).map((i) => clip(String(i), LIMITS.short));
  if (incidents.length > 5) items.push(`… and ${incidents.length - 5} more`);
  return items;
}

function describeEvidence(evidence: unknown): string[] {
  if (!Array.isArray(evidence)) return [];
  const items = evidence.slice(0, LIMITS.evidenceItems).map((e) => {
    if (typeof e === 'string') return clip(e, LIMITS.evidence);
    if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      const text = [o['type'] ? `[${String(o['type'])}]` : '', typeof o['summary'] === 'string' ? o['summary'] : '', o['source'] ? `(source: ${String(o['source'])})` : '']
        .filter(Boolean)
        .join(' ');
      return clip(text || JSON.stringify(o), LIMITS.evidence);
    }
    return clip(String(e), LIMITS.evidence);
  });
  if (evidence.length > LIMITS.evidenceItems) items.push(`… and ${evidence.length - LIMITS.evidenceItems} more`);
  return items;
}

const TITLES: Record<NotificationEvent, string> = {
  requested: 'Approval needed',
  escalated: 'Escalated: approval overdue',
  reassigned: 'Reassigned: approval needed',
  decided: 'Decided',
};

const MANUAL_ESCALATION_TITLE = 'Escalated by a reviewer: approval needed';

/**
 * `reviewBase` is the dashboard's address (e.g. `https://countersign.example.com`); `now` is
 * the rendering time, for "time left".
 */
export function renderNotification(
  request: ApprovalRequest,
  event: NotificationEvent,
  /** `manual`: an `escalated` notice from a reviewer's escalation (`POST …/escalate`), not an overdue deadline. */
  options: { reviewBase: string; now: number; detail?: string | null; manual?: boolean },
): Notification {
  const base = options.reviewBase.replace(/\/+$/, '');
  const reviewUrl = `${base}/#/requests/${encodeURIComponent(request.id)}`;
  const link = (choice: string) => `${reviewUrl}?choose=${encodeURIComponent(choice)}`;
  const pending = request.status === 'pending';
  const actions: NotificationAction[] = pending
    ? [
        { id: 'approve', label: 'Approve', alternative: null, style: 'primary', url: link('approve') },
        ...request.alternatives.map((alt) => ({
          id: `alternative:${alt.name}`,
          label: 'Approve alternative',
          alternative: clip(alt.name, 100),
          style: 'default' as const,
          url: link(`alternative:${alt.name}`),
        })),
        { id: 'reject', label: 'Reject', alternative: null, style: 'danger', url: link('reject') },
      ]
    : [];
  const esc = request.escalation ?? null;
  const dueAt = esc?.dueAt ?? request.assessment.slaDueAt;
  const context = request.context as Record<string, unknown>;
  // Ids the create schema validated; checked again, since channels print them as system text.
  const attack = Array.isArray(context['attack']) ? (context['attack'] as unknown[]).filter((a): a is string => typeof a === 'string' && TECHNIQUE_ID.test(a)).slice(0, 20) : [];
  const d = request.decision;
  const outcome = d ? d.outcome : request.status;
  return {
    event,
    requestId: request.id,
    title: `${event === 'decided' ? `${TITLES.decided} (${outcome})` : event === 'escalated' && options.manual ? MANUAL_ESCALATION_TITLE : TITLES[event]}: ${request.action} (${request.assessment.riskLevel} risk)`,
    action: request.action,
    agent: request.agentName,
    status: request.status,
    risk: { level: request.assessment.riskLevel, score: request.assessment.riskScore },
    confidence: request.confidence,
    attack,
    attackNames: attack.map(techniqueLabel),
    sla: {
      level: esc?.level ?? 0,
      levels: esc?.levels ?? 0,
      role: esc?.role ?? null,
      dueAt,
      secondsLeft: dueAt ? Math.round((Date.parse(dueAt) - options.now) / 1000) : null,
    },
    agentSupplied: {
      description: request.description === null ? null : clip(request.description, LIMITS.description),
      args: clip(JSON.stringify(request.args), LIMITS.args),
      target: describeTarget(context['target']),
      blastRadius: describeBlast(context['blastRadius']),
      evidence: describeEvidence(context['evidence']),
      relatedIncidents: describeIncidents(context['relatedIncidents']),
      alternatives: request.alternatives.map((a) => ({
        name: clip(a.name, 100),
        action: a.action,
        description: a.description === undefined ? null : clip(a.description, LIMITS.short),
      })),
    },
    actions,
    reviewUrl,
    decision: d
      ? {
          outcome: d.outcome,
          by: d.decidedBy === 'reviewers' || d.decidedBy === 'agent' ? d.deciders.map((x) => x.name).join(', ') || d.decidedBy : d.decidedBy,
          reason: d.reason === null ? null : clip(d.reason, LIMITS.description),
          reasonFromAgent: d.decidedBy === 'agent',
          at: d.at,
        }
      : null,
    detail: options.detail ?? null,
  };
}

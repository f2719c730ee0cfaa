/**
 * Guard notices: what channels are told when the guard acts — a slicing alert, an agent paused
 * or resumed, an approver's cool-down started — or when the audit signer refuses to sign a
 * trail that does not extend what it signed (`audit_fork`, sent to every channel). They are about an agent or an approver, not a
 * request, so they are a kind of their own beside `Notification` (escalation/notification.ts),
 * rendered once here and only formatted by the channels.
 *
 * Agent-influenced text stays apart: alert descriptions can name the agent's action and its
 * argument names, so they sit under `agentSupplied` (clipped), which each channel escapes for its
 * format and labels. A pause's or cool-down's reason is an operator's (or the system's) text,
 * clipped and escaped like any other value. Links open the dashboard; they decide nothing.
 */
import { clip } from '../escalation/notification.ts';

export const GUARD_NOTICE_KINDS = ['slicing_alert', 'agent_paused', 'agent_resumed', 'cooldown_started', 'mfa_locked', 'audit_fork'] as const;
export type GuardNoticeKind = (typeof GUARD_NOTICE_KINDS)[number];

export interface GuardNotice {
  readonly kind: GuardNoticeKind;
  /** System text: what happened, to whom. */
  readonly title: string;
  readonly at: string;
  /** The agent concerned (slicing, pauses); null for a cool-down. */
  readonly agent: string | null;
  /** The approver concerned (cool-downs); null otherwise. */
  readonly operator: string | null;
  /** Who acted: an operator's name, or `countersign` for the system. */
  readonly by: string;
  readonly until: string | null;
  readonly reason: string | null;
  /** Slicing: the response the policy chose (`alert`, `pause`, `review`, `aggregate`). */
  readonly response: string | null;
  readonly confidence: number | null;
  readonly agentSupplied: {
    readonly alerts: ReadonlyArray<{ readonly type: string; readonly confidence: number; readonly description: string; readonly requestIds: readonly string[] }>;
  };
  /** The dashboard. */
  readonly url: string;
}

/** What the guard records for a notice (the delivery row's data). */
export interface GuardNoticeData {
  readonly kind: GuardNoticeKind;
  readonly at: number;
  readonly agent?: string | null | undefined;
  readonly operator?: string | null | undefined;
  readonly by: string;
  readonly until?: string | null | undefined;
  readonly reason?: string | null | undefined;
  readonly response?: string | null | undefined;
  readonly confidence?: number | null | undefined;
  readonly alerts?: ReadonlyArray<{ type: string; confidence: number; description: string; requestIds: readonly string[] }> | undefined;
}

const TITLES: Record<GuardNoticeKind, (d: GuardNoticeData) => string> = {
  slicing_alert: (d) => `Slicing alert: agent ${d.agent ?? '?'}${d.response === 'pause' ? ' (paused)' : d.response === 'review' ? ' (next requests need review)' : d.response === 'aggregate' ? ' (requests reviewed together)' : ''}`,
  agent_paused: (d) => `Agent paused: ${d.agent ?? '?'}`,
  agent_resumed: (d) => `Agent resumed: ${d.agent ?? '?'}`,
  cooldown_started: (d) => `Approver cool-down: ${d.operator ?? '?'}`,
  mfa_locked: (d) => `Step-up locked after wrong codes: ${d.operator ?? '?'}`,
  audit_fork: () => 'AUDIT_FORK: the audit signer refused to sign a rewritten trail',
};

export function renderGuardNotice(data: GuardNoticeData, options: { reviewBase: string }): GuardNotice {
  const base = options.reviewBase.replace(/\/+$/, '');
  return {
    kind: data.kind,
    title: clip(TITLES[data.kind](data), 200),
    at: new Date(data.at).toISOString(),
    agent: data.agent ?? null,
    operator: data.operator ?? null,
    by: data.by,
    until: data.until ?? null,
    reason: data.reason == null ? null : clip(data.reason, 600),
    response: data.response ?? null,
    confidence: data.confidence ?? null,
    agentSupplied: {
      alerts: (data.alerts ?? []).slice(0, 10).map((a) => ({
        type: a.type,
        confidence: a.confidence,
        description: clip(a.description, 300),
        requestIds: a.requestIds.slice(0, 50),
      })),
    },
    url: `${base}/#/queue`,
  };
}

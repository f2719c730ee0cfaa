/**
 * The one audit writer: the only caller of `Queries.appendAudit`. Every entry of the trail —
 * the engine's, the guard's, the refusals written after a rollback, a key rotation's — is
 * drafted as `{type, requestId, actor, data, at}` and written here, which
 *   - accepts only event types from core's catalogue (`AUDIT_EVENTS`),
 *   - sets the actor from a principal or the system actor, in one shape,
 *   - redacts the data (core `createRedactor` under the audit key: personal data becomes keyed
 *     tokens, identities are kept), and
 *   - serialises it as the row the leaf is built from (the integrator adds the seq), so the
 *     leaf bytes are unchanged.
 *
 *   const writer = new AuditWriter((data) => trail.redact(data));
 *   await writer.append(tx, [draft('cancelled', id, principal, { reason }, at)]);
 */
import { createHmac, randomBytes } from 'node:crypto';
import { DEFAULT_EXEMPT_FIELDS, createRedactor, type AuditEventType } from '@countersign/core';
import type { Principal } from '../engine/principal.ts';
import type { NewAuditEntry, Queries } from '../store/store.ts';

/** An entry as the writer wrote it: its pending id, no tree position yet. */
export type PendingAuditEntry = NewAuditEntry & { readonly id: number };

/**
 * Fields the redactor leaves alone: core's identities and computed ids, plus `cidrs`, an
 * allowlist as an admin set it (`ip_allowlist_set`): the control's configuration, which an
 * auditor must be able to read, not a data subject's address.
 */
export const AUDIT_EXEMPT_FIELDS: readonly string[] = Object.freeze([...DEFAULT_EXEMPT_FIELDS, 'cidrs', 'handover']);

export interface AuditActor {
  readonly type: 'agent' | 'operator' | 'system';
  readonly id: string;
  readonly name: string;
}

/** The server itself: timers, the policy, the guard's automatic actions. */
export const SYSTEM_ACTOR: AuditActor = Object.freeze({ type: 'system', id: 'system', name: 'countersign' });

export function actorOf(p: Principal | AuditActor): AuditActor {
  if ('type' in p) return p;
  return p.kind === 'agent' ? { type: 'agent', id: p.agentId, name: p.agentName } : { type: 'operator', id: p.operatorId, name: p.name };
}

/** An entry before it is written: data as a value, not yet redacted or serialised. */
export interface AuditDraft {
  readonly type: AuditEventType;
  readonly requestId: string | null;
  readonly actor: AuditActor;
  readonly data: unknown;
  readonly at: number;
}

export function draft(type: AuditEventType, requestId: string | null, actor: Principal | AuditActor, data: unknown, at: number): AuditDraft {
  return { type, requestId, actor: actorOf(actor), data, at };
}

export class AuditWriter {
  constructor(private readonly redact: (data: unknown) => unknown) {}

  /**
   * Redacts, sets the actor and appends in `tx` (the caller's transaction); the entries as
   * written, each with its pending id. It has no seq yet: the integrator gives it one after the
   * commit (store/integrator.ts; `Store.settleAudit` waits for it).
   */
  async append(tx: Queries, drafts: readonly AuditDraft[]): Promise<PendingAuditEntry[]> {
    if (drafts.length === 0) return [];
    const entries: NewAuditEntry[] = drafts.map((d) => this.entryOf(d));
    const ids = await tx.appendAudit(entries);
    return entries.map((e, i) => ({ ...e, id: ids[i]! }));
  }

  /** `append` without the ids: on PostgreSQL sent with the transaction's next statement (its `commit`, on the create path), so it costs no round trip of its own. */
  private entryOf(d: AuditDraft): NewAuditEntry {
    return { at: d.at, type: d.type, request_id: d.requestId, actor_type: d.actor.type, actor_id: d.actor.id, actor_name: d.actor.name, data: JSON.stringify(this.redact(d.data)) };
  }

  async appendLater(tx: Queries, drafts: readonly AuditDraft[]): Promise<void> {
    await tx.appendAuditLater(drafts.map((d) => this.entryOf(d)));
  }
}

/**
 * A writer for tools that run without the server's audit key (`keys rotate-encryption` opens only
 * the database). It still redacts, fail closed, under a key of its own: what it writes carries
 * counts and key ids, so nothing is tokenised in practice, and a token it did write would not
 * match the server's tokens for the same value.
 */
export function standaloneAuditWriter(): AuditWriter {
  const secret = randomBytes(32);
  const redactor = createRedactor({ exempt: AUDIT_EXEMPT_FIELDS, tokenize: (kind, value) => createHmac('sha256', secret).update(`${kind}\u0000${value}`).digest('hex').slice(0, 20) });
  return new AuditWriter((data) => redactor.redact(data));
}

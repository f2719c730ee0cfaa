/**
 * The scheduler's tables and their SQL: durable timers, each request's escalation state,
 * notification deliveries, and one-time nonces (replay protection for signed callbacks).
 *
 * A timer is a row, not a `setTimeout`: it survives restarts, and it fires by being deleted in
 * the same transaction as the change it causes, so a process killed at any instant leaves it
 * either unfired (it fires late, after restart) or fired (it never fires again). Claims are
 * leases (`claimed_by`, `claimed_until`) so that several processes share due timers without
 * taking the same one; on PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Capabilities } from './connect.ts';
import type { Database } from './schema.ts';

/** What a timer does when due: see TimersTable.kind. */
export type TimerKind = 'escalate' | 'expire' | 'deliver' | 'collect' | 'pause_end' | 'cooldown';

/** Where a delivery stands: waiting for an attempt, delivered, or given up on. */
export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface TimersTable {
  id: string;
  /**
   * `escalate` (the current level's deadline), `expire` (the agent's timeoutSeconds), `deliver` (a
   * notification attempt), `collect` (an aggregate collection closes), `pause_end` (an agent's pause runs out), `cooldown` (an operator
   * entered a cool-down: the pending requests it strands escalate, engine/escalation.ts `fireCooldown`).
   */
  kind: TimerKind;
  request_id: string | null;
  due_at: number;
  payload: string;
  claimed_by: string | null;
  claimed_until: number | null;
  created_at: number;
}

export interface EscalationsTable {
  request_id: string;
  level: number;
  due_at: number;
  /** JSON `EscalationState` from core. */
  state: string;
  updated_at: number;
}

export interface DeliveriesTable {
  id: string;
  /** null for a guard notice (slicing alert, agent pause/resume, cool-down): about an agent or an approver, not a request. */
  request_id: string | null;
  /** The channel's name under the policy's `channels:`. */
  channel: string;
  /** `requested`, `escalated`, `reassigned`, `decided`; for guard notices `guard.<kind>` (data holds the notice). */
  event: string;
  /** `pending`, `delivered`, `failed`. */
  status: DeliveryStatus;
  attempts: number;
  last_error: string | null;
  /** JSON: what the channel answered that later updates need (a Slack message `ts`, …). */
  response: string | null;
  /** JSON array of `{at, ok, error?, ms}`, one per attempt. */
  attempt_log: string;
  /** JSON: event details (levels, reassignment target). */
  data: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

export interface NoncesTable {
  key: string;
  expires_at: number;
}

export type TimerRow = TimersTable;
export type EscalationRow = EscalationsTable;
export type DeliveryRow = DeliveriesTable;

type Db = Kysely<Database> | Transaction<Database>;

export interface DeliveryFilter {
  status?: string | undefined;
  requestId?: string | undefined;
  channel?: string | undefined;
  limit: number;
  /** Keyset: rows strictly older than this (created_at, id). */
  before?: { createdAt: number; id: string } | undefined;
}

export class TimerQueries {
  constructor(
    private readonly db: Db,
    private readonly capabilities: Capabilities,
  ) {}

  // ---- timers ----

  async insertTimers(rows: readonly TimerRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db.insertInto('timers').values([...rows]).execute();
  }

  /**
   * Leases up to `limit` due timers to `owner` until `now + leaseMs`, earliest first. Walks the
   * due-time index from the start, so the cost follows the number of due timers, not the number
   * of pending requests. Expired leases (a process died holding them) are taken over.
   */
  async claimDue(now: number, limit: number, owner: string, leaseMs: number, kinds?: readonly TimerKind[]): Promise<TimerRow[]> {
    return this.claimDueQuery(now, limit, owner, leaseMs, kinds).execute();
  }

  /** The claim as a query (tests read its plan: it must walk the due-time index). */
  claimDueQuery(now: number, limit: number, owner: string, leaseMs: number, kinds?: readonly TimerKind[]) {
    let due = this.db
      .selectFrom('timers')
      .select('id')
      .where('due_at', '<=', now)
      .where((eb) => eb.or([eb('claimed_until', 'is', null), eb('claimed_until', '<=', now)]))
      .orderBy('due_at')
      .limit(limit);
    if (kinds) due = due.where('kind', 'in', [...kinds]);
    if (this.capabilities.skipLocked) due = due.forUpdate().skipLocked();
    return this.db.updateTable('timers').set({ claimed_by: owner, claimed_until: now + leaseMs }).where('id', 'in', due).returningAll();
  }

  /**
   * Fires a timer: deletes it and returns it, or undefined when another process (or an earlier
   * run of this one) already fired it. Call inside the transaction that makes its change.
   */
  async takeTimer(id: string): Promise<TimerRow | undefined> {
    return this.db.deleteFrom('timers').where('id', '=', id).returningAll().executeTakeFirst();
  }

  async cancelRequestTimers(requestId: string, kinds: readonly TimerKind[]): Promise<void> {
    await this.db.deleteFrom('timers').where('request_id', '=', requestId).where('kind', 'in', [...kinds]).execute();
  }

  async rescheduleTimer(id: string, dueAt: number): Promise<boolean> {
    const r = await this.db.updateTable('timers').set({ due_at: dueAt, claimed_by: null, claimed_until: null }).where('id', '=', id).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async requestTimers(requestId: string): Promise<TimerRow[]> {
    return this.db.selectFrom('timers').selectAll().where('request_id', '=', requestId).orderBy('due_at').execute();
  }

  async countTimers(kind?: TimerKind): Promise<number> {
    let q = this.db.selectFrom('timers').select((eb) => eb.fn.countAll<number>().as('n'));
    if (kind) q = q.where('kind', '=', kind);
    return Number((await q.executeTakeFirstOrThrow()).n);
  }

  /** The earliest due time of any timer, for the scheduler's next wake-up. */
  async nextDueAt(): Promise<number | null> {
    const row = await this.db.selectFrom('timers').select('due_at').orderBy('due_at').limit(1).executeTakeFirst();
    return row ? Number(row.due_at) : null;
  }

  // ---- escalation state ----

  async insertEscalation(row: EscalationRow): Promise<void> {
    await this.db.insertInto('escalations').values(row).execute();
  }

  async updateEscalation(row: EscalationRow): Promise<void> {
    await this.db
      .updateTable('escalations')
      .set({ level: row.level, due_at: row.due_at, state: row.state, updated_at: row.updated_at })
      .where('request_id', '=', row.request_id)
      .execute();
  }

  async escalationsFor(requestIds: readonly string[]): Promise<EscalationRow[]> {
    if (requestIds.length === 0) return [];
    return this.db.selectFrom('escalations').selectAll().where('request_id', 'in', [...requestIds]).execute();
  }

  // ---- deliveries ----

  async insertDeliveries(rows: readonly DeliveryRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db.insertInto('deliveries').values([...rows]).execute();
  }

  async getDelivery(id: string): Promise<DeliveryRow | undefined> {
    return this.db.selectFrom('deliveries').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async updateDelivery(
    id: string,
    patch: Partial<Pick<DeliveryRow, 'status' | 'attempts' | 'last_error' | 'response' | 'attempt_log' | 'updated_at' | 'finished_at'>>,
  ): Promise<void> {
    await this.db.updateTable('deliveries').set(patch).where('id', '=', id).execute();
  }

  async listDeliveries(filter: DeliveryFilter): Promise<DeliveryRow[]> {
    let q = this.db.selectFrom('deliveries').selectAll();
    // A status no delivery has (the API passes the caller's text) matches none.
    if (filter.status) q = q.where('status', '=', filter.status as DeliveryStatus);
    if (filter.requestId) q = q.where('request_id', '=', filter.requestId);
    if (filter.channel) q = q.where('channel', '=', filter.channel);
    if (filter.before) {
      const { createdAt, id } = filter.before;
      q = q.where((eb) => eb.or([eb('created_at', '<', createdAt), eb.and([eb('created_at', '=', createdAt), eb('id', '<', id)])]));
    }
    return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
  }

  // ---- nonces ----

  /** Records a one-time value; false when it was seen before (a replay). Forgets expired ones as it goes. */
  /** Whether `key` was claimed and has not expired. */
  async nonceHeld(key: string, now: number): Promise<boolean> {
    const row = await this.db.selectFrom('nonces').select('expires_at').where('key', '=', key).executeTakeFirst();
    return row !== undefined && Number(row.expires_at) > now;
  }

  async claimNonce(key: string, expiresAt: number, now: number): Promise<boolean> {
    await this.db.deleteFrom('nonces').where('expires_at', '<', now).execute();
    const r = await this.db.insertInto('nonces').values({ key, expires_at: expiresAt }).onConflict((oc) => oc.column('key').doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }
}




// ---- row builders (the engine writes these; kept beside the tables they fill) ----

/** One escalation timer per request, so an extension or the next level simply replaces it. */
export const escalationTimerId = (requestId: string) => `tmr_e_${requestId}`;
export const expiryTimerId = (requestId: string) => `tmr_x_${requestId}`;

export function requestTimer(kind: 'escalate' | 'expire', requestId: string, dueAt: number, at: number, payload: unknown = {}): TimerRow {
  return {
    id: kind === 'escalate' ? escalationTimerId(requestId) : expiryTimerId(requestId),
    kind,
    request_id: requestId,
    due_at: dueAt,
    payload: JSON.stringify(payload),
    claimed_by: null,
    claimed_until: null,
    created_at: at,
  };
}

/** A delivery and the timer that makes its first attempt, due at once; both share the delivery's id. */
export function deliveryRows(id: string, requestId: string | null, channel: string, event: string, data: unknown, at: number): { delivery: DeliveryRow; timer: TimerRow } {
  return {
    delivery: {
      id,
      request_id: requestId,
      channel,
      event,
      status: 'pending',
      attempts: 0,
      last_error: null,
      response: null,
      attempt_log: '[]',
      data: JSON.stringify(data ?? {}),
      created_at: at,
      updated_at: at,
      finished_at: null,
    },
    timer: { id, kind: 'deliver', request_id: requestId, due_at: at, payload: '{}', claimed_by: null, claimed_until: null, created_at: at },
  };
}

/** A timer that turned out not to be this caller's to fire; the transaction rolls back. */
export class TimerSkip extends Error {
  constructor(readonly why: 'gone' | 'rescheduled') {
    super(why);
  }
}

export function deliveryFromRow(row: DeliveryRow) {
  return {
    id: row.id,
    requestId: row.request_id,
    channel: row.channel,
    event: row.event,
    status: row.status as 'pending' | 'delivered' | 'failed',
    attempts: row.attempts,
    lastError: row.last_error,
    attemptLog: JSON.parse(row.attempt_log) as Array<{ at: string; ok: boolean; ms: number; error?: string }>,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
    finishedAt: row.finished_at === null ? null : new Date(row.finished_at).toISOString(),
  };
}

/**
 * SIEM forwarding's table and its SQL (migration 021_forwarding): one cursor per destination and
 * the lease that says which server process forwards to it. Written only by forwarding/forwarder.ts.
 *
 * The lease is a compare-and-set on the row: a process takes it when it is free, expired or
 * already its own, and every cursor move is conditional on still holding it, so two servers on
 * one database never both advance a destination's cursor (each may still send a batch the other
 * sends too: delivery is at least once, and the receiver dedupes by seq).
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { AuditLogTable } from './schema.ts';
import type { Database } from './schema.ts';

export interface ForwardCursorsTable {
  destination: string;
  seq: number;
  leased_by: string | null;
  leased_until: number;
  last_error: string | null;
  last_error_at: number | null;
  delivered_at: number | null;
  updated_at: number;
}

export interface ForwardCursor {
  destination: string;
  seq: number;
  leasedBy: string | null;
  leasedUntil: number;
  lastError: string | null;
  lastErrorAt: number | null;
  deliveredAt: number | null;
  updatedAt: number;
}

type Db = Kysely<Database> | Transaction<Database>;

const cursorOf = (r: ForwardCursorsTable): ForwardCursor => ({
  destination: r.destination,
  seq: Number(r.seq),
  leasedBy: r.leased_by,
  leasedUntil: Number(r.leased_until),
  lastError: r.last_error,
  lastErrorAt: r.last_error_at === null ? null : Number(r.last_error_at),
  deliveredAt: r.delivered_at === null ? null : Number(r.delivered_at),
  updatedAt: Number(r.updated_at),
});

export class ForwardQueries {
  constructor(private readonly db: Db) {}

  /**
   * Takes (or renews) the destination's lease for `holder` until `now + leaseMs`, creating its
   * cursor at 0 the first time. Returns the cursor when the lease is `holder`'s, else undefined
   * (another process holds an unexpired lease).
   */
  async acquire(destination: string, holder: string, now: number, leaseMs: number): Promise<ForwardCursor | undefined> {
    await this.db
      .insertInto('forward_cursors')
      .values({ destination, seq: 0, leased_by: null, leased_until: 0, last_error: null, last_error_at: null, delivered_at: null, updated_at: now })
      .onConflict((oc) => oc.column('destination').doNothing())
      .execute();
    const moved = await this.db
      .updateTable('forward_cursors')
      .set({ leased_by: holder, leased_until: now + leaseMs })
      .where('destination', '=', destination)
      .where((eb) => eb.or([eb('leased_by', 'is', null), eb('leased_by', '=', holder), eb('leased_until', '<=', now)]))
      .executeTakeFirst();
    if (Number(moved.numUpdatedRows) !== 1) return undefined;
    const row = await this.db.selectFrom('forward_cursors').selectAll().where('destination', '=', destination).executeTakeFirstOrThrow();
    return cursorOf(row);
  }

  /**
   * Moves the cursor to `seq` (never backwards) and renews the lease, only while `holder` holds
   * it. False when the lease was lost (the caller stops and re-acquires).
   */
  async advance(destination: string, holder: string, seq: number, now: number, leaseMs: number): Promise<boolean> {
    const moved = await this.db
      .updateTable('forward_cursors')
      .set({
        seq: sql<number>`case when seq < ${seq} then ${seq} else seq end`,
        leased_until: now + leaseMs,
        delivered_at: now,
        updated_at: now,
      })
      .where('destination', '=', destination)
      .where('leased_by', '=', holder)
      .executeTakeFirst();
    return Number(moved.numUpdatedRows) === 1;
  }

  /** Records the last failure (shown by `GET /v1/forwarding` and `countersign audit forwarding`; no secrets). */
  async recordError(destination: string, holder: string, message: string, now: number): Promise<void> {
    await this.db
      .updateTable('forward_cursors')
      .set({ last_error: message.slice(0, 500), last_error_at: now, updated_at: now })
      .where('destination', '=', destination)
      .where('leased_by', '=', holder)
      .execute();
  }

  /** Gives the lease up (a clean stop), so another process may take it at once. */
  async release(destination: string, holder: string): Promise<void> {
    await this.db.updateTable('forward_cursors').set({ leased_by: null, leased_until: 0 }).where('destination', '=', destination).where('leased_by', '=', holder).execute();
  }

  /** The newest integrated seq (0: an empty trail), what each cursor's lag is measured against. */
  async headSeq(): Promise<number> {
    const row = await this.db.selectFrom('audit_log').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
    return Number(row?.seq ?? 0);
  }

  async cursors(): Promise<ForwardCursor[]> {
    return (await this.db.selectFrom('forward_cursors').selectAll().orderBy('destination').execute()).map(cursorOf);
  }

  /** Integrated entries after `seq`, oldest first, at most `limit` (entries removed by retention are simply absent). */
  async entriesAfter(seq: number, limit: number): Promise<AuditLogTable[]> {
    return this.db.selectFrom('audit_log').selectAll().where('seq', '>', seq).orderBy('seq').limit(limit).execute();
  }
}

/**
 * What `GET /v1/forwarding` and `countersign audit forwarding` show: per destination, the stored
 * cursor, how far it is behind the trail's newest entry (lag, in entries), who holds its lease,
 * and its last error. Read from the database, so any server on it answers for all of them.
 *
 *   const status = await forwardingStatus(engine.store, config.forward.destinations, Date.now());
 */
import type { Store } from '../store/store.ts';
import type { ForwardDestination } from './config.ts';

export interface DestinationStatus {
  destination: string;
  kind: 'syslog' | 'http' | 'unknown';
  /** False for a cursor this server's config no longer names (an old address). */
  configured: boolean;
  /** The last seq the destination has (0: nothing yet). */
  cursor: number;
  /** The trail's newest seq. */
  head: number;
  /** Entries not yet delivered: head − cursor. */
  lag: number;
  /** `failing`: the newest event is an error; `ok`: a delivery after the last error (or none); `pending`: no server has taken it up yet. */
  state: 'ok' | 'failing' | 'pending';
  leasedBy: string | null;
  leaseUntil: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
  deliveredAt: string | null;
}

const iso = (ms: number | null) => (ms === null || ms <= 0 ? null : new Date(ms).toISOString());

export async function forwardingStatus(store: Store, destinations: readonly ForwardDestination[], now: number): Promise<{ head: number; destinations: DestinationStatus[] }> {
  const [head, rows] = await Promise.all([store.forwarding.headSeq(), store.forwarding.cursors()]);
  const byId = new Map(rows.map((r) => [r.destination, r]));
  const ids = [...destinations.map((d) => d.id), ...rows.map((r) => r.destination).filter((id) => !destinations.some((d) => d.id === id))];
  return {
    head,
    destinations: ids.map((id): DestinationStatus => {
      const row = byId.get(id);
      const dest = destinations.find((d) => d.id === id);
      const cursor = row?.seq ?? 0;
      const failing = row?.lastErrorAt != null && (row.deliveredAt === null || row.lastErrorAt > row.deliveredAt);
      return {
        destination: id,
        kind: dest?.kind ?? (id.startsWith('syslog:') ? 'syslog' : id.startsWith('http:') ? 'http' : 'unknown'),
        configured: dest !== undefined,
        cursor,
        head,
        lag: Math.max(0, head - cursor),
        state: row === undefined ? 'pending' : failing ? 'failing' : 'ok',
        leasedBy: row && row.leasedBy !== null && row.leasedUntil > now ? row.leasedBy : null,
        leaseUntil: row && row.leasedBy !== null && row.leasedUntil > now ? iso(row.leasedUntil) : null,
        lastError: row?.lastError ?? null,
        lastErrorAt: iso(row?.lastErrorAt ?? null),
        deliveredAt: iso(row?.deliveredAt ?? null),
      };
    }),
  };
}

/**
 * What `GET /v1/forwarding` and `countersign audit forwarding` show: per destination, the stored
 * cursor, how far it is behind the trail's newest entry (lag, in entries), who holds its lease,
 * and its last error. Read from the database, so any server on it answers for all of them.
 *
 *   const status = await engine.forwardingStatus(config.forward.destinations, Date.now());
 */
import { createHmac } from 'node:crypto';
import type { Store } from '../store/store.ts';
import type { ForwardDestination } from './config.ts';

export interface DestinationStatus {
  /**
   * The destination as admins and auditors may see it: `syslog:<host>:<port>`, or for HTTPS
   * `http:<origin>` with any path shown as `/…` (a collector's path is often its credential).
   */
  destination: string;
  /** The `destination` label of the `/metrics` gauges (see `metricsLabel`); given when the caller passes the label key. */
  metricsLabel?: string;
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

/**
 * How a stored destination id is shown: the HTTPS path redacted (`http:https://siem.example/…`).
 * The id itself (the cursor's key) keeps the path, so two collectors on one origin stay apart.
 */
export function displayName(id: string): string {
  if (!id.startsWith('http:')) return id;
  try {
    const url = new URL(id.slice('http:'.length));
    return `http:${url.origin}${url.pathname === '/' && url.search === '' ? '' : '/…'}`;
  } catch {
    return 'http:…'; // not a URL (a database writer's): show nothing of it
  }
}

/**
 * The destination's name on the unauthenticated `/metrics`: its kind and a keyed hash of its id
 * (`syslog-3f9a1c2b7d4e`), never its host, port or path. Keyed (a secret derived from the audit
 * key, the same on every server of one trail) because an unkeyed hash of a host and port could be
 * reversed by trying them all; `GET /v1/forwarding` gives each destination's label to map it back.
 */
export function metricsLabel(id: string, key: Buffer): string {
  const kind = id.startsWith('syslog:') ? 'syslog' : id.startsWith('http:') ? 'http' : 'unknown';
  return `${kind}-${createHmac('sha256', key).update(id).digest('hex').slice(0, 12)}`;
}

const iso = (ms: number | null) => (ms === null || ms <= 0 ? null : new Date(ms).toISOString());

export async function forwardingStatus(store: Store, destinations: readonly ForwardDestination[], now: number, labelKey?: Buffer): Promise<{ head: number; destinations: DestinationStatus[] }> {
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
        destination: displayName(id),
        ...(labelKey ? { metricsLabel: metricsLabel(id, labelKey) } : {}),
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

/** The key of `metricsLabel`, derived from the audit key (so every server of one trail agrees). */
export function forwardLabelKey(key: { derive(label: string): Buffer }): Buffer {
  return key.derive('forward-metrics-label/v1');
}

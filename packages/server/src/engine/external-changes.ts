/**
 * Cross-process wake-ups on a SQLite file. PostgreSQL tells every process about a change through
 * NOTIFY; SQLite has no such channel, so a second process on the same file — an embedded gateway
 * beside `countersign serve`, or the reverse — would hear of a decision only when its waiter timed
 * out (a minute or more later).
 *
 * SQLite's `PRAGMA data_version` changes exactly when another connection has committed. It is
 * read every `intervalMs` (one in-memory read, no I/O); when it moves, the audit entries after the
 * last one seen (by entry id, integrated into the tree or not yet: store/integrator.ts) say which requests changed, because every state change writes its audit entry in
 * the same transaction (the one audit writer, audit/writer.ts). Each is published to the process's
 * own `Wakeups`, so waiters, streams and the dashboard's live feed wake as they do for a local
 * change. Reading the entries by their id index costs what the other process wrote, not the size
 * of the trail.
 *
 *   const watcher = await ExternalChanges.start(store, (id) => wakeups.publish(id));
 *   await watcher.stop();
 */
import type { Store } from '../store/store.ts';

/** How often `data_version` is read. A decision from another process is heard within about this. */
export const EXTERNAL_POLL_MS = 250;
const PAGE = 500;

export class ExternalChanges {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  private constructor(
    private readonly store: Store,
    private readonly version: () => number,
    private readonly publish: (requestId: string) => void,
    private lastVersion: number,
    private lastId: bigint,
  ) {}

  /** Starts watching, or returns undefined when the store cannot be written by another process (PostgreSQL, memory). */
  static async start(store: Store, publish: (requestId: string) => void, intervalMs = EXTERNAL_POLL_MS): Promise<ExternalChanges | undefined> {
    const version = store.dataVersion;
    if (!version) return undefined;
    const watcher = new ExternalChanges(store, version, publish, version(), await store.auditLastEntryId());
    watcher.timer = setInterval(() => void watcher.check(), intervalMs);
    // A watcher alone must not keep an agent's process alive.
    watcher.timer.unref();
    return watcher;
  }

  /** One look (also what the interval runs); never throws: a failed read is retried on the next tick. */
  check(): Promise<void> {
    this.running ??= this.look()
      .catch(() => {})
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async look(): Promise<void> {
    const version = this.version();
    if (version === this.lastVersion) return;
    const changed = new Set<string>();
    for (;;) {
      const rows = await this.store.auditRequestsAfterEntry(this.lastId, PAGE);
      for (const row of rows) {
        if (row.id > this.lastId) this.lastId = row.id;
        if (row.request_id) changed.add(row.request_id);
      }
      if (rows.length < PAGE) break;
    }
    // Only once the entries are read: a failed read leaves the version unseen, so the next tick retries.
    this.lastVersion = version;
    for (const id of changed) this.publish(id);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}

/**
 * In-process fan-out of "request X changed". On PostgreSQL the engine also sends NOTIFY inside
 * the same transaction (delivered on commit, to every server process), and each process feeds
 * what it hears into its own `Wakeups`; on SQLite the engine publishes after commit.
 */
export class Wakeups {
  private readonly listeners = new Map<string, Set<() => void>>();
  /** Listeners for every change (the dashboard's live queue), told which request changed. */
  private readonly anyListeners = new Set<(id: string) => void>();
  /** Told when changes may have been missed (see `resync`). */
  private readonly resyncListeners = new Set<() => void>();

  subscribe(id: string, listener: () => void): () => void {
    let set = this.listeners.get(id);
    if (!set) {
      set = new Set();
      this.listeners.set(id, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(id) === set) this.listeners.delete(id);
    };
  }

  /**
   * Hears every `publish`, whatever the id, and (`onResync`) every `resync`. Returns the
   * unsubscribe function.
   */
  subscribeAll(listener: (id: string) => void, onResync?: () => void): () => void {
    this.anyListeners.add(listener);
    if (onResync) this.resyncListeners.add(onResync);
    return () => {
      this.anyListeners.delete(listener);
      if (onResync) this.resyncListeners.delete(onResync);
    };
  }

  /**
   * Changes may have been missed: this process's database notifications were cut (a PostgreSQL
   * restart, failover or dropped connection) and are back. Every waiter wakes as if its request
   * had changed and reads it again, and every all-changes listener is told to start over, so a
   * decision made during the outage is never missed.
   */
  resync(): void {
    for (const listener of [...this.resyncListeners]) {
      try {
        listener();
      } catch {
        // As in publish.
      }
    }
    for (const set of [...this.listeners.values()]) {
      for (const listener of [...set]) {
        try {
          listener();
        } catch {
          // As in publish.
        }
      }
    }
  }

  publish(id: string): void {
    for (const listener of [...this.anyListeners]) {
      try {
        listener(id);
      } catch {
        // As below: one broken listener must not stop the rest.
      }
    }
    const set = this.listeners.get(id);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener();
      } catch {
        // A broken listener must not stop the others from waking.
      }
    }
  }

  /** Resolves on the next change to `id`, after `ms`, or on abort, whichever comes first. */
  next(id: string, ms: number, signal?: AbortSignal): Promise<'changed' | 'timeout' | 'aborted'> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve('aborted');
      const finish = (why: 'changed' | 'timeout' | 'aborted') => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        resolve(why);
      };
      const onAbort = () => finish('aborted');
      const unsubscribe = this.subscribe(id, () => finish('changed'));
      const timer = setTimeout(() => finish('timeout'), Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  get size(): number {
    return this.listeners.size;
  }
}

/**
 * What follows a commit, in this process: waiters woken (on SQLite; PostgreSQL's NOTIFY does it),
 * request-change observers told, and timer listeners told when the transaction wrote timers that
 * are due now (deliveries to send). Rooms mark `timersDue` inside a transaction; `afterCommit` acts on it.
 */
import type { Store } from '../store/store.ts';
import type { RequestChange } from './house.ts';
import { Listeners } from './listeners.ts';
import type { Wakeups } from './wakeups.ts';

export class Commits {
  private readonly observers = new Listeners<RequestChange>();
  private readonly timerListeners = new Set<() => void>();
  /** Set inside a transaction that wrote due timers; cleared (and the listeners told) by the next `afterCommit`. */
  timersDue = false;

  constructor(
    private readonly store: Store,
    private readonly wakeups: Wakeups,
  ) {}

  /** Hears every committed request change made by this process (metrics). Observers must be cheap. */
  observe(observer: (change: RequestChange) => void): () => void {
    return this.observers.add(observer);
  }

  emitChange(change: RequestChange): void {
    this.observers.emit(change);
  }

  /** Told (after commit) when this process wrote timers that are due now: deliveries to send. */
  onTimersDue(listener: () => void): () => void {
    this.timerListeners.add(listener);
    return () => {
      this.timerListeners.delete(listener);
    };
  }

  /** Tells every timer listener now (the guard queued notices in its own transaction). */
  timersNow(): void {
    for (const listener of this.timerListeners) listener();
  }

  afterCommit(id: string): void {
    // On PostgreSQL the NOTIFY sent in the transaction wakes every process, this one included.
    if (!this.store.capabilities.listenNotify) this.wakeups.publish(id);
    if (this.timersDue) {
      this.timersDue = false;
      for (const listener of this.timerListeners) listener();
    }
  }
}

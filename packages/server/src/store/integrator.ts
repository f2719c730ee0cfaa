/**
 * The audit integrator (issue 14): the single writer of tree positions. Transactions write their
 * entries to `audit_pending` (Queries.appendAudit) and never wait on each other for the trail;
 * this loop, off the request path, folds committed entries into the Merkle tree in batches
 * (TrailQueries.integrateBatch), each batch one transaction.
 *
 * Which entries a batch may take. Every committed pending entry the batch's snapshot sees, in id
 * order. There is no cursor over ids (an id committed late would be skipped by one): an entry
 * leaves `audit_pending` only in the transaction that integrates it, so nothing committed is
 * ever passed over, however ids interleave or gap. An open transaction's entries are invisible
 * and are integrated by a later batch; since such a transaction has not committed, nothing that
 * was integrated can depend on it — an entry whose transaction committed before another's began
 * always gets the lower seq (the later transaction's snapshot, and so every batch that sees it,
 * sees the earlier one too; in one batch, the earlier drew its ids first). We do not use the
 * snapshot's xmin as the horizon: xmin is held back by any open transaction in the whole
 * PostgreSQL cluster (an idle psql session, another application), which would stall the trail
 * with no benefit once there is no cursor.
 *
 * Who integrates. PostgreSQL: whichever server holds this schema's advisory lock for the batch
 * (pg_try_advisory_xact_lock); the others skip and try again shortly. SQLite: the writer — the
 * batch is one job of the store's group commit, serialised with every other write.
 *
 * When. Woken by the store after each local commit that wrote an entry (next turn of the event
 * loop), and by a poll every `pollMs` (entries other servers or processes committed), so an
 * entry is integrated within about `pollMs` plus one batch. `settle()` is the read side's
 * barrier: it integrates (or waits for the leader to) everything committed before it was called.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { inBackground } from './sqlite-busy.ts';

export interface IntegratorOptions {
  /** Entries per batch (one transaction). */
  readonly batch?: number;
  /** How often the loop looks for entries it was not woken for (other servers' commits). */
  readonly pollMs?: number;
  /** Errors of background rounds; they are retried on the next wake or poll. */
  readonly onError?: (err: unknown) => void;
}

export interface IntegratorPorts {
  /** Runs one batch in its own transaction; null when another server holds the lock. */
  integrateBatch(limit: number): Promise<{ taken: number; size: number } | null>;
  /** The newest pending id, exactly (0n when none is pending). */
  newestPending(): Promise<bigint>;
  /** Whether an entry with id ≤ `id` is still pending. */
  pendingAtOrBelow(id: bigint): Promise<boolean>;
}

export const INTEGRATION_BATCH = 2000;
export const INTEGRATION_POLL_MS = 200;
/**
 * How long one batch may wait for a lock (PostgreSQL `lock_timeout`, set in the batch's
 * transaction): a session holding a row lock on a pending entry (or on the head) makes the batch
 * fail and be retried, rather than hold the integrator (and `stop()`) for as long as it likes.
 */
export const INTEGRATION_LOCK_TIMEOUT_MS = 1000;
/** And how long any one statement of a batch may run (PostgreSQL `statement_timeout`). */
export const INTEGRATION_STATEMENT_TIMEOUT_MS = 10_000;
/** How long `stop()` waits for the batch in flight (a batch is bounded by the timeouts above). */
const STOP_WAIT_MS = INTEGRATION_LOCK_TIMEOUT_MS + INTEGRATION_STATEMENT_TIMEOUT_MS;

/** `promise`, or `fallback` once `ms` have passed, whichever is first (the promise runs on). */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), Math.max(0, ms));
    timer.unref();
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

export class AuditIntegrator {
  readonly #ports: IntegratorPorts;
  readonly #batch: number;
  readonly #onError: (err: unknown) => void;
  #running: Promise<void> | undefined;
  #again = false;
  #scheduled = false;
  #stopped = false;
  readonly #timer: NodeJS.Timeout;
  /** Batches this process ran, and how many entries they took (tests and the benchmark read them). */
  readonly stats = { batches: 0, entries: 0, skipped: 0 };

  constructor(ports: IntegratorPorts, options: IntegratorOptions = {}) {
    this.#ports = ports;
    this.#batch = options.batch ?? INTEGRATION_BATCH;
    this.#onError = options.onError ?? (() => {});
    this.#timer = setInterval(() => void this.#poll(), options.pollMs ?? INTEGRATION_POLL_MS);
    this.#timer.unref();
  }

  /** An entry committed: integrate soon (coalesced with every other wake of this turn). */
  wake(): void {
    if (this.#stopped || this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#run().catch(this.#onError);
    });
  }

  /**
   * Integrates everything committed before this call, or waits (up to `timeoutMs`) for the
   * server holding the lock to. True when nothing that was pending at the call still is.
   */
  async settle(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const TIMED_OUT = Symbol('timed out');
    const target = await within(this.#ports.newestPending(), timeoutMs, TIMED_OUT);
    if (target === TIMED_OUT) return false;
    if (target === 0n) return true;
    for (;;) {
      // The batch in flight may wait on a lock another session holds: answer at the deadline
      // (false) and let it run on; it is bounded by INTEGRATION_LOCK_TIMEOUT_MS.
      const ran = await within(
        this.#run().then(
          () => true,
          (err: unknown) => {
            this.#onError(err);
            return true;
          },
        ),
        deadline - Date.now(),
        TIMED_OUT,
      );
      if (ran === TIMED_OUT) return false;
      const still = await within(this.#ports.pendingAtOrBelow(target), deadline - Date.now(), TIMED_OUT);
      if (still === TIMED_OUT) return false;
      if (!still) return true;
      if (Date.now() >= deadline || this.#stopped) return false;
      await sleep(10);
    }
  }

  /** Runs batches until one comes back short; one run at a time in this process. */
  #run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    const run = (async () => {
      try {
        do {
          this.#again = false;
          for (;;) {
            const result = await inBackground(() => this.#ports.integrateBatch(this.#batch));
            if (result === null) {
              // Another server is integrating; it may have read before our commit: look again soon.
              this.stats.skipped++;
              if (!this.#stopped) setTimeout(() => this.wake(), 20).unref();
              break;
            }
            if (result.taken > 0) {
              this.stats.batches++;
              this.stats.entries += result.taken;
            }
            if (result.taken < this.#batch) break;
          }
        } while (this.#again && !this.#stopped);
      } finally {
        this.#running = undefined;
      }
    })();
    this.#running = run;
    return run;
  }

  async #poll(): Promise<void> {
    if (this.#stopped || this.#running) return;
    try {
      if ((await this.#ports.newestPending()) > 0n) await this.#run();
    } catch (err) {
      this.#onError(err);
    }
  }

  /** Stops the loop after the batch in flight (entries left pending are integrated by the next start, or another server). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    if (this.#running) await within(this.#running.catch(() => {}), STOP_WAIT_MS, undefined);
  }
}

/**
 * The scheduler owns every deadline: SLA escalation, the agent's own timeout, notification
 * attempts, and the claim window of an approval (an unclaimed one is swept to `lapsed`, by a
 * walk of `requests_claim_lapse` rather than a timer row: the compare-and-set on the request
 * row is what makes it happen once). Timers are rows (store/timers.ts); a tick leases the due ones and fires each
 * through the engine, which deletes the timer in the same transaction as the change it causes.
 * So a timer fires once even across processes and crashes: a process killed mid-tick leaves its
 * timers leased, and once the lease runs out any process (itself, restarted) fires them, late.
 *
 * Costs follow due timers, not pending requests: each round walks the due-time index from its
 * start and stops at `batch` rows.
 *
 *   const scheduler = new Scheduler(engine, { deliver: notifier.deliver });
 *   scheduler.start();   // polls every second, and at once when the engine writes due timers
 *   await scheduler.stop();
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Engine } from '../engine/engine.ts';
import type { TimerRow } from '../store/timers.ts';
import { inBackground } from '../store/sqlite-busy.ts';

export interface SchedulerOptions {
  /** Sends one notification attempt and records it (channels/notifier.ts); without it, delivery timers are left to other processes. */
  deliver?: ((timer: TimerRow) => Promise<unknown>) | undefined;
  /** This process's name in leases. Default `host:pid:random`. */
  owner?: string | undefined;
  /** Milliseconds between polls. Default 1000. */
  intervalMs?: number | undefined;
  /** Timers claimed per round. Default 100. */
  batch?: number | undefined;
  /** How long a claim lasts before another process may take the timer over. Default 30 s (a delivery attempt times out well within it). */
  leaseMs?: number | undefined;
  /** Request timers fired at once. Default 8. */
  concurrency?: number | undefined;
  /** Notification attempts in flight at once. Default 16. */
  maxDeliveries?: number | undefined;
  onError?: ((err: unknown) => void) | undefined;
}

export interface TickReport {
  /** escalated + decided. */
  fired: number;
  /** Moved up a level. */
  escalated: number;
  /** Expired (agent's timeout, end of the chain) or approved by timeout. */
  decided: number;
  gone: number;
  stale: number;
  rescheduled: number;
  errors: number;
  /** Delivery attempts started in this tick (they finish in the background). */
  deliveries: number;
  /** Approvals swept to `lapsed` (never claimed before their claim deadline). */
  lapsed: number;
}

const REQUEST_KINDS = ['escalate', 'expire', 'collect', 'pause_end', 'cooldown'] as const;
/** Rounds per tick before yielding to the next poll, so one tick cannot run unbounded. */
const MAX_ROUNDS = 50;

export class Scheduler {
  readonly owner: string;
  private readonly intervalMs: number;
  private readonly batch: number;
  private readonly leaseMs: number;
  private readonly concurrency: number;
  private readonly maxDeliveries: number;
  private readonly deliveries = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<TickReport> | undefined;
  private again = false;
  private stopped = true;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly options: SchedulerOptions = {},
  ) {
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.intervalMs = options.intervalMs ?? 1000;
    this.batch = options.batch ?? 100;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.concurrency = options.concurrency ?? 8;
    this.maxDeliveries = options.maxDeliveries ?? 16;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribe = this.engine.onTimersDue(() => this.kick());
    this.kick();
  }

  /** Stops polling and waits for the current tick and the deliveries in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
    await Promise.all([...this.deliveries]);
  }

  /** Run a tick now (or right after the current one). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    void this.loop();
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      // Background work: on SQLite it gives the write lock up quickly and is tried again next tick (store/sqlite-busy.ts).
      await inBackground(() => this.tick()).catch((err: unknown) => this.options.onError?.(err));
    } while (this.again && !this.stopped);
    if (!this.stopped) {
      this.timer = setTimeout(() => this.kick(), this.intervalMs);
      this.timer.unref();
    }
  }

  /**
   * Claims and fires what is due. Request timers are fired before the tick returns; delivery
   * attempts are started and finish in the background (a slow channel must not hold back an
   * escalation). Never throws for one timer's failure: that timer stays leased and is retried
   * when its lease runs out.
   */
  tick(): Promise<TickReport> {
    if (this.running) return this.running;
    const run = this.runTick().finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return run;
  }

  /** Approvals whose claim window closed unclaimed become `lapsed`, a batch at a time (bounded per tick). */
  private async sweepLapsed(report: TickReport): Promise<void> {
    for (let round = 0; round < MAX_LAPSE_ROUNDS; round++) {
      try {
        const n = await this.engine.sweepLapsedApprovals(this.batch);
        report.lapsed += n;
        if (n < this.batch) return;
      } catch (err) {
        report.errors++;
        this.options.onError?.(err);
        return;
      }
    }
  }

  private async runTick(): Promise<TickReport> {
    const report: TickReport = { fired: 0, escalated: 0, decided: 0, gone: 0, stale: 0, rescheduled: 0, errors: 0, deliveries: 0, lapsed: 0 };
    await this.sweepLapsed(report);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const now = this.engine.clock();
      const due = await this.engine.claimDueTimers(now, this.batch, this.owner, this.leaseMs, REQUEST_KINDS);
      await eachLimited(due, this.concurrency, async (t) => {
        try {
          const outcome = await this.engine.fireTimer(t);
          report[outcome]++;
          if (outcome === 'escalated' || outcome === 'decided') report.fired++;
        } catch (err) {
          report.errors++;
          this.options.onError?.(err);
        }
      });
      let started = 0;
      const deliver = this.options.deliver;
      const room = this.maxDeliveries - this.deliveries.size;
      if (deliver && room > 0) {
        const sends = await this.engine.claimDueTimers(this.engine.clock(), Math.min(room, this.batch), this.owner, this.leaseMs, ['deliver']);
        for (const t of sends) {
          const p: Promise<void> = deliver(t)
            .then(() => undefined)
            .catch((err: unknown) => this.options.onError?.(err))
            .finally(() => {
              this.deliveries.delete(p);
              if (!this.stopped) this.kick();
            });
          this.deliveries.add(p);
        }
        started = sends.length;
        report.deliveries += started;
      }
      if (due.length < this.batch && started < Math.min(room, this.batch)) break;
    }
    return report;
  }
}

/** Rounds of the lapse sweep per tick; what is left waits for the next tick. */
const MAX_LAPSE_ROUNDS = 10;

async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

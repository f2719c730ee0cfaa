/**
 * The timer registry (engine room): which room fires a claimed timer of each kind. The scheduler
 * claims due timers (scheduler/) and hands each to `fire`; the handler deletes the timer in the
 * transaction that makes its change, so it fires once. `deliver` timers are not fired here: the
 * scheduler sends them (channels/) and records each attempt (engine/deliveries.ts).
 */
import { CountersignError } from '@countersign/core';
import type { TimerKind, TimerRow } from '../store/timers.ts';
import type { House } from './house.ts';

/** What firing a timer did: see Escalation.fireRequestTimer, Aggregates.collectAggregate, GuardService.pauseRanOut. */
export type TimerOutcome = 'escalated' | 'decided' | 'gone' | 'rescheduled' | 'stale';

export type TimerHandler = (timer: TimerRow) => Promise<TimerOutcome>;

export class TimerRegistry {
  private readonly handlers = new Map<TimerKind, TimerHandler>();

  constructor(private readonly h: House) {
    // A level's deadline and the agent's own timeout (engine/escalation.ts).
    this.register('escalate', (timer) => h.escalation.fireRequestTimer(timer));
    this.register('expire', (timer) => h.escalation.fireRequestTimer(timer));
    // An aggregate collection closes (engine/aggregates.ts).
    this.register('collect', (timer) => h.aggregates.collectAggregate(timer));
    // An agent's pause runs out (guard/).
    this.register('pause_end', (timer) => h.guard.pauseRanOut(timer));
    // An operator entered a cool-down: the pending requests it leaves with nobody free to approve escalate (engine/escalation.ts).
    this.register('cooldown', (timer) => h.escalation.fireCooldown(timer));
  }

  register(kind: TimerKind, handler: TimerHandler): void {
    if (this.handlers.has(kind)) throw new CountersignError('INTERNAL', `a handler for ${kind} timers is already registered`);
    this.handlers.set(kind, handler);
  }

  /** Due timers claimed for the scheduler, each with a lease so that one process fires it (store/timers.ts `claimDue`). */
  claimDue(now: number, limit: number, owner: string, leaseMs: number, kinds?: readonly TimerKind[]): Promise<TimerRow[]> {
    return this.h.store.timers.claimDue(now, limit, owner, leaseMs, kinds);
  }

  /** The kinds this registry fires. */
  kinds(): TimerKind[] {
    return [...this.handlers.keys()];
  }

  async fire(timer: TimerRow): Promise<TimerOutcome> {
    const handler = this.handlers.get(timer.kind);
    if (!handler) throw new CountersignError('INTERNAL', `fireTimer: ${timer.kind} is not a request timer`);
    return handler(timer);
  }
}

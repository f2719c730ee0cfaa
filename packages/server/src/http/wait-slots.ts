/**
 * Counts the long-polls (`GET /v1/requests/:id?waitSeconds=`) and event streams
 * (`…/events`, `/v1/events`) each principal holds open in this process, and refuses one more
 * past core's `admitWait`: 429 `RATE_LIMITED` with `details.retryAfter` (and `Retry-After`).
 * Nothing is waited on before the slot is taken, and the slot is given back when the wait
 * ends however it ends (answered, timed out, client gone, error), so a client that disconnects
 * never leaves a slot behind.
 *
 *   const release = slots.acquire(principal);   // throws RATE_LIMITED when full
 *   try { await wait(); } finally { release(); }
 */
import { admitWait, CountersignError, type WaitLimits } from '@countersign/core';
import type { Principal } from '../engine/principal.ts';

export class WaitSlots {
  private readonly held = new Map<string, number>();
  private total = 0;

  constructor(readonly limits: WaitLimits) {}

  acquire(principal: Principal): () => void {
    const key = principal.kind === 'agent' ? `agent:${principal.agentId}` : `operator:${principal.operatorId}`;
    const mine = this.held.get(key) ?? 0;
    const answer = admitWait(this.limits, { principal: mine, total: this.total });
    if (!answer.admit) {
      const who = answer.scope === 'principal' ? 'this credential already holds' : 'the server already holds';
      throw new CountersignError('RATE_LIMITED', `${who} ${answer.limit} open long-polls and event streams; close one or retry in ${answer.retryAfterSeconds} s`, {
        limit: answer.scope === 'principal' ? 'waits_per_principal' : 'waits_total',
        max: answer.limit,
        retryAfter: answer.retryAfterSeconds,
      });
    }
    this.held.set(key, mine + 1);
    this.total += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total -= 1;
      const left = (this.held.get(key) ?? 1) - 1;
      if (left <= 0) this.held.delete(key);
      else this.held.set(key, left);
    };
  }

  /** Open waits: in all, and of one principal key (for tests and /metrics). */
  get open(): number {
    return this.total;
  }
}

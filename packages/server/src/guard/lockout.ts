/**
 * Step-up attempt limits (issue 13, finding 3), around every approval that carries a TOTP or
 * match code. The decision is core's pure `stepUpLockout`; this module only counts:
 *
 *   const attempt = await guard.lockout.begin(operator);   // MFA_LOCKED (429, retryAfter), or one attempt reserved
 *   … the review transaction evaluates the codes …
 *   await attempt.settle('good' | 'wrong' | 'unused');
 *
 * `begin` commits a `pending` row in its own transaction, under the operator's row lock
 * (PostgreSQL `FOR UPDATE`; SQLite transactions are serial), before any code is evaluated; a
 * pending row counts as a failure. So however many guesses arrive at once, through however many
 * servers, at most `threshold` are evaluated before the lockout, and a process that dies
 * mid-review leaves its attempt counted (fail closed). `settle('wrong')` keeps it as `failed` and,
 * when it is the failure that starts a lockout, writes `mfa_locked` and a guard notice in the same
 * transaction (the attempt is marked `struck`, so parallel settles write each strike once). `settle('good')` (a code the guard accepted) clears the operator's failures;
 * `settle('unused')` (no code was judged) drops the reservation.
 */
import { CountersignError, DEFAULT_LOCKOUT, stepUpLockout, type GuardNoticeData, type LockoutConfig } from '@countersign/core';
import { SYSTEM_ACTOR, draft, type AuditWriter } from '../audit/writer.ts';
import type { Principal } from '../engine/principal.ts';
import { newId } from '../ids.ts';
import type { Queries, Store } from '../store/store.ts';

type Operator = Extract<Principal, { kind: 'operator' }>;

export interface ReservedAttempt {
  settle(outcome: 'good' | 'wrong' | 'unused'): Promise<void>;
}

/** Refusals that mean a code was judged and was wrong. */
const WRONG_CODE = new Set(['MFA_INVALID', 'MATCH_CODE_INVALID']);

export function outcomeOf(err: unknown): 'wrong' | 'unused' {
  return err instanceof CountersignError && WRONG_CODE.has(err.code) ? 'wrong' : 'unused';
}

export class StepUpLockout {
  constructor(
    private readonly store: Store,
    private readonly now: () => number,
    private readonly writer: AuditWriter,
    private readonly queueNotice: (tx: Queries, data: GuardNoticeData) => Promise<boolean>,
    private readonly noticesQueued: () => void,
    readonly config: LockoutConfig = DEFAULT_LOCKOUT,
  ) {}

  /** The operator's lockout now (for display; the check that counts is `begin`). */
  async state(operatorId: string) {
    const at = this.now();
    const rows = await this.store.credentials.attemptsSince(operatorId, at - this.config.lookbackMs);
    return stepUpLockout(rows.map((r) => ({ id: r.id, at: Number(r.at) })), at, this.config);
  }

  /** The latest `until` of this operator's `mfa_locked` entries within the lookback (0: none). */
  private async lockedUntilByTrail(tx: Queries, operatorId: string, at: number): Promise<number> {
    const entries = await tx.listAudit({ type: 'mfa_locked', from: at - this.config.lookbackMs, limit: 10_000 });
    let until = 0;
    for (const e of entries) {
      try {
        const data = JSON.parse(e.data) as { operatorId?: unknown; until?: unknown };
        if (data.operatorId === operatorId && typeof data.until === 'string') until = Math.max(until, Date.parse(data.until) || 0);
      } catch {
        // Not JSON (never written so by the lockout): not this operator's strike.
      }
    }
    return until;
  }

  async begin(by: Operator): Promise<ReservedAttempt> {
    const id = await this.store.transaction(async (tx) => {
      await tx.credentials.operator(by.operatorId, true); // the per-operator lock
      const at = this.now();
      const rows = await tx.credentials.attemptsSince(by.operatorId, at - this.config.lookbackMs);
      const state = stepUpLockout(rows.map((r) => ({ id: r.id, at: Number(r.at) })), at, this.config);
      // The signed trail too: a database writer who deletes `mfa_attempts` does not lift a lockout
      // its `mfa_locked` entry still records (deleting the entry breaks the audit chain).
      const signedUntil = await this.lockedUntilByTrail(tx, by.operatorId, at);
      if (!state.locked && signedUntil > at) {
        const retryAfter = Math.max(1, Math.ceil((signedUntil - at) / 1000));
        throw new CountersignError('MFA_LOCKED', `too many wrong step-up codes: try again in ${retryAfter} s`, { retryAfter, until: new Date(signedUntil).toISOString(), failures: state.failures });
      }
      if (state.locked) {
        throw new CountersignError('MFA_LOCKED', `too many wrong step-up codes: try again in ${state.retryAfterSeconds} s`, {
          retryAfter: state.retryAfterSeconds,
          until: new Date(state.until).toISOString(),
          failures: state.failures,
        });
      }
      const attemptId = newId('mfa', at);
      await tx.credentials.insertAttempt({ id: attemptId, operator_id: by.operatorId, at, state: 'pending' });
      return attemptId;
    });
    let settled = false;
    return {
      settle: async (outcome) => {
        if (settled) return;
        settled = true;
        try {
          await this.settle(by, id, outcome);
        } catch {
          // Left pending, the attempt still counts as a failure: failing closed is the safe side.
        }
      },
    };
  }

  private async settle(by: Operator, id: string, outcome: 'good' | 'wrong' | 'unused'): Promise<void> {
    if (outcome === 'unused') {
      await this.store.transaction((tx) => tx.credentials.deleteAttempt(id));
      return;
    }
    if (outcome === 'good') {
      // A good code drops only its own row: earlier failures and strikes age out, so a correct code cannot reset the count.
      await this.store.transaction((tx) => tx.credentials.deleteAttempt(id));
      return;
    }
    const queued = await this.store.transaction(async (tx) => {
      await tx.credentials.operator(by.operatorId, true);
      await tx.credentials.settleAttempt(id, 'failed');
      const at = this.now();
      await tx.credentials.pruneAttempts(by.operatorId, at - this.config.lookbackMs);
      const rows = await tx.credentials.attemptsSince(by.operatorId, at - this.config.lookbackMs);
      const state = stepUpLockout(rows.map((r) => ({ id: r.id, at: Number(r.at) })), at, this.config);
      // Each strike is written once: the settle that finds more strikes than rows marked `struck` marks its own.
      const struck = rows.filter((r) => r.state === 'struck').length;
      if (!state.locked || state.strikes <= struck) return false;
      await tx.credentials.settleAttempt(id, 'struck');
      const until = new Date(state.until).toISOString();
      await this.writer.append(tx, [
        draft('mfa_locked', null, SYSTEM_ACTOR, { operatorId: by.operatorId, operator: by.name, failures: state.failures, strikes: state.strikes, until, retryAfterSeconds: state.retryAfterSeconds }, at),
      ]);
      return this.queueNotice(tx, { kind: 'mfa_locked', at, operator: by.name, by: SYSTEM_ACTOR.name, until, reason: `${state.failures} wrong step-up codes in ${Math.round(this.config.windowMs / 60_000)} minutes` });
    });
    if (queued) this.noticesQueued();
  }
}

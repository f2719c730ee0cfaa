/**
 * Deliveries (engine room): channel notifications queued with their timers in the transaction
 * that causes them, each attempt the scheduler makes recorded (retried or finished, audited), the
 * delivery listing, and one-time values (signed callbacks' nonces).
 */
import { CountersignError } from '@countersign/core';
import { newId, sha256Hex } from '../ids.ts';
import { SYSTEM_ACTOR } from '../audit/writer.ts';
import { type Queries, type RequestRow } from '../store/store.ts';
import type { Principal } from './principal.ts';
import { deliveryFromRow, deliveryRows, type DeliveryRow } from '../store/timers.ts';
import { audit, requireOperator, type House } from './house.ts';

const SYSTEM = SYSTEM_ACTOR;
function encodeCursor(row: Pick<RequestRow, 'created_at' | 'id'>): string {
  return Buffer.from(`${row.created_at}:${row.id}`).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  const text = Buffer.from(cursor, 'base64url').toString();
  const match = /^(\d+):([A-Za-z0-9_]+)$/.exec(text);
  if (!match) throw new CountersignError('VALIDATION_FAILED', 'cursor is not one this server issued', { field: 'cursor' });
  return { createdAt: Number(match[1]), id: match[2] as string };
}
export class Deliveries {
  constructor(private readonly h: House) {}

  async enqueueDeliveries(tx: Queries, requestId: string, channels: readonly string[], event: string, data: unknown, at: number): Promise<void> {
    if (channels.length === 0) return;
    const rows = channels.map((channel) => deliveryRows(newId('dlv', at), requestId, channel, event, data, at));
    await tx.timers.insertDeliveries(rows.map((r) => r.delivery));
    await tx.timers.insertTimers(rows.map((r) => r.timer));
    this.h.commits.timersDue = true;
  }

  /**
   * Records one delivery attempt made by the scheduler. Success and final failure fire the
   * delivery's timer and leave an audit entry (`notified`, `delivery_failed`); a failure with
   * retries left moves the timer to the next attempt. Attempts are kept in the delivery row.
   */
  async recordDelivery(
    id: string,
    result: { ok: true; ms: number; response?: unknown } | { ok: false; ms: number; error: string; retryInMs: number | null },
  ): Promise<DeliveryRow | undefined> {
    const done = await this.h.store.transaction(async (tx) => {
      const delivery = await tx.timers.getDelivery(id);
      if (!delivery || delivery.status !== 'pending') {
        await tx.timers.takeTimer(id);
        return delivery;
      }
      const at = this.h.now();
      const attempts = delivery.attempts + 1;
      const log = [...(JSON.parse(delivery.attempt_log) as unknown[]), { at: new Date(at).toISOString(), ok: result.ok, ms: Math.round(result.ms), ...(result.ok ? {} : { error: result.error }) }];
      const common = { attempts, attempt_log: JSON.stringify(log), updated_at: at };
      const what = { deliveryId: id, channel: delivery.channel, event: delivery.event, attempts };
      if (!result.ok && result.retryInMs !== null) {
        if (!(await tx.timers.rescheduleTimer(id, at + result.retryInMs))) return delivery; // finished elsewhere
        await tx.timers.updateDelivery(id, { ...common, last_error: result.error });
        return { ...delivery, ...common, last_error: result.error };
      }
      if (!(await tx.timers.takeTimer(id))) return delivery;
      if (result.ok) {
        const patch = { ...common, status: 'delivered' as const, finished_at: at, response: result.response === undefined ? null : JSON.stringify(result.response) };
        await tx.timers.updateDelivery(id, patch);
        await this.h.writer.append(tx, [audit('notified', delivery.request_id, SYSTEM, what, at)]);
        return { ...delivery, ...patch };
      }
      const patch = { ...common, status: 'failed' as const, finished_at: at, last_error: result.error };
      await tx.timers.updateDelivery(id, patch);
      await this.h.writer.append(tx, [audit('delivery_failed', delivery.request_id, SYSTEM, { ...what, error: result.error }, at)]);
      return { ...delivery, ...patch };
    });
    return done;
  }

  async listDeliveries(by: Principal, options: { status?: string | undefined; requestId?: string | undefined; channel?: string | undefined; limit?: number | undefined; cursor?: string | undefined } = {}) {
    requireOperator(by);
    const limit = Math.min(Math.max(options.limit ?? 50, 1), 500);
    const rows = await this.h.store.timers.listDeliveries({
      status: options.status,
      requestId: options.requestId,
      channel: options.channel,
      limit: limit + 1,
      before: options.cursor ? decodeCursor(options.cursor) : undefined,
    });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { items: page.map(deliveryFromRow), nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  /**
   * Records a one-time value (a signed callback's signature) until `ttlMs` from now; false when
   * it was seen before, i.e. a replay. Shared by every process on the database.
   */
  async claimNonce(scope: string, value: string, ttlMs: number): Promise<boolean> {
    const now = this.h.now();
    return this.h.store.transaction((tx) => tx.timers.claimNonce(`${scope}:${sha256Hex(value)}`, now + ttlMs, now));
  }
}

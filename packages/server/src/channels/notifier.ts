/**
 * Sends one delivery attempt: looks up the delivery and its request, renders the one
 * notification, hands it to the channel with a timeout, and has the engine record the outcome
 * (success, a retry after exponential backoff with jitter, or failure after the last attempt).
 * The scheduler calls `deliver` for each claimed `deliver` timer; nothing here can fail the
 * request that caused the notification.
 */
import { nextRetryDelay, renderGuardNotice, renderNotification, type GuardNoticeData, type NotificationEvent } from '@countersign/core';
import type { Engine } from '../engine/engine.ts';
import type { DeliveryRow, TimerRow } from '../store/timers.ts';
import type { ChannelRegistry } from './registry.ts';
import { DeliveryError } from './types.ts';

export interface NotifierOptions {
  /** Where people open the dashboard (links in notifications). */
  reviewBase: string;
  /** Randomness for jitter, in [0, 1). */
  random?: () => number;
  /** Told after each recorded attempt (metrics): delivered, retrying, gave_up (retries spent), failed (not worth retrying). */
  onAttempt?: (channel: string, result: 'delivered' | 'retrying' | 'gave_up' | 'failed') => void;
}

function detailOf(event: string, data: Record<string, unknown>): string | null {
  if (event === 'escalated') {
    const move = `from level ${String(data['from'])} to level ${String(data['to'])}${data['role'] ? ` (${String(data['role'])})` : ''}`;
    if (data['reason'] === 'manual') return `Escalated now by ${String(data['by'] ?? '?')}, ${move}: ${String(data['text'] ?? '')}`;
    if (data['reason'] === 'cooldown') {
      const who = `${String(data['operator'] ?? '?')} is cooling down until ${String(data['cooldownUntil'] ?? '?')}, and nobody else who may approve it is free`;
      if (data['stranded'] === true) return `${who}; level ${String(data['from'])} is the last it can reach, so it stays pending (never approved by this) until a reviewer is free or its deadline.`;
      return `${who}: escalated ${move}.`;
    }
    return `No decision in time: escalated ${move}.`;
  }
  if (event === 'reassigned') {
    const to = data['to'] as { operator?: string; group?: string } | undefined;
    return `Reassigned to ${to?.operator !== undefined ? `operator ${to.operator}` : `group ${to?.group ?? '?'}`}: ${String(data['reason'] ?? '')}`;
  }
  return null;
}

export class Notifier {
  private readonly random: () => number;

  constructor(
    private readonly engine: Engine,
    private readonly channels: ChannelRegistry,
    private readonly options: NotifierOptions,
  ) {
    this.random = options.random ?? Math.random;
  }

  /** One attempt for the delivery behind `timer`. Never throws for the channel's failure; the engine records it. */
  readonly deliver = async (timer: TimerRow): Promise<void> => {
    const delivery = await this.engine.deliveryById(timer.id);
    if (!delivery || delivery.status !== 'pending') {
      await this.engine.recordDelivery(timer.id, { ok: false, ms: 0, error: 'no pending delivery', retryInMs: null });
      return;
    }
    const found = this.channels.get(delivery.channel);
    if (delivery.request_id === null) {
      if (delivery.event === 'audit.checkpoint') await this.deliverCheckpoint(timer, delivery, found);
      else await this.deliverGuard(timer, delivery, found);
      return;
    }
    const request = await this.engine.requestById(delivery.request_id);
    if ('error' in found || !request) {
      const error = 'error' in found ? found.error : `request ${delivery.request_id} is gone`;
      await this.engine.recordDelivery(timer.id, { ok: false, ms: 0, error, retryInMs: null });
      this.options.onAttempt?.(delivery.channel, 'failed');
      return;
    }
    const { channel, config } = found;
    const earlier = await this.engine.storedDeliveries({ requestId: delivery.request_id, channel: delivery.channel, status: 'delivered', limit: 50 });
    const previous = earlier
      .filter((d) => d.response !== null)
      .reverse()
      .map((d) => JSON.parse(d.response as string) as unknown);
    const data = JSON.parse(delivery.data) as Record<string, unknown>;
    const notification = renderNotification(request, delivery.event as NotificationEvent, {
      reviewBase: this.options.reviewBase,
      now: this.engine.clock(),
      detail: detailOf(delivery.event, data),
      manual: data['reason'] === 'manual',
    });
    await this.attempt(timer.id, delivery, channel, config, (signal) => channel.send({ id: delivery.id, attempt: delivery.attempts + 1, notification, previous }, signal));
  };

  /** A guard notice (no request): rendered from the delivery's data, sent by channels that carry them. */
  private async deliverGuard(timer: TimerRow, delivery: DeliveryRow, found: ReturnType<ChannelRegistry['get']>): Promise<void> {
    const sendGuard = 'error' in found ? undefined : found.channel.sendGuard?.bind(found.channel);
    if ('error' in found || !sendGuard) {
      const error = 'error' in found ? found.error : `${found.channel.type} channels do not carry guard notices`;
      await this.engine.recordDelivery(timer.id, { ok: false, ms: 0, error, retryInMs: null });
      this.options.onAttempt?.(delivery.channel, 'failed');
      return;
    }
    const notice = renderGuardNotice(JSON.parse(delivery.data) as GuardNoticeData, { reviewBase: this.options.reviewBase });
    await this.attempt(timer.id, delivery, found.channel, found.config, (signal) => sendGuard({ id: delivery.id, attempt: delivery.attempts + 1, notice }, signal));
  }

  /** A signed checkpoint for a witness webhook (audit/publish.ts). */
  private async deliverCheckpoint(timer: TimerRow, delivery: DeliveryRow, found: ReturnType<ChannelRegistry['get']>): Promise<void> {
    const sendCheckpoint = 'error' in found ? undefined : found.channel.sendCheckpoint?.bind(found.channel);
    if ('error' in found || !sendCheckpoint) {
      const error = 'error' in found ? found.error : `${found.channel.type} channels do not carry audit checkpoints`;
      await this.engine.recordDelivery(timer.id, { ok: false, ms: 0, error, retryInMs: null });
      this.options.onAttempt?.(delivery.channel, 'failed');
      return;
    }
    const data = JSON.parse(delivery.data) as { checkpoint: unknown; note: string };
    await this.attempt(timer.id, delivery, found.channel, found.config, (signal) => sendCheckpoint({ id: delivery.id, attempt: delivery.attempts + 1, data }, signal));
  }

  private async attempt(
    timerId: string,
    delivery: DeliveryRow,
    channel: { type: string; name: string },
    config: { timeoutMs: number; retry: Parameters<typeof nextRetryDelay>[1] },
    send: (signal: AbortSignal) => Promise<unknown>,
  ): Promise<void> {
    const started = performance.now();
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), config.timeoutMs);
    try {
      const response = await send(abort.signal);
      await this.engine.recordDelivery(timerId, { ok: true, ms: performance.now() - started, response });
      this.options.onAttempt?.(delivery.channel, 'delivered');
    } catch (err) {
      const error = err instanceof DeliveryError ? err.message : `${channel.type} ${channel.name}: ${(err as Error)?.message ?? String(err)}`;
      const retryable = err instanceof DeliveryError ? err.retryable : true;
      const retryInMs = retryable ? nextRetryDelay(delivery.attempts + 1, config.retry, this.random()) : null;
      await this.engine.recordDelivery(timerId, { ok: false, ms: performance.now() - started, error, retryInMs });
      this.options.onAttempt?.(delivery.channel, retryInMs !== null ? 'retrying' : retryable ? 'gave_up' : 'failed');
    } finally {
      clearTimeout(timeout);
    }
  }
}

/**
 * One interface for every notification channel. A channel turns the one rendered
 * `Notification` (core/escalation/notification.ts) into its own wire format and sends it; it
 * never decides what to say. Retrying, recording and auditing belong to the notifier and the
 * engine, so a channel is a small leaf that a conformance suite can drive against a stand-in.
 */
import type { GuardNotice, Notification } from '@countersign/core';

export interface ChannelDelivery {
  /** The delivery's id: stable across retries, so receivers can drop duplicates (webhook-id, Message-ID). */
  readonly id: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly notification: Notification;
  /** What this channel answered for earlier deliveries about the same request (e.g. Slack message ts), oldest first. */
  readonly previous: readonly unknown[];
}

/** One attempt at a guard notice (slicing alert, agent pause/resume, cool-down). */
export interface GuardDelivery {
  readonly id: string;
  readonly attempt: number;
  readonly notice: GuardNotice;
}

/** One attempt at publishing a signed checkpoint (audit/publish.ts). */
export interface CheckpointDelivery {
  readonly id: string;
  readonly attempt: number;
  readonly data: { readonly checkpoint: unknown; readonly note: string };
}

export interface Channel {
  readonly name: string;
  readonly type: ChannelType;
  /**
   * Sends a guard notice, as `send` does a notification. Only channel types listed in
   * `GUARD_CHANNEL_TYPES` may be named in the policy's `guard.notify`.
   */
  sendGuard?(delivery: GuardDelivery, signal: AbortSignal): Promise<unknown>;
  /** Sends a signed audit checkpoint to a witness (webhooks with `checkpoints: true`). */
  sendCheckpoint?(delivery: CheckpointDelivery, signal: AbortSignal): Promise<unknown>;
  /**
   * Sends one notification. Resolves with what later deliveries need to remember (or
   * undefined); throws `DeliveryError` (retryable or not) on failure. `signal` aborts at the
   * delivery timeout.
   */
  send(delivery: ChannelDelivery, signal: AbortSignal): Promise<unknown>;
  close?(): Promise<void>;
}

export const CHANNEL_TYPES = ['webhook', 'email', 'slack', 'teams', 'pagerduty', 'servicenow', 'jira'] as const;
/** Channel types that carry guard notices (`guard.notify`): each one's channel has `sendGuard`. */
export const GUARD_CHANNEL_TYPES: readonly string[] = ['webhook', 'slack', 'email', 'teams', 'pagerduty'];
export type ChannelType = (typeof CHANNEL_TYPES)[number];

/** A failed attempt. `retryable: false` (a 4xx, a bad configuration) goes straight to failed. */
export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/** HTTP status → a DeliveryError: 408, 425, 429 and 5xx are worth retrying; other 4xx are not. */
export function httpFailure(what: string, status: number, body: string): DeliveryError {
  const retryable = status >= 500 || status === 408 || status === 425 || status === 429;
  return new DeliveryError(`${what} answered HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ''}`, retryable);
}

/** A fetch failure (refused, reset, timed out) is worth retrying. */
export function networkFailure(what: string, err: unknown): DeliveryError {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  const why = e?.name === 'AbortError' || e?.name === 'TimeoutError' ? 'timed out' : (e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err));
  return new DeliveryError(`${what}: ${why}`, true);
}

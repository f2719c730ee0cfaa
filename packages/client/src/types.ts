import type { AgentGateway, ApprovalRequest, ReviewBody } from '@countersign/core';

export interface EventsOptions {
  signal?: AbortSignal | undefined;
}

/**
 * A gateway that can push state changes (SSE over HTTP, engine wake-ups when embedded).
 * `events` yields the current state first, then every change, and ends when the request is
 * closed (rejected, expired, cancelled, executed or execution_failed).
 */
export interface StreamingGateway extends AgentGateway {
  events(id: string, options?: EventsOptions): AsyncIterable<ApprovalRequest>;
}

export function isStreamingGateway(gateway: AgentGateway): gateway is StreamingGateway {
  return typeof (gateway as Partial<StreamingGateway>).events === 'function';
}

/** Options of `Countersign.embedded()`; passed on to `createEmbeddedGateway` of @countersign/server. */
export interface EmbeddedOptions {
  /** `sqlite::memory:` (default) or `sqlite:PATH`; `postgres://…` works too. */
  database?: string;
  /** Policy YAML text; the built-in default policy when absent. */
  policy?: string;
  /** The agent name requests are filed under (default `embedded-agent`). */
  agent?: string;
  /** The audit key file that signs decision receipts (default: next to the SQLite file; in memory for `sqlite::memory:`). */
  auditKey?: string;
  /** One-time hints (default `console.warn`): e.g. a request waiting for a human on `sqlite::memory:`, which only `review()` in this process can decide. */
  onWarning?: (message: string) => void;
}

/**
 * What the embedded gateway offers beyond `AgentGateway`, described structurally so the client
 * never depends on @countersign/server (import its `EmbeddedGateway` type for the full shape).
 */
export interface EmbeddedGateway extends StreamingGateway {
  /** The in-process engine (an `Engine` of @countersign/server). */
  readonly engine: unknown;
  /** Record a review as the embedded admin operator (or the given operator principal). */
  review(id: string, body: ReviewBody, as?: unknown): Promise<ApprovalRequest>;
  close(): Promise<void>;
}

/**
 * The SDK's entry point. One class over any `AgentGateway`: HTTP by default, or the embedded
 * engine, so `requestApproval` and `guard` behave the same either way.
 */
import { CountersignError, type AgentGateway, type CreateRequestBody } from '@countersign/core';
import { loadEmbeddedGateway } from './embedded.ts';
import { createGuard, type Guarded, type GuardOptions } from './guard.ts';
import { ApprovalHandle } from './handle.ts';
import { HttpGateway, type FetchLike } from './http.ts';
import { ReceiptVerifier } from './receipts.ts';
import type { EmbeddedGateway, EmbeddedOptions } from './types.ts';

interface CommonOptions {
  /** Default for `handle.decision()` / `guard()` waits, in ms. Default 15 minutes. */
  decisionTimeoutMs?: number | undefined;
  /**
   * Called when a guarded action ran (or failed) but reporting that to the server failed. The
   * action's own result or error still reaches the caller. Default: a console warning.
   */
  onReportError?: ((err: unknown, requestId: string) => void) | undefined;
  /**
   * Check every decision's signed receipt before returning or running it (default true): a
   * forged, altered or replayed approval is refused with RECEIPT_MISMATCH. Turn off only for a
   * gateway whose server does not sign decisions.
   */
  verifyReceipts?: boolean | undefined;
  /** The server's audit public key (PEM). Default: asked of the server once (`GET /v1/audit/public-key`). */
  auditPublicKey?: string | undefined;
}

export interface HttpClientOptions extends CommonOptions {
  /** Server URL. Default: COUNTERSIGN_URL, else http://127.0.0.1:8080. */
  url?: string | undefined;
  /** Agent API key. Default: COUNTERSIGN_TOKEN. */
  apiKey?: string | undefined;
  fetch?: FetchLike | undefined;
  /** Longest wait for one ordinary HTTP call, in ms. Default 30 s. */
  timeoutMs?: number | undefined;
  gateway?: undefined;
}

export interface GatewayClientOptions<G extends AgentGateway> extends CommonOptions {
  gateway: G;
}

export type CountersignOptions<G extends AgentGateway = AgentGateway> = HttpClientOptions | GatewayClientOptions<G>;

const DEFAULT_DECISION_TIMEOUT_MS = 15 * 60_000;

export class Countersign<G extends AgentGateway = AgentGateway> {
  readonly gateway: G;
  readonly #decisionTimeoutMs: number;
  readonly #onReportError: (err: unknown, requestId: string) => void;
  readonly #receipts: ReceiptVerifier | undefined;

  constructor(options: CountersignOptions<G> = {}) {
    if (options.gateway) {
      this.gateway = options.gateway;
    } else {
      const env = nodeEnv();
      const http = options as HttpClientOptions;
      this.gateway = new HttpGateway({
        url: http.url ?? env.COUNTERSIGN_URL ?? 'http://127.0.0.1:8080',
        apiKey: http.apiKey ?? env.COUNTERSIGN_TOKEN ?? '',
        fetch: http.fetch,
        timeoutMs: http.timeoutMs,
      }) as unknown as G;
    }
    const timeout = options.decisionTimeoutMs;
    this.#decisionTimeoutMs = timeout !== undefined && timeout >= 0 ? timeout : DEFAULT_DECISION_TIMEOUT_MS;
    this.#onReportError =
      options.onReportError ??
      ((err, requestId) =>
        console.warn(`countersign: could not report the execution of ${requestId}: ${err instanceof Error ? err.message : String(err)}`));
    const pinned = options.auditPublicKey;
    this.#receipts =
      options.verifyReceipts === false
        ? undefined
        : new ReceiptVerifier(async () => {
            if (pinned !== undefined) return pinned;
            if (!this.gateway.auditPublicKey) throw new Error('the gateway does not serve an audit public key; pass auditPublicKey');
            return this.gateway.auditPublicKey();
          });
  }

  /**
   * The engine in this process (SQLite file or memory), behind the same interface. Needs the
   * @countersign/server package, loaded only now.
   */
  static async embedded(options: EmbeddedOptions & CommonOptions = {}): Promise<Countersign<EmbeddedGateway>> {
    const { decisionTimeoutMs, onReportError, verifyReceipts, auditPublicKey, ...embedded } = options;
    const gateway = await loadEmbeddedGateway(embedded);
    return new Countersign({ gateway, decisionTimeoutMs, onReportError, verifyReceipts, auditPublicKey });
  }

  /**
   * Proposes an action. The handle carries the assessment and, when the policy decided at once
   * (auto-approve or block), the decision; otherwise `await handle.decision()`.
   */
  async requestApproval(body: CreateRequestBody): Promise<ApprovalHandle> {
    if (!body || typeof body !== 'object' || typeof body.action !== 'string') {
      throw new CountersignError('VALIDATION_FAILED', 'requestApproval needs a body with an action');
    }
    this.#receipts?.prefetch();
    const { request, replayed } = await this.gateway.createRequest(body);
    if (request.action !== body.action) {
      throw new CountersignError('RECEIPT_MISMATCH', `proposed ${body.action}, the server filed ${request.action}`, { requestId: request.id });
    }
    return new ApprovalHandle(this.gateway, request, { replayed, defaultTimeoutMs: this.#decisionTimeoutMs, receipts: this.#receipts });
  }

  /** A handle on an existing request (e.g. after a restart), by id. */
  async handle(id: string): Promise<ApprovalHandle> {
    const request = await this.gateway.getRequest(id);
    return new ApprovalHandle(this.gateway, request, { defaultTimeoutMs: this.#decisionTimeoutMs, receipts: this.#receipts });
  }

  /**
   * Wraps `fn` so each call asks first, waits, and runs only what was approved (the reviewer's
   * modified args or chosen alternative), then reports how it went. Rejection, expiry and
   * cancellation throw APPROVAL_REJECTED / APPROVAL_EXPIRED / APPROVAL_CANCELLED.
   */
  guard<A extends object, R>(fn: (args: A) => Promise<R>, options: GuardOptions<A, R>): Guarded<A, R> {
    return createGuard(
      {
        requestApproval: (body) => this.requestApproval(body),
        reportError: (err, requestId) => this.#onReportError(err, requestId),
      },
      fn,
      { ...options, ...(options.timeoutMs === undefined ? { timeoutMs: this.#decisionTimeoutMs } : {}) },
    );
  }

  async close(): Promise<void> {
    await this.gateway.close?.();
  }
}

function nodeEnv(): Record<string, string | undefined> {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env ?? {};
}

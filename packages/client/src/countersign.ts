/**
 * The SDK's entry point. One class over any `AgentGateway`: HTTP by default, or the embedded
 * engine, so `requestApproval` and `guard` behave the same either way.
 */
import { CountersignError, type AgentGateway, type CreateRequestBody, type Decision, type SignedCheckpoint } from '@countersign/core';
import { loadEmbeddedGateway } from './embedded.ts';
import { createGuard, type Guarded, type GuardOptions } from './guard.ts';
import { ApprovalHandle } from './handle.ts';
import { processEnv, resolveAgentKey, type Env } from './credentials.ts';
import { HttpGateway, type FetchLike, type RetryOptions } from './http.ts';
import { parseKeyPin, readPemFile, type KeyPin } from './pinning.ts';
import { ReceiptVerifier, type InclusionEvidence } from './receipts.ts';
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
  /**
   * The key receipts are checked with, pinned: PEM text, a path to a PEM file, or the key's id
   * (16 hex digits; the key is then fetched and must have that id). Default:
   * COUNTERSIGN_AUDIT_PUBLIC_KEY. With neither, the key the server serves is trusted on first
   * use (over TLS or loopback only), said once through `onWarning`, and kept for this client's
   * life: a different key later is refused.
   */
  auditPublicKey?: string | undefined;
  /** Where the SDK says something worth knowing that is not an error (trust on first use). Default: console.warn. */
  onWarning?: ((message: string) => void) | undefined;
  /** Environment to read COUNTERSIGN_* from. Default: process.env. */
  env?: Env | undefined;
}

export interface HttpClientOptions extends CommonOptions {
  /** Server URL. Default: COUNTERSIGN_URL, else http://127.0.0.1:8080. */
  url?: string | undefined;
  /**
   * Agent key (csk_…). Default: COUNTERSIGN_AGENT_KEY, else a csk_ key in COUNTERSIGN_TOKEN. An
   * operator token (cso_…) is refused wherever it comes from (UNAUTHENTICATED).
   */
  apiKey?: string | undefined;
  fetch?: FetchLike | undefined;
  /** Longest wait for one ordinary HTTP call, in ms. Default 30 s. */
  timeoutMs?: number | undefined;
  /** Retries of a create after a 503 or a dropped connection (always under one idempotency key). */
  retry?: RetryOptions | false | undefined;
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
    const env = options.env ?? processEnv();
    if (options.gateway) {
      this.gateway = options.gateway;
    } else {
      const http = options as HttpClientOptions;
      this.gateway = new HttpGateway({
        url: http.url ?? env.COUNTERSIGN_URL ?? 'http://127.0.0.1:8080',
        apiKey: resolveAgentKey(http.apiKey, env),
        fetch: http.fetch,
        timeoutMs: http.timeoutMs,
        retry: http.retry,
      }) as unknown as G;
    }
    const timeout = options.decisionTimeoutMs;
    this.#decisionTimeoutMs = timeout !== undefined && timeout >= 0 ? timeout : DEFAULT_DECISION_TIMEOUT_MS;
    this.#onReportError =
      options.onReportError ??
      ((err, requestId) =>
        console.warn(`countersign: could not report the execution of ${requestId}: ${err instanceof Error ? err.message : String(err)}`));
    const pin = parseKeyPin(options.auditPublicKey ?? env.COUNTERSIGN_AUDIT_PUBLIC_KEY);
    const warn = options.onWarning ?? ((message: string) => console.warn(message));
    this.#receipts =
      options.verifyReceipts === false
        ? undefined
        : new ReceiptVerifier(() => this.#auditKey(pin, warn), {
            ...(pin?.kind === 'keyId' ? { expectKeyId: pin.keyId } : {}),
            // Key rotation: the hand-overs, followed only from the pinned (or first-used) key.
            ...(this.gateway.auditKeyChain ? { chain: () => this.gateway.auditKeyChain!() } : {}),
          });
  }

  #warnedTofu = false;

  /** The PEM that checks receipts: the pinned one, or the server's (checked against a pinned id, or trusted on first use). */
  async #auditKey(pin: KeyPin | undefined, warn: (message: string) => void): Promise<string> {
    if (pin?.kind === 'pem') return pin.pem;
    if (pin?.kind === 'path') return readPemFile(pin.path);
    if (!this.gateway.auditPublicKey) throw new Error('the gateway does not serve an audit public key; pass auditPublicKey');
    const pem = await this.gateway.auditPublicKey();
    if (pin === undefined && !this.#warnedTofu && !isInProcess(this.gateway)) {
      this.#warnedTofu = true;
      const where = this.gateway instanceof HttpGateway ? this.gateway.url : 'the gateway';
      warn(
        `countersign: no audit public key is pinned, so decision receipts are checked with the key ${where} served on first use; ` +
          'this client keeps that key and refuses any other. Pin it with auditPublicKey or COUNTERSIGN_AUDIT_PUBLIC_KEY (PEM, a file, or its key id).',
      );
    }
    return pem;
  }

  /**
   * The engine in this process (SQLite file or memory), behind the same interface. Needs the
   * @countersign/server package, loaded only now.
   */
  static async embedded(options: EmbeddedOptions & CommonOptions = {}): Promise<Countersign<EmbeddedGateway>> {
    const { decisionTimeoutMs, onReportError, verifyReceipts, auditPublicKey, onWarning, env, ...embedded } = options;
    const gateway = await loadEmbeddedGateway(embedded);
    IN_PROCESS.add(gateway);
    return new Countersign({ gateway, decisionTimeoutMs, onReportError, verifyReceipts, auditPublicKey, onWarning, env });
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

  /**
   * Checks that a decision is included in a signed checkpoint (e.g. a later one a witness
   * holds), with the server's inclusion proof of its `approved` / `rejected` entry; throws
   * RECEIPT_MISMATCH otherwise. Uses the same pinned key as receipts. Optional: the receipt
   * check alone already guards what runs.
   */
  async verifyInclusion(requestId: string, decision: Decision, evidence: { checkpoint: SignedCheckpoint; proof: InclusionEvidence }): Promise<void> {
    if (!this.#receipts) throw new CountersignError('VALIDATION_FAILED', 'receipt verification is off (verifyReceipts: false)');
    await this.#receipts.checkIncluded(requestId, decision, evidence);
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

/** Gateways whose key comes from this very process (the embedded engine): nothing on a path to trust. */
const IN_PROCESS = new WeakSet<object>();

function isInProcess(gateway: AgentGateway): boolean {
  return IN_PROCESS.has(gateway);
}

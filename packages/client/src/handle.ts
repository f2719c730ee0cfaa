/**
 * One proposed action, as the agent sees it: its latest state, a push-based wait for the
 * decision (long-poll in chunks, never a sleep loop), its event stream, and the two things the
 * agent may do next (report the execution, or withdraw it).
 */
import {
  CountersignError,
  type AgentGateway,
  type ApprovalRequest,
  type Assessment,
  type Decision,
  type ExecutionBody,
  type JsonObject,
  type RequestStatus,
} from '@countersign/core';
import { retryAfterMs, sleep } from './http.ts';
import type { ReceiptVerifier } from './receipts.ts';
import { isStreamingGateway, type EventsOptions } from './types.ts';

export interface WaitOptions {
  /** Give up (WAIT_TIMEOUT) when still pending after this many ms. Default: the client's `decisionTimeoutMs`. */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** Longest single long-poll; the wait is re-issued in chunks of at most this until the overall timeout. */
export const LONG_POLL_CHUNK_SECONDS = 60;

export class ApprovalHandle {
  #request: ApprovalRequest;
  readonly #gateway: AgentGateway;
  readonly #defaultTimeoutMs: number;
  readonly #receipts: ReceiptVerifier | undefined;
  /** True when an idempotency key matched an earlier request and this is that request. */
  readonly replayed: boolean;

  constructor(
    gateway: AgentGateway,
    request: ApprovalRequest,
    options: { replayed?: boolean; defaultTimeoutMs: number; receipts?: ReceiptVerifier | undefined },
  ) {
    this.#gateway = gateway;
    this.#request = request;
    this.replayed = options.replayed ?? false;
    this.#defaultTimeoutMs = options.defaultTimeoutMs;
    this.#receipts = options.receipts;
  }

  get id(): string {
    return this.#request.id;
  }

  /** The latest state seen (updated by every call on this handle). */
  get request(): ApprovalRequest {
    return this.#request;
  }

  get assessment(): Assessment {
    return this.#request.assessment;
  }

  get status(): RequestStatus {
    return this.#request.status;
  }

  /** True once the request has left `pending` (decided by policy, reviewers, timeout or the agent). */
  get decided(): boolean {
    return this.#request.status !== 'pending';
  }

  /** Re-reads the request. */
  async refresh(options: { signal?: AbortSignal | undefined } = {}): Promise<ApprovalRequest> {
    return this.#update(await this.#gateway.getRequest(this.id, options.signal ? { signal: options.signal } : {}));
  }

  /**
   * Waits until the request leaves `pending` and returns it, whatever the outcome. Uses the
   * long-poll (`waitSeconds` chunks of at most 60 s), so it wakes as soon as the decision is
   * committed. Throws WAIT_TIMEOUT when still pending at the timeout. Transient network errors
   * are retried with back-off inside the timeout.
   */
  async wait(options: WaitOptions = {}): Promise<ApprovalRequest> {
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    const { signal } = options;
    const started = Date.now();
    const deadline = started + Math.max(0, timeoutMs);
    let failures = 0;
    while (this.#request.status === 'pending') {
      signal?.throwIfAborted();
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      // Whole seconds that end before the deadline, so the server answers in time with the latest state.
      const waitSeconds = Math.min(LONG_POLL_CHUNK_SECONDS, Math.max(1, Math.floor(remaining / 1000)));
      const stop = new AbortController();
      const timer = remaining < waitSeconds * 1000 ? setTimeout(() => stop.abort(new Error('deadline')), remaining) : undefined;
      const onAbort = () => stop.abort(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        this.#update(await this.#gateway.getRequest(this.id, { waitSeconds, signal: stop.signal }));
        failures = 0;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (stop.signal.aborted) break; // our own deadline
        if (!isTransient(err) || Date.now() >= deadline) throw err;
        failures++;
        // A server at its cap on waits says when to come back (RATE_LIMITED, retryAfter): not sooner.
        const floor = retryAfterMs(err);
        await sleep(Math.max(0, Math.min(Math.max(floor, Math.min(5_000, 250 * 2 ** (failures - 1))), deadline - Date.now())), signal);
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
    }
    if (this.#request.status === 'pending') {
      throw new CountersignError(
        'WAIT_TIMEOUT',
        `no decision on request ${this.id} (${this.#request.action}) within ${timeoutMs} ms; it is still pending`,
        { requestId: this.id, timeoutMs, status: this.#request.status },
      );
    }
    return this.#request;
  }

  /**
   * The decision, once there is one. Resolves with it when approved (as asked, with modified
   * args, or an alternative: see `decision.action`, `.args`, `.alternative`); throws
   * APPROVAL_REJECTED (with the reviewer's reason), APPROVAL_EXPIRED, APPROVAL_CANCELLED, or
   * WAIT_TIMEOUT when still pending at `timeoutMs`.
   */
  async decision(options: WaitOptions = {}): Promise<Decision> {
    const decision = outcomeOf(await this.wait(options));
    await this.checkReceipt(decision);
    return decision;
  }

  /**
   * Checks the decision's signed receipt (receipts.ts), and that it covers running `runs`;
   * throws RECEIPT_MISMATCH otherwise. `decision()` and `guard()` call it before returning or
   * running anything; it does nothing when the client was made with `verifyReceipts: false`.
   */
  async checkReceipt(decision: Decision, runs?: { action: string; args: JsonObject }): Promise<void> {
    await this.#receipts?.check(this.id, decision, runs);
  }

  /**
   * The request's states as they change: the current one first, then each change, ending when
   * the request is closed (or when you `break`). Over HTTP these are server-sent events.
   */
  async *events(options: EventsOptions = {}): AsyncGenerator<ApprovalRequest, void, undefined> {
    const source = isStreamingGateway(this.#gateway)
      ? this.#gateway.events(this.id, options)
      : pollEvents(this.#gateway, this.id, options.signal);
    for await (const state of source) {
      yield this.#update(state);
    }
  }

  /**
   * Claims the approval, once, before anything runs (`{status: started, receipt}` → `executing`).
   * The server refuses a second claim (ALREADY_EXECUTED), a claim after the approval's
   * `expiresAt` (RECEIPT_EXPIRED: file the request again) and a receipt that is not this
   * approval's (RECEIPT_MISMATCH); whoever is refused must not run the action.
   */
  async claim(decision: Decision): Promise<ApprovalRequest> {
    const receipt = decision.receipt;
    if (!receipt) {
      throw new CountersignError('RECEIPT_MISMATCH', `the decision on ${this.id} carries no signed receipt to claim it with; refusing to run`, { requestId: this.id });
    }
    const answer = await this.#gateway.reportExecution(this.id, { status: 'started', receipt });
    // Only an answer that says this request is now `executing` is a claim: any other 2xx (an old
    // proxy, a replayed GET, a gateway that ignores claims) must not let the action run.
    if (answer.id !== this.id || answer.status !== 'executing') {
      throw new CountersignError('RECEIPT_MISMATCH', `the claim of ${this.id} was answered with ${String(answer.id)} in status ${String(answer.status)}, not executing; refusing to run`, {
        requestId: this.id,
        received: String(answer.id),
        status: String(answer.status),
      });
    }
    return this.#update(answer);
  }

  /**
   * Runs `fn` with the approved decision, the whole contract in one call: wait for the decision
   * (rejections throw), check its receipt against what `fn` will run (`runs`, default the
   * decision's own action and args), claim it once, run, and report succeeded or failed. A
   * refused check or claim throws before `fn` is called.
   */
  async run<R>(fn: (decision: Decision) => Promise<R>, options: WaitOptions & { runs?: { action: string; args: JsonObject } } = {}): Promise<R> {
    const decision = outcomeOf(await this.wait(options));
    await this.checkReceipt(decision, options.runs ?? (decision.action !== null && decision.args !== null ? { action: decision.action, args: decision.args } : undefined));
    await this.claim(decision);
    let result: R;
    try {
      result = await fn(decision);
    } catch (err) {
      await this.reportExecution({ status: 'failed', error: (err instanceof Error ? err.message : String(err)).slice(0, 2000) || 'failed' }).catch(() => {});
      throw err;
    }
    await this.reportExecution({ status: 'succeeded' }).catch(() => {});
    return result;
  }

  /** Closes the record: how the claimed action ran (`{status: succeeded | failed}`); claim it first. */
  async reportExecution(body: ExecutionBody): Promise<ApprovalRequest> {
    return this.#update(await this.#gateway.reportExecution(this.id, body));
  }

  /** Withdraws a pending request. */
  async cancel(reason?: string): Promise<ApprovalRequest> {
    return this.#update(await this.#gateway.cancel(this.id, reason === undefined ? {} : { reason }));
  }

  #update(request: ApprovalRequest): ApprovalRequest {
    if (request.id !== this.id) {
      throw new CountersignError('RECEIPT_MISMATCH', `expected request ${this.id}, got ${request.id}`, {
        expected: this.id,
        received: request.id,
      });
    }
    // Never step back to an older state (an event that arrives after a newer long-poll answer);
    // within one millisecond, the later stage of the lifecycle wins.
    const current = this.#request;
    if (request.updatedAt > current.updatedAt || (request.updatedAt === current.updatedAt && stage(request.status) >= stage(current.status))) {
      this.#request = request;
    }
    return this.#request;
  }
}

function stage(status: RequestStatus): number {
  return status === 'pending' ? 0 : status === 'approved' ? 1 : 2;
}

/**
 * The decision of a decided request, or the error that stands for it. Approved requests
 * (including executed / execution_failed ones) resolve with their decision.
 */
export function outcomeOf(request: ApprovalRequest): Decision {
  const decision = request.decision;
  if (request.status === 'pending') {
    throw new CountersignError('WAIT_TIMEOUT', `request ${request.id} is still pending`, { requestId: request.id, status: request.status });
  }
  if (!decision) {
    throw new CountersignError('INTERNAL', `request ${request.id} is ${request.status} but carries no decision`, { requestId: request.id });
  }
  const details = { requestId: request.id, decision };
  switch (decision.outcome) {
    case 'approved':
      return decision;
    case 'rejected': {
      const reason = decision.reason ?? 'no reason given';
      const by = decision.decidedBy === 'policy' ? 'blocked by policy' : `rejected by ${names(decision) || 'a reviewer'}`;
      return fail('APPROVAL_REJECTED', `${request.action} was ${by}: ${reason}`, details);
    }
    case 'expired':
      return fail('APPROVAL_EXPIRED', `${request.action} expired without approval: ${decision.reason ?? 'no decision before the deadline'}`, details);
    case 'cancelled':
      return fail('APPROVAL_CANCELLED', `${request.action} was cancelled${decision.reason ? `: ${decision.reason}` : ''}`, details);
  }
}

function fail(code: 'APPROVAL_REJECTED' | 'APPROVAL_EXPIRED' | 'APPROVAL_CANCELLED', message: string, details: unknown): never {
  throw new CountersignError(code, message, details);
}

function names(decision: Decision): string {
  return decision.deciders.map((d) => d.name).join(', ');
}

/** Worth asking again within the wait: the network, the store, or the server's cap on waits (429). */
function isTransient(err: unknown): boolean {
  return err instanceof CountersignError && (err.code === 'NETWORK_ERROR' || err.code === 'STORE_UNAVAILABLE' || err.code === 'RATE_LIMITED');
}

/** For gateways without a push stream: the current state, then one long-poll until decided. */
async function* pollEvents(gateway: AgentGateway, id: string, signal?: AbortSignal): AsyncGenerator<ApprovalRequest, void, undefined> {
  let state = await gateway.getRequest(id, signal ? { signal } : {});
  yield state;
  while (state.status === 'pending') {
    const next = await gateway.getRequest(id, { waitSeconds: LONG_POLL_CHUNK_SECONDS, ...(signal ? { signal } : {}) });
    if (next.updatedAt !== state.updatedAt || next.status !== state.status) yield next;
    state = next;
  }
}

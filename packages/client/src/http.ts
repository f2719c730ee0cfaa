/**
 * The HTTP transport: `AgentGateway` over the Countersign REST API (DESIGN.md §4), plus
 * server-sent events. Every failure leaves as a `CountersignError`: the server's error body is
 * turned back into the same code, and anything that never reached the server is NETWORK_ERROR.
 */
import {
  ApprovalRequest,
  CountersignError,
  ERROR_CODES,
  isTerminal,
  type CancelBody,
  type CreateRequestBody,
  type ErrorCode,
  type ExecutionBody,
} from '@countersign/core';
import type { SignedHandover } from '@countersign/core';
import { isTrustedKeyTransport } from './pinning.ts';
import { parseEventStream } from './sse.ts';
import type { EventsOptions, StreamingGateway } from './types.ts';

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface HttpGatewayOptions {
  /** Base URL of the server, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** An agent API key (csk_…). (`Countersign` refuses operator tokens; this transport does not judge.) */
  apiKey: string;
  /** A fetch implementation (default: the global one). */
  fetch?: FetchLike | undefined;
  /** Longest wait for one ordinary call, in ms (long-polls get their wait on top). Default 30 s. */
  timeoutMs?: number | undefined;
  /** An SSE connection silent for this long (not even a keep-alive) is reopened. Default 60 s. */
  sseIdleTimeoutMs?: number | undefined;
  /** How creating a request is retried after a 503 or a dropped connection; `false` never retries. */
  retry?: RetryOptions | false | undefined;
}

/**
 * Retries of `POST /v1/requests`. Every attempt carries the same idempotency key (the caller's,
 * or one made here when the caller gave none), so an attempt whose answer was lost after the
 * server committed is answered with that same request on the retry: never a duplicate.
 */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 4. */
  attempts?: number | undefined;
  /** Back-off before retry n is a random time in [0, min(maxDelayMs, baseDelayMs · 2^(n-1))] ("full jitter"). Default 200 ms. */
  baseDelayMs?: number | undefined;
  /** Default 5 s. */
  maxDelayMs?: number | undefined;
  /** The jitter's source, in [0, 1). Default Math.random (jitter spreads retries; it protects nothing). */
  random?: (() => number) | undefined;
}

/** Prefix of the idempotency keys the SDK makes itself, so they are told apart from a caller's in the record. */
export const AUTO_IDEMPOTENCY_PREFIX = 'sdk-auto-';

/** The server's own limit for `?waitSeconds=`. */
export const MAX_WAIT_SECONDS = 300;

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

export class HttpGateway implements StreamingGateway {
  readonly url: string;
  readonly timeoutMs: number;
  private readonly apiKey: string;
  private readonly fetchImpl: FetchLike;
  private readonly sseIdleTimeoutMs: number;
  private readonly retry: Required<Omit<RetryOptions, 'random'>> & { random: () => number };

  constructor(options: HttpGatewayOptions) {
    if (!options.url) throw new CountersignError('VALIDATION_FAILED', 'no server url: pass url or set COUNTERSIGN_URL');
    let parsed: URL;
    try {
      parsed = new URL(options.url);
    } catch {
      throw new CountersignError('VALIDATION_FAILED', `server url "${options.url}" is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new CountersignError('VALIDATION_FAILED', `server url must be http: or https: (got ${parsed.protocol})`);
    }
    if (!options.apiKey) {
      throw new CountersignError('UNAUTHENTICATED', 'no API key: pass apiKey or set COUNTERSIGN_AGENT_KEY');
    }
    this.url = options.url.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    const fetchImpl = options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!fetchImpl) throw new CountersignError('VALIDATION_FAILED', 'no fetch implementation available: pass options.fetch');
    this.fetchImpl = options.fetch ? options.fetch : (input, init) => globalThis.fetch(input, init);
    this.timeoutMs = positive(options.timeoutMs, 30_000);
    this.sseIdleTimeoutMs = positive(options.sseIdleTimeoutMs, 60_000);
    const retry = options.retry === false ? { attempts: 1 } : (options.retry ?? {});
    this.retry = {
      attempts: Math.max(1, Math.min(10, Math.floor(positive(retry.attempts, 4)))),
      baseDelayMs: positive(retry.baseDelayMs, 200),
      maxDelayMs: positive(retry.maxDelayMs, 5_000),
      random: retry.random ?? Math.random,
    };
  }

  /**
   * Files a request. A 503 or a failure to get an answer (refused, dropped or timed-out
   * connection) is retried with back-off under one idempotency key, made here when the body has
   * none. `replayed` is true only when the caller's own key matched an earlier request: a
   * retry answered with what this call's first attempt committed is not a replay to the caller.
   */
  async createRequest(body: CreateRequestBody): Promise<{ request: ApprovalRequest; replayed: boolean }> {
    const auto = body.idempotencyKey === undefined;
    const sent: CreateRequestBody = auto ? { ...body, idempotencyKey: newIdempotencyKey() } : body;
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.retry.attempts;
      let answer: { status: number; text: string };
      try {
        answer = await this.send('POST', '/v1/requests', { body: sent });
      } catch (err) {
        if (last || !(err instanceof CountersignError) || err.code !== 'NETWORK_ERROR') throw err;
        await sleep(this.backoff(attempt, undefined));
        continue;
      }
      // 503 (store unavailable) and 429 (the agent's rate limit): the same key, after the server's retryAfter.
      if ((answer.status === 503 || answer.status === 429) && !last) {
        await sleep(this.backoff(attempt, errorFromResponse(answer.status, answer.text)));
        continue;
      }
      if (answer.status < 200 || answer.status > 299) throw errorFromResponse(answer.status, answer.text);
      const request = parseRequest(parseJson(answer.text));
      // The request filed always carries a key, and the server echoes it: an answer without it, or
      // with another, is some other request (a replayed or forged answer), never this one.
      if (request.idempotencyKey !== sent.idempotencyKey) {
        throw new CountersignError('RECEIPT_MISMATCH', `filed with idempotency key ${String(sent.idempotencyKey)}, the server answered with another request (key ${String(request.idempotencyKey)})`, {
          requestId: request.id,
        });
      }
      return { request, replayed: answer.status === 200 && !auto };
    }
  }

  /** Full-jitter back-off before retry `attempt`; a server's `retryAfter` (seconds) is a floor, within the cap. */
  private backoff(attempt: number, err: CountersignError | undefined): number {
    const ceiling = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    const jitter = Math.floor(this.retry.random() * ceiling);
    return Math.max(Math.min(this.retry.maxDelayMs, retryAfterMs(err)), jitter);
  }

  async getRequest(id: string, options: { waitSeconds?: number; signal?: AbortSignal } = {}): Promise<ApprovalRequest> {
    const wait = Math.min(MAX_WAIT_SECONDS, Math.max(0, Math.floor(options.waitSeconds ?? 0)));
    const path = `/v1/requests/${encodeURIComponent(id)}${wait > 0 ? `?waitSeconds=${wait}` : ''}`;
    const { json } = await this.call('GET', path, { signal: options.signal, timeoutMs: this.timeoutMs + wait * 1000 });
    return expectId(parseRequest(json), id);
  }

  async reportExecution(id: string, body: ExecutionBody): Promise<ApprovalRequest> {
    const { json } = await this.call('POST', `/v1/requests/${encodeURIComponent(id)}/execution`, { body });
    return expectId(parseRequest(json), id);
  }

  async cancel(id: string, body: CancelBody = {}): Promise<ApprovalRequest> {
    const { json } = await this.call('POST', `/v1/requests/${encodeURIComponent(id)}/cancel`, { body });
    return expectId(parseRequest(json), id);
  }

  /**
   * The request's states as server-sent events: the current state first, then each change,
   * until the request is closed. A dropped or silent connection is reopened (the server sends
   * the current state again on connect; repeats are skipped).
   */
  async *events(id: string, options: EventsOptions = {}): AsyncGenerator<ApprovalRequest, void, undefined> {
    const { signal } = options;
    const url = `${this.url}/v1/requests/${encodeURIComponent(id)}/events`;
    let last: ApprovalRequest | undefined;
    let failures = 0;
    for (;;) {
      signal?.throwIfAborted();
      const controller = new AbortController();
      const onAbort = () => controller.abort(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = (ms: number, why: string) => {
        clearTimeout(timer);
        timer = setTimeout(() => controller.abort(new CountersignError('NETWORK_ERROR', why)), ms);
      };
      try {
        arm(this.timeoutMs, `GET ${url}: no response within ${this.timeoutMs} ms`);
        let response: Response;
        try {
          response = await this.fetchImpl(url, {
            method: 'GET',
            headers: { authorization: `Bearer ${this.apiKey}`, accept: 'text/event-stream' },
            signal: controller.signal,
          });
        } catch (err) {
          throw networkError('GET', url, err, controller.signal);
        }
        if (!response.ok) {
          const text = await response.text().catch(() => '');
          throw errorFromResponse(response.status, text);
        }
        if (!response.body) throw new CountersignError('INTERNAL', 'the server sent an event stream without a body');
        const idle = `GET ${url}: the event stream was silent for ${this.sseIdleTimeoutMs} ms`;
        arm(this.sseIdleTimeoutMs, idle);
        try {
          for await (const event of parseEventStream(response.body, () => arm(this.sseIdleTimeoutMs, idle))) {
            if (event.event === 'end') return;
            if (event.event !== 'state') continue;
            const request = expectId(parseRequest(parseJson(event.data)), id);
            failures = 0;
            if (!last || request.updatedAt !== last.updatedAt || request.status !== last.status) {
              last = request;
              yield request;
            }
          }
        } catch (err) {
          if (err instanceof CountersignError) throw err;
          throw networkError('GET', url, err, controller.signal);
        }
        // The stream ended without "end": the connection dropped. Reconnect unless we are done.
        if (last && isTerminal(last.status)) return;
        throw new CountersignError('NETWORK_ERROR', `GET ${url}: the event stream closed early`);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const again = err instanceof CountersignError && (err.code === 'NETWORK_ERROR' || err.code === 'RATE_LIMITED' || err.code === 'STORE_UNAVAILABLE');
        if (!again || ++failures > 5) throw err;
        await sleep(Math.max(retryAfterMs(err), Math.min(5_000, 250 * 2 ** (failures - 1))), signal);
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        controller.abort();
      }
    }
  }

  /**
   * The audit public key (PEM) that signs decision receipts: `GET /v1/audit/public-key`. Only
   * over TLS or to this machine: over plain http to another host, whoever is on the path could
   * answer with their own key and then sign approvals with it. Pin the key instead
   * (`auditPublicKey` / COUNTERSIGN_AUDIT_PUBLIC_KEY).
   */
  async auditPublicKey(): Promise<string> {
    const url = `${this.url}/v1/audit/public-key`;
    if (!isTrustedKeyTransport(url)) {
      throw new CountersignError(
        'RECEIPT_MISMATCH',
        `refusing to fetch the audit public key over plain http from ${new URL(url).host}: anyone on the path could substitute their own; ` +
          'use https, or pin the key (auditPublicKey option or COUNTERSIGN_AUDIT_PUBLIC_KEY: PEM text, a file, or its key id)',
        { url },
      );
    }
    let response: Response;
    let text: string;
    try {
      response = await this.fetchImpl(url, { method: 'GET', headers: { authorization: `Bearer ${this.apiKey}` }, signal: AbortSignal.timeout(this.timeoutMs) });
      text = await response.text();
    } catch (err) {
      throw networkError('GET', url, err, new AbortController().signal);
    }
    if (!response.ok) throw errorFromResponse(response.status, text);
    return text;
  }

  /**
   * The audit key's hand-overs: `GET /v1/audit/keys`. Any transport: the statements are signed,
   * and the SDK follows them only from the key it pinned (client/src/key-chain.ts).
   */
  async auditKeyChain(): Promise<{ current: string; handovers: SignedHandover[] }> {
    const { json } = await this.call('GET', '/v1/audit/keys');
    return json as { current: string; handovers: SignedHandover[] };
  }

    async close(): Promise<void> {}

  private async call(
    method: 'GET' | 'POST',
    path: string,
    options: { body?: unknown; signal?: AbortSignal | undefined; timeoutMs?: number } = {},
  ): Promise<{ status: number; json: unknown }> {
    const { status, text } = await this.send(method, path, options);
    if (status < 200 || status > 299) throw errorFromResponse(status, text);
    return { status, json: parseJson(text) };
  }

  /** One HTTP exchange: the status and body text, or NETWORK_ERROR when no answer arrived. */
  private async send(
    method: 'GET' | 'POST',
    path: string,
    options: { body?: unknown; signal?: AbortSignal | undefined; timeoutMs?: number } = {},
  ): Promise<{ status: number; text: string }> {
    const url = `${this.url}${path}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new CountersignError('NETWORK_ERROR', `${method} ${url}: no response within ${timeoutMs} ms`, { timeoutMs })),
      timeoutMs,
    );
    const onAbort = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      options.signal?.throwIfAborted();
      const headers: Record<string, string> = { authorization: `Bearer ${this.apiKey}`, accept: 'application/json' };
      if (options.body !== undefined) headers['content-type'] = 'application/json';
      let response: Response;
      let text: string;
      try {
        response = await this.fetchImpl(url, {
          method,
          headers,
          ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
          signal: controller.signal,
        });
        text = await response.text();
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        throw networkError(method, url, err, controller.signal);
      }
      return { status: response.status, text };
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }
}

/**
 * A non-2xx response as a `CountersignError`: the server's `{"error": {code, message, details}}`
 * keeps its code (an unknown code becomes INTERNAL with the original in details); a body in
 * another shape (a proxy's error page) is classified by status.
 */
export function errorFromResponse(status: number, text: string): CountersignError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const error = isRecord(parsed) && isRecord(parsed.error) ? parsed.error : undefined;
  if (error && typeof error.code === 'string' && typeof error.message === 'string') {
    if (KNOWN_CODES.has(error.code)) {
      return new CountersignError(error.code as ErrorCode, error.message, error.details);
    }
    return new CountersignError('INTERNAL', error.message, {
      code: error.code,
      status,
      ...(error.details !== undefined ? { details: error.details } : {}),
    });
  }
  const snippet = text.replace(/\s+/g, ' ').trim().slice(0, 200);
  const code: ErrorCode =
    status === 401
      ? 'UNAUTHENTICATED'
      : status === 403
        ? 'FORBIDDEN'
        : status === 404
          ? 'NOT_FOUND'
          : status === 413
            ? 'BODY_TOO_LARGE'
            : status === 502 || status === 503 || status === 504
              ? 'NETWORK_ERROR'
              : 'INTERNAL';
  return new CountersignError(code, `HTTP ${status} without a Countersign error body${snippet ? `: ${snippet}` : ''}`, {
    status,
    ...(snippet ? { body: snippet } : {}),
  });
}

function networkError(method: string, url: string, err: unknown, signal: AbortSignal): CountersignError {
  if (signal.aborted && signal.reason instanceof CountersignError) return signal.reason;
  if (err instanceof CountersignError) return err;
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const detail = [err instanceof Error ? err.message : String(err), typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '']
    .filter(Boolean)
    .join(': ');
  return new CountersignError('NETWORK_ERROR', `${method} ${url} failed: ${detail}`, {
    ...(typeof cause?.code === 'string' ? { cause: cause.code } : {}),
  });
}

function newIdempotencyKey(): string {
  const uuid = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto?.randomUUID?.();
  if (!uuid) throw new CountersignError('INTERNAL', 'this runtime has no crypto.randomUUID to make an idempotency key; pass idempotencyKey');
  return `${AUTO_IDEMPOTENCY_PREFIX}${uuid}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new CountersignError('INTERNAL', 'the server sent a response that is not JSON', { body: text.slice(0, 200) });
  }
}

/** Responses are checked against the contract: what decides execution must have the right shape. */
export function parseRequest(json: unknown): ApprovalRequest {
  const result = ApprovalRequest.safeParse(json);
  if (!result.success) {
    throw new CountersignError('INTERNAL', 'the server sent a request in an unexpected shape', {
      issues: result.error.issues.slice(0, 5).map((i) => ({ path: i.path.join('.'), message: i.message })),
    });
  }
  return result.data;
}

function expectId(request: ApprovalRequest, id: string): ApprovalRequest {
  if (request.id !== id) {
    throw new CountersignError('RECEIPT_MISMATCH', `asked for request ${id}, the server answered with ${request.id}`, {
      expected: id,
      received: request.id,
    });
  }
  return request;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The server's `details.retryAfter` (seconds) in ms, at most five minutes; 0 when it gave none. */
export function retryAfterMs(err: unknown): number {
  const after = err instanceof CountersignError ? (err.details as { retryAfter?: unknown } | undefined)?.retryAfter : undefined;
  return typeof after === 'number' && Number.isFinite(after) && after > 0 ? Math.min(300_000, after * 1000) : 0;
}

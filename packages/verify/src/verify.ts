/**
 * `verifyAndClaim`: what the service that performs an action does before it performs it. An
 * agent that skips its own SDK can still send the executor anything; the executor runs the
 * action only if
 *
 *   1. the receipt is signed by the pinned Countersign audit key (PEM, or a key id checked
 *      against the key the server serves) — never a key trusted because someone served it;
 *   2. it records an approval (version 2: with a nonce and an expiry) whose payload hash is the
 *      SHA-256 of the canonical JSON of exactly the `{action, args}` about to run;
 *   3. it has not expired; and
 *   4. the server accepts the claim (`POST /v1/requests/:id/execution {status: started,
 *      receipt}`), which it does once: a replay is ALREADY_EXECUTED, however many executors race.
 *
 * Anything else throws a `CountersignError` (RECEIPT_MISMATCH, RECEIPT_EXPIRED,
 * ALREADY_EXECUTED, …) and the action must not run. WebCrypto only (Ed25519, SHA-256).
 */
import {
  CountersignError,
  ERROR_CODES,
  Receipt,
  fromBase64,
  payloadKey,
  receiptMessage,
  toHex,
  utf8,
  type ApprovalRequest,
  type ErrorCode,
  type JsonObject,
  type ReceiptBody,
} from '@countersign/core';

export type FetchLike = (input: string, init: { method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal }) => Promise<Response>;

export interface VerifyOptions {
  /** Where Countersign is (`COUNTERSIGN_URL`). */
  serverUrl: string;
  /** The agent key the claim is made with: the key of the agent that filed the request (`csk_…`). */
  agentKey: string;
  /** The pinned audit public key as PEM (`countersign audit` prints it; `GET /v1/audit/public-key`). */
  publicKey?: string | undefined;
  /** Or its key id (16 hex digits): the key is fetched from the server and refused unless it has this id. */
  keyId?: string | undefined;
  fetch?: FetchLike | undefined;
  /** The clock the expiry is checked against (ms); default `Date.now`. The server checks it again. */
  now?: (() => number) | undefined;
  /** How long one call to the server may take (ms); default 10 s. */
  timeoutMs?: number | undefined;
}

/** What is about to run. */
export interface Payload {
  action: string;
  args: JsonObject;
}

/** A won claim: the approval is `executing`; report how the action ran, once. */
export interface Claim {
  requestId: string;
  receipt: Receipt;
  /** The request as the server returned it after the claim. */
  request: ApprovalRequest;
  report(outcome: { status: 'succeeded' | 'failed'; result?: unknown; error?: string }): Promise<ApprovalRequest>;
}

interface Subtle {
  digest(algorithm: 'SHA-256', data: Uint8Array): Promise<ArrayBuffer>;
  importKey(format: 'spki', keyData: Uint8Array, algorithm: { name: 'Ed25519' }, extractable: false, usages: ['verify']): Promise<unknown>;
  verify(algorithm: { name: 'Ed25519' }, key: unknown, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
}

const KEY_ID = /^[0-9a-f]{16}$/;
const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

function subtle(): Subtle {
  const s = (globalThis as { crypto?: { subtle?: Subtle } }).crypto?.subtle;
  if (!s) throw new CountersignError('RECEIPT_MISMATCH', 'this runtime has no WebCrypto, so receipts cannot be checked; refusing to run');
  return s;
}

const sha256 = async (bytes: Uint8Array) => new Uint8Array(await subtle().digest('SHA-256', bytes));

function spkiOf(pem: string): Uint8Array {
  const match = /-----BEGIN PUBLIC KEY-----([\s\S]*?)-----END PUBLIC KEY-----/.exec(pem);
  const der = match ? fromBase64(match[1]!.replace(/\s+/g, '')) : null;
  if (!der) throw new CountersignError('VALIDATION_FAILED', 'the pinned audit public key is not a PEM "PUBLIC KEY"');
  return der;
}

const mismatch = (requestId: string | null, why: string): CountersignError =>
  new CountersignError('RECEIPT_MISMATCH', `receipt${requestId ? ` for ${requestId}` : ''}: ${why}; refusing to run`, requestId ? { requestId } : undefined);

/**
 * Verifies the receipt for `payload` and claims the approval once. Throws, and nothing may run,
 * unless every check holds and the server accepted the claim.
 *
 *   const claim = await verifyAndClaim({ receipt, payload: { action: 'wire_transfer', args }, serverUrl, agentKey, publicKey });
 *   try { await transfer(args); await claim.report({ status: 'succeeded' }); }
 *   catch (err) { await claim.report({ status: 'failed', error: String(err) }); throw err; }
 */
export async function verifyAndClaim(input: { receipt: unknown; payload: Payload } & VerifyOptions): Promise<Claim> {
  const receipt = await verifyReceipt(input.receipt, input.payload, input);
  const request = await call(input, receipt.requestId, { status: 'started', receipt });
  if (request.id !== receipt.requestId || request.status !== 'executing' || request.decision?.receipt?.nonce !== receipt.nonce) {
    throw new CountersignError('RECEIPT_MISMATCH', `the server's answer to the claim of ${receipt.requestId} is not that approval, executing; refusing to run`, { requestId: receipt.requestId });
  }
  let reported = false;
  return {
    requestId: receipt.requestId,
    receipt,
    request,
    async report(outcome) {
      if (reported) throw new CountersignError('ALREADY_EXECUTED', `the execution of ${receipt.requestId} was already reported`, { requestId: receipt.requestId });
      reported = true;
      return call(input, receipt.requestId, {
        status: outcome.status,
        ...(outcome.result !== undefined ? { result: outcome.result } : {}),
        ...(outcome.error !== undefined ? { error: outcome.error.slice(0, 2_000) } : {}),
      });
    },
  };
}

/**
 * Checks 1–3 only (no claim): the receipt, parsed, if it is signed by the pinned key, approves
 * exactly `payload`, and has not expired. `verifyAndClaim` is what an executor wants; this is
 * for a dry run (or a gate in front of another gate).
 */
export async function verifyReceipt(value: unknown, payload: Payload, options: Pick<VerifyOptions, 'publicKey' | 'keyId' | 'serverUrl' | 'agentKey' | 'fetch' | 'now' | 'timeoutMs'>): Promise<Receipt> {
  const parsed = Receipt.safeParse(value);
  if (!parsed.success) throw mismatch(null, 'it is not a Countersign receipt');
  const receipt = parsed.data;
  const id = receipt.requestId;
  const { key, keyId } = await pinnedKey(options);
  if (receipt.keyId !== keyId) throw mismatch(id, `signed by key ${receipt.keyId}, not the pinned key ${keyId}`);
  const { signature, ...body } = receipt;
  const sig = fromBase64(signature);
  let message: Uint8Array;
  try {
    message = receiptMessage(body as ReceiptBody);
  } catch {
    throw mismatch(id, 'its fields do not fit its version');
  }
  if (sig === null || !(await subtle().verify({ name: 'Ed25519' }, key, sig, message))) throw mismatch(id, 'the signature does not verify');
  if (receipt.outcome !== 'approved' || receipt.payloadHash === null) throw mismatch(id, `it records ${receipt.outcome}, which runs nothing`);
  if (receipt.version !== 2 || receipt.nonce === undefined || receipt.expiresAt === undefined) {
    throw mismatch(id, 'it is a version 1 receipt, which has no expiry and cannot be claimed here');
  }
  if (typeof payload?.action !== 'string' || typeof payload.args !== 'object' || payload.args === null || Array.isArray(payload.args)) {
    throw new CountersignError('VALIDATION_FAILED', 'the payload to run must be {action: string, args: object}');
  }
  const hash = toHex(await sha256(utf8(payloadKey(payload.action, payload.args))));
  if (hash !== receipt.payloadHash) throw mismatch(id, `it does not approve running ${payload.action} with these args`);
  const expires = Date.parse(receipt.expiresAt);
  const now = (options.now ?? Date.now)();
  if (Number.isNaN(expires) || now >= expires) {
    throw new CountersignError('RECEIPT_EXPIRED', `the approval of ${id} could be claimed until ${receipt.expiresAt}; the agent must file the request again`, { requestId: id, expiresAt: receipt.expiresAt });
  }
  return receipt;
}

const keys = new Map<string, Promise<{ key: unknown; keyId: string }>>();

/** The pinned key, imported once per pin (a failed load is retried next time). */
async function pinnedKey(options: Pick<VerifyOptions, 'publicKey' | 'keyId' | 'serverUrl' | 'agentKey' | 'fetch' | 'timeoutMs'>): Promise<{ key: unknown; keyId: string }> {
  const pin = options.publicKey?.trim() || options.keyId?.trim().toLowerCase();
  if (!pin) throw new CountersignError('VALIDATION_FAILED', 'verifyAndClaim needs the audit public key pinned: publicKey (PEM) or keyId (16 hex digits)');
  if (!options.publicKey && !KEY_ID.test(pin)) throw new CountersignError('VALIDATION_FAILED', `keyId "${pin}" is not 16 hex digits`);
  const cacheKey = `${options.publicKey ? 'pem' : `id:${options.serverUrl}`}\u0000${pin}`;
  let loaded = keys.get(cacheKey);
  if (!loaded) {
    loaded = (async () => {
      const pem = options.publicKey ? pin : await fetchKey(options);
      const spki = spkiOf(pem);
      const keyId = toHex(await sha256(spki)).slice(0, 16);
      if (!options.publicKey && keyId !== pin) throw new CountersignError('RECEIPT_MISMATCH', `the server served key ${keyId}, not the pinned key ${pin}; refusing to run`);
      let key: unknown;
      try {
        key = await subtle().importKey('spki', spki, { name: 'Ed25519' }, false, ['verify']);
      } catch (err) {
        throw new CountersignError('VALIDATION_FAILED', `the pinned audit public key is not an Ed25519 key: ${(err as Error).message}`);
      }
      return { key, keyId };
    })();
    keys.set(cacheKey, loaded);
    loaded.catch(() => keys.delete(cacheKey));
  }
  return loaded;
}

async function fetchKey(options: Pick<VerifyOptions, 'serverUrl' | 'agentKey' | 'fetch' | 'timeoutMs'>): Promise<string> {
  const res = await send(options, 'GET', '/v1/audit/public-key');
  if (res.status !== 200) throw new CountersignError('RECEIPT_MISMATCH', `cannot get the server's audit public key (HTTP ${res.status}); refusing to run`);
  return res.text();
}

async function send(options: Pick<VerifyOptions, 'serverUrl' | 'agentKey' | 'fetch' | 'timeoutMs'>, method: string, path: string, body?: unknown): Promise<Response> {
  if (!options.serverUrl) throw new CountersignError('VALIDATION_FAILED', 'serverUrl is required');
  if (!options.agentKey) throw new CountersignError('VALIDATION_FAILED', 'agentKey is required: the claim is made with the key of the agent that filed the request');
  const doFetch = options.fetch ?? (fetch as unknown as FetchLike);
  const url = `${options.serverUrl.replace(/\/+$/, '')}${path}`;
  try {
    return await doFetch(url, {
      method,
      headers: { authorization: `Bearer ${options.agentKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
  } catch (err) {
    throw new CountersignError('NETWORK_ERROR', `${method} ${url} failed: ${(err as Error).message}; nothing was claimed, so nothing may run`);
  }
}

/** One execution call; the server's error comes back as the same CountersignError (unknown codes fail closed as INTERNAL). */
async function call(options: VerifyOptions, requestId: string, body: unknown): Promise<ApprovalRequest> {
  const res = await send(options, 'POST', `/v1/requests/${encodeURIComponent(requestId)}/execution`, body);
  let json: unknown;
  try {
    json = await res.json();
  } catch {
    throw new CountersignError('INTERNAL', `the server answered the execution call of ${requestId} with HTTP ${res.status} and no JSON; refusing to run`);
  }
  if (res.ok) return json as ApprovalRequest;
  const error = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } }).error;
  const code = typeof error?.code === 'string' && KNOWN_CODES.has(error.code) ? (error.code as ErrorCode) : 'INTERNAL';
  throw new CountersignError(code, typeof error?.message === 'string' ? error.message : `HTTP ${res.status}`, error?.details);
}

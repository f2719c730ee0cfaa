/**
 * `verifyAndClaim` in front of a route, for Hono and Express. The caller (an agent) sends the
 * receipt of its approval in the `Countersign-Receipt` header (base64url of the receipt's JSON,
 * as `encodeReceipt` makes it) and the args to run as the JSON body. Before the handler runs, the
 * middleware verifies the receipt against the pinned key, checks that the body is exactly the
 * approved args for `action`, and claims the approval once; any failure answers with the error
 * (`{"error": {code, message}}`: 409 RECEIPT_MISMATCH / ALREADY_EXECUTED, 410 RECEIPT_EXPIRED,
 * 400, 404, 503) and the handler never runs. After the handler, the execution is reported:
 * succeeded for a status below 400, failed otherwise.
 *
 * The framework types are described structurally, so this package depends on neither framework.
 */
import { CountersignError, fromBase64, type JsonObject } from '@countersign/core';
import { verifyAndClaim, type Claim, type VerifyOptions } from './verify.ts';

export const RECEIPT_HEADER = 'countersign-receipt';

/** The header value for a receipt: base64url of its JSON. */
export function encodeReceipt(receipt: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(receipt));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The receipt in a header value; undefined when it is not base64url JSON. */
export function decodeReceipt(value: string | undefined | null): unknown {
  if (!value || value.length > 64 * 1024) return undefined;
  if (!/^[A-Za-z0-9_-]+$/.test(value)) return undefined; // base64url, unpadded
  const standard = value.replace(/-/g, '+').replace(/_/g, '/');
  const bytes = fromBase64(standard + '='.repeat((4 - (standard.length % 4)) % 4));
  if (!bytes) return undefined;
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as unknown;
  } catch {
    return undefined;
  }
}

export interface MiddlewareOptions extends VerifyOptions {
  /** The action this route performs (a receipt for another action never runs it). */
  action: string;
  /** Called when the closing report fails (the action ran; the record stays `executing`). */
  onReportError?: ((err: unknown, requestId: string) => void) | undefined;
}

const STATUS: Partial<Record<string, number>> = {
  VALIDATION_FAILED: 400,
  RECEIPT_MISMATCH: 409,
  ALREADY_EXECUTED: 409,
  ALREADY_DECIDED: 409,
  ILLEGAL_TRANSITION: 409,
  RECEIPT_EXPIRED: 410,
  NOT_FOUND: 404,
  FORBIDDEN: 403,
  UNAUTHENTICATED: 401,
};

/** The refusal to send: a known code keeps its status; anything else fails closed as 503. */
function refusal(err: unknown): { status: number; body: { error: { code: string; message: string } } } {
  if (err instanceof CountersignError) return { status: STATUS[err.code] ?? 503, body: { error: { code: err.code, message: err.message } } };
  return { status: 503, body: { error: { code: 'INTERNAL', message: 'the approval could not be checked; nothing ran' } } };
}

function argsOf(body: unknown): JsonObject | null {
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as JsonObject) : null;
}

async function claimFor(options: MiddlewareOptions, header: string | undefined | null, body: unknown): Promise<Claim> {
  const receipt = decodeReceipt(header);
  if (receipt === undefined) throw new CountersignError('RECEIPT_MISMATCH', `no readable ${RECEIPT_HEADER} header; refusing to run`);
  const args = argsOf(body);
  if (args === null) throw new CountersignError('VALIDATION_FAILED', 'the body must be a JSON object: the args to run');
  return verifyAndClaim({ ...options, receipt, payload: { action: options.action, args } });
}

async function report(claim: Claim, status: number, options: MiddlewareOptions): Promise<void> {
  try {
    await claim.report(status < 400 ? { status: 'succeeded' } : { status: 'failed', error: `the handler answered HTTP ${status}` });
  } catch (err) {
    options.onReportError?.(err, claim.requestId);
  }
}

/** What the Hono middleware uses of Hono's context. */
export interface HonoContextLike {
  req: { header(name: string): string | undefined; json(): Promise<unknown> };
  res: { status: number };
  set(key: 'countersign', value: Claim): void;
  json(body: unknown, status: number): Response;
}

/**
 *   app.post('/transfer', countersignHono({ action: 'wire_transfer', serverUrl, agentKey, publicKey }), (c) => …)
 *
 * The won claim is `c.get('countersign')`.
 */
export function countersignHono(options: MiddlewareOptions) {
  return async (c: HonoContextLike, next: () => Promise<void>): Promise<Response | void> => {
    let claim: Claim;
    try {
      const body = await c.req.json().catch(() => undefined);
      claim = await claimFor(options, c.req.header(RECEIPT_HEADER), body);
    } catch (err) {
      const r = refusal(err);
      return c.json(r.body, r.status);
    }
    c.set('countersign', claim);
    let failed = false;
    try {
      await next();
    } catch (err) {
      failed = true;
      await report(claim, 500, options);
      throw err;
    } finally {
      if (!failed) await report(claim, c.res.status, options);
    }
  };
}

/** What the Express middleware uses of Express's request and response. */
export interface ExpressRequestLike {
  body?: unknown;
  get(name: string): string | undefined;
}
export interface ExpressResponseLike {
  statusCode: number;
  locals: Record<string, unknown>;
  status(code: number): ExpressResponseLike;
  json(body: unknown): unknown;
  on(event: 'finish' | 'close', listener: () => void): unknown;
}

/**
 *   app.post('/transfer', express.json(), countersignExpress({ action: 'wire_transfer', … }), (req, res) => …)
 *
 * Needs the parsed JSON body (`express.json()` before it). The won claim is `res.locals.countersign`.
 */
export function countersignExpress(options: MiddlewareOptions) {
  return (req: ExpressRequestLike, res: ExpressResponseLike, next: (err?: unknown) => void): void => {
    claimFor(options, req.get(RECEIPT_HEADER), req.body).then(
      (claim) => {
        res.locals['countersign'] = claim;
        let done = false;
        const close = (status: number) => {
          if (done) return;
          done = true;
          void report(claim, status, options);
        };
        res.on('finish', () => close(res.statusCode));
        res.on('close', () => close(res.statusCode < 400 ? 500 : res.statusCode)); // aborted before finishing
        next();
      },
      (err: unknown) => {
        const r = refusal(err);
        res.status(r.status).json(r.body);
      },
    );
  };
}

/**
 * The single mapping from error codes to HTTP statuses, and the one error handler. Every error
 * leaves as `{"error": {"code", "message", "details"?}}`; codes are documented in docs/errors.md.
 */
import { CountersignError, type ErrorCode } from '@countersign/core';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { describeUnavailable, isStoreUnavailable } from '../store/unavailable.ts';

export const STATUS_OF: Readonly<Record<ErrorCode, ContentfulStatusCode>> = Object.freeze({
  BAD_JSON: 400,
  VALIDATION_FAILED: 400,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  BAD_ID: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  SELF_REVIEW: 403,
  NOT_ELIGIBLE: 403,
  ALREADY_REVIEWED: 409,
  MFA_REQUIRED: 403,
  MFA_INVALID: 403,
  MFA_LOCKED: 429,
  MATCH_CODE_INVALID: 403,
  VELOCITY_LIMITED: 429,
  COOLDOWN_ACTIVE: 403,
  RATE_LIMITED: 429,
  AGENT_PAUSED: 403,
  AGENT_DISABLED: 403,
  IP_NOT_ALLOWED: 403,
  NOT_FOUND: 404,
  ALREADY_DECIDED: 409,
  ILLEGAL_TRANSITION: 409,
  IDEMPOTENCY_CONFLICT: 409,
  UNKNOWN_ALTERNATIVE: 400,
  ALREADY_EXTENDED: 409,
  AGGREGATED: 409,
  ALREADY_EXECUTED: 409,
  RECEIPT_EXPIRED: 410,
  PAYLOAD_CHANGED: 409,
  BAD_SIGNATURE: 401,
  POLICY_INVALID: 400,
  BLOCKED_BY_POLICY: 403,
  APPROVAL_REJECTED: 409,
  APPROVAL_EXPIRED: 409,
  APPROVAL_CANCELLED: 409,
  WAIT_TIMEOUT: 408,
  RECEIPT_MISMATCH: 409,
  AUDIT_VERIFICATION_FAILED: 409,
  AUDIT_FORK: 409,
  AUDIT_KEY_RETIRED: 409,
  AUDIT_KEY_CONFLICT: 409,
  NETWORK_ERROR: 502,
  NOT_IMPLEMENTED: 501,
  STORE_UNAVAILABLE: 503,
  ADDRESS_IN_USE: 500,
  INTERNAL: 500,
});

export function errorResponse(c: Context, err: CountersignError): Response {
  const headers: Record<string, string> = {};
  // The rest of an oversize body is never read: say so, so a keep-alive client opens a new
  // connection for its next request instead of failing on this one (Node closes it after the 413).
  if (err.code === 'BODY_TOO_LARGE') headers['connection'] = 'close';
  const retryAfter = (err.details as { retryAfter?: unknown } | undefined)?.retryAfter;
  if (typeof retryAfter === 'number' && Number.isFinite(retryAfter)) headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfter)));
  return c.json(err.toJSON(), STATUS_OF[err.code], headers);
}

/** Turns anything thrown into the documented shape; unknown errors become a logged 500 with no internals. */
export function toCountersignError(err: unknown, log: (message: string) => void = console.error): CountersignError {
  if (err instanceof CountersignError) return err;
  if (err instanceof HTTPException) {
    if (err.status === 413) return new CountersignError('BODY_TOO_LARGE', 'request body is too large');
    if (err.status === 400) return new CountersignError('BAD_JSON', err.message || 'malformed request body');
    if (err.status === 401) return new CountersignError('UNAUTHENTICATED', err.message || 'unauthenticated');
    if (err.status < 500) return new CountersignError('VALIDATION_FAILED', err.message);
  }
  if (isStoreUnavailable(err)) {
    log(`countersign: database unavailable: ${describeUnavailable(err)}`);
    return new CountersignError('STORE_UNAVAILABLE', 'the database cannot be reached right now; nothing was approved. Retry shortly (a create with the same idempotencyKey is safe to repeat)');
  }
  log(`countersign: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return new CountersignError('INTERNAL', 'internal error; nothing was approved');
}

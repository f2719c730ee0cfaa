/**
 * The one error class that crosses every boundary. The server maps `code` to an HTTP status in
 * one place; the client turns an error response back into this class, so callers can
 * `switch (err.code)` whether the engine ran in-process or behind HTTP.
 */
export const ERROR_CODES = [
  // input
  'BAD_JSON',
  'VALIDATION_FAILED',
  'BODY_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'BAD_ID',
  // auth
  'UNAUTHENTICATED',
  'BAD_SIGNATURE',
  'FORBIDDEN',
  'SELF_REVIEW',
  'NOT_ELIGIBLE',
  'ALREADY_REVIEWED',
  'MFA_REQUIRED',
  'MFA_INVALID',
  'MFA_LOCKED',
  'MATCH_CODE_INVALID',
  'VELOCITY_LIMITED',
  'COOLDOWN_ACTIVE',
  'RATE_LIMITED',
  'AGENT_PAUSED',
  /** The agent's configuration says `enabled: false` (or cannot be trusted): every request from it is refused. */
  'AGENT_DISABLED',
  'IP_NOT_ALLOWED',
  // state
  'NOT_FOUND',
  'ALREADY_DECIDED',
  'ILLEGAL_TRANSITION',
  'IDEMPOTENCY_CONFLICT',
  'UNKNOWN_ALTERNATIVE',
  'ALREADY_EXTENDED',
  'AGGREGATED',
  'ALREADY_EXECUTED',
  'RECEIPT_EXPIRED',
  'PAYLOAD_CHANGED',
  // policy
  'POLICY_INVALID',
  'BLOCKED_BY_POLICY',
  // client-side outcomes
  'APPROVAL_REJECTED',
  'APPROVAL_EXPIRED',
  'APPROVAL_CANCELLED',
  'WAIT_TIMEOUT',
  'RECEIPT_MISMATCH',
  'AUDIT_VERIFICATION_FAILED',
  'NETWORK_ERROR',
  // the audit signer
  'AUDIT_FORK',
  /** This server's audit key was handed over to a newer one (key rotation): it signs nothing. */
  'AUDIT_KEY_RETIRED',
  /** A key rotation lost a race with another, or would hand back to a key the trail already used. */
  'AUDIT_KEY_CONFLICT',
  // server
  'NOT_IMPLEMENTED',
  'STORE_UNAVAILABLE',
  'ADDRESS_IN_USE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class CountersignError extends Error {
  override readonly name = 'CountersignError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: unknown } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details === undefined ? {} : { details: this.details }),
      },
    };
  }
}

export function isCountersignError(value: unknown): value is CountersignError {
  return value instanceof CountersignError;
}

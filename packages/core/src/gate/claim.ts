/**
 * An approval is claimed once, within its validity (issue 12, finding 9: receipts never expired
 * and could be replayed). The receipt the server signs with an approval carries a `nonce` and an
 * `expiresAt` (audit/signed.ts, version 2); `POST /v1/requests/:id/execution {status: started,
 * receipt}` claims it, which moves the request to `executing`, and only then may the action run.
 *
 * These functions decide, the shell does the rest: it verifies the receipt's signature (the key
 * is I/O), loads the request's claim state under its row lock, calls `decideClaim`, and writes
 * the `executing` status with a compare-and-set on `approved`, so two racing claims get one
 * success and one `ALREADY_EXECUTED`.
 */
import { CountersignError } from '../errors.ts';
import type { ReceiptBody } from '../audit/signed.ts';
import type { RequestStatus, RiskLevel } from '../schemas.ts';
import type { Policy } from '../policy/types.ts';

/** A request's status; `executing` sits between `approved` and the report (kept as a name for the gate's callers). */
export type ClaimableStatus = RequestStatus;

/** What the server stored when it approved the request, read under the row lock. */
export interface ClaimState {
  requestId: string;
  status: ClaimableStatus;
  /** The nonce signed into the approval's receipt; null for approvals stored before receipts carried one. */
  nonce: string | null;
  /** When the approval stops being claimable (ISO); for approvals stored before expiries, the shell passes `receiptExpiry(decidedAt, …)`. */
  expiresAt: string;
  /** Hex SHA-256 of the approved `{action, args}` (the receipt's own `payloadHash`). */
  payloadHash: string | null;
  /** The agent's policy now (the file with its overlay) says `enabled: false`: nothing of it may start running (review2 F2). */
  agentDisabled: boolean;
}

export type ClaimResult = { ok: true; status: 'executing'; nonce: string | null } | { ok: false; error: CountersignError };

/** When an approval decided at `decidedAt` at risk `level` stops being claimable: `levels.<level>.approvalValidFor` later. */
export function receiptExpiry(decidedAt: string, level: RiskLevel, policy: Policy): string {
  const at = Date.parse(decidedAt);
  if (Number.isNaN(at)) throw new TypeError(`receiptExpiry: decidedAt "${decidedAt}" is not a time`);
  return new Date(at + policy.levels[level].approvalValidMs).toISOString();
}

const refuse = (error: CountersignError): ClaimResult => ({ ok: false, error });

/**
 * May this (signature-verified) receipt claim the approval now?
 *
 * In this order, so the agent learns the most useful thing first:
 * 1. a receipt for another request, another payload or another outcome is `RECEIPT_MISMATCH`;
 * 2. an approval already claimed (or reported) is `ALREADY_EXECUTED` — also after its expiry, so a
 *    replay is always named as one;
 * 3. a request still pending is `ILLEGAL_TRANSITION`; rejected, expired or cancelled is `ALREADY_DECIDED`;
 * 4. a nonce other than the stored one is `RECEIPT_MISMATCH` (a receipt of an earlier approval
 *    cannot be replayed onto a later one), as is a version 1 receipt where a nonce is stored;
 * 5. an agent disabled now (`enabled: false`, file or overlay) is `AGENT_DISABLED`: the approval
 *    stays `approved`, and may be claimed within its validity once the agent is enabled again;
 * 6. at or after the deadline (`claimDeadline`: the earlier of the stored `expiresAt` and the
 *    receipt's signed one, so neither a database writer moving the column nor an edited receipt
 *    extends it) it is `RECEIPT_EXPIRED`: the agent files the request anew.
 */
export function decideClaim(state: ClaimState, receipt: ReceiptBody, now: Date): ClaimResult {
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) throw new TypeError('decideClaim: `now` is an invalid Date');
  const id = state.requestId;
  if (receipt.requestId !== id) {
    return refuse(new CountersignError('RECEIPT_MISMATCH', `the receipt was issued for ${receipt.requestId}, not ${id}`, { requestId: id }));
  }
  if (receipt.outcome !== 'approved' || receipt.payloadHash === null) {
    return refuse(new CountersignError('RECEIPT_MISMATCH', `the receipt records an outcome of ${receipt.outcome}, which cannot be executed`, { requestId: id }));
  }
  if (state.status === 'executing' || state.status === 'executed' || state.status === 'execution_failed') {
    return refuse(new CountersignError('ALREADY_EXECUTED', `the approval of ${id} was already claimed (the request is ${state.status})`, { requestId: id, status: state.status }));
  }
  if (state.status === 'lapsed') {
    const until = new Date(Math.max(0, claimDeadline(state, receipt))).toISOString();
    return refuse(new CountersignError('RECEIPT_EXPIRED', `the approval of ${id} lapsed unclaimed (claimable until ${until}); file the request again`, { requestId: id, expiresAt: until }));
  }
  if (state.status === 'pending') {
    return refuse(new CountersignError('ILLEGAL_TRANSITION', `request ${id} is still pending; nothing may run yet`, { requestId: id, status: state.status }));
  }
  if (state.status !== 'approved') {
    return refuse(new CountersignError('ALREADY_DECIDED', `request ${id} is ${state.status}`, { requestId: id, status: state.status }));
  }
  if (state.payloadHash !== receipt.payloadHash) {
    return refuse(new CountersignError('RECEIPT_MISMATCH', 'the receipt covers another payload than the one approved', { requestId: id }));
  }
  if (state.nonce !== null && (receipt.version !== 2 || receipt.nonce !== state.nonce)) {
    return refuse(new CountersignError('RECEIPT_MISMATCH', 'the receipt is not the one issued with this approval', { requestId: id }));
  }
  if (state.agentDisabled) {
    return refuse(new CountersignError('AGENT_DISABLED', `the agent of ${id} is disabled (enabled: false); nothing of it may start running until it is enabled again`, { requestId: id }));
  }
  const deadline = claimDeadline(state, receipt);
  if (nowMs >= deadline) {
    const until = new Date(Math.max(0, deadline)).toISOString();
    return refuse(new CountersignError('RECEIPT_EXPIRED', `the approval of ${id} could be claimed until ${until}; file the request again`, { requestId: id, expiresAt: until }));
  }
  return { ok: true, status: 'executing', nonce: state.nonce };
}

/**
 * When the claim window closes (ms since the epoch): the earlier of the stored expiry and, for a
 * version 2 receipt, its signed `expiresAt`. The signed copy bounds what a database writer can
 * do to the column; the stored one bounds a receipt. Fail closed: an unreadable expiry (either)
 * is the epoch, i.e. already passed. The shell uses the same number in its conditional UPDATE.
 */
export function claimDeadline(state: Pick<ClaimState, 'expiresAt'>, receipt: Pick<ReceiptBody, 'version' | 'expiresAt'>): number {
  const stored = Date.parse(state.expiresAt);
  if (Number.isNaN(stored)) return 0;
  if (receipt.version !== 2) return stored;
  const signed = typeof receipt.expiresAt === 'string' ? Date.parse(receipt.expiresAt) : Number.NaN;
  if (Number.isNaN(signed)) return 0;
  return Math.min(stored, signed);
}

/**
 * An approval that can no longer run: swept to `lapsed` already, or approved, never claimed, and
 * past its stored claim expiry (ms). A create under its idempotency key then files a new request
 * instead of replaying it (review finding 8: adapters use one fixed key per tool call). An
 * approval without a stored expiry (before 009_claim) is not lapsed here: it keeps replaying, as
 * before (and the sweep never touches it).
 */
export function approvalLapsed(row: { status: string; claimedAt: number | null; claimExpiresAt: number | null }, nowMs: number): boolean {
  if (row.status === 'lapsed') return row.claimedAt === null;
  return approvalDueToLapse(row, nowMs);
}

/**
 * The scheduler's sweep (`approved` → `lapsed`): approved, never claimed, with a stored claim
 * expiry at or before now. The shell's conditional UPDATE states the same predicate, so a
 * claim racing the sweep on another server leaves exactly one of them changing the row; the
 * claim's own deadline (`claimDeadline`) is never later than the stored expiry, so nothing the
 * sweep takes was still claimable.
 */
export function approvalDueToLapse(row: { status: string; claimedAt: number | null; claimExpiresAt: number | null }, nowMs: number): boolean {
  return row.status === 'approved' && row.claimedAt === null && row.claimExpiresAt !== null && nowMs >= row.claimExpiresAt;
}

/**
 * The closing report (`{status: succeeded | failed}`). Once claims are required, only an
 * `executing` request takes it; `requireClaim: false` keeps today's behaviour (an `approved`
 * request may be reported directly) for the transition while SDKs update.
 */
export function decideExecutionReport(
  status: ClaimableStatus,
  report: 'succeeded' | 'failed',
  requireClaim: boolean,
): { ok: true; status: 'executed' | 'execution_failed' } | { ok: false; error: CountersignError } {
  const next = report === 'succeeded' ? 'executed' : 'execution_failed';
  if (status === 'executing' || (!requireClaim && status === 'approved')) return { ok: true, status: next };
  if (status === 'approved') {
    return { ok: false, error: new CountersignError('ILLEGAL_TRANSITION', 'claim the approval first ({status: started, receipt}), then report its result') };
  }
  if (status === 'executed' || status === 'execution_failed') {
    return { ok: false, error: new CountersignError('ALREADY_EXECUTED', `the execution was already reported (${status})`, { status }) };
  }
  return {
    ok: false,
    error: new CountersignError(status === 'pending' ? 'ILLEGAL_TRANSITION' : 'ALREADY_DECIDED', `cannot report execution of a request that is ${status}`, { status }),
  };
}

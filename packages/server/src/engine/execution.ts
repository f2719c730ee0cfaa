/**
 * The execution desk (issue 12): an approval is claimed once, within its validity, and then its
 * result closes the record. Core decides (`gate/claim.ts`: `decideClaim`, `decideExecutionReport`,
 * `receiptExpiry`); this role module is the shell around it:
 *
 *   POST /v1/requests/:id/execution {status: started, receipt}
 *     → lock the row → the caller filed it? → this server's key signed the receipt? →
 *       `decideClaim` (request, payload, nonce, the agent not disabled, expiry) → the conditional UPDATE approved →
 *       executing (`Queries.claimApproval`: one winner however many race) → audit
 *       `execution_started` — one transaction; a refusal rolls back and is audited after
 *       (`claim_refused`).
 *   POST … {status: succeeded | failed} → only from `executing`, once → executed | execution_failed.
 *
 *   scheduler tick → `sweepLapsed`: approvals never claimed before their stored claim expiry
 *     (core `approvalDueToLapse`, rows locked with SKIP LOCKED on PostgreSQL) → the conditional
 *     UPDATE approved → lapsed (`Queries.lapseApproval`, the claim's own predicate inverted, so a
 *     racing claim or a second server's sweep leaves one winner) → audit `approval_lapsed`.
 *
 * It also issues what a claim is checked against: `approvalClaim` draws the nonce and computes
 * the expiry that every approval's receipt signs and its row keeps (`claim_nonce`,
 * `claim_expires_at`).
 */
import { randomBytes } from 'node:crypto';
import {
  CountersignError,
  approvalDueToLapse,
  claimDeadline,
  decideClaim,
  decideExecutionReport,
  receiptExpiry,
  type ApprovalRequest,
  type ClaimState,
  type Decision,
  type ExecutionReportBody,
  type Policy,
  type Receipt,
  type ReceiptClaim,
  type RequestStatus,
  type RiskLevel,
} from '@countersign/core';
import type { AuditService } from '../audit/service.ts';
import { SYSTEM_ACTOR, draft, type AuditWriter } from '../audit/writer.ts';
import type { Queries, RequestRow, Store } from '../store/store.ts';
import type { Principal } from './principal.ts';

/** What the engine gives the desk: its store and trail, the clock, the active policy, and what follows a commit. */
export interface ExecutionDeps {
  store: Store;
  trail: AuditService;
  writer: AuditWriter;
  now: () => number;
  policy: () => Policy;
  /** Whether the agent's policy now (file + overlay, read on `q`) disables it (`enabled: false`); throws when it cannot be read (fail closed). */
  agentDisabled: (q: Queries, agentId: string) => Promise<boolean>;
  /** The wake channel NOTIFY'd in each changing transaction. */
  wakeChannel: string;
  /** After the commit: wake waiters, tell observers, and return the request as the caller may see it. */
  committed: (row: RequestRow, previousStatus: RequestStatus, by?: Principal) => Promise<ApprovalRequest>;
}

/** What an approval's receipt signs and its row keeps so it can be claimed once: a fresh nonce and the expiry. */
export interface IssuedClaim {
  claim: ReceiptClaim;
  columns: { claim_nonce: string; claim_expires_at: number };
}

/**
 * The claim for a runnable approval decided now: 16 random bytes (hex) and `approvalValidFor` of
 * the request's risk level after the decision. Null for anything that is not a runnable approval.
 */
export function approvalClaim(decision: Decision, riskLevel: RiskLevel, policy: Policy): IssuedClaim | null {
  if (decision.outcome !== 'approved' || decision.action === null || decision.args === null) return null;
  const expiresAt = receiptExpiry(decision.at, riskLevel, policy);
  const nonce = randomBytes(16).toString('hex');
  return { claim: { nonce, expiresAt }, columns: { claim_nonce: nonce, claim_expires_at: Date.parse(expiresAt) } };
}

/** Refusals written to the trail (after the rollback): each is someone trying to run what they may not. */
const AUDITED = new Set(['RECEIPT_MISMATCH', 'ALREADY_EXECUTED', 'RECEIPT_EXPIRED', 'ILLEGAL_TRANSITION', 'ALREADY_DECIDED', 'AGENT_DISABLED']);
/** A replaying caller cannot flood the trail: one refusal entry per request and code a minute. */
const REFUSAL_AUDIT_MS = 60_000;

const RISK_LEVELS = new Set<string>(['low', 'medium', 'high', 'critical']);

export class ExecutionDesk {
  private readonly lastRefusal = new Map<string, number>();

  constructor(private readonly deps: ExecutionDeps) {}

  /** `{status: started, receipt}`: claims the approval once (→ `executing`), or refuses and changes nothing. */
  async claim(by: Principal, id: string, receipt: Receipt): Promise<ApprovalRequest> {
    const { store, trail, writer } = this.deps;
    let previous: RequestStatus = 'approved';
    try {
      const row = await store.transaction(async (tx) => {
        const current = await this.ownRequest(tx, by, id);
        previous = current.status as RequestStatus;
        const at = this.deps.now();
        // Only this server's audit key makes receipts: another key, an edited field or a downgraded version fails here.
        if (!trail.verifiesReceipt(receipt)) {
          throw new CountersignError('RECEIPT_MISMATCH', `the receipt presented for ${id} is not signed by this server's audit key (or was altered); nothing may run`, { requestId: id });
        }
        const state = this.claimState(current, await this.deps.agentDisabled(tx, current.agent_id));
        const decided = decideClaim(state, receipt, new Date(at));
        if (!decided.ok) throw decided.error;
        // Claim-once must not rest on mutable columns alone: a database writer who resets
        // status/claimed_at cannot make the trail (hash-chained, append-only) forget the claim.
        if (await tx.auditHas(id, 'execution_started')) {
          throw new CountersignError('ALREADY_EXECUTED', `the approval of ${id} was already claimed (the audit trail records it)`, { requestId: id });
        }
        // The compare-and-set that holds even without the row lock: exactly one racing claim changes the row.
        if (!(await tx.claimApproval(id, current.claim_nonce, at, claimDeadline(state, receipt)))) {
          throw new CountersignError('ALREADY_EXECUTED', `the approval of ${id} was already claimed`, { requestId: id });
        }
        await writer.append(tx, [
          draft('execution_started', id, by, { payloadHash: state.payloadHash, expiresAt: state.expiresAt, receiptVersion: receipt.version }, at),
        ]);
        await tx.notify(this.deps.wakeChannel, id);
        return { ...current, status: 'executing', claimed_at: at, updated_at: at } satisfies RequestRow;
      });
      return await this.deps.committed(row, previous, by);
    } catch (err) {
      await this.auditRefusal(err, by, id);
      throw err;
    }
  }

  /** `{status: succeeded | failed}`: the result of a claimed approval; once, and only after the claim. */
  async report(by: Principal, id: string, body: ExecutionReportBody): Promise<ApprovalRequest> {
    const { store, writer } = this.deps;
    let previous: RequestStatus = 'executing';
    const row = await store.transaction(async (tx) => {
      const current = await this.ownRequest(tx, by, id);
      previous = current.status as RequestStatus;
      const decided = decideExecutionReport(current.status as RequestStatus, body.status, true);
      if (!decided.ok) throw decided.error;
      const at = this.deps.now();
      const execution = JSON.stringify({ status: body.status, result: body.result, error: body.error ?? null, at: new Date(at).toISOString() });
      const patch = { status: decided.status, execution, updated_at: at };
      if (!(await tx.updateRequest(id, patch, 'executing'))) {
        throw new CountersignError('ALREADY_EXECUTED', `the execution of ${id} was already reported`, { requestId: id });
      }
      await writer.append(tx, [draft(decided.status, id, by, { status: body.status, error: body.error ?? null }, at)]);
      await tx.notify(this.deps.wakeChannel, id);
      return { ...current, ...patch } satisfies RequestRow;
    });
    return this.deps.committed(row, previous, by);
  }

  /**
   * One round of the lapse sweep: up to `limit` approvals whose claim window closed unclaimed
   * become `lapsed` (final), each with one `approval_lapsed` entry, in one transaction. Returns
   * how many this call changed; a row a racing claim or another server took first is skipped.
   */
  async sweepLapsed(limit: number): Promise<number> {
    const { store, writer } = this.deps;
    const at = this.deps.now();
    const swept = await store.transaction(async (tx) => {
      const due = await tx.approvalsDueToLapse(at, limit);
      const changed: RequestRow[] = [];
      for (const row of due) {
        const state = { status: row.status, claimedAt: row.claimed_at === null ? null : Number(row.claimed_at), claimExpiresAt: row.claim_expires_at === null ? null : Number(row.claim_expires_at) };
        if (!approvalDueToLapse(state, at)) continue;
        if (!(await tx.lapseApproval(row.id, at))) continue;
        const expiresAt = Number(row.claim_expires_at);
        await writer.append(tx, [draft('approval_lapsed', row.id, SYSTEM_ACTOR, { expiresAt: new Date(expiresAt).toISOString(), lateMs: at - expiresAt }, at)]);
        await tx.notify(this.deps.wakeChannel, row.id);
        changed.push({ ...row, status: 'lapsed', updated_at: at });
      }
      return changed;
    });
    for (const row of swept) await this.deps.committed(row, 'approved');
    return swept.length;
  }

  /**
   * The locked row, if the caller filed it: another agent's request does not exist for them
   * (NOT_FOUND, as for reads); an operator may claim only what they filed as an agent.
   */
  private async ownRequest(tx: Queries, by: Principal, id: string): Promise<RequestRow> {
    const current = await tx.getRequest(id, true);
    if (!current || (by.kind === 'agent' && current.agent_id !== by.agentId)) throw new CountersignError('NOT_FOUND', `no request ${id}`);
    if (by.kind === 'operator' && current.requester_operator_id !== by.operatorId) {
      throw new CountersignError('FORBIDDEN', 'only the agent that filed a request may claim or report its execution');
    }
    return current;
  }

  /** What the approval was issued with, from the row (the store is the authority, not the receipt's copy). */
  private claimState(row: RequestRow, agentDisabled: boolean): ClaimState {
    const decision = row.decision === null ? null : (JSON.parse(row.decision) as Decision);
    const runnable = decision !== null && decision.outcome === 'approved' && decision.action !== null && decision.args !== null;
    return {
      requestId: row.id,
      status: row.status as RequestStatus,
      nonce: row.claim_nonce,
      expiresAt: this.expiryOf(row, decision),
      payloadHash: runnable ? this.deps.trail.payloadHash(decision.action!, decision.args!) : null,
      agentDisabled,
    };
  }

  /**
   * The stored expiry; an approval stored before 009_claim has none, so it gets the active
   * policy's validity after its decision (it expires too). Unknowable is the epoch: expired.
   */
  private expiryOf(row: RequestRow, decision: Decision | null): string {
    if (row.claim_expires_at !== null) return new Date(Number(row.claim_expires_at)).toISOString();
    if (decision === null || !RISK_LEVELS.has(row.risk_level)) return new Date(0).toISOString();
    try {
      return receiptExpiry(decision.at, row.risk_level as RiskLevel, this.deps.policy());
    } catch {
      return new Date(0).toISOString(); // fail closed
    }
  }

  private async auditRefusal(err: unknown, by: Principal, id: string): Promise<void> {
    if (!(err instanceof CountersignError) || !AUDITED.has(err.code)) return;
    const at = this.deps.now();
    const key = `${id}\u0000${err.code}`;
    const last = this.lastRefusal.get(key);
    if (last !== undefined && at - last < REFUSAL_AUDIT_MS) return;
    if (this.lastRefusal.size > 10_000) this.lastRefusal.clear();
    this.lastRefusal.set(key, at);
    try {
      await this.deps.store.transaction((tx) => this.deps.writer.append(tx, [draft('claim_refused', id, by, { code: err.code, message: err.message }, at)]));
    } catch {
      // The caller is refused either way; a failed audit of the refusal must not mask that.
    }
  }
}

import type { ApprovalRequest, CancelBody, CreateRequestBody, ExecutionBody } from './schemas.ts';
import type { SignedHandover } from './audit/rotation.ts';

/**
 * What an agent can do, whether the engine runs behind HTTP or in the agent's own process.
 * The client SDK is written against this interface only; the HTTP transport and the server's
 * embedded gateway both implement it, so `guard()` behaves the same over either.
 */
export interface AgentGateway {
  /** Propose an action. `replayed` is true when an idempotency key matched an earlier request. */
  createRequest(body: CreateRequestBody): Promise<{ request: ApprovalRequest; replayed: boolean }>;
  /** One request; with `waitSeconds`, returns as soon as it leaves `pending` or when the wait ends. */
  getRequest(id: string, options?: { waitSeconds?: number; signal?: AbortSignal }): Promise<ApprovalRequest>;
  reportExecution(id: string, body: ExecutionBody): Promise<ApprovalRequest>;
  cancel(id: string, body?: CancelBody): Promise<ApprovalRequest>;
  /** The server's audit public key (PEM), which signs decision receipts; the SDK checks receipts with it. */
  auditPublicKey?(): Promise<string>;
  /** The audit key's hand-overs (key rotation), each signed by both its keys; the SDK follows them only from the key it pinned. */
  auditKeyChain?(): Promise<{ current: string; handovers: SignedHandover[] }>;
  close?(): Promise<void>;
}

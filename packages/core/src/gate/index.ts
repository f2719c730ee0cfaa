/** The one gate: who may decide what, now, over the payload that will run; and the single-use claim of an approval. */
export { decideClaim, decideExecutionReport, receiptExpiry, type ClaimResult, type ClaimState, type ClaimableStatus } from './claim.ts';

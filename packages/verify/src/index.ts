/**
 * @countersign/verify — for the service that performs an action. Every export here is public API.
 *
 * Verify a receipt against a pinned key, check that the payload about to run is the approved
 * one, and claim the approval once, so an agent that skips its own SDK cannot get the action run
 * twice, late, or with other args.
 */
export { CountersignError, isCountersignError, type ErrorCode } from '@countersign/core';
export { verifyAndClaim, verifyReceipt, type Claim, type FetchLike, type Payload, type VerifyOptions } from './verify.ts';
export {
  RECEIPT_HEADER,
  countersignExpress,
  countersignHono,
  decodeReceipt,
  encodeReceipt,
  type ExpressRequestLike,
  type ExpressResponseLike,
  type HonoContextLike,
  type MiddlewareOptions,
} from './middleware.ts';

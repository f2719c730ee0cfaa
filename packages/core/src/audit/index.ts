/** The tamper-evident audit trail: Merkle tree and proofs, signed formats, the trail verifier. */
export { AUDIT_EVENTS, AUDIT_EVENT_TYPES, isAuditEventType, type AuditEventSpec, type AuditEventType } from './events.ts';
export { bytesEqual, fromBase64, fromBase64Of, toBase64, toHex, utf8 } from './bytes.ts';
export {
  CompactTree,
  MemoryTree,
  consistencyProofRanges,
  frontierNodes,
  inclusionProofRanges,
  merkleHasher,
  nodesFor,
  perfectSubtrees,
  rangeHash,
  verifyConsistency,
  verifyInclusion,
  type HashFn,
  type LeafRange,
  type MerkleHasher,
  type NodeId,
  type ProofCheck,
} from './merkle.ts';
export {
  CHECKPOINT_ORIGIN,
  RECEIPT_ORIGIN,
  SignedCheckpoint,
  auditLeafJson,
  checkpointMessage,
  keyIdOf,
  payloadHash,
  receiptBody,
  receiptMessage,
  type AuditLeaf,
  type CheckpointBody,
  type ReceiptBody,
  type ReceiptClaim,
} from './signed.ts';
export {
  TRAIL_FORMAT,
  TrailVerifier,
  trailBaseLine,
  trailCheckpointLine,
  trailEntryLine,
  trailHeaderLine,
  type TrailFault,
  type TrailFaultCode,
  type TrailHeader,
  type TrailResult,
  type TrailSummary,
  type TrailVerifierOptions,
} from './trail.ts';
export {
  CONTROLS,
  ComplianceAccumulator,
  GUARD_EVENT_TYPES,
  GUARD_REFUSAL_CODES,
  REGULATIONS,
  complianceCsv,
  complianceMarkdown,
  type ComplianceFact,
  type ComplianceReport,
  type Regulation,
  type Violation,
} from './compliance.ts';
export { DEFAULT_EXEMPT_FIELDS, DEFAULT_REDACTED_FIELDS, createRedactor, type Redactor, type RedactorOptions } from './redact.ts';

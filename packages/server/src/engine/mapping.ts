/** Rows to the public shapes of `@countersign/core`. Pure, so listings and single reads agree. */
import { publicEscalation, type EscalationState } from '@countersign/core';
import type { Alternative, ApprovalRequest, ApproverSpec, Assessment, Decision, Execution, JsonObject, Review, RiskLevel, Vote } from '@countersign/core';
import type { RequestRow, ReviewRow } from '../store/store.ts';

const iso = (ms: number) => new Date(ms).toISOString();

export function reviewFromRow(row: ReviewRow): Review {
  return {
    id: row.id,
    requestId: row.request_id,
    reviewer: { type: 'operator', id: row.operator_id, name: row.operator_name },
    verdict: row.verdict as Review['verdict'],
    reason: row.reason,
    args: row.args === null ? null : (JSON.parse(row.args) as JsonObject),
    alternative: row.alternative,
    at: iso(row.created_at),
  };
}

export function voteFromRow(row: ReviewRow): Vote {
  return {
    reviewer: { type: 'operator', id: row.operator_id, name: row.operator_name },
    verdict: row.verdict as Vote['verdict'],
    reason: row.reason,
    args: row.args === null ? null : (JSON.parse(row.args) as JsonObject),
    alternative: row.alternative,
    payloadKey: row.payload_key,
    stage: row.stage,
    stageKey: row.stage_key,
    at: iso(row.created_at),
  };
}

export function requestFromRow(
  row: RequestRow,
  agentName: string,
  reviews: readonly ReviewRow[],
  escalation: EscalationState | null = null,
): ApprovalRequest {
  return {
    id: row.id,
    agentId: row.agent_id,
    agentName,
    status: row.status as ApprovalRequest['status'],
    action: row.action,
    args: JSON.parse(row.args) as JsonObject,
    description: row.description,
    confidence: row.confidence,
    riskHint: row.risk_hint as RiskLevel | null,
    context: JSON.parse(row.context) as JsonObject,
    alternatives: JSON.parse(row.alternatives) as Alternative[],
    approvers: JSON.parse(row.approvers) as ApproverSpec[],
    idempotencyKey: row.idempotency_key,
    assessment: JSON.parse(row.assessment) as Assessment,
    policyVersion: row.policy_version,
    reviews: reviews.map(reviewFromRow),
    decision: row.decision === null ? null : (JSON.parse(row.decision) as Decision),
    execution: row.execution === null ? null : (JSON.parse(row.execution) as Execution),
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    expiresAt: row.expires_at === null ? null : iso(row.expires_at),
    escalation: escalation === null ? null : publicEscalation(escalation),
  };
}

/**
 * Route declarations: paths, parameters and bodies as zod schemas from `@countersign/core`,
 * so validation and `/openapi.json` come from one source.
 */
import { createRoute, z } from '@hono/zod-openapi';
import {
  ApprovalRequest,
  AutomationLevel,
  CancelBody,
  CreateRequestBody,
  ErrorBody,
  ExecutionBody,
  LIST_ORDERS,
  RequestStatus,
  ReviewBody,
  RiskLevel,
  Role,
} from '@countersign/core';
import type { Principal } from '../../engine/principal.ts';

/** What every authenticated handler finds in its context. */
export type ApiEnv = {
  Variables: {
    principal: Principal;
    /** Whether the caller's credential (session or token) still holds: long-lived streams ask at each heartbeat. */
    stillAuthorized: () => Promise<boolean>;
    /** The caller as their credential stands now (through the 2 s credential cache), or undefined once it no longer holds. */
    principalNow: () => Promise<Principal | undefined>;
    /** The dashboard session the call came with (cookie calls only). */
    session?: { id: string; expiresAt: number } | undefined;
  };
};

/** A JSON response (or body) entry for a route declaration. */
export const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { 'application/json': { schema } },
  description,
});

const errors = {
  400: json(ErrorBody, 'Bad input (code BAD_JSON, VALIDATION_FAILED, …)'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'Not allowed'),
  404: json(ErrorBody, 'Not found'),
  409: json(ErrorBody, 'Conflict with the current state'),
};

export const RequestId = z.string().regex(/^req_[0-9a-z]{26}$/, 'a request id looks like req_…');
const IdParams = z.object({ id: RequestId });
export const security = [{ bearer: [] }];

const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { 'application/json': { schema } }, required: true },
});

export const createRequestRoute = createRoute({
  method: 'post',
  path: '/v1/requests',
  summary: 'Propose an action',
  security,
  request: body(CreateRequestBody),
  responses: {
    200: json(ApprovalRequest, 'An earlier request with the same idempotency key'),
    201: json(ApprovalRequest, 'Created; decided at once when policy allows or blocks it'),
    ...errors,
  },
});

export const WaitQuery = z.object({
  waitSeconds: z.coerce.number().int().min(0).max(300).optional(),
});

export const getRequestRoute = createRoute({
  method: 'get',
  path: '/v1/requests/{id}',
  summary: 'One request; ?waitSeconds=N long-polls until it is decided',
  security,
  request: { params: IdParams, query: WaitQuery },
  responses: { 200: json(ApprovalRequest, 'The request'), ...errors },
});

export const requestEventsRoute = createRoute({
  method: 'get',
  path: '/v1/requests/{id}/events',
  summary: 'Server-sent events for one request (event "state" carries the whole request)',
  security,
  request: { params: IdParams },
  responses: { 200: { content: { 'text/event-stream': { schema: z.string() } }, description: 'SSE stream' }, ...errors },
});

export const ListQuery = z.object({
  status: RequestStatus.optional(),
  riskLevel: z
    .string()
    .max(64)
    .optional()
    .openapi({ description: 'One risk level or several, comma-separated (low, medium, high, critical)', example: 'critical,high' }),
  agentId: z.string().max(200).optional().openapi({ description: "The agent's id or its name" }),
  action: z.string().max(128).optional().openapi({ description: 'Any spelling of the action name: compared in its normal form (wireTransfer = wire_transfer)' }),
  automationLevel: AutomationLevel.optional(),
  order: z
    .enum(LIST_ORDERS)
    .optional()
    .openapi({ description: 'urgent: risk level (critical first), then the SLA deadline or expiry soonest, then oldest (the default for status=pending); newest (the default otherwise); oldest' }),
  limit: z.coerce.number().int().min(1).max(500).optional(),
  cursor: z.string().max(200).optional().openapi({ description: "The previous page's nextCursor, with the same filters and order" }),
  actionableBy: z
    .string()
    .max(200)
    .optional()
    .openapi({
      description:
        'me: only the pending requests you may approve now (the server judges each as it would judge your vote). A page examines at most 2,000 pending requests, so it may hold fewer than limit while nextCursor is not null; counts and remaining count every pending request matching the other filters',
    }),
});

export const ListCounts = z
  .object({
    total: z.number().int().openapi({ description: 'Requests matching every filter' }),
    critical: z.number().int(),
    high: z.number().int(),
    medium: z.number().int(),
    low: z.number().int(),
  })
  .openapi('RequestCounts', { description: 'Per risk level: requests matching every filter but riskLevel' });

export const RequestPage = z.object({
  items: z.array(ApprovalRequest),
  nextCursor: z.string().nullable(),
  order: z.enum(LIST_ORDERS),
  counts: ListCounts,
  remaining: z.number().int().openapi({ description: 'How many matching requests follow this page' }),
});

export const listRequestsRoute = createRoute({
  method: 'get',
  path: '/v1/requests',
  summary: 'The queue (status=pending: most urgent first) and the history (newest first), filtered, paged, with counts per risk level',
  security,
  request: { query: ListQuery },
  responses: { 200: json(RequestPage, 'A page of requests'), ...errors },
});

export const reviewRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/reviews',
  summary: "Record one operator's vote: approve (as asked, with modified args, or an alternative) or reject",
  security,
  request: { params: IdParams, ...body(ReviewBody) },
  responses: { 200: json(ApprovalRequest, 'The request after the vote'), ...errors },
});

export const cancelRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/cancel',
  summary: 'The requesting agent withdraws a pending request',
  security,
  request: { params: IdParams, body: { content: { 'application/json': { schema: CancelBody } }, required: false } },
  responses: { 200: json(ApprovalRequest, 'The cancelled request'), ...errors },
});

export const AuditEntrySchema = z.object({
  seq: z.number(),
  at: z.string(),
  type: z.string(),
  requestId: z.string().nullable(),
  actor: z.object({ type: z.string(), id: z.string(), name: z.string() }),
  data: z.unknown(),
});

export const requestAuditRoute = createRoute({
  method: 'get',
  path: '/v1/requests/{id}/audit',
  summary: "One request's audit entries, in order",
  security,
  request: { params: IdParams },
  responses: { 200: json(z.object({ items: z.array(AuditEntrySchema) }), 'Audit entries'), ...errors },
});

export const AuditQuery = z.object({
  after: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  type: z
    .string()
    .max(1300)
    .optional()
    .openapi({ description: 'One event type or several, comma-separated (at most 20)', example: 'review_refused,mfa_locked' }),
  order: z.enum(['oldest', 'newest']).optional().openapi({ description: 'oldest first (the default) or newest first' }),
  requestId: z.string().max(100).optional(),
  /** An actor's id or name. */
  actor: z.string().max(200).optional(),
  /** ISO 8601 time or epoch milliseconds; `to` is exclusive. */
  from: z.string().max(40).optional(),
  to: z.string().max(40).optional(),
  /** `nextCursor` of the previous page. */
  cursor: z.string().max(200).optional(),
});

export const auditRoute = createRoute({
  method: 'get',
  path: '/v1/audit',
  summary: 'The audit trail in sequence order (oldest first, or ?order=newest), filtered by requestId, actor, type (one or several) and time (from/to); page with ?cursor= (or ?after=SEQ)',
  security,
  request: { query: AuditQuery },
  responses: { 200: json(z.object({ items: z.array(AuditEntrySchema), nextCursor: z.string().nullable() }), 'A page of audit entries, in the order asked'), ...errors },
});

export const NewOperatorBody = z.strictObject({
  name: z.string().min(1).max(100).regex(/^[A-Za-z0-9_.@-]+$/, 'letters, digits and _ . @ -'),
  roles: z.array(Role).min(1).max(6),
  groups: z.array(z.string().min(1).max(100)).max(50).optional(),
});

export const createOperatorRoute = createRoute({
  method: 'post',
  path: '/v1/operators',
  summary: 'Create an operator (admin); the token is shown once',
  security,
  request: body(NewOperatorBody),
  responses: {
    201: json(z.object({ id: z.string(), name: z.string(), roles: z.array(Role), token: z.string() }), 'The new operator and its token'),
    ...errors,
  },
});

export const listOperatorsRoute = createRoute({
  method: 'get',
  path: '/v1/operators',
  summary: 'Operators and their roles',
  security,
  responses: {
    200: json(
      z.object({
        items: z.array(
          z.object({ id: z.string(), name: z.string(), roles: z.array(Role), groups: z.array(z.string()), disabled: z.boolean(), createdAt: z.string(), lastUsedAt: z.string().nullable(), activeTokens: z.number().int() }),
        ),
      }),
      'Operators (removed ones are not listed); never a token',
    ),
    ...errors,
  },
});

export const NewKeyBody = z.strictObject({
  agent: z.string().min(1).max(100).regex(/^[A-Za-z0-9_.@-]+$/, 'letters, digits and _ . @ -'),
});

export const createKeyRoute = createRoute({
  method: 'post',
  path: '/v1/keys',
  summary: 'Create an API key for an agent (admin); the key is shown once',
  security,
  request: body(NewKeyBody),
  responses: {
    201: json(z.object({ agentId: z.string(), agentName: z.string(), keyId: z.string(), key: z.string() }), 'The new key'),
    ...errors,
  },
});

export const meRoute = createRoute({
  method: 'get',
  path: '/v1/me',
  summary: 'Who this credential belongs to',
  security,
  responses: { 200: json(z.object({ kind: z.enum(['agent', 'operator']), id: z.string(), name: z.string(), roles: z.array(Role) }), 'The caller'), ...errors },
});

export const policyRoute = createRoute({
  method: 'get',
  path: '/v1/policy',
  summary: 'The active policy: version, hash, source and the resolved settings',
  security,
  responses: { 200: json(z.object({ version: z.number(), hash: z.string(), source: z.string(), policy: z.unknown() }), 'Active policy'), ...errors },
});

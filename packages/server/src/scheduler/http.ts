/**
 * Escalation and deliveries over HTTP: extend a pending request's deadline (once, bounded, with
 * a reason), reassign it, escalate it now (one level up, with a reason), and list notification deliveries (`?status=failed` to see what did
 * not get through). Handlers only translate; the engine decides and audits.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ApprovalRequest, ErrorBody, MAX_ESCALATION_REASON, MAX_EXTENSION_MS } from '@countersign/core';
import type { Engine } from '../engine/engine.ts';
import { json, security, type ApiEnv as Env } from '../http/routes/contract.ts';


const errors = {
  400: json(ErrorBody, 'Bad input'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'Not allowed (NOT_ELIGIBLE, SELF_REVIEW, FORBIDDEN)'),
  404: json(ErrorBody, 'Not found'),
  409: json(ErrorBody, 'Conflict (ALREADY_DECIDED, ALREADY_EXTENDED, ILLEGAL_TRANSITION)'),
};
const IdParams = z.object({ id: z.string().regex(/^req_[0-9a-z]{26}$/, 'a request id looks like req_…') });
const Reason = z.string().min(1).max(2_000).refine((s) => s.trim().length > 0, 'a reason is required');

export const ExtendBody = z.strictObject({
  /** At most the current level's own period (and never more than a day). */
  seconds: z.number().int().min(1).max(MAX_EXTENSION_MS / 1000),
  reason: Reason,
});

export const ReassignBody = z
  .strictObject({
    operator: z.string().min(1).max(100).optional(),
    group: z.string().min(1).max(100).optional(),
    reason: Reason,
  })
  .refine((b) => (b.operator === undefined) !== (b.group === undefined), { message: 'give one operator or one group', path: ['operator'] });

export const EscalateBody = z.strictObject({
  /** One line, why this cannot wait for the level's deadline; recorded in the audit trail and told to the next level. */
  reason: z
    .string()
    .min(1)
    .max(MAX_ESCALATION_REASON)
    .refine((s) => s.trim().length > 0, 'a reason is required')
    .refine((s) => !/[\r\n\u2028\u2029]/.test(s), 'the reason is one line'),
  /** The level you saw: if the request has moved on since (a timeout, another reviewer), it is refused (ILLEGAL_TRANSITION, details.reason level_changed) rather than moved again. Without it, the same operator escalating the same request again within 60 s is a repeat: answered with the request as it is, not moved again. */
  fromLevel: z.number().int().min(0).max(1_000).optional(),
});

export const Delivery = z.object({
  id: z.string(),
  requestId: z.string().nullable(),
  channel: z.string(),
  event: z.string(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number(),
  lastError: z.string().nullable(),
  attemptLog: z.array(z.object({ at: z.string(), ok: z.boolean(), ms: z.number(), error: z.string().optional() })),
  createdAt: z.string(),
  updatedAt: z.string(),
  finishedAt: z.string().nullable(),
});

export const DeliveryQuery = z.object({
  status: z.enum(['pending', 'delivered', 'failed']).optional(),
  requestId: IdParams.shape.id.optional(),
  channel: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
  cursor: z.string().max(200).optional(),
});

export const extendRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/extend',
  summary: "Extend a pending request's current deadline, once, by at most the level's own period, with a reason (reviewers who may review it now)",
  security,
  request: { params: IdParams, body: { content: { 'application/json': { schema: ExtendBody } }, required: true } },
  responses: { 200: json(ApprovalRequest, 'The request with its new deadline'), ...errors },
});

export const reassignRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/reassign',
  summary: 'Hand a pending request to another operator or a group (they may then act on stages their role meets)',
  security,
  request: { params: IdParams, body: { content: { 'application/json': { schema: ReassignBody } }, required: true } },
  responses: { 200: json(ApprovalRequest, 'The reassigned request'), ...errors },
});

export const escalateRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/escalate',
  summary: "Escalate a pending request to its next level now, with a reason, as its level's timeout would (reviewers who may review it now; refused at the last level)",
  security,
  request: { params: IdParams, body: { content: { 'application/json': { schema: EscalateBody } }, required: true } },
  responses: { 200: json(ApprovalRequest, 'The request at its new level, with the new deadline'), ...errors },
});

export const deliveriesRoute = createRoute({
  method: 'get',
  path: '/v1/deliveries',
  summary: 'Notification deliveries, newest first (?status=failed: what did not get through after its retries)',
  security,
  request: { query: DeliveryQuery },
  responses: { 200: json(z.object({ items: z.array(Delivery), nextCursor: z.string().nullable() }), 'A page of deliveries'), ...errors },
});

export function registerEscalationRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  app.openapi(extendRoute, async (c) => c.json(await engine.extendDeadline(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(reassignRoute, async (c) => c.json(await engine.reassign(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(escalateRoute, async (c) => c.json(await engine.escalate(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(deliveriesRoute, async (c) => c.json(await engine.listDeliveries(c.get('principal'), c.req.valid('query')), 200));
}

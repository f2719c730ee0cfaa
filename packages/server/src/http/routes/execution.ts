/**
 * The claim and execution report over HTTP (issue 12): `POST /v1/requests/:id/execution`.
 * `{status: started, receipt}` claims an approval once, within its validity (→ `executing`);
 * `{status: succeeded | failed, result?, error?}` then closes the record. The handler only
 * translates; the engine's execution desk (engine/execution.ts) decides, writes and audits.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ApprovalRequest, ErrorBody, ExecutionBody } from '@countersign/core';
import type { Engine } from '../../engine/engine.ts';
import { RequestId, json, security, type ApiEnv as Env } from './contract.ts';

export const executionRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/execution',
  summary:
    'The requesting agent (or the service running the action, with its key) claims the approval once with its receipt ({status: started, receipt} → executing), then reports how it ran ({status: succeeded | failed})',
  security,
  request: { params: z.object({ id: RequestId }), body: { content: { 'application/json': { schema: ExecutionBody } }, required: true } },
  responses: {
    200: json(ApprovalRequest, 'The request: executing after a claim, executed / execution_failed after the report'),
    400: json(ErrorBody, 'Bad input (BAD_JSON, VALIDATION_FAILED)'),
    401: json(ErrorBody, 'Missing or unknown credential'),
    403: json(ErrorBody, 'An operator who did not file the request (FORBIDDEN)'),
    404: json(ErrorBody, "No such request, or another agent's (NOT_FOUND)"),
    409: json(ErrorBody, 'ALREADY_EXECUTED (claimed or reported before), RECEIPT_MISMATCH (another request, payload, approval or key), ILLEGAL_TRANSITION (not approved yet, or a report before the claim), ALREADY_DECIDED'),
    410: json(ErrorBody, 'RECEIPT_EXPIRED: the approval could be claimed until its expiresAt; file the request again'),
  },
});

export function registerExecutionRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  app.openapi(executionRoute, async (c) => c.json(await engine.reportExecution(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
}

/**
 * Operator views over HTTP (issue 18): `GET /v1/requests/count` (by status and risk level, with
 * the listing's filters) and `GET /v1/me/dashboard`. `GET /v1/requests?actionableBy=me` is the
 * listing's own route (contract.ts). The handlers only translate; the engine reads
 * (engine/queue.ts `readCounts`, engine/my-dashboard.ts).
 *
 * Registered before `GET /v1/requests/{id}`, whose id pattern would otherwise refuse "count".
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ApprovalRequest, ErrorBody, REQUEST_STATUSES, RISK_URGENCY } from '@countersign/core';
import type { Engine } from '../../engine/engine.ts';
import { OperatorMetricsBody } from './audit.ts';
import { ListCounts, ListQuery, json, security, type ApiEnv as Env } from './contract.ts';
import { clientIp } from './guard.ts';

const errors = {
  400: json(ErrorBody, 'Bad input (VALIDATION_FAILED names the field)'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'An agent key (these views are for operators)'),
};

const countOf = <T extends readonly string[]>(keys: T) => z.object(Object.fromEntries(keys.map((k) => [k, z.number().int()])) as Record<T[number], z.ZodNumber>);

export const requestCountRoute = createRoute({
  method: 'get',
  path: '/v1/requests/count',
  summary: 'How many requests match the filters, by status and by risk level',
  security,
  request: { query: ListQuery.pick({ status: true, riskLevel: true, agentId: true, action: true, automationLevel: true }) },
  responses: {
    200: json(
      z.object({
        total: z.number().int(),
        byStatus: countOf(REQUEST_STATUSES),
        byRisk: countOf(RISK_URGENCY),
        byStatusAndRisk: z.record(z.string(), z.record(z.string(), z.number().int())).openapi({ description: 'status → risk level → count, only the pairs that occur' }),
      }),
      'Counts',
    ),
    ...errors,
  },
});

export const myDashboardRoute = createRoute({
  method: 'get',
  path: '/v1/me/dashboard',
  summary: 'What I may approve now (most urgent first), my review metrics, and my recent actions',
  security,
  request: { query: z.object({ period: z.string().max(20).optional().openapi({ description: "The metrics' period, a duration up to 366d (default 7d)" }) }) },
  responses: {
    200: json(
      z.object({
        operator: z.object({ id: z.string(), name: z.string(), roles: z.array(z.string()) }),
        pending: z.object({ items: z.array(ApprovalRequest), counts: ListCounts, remaining: z.number().int(), nextCursor: z.string().nullable() }).openapi({
          description: 'The first page of GET /v1/requests?actionableBy=me (10 items); nextCursor continues it there',
        }),
        metrics: OperatorMetricsBody,
        recent: z
          .array(z.object({ seq: z.number().int(), at: z.string(), type: z.string(), requestId: z.string().nullable() }))
          .openapi({ description: 'My latest 20 audit entries, newest first (type, time and request only)' }),
      }),
      'My dashboard',
    ),
    ...errors,
  },
});

export function registerOperatorViews(app: OpenAPIHono<Env>, engine: Engine, trustProxy: boolean | undefined): void {
  app.openapi(requestCountRoute, async (c) => c.json(await engine.countRequests(c.get('principal'), c.req.valid('query')), 200));
  app.openapi(myDashboardRoute, async (c) => c.json(await engine.myDashboard(c.get('principal'), { period: c.req.valid('query').period }, { ip: clientIp(c, trustProxy) }), 200));
}

/**
 * `GET /v1/forwarding`: SIEM forwarding's state per destination (forwarding/status.ts) — cursor,
 * lag behind the trail, lease holder, last error. Admins and auditors: it names the SIEM's
 * addresses (an HTTPS destination by its origin only: its path may be its credential), never
 * its credentials, and each destination's `/metrics` label.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody } from '@countersign/core';
import type { Engine } from '../../engine/engine.ts';
import type { ForwardDestination } from '../../forwarding/config.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';

const DestinationStatusSchema = z.object({
  destination: z.string(),
  metricsLabel: z.string(),
  kind: z.enum(['syslog', 'http', 'unknown']),
  configured: z.boolean(),
  cursor: z.number(),
  head: z.number(),
  lag: z.number(),
  state: z.enum(['ok', 'failing', 'pending']),
  leasedBy: z.string().nullable(),
  leaseUntil: z.string().nullable(),
  lastError: z.string().nullable(),
  lastErrorAt: z.string().nullable(),
  deliveredAt: z.string().nullable(),
});
export const ForwardingStatusSchema = z.object({ head: z.number(), destinations: z.array(DestinationStatusSchema) });

export const forwardingRoute = createRoute({
  method: 'get',
  path: '/v1/forwarding',
  summary: "SIEM forwarding: each destination's cursor, lag behind the trail, lease and last error (admin, auditor)",
  security,
  responses: {
    200: json(ForwardingStatusSchema, 'One item per configured destination, then any stored cursor the config no longer names'),
    401: json(ErrorBody, 'Missing or unknown credential'),
    403: json(ErrorBody, 'Not an admin or auditor (FORBIDDEN)'),
  },
});

export function registerForwardingRoutes(app: OpenAPIHono<Env>, engine: Engine, destinations: readonly ForwardDestination[]): void {
  app.openapi(forwardingRoute, async (c) => {
    const p = c.get('principal');
    if (p.kind !== 'operator' || !p.roles.some((r) => r === 'admin' || r === 'auditor')) throw new CountersignError('FORBIDDEN', 'forwarding status needs the admin or auditor role');
    return c.json(ForwardingStatusSchema.parse(await engine.forwardingStatus(destinations, Date.now())), 200);
  });
}

/**
 * Policy tooling over HTTP: `POST /v1/policy/replay` re-evaluates the stored requests of a period
 * under a candidate policy before it is deployed (engine/replay.ts decides and reads; core
 * compares). Admins and auditors; the candidate is refused with the same POLICY_INVALID details as
 * a startup or reload; one replay at a time per server process (429 RATE_LIMITED otherwise), since
 * a replay of the largest period runs a hundred thousand evaluations.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody } from '@countersign/core';
import type { Engine } from '../../engine/engine.ts';
import { MAX_REPLAY_LIMIT, replayPolicy } from '../../engine/replay.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';

export const ReplayBody = z.strictObject({
  policy: z.string().min(1).max(1_000_000).describe('the candidate policy, as YAML'),
  since: z.string().min(1).max(64).describe('a duration back from now (30d, 12h) or an ISO 8601 time'),
  limit: z.number().int().min(1).max(MAX_REPLAY_LIMIT).optional().describe(`most requests scanned, newest first (default 10000, at most ${MAX_REPLAY_LIMIT})`),
});

const Change = z.object({
  from: z.string(),
  to: z.string(),
  count: z.number(),
  examples: z.array(z.object({ id: z.string(), agent: z.string(), action: z.string(), from: z.string(), to: z.string() })),
});
const Load = z.object({ reviews: z.number(), approvals: z.number(), stepUp: z.number(), reviewsPerDay: z.number(), approvalsPerDay: z.number() });

export const ReplayReportSchema = z.object({
  candidate: z.object({ hash: z.string(), rules: z.number() }),
  period: z.object({ from: z.string(), to: z.string(), coveredFrom: z.string(), days: z.number() }),
  scanned: z.number(),
  replayed: z.number(),
  skipped: z.number(),
  limit: z.number(),
  limitReached: z.boolean(),
  changed: z.number(),
  routes: z.object({ before: z.record(z.string(), z.number()), after: z.record(z.string(), z.number()), changes: z.array(Change) }),
  riskLevels: z.object({ before: z.record(z.string(), z.number()), after: z.record(z.string(), z.number()), changes: z.array(Change) }),
  approvers: z.object({ changes: z.array(Change) }),
  stepUp: z.object({ before: z.number(), after: z.number(), changes: z.array(Change) }),
  escalationStart: z.object({ changes: z.array(Change) }),
  reviewLoad: z.object({ before: Load, after: Load }),
  rules: z.array(z.object({ name: z.string(), before: z.number(), after: z.number() })),
  reproduced: z.object({ checked: z.number(), differed: z.number(), unchecked: z.number(), examples: z.array(Change.shape.examples.element) }),
  caveats: z.array(z.string()),
});

export const replayRoute = createRoute({
  method: 'post',
  path: '/v1/policy/replay',
  summary: 'What-if replay: how stored requests of a period would be routed, assessed and reviewed under a candidate policy (admin, auditor)',
  security,
  request: { body: { content: { 'application/json': { schema: ReplayBody } }, required: true } },
  responses: {
    200: json(ReplayReportSchema, 'Counts before and after, changes with a few examples each, and what could not be replayed exactly'),
    400: json(ErrorBody, 'POLICY_INVALID (details.errors names every wrong key), VALIDATION_FAILED (since, limit)'),
    401: json(ErrorBody, 'Missing or unknown credential'),
    403: json(ErrorBody, 'Not an admin or auditor (FORBIDDEN)'),
    429: json(ErrorBody, 'Another replay is running on this server (RATE_LIMITED)'),
  },
});

export function registerPolicyRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  let running = false;
  app.openapi(replayRoute, async (c) => {
    if (running) throw new CountersignError('RATE_LIMITED', 'another policy replay is running on this server; try again when it is done');
    running = true;
    try {
      // Read through its own schema: what leaves is exactly what /openapi.json says.
      return c.json(ReplayReportSchema.parse(await replayPolicy(engine, c.get('principal'), c.req.valid('json'))), 200);
    } finally {
      running = false;
    }
  });
}

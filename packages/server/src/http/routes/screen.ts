/**
 * Screening over HTTP: `POST /v1/screen` (agents and operators) screens one text for prompt
 * injection under the active policy's `screening:` section. Handlers only translate; the
 * decision is core's `screen()`, run by the engine's screener (off the event loop when large).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody } from '@countersign/core';
import { ScreenRequest } from '@countersign/core/screen/api';
import type { Engine } from '../../engine/engine.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';

const errors = {
  400: json(ErrorBody, 'Bad input (VALIDATION_FAILED, BAD_JSON)'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  413: json(ErrorBody, 'Body larger than the server limit (BODY_TOO_LARGE)'),
};

export const ScreenResponse = z.object({
  score: z.number().describe('Calibrated probability that the input carries a prompt injection'),
  severity: z.enum(['none', 'low', 'medium', 'high', 'critical']),
  action: z.enum(['allow', 'review', 'escalate', 'block', 'sanitize']),
  findings: z.array(
    z.object({
      kind: z.string(),
      span: z.object({ start: z.number().int(), end: z.number().int() }),
      score: z.number(),
      why: z.string(),
      path: z.string().optional(),
    }),
  ),
  defendedInput: z.string().optional(),
});

export const screenRoute = createRoute({
  method: 'post',
  path: '/v1/screen',
  summary: 'Screen a text (channel user) or data an agent read (channel content) for prompt injection',
  security,
  request: { body: { content: { 'application/json': { schema: ScreenRequest } }, required: true } },
  responses: { 200: json(ScreenResponse, 'Score, severity, action, findings; defendedInput when the action is sanitize'), ...errors },
});

const IdParams = z.object({ id: z.string().min(1).max(200) });
const Anything = z.record(z.string(), z.unknown());

/** A screening verdict: separate from approve/reject (approving an action does not say its text was benign). */
export const VerdictBody = z.strictObject({
  finding: z.number().int().min(0).max(10_000).optional().describe("Index into the request's assessment.screening.findings; omit to judge the request as a whole (an audit-sampled one)"),
  verdict: z.enum(['injection', 'not_injection', 'unsure']),
});

const Verdict = z.object({
  id: z.string(),
  requestId: z.string(),
  finding: z.number().int().nullable(),
  field: z.string(),
  kind: z.string(),
  score: z.number(),
  action: z.string(),
  audited: z.boolean(),
  verdict: z.enum(['injection', 'not_injection', 'unsure']),
  operatorId: z.string(),
  createdAt: z.string(),
});

const verdictErrors = { ...errors, 403: json(ErrorBody, 'Not an authorised reviewer (agents never are)'), 404: json(ErrorBody, 'No such request') };

export const giveVerdictRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/screening/verdicts',
  summary: 'Give a screening verdict on a finding (injection, not_injection, unsure); reviewers holding screening.learning.verdictRoles',
  security,
  request: { params: IdParams, body: { content: { 'application/json': { schema: VerdictBody } }, required: true } },
  responses: { 201: json(Verdict, 'Recorded and audited'), ...verdictErrors },
});

export const listVerdictsRoute = createRoute({
  method: 'get',
  path: '/v1/requests/{id}/screening/verdicts',
  summary: "A request's screening verdicts, and whether it is in the audit sample",
  security,
  request: { params: IdParams },
  responses: { 200: json(z.object({ items: z.array(Verdict), sampled: z.boolean() }), 'Verdicts, oldest first'), ...verdictErrors },
});

export const reportRoute = createRoute({
  method: 'get',
  path: '/v1/screening/report',
  summary: 'The learning loop: detection, FP and FN rates from accepted verdicts; a threshold proposal per channel with its measured effect (never applied here)',
  security,
  responses: { 200: json(Anything, 'window, guard, rates, calibration, auditSample'), ...verdictErrors },
});

export const patternsRoute = createRoute({
  method: 'get',
  path: '/v1/screening/patterns',
  summary: 'Pattern suggestions for admins: n-grams that separate confirmed attacks; never enabled automatically',
  security,
  responses: { 200: json(Anything, 'suggestions, note'), ...verdictErrors },
});

export const retrainRoute = createRoute({
  method: 'post',
  path: '/v1/screening/retrain',
  summary: 'Retrain the screening model from accepted verdicts now (admins): the evaluation gate decides; adopted only if no committed set regresses past the tolerance or a floor',
  security,
  responses: {
    200: json(Anything, 'outcome (adopted | refused | superseded | skipped | failed), reason, report (per set: baseline, candidate, delta, floor, ok), inUse'),
    401: errors[401],
    403: json(ErrorBody, 'Not an admin'),
    429: json(ErrorBody, 'A retrain is already running on this server (RATE_LIMITED)'),
  },
});

export const modelRoute = createRoute({
  method: 'get',
  path: '/v1/screening/model',
  summary: 'The screening model the create path uses: the committed one (the frozen baseline) or the adopted retrain, and why',
  security,
  responses: { 200: json(Anything, 'source, seq, hash, version, why?'), 401: errors[401], 403: json(ErrorBody, 'Agent keys') },
});

export function registerScreenRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  app.openapi(screenRoute, async (c) => {
    const r = await engine.screenText(c.get('principal'), c.req.valid('json'));
    return c.json({ ...r, findings: r.findings.map((f) => ({ ...f, span: { ...f.span } })) }, 200);
  });
  app.openapi(giveVerdictRoute, async (c) => c.json(await engine.screening.giveVerdict(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 201));
  app.openapi(listVerdictsRoute, async (c) => c.json(await engine.screening.verdictsFor(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(reportRoute, async (c) => c.json((await engine.screening.report(c.get('principal'))) as unknown as Record<string, unknown>, 200));
  app.openapi(retrainRoute, async (c) => c.json((await engine.screenModels.retrain(c.get('principal'))) as unknown as Record<string, unknown>, 200));
  app.openapi(modelRoute, async (c) => {
    if (c.get('principal').kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot read the screening model');
    return c.json((await engine.screenModels.refresh()) as unknown as Record<string, unknown>, 200);
  });
  app.openapi(patternsRoute, async (c) => c.json((await engine.screening.patterns(c.get('principal'))) as unknown as Record<string, unknown>, 200));
}

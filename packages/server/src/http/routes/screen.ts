/**
 * Screening over HTTP: `POST /v1/screen` (agents and operators) screens one text for prompt
 * injection under the active policy's `screening:` section. Handlers only translate; the
 * decision is core's `screen()`, run by the engine's screener (off the event loop when large).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ErrorBody } from '@countersign/core';
import { ScreenRequest } from '@countersign/core/screen';
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

export function registerScreenRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  app.openapi(screenRoute, async (c) => c.json(await engine.screenText(c.get('principal'), c.req.valid('json')), 200));
}

/**
 * SCIM bearer tokens over HTTP (admin; issue 20): `POST /v1/scim/tokens` makes one (shown once;
 * only its SHA-256 is kept), `GET` lists them, `DELETE /v1/scim/tokens/{id}` revokes one (the
 * next SCIM call with it is refused: tokens are looked up on every call, not cached).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody } from '@countersign/core';
import type { Provisioning } from '../../identity/provisioning.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';

const errors = {
  400: json(ErrorBody, 'Bad input'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'Not an admin'),
  404: json(ErrorBody, 'No such token, or SCIM is not configured'),
};
const TokenView = z.object({
  id: z.string(),
  name: z.string(),
  status: z.enum(['active', 'revoked', 'invalid']),
  createdAt: z.string(),
  createdBy: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});

const createTokenRoute = createRoute({
  method: 'post',
  path: '/v1/scim/tokens',
  summary: 'Create a SCIM bearer token for the identity provider (admin); shown once',
  security,
  request: { body: { content: { 'application/json': { schema: z.strictObject({ name: z.string().min(1).max(64) }) } }, required: true } },
  responses: { 201: json(z.object({ id: z.string(), name: z.string(), token: z.string(), createdAt: z.string() }), 'The token (only now)'), ...errors },
});
const listTokensRoute = createRoute({
  method: 'get',
  path: '/v1/scim/tokens',
  summary: 'SCIM bearer tokens (admin): never the tokens',
  security,
  responses: { 200: json(z.object({ items: z.array(TokenView) }), 'Tokens'), ...errors },
});
const revokeTokenRoute = createRoute({
  method: 'delete',
  path: '/v1/scim/tokens/{id}',
  summary: 'Revoke a SCIM bearer token (admin); refused from the next call on',
  security,
  request: { params: z.object({ id: z.string().min(1).max(200) }) },
  responses: { 200: json(TokenView, 'The revoked token'), ...errors },
});

export function registerScimTokenRoutes(app: OpenAPIHono<Env>, provisioning: Provisioning | null): void {
  const need = () => {
    if (!provisioning || !provisioning.settings.scim?.enabled) throw new CountersignError('NOT_FOUND', 'SCIM is not configured on this server (COUNTERSIGN_IDENTITY_FILE with scim: {enabled: true})');
    return provisioning;
  };
  app.openapi(createTokenRoute, async (c) => c.json(await need().createScimToken(c.get('principal'), c.req.valid('json').name), 201));
  app.openapi(listTokensRoute, async (c) => c.json({ items: await need().listScimTokens(c.get('principal')) }, 200));
  app.openapi(revokeTokenRoute, async (c) => c.json(await need().revokeScimToken(c.get('principal'), c.req.valid('param').id), 200));
}

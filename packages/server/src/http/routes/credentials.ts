/**
 * The credential lifecycle over HTTP (issue 13): agent keys listed, revoked and rotated;
 * operators updated (roles, groups, disabled), removed and given a new token. Admins only; the
 * engine's credentials module decides and audits. `:id` takes an id or a name (an agent's name
 * for a key, when that agent has one usable key), and `me` for operators.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ErrorBody, Role } from '@countersign/core';
import type { Engine } from '../../engine/engine.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';

const errors = {
  400: json(ErrorBody, 'Bad input'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'Not an admin, or the target outranks you'),
  404: json(ErrorBody, 'No such key or operator'),
  409: json(ErrorBody, 'ILLEGAL_TRANSITION: the last active admin, or a key no longer valid'),
};
const Ref = z.object({ id: z.string().min(1).max(200) });
const body = <T extends z.ZodType>(schema: T, required = true) => ({ body: { content: { 'application/json': { schema } }, required } });

export const KeyView = z.object({
  id: z.string(),
  agentId: z.string(),
  agentName: z.string(),
  status: z.enum(['active', 'expiring', 'revoked', 'expired', 'invalid']),
  createdAt: z.string(),
  createdBy: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
export const OperatorView = z.object({
  id: z.string(),
  name: z.string(),
  roles: z.array(Role),
  groups: z.array(z.string()),
  disabled: z.boolean(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  activeTokens: z.number().int(),
});
export const RotateKeyBody = z.strictObject({ graceSeconds: z.number().int().min(0).max(7 * 86_400).optional() });
export const OperatorPatch = z.strictObject({
  roles: z.array(Role).min(1).max(6).optional(),
  groups: z.array(z.string().min(1).max(64).regex(/^[A-Za-z0-9_.@-]+$/, 'letters, digits and _ . @ -')).max(50).optional(),
  disabled: z.boolean().optional(),
});

const listKeysRoute = createRoute({
  method: 'get',
  path: '/v1/keys',
  summary: 'Agent API keys (admin): ids, agents, status, created and last-used times; never the keys',
  security,
  responses: { 200: json(z.object({ items: z.array(KeyView) }), 'Keys'), ...errors },
});
const revokeKeyRoute = createRoute({
  method: 'delete',
  path: '/v1/keys/{id}',
  summary: 'Revoke an agent API key (admin); every server refuses it within 2 s, open streams included',
  security,
  request: { params: Ref },
  responses: { 200: json(KeyView, 'The revoked key'), ...errors },
});
const rotateKeyRoute = createRoute({
  method: 'post',
  path: '/v1/keys/{id}/rotate',
  summary: 'Give the agent a new key (shown once); the old one stays valid for graceSeconds (default 0)',
  security,
  request: { params: Ref, ...body(RotateKeyBody, false) },
  responses: {
    200: json(z.object({ keyId: z.string(), agentId: z.string(), agentName: z.string(), key: z.string(), previousKeyId: z.string(), previousValidUntil: z.string() }), 'The new key'),
    ...errors,
  },
});
const patchOperatorRoute = createRoute({
  method: 'patch',
  path: '/v1/operators/{id}',
  summary: "Change an operator's roles, groups or disabled state (admin); disabling ends their sessions",
  security,
  request: { params: Ref, ...body(OperatorPatch) },
  responses: { 200: json(OperatorView, 'The operator now'), ...errors },
});
const removeOperatorRoute = createRoute({
  method: 'delete',
  path: '/v1/operators/{id}',
  summary: 'Remove an operator (admin): every token revoked, every session ended; their past reviews stay',
  security,
  request: { params: Ref },
  responses: { 200: json(z.object({ operatorId: z.string(), name: z.string(), removed: z.literal(true), revokedTokenIds: z.array(z.string()) }), 'Removed'), ...errors },
});
const rotateTokenRoute = createRoute({
  method: 'post',
  path: '/v1/operators/{id}/token',
  summary: 'Give an operator a new token (admin; shown once); their old tokens are revoked and sessions ended. Rotating your own (`me`) ends anyone else\'s hold on your credential (four-eyes)',
  security,
  request: { params: Ref },
  responses: {
    200: json(z.object({ operatorId: z.string(), name: z.string(), tokenId: z.string(), token: z.string(), revokedTokenIds: z.array(z.string()) }), 'The new token'),
    ...errors,
  },
});

export function registerCredentialRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  const credentials = engine.credentials;
  app.openapi(listKeysRoute, async (c) => c.json({ items: await credentials.listKeys(c.get('principal')) }, 200));
  app.openapi(revokeKeyRoute, async (c) => c.json(await credentials.revokeKey(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(rotateKeyRoute, async (c) => {
    c.header('cache-control', 'no-store');
    const given = c.req.header('content-type') ? c.req.valid('json') : {};
    return c.json(await credentials.rotateKey(c.get('principal'), c.req.valid('param').id, given ?? {}), 200);
  });
  app.openapi(patchOperatorRoute, async (c) => c.json(await credentials.updateOperator(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(removeOperatorRoute, async (c) => c.json(await credentials.removeOperator(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(rotateTokenRoute, async (c) => {
    c.header('cache-control', 'no-store');
    return c.json(await credentials.rotateToken(c.get('principal'), c.req.valid('param').id), 200);
  });
}

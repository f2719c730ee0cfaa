/**
 * Per-agent configuration over HTTP (issue 18): `GET/PUT /v1/agents/{name}/config`. The body of
 * a PUT is the whole overlay (`{}` clears it), validated by core exactly as the policy file's
 * `agents.<name>` (POLICY_INVALID names every wrong key). A change that loosens the gate answers
 * 202 with the `countersign.agent_config` request another admin must approve; anything else is
 * applied at once (200). Handlers only translate; engine/agent-config.ts decides and audits.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ErrorBody } from '@countersign/core';
import type { Engine } from '../../engine/engine.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';

/** An agent by id or by name (refs.ts). */
const NameParams = z.object({ name: z.string().min(1).max(200) });
const Setting = z.object({
  key: z.string(),
  value: z.unknown(),
  source: z.enum(['overlay', 'agent', 'policy', 'default']),
  from: z.string().nullable(),
  overlay: z.object({ value: z.unknown(), applies: z.boolean() }).optional().describe('the overlay writes this key: its value, and whether it applies (false: the file is as strict or stricter)'),
});
const Loosens = z.array(z.object({ key: z.string(), why: z.string() }));

export const AgentConfigView = z.object({
  agent: z.object({ id: z.string(), name: z.string() }),
  version: z.number().describe('the overlay version in force (0: none)'),
  integrity: z.enum(['ok', 'failed']).describe('failed: the stored overlay fails its MAC, and the agent is refused until an admin sets it again'),
  overlay: z.record(z.string(), z.unknown()).describe('what PUT set, as written'),
  baselines: z.record(z.string(), z.unknown()).describe('for each key the overlay loosens, the policy file value it was approved against; it stops applying once the file is stricter'),
  effective: z.array(Setting).describe('every setting that applies to the agent, with where it came from: overlay (the API), agent (the file’s agents.<name>), policy (the file’s global section), default'),
  singleAdmin: z.boolean().describe('policy admin.singleAdmin: loosening applies without a second admin'),
  versions: z.array(z.object({ version: z.number(), hash: z.string(), setAt: z.string(), setBy: z.string(), requestId: z.string().nullable() })),
});

export const AgentConfigPutResult = z.object({
  status: z.enum(['applied', 'unchanged', 'pending_approval']),
  version: z.number().optional(),
  requestId: z.string().optional().describe('pending_approval: the countersign.agent_config request another admin must approve'),
  loosens: Loosens.optional(),
  approvers: z.array(z.object({ id: z.string(), name: z.string() })).optional().describe('pending_approval: the admins who may approve it (empty: nobody, it waits and expires)'),
});

const errors = {
  400: json(ErrorBody, 'POLICY_INVALID (details.errors names every wrong key, as the policy file would)'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'Not an admin (or, to read, an auditor): FORBIDDEN'),
  404: json(ErrorBody, 'No such agent'),
  409: json(ErrorBody, 'PAYLOAD_CHANGED: another change landed meanwhile'),
};

const getConfigRoute = createRoute({
  method: 'get',
  path: '/v1/agents/{name}/config',
  summary: "An agent's configuration: its overlay, the effective settings and where each came from, its versions (admin, auditor)",
  security,
  request: { params: NameParams },
  responses: { 200: json(AgentConfigView, 'The configuration'), ...errors },
});

const putConfigRoute = createRoute({
  method: 'put',
  path: '/v1/agents/{name}/config',
  summary: "Set an agent's configuration overlay (admin): applied at once unless it loosens the gate, which another admin must approve",
  security,
  request: { params: NameParams, body: { content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } }, required: true } },
  responses: {
    200: json(AgentConfigPutResult, 'Applied (or unchanged)'),
    202: json(AgentConfigPutResult, 'It loosens the gate: filed as a countersign.agent_config request for another admin'),
    ...errors,
  },
});

export function registerAgentRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  app.openapi(getConfigRoute, async (c) => c.json(AgentConfigView.parse(await engine.agentConfigs.view(c.get('principal'), c.req.valid('param').name)), 200));
  app.openapi(putConfigRoute, async (c) => {
    const out = await engine.agentConfigs.put(c.get('principal'), c.req.valid('param').name, c.req.valid('json'));
    return c.json(AgentConfigPutResult.parse(out), out.status === 'pending_approval' ? 202 : 200);
  });
}

/**
 * The audit trail over HTTP: the public key, signed checkpoints, RFC 9162-shaped proofs and
 * the JSON Lines export. Anyone authenticated may fetch the public key (agents check decision
 * receipts with it); the trail itself is for operators (auditors included).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CountersignError, ErrorBody, REGULATIONS, SignedCheckpoint, SignedHandover, complianceCsv, complianceMarkdown } from '@countersign/core';
import { stream } from 'hono/streaming';
import type { Engine } from '../../engine/engine.ts';
import type { Principal } from '../../engine/principal.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';


const errors = {
  400: json(ErrorBody, 'Bad input'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'Not allowed'),
  404: json(ErrorBody, 'Not found'),
};

const Size = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const Seq = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const publicKeyRoute = createRoute({
  method: 'get',
  path: '/v1/audit/public-key',
  summary: 'The Ed25519 public key (PEM, SubjectPublicKeyInfo) that signs checkpoints and decision receipts',
  security,
  responses: { 200: { content: { 'application/x-pem-file': { schema: z.string() } }, description: 'PEM; header x-countersign-key-id names the key' }, ...errors },
});

export const keysRoute = createRoute({
  method: 'get',
  path: '/v1/audit/keys',
  summary: 'The signing keys\' chain: the current key id and every hand-over (key rotation), each signed by both its old and its new key',
  security,
  responses: { 200: json(z.object({ current: z.string(), handovers: z.array(SignedHandover) }), 'Follow it from a key you pinned; never trust it unless it starts at that key'), ...errors },
});

export const checkpointRoute = createRoute({
  method: 'get',
  path: '/v1/audit/checkpoint',
  summary: 'The latest signed checkpoint {treeSize, rootHash, timestamp, keyId, signature}',
  security,
  responses: { 200: json(SignedCheckpoint, 'The latest checkpoint'), ...errors },
});

export const signCheckpointRoute = createRoute({
  method: 'post',
  path: '/v1/audit/checkpoints',
  summary: 'Sign a checkpoint of the trail as it is now (on demand); returns the newest checkpoint',
  security,
  responses: { 200: json(SignedCheckpoint, 'A checkpoint covering every committed entry'), ...errors },
});

const Hashes = z.array(z.string());

export const inclusionRoute = createRoute({
  method: 'get',
  path: '/v1/audit/proof/inclusion',
  summary: 'Inclusion proof of entry `seq` in the tree of `treeSize` entries (default: the latest checkpoint)',
  security,
  request: { query: z.object({ seq: Seq, treeSize: Size.optional() }) },
  responses: {
    200: json(
      z.object({
        seq: z.number(),
        leafIndex: z.number(),
        treeSize: z.number(),
        leaf: z.string(),
        leafHash: z.string(),
        rootHash: z.string(),
        inclusionPath: Hashes,
        checkpoint: SignedCheckpoint.nullable(),
      }),
      'RFC 9162 inclusion proof (leaf index is seq − 1; hashes base64)',
    ),
    ...errors,
  },
});

export const consistencyRoute = createRoute({
  method: 'get',
  path: '/v1/audit/proof/consistency',
  summary: 'Consistency proof from the tree of `from` entries to the tree of `to` (default: the latest checkpoint)',
  security,
  request: { query: z.object({ from: Size, to: Size.optional() }) },
  responses: {
    200: json(
      z.object({
        treeSize1: z.number(),
        treeSize2: z.number(),
        rootHash1: z.string(),
        rootHash2: z.string(),
        consistencyPath: Hashes,
        checkpoint1: SignedCheckpoint.nullable(),
        checkpoint2: SignedCheckpoint.nullable(),
      }),
      'RFC 9162 consistency proof (hashes base64)',
    ),
    ...errors,
  },
});

export const exportRoute = createRoute({
  method: 'get',
  path: '/v1/audit/export',
  summary: 'The trail as JSON Lines (header, entries with leaf hashes, checkpoints) up to `treeSize` (default: the latest checkpoint)',
  security,
  request: { query: z.object({ treeSize: Size.optional() }) },
  responses: { 200: { content: { 'application/x-ndjson': { schema: z.string() } }, description: 'countersign-audit-trail/v1' }, ...errors },
});

export const complianceRoute = createRoute({
  method: 'get',
  path: '/v1/reports/compliance',
  summary: 'Compliance report for a period: decisions, review times, SLA, escalations, overrides, violations, integrity, with the controls each section evidences',
  security,
  request: {
    query: z.object({
      regulation: z.enum(REGULATIONS),
      /** ISO 8601 time or epoch ms. */
      from: z.string().max(40),
      /** Default: now (exclusive). */
      to: z.string().max(40).optional(),
      format: z.enum(['json', 'markdown', 'csv']).optional(),
    }),
  },
  responses: {
    200: {
      content: { 'application/json': { schema: z.unknown() }, 'text/markdown': { schema: z.string() }, 'text/csv': { schema: z.string() } },
      description: 'The report (JSON by default; ?format=markdown or csv)',
    },
    ...errors,
  },
});

/** One operator's reviews over a period (`/v1/metrics/operators/:id`, and `metrics` of `/v1/me/dashboard`). */
export const OperatorMetricsBody = z.object({
  operator: z.object({ id: z.string(), name: z.string() }),
  period: z.string(),
  from: z.string(),
  to: z.string(),
  decisionsReviewed: z.number(),
  approvals: z.number(),
  rejections: z.number(),
  approvalRate: z.number().nullable(),
  overrides: z.number(),
  averageReviewSeconds: z.number().nullable(),
  slaCompliance: z.number().nullable(),
});

export const operatorMetricsRoute = createRoute({
  method: 'get',
  path: '/v1/metrics/operators/{id}',
  summary: "One operator's reviews over a period: decisions reviewed, approval rate, average review time, SLA compliance",
  security,
  request: { params: z.object({ id: z.string().min(1).max(100) }), query: z.object({ period: z.string().max(20).optional() }) },
  responses: {
    200: json(
      OperatorMetricsBody,
      'Operator metrics (id or name; default period 24h)',
    ),
    ...errors,
  },
});

function requireOperator(p: Principal): void {
  if (p.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'the audit trail needs an operator token');
}

export function registerAuditRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  const trail = engine.trail;

  app.openapi(publicKeyRoute, async (c) => {
    c.header('x-countersign-key-id', trail.key.keyId);
    c.header('content-type', 'application/x-pem-file');
    return c.body(trail.key.publicKeyPem, 200) as never;
  });

  app.openapi(keysRoute, async (c) => c.json(await trail.keyChain(), 200));

  app.openapi(checkpointRoute, async (c) => {
    const latest = await trail.latestCheckpoint();
    if (!latest) throw new CountersignError('NOT_FOUND', 'no checkpoint has been signed yet; POST /v1/audit/checkpoints signs one');
    const { createdAt: _createdAt, ...cp } = latest;
    return c.json(cp, 200);
  });

  app.openapi(signCheckpointRoute, async (c) => {
    requireOperator(c.get('principal'));
    return c.json(await trail.checkpoint(), 200);
  });

  app.openapi(inclusionRoute, async (c) => {
    requireOperator(c.get('principal'));
    const { seq, treeSize } = c.req.valid('query');
    return c.json(await trail.inclusionProof(seq, treeSize), 200);
  });

  app.openapi(consistencyRoute, async (c) => {
    requireOperator(c.get('principal'));
    const { from, to } = c.req.valid('query');
    return c.json(await trail.consistencyProof(from, to), 200);
  });

  app.openapi(complianceRoute, async (c) => {
    const q = c.req.valid('query');
    const latest = await trail.latestCheckpoint();
    const report = await engine.complianceReport(c.get('principal'), q, Date.now(), {
      treeSize: latest?.treeSize ?? 0,
      rootHash: latest?.rootHash ?? null,
      checkpointAt: latest?.timestamp ?? null,
      keyId: latest?.keyId ?? null,
    });
    if (q.format === 'markdown') return c.body(complianceMarkdown(report), 200, { 'content-type': 'text/markdown; charset=utf-8' }) as never;
    if (q.format === 'csv') {
      const name = `countersign-${report.regulation}-${report.from.slice(0, 10)}-${report.to.slice(0, 10)}.csv`;
      return c.body(complianceCsv(report), 200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': `attachment; filename="${name}"` }) as never;
    }
    return c.json(report, 200);
  });

  app.openapi(operatorMetricsRoute, async (c) =>
    c.json(await engine.operatorMetrics(c.get('principal'), c.req.valid('param').id, c.req.valid('query').period ?? '24h', Date.now()), 200),
  );

  app.openapi(exportRoute, async (c) => {
    requireOperator(c.get('principal'));
    const { treeSize } = c.req.valid('query');
    const lines = trail.exportLines(treeSize);
    // The first chunk (the header) is read before answering, so a bad treeSize is still a 400.
    const first = await lines.next();
    c.header('content-type', 'application/x-ndjson; charset=utf-8');
    return stream(c, async (out) => {
      if (!first.done) await out.write(`${first.value}\n`);
      for await (const chunk of lines) {
        if (out.aborted) break;
        await out.write(`${chunk}\n`);
      }
    }) as never;
  });
}

/**
 * `countersign-mcp serve`: Countersign itself as MCP tools, for an agent that asks on its own
 * initiative (the gateway, proxy.ts, is for asking on the agent's behalf).
 *
 * Credentials: requests and their status use the agent key (COUNTERSIGN_AGENT_KEY). Countersign
 * serves velocity, slicing and cool-down only to operators (`requireOperator` in the server's
 * guard service: an agent key gets FORBIDDEN). Those three tools therefore use COUNTERSIGN_TOKEN
 * when it is set — give them an `auditor` token, which reads but can never review — and
 * otherwise answer with an error saying exactly that, instead of pretending.
 */
import { Countersign, CountersignError, type ApprovalHandle, type ApprovalRequest } from '@countersign/client';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/** Longest wait inside one tool call: below the 60 s default request timeout of MCP clients. */
export const MAX_TOOL_WAIT_SECONDS = 50;

export interface ServeOptions {
  countersign: Countersign;
  /** Countersign URL, for the operator-only reads. */
  url: string;
  /** The agent key, for `/v1/me` (whose agent slicing is about by default). */
  agentKey: string;
  /** An operator token (ideally role auditor) for velocity, slicing and cool-down; without it those tools say they cannot. */
  operatorToken?: string | undefined;
  fetch?: typeof fetch | undefined;
}

const RiskLevel = z.enum(['low', 'medium', 'high', 'critical']);
const Json = z.record(z.string(), z.unknown());

const RequestState = {
  requestId: z.string(),
  status: z.string(),
  decided: z.boolean(),
  action: z.string(),
  riskLevel: z.string(),
  route: z.string(),
  outcome: z.string().nullable(),
  reason: z.string().nullable(),
  approvedAction: z.string().nullable(),
  approvedArgs: Json.nullable(),
  modified: z.boolean(),
  receiptVerified: z.boolean(),
  message: z.string(),
};

function stateOf(request: ApprovalRequest, receiptVerified: boolean) {
  const d = request.decision;
  const message =
    request.status === 'pending'
      ? `request ${request.id} is pending a human decision; call countersign_check_status with this requestId to keep waiting. Do not run the action yet.`
      : d?.outcome === 'approved'
        ? `approved${d.modified ? ' with modified args' : ''}${d.alternative ? ` (alternative ${d.alternative})` : ''}: run ${d.action} with approvedArgs, then nothing else`
        : `${d?.outcome ?? request.status}: do not run the action${d?.reason ? ` (${d.reason})` : ''}`;
  return {
    requestId: request.id,
    status: request.status,
    decided: request.status !== 'pending',
    action: request.action,
    riskLevel: request.assessment.riskLevel,
    route: request.assessment.route,
    outcome: d?.outcome ?? null,
    reason: d?.reason ?? null,
    approvedAction: d?.outcome === 'approved' ? d.action : null,
    approvedArgs: d?.outcome === 'approved' ? d.args : null,
    modified: d?.modified ?? false,
    receiptVerified,
    message,
  };
}

function ok(structured: Record<string, unknown>, text: string): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

function failure(err: unknown): CallToolResult {
  const code = err instanceof CountersignError ? err.code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return { content: [{ type: 'text', text: `${code}: ${message}` }], isError: true };
}

/** Waits up to `seconds` (≤ 50) for a decision; still pending is a normal answer. Checks the receipt of an approval. */
async function settle(handle: ApprovalHandle, seconds: number, signal: AbortSignal) {
  if (seconds > 0 && !handle.decided) {
    try {
      await handle.wait({ timeoutMs: Math.min(seconds, MAX_TOOL_WAIT_SECONDS) * 1000, signal });
    } catch (err) {
      if (!(err instanceof CountersignError && err.code === 'WAIT_TIMEOUT')) throw err;
    }
  }
  let verified = false;
  const decision = handle.request.decision;
  if (decision?.outcome === 'approved') {
    await handle.checkReceipt(decision); // RECEIPT_MISMATCH throws: never report a forged approval as one
    verified = true;
  }
  const state = stateOf(handle.request, verified);
  return ok(state, state.message);
}

export function createCountersignServer(options: ServeOptions): McpServer {
  const cs = options.countersign;
  const doFetch = options.fetch ?? fetch;
  const server = new McpServer({ name: 'countersign', version: '0.1.0' });

  async function operatorRead(path: string): Promise<unknown> {
    if (!options.operatorToken) {
      throw new CountersignError(
        'FORBIDDEN',
        'Countersign serves this to operators only, and an agent key may not read it. Set COUNTERSIGN_TOKEN for this MCP server to an operator token with the auditor role (it can read, never review).',
      );
    }
    const res = await doFetch(`${options.url.replace(/\/+$/, '')}${path}`, { headers: { authorization: `Bearer ${options.operatorToken}`, accept: 'application/json' } });
    const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
    if (!res.ok) throw new CountersignError((body.error?.code as 'FORBIDDEN') ?? 'INTERNAL', body.error?.message ?? `HTTP ${res.status}`);
    return body;
  }

  server.registerTool(
    'countersign_request_approval',
    {
      title: 'Ask Countersign for approval',
      description:
        'Propose an action for human (or policy) approval BEFORE doing it. Returns pending, approved (run exactly approvedAction with approvedArgs) or rejected (do not run). waitSeconds (at most 50) waits for the decision inside this call.',
      inputSchema: {
        action: z.string().min(1).max(128).describe('action name, e.g. delete_file'),
        args: Json.optional().describe('the arguments the action would run with'),
        description: z.string().max(20_000).optional(),
        confidence: z.number().min(0).max(1).optional(),
        riskLevel: RiskLevel.optional(),
        context: Json.optional().describe('target, evidence, blastRadius, reversible, value …'),
        alternatives: z.array(z.object({ name: z.string(), action: z.string(), args: Json.optional(), description: z.string().optional() })).max(20).optional(),
        idempotencyKey: z.string().min(1).max(200).optional().describe('the same key returns the same request (safe retries)'),
        waitSeconds: z.number().int().min(0).max(MAX_TOOL_WAIT_SECONDS).optional().describe(`wait up to this many seconds for a decision (≤ ${MAX_TOOL_WAIT_SECONDS})`),
      },
      outputSchema: RequestState,
      annotations: { title: 'Request approval', readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
    },
    async (input, extra) => {
      try {
        const { waitSeconds = 0, ...body } = input;
        const handle = await cs.requestApproval(body as Parameters<Countersign['requestApproval']>[0]);
        return await settle(handle, waitSeconds, extra.signal);
      } catch (err) {
        return failure(err);
      }
    },
  );

  server.registerTool(
    'countersign_check_status',
    {
      title: 'Check an approval request',
      description: `The state of a request this agent filed; waits (long-polls) up to waitSeconds (default ${MAX_TOOL_WAIT_SECONDS}) for its decision. Pending is a normal answer: call again.`,
      inputSchema: {
        requestId: z.string().min(1).max(200),
        waitSeconds: z.number().int().min(0).max(MAX_TOOL_WAIT_SECONDS).optional(),
      },
      outputSchema: RequestState,
      annotations: { title: 'Check status', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    async ({ requestId, waitSeconds = MAX_TOOL_WAIT_SECONDS }, extra) => {
      try {
        return await settle(await cs.handle(requestId), waitSeconds, extra.signal);
      } catch (err) {
        return failure(err);
      }
    },
  );

  const operatorTool = (
    name: string,
    title: string,
    description: string,
    inputSchema: Record<string, z.ZodType>,
    path: (input: Record<string, unknown>) => Promise<string>,
  ) =>
    server.registerTool(
      name,
      {
        title,
        description: `${description} Needs an operator (auditor) token: Countersign does not serve this to agent keys.`,
        inputSchema,
        outputSchema: { result: z.unknown() },
        annotations: { title, readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
      },
      async (input: Record<string, unknown>) => {
        try {
          const result = await operatorRead(await path(input));
          return ok({ result }, JSON.stringify(result));
        } catch (err) {
          return failure(err);
        }
      },
    );

  const ref = z.string().min(1).max(200);
  operatorTool(
    'countersign_check_velocity',
    'Approver velocity',
    "An approver's high/critical approvals this hour and day against the limits.",
    { approver: ref.describe('operator id or name') },
    async (i) => `/v1/approvers/${encodeURIComponent(String(i.approver))}/velocity`,
  );
  operatorTool(
    'countersign_cooldown_status',
    'Approver cool-down',
    "Whether an approver is in a cool-down (automatic or set by a lead), and until when.",
    { approver: ref.describe('operator id or name') },
    async (i) => `/v1/approvers/${encodeURIComponent(String(i.approver))}/cooldown`,
  );
  operatorTool(
    'countersign_detect_slicing',
    'Slicing detection',
    "Slicing-attack detection over an agent's recent requests (default: this MCP server's own agent).",
    { agent: ref.optional().describe('agent id or name; default this agent'), windowMinutes: z.number().int().min(1).max(1440).optional() },
    async (i) => {
      let agent = typeof i.agent === 'string' ? i.agent : undefined;
      if (!agent) {
        const res = await doFetch(`${options.url.replace(/\/+$/, '')}/v1/me`, { headers: { authorization: `Bearer ${options.agentKey}` } });
        if (!res.ok) throw new CountersignError('UNAUTHENTICATED', `cannot tell which agent this is (GET /v1/me: HTTP ${res.status})`);
        agent = ((await res.json()) as { id: string }).id;
      }
      const q = typeof i.windowMinutes === 'number' ? `?windowMinutes=${i.windowMinutes}` : '';
      return `/v1/agents/${encodeURIComponent(agent)}/slicing${q}`;
    },
  );
  return server;
}

/**
 * Countersign for LangChain agents (`createAgent` of langchain@1) and LangGraph.
 *
 * - `middleware()` is an agent middleware whose `wrapToolCall` files each call of the chosen
 *   tools (keyed by the framework's tool call id) and runs it only with what Countersign
 *   approved, through the agent's own handler: a reviewer's edited args are passed on, but the
 *   tool is always the one the model called (a decision naming another action or an
 *   alternative is refused, RECEIPT_MISMATCH). A rejection never runs; its reason comes back to
 *   the model as an error ToolMessage.
 * - `durable` mode: while the request is pending, the call raises a LangGraph `interrupt()`
 *   carrying the request id, so the run stops and its checkpoint waits, in this process or
 *   another. `resumeCommand()` builds the `Command` that resumes each interrupt by its request
 *   id once Countersign decided; the resume value carries only the id (the decision is always
 *   read from Countersign), and a resume naming another request is refused.
 */
import { interrupt, Command } from '@langchain/langgraph';
import { createMiddleware, ToolMessage } from 'langchain';
import type { ApprovalHandle, Countersign } from '@countersign/client';
import { CountersignError, isCountersignError, type CreateRequestBody, type JsonObject } from '@countersign/core';
import { bodyFor, callKey, guardOptionsFor, toJsonObject, type ToolApprovalSpec } from '@countersign/adapter-kit';

/** `inline`: the tool call waits for the decision where it is. `durable`: it interrupts the graph until decided. */
export type ApprovalMode = 'inline' | 'durable';

/** How one tool's calls are put to reviewers (no alternatives: a reviewer may not change the tool). */
export type LangChainToolSpec<I = JsonObject> = Omit<ToolApprovalSpec<I>, 'alternatives'>;

export interface LangChainApprovalsOptions {
  /** Which tools need approval, and how each is put to reviewers (`true`: the defaults). */
  tools: Record<string, LangChainToolSpec<any> | true>;
  mode?: ApprovalMode;
  /**
   * Part of every idempotency key, with the run's `thread_id` when it has one, so threads never
   * share a request even when a model reuses tool call ids.
   */
  scope?: string;
  /** How long an inline wait lasts (ms). Default: the client's `decisionTimeoutMs`. */
  timeoutMs?: number;
}

/** The value of a Countersign interrupt: what a UI may show, and the request id to resume with. */
export interface ApprovalInterrupt {
  kind: 'countersign.approval';
  requestId: string;
  toolCallId: string;
  tool: string;
  action: string;
  args: JsonObject;
}

/** What `resumeCommand` reads interrupts from: an `invoke` result, or a `graph.getState()` snapshot. */
export type InterruptSource = { __interrupt__?: unknown } | { tasks?: ReadonlyArray<{ interrupts?: ReadonlyArray<unknown> }> };

const FRAMEWORK = 'langchain';

export class LangChainApprovals {
  readonly #cs: Countersign;
  readonly #specs: ReadonlyMap<string, LangChainToolSpec<JsonObject>>;
  readonly #mode: ApprovalMode;
  readonly #scope: string | undefined;
  readonly #timeoutMs: number | undefined;

  constructor(cs: Countersign, options: LangChainApprovalsOptions) {
    if (!options || typeof options.tools !== 'object' || options.tools === null) {
      throw new CountersignError('VALIDATION_FAILED', 'LangChainApprovals needs options.tools: the tools that need approval');
    }
    const mode = options.mode ?? 'inline';
    if (mode !== 'inline' && mode !== 'durable') throw new CountersignError('VALIDATION_FAILED', `unknown approval mode "${String(mode)}"`);
    const specs = new Map<string, LangChainToolSpec<JsonObject>>();
    for (const [name, spec] of Object.entries(options.tools)) {
      if (spec !== true && 'alternatives' in spec) {
        throw new CountersignError('VALIDATION_FAILED', `tool "${name}": alternatives would let a reviewer change the tool; the LangChain adapter takes none`);
      }
      specs.set(name, spec === true ? {} : (spec as LangChainToolSpec<JsonObject>));
    }
    this.#cs = cs;
    this.#mode = mode;
    this.#scope = options.scope;
    this.#timeoutMs = options.timeoutMs;
    this.#specs = specs;
  }

  /** The agent middleware (`createAgent({ middleware: [approvals.middleware()] })`). */
  middleware() {
    return createMiddleware({
      name: 'CountersignApprovals',
      wrapToolCall: async (request, handler) => {
        const name = request.toolCall.name;
        const spec = this.#specs.get(name);
        if (!spec) return handler(request);
        const callId = request.toolCall.id;
        if (typeof callId !== 'string' || callId.length === 0) {
          throw new CountersignError('VALIDATION_FAILED', `${name}: a tool call without an id cannot be tied to its approval`);
        }
        const args = toJsonObject(request.toolCall.args);
        const threadId = (request.runtime as { configurable?: { thread_id?: unknown } } | undefined)?.configurable?.thread_id;
        const key = callKey(FRAMEWORK, { scope: JSON.stringify([this.#scope ?? null, typeof threadId === 'string' ? threadId : null]), tool: name, callId, args });
        const options = guardOptionsFor(spec, spec.action ?? name, key, () => async () => undefined, this.#timeoutMs);
        if (this.#mode === 'durable') await approveDurably(this.#cs, bodyFor(options, args), { toolCallId: callId, tool: name });
        // Only the args change; the request's tool and the call's name stay the model's.
        const run = this.#cs.guard(async (approved: JsonObject) => handler({ ...request, toolCall: { ...request.toolCall, name, args: approved } }), options);
        try {
          return (await run(args)) as Awaited<ReturnType<typeof handler>>;
        } catch (err) {
          if (isCountersignError(err) && NOT_RUN.has(err.code)) {
            return new ToolMessage({ content: `Not run: ${err.message}`, tool_call_id: callId, name, status: 'error' });
          }
          throw err;
        }
      },
    });
  }

  /**
   * The `Command` that resumes every Countersign interrupt in `source`, each by its own request
   * id, once Countersign decided it. Waits up to `timeoutMs` (default 0) for undecided ones and
   * throws WAIT_TIMEOUT (`details.pending`) if any is still pending.
   */
  async resumeCommand(source: InterruptSource, options: { timeoutMs?: number } = {}): Promise<Command> {
    const found = approvalInterrupts(source);
    if (found.length === 0) throw new CountersignError('VALIDATION_FAILED', 'no Countersign approval interrupt to resume');
    const pending: { requestId: string; toolCallId: string }[] = [];
    for (const { value } of found) {
      const handle: ApprovalHandle = await this.#cs.handle(value.requestId);
      if (handle.status === 'pending' && (options.timeoutMs ?? 0) > 0) {
        await handle.wait({ timeoutMs: options.timeoutMs }).catch((err: unknown) => {
          if (!isCountersignError(err) || err.code !== 'WAIT_TIMEOUT') throw err;
        });
      }
      if (handle.status === 'pending') pending.push({ requestId: value.requestId, toolCallId: value.toolCallId });
    }
    if (pending.length > 0) {
      throw new CountersignError('WAIT_TIMEOUT', `${pending.length} tool call(s) still await a decision in Countersign`, { pending });
    }
    return new Command({ resume: Object.fromEntries(found.map(({ id, value }) => [id, { requestId: value.requestId }])) });
  }
}

/**
 * Files `body` (idempotently) and, while Countersign has not decided it, interrupts the LangGraph
 * node with the request id. Usable in any LangGraph node, not only through the middleware: the
 * node re-runs from its start on resume, re-attaches to the same request through the body's
 * idempotency key, and continues only once the request is decided. The resume value is only a
 * wake-up: the decision is always this call's own request, read from Countersign. While the
 * request is pending the resume must name it (`{ requestId }`); a resume naming another request
 * is refused (the node throws), and one naming it early interrupts again. Returns the decided request's handle; the decision itself is
 * checked by whoever runs the action (`handle.decision()` or `cs.guard`).
 */
export async function approveDurably(cs: Countersign, body: CreateRequestBody, call: { toolCallId: string; tool: string }): Promise<ApprovalHandle> {
  if (body.idempotencyKey === undefined) {
    throw new CountersignError('VALIDATION_FAILED', 'approveDurably needs an idempotencyKey, or each resume would file a new request');
  }
  const handle = await cs.requestApproval(body);
  while (handle.status === 'pending') {
    const value: ApprovalInterrupt = {
      kind: 'countersign.approval',
      requestId: handle.id,
      toolCallId: call.toolCallId,
      tool: call.tool,
      action: body.action,
      args: body.args ?? {},
    };
    // interrupt() throws to stop the node the first time; on resume it returns the resume value.
    const resumed: unknown = interrupt(value);
    const named = (resumed as { requestId?: unknown } | null)?.requestId;
    if (named !== handle.id) {
      throw new CountersignError('VALIDATION_FAILED', `resumed with request ${String(named)}, but this call waits on request ${handle.id}`, {
        requestId: handle.id,
        resumedWith: named ?? null,
      });
    }
    await handle.refresh();
  }
  return handle;
}

/** The Countersign interrupts (with their LangGraph interrupt ids) in an invoke result or state snapshot. */
export function approvalInterrupts(source: InterruptSource): { id: string; value: ApprovalInterrupt }[] {
  const raw: unknown[] =
    'tasks' in source && Array.isArray(source.tasks)
      ? source.tasks.flatMap((t) => [...(t.interrupts ?? [])])
      : Array.isArray((source as { __interrupt__?: unknown }).__interrupt__)
        ? ((source as { __interrupt__: unknown[] }).__interrupt__)
        : [];
  const out: { id: string; value: ApprovalInterrupt }[] = [];
  for (const item of raw) {
    const { id, value } = (item ?? {}) as { id?: unknown; value?: Partial<ApprovalInterrupt> };
    if (typeof id === 'string' && value?.kind === 'countersign.approval' && typeof value.requestId === 'string') {
      out.push({ id, value: value as ApprovalInterrupt });
    }
  }
  return out;
}

/** Outcomes after which the call did not run: the model hears why. */
const NOT_RUN = new Set(['APPROVAL_REJECTED', 'APPROVAL_EXPIRED', 'APPROVAL_CANCELLED', 'WAIT_TIMEOUT', 'RECEIPT_MISMATCH', 'ALREADY_DECIDED']);

/**
 * Countersign for OpenAI Agents JS. One request per tool call, keyed by the call id:
 *
 * - `needsApproval` files the call and interrupts the run while Countersign has not decided.
 * - `settle(state)` answers each of the run's interruptions from its own request (matched by
 *   call id): `approve`, or `reject` with the reviewer's reason as the text the model reads.
 * - The tool's `invoke` is guarded too: it runs only what Countersign approved (a reviewer's
 *   modified args or chosen alternative), so an approval forged into a serialized `RunState`
 *   runs nothing.
 *
 * `RunState` carries no Countersign secret: after a restart, `RunState.fromString` and a new
 * `AgentApprovals` re-attach to the same requests through the idempotency keys.
 */
import type { FunctionTool, RunContext, RunState, RunToolApprovalItem } from '@openai/agents';
import type { ApprovalHandle, Countersign } from '@countersign/client';
import { CountersignError, isCountersignError, type JsonObject } from '@countersign/core';
import { bodyFor, callKey, guardOptionsFor, toJsonObject, type ToolAlternative, type ToolApprovalSpec } from '@countersign/adapter-kit';

/**
 * `interrupt` (default): the run stops at an interruption until Countersign decides; settle it
 * and run again, in this process or another. `inline`: the tool call waits for the decision
 * where it is, and the run never interrupts.
 */
export type ApprovalMode = 'interrupt' | 'inline';

export interface AgentApprovalsOptions {
  /** Which tools need approval, and how each is put to reviewers (`true`: the defaults). */
  tools: Record<string, ToolApprovalSpec<any> | true>;
  mode?: ApprovalMode;
  /** Part of every idempotency key (a conversation or run id), so runs never share a request. */
  scope?: string;
  /** How long an inline wait lasts (ms). Default: the client's `decisionTimeoutMs`. */
  timeoutMs?: number;
}

export interface SettleOptions {
  /** How long to wait for undecided requests (ms). Default 0: settle what is decided, refuse the rest. */
  timeoutMs?: number;
}

export interface Settlement {
  approved: string[];
  rejected: { callId: string; message: string }[];
}

const FRAMEWORK = 'openai-agents';

type AnyTool = FunctionTool<any, any, any>;

export class AgentApprovals {
  readonly #cs: Countersign;
  readonly #specs: ReadonlyMap<string, ToolApprovalSpec<JsonObject>>;
  readonly #mode: ApprovalMode;
  readonly #scope: string | undefined;
  readonly #timeoutMs: number | undefined;
  readonly #tools = new Map<string, AnyTool>();

  constructor(cs: Countersign, options: AgentApprovalsOptions) {
    if (!options || typeof options.tools !== 'object' || options.tools === null) {
      throw new CountersignError('VALIDATION_FAILED', 'AgentApprovals needs options.tools: the tools that need approval');
    }
    const mode = options.mode ?? 'interrupt';
    if (mode !== 'interrupt' && mode !== 'inline') throw new CountersignError('VALIDATION_FAILED', `unknown approval mode "${String(mode)}"`);
    this.#cs = cs;
    this.#mode = mode;
    this.#scope = options.scope;
    this.#timeoutMs = options.timeoutMs;
    this.#specs = new Map(Object.entries(options.tools).map(([name, spec]) => [name, (spec === true ? {} : spec) as ToolApprovalSpec<JsonObject>]));
  }

  /**
   * The tools, with each one named in `options.tools` guarded (`needsApproval` and `invoke`).
   * Alternatives that name a `tool` run that tool of this list.
   */
  guardTools<T extends readonly AnyTool[]>(tools: T): T {
    for (const t of tools) this.#tools.set(t.name, t);
    for (const [name, spec] of this.#specs) {
      if (!this.#tools.has(name)) throw new CountersignError('VALIDATION_FAILED', `guardTools(): no function tool named "${name}"`);
      for (const alt of spec.alternatives ?? []) {
        if (alt.run === undefined && (alt.tool === undefined || !this.#tools.has(alt.tool))) {
          throw new CountersignError('VALIDATION_FAILED', `guardTools(): alternative "${alt.name}" of "${name}" needs run() or a tool of this list`);
        }
      }
    }
    return tools.map((t) => (this.#specs.has(t.name) ? this.#guard(t) : t)) as unknown as T;
  }

  /**
   * Answers every interruption of ours in `state` from Countersign, each from the request of its
   * own call id: approved ones are approved; rejected, expired or cancelled ones are rejected
   * with the decision's reason as the message the model reads. Interruptions of other tools
   * are left to the caller. Throws WAIT_TIMEOUT (`details.pending`) when a request is still
   * undecided after `timeoutMs` (those interruptions stay open; the decided ones are settled).
   */
  async settle(state: RunState<any, any>, options: SettleOptions = {}): Promise<Settlement> {
    const settlement: Settlement = { approved: [], rejected: [] };
    const pending: { callId: string; requestId: string }[] = [];
    for (const item of state.getInterruptions()) {
      const name = item.name;
      if (name === undefined || !this.#specs.has(name)) continue;
      const callId = callIdOf(item);
      const handle = await this.#file(name, parseArgs(item.arguments), callId);
      if (handle.status === 'pending' && (options.timeoutMs ?? 0) > 0) {
        await handle.wait({ timeoutMs: options.timeoutMs }).catch((err: unknown) => {
          if (!isCountersignError(err) || err.code !== 'WAIT_TIMEOUT') throw err;
        });
      }
      if (handle.status === 'pending') {
        pending.push({ callId, requestId: handle.id });
        continue;
      }
      try {
        await handle.decision({ timeoutMs: 0 });
        state.approve(item);
        settlement.approved.push(callId);
      } catch (err) {
        if (!isCountersignError(err) || !DECIDED_OTHERWISE.has(err.code)) throw err;
        state.reject(item, { message: err.message });
        settlement.rejected.push({ callId, message: err.message });
      }
    }
    if (pending.length > 0) {
      throw new CountersignError('WAIT_TIMEOUT', `${pending.length} tool call(s) still await a decision in Countersign`, { pending });
    }
    return settlement;
  }

  #guard(original: AnyTool): AnyTool {
    const name = original.name;
    return {
      ...original,
      needsApproval: async (_ctx: RunContext, input: unknown, callId?: string) => {
        if (this.#mode === 'inline') return false; // the guarded invoke waits instead
        const handle = await this.#file(name, input, requireCallId(name, callId));
        // Run at once only what the policy approved as asked when it was filed.
        if (handle.status !== 'approved' || handle.request.decision?.decidedBy !== 'policy') return true;
        const decision = await handle.decision({ timeoutMs: 0 });
        return decision.modified || decision.alternative !== null;
      },
      invoke: async (ctx: RunContext, input: string, details?: Parameters<AnyTool['invoke']>[2]) => {
        const callId = requireCallId(name, details?.toolCall?.callId);
        const args = parseArgs(input);
        const options = this.#guardOptions(name, args, callId, ctx, details);
        try {
          if (this.#mode === 'interrupt') {
            // An approval in the RunState is the client's word, not Countersign's.
            const handle = await this.#cs.requestApproval(bodyFor(options, args));
            if (handle.status === 'pending') {
              throw new CountersignError('WAIT_TIMEOUT', `${name} (request ${handle.id}) is not decided in Countersign yet; it did not run`, {
                requestId: handle.id,
                callId,
              });
            }
          }
          const run = this.#cs.guard(async (approved: JsonObject) => original.invoke(ctx, JSON.stringify(approved), details), options);
          return await run(args);
        } catch (err) {
          // The model hears why the call did not run; other failures keep the tool's own handling.
          if (isCountersignError(err) && (DECIDED_OTHERWISE.has(err.code) || err.code === 'RECEIPT_MISMATCH' || err.code === 'ALREADY_DECIDED')) {
            return `Not run: ${err.message}`;
          }
          throw err;
        }
      },
    } as AnyTool;
  }

  #file(name: string, input: unknown, callId: string): Promise<ApprovalHandle> {
    const args = toJsonObject(input);
    return this.#cs.requestApproval(bodyFor(this.#guardOptions(name, args, callId, undefined, undefined), args));
  }

  #guardOptions(name: string, args: JsonObject, callId: string, ctx: RunContext | undefined, details: Parameters<AnyTool['invoke']>[2]) {
    const spec = this.#specs.get(name);
    if (!spec) throw new CountersignError('VALIDATION_FAILED', `no approval spec for tool "${name}"`);
    const key = callKey(FRAMEWORK, { scope: this.#scope, tool: name, callId, args });
    const runAlternative = (alt: ToolAlternative<JsonObject>) => async (altArgs: JsonObject) => {
      if (alt.run) return alt.run(altArgs);
      const other = alt.tool === undefined ? undefined : this.#tools.get(alt.tool);
      if (!other || !ctx) throw new CountersignError('VALIDATION_FAILED', `alternative "${alt.name}" has nothing to run`);
      return other.invoke(ctx, JSON.stringify(altArgs), details);
    };
    return guardOptionsFor(spec, spec.action ?? name, key, runAlternative, this.#timeoutMs);
  }
}

function callIdOf(item: RunToolApprovalItem): string {
  const raw = item.rawItem as { callId?: unknown };
  return requireCallId(item.name ?? 'tool', typeof raw.callId === 'string' ? raw.callId : undefined);
}

function requireCallId(name: string, callId: string | undefined): string {
  if (typeof callId !== 'string' || callId.length === 0) {
    throw new CountersignError('VALIDATION_FAILED', `${name}: a tool call without a call id cannot be tied to its approval`);
  }
  return callId;
}

function parseArgs(input: unknown): JsonObject {
  if (typeof input !== 'string') return toJsonObject(input);
  try {
    return toJsonObject(input.length === 0 ? {} : JSON.parse(input));
  } catch (err) {
    if (isCountersignError(err)) throw err;
    throw new CountersignError('VALIDATION_FAILED', 'tool arguments are not JSON');
  }
}

/** Outcomes that mean "do not run": the model hears why. */
const DECIDED_OTHERWISE = new Set(['APPROVAL_REJECTED', 'APPROVAL_EXPIRED', 'APPROVAL_CANCELLED', 'WAIT_TIMEOUT']);

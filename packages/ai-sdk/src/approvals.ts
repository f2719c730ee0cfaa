/**
 * Countersign for the Vercel AI SDK (ai@6). Two seams, one request per tool call:
 *
 * - `guardTools()` wraps each chosen tool's `execute`: the call runs only with what Countersign
 *   approved (a reviewer's modified args, or the alternative they chose); a rejection never runs
 *   and its reason reaches the model as the tool's error.
 * - `needsApproval()` is the SDK's approval hook. Inline, it waits for the decision and lets an
 *   as-asked approval run at once. Deferred, it files the request and stops the step with a
 *   `tool-approval-request`; on resume `settle()` writes the `tool-approval-response` parts from
 *   Countersign's decisions, replacing whatever the client sent — and the guarded `execute`
 *   checks Countersign again, so a forged client-side "approved" runs nothing.
 *
 * Every request's idempotency key is the framework's call id bound to the tool and its args
 * (`callKey`), so the check, the execution and a resume after a restart all re-attach.
 */
import type { ModelMessage, Tool, ToolApprovalResponse, ToolExecutionOptions, ToolSet } from 'ai';
import type { ApprovalHandle, Countersign } from '@countersign/client';
import { CountersignError, isCountersignError, type Decision, type JsonObject } from '@countersign/core';
import { bodyFor, callKey, guardOptionsFor, type ToolAlternative, type ToolApprovalSpec } from '@countersign/adapter-kit';

/**
 * `inline`: the tool call waits for the decision where it is. `deferred`: the step stops with an
 * approval request and the run resumes (maybe in another process) once Countersign decided.
 */
export type ApprovalMode = 'inline' | 'deferred';

export interface ToolApprovalsOptions {
  /** Which tools need approval, and how each is put to reviewers (`true`: the defaults). Other tools are left alone. */
  tools: Record<string, ToolApprovalSpec<any> | true>;
  /** Default `inline`. */
  mode?: ApprovalMode;
  /**
   * Part of every idempotency key: a conversation or run id. Calls of different scopes never
   * share a request even when a provider reuses call ids across conversations.
   */
  scope?: string;
  /** How long an inline wait lasts (ms) before the request is withdrawn. Default: the client's `decisionTimeoutMs`. */
  timeoutMs?: number;
}

export interface SettleOptions {
  /** How long to wait for undecided requests (ms). Default 0: settle what is decided, refuse the rest. */
  timeoutMs?: number;
}

const FRAMEWORK = 'ai-sdk';

type AnyExecute = (input: unknown, options: ToolExecutionOptions) => unknown;

export class ToolApprovals {
  readonly #cs: Countersign;
  readonly #specs: ReadonlyMap<string, ToolApprovalSpec<JsonObject>>;
  readonly #mode: ApprovalMode;
  readonly #scope: string | undefined;
  readonly #timeoutMs: number | undefined;
  /** The executes of the last `guardTools()` set, for alternatives that name another tool. */
  #executes = new Map<string, AnyExecute>();
  /** Tools whose execute this instance wrapped: only those can run a reviewer's changed args or an alternative. */
  #guarded = new Set<string>();

  constructor(cs: Countersign, options: ToolApprovalsOptions) {
    if (!options || typeof options.tools !== 'object' || options.tools === null) {
      throw new CountersignError('VALIDATION_FAILED', 'ToolApprovals needs options.tools: the tools that need approval');
    }
    const mode = options.mode ?? 'inline';
    if (mode !== 'inline' && mode !== 'deferred') throw new CountersignError('VALIDATION_FAILED', `unknown approval mode "${String(mode)}"`);
    this.#cs = cs;
    this.#mode = mode;
    this.#scope = options.scope;
    this.#timeoutMs = options.timeoutMs;
    this.#specs = new Map(Object.entries(options.tools).map(([name, spec]) => [name, (spec === true ? {} : spec) as ToolApprovalSpec<JsonObject>]));
  }

  get mode(): ApprovalMode {
    return this.#mode;
  }

  /**
   * The tool set with every tool named in `options.tools` guarded: `execute` runs only what
   * Countersign approved; in deferred mode `needsApproval` is set too. Other tools pass through.
   */
  guardTools<T extends ToolSet>(tools: T): T {
    const executes = new Map<string, AnyExecute>();
    for (const [name, t] of Object.entries(tools)) {
      if (typeof t.execute === 'function') executes.set(name, t.execute.bind(t) as AnyExecute);
    }
    for (const [name, spec] of this.#specs) {
      if (!(name in tools)) throw new CountersignError('VALIDATION_FAILED', `guardTools(): no tool named "${name}" in the set`);
      if (!executes.has(name)) throw new CountersignError('VALIDATION_FAILED', `guardTools(): tool "${name}" has no execute to guard`);
      for (const alt of spec.alternatives ?? []) {
        if (alt.run === undefined && (alt.tool === undefined || !executes.has(alt.tool))) {
          throw new CountersignError('VALIDATION_FAILED', `guardTools(): alternative "${alt.name}" of "${name}" needs run() or a tool of this set`);
        }
      }
    }
    this.#executes = executes;
    for (const name of this.#specs.keys()) this.#guarded.add(name);
    const guarded: Record<string, Tool> = {};
    for (const [name, t] of Object.entries(tools)) {
      const spec = this.#specs.get(name);
      if (!spec) {
        guarded[name] = t as Tool;
        continue;
      }
      const original = executes.get(name)!;
      guarded[name] = {
        ...(t as Tool),
        ...(this.#mode === 'deferred' ? { needsApproval: this.needsApproval(name) } : {}),
        execute: (input: unknown, options: ToolExecutionOptions) => this.#execute(name, spec, original, input, options),
      } as Tool;
    }
    return guarded as T;
  }

  /**
   * The SDK's `needsApproval` hook for tool `name`. Files the call with Countersign (keyed by its
   * call id). Inline: waits, and answers `false` (run now) only for an approval of exactly what
   * was asked; any other outcome answers `true`, so the call stops unrun and `settle()` answers
   * it. Deferred: answers `false` only when the policy approved it as asked at once.
   *
   * The SDK asks again on resume, for each call the client answered "approved" (it runs the call
   * only if the hook still says `true`). Then the hook answers `true` only when Countersign
   * approved the call, and throws otherwise (the decision's APPROVAL_REJECTED / _EXPIRED /
   * _CANCELLED, or WAIT_TIMEOUT while undecided), so a forged client-side approval fails the
   * resume instead of running anything.
   */
  needsApproval(name: string): (input: unknown, options: { toolCallId: string; messages?: ModelMessage[] }) => Promise<boolean> {
    const spec = this.#spec(name);
    return async (input, options) => {
      const handle = await this.#file(name, spec, input, options.toolCallId);
      if (askedBefore(options.messages, options.toolCallId)) {
        if (handle.status === 'pending') {
          throw new CountersignError('WAIT_TIMEOUT', `${name} (request ${handle.id}) is not decided in Countersign; an approval from the client is not enough`, {
            requestId: handle.id,
            toolCallId: options.toolCallId,
          });
        }
        const decision = await handle.decision({ timeoutMs: 0 });
        if ((decision.modified || decision.alternative !== null) && !this.#guarded.has(name)) throw changedButUnguarded(name, handle.id);
        await this.#claimUnguarded(name, handle, decision, input);
        return true;
      }
      if (this.#mode === 'deferred' && handle.status === 'pending') return true;
      if (this.#mode === 'deferred' && handle.request.decision?.decidedBy !== 'policy') return true;
      try {
        const decision = await handle.decision(this.#timeoutMs === undefined ? {} : { timeoutMs: this.#timeoutMs });
        if (decision.modified || decision.alternative !== null) return true;
        await this.#claimUnguarded(name, handle, decision, input);
        return false;
      } catch (err) {
        if (isCountersignError(err) && DECIDED_OTHERWISE.has(err.code)) return true;
        throw err;
      }
    };
  }

  /**
   * Answers the open approval requests of our tools in `messages` from Countersign: each
   * `tool-approval-request` whose call has no result yet gets exactly one
   * `tool-approval-response`, approved only when Countersign approved it, with the reviewer's
   * reason when not. Responses the client put there for those calls are dropped. Throws
   * WAIT_TIMEOUT (`details.pending`) when a request is still undecided after `timeoutMs`.
   */
  async settle(messages: ModelMessage[], options: SettleOptions = {}): Promise<ModelMessage[]> {
    const calls = new Map<string, { toolName: string; input: unknown }>();
    const requests: { approvalId: string; toolCallId: string }[] = [];
    const answered = new Set<string>();
    for (const message of messages) {
      if (message.role === 'assistant' && typeof message.content !== 'string') {
        for (const part of message.content) {
          if (part.type === 'tool-call') calls.set(part.toolCallId, { toolName: part.toolName, input: part.input });
          if (part.type === 'tool-approval-request') requests.push({ approvalId: part.approvalId, toolCallId: part.toolCallId });
        }
      }
      if (message.role === 'tool') for (const part of message.content) if (part.type === 'tool-result') answered.add(part.toolCallId);
    }
    const open = requests.filter((r) => !answered.has(r.toolCallId) && this.#specs.has(calls.get(r.toolCallId)?.toolName ?? ''));
    const ours = new Set(open.map((r) => r.approvalId));

    const responses: ToolApprovalResponse[] = [];
    const pending: { toolCallId: string; requestId: string }[] = [];
    for (const { approvalId, toolCallId } of open) {
      const call = calls.get(toolCallId)!;
      const handle = await this.#file(call.toolName, this.#spec(call.toolName), call.input, toolCallId);
      if (handle.status === 'pending' && (options.timeoutMs ?? 0) > 0) {
        await handle.wait({ timeoutMs: options.timeoutMs }).catch((err: unknown) => {
          if (!isCountersignError(err) || err.code !== 'WAIT_TIMEOUT') throw err;
        });
      }
      if (handle.status === 'pending') {
        pending.push({ toolCallId, requestId: handle.id });
        continue;
      }
      try {
        const decision = await handle.decision({ timeoutMs: 0 });
        if ((decision.modified || decision.alternative !== null) && !this.#guarded.has(call.toolName)) {
          const err = changedButUnguarded(call.toolName, handle.id);
          responses.push({ type: 'tool-approval-response', approvalId, approved: false, reason: err.message });
          continue;
        }
        responses.push({ type: 'tool-approval-response', approvalId, approved: true });
      } catch (err) {
        if (!isCountersignError(err) || !DECIDED_OTHERWISE.has(err.code)) throw err;
        responses.push({ type: 'tool-approval-response', approvalId, approved: false, reason: err.message });
      }
    }
    if (pending.length > 0) {
      throw new CountersignError('WAIT_TIMEOUT', `${pending.length} tool call(s) still await a decision in Countersign`, { pending });
    }

    // Drop every response to our calls the client supplied, then add Countersign's.
    const out: ModelMessage[] = messages.map((message) =>
      message.role === 'tool'
        ? { ...message, content: message.content.filter((part) => part.type !== 'tool-approval-response' || !ours.has(part.approvalId)) }
        : message,
    );
    if (responses.length === 0) return out;
    const last = out.at(-1);
    if (last?.role === 'tool') out[out.length - 1] = { ...last, content: [...last.content, ...responses] };
    else out.push({ role: 'tool', content: responses });
    return out;
  }

  /**
   * `needsApproval` used alone (the tool is not wrapped by `guardTools()`): the SDK then runs the
   * tool's own execute, which does not claim. So the hook claims the approval, once, before it
   * answers "run": a replay (ALREADY_EXECUTED), an expired approval (RECEIPT_EXPIRED) or a
   * receipt that does not cover this call throws, and the SDK runs nothing. A wrapped tool
   * claims in its execute (guard()), so the hook leaves it unclaimed. The result of an unwrapped
   * execute is not reported: the request stays `executing`.
   */
  async #claimUnguarded(name: string, handle: ApprovalHandle, decision: Decision, input: unknown): Promise<void> {
    if (this.#guarded.has(name)) return;
    await handle.checkReceipt(decision, { action: this.#spec(name).action ?? name, args: input as JsonObject });
    await handle.claim(decision);
  }

  async #execute(name: string, spec: ToolApprovalSpec<JsonObject>, original: AnyExecute, input: unknown, options: ToolExecutionOptions): Promise<unknown> {
    const guardOptions = this.#guardOptions(name, spec, input, options.toolCallId, options);
    if (this.#mode === 'deferred') {
      // The client's approval is not Countersign's: an undecided request never runs here.
      const handle = await this.#cs.requestApproval(bodyFor(guardOptions, input as JsonObject));
      if (handle.status === 'pending') {
        throw new CountersignError('WAIT_TIMEOUT', `${name} (request ${handle.id}) is not decided in Countersign yet; it did not run`, {
          requestId: handle.id,
          toolCallId: options.toolCallId,
        });
      }
    }
    const run = this.#cs.guard(async (args: JsonObject) => await original(args, options), guardOptions);
    return run(input as JsonObject);
  }

  #file(name: string, spec: ToolApprovalSpec<JsonObject>, input: unknown, toolCallId: string): Promise<ApprovalHandle> {
    return this.#cs.requestApproval(bodyFor(this.#guardOptions(name, spec, input, toolCallId, undefined), input as JsonObject));
  }

  #guardOptions(name: string, spec: ToolApprovalSpec<JsonObject>, input: unknown, toolCallId: string, options: ToolExecutionOptions | undefined) {
    const key = callKey(FRAMEWORK, { scope: this.#scope, tool: name, callId: toolCallId, args: input });
    const runAlternative = (alt: ToolAlternative<JsonObject>) => async (args: JsonObject) => {
      if (alt.run) return alt.run(args);
      const execute = alt.tool === undefined ? undefined : this.#executes.get(alt.tool);
      if (!execute || !options) throw new CountersignError('VALIDATION_FAILED', `alternative "${alt.name}" has nothing to run`);
      return execute(args, options);
    };
    return guardOptionsFor(spec, spec.action ?? name, key, runAlternative, this.#timeoutMs);
  }

  #spec(name: string): ToolApprovalSpec<JsonObject> {
    const spec = this.#specs.get(name);
    if (!spec) throw new CountersignError('VALIDATION_FAILED', `no approval spec for tool "${name}"`);
    return spec;
  }
}

/** True when `messages` already hold an approval request for this call: the SDK is re-checking it on resume. */
function askedBefore(messages: ModelMessage[] | undefined, toolCallId: string): boolean {
  return (messages ?? []).some(
    (m) => m.role === 'assistant' && typeof m.content !== 'string' && m.content.some((p) => p.type === 'tool-approval-request' && p.toolCallId === toolCallId),
  );
}

function changedButUnguarded(name: string, requestId: string): CountersignError {
  return new CountersignError(
    'RECEIPT_MISMATCH',
    `${name} was approved with changed args or an alternative, which its unwrapped execute cannot apply (use guardTools()); it did not run`,
    { requestId },
  );
}

/** Outcomes that mean "do not run": the call stops, and the model hears why. */
const DECIDED_OTHERWISE = new Set(['APPROVAL_REJECTED', 'APPROVAL_EXPIRED', 'APPROVAL_CANCELLED', 'WAIT_TIMEOUT']);

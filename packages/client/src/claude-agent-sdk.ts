/**
 * A `canUseTool` callback for the Claude Agent SDK (`@anthropic-ai/claude-agent-sdk`): every tool
 * call the SDK would ask permission for becomes a Countersign request; the agent runs the tool
 * only with what a reviewer (or the policy) approved.
 *
 *   import { query } from '@anthropic-ai/claude-agent-sdk';
 *   const cs = new Countersign({ url, apiKey });
 *   for await (const m of query({ prompt, options: { canUseTool: countersignCanUseTool(cs) } })) …
 *
 * We declare the SDK's callback types structurally instead of importing them: the SDK package
 * pulls a platform binary of Claude Code as an optional dependency, and the client package keeps
 * no native or binary dependencies. The shapes follow the SDK's `CanUseTool` and
 * `PermissionResult` (its sdk.d.ts): `(toolName, input, { signal, toolUseID, … }) =>
 * Promise<{ behavior: 'allow', updatedInput? } | { behavior: 'deny', message, interrupt? }>`.
 */
import { CountersignError, type JsonObject } from '@countersign/core';
import type { Countersign } from './countersign.ts';

/** The SDK's `PermissionResult`, the part this helper produces. */
export type CanUseToolResult =
  | { behavior: 'allow'; updatedInput?: Record<string, unknown> }
  | { behavior: 'deny'; message: string; interrupt?: boolean };

/** The SDK's third `canUseTool` argument, the part this helper reads. */
export interface CanUseToolOptions {
  signal: AbortSignal;
  toolUseID?: string;
  agentID?: string;
  decisionReason?: string;
}

export type CanUseTool = (toolName: string, input: Record<string, unknown>, options: CanUseToolOptions) => Promise<CanUseToolResult>;

export interface CanUseToolHelperOptions {
  /** The Countersign action for a tool. Default: the tool name itself (Bash, Write, mcp__github__create_issue). */
  action?: ((toolName: string) => string) | undefined;
  /** Longest wait for a decision, in ms; then deny. Default: the client's decisionTimeoutMs. */
  timeoutMs?: number | undefined;
  /** Extra context for each request (say, the session or the user the agent works for). */
  context?: ((toolName: string, input: Record<string, unknown>) => JsonObject) | undefined;
  /** Stop the whole agent run on a rejection (the SDK's `interrupt`). Default false: the model is told and may adjust. */
  interruptOnReject?: boolean | undefined;
}

/**
 * Makes the callback. Approval, claimed once (`{status: started, receipt}`) → `allow` with `updatedInput` set to the approved args (the
 * reviewer's modification when there was one); rejection, expiry, cancellation, a timeout, a
 * forged receipt, a refused claim (a replay, an expired approval) or any failure → `deny` with the reason (fail closed). An approved alternative
 * that names another action is denied: the SDK can only run the tool it asked about. When the
 * SDK's signal fires, the Countersign request is cancelled.
 */
export function countersignCanUseTool(cs: Countersign, options: CanUseToolHelperOptions = {}): CanUseTool {
  return async (toolName, input, { signal, toolUseID, agentID }) => {
    let action: string;
    try {
      action = options.action ? options.action(toolName) : toolName;
    } catch (err) {
      return { behavior: 'deny', message: `Countersign: no action name for ${toolName}: ${(err as Error).message}` };
    }
    let handle: Awaited<ReturnType<Countersign['requestApproval']>> | undefined;
    const onAbort = () => {
      if (handle && !handle.decided) void handle.cancel('the Claude Agent SDK aborted the tool call').catch(() => {});
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      signal.throwIfAborted();
      handle = await cs.requestApproval({
        action,
        args: input,
        description: `Claude agent wants to use ${toolName}`,
        context: {
          claudeAgentSdk: { tool: toolName, ...(toolUseID ? { toolUseId: toolUseID } : {}), ...(agentID ? { agentId: agentID } : {}) },
          ...(options.context?.(toolName, input) ?? {}),
        },
        ...(toolUseID ? { idempotencyKey: `claude-agent-sdk:${toolUseID}`.slice(0, 200) } : {}),
      });
      if (signal.aborted) {
        onAbort();
        return { behavior: 'deny', message: 'the tool call was aborted' };
      }
      const decision = await handle.decision({ signal, ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) });
      if (decision.action !== action) {
        return { behavior: 'deny', message: `Countersign approved ${String(decision.action)} instead of ${action} (request ${handle.id}); ${toolName} is denied` };
      }
      const args = decision.args ?? {};
      await handle.checkReceipt(decision, { action, args });
      // Claimed once before the SDK may run the tool: a second ask for the same tool use (a
      // resumed session, the SDK re-asking) meets ALREADY_EXECUTED, an approval past its validity
      // RECEIPT_EXPIRED, and any claim error denies (caught below). The SDK runs the tool after
      // we answer, so the result is not reported here: the request stays `executing`.
      await handle.claim(decision);
      return { behavior: 'allow', updatedInput: args };
    } catch (err) {
      if (signal.aborted) {
        onAbort();
        return { behavior: 'deny', message: 'the tool call was aborted' };
      }
      const id = handle ? ` (request ${handle.id})` : '';
      if (err instanceof CountersignError) {
        if (err.code === 'WAIT_TIMEOUT') {
          await handle?.cancel('no decision before the agent stopped waiting').catch(() => {});
          return { behavior: 'deny', message: `no Countersign decision in time${id}; denied` };
        }
        const rejected = err.code === 'APPROVAL_REJECTED';
        return {
          behavior: 'deny',
          message: `${err.message}${id}`,
          ...(rejected && options.interruptOnReject ? { interrupt: true } : {}),
        };
      }
      return { behavior: 'deny', message: `Countersign could not be asked: ${(err as Error).message}; denied` };
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };
}

/**
 * `countersign-mcp hook claude-code`: a Claude Code PreToolUse command hook. Claude Code pipes
 * the hook input (JSON) on stdin: `{session_id, transcript_path, cwd, permission_mode,
 * hook_event_name: "PreToolUse", tool_name, tool_input, tool_use_id}`; the hook answers on
 * stdout with `{hookSpecificOutput: {hookEventName: "PreToolUse", permissionDecision:
 * "allow" | "deny" | "ask" | "defer", permissionDecisionReason, updatedInput?}}` and exit 0.
 *
 * Claude Code treats a hook that is killed or times out as "no decision", which lets the call
 * proceed, so this hook must never be the one killed: it answers at its own `--timeout`, which
 * the user sets below the hook's configured `timeout` (a hook cannot read that). It fails
 * closed: bad input, an unreachable server, a forged receipt, a timeout — all answer `deny`.
 * `defer` is given only for a timeout and only with `--on-timeout defer`, because a deferred
 * call can still run under permissive permission modes.
 */
import { Countersign, CountersignError, type ApprovalHandle } from '@countersign/client';
import type { JsonObject } from '@countersign/core';

export type PermissionDecision = 'allow' | 'deny' | 'defer';

export interface HookOutput {
  hookSpecificOutput: {
    hookEventName: 'PreToolUse';
    permissionDecision: PermissionDecision;
    permissionDecisionReason: string;
    updatedInput?: JsonObject;
  };
}

export interface HookOptions {
  countersign: Countersign;
  /** Raw stdin. */
  input: string;
  /** Aborted when the hook's own timeout is reached: the request is then withdrawn. */
  signal: AbortSignal;
}

const ACTION_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,127}$/;
const MAX_INPUT_BYTES = 1024 * 1024;

export function answer(permissionDecision: PermissionDecision, reason: string, updatedInput?: JsonObject): HookOutput {
  return {
    hookSpecificOutput: {
      hookEventName: 'PreToolUse',
      permissionDecision,
      permissionDecisionReason: reason,
      ...(updatedInput ? { updatedInput } : {}),
    },
  };
}

/** The answer given when `--timeout` is reached. */
export function timeoutAnswer(seconds: number, onTimeout: 'deny' | 'defer', requestId?: string): HookOutput {
  const which = requestId ? `request ${requestId}` : 'the Countersign request';
  return onTimeout === 'defer'
    ? answer('defer', `no Countersign decision within ${seconds}s (${which}); deferring to Claude Code's own permission flow`)
    : answer('deny', `no Countersign decision within ${seconds}s (${which}); denied. A reviewer can still decide; ask again to retry.`);
}

interface HookInput {
  session_id?: unknown;
  cwd?: unknown;
  permission_mode?: unknown;
  hook_event_name?: unknown;
  tool_name?: unknown;
  tool_input?: unknown;
  tool_use_id?: unknown;
}

/**
 * Asks Countersign about one tool call and says what Claude Code should do. Never throws: every
 * failure is a `deny` naming why. `onRequest` is told the request id as soon as it exists.
 */
export async function decideHook(options: HookOptions, onRequest?: (handle: ApprovalHandle) => void): Promise<HookOutput> {
  if (Buffer.byteLength(options.input, 'utf8') > MAX_INPUT_BYTES) return answer('deny', 'hook input over 1 MiB; denied');
  let input: HookInput;
  try {
    input = JSON.parse(options.input) as HookInput;
  } catch {
    return answer('deny', 'the hook input on stdin is not JSON; denied');
  }
  if (!input || typeof input !== 'object') return answer('deny', 'the hook input is not an object; denied');
  if (input.hook_event_name !== undefined && input.hook_event_name !== 'PreToolUse') {
    return answer('deny', `this hook handles PreToolUse, not ${String(input.hook_event_name).slice(0, 40)}; denied`);
  }
  const tool = input.tool_name;
  if (typeof tool !== 'string' || !ACTION_NAME.test(tool)) return answer('deny', 'tool_name is missing or cannot be a Countersign action name; denied');
  const toolInput = input.tool_input ?? {};
  if (typeof toolInput !== 'object' || toolInput === null || Array.isArray(toolInput)) return answer('deny', 'tool_input is not an object; denied');
  const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 500) : undefined);
  const sessionId = str(input.session_id);
  const toolUseId = str(input.tool_use_id);

  let handle: ApprovalHandle | undefined;
  try {
    handle = await options.countersign.requestApproval({
      action: tool,
      args: toolInput as JsonObject,
      description: `Claude Code wants to use ${tool}`,
      context: {
        claudeCode: {
          ...(sessionId ? { sessionId } : {}),
          ...(toolUseId ? { toolUseId } : {}),
          ...(str(input.cwd) ? { cwd: str(input.cwd) } : {}),
          ...(str(input.permission_mode) ? { permissionMode: str(input.permission_mode) } : {}),
        },
      },
      // One tool use is one request: Claude Code re-running the hook for the same tool use re-attaches.
      ...(sessionId && toolUseId ? { idempotencyKey: `claude-code:${sessionId}:${toolUseId}`.slice(0, 200) } : {}),
    });
    onRequest?.(handle);
    if (options.signal.aborted) {
      // The hook already answered (timeout) while this request was being filed: withdraw it.
      await handle.cancel('the Claude Code hook timed out before the request was filed').catch(() => {});
      return answer('deny', 'timed out; denied');
    }
    const decision = await handle.decision({ timeoutMs: 24 * 3_600_000, signal: options.signal });
    if (decision.action !== tool) {
      return answer('deny', `the reviewer approved ${String(decision.action)} instead of ${tool} (request ${handle.id}); this hook cannot run another tool, so ${tool} is denied`);
    }
    const args = decision.args ?? {};
    await handle.checkReceipt(decision, { action: tool, args });
    // Claude Code runs the tool once the hook allows it: claim the approval first, once, so a
    // replayed or expired approval is denied (the request stays `executing`; the hook sees no result).
    await handle.claim(decision);
    const by = decision.decidedBy === 'policy' ? 'policy' : decision.deciders.map((d) => d.name).join(', ') || 'a reviewer';
    if (decision.modified) return answer('allow', `approved by ${by} with modified input (request ${handle.id})`, args);
    return answer('allow', `approved by ${by} (request ${handle.id})`);
  } catch (err) {
    if (options.signal.aborted) return answer('deny', 'timed out; denied');
    if (err instanceof CountersignError) {
      const id = handle ? ` (request ${handle.id})` : '';
      switch (err.code) {
        case 'APPROVAL_REJECTED':
        case 'APPROVAL_EXPIRED':
        case 'APPROVAL_CANCELLED':
          return answer('deny', `${err.message}${id}`);
        default:
          return answer('deny', `Countersign could not approve this call: ${err.code}: ${err.message}${id}; denied`);
      }
    }
    return answer('deny', `Countersign could not be asked: ${(err as Error).message}; denied`);
  }
}

/**
 * The whole hook process: reads stdin, answers on stdout exactly once — at the decision or at
 * `timeoutSeconds`, whichever is first — withdraws the request on a timeout, and exits.
 */
export async function runClaudeCodeHook(options: {
  countersign: Countersign;
  timeoutSeconds: number;
  onTimeout: 'deny' | 'defer';
  /** Time already spent since Claude Code started this process (start-up), counted against the timeout. */
  elapsedMs?: number;
  stdin?: NodeJS.ReadableStream;
  write?: (text: string) => void;
}): Promise<PermissionDecision> {
  const write = options.write ?? ((t: string) => process.stdout.write(t));
  const stop = new AbortController();
  let handle: ApprovalHandle | undefined;
  let done = false;
  let cancelling: Promise<unknown> = Promise.resolve();
  let settle!: (d: PermissionDecision) => void;
  const finished = new Promise<PermissionDecision>((resolve) => (settle = resolve));
  const respond = (out: HookOutput) => {
    if (done) return;
    done = true;
    write(`${JSON.stringify(out)}\n`);
    settle(out.hookSpecificOutput.permissionDecision);
  };
  const timer = setTimeout(() => {
    respond(timeoutAnswer(options.timeoutSeconds, options.onTimeout, handle?.id));
    stop.abort(new Error('hook timeout'));
    // Withdraw the request so nobody approves a call that will never run; bounded, the answer is out.
    const cancel = handle?.cancel(`the Claude Code hook answered ${options.onTimeout} after ${options.timeoutSeconds}s`);
    cancelling = Promise.race([cancel, new Promise((r) => setTimeout(r, 2_000).unref())]).catch(() => {});
  }, Math.max(0, options.timeoutSeconds * 1000 - (options.elapsedMs ?? 0)));

  const work = (async () => {
    let input = '';
    try {
      for await (const chunk of options.stdin ?? process.stdin) {
        input += chunk.toString();
        if (input.length > MAX_INPUT_BYTES) break;
      }
    } catch (err) {
      respond(answer('deny', `cannot read the hook input: ${(err as Error).message}; denied`));
      return;
    }
    const out = await decideHook({ countersign: options.countersign, input, signal: stop.signal }, (h) => (handle = h));
    if (!stop.signal.aborted) respond(out);
  })();

  const decision = await finished;
  clearTimeout(timer);
  if (stop.signal.aborted) await Promise.race([Promise.all([cancelling, work]), new Promise((r) => setTimeout(r, 2_000).unref())]);
  return decision;
}

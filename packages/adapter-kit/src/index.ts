/**
 * `@countersign/adapter-kit`: what the framework adapters (`@countersign/ai-sdk`,
 * `@countersign/openai-agents`, `@countersign/langchain`) share. One tool call files one request,
 * built the same way wherever an adapter needs it (the approval check, the guarded `execute`, the
 * settlement on resume), so every place derives the same idempotency key and body and re-attaches
 * to the one request instead of filing another. Node only (it hashes with node:crypto, synchronously),
 * which is why it is not part of `@countersign/client`, which runs outside Node too.
 */
import { createHash } from 'node:crypto';
import { CountersignError, canonicalJson, type ApproverSpec, type CreateRequestBody, type JsonObject, type RequestContext, type RiskLevel } from '@countersign/core';
import { guardRequestBody, type GuardAlternative, type GuardOptions } from '@countersign/client';

/** How one tool's calls are put to reviewers. Every field is optional; the action defaults to the tool's name. */
export interface ToolApprovalSpec<I = JsonObject> {
  /** The Countersign action name (default: the tool name). */
  action?: string;
  describe?: (input: I) => string;
  confidence?: number | ((input: I) => number);
  riskLevel?: RiskLevel | ((input: I) => RiskLevel);
  context?: RequestContext | ((input: I) => RequestContext);
  approvers?: ApproverSpec[];
  /** Server-side deadline: the request expires (fail-closed) after this many seconds. */
  timeoutSeconds?: number;
  /**
   * What a reviewer may pick instead. `tool` names another tool of the same set: it runs that
   * tool's `execute` with the alternative's args (and is the action, unless `action` says
   * otherwise). Otherwise give `action` and `run`.
   */
  alternatives?: ReadonlyArray<ToolAlternative<I>>;
}

export interface ToolAlternative<I> {
  name: string;
  tool?: string;
  action?: string;
  args?: JsonObject | ((input: I) => JsonObject);
  description?: string;
  run?: (args: JsonObject) => Promise<unknown>;
}

/**
 * The idempotency key of one tool call: the framework's call id, bound to the tool, the args
 * and the caller's scope. A resume or retry of the same call re-attaches to its request; a newer
 * call that happens to reuse an id (some providers number calls `call_0`, `call_1` per response)
 * but carries other args gets a request of its own, so a stale decision is never applied to it.
 * Hashed, so an agent-supplied id of any length or content cannot break the key's limits.
 */
export function callKey(framework: string, call: { scope?: string | undefined; tool: string; callId: string; args: unknown }): string {
  if (typeof call.callId !== 'string' || call.callId.length === 0) {
    throw new CountersignError('VALIDATION_FAILED', `${framework}: a tool call without a call id cannot be tied to its approval`);
  }
  const digest = createHash('sha256')
    .update(canonicalJson({ scope: call.scope ?? null, tool: call.tool, callId: call.callId, args: toJsonObject(call.args) }))
    .digest('hex');
  return `${framework}:${digest}`;
}

/** Tool input as the JSON object Countersign stores (a tool whose input is not an object is refused). */
export function toJsonObject(input: unknown): JsonObject {
  const text = JSON.stringify(input ?? {});
  const parsed: unknown = text === undefined ? undefined : JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CountersignError('VALIDATION_FAILED', 'tool input must be a JSON object to be approved');
  }
  return parsed as JsonObject;
}

/** The `guard()` options for one call, whose idempotency key is that call's `key`. */
export function guardOptionsFor<I>(
  spec: ToolApprovalSpec<I>,
  action: string,
  key: string,
  runAlternative: (alt: ToolAlternative<I>) => (args: JsonObject) => Promise<unknown>,
  timeoutMs: number | undefined,
): GuardOptions<I & object, unknown> {
  const alternatives: GuardAlternative<I & object, unknown>[] = (spec.alternatives ?? []).map((alt) => ({
    name: alt.name,
    action: alt.action ?? alt.tool ?? alt.name,
    ...(alt.args !== undefined ? { args: alt.args as JsonObject | ((args: I & object) => JsonObject) } : {}),
    ...(alt.description !== undefined ? { description: alt.description } : {}),
    run: runAlternative(alt),
  }));
  return {
    action,
    ...(spec.describe ? { describe: spec.describe as (args: I & object) => string } : {}),
    ...(spec.confidence !== undefined ? { confidence: spec.confidence as number | ((args: I & object) => number) } : {}),
    ...(spec.riskLevel !== undefined ? { riskLevel: spec.riskLevel as RiskLevel | ((args: I & object) => RiskLevel) } : {}),
    ...(spec.context !== undefined ? { context: spec.context as RequestContext | ((args: I & object) => RequestContext) } : {}),
    ...(alternatives.length > 0 ? { alternatives } : {}),
    ...(spec.approvers ? { approvers: spec.approvers } : {}),
    ...(spec.timeoutSeconds !== undefined ? { timeoutSeconds: spec.timeoutSeconds } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    idempotencyKey: () => key,
  };
}

/** The create body `guard()` sends for `input` under `options`: guard's own builder, so the two cannot drift. */
export function bodyFor<I>(options: GuardOptions<I & object, unknown>, input: I & object): CreateRequestBody {
  return guardRequestBody(options, input, options.idempotencyKey?.(input));
}

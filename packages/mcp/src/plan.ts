/**
 * The gateway's decisions, as pure functions: how a downstream tool is named, what its pinned
 * definition hash is, which idempotency key a call uses, what the Countersign request says, and
 * whether an approval may run. No I/O, no clock, no randomness — the gateway passes those in —
 * so each rule is tested on its own (test/plan.test.ts).
 *
 * They live here rather than in `@countersign/core` because they are about MCP, which core does
 * not know; they follow core's rules (pure, strict, inputs passed in).
 */
import { createHash } from 'node:crypto';
import { canonicalJson, type CreateRequestBody, type Decision, type JsonObject } from '@countersign/core';

/** Joins server and tool names; the result is also the Countersign action name. */
export const NAMESPACE_SEPARATOR = '__';

/** Countersign's action-name rule (core `ActionName`): a letter, then letters, digits, `_ . : -`, at most 128. */
const ACTION_NAME = /^[A-Za-z][A-Za-z0-9_.:-]*$/;

/** A server name from the config: a letter, then letters, digits, `-`; no `__`, so the split is unambiguous. */
export const SERVER_NAME = /^[A-Za-z][A-Za-z0-9-]{0,31}$/;

/**
 * `server__tool`, or null when the tool's name cannot be a Countersign action (characters
 * outside the action alphabet, or too long). Such tools are not listed at all: renaming them
 * (say, replacing `/` by `_`) could make two tools collide into one approval.
 */
export function namespacedName(server: string, tool: string): string | null {
  const name = `${server}${NAMESPACE_SEPARATOR}${tool}`;
  if (!SERVER_NAME.test(server) || tool.length === 0 || name.length > 128 || !ACTION_NAME.test(name)) return null;
  return name;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * A downstream tool definition as listed. Every field counts: besides name, description and the
 * schemas, `annotations`, `execution` (how a call runs), `icons` and `_meta` (which hosts render,
 * some as UI) can all change what a person sees or what a call does.
 */
export interface ToolDefinition {
  name: string;
  title?: string | undefined;
  description?: string | undefined;
  inputSchema: unknown;
  outputSchema?: unknown;
  annotations?: unknown;
  [field: string]: unknown;
}

/**
 * Hex SHA-256 of the canonical JSON of the whole definition as listed. Nothing is left out (an
 * earlier version skipped `_meta`, `icons` and `execution`, so a downstream could change those
 * under a pin); canonical JSON makes key order irrelevant, so only a real change moves the hash.
 */
export function definitionHash(tool: ToolDefinition): string {
  return sha256Hex(canonicalJson(tool));
}

export type PinVerdict =
  | { state: 'listed'; hash: string; newPin: boolean }
  | { state: 'held'; hash: string; pinned: string };

/**
 * Trust on first use: an unpinned tool is pinned as seen; a pinned tool whose definition hash
 * changed is held (not listed, not callable) until an admin approves the new definition.
 */
export function pinVerdict(pinned: string | undefined, hash: string): PinVerdict {
  if (pinned === undefined) return { state: 'listed', hash, newPin: true };
  if (pinned === hash) return { state: 'listed', hash, newPin: false };
  return { state: 'held', hash, pinned };
}

/** The identity of "the same call": session, server, tool and canonical args. */
export function callIdentity(sessionId: string, server: string, tool: string, args: JsonObject): string {
  return sha256Hex(canonicalJson({ session: sessionId, server, tool, args }));
}

/**
 * The idempotency key of the `slot`-th request for one call identity. Slot numbers are never
 * reused within a session, so a key whose approval was claimed (run) is never offered again;
 * parallel identical calls take different slots and so get different requests.
 */
export function idempotencyKey(identity: string, slot: number): string {
  return `mcp:${sha256Hex(`${identity}:${slot}`).slice(0, 48)}`;
}

/** What the operator's config says about one tool: hints for Countersign's policy, never a decision. */
export interface ToolHints {
  riskLevel?: 'low' | 'medium' | 'high' | 'critical' | undefined;
  confidence?: number | undefined;
  description?: string | undefined;
}

export interface ServerTrust {
  /** Whether this server's annotations (readOnlyHint …) may feed the policy. Default false. */
  trusted: boolean;
  /** Confidence sent for a read-only, non-destructive tool of a trusted server. Default 0.95. */
  readOnlyConfidence: number;
}

export interface ToolAnnotations {
  title?: string | undefined;
  readOnlyHint?: boolean | undefined;
  destructiveHint?: boolean | undefined;
  idempotentHint?: boolean | undefined;
  openWorldHint?: boolean | undefined;
}

/**
 * The Countersign request for one call. The downstream server's annotations travel as
 * `context.mcp.annotations`, marked trusted or not; they turn into a policy input (a
 * confidence) only for a server the operator marked `trusted`, and only as far as "read-only
 * and not destructive". Operator hints from the config win over annotations. Countersign's
 * policy then decides; the gateway never approves anything itself.
 */
export function requestBody(input: {
  action: string;
  server: string;
  tool: string;
  args: JsonObject;
  annotations: ToolAnnotations | undefined;
  definitionHash: string;
  trust: ServerTrust;
  hints: ToolHints | undefined;
  idempotencyKey: string;
}): CreateRequestBody {
  const a = input.annotations ?? {};
  const readOnly = a.readOnlyHint === true && a.destructiveHint !== true;
  const confidence = input.hints?.confidence ?? (input.trust.trusted && readOnly ? input.trust.readOnlyConfidence : undefined);
  const annotations: JsonObject = {};
  for (const key of ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint'] as const) {
    if (typeof a[key] === 'boolean') annotations[key] = a[key];
  }
  return {
    action: input.action,
    args: input.args,
    description: input.hints?.description ?? `MCP tool call: ${input.tool} on server ${input.server}`,
    ...(confidence !== undefined ? { confidence } : {}),
    ...(input.hints?.riskLevel !== undefined ? { riskLevel: input.hints.riskLevel } : {}),
    context: {
      ...(typeof a.destructiveHint === 'boolean' && input.trust.trusted ? { reversible: !a.destructiveHint } : {}),
      mcp: {
        server: input.server,
        tool: input.tool,
        annotations,
        annotationsTrusted: input.trust.trusted,
        definitionHash: input.definitionHash,
      },
    },
    idempotencyKey: input.idempotencyKey,
  };
}

export type RunPlan = { run: true; args: JsonObject } | { run: false; reason: string };

/**
 * Whether an approved decision may run the call it was asked for, and with which args. The
 * gateway offers no alternatives, so an approval naming another action (an alternative, or a
 * forged decision) is refused: the original must not run under it, and another tool must not
 * run under a decision nobody made for it. Modified args run as modified.
 */
export function runPlan(requested: string, decision: Decision): RunPlan {
  if (decision.outcome !== 'approved') return { run: false, reason: `the request was ${decision.outcome}` };
  if (decision.action !== requested) {
    return { run: false, reason: `the approval is for ${String(decision.action)}, not ${requested}; the gateway runs only the tool that was asked for` };
  }
  if (decision.args === null || typeof decision.args !== 'object' || Array.isArray(decision.args)) {
    return { run: false, reason: 'the approval carries no args' };
  }
  return { run: true, args: decision.args };
}

/** Why a decided request does not run, in the words an agent (and its user) will read. */
export function refusalText(action: string, requestId: string, decision: Decision): string {
  const who = decision.deciders.map((d) => d.name).join(', ');
  switch (decision.outcome) {
    case 'rejected':
      return `${action} was ${decision.decidedBy === 'policy' ? 'blocked by policy' : `rejected by ${who || 'a reviewer'}`} (request ${requestId}): ${decision.reason ?? 'no reason given'}`;
    case 'expired':
      return `${action} expired without a decision (request ${requestId})${decision.reason ? `: ${decision.reason}` : ''}`;
    case 'cancelled':
      return `${action} was cancelled (request ${requestId})${decision.reason ? `: ${decision.reason}` : ''}`;
    case 'approved':
      return `${action} was approved (request ${requestId})`;
  }
}

/** The request an admin approves to re-list a tool whose definition changed. */
export const TOOL_CHANGE_ACTION = 'mcp.tool_change';

export function toolChangeArgs(name: string, pinned: string, hash: string, definition: ToolDefinition): JsonObject {
  return { tool: name, pinnedHash: pinned, newHash: hash, definition: definition as unknown as JsonObject };
}

/**
 * True when `decision` approves exactly the tool change the gateway asked about: approved by
 * reviewers (never by policy alone), for `mcp.tool_change`, with the args unmodified.
 */
export function approvesToolChange(decision: Decision, expected: JsonObject): boolean {
  return (
    decision.outcome === 'approved' &&
    decision.decidedBy === 'reviewers' &&
    decision.action === TOOL_CHANGE_ACTION &&
    decision.args !== null &&
    canonicalJson(decision.args) === canonicalJson(expected)
  );
}

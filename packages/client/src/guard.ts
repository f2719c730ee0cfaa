/**
 * `guard()`: wrap a risky async function so every call asks first. The function runs only with
 * what was approved: the reviewer's modified args, or the alternative they chose, and nothing a
 * server could substitute (the decision is checked against what this process offered).
 *
 * Before it runs anything it claims the approval, once (`{status: started, receipt}`): a claim
 * the server refuses (ALREADY_EXECUTED, RECEIPT_EXPIRED, RECEIPT_MISMATCH, …) is thrown and the
 * function never runs. Then the result is reported (succeeded / failed).
 */
import {
  CountersignError,
  canonicalJson,
  isCountersignError,
  type ApproverSpec,
  type CreateRequestBody,
  type Decision,
  type JsonObject,
  type RequestContext,
  type RiskLevel,
} from '@countersign/core';
import { outcomeOf, type ApprovalHandle } from './handle.ts';

export interface GuardAlternative<A, R> {
  /** The name a reviewer picks (`alternative: "quarantine"`). */
  name: string;
  action: string;
  /** Arguments of the alternative: fixed, or derived from the guarded call's arguments. */
  args?: JsonObject | ((args: A) => JsonObject);
  description?: string;
  /** Runs the alternative with its (approved) args. */
  run: (args: JsonObject) => Promise<R>;
}

export interface GuardOptions<A, R> {
  action: string;
  describe?: (args: A) => string;
  confidence?: number | ((args: A) => number);
  riskLevel?: RiskLevel | ((args: A) => RiskLevel);
  context?: RequestContext | ((args: A) => RequestContext);
  alternatives?: ReadonlyArray<GuardAlternative<A, R>>;
  approvers?: ApproverSpec[];
  /** How long a call waits for a decision (ms). On timeout the request is withdrawn and WAIT_TIMEOUT thrown. */
  timeoutMs?: number;
  /** Server-side deadline: the request expires (fail-closed) after this many seconds. */
  timeoutSeconds?: number;
  /**
   * Same key, same request: a retried call re-attaches to the earlier request instead of asking
   * again. A retry while the first call is still in flight (in this process) joins that call, so
   * the action runs once; a call after the request already ran throws ALREADY_DECIDED.
   */
  idempotencyKey?: (args: A) => string;
}

/** What guard() needs from the client: kept narrow so the two modules do not import each other. */
export interface GuardHost {
  requestApproval(body: CreateRequestBody): Promise<ApprovalHandle>;
  reportError(err: unknown, requestId: string): void;
}

export type Guarded<A, R> = (args: A) => Promise<R>;

export function createGuard<A extends object, R>(host: GuardHost, fn: (args: A) => Promise<R>, options: GuardOptions<A, R>): Guarded<A, R> {
  if (typeof fn !== 'function') throw new CountersignError('VALIDATION_FAILED', 'guard() needs a function to wrap');
  if (!options?.action) throw new CountersignError('VALIDATION_FAILED', 'guard() needs options.action');
  const names = new Set<string>();
  for (const alt of options.alternatives ?? []) {
    if (names.has(alt.name)) throw new CountersignError('VALIDATION_FAILED', `guard(): duplicate alternative "${alt.name}"`);
    if (typeof alt.run !== 'function') throw new CountersignError('VALIDATION_FAILED', `guard(): alternative "${alt.name}" needs run()`);
    names.add(alt.name);
  }

  // Calls in flight by idempotency key: a retry while the first call still waits joins it
  // instead of running the action a second time when the one request is approved.
  const inflight = new Map<string, Promise<R>>();

  const guarded = async (args: A): Promise<R> => {
    const key = options.idempotencyKey?.(args);
    if (key === undefined) return call(args, undefined);
    const running = inflight.get(key);
    if (running) return running;
    const started = call(args, key).finally(() => inflight.delete(key));
    inflight.set(key, started);
    return started;
  };
  return guarded;

  async function call(args: A, idempotencyKey: string | undefined): Promise<R> {
    const body = guardRequestBody(options, args, idempotencyKey);
    const sentArgs = body.args as JsonObject;
    const alternatives: Offered<A, R>[] = (options.alternatives ?? []).map((alt, i) => ({ alt, args: body.alternatives![i]!.args as JsonObject }));

    const handle = await host.requestApproval(body);
    if (handle.request.action !== options.action) {
      throw new CountersignError('RECEIPT_MISMATCH', `asked about ${options.action}, the server filed ${handle.request.action}`, {
        requestId: handle.id,
      });
    }
    if (handle.replayed && (handle.status === 'executing' || handle.status === 'executed' || handle.status === 'execution_failed')) {
      throw new CountersignError('ALREADY_DECIDED', `request ${handle.id} (idempotency key reused) already ran: ${handle.status}`, {
        requestId: handle.id,
        status: handle.status,
        execution: handle.request.execution,
      });
    }

    const decision = await awaitDecision(handle, options.timeoutMs);

    // Decide what may run, from what this process offered — never from what the server names.
    // Refused here, nothing is claimed: the approval stays unclaimed and runs out at its expiry.
    const planned = plan(decision, options.action, sentArgs, alternatives, fn, handle.id);
    // The server's signature must cover exactly what is about to run.
    await handle.checkReceipt(decision, { action: planned.action, args: planned.args });
    const run = planned.run;
    // Claimed once, before anything runs: a refused claim (a replay, an expired or foreign receipt) throws, and nothing runs.
    await handle.claim(decision);

    let result: R;
    try {
      result = await run();
    } catch (err) {
      await handle
        .reportExecution({ status: 'failed', error: errorText(err) })
        .catch((reportErr: unknown) => host.reportError(reportErr, handle.id));
      throw err;
    }
    // The action ran: a failed report must not look like a failed action (the caller might retry it).
    const summary = jsonSafe(result);
    await handle
      .reportExecution({ status: 'succeeded', ...(summary !== undefined ? { result: summary } : {}) })
      .catch((reportErr: unknown) => host.reportError(reportErr, handle.id));
    return result;
  }
}

/**
 * The create body `guard()` files for one call: the args and each alternative's args as JSON
 * objects, the options' values for these args. Framework adapters build the same body through
 * `@countersign/client/framework`, so a check made before a tool runs and the guarded run itself
 * hit one request (same key, same body) instead of an IDEMPOTENCY_CONFLICT.
 */
export function guardRequestBody<A, R>(options: GuardOptions<A, R>, args: A, idempotencyKey: string | undefined): CreateRequestBody {
  const alternatives = (options.alternatives ?? []).map((alt) => ({
    name: alt.name,
    action: alt.action,
    args: jsonClone(typeof alt.args === 'function' ? alt.args(args) : (alt.args ?? {})) as JsonObject,
    ...(alt.description !== undefined ? { description: alt.description } : {}),
  }));
  return {
    action: options.action,
    args: jsonClone(args ?? {}) as JsonObject,
    ...(options.describe ? { description: options.describe(args) } : {}),
    ...(options.confidence !== undefined ? { confidence: valueOf(options.confidence, args) } : {}),
    ...(options.riskLevel !== undefined ? { riskLevel: valueOf(options.riskLevel, args) } : {}),
    ...(options.context !== undefined ? { context: valueOf(options.context, args) } : {}),
    ...(alternatives.length > 0 ? { alternatives } : {}),
    ...(options.approvers ? { approvers: options.approvers } : {}),
    ...(options.timeoutSeconds !== undefined ? { timeoutSeconds: options.timeoutSeconds } : {}),
    ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
  };
}

async function awaitDecision(handle: ApprovalHandle, timeoutMs: number | undefined): Promise<Decision> {
  try {
    // The receipt is checked once, at the gate in call(), against exactly what will run.
    return outcomeOf(await handle.wait(timeoutMs === undefined ? {} : { timeoutMs }));
  } catch (err) {
    if (!isCountersignError(err) || err.code !== 'WAIT_TIMEOUT') throw err;
    // Nobody will run it once we stop waiting: withdraw it, so it is not approved into the void.
    try {
      await handle.cancel(`the agent stopped waiting after ${Math.round(((err.details as { timeoutMs?: number })?.timeoutMs ?? 0) / 1000)} s`);
    } catch (cancelErr) {
      // Decided between the timeout and the cancel: honour that decision.
      if (isCountersignError(cancelErr) && cancelErr.code === 'ALREADY_DECIDED') return outcomeOf(await handle.refresh());
    }
    throw err;
  }
}

type Offered<A, R> = { alt: GuardAlternative<A, R>; args: JsonObject };

function plan<A, R>(
  decision: Decision,
  action: string,
  sentArgs: JsonObject,
  alternatives: ReadonlyArray<Offered<A, R>>,
  fn: (args: A) => Promise<R>,
  requestId: string,
): { run: () => Promise<R>; action: string; args: JsonObject } {
  const mismatch = (message: string) =>
    new CountersignError('RECEIPT_MISMATCH', `${message}; refusing to run`, { requestId, decision });
  if (decision.outcome !== 'approved') throw mismatch(`decision is ${decision.outcome}`);
  if (decision.args !== null && (typeof decision.args !== 'object' || Array.isArray(decision.args))) {
    throw mismatch('approved args are not an object');
  }
  if (decision.alternative !== null) {
    const offered = alternatives.find((o) => o.alt.name === decision.alternative);
    if (!offered) throw mismatch(`the approved alternative "${decision.alternative}" was never offered`);
    if (decision.action !== offered.alt.action) {
      throw mismatch(`alternative "${offered.alt.name}" is ${offered.alt.action}, the decision says ${decision.action}`);
    }
    const args = decision.args ?? offered.args;
    // Reviewers choose alternatives as offered; they cannot edit their args.
    if (canonicalJson(args) !== canonicalJson(offered.args)) throw mismatch(`alternative "${offered.alt.name}" came back with other args`);
    return { run: () => offered.alt.run(args), action: offered.alt.action, args };
  }
  if (decision.action !== action) throw mismatch(`guarded ${action}, the decision says ${decision.action}`);
  const args = decision.args ?? sentArgs;
  if (!decision.modified && canonicalJson(args) !== canonicalJson(sentArgs)) {
    throw mismatch('the decision changed the args without marking them modified');
  }
  return { run: () => fn(args as A), action, args };
}

function valueOf<A, T>(value: T | ((args: A) => T), args: A): T {
  return typeof value === 'function' ? (value as (args: A) => T)(args) : value;
}

function jsonClone(value: unknown): unknown {
  const text = JSON.stringify(value);
  if (text === undefined) throw new CountersignError('VALIDATION_FAILED', 'guarded args must be a JSON object');
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CountersignError('VALIDATION_FAILED', 'guarded args must be a JSON object');
  }
  return parsed;
}

function errorText(err: unknown): string {
  const text = err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);
  return (text || 'failed').slice(0, 2000);
}

/**
 * A JSON-safe summary of a result for the audit record: bigints as strings, Maps and Sets as
 * objects and arrays, errors as {name, message}, cycles cut, functions dropped, and anything
 * over `maxChars` of JSON replaced by a truncated preview.
 */
export function jsonSafe(value: unknown, maxChars = 16_384): unknown {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  const ancestors: object[] = [];
  let text: string | undefined;
  try {
    text = JSON.stringify(value, function (this: unknown, _key, v: unknown) {
      // `this` is the holder: pop ancestors that are no longer on the path.
      while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
      if (typeof v === 'bigint') return v.toString();
      if (typeof v === 'function' || typeof v === 'symbol') return undefined;
      if (v instanceof Error) return { name: v.name, message: v.message };
      if (v instanceof Map) v = Object.fromEntries([...v].map(([k, x]) => [String(k), x]));
      else if (v instanceof Set) v = [...v];
      if (typeof v === 'object' && v !== null) {
        if (ancestors.includes(v)) return '[Circular]';
        ancestors.push(v);
      }
      return v;
    });
  } catch {
    return { unserializable: true, type: Object.prototype.toString.call(value) };
  }
  if (text === undefined) return undefined;
  if (text.length > maxChars) return { truncated: true, chars: text.length, preview: text.slice(0, 1_000) };
  return JSON.parse(text) as unknown;
}

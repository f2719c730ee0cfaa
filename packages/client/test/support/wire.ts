/**
 * The recorded wire format of the current API: one scripted agent session (every response
 * shape the SDK reads), recorded from a live server and replayed through the client.
 *
 * `scenario()` is the session. Recording runs it against a real server through a fetch that
 * keeps every exchange; replaying runs it against a fetch that answers from the recording, in
 * order, so a client change that no longer understands what the server sends fails the test.
 */
import { Countersign, CountersignError, type FetchLike } from '../../src/index.ts';

export interface Exchange {
  method: string;
  /** Path with the query's values dropped for `waitSeconds` (its value depends on timing). */
  path: string;
  status: number;
  contentType: string;
  body: string;
}

export interface WireRecording {
  /** How it was made; see record-wire.ts. */
  recordedWith: string;
  /** The recording server's audit key id: the replaying client pins it, so the recorded receipts are checked for real. */
  auditKeyId: string;
  exchanges: Exchange[];
}

export function normalizePath(url: string): string {
  const { pathname, searchParams } = new URL(url);
  const wait = searchParams.has('waitSeconds') ? '?waitSeconds=N' : '';
  return `${pathname}${wait}`;
}

/**
 * A fetch that keeps every exchange it relays, in the order the calls were made (not the order
 * they were answered: the key fetch runs alongside the first create). Bodies are read whole;
 * event streams end by themselves for closed requests.
 */
export function recordingFetch(into: Exchange[]): FetchLike {
  return async (input, init) => {
    const slot = into.length;
    into.push({ method: init.method ?? 'GET', path: normalizePath(input), status: 0, contentType: '', body: '' });
    const res = await fetch(input, init);
    const body = await res.text();
    const contentType = res.headers.get('content-type') ?? '';
    into[slot] = { ...into[slot]!, status: res.status, contentType, body };
    return new Response(body, { status: res.status, headers: { 'content-type': contentType } });
  };
}

/** A fetch that answers each call with the next recorded exchange, which must be for the same method and path. */
export function replayingFetch(recording: WireRecording): FetchLike & { remaining(): number } {
  let next = 0;
  const replay = (async (input: string, init: RequestInit) => {
    const method = init.method ?? 'GET';
    const path = normalizePath(input);
    const exchange = recording.exchanges[next++];
    if (!exchange || exchange.method !== method || exchange.path !== path) {
      throw new Error(`replay: call ${next} is ${method} ${path}, the recording has ${exchange ? `${exchange.method} ${exchange.path}` : 'nothing more'}`);
    }
    return new Response(exchange.body, { status: exchange.status, headers: { 'content-type': exchange.contentType } });
  }) as FetchLike & { remaining(): number };
  replay.remaining = () => recording.exchanges.length - next;
  return replay;
}

/** What the operator does at each point of the session (live: real reviews; replay: nothing, it is recorded). */
export interface Operator {
  approveModified(requestId: string, args: Record<string, unknown>): Promise<void>;
  reject(requestId: string, reason: string): Promise<void>;
}

export interface Outcomes {
  auto: { status: string; decision: unknown; executedStatus: string };
  modified: { ran: unknown; finalStatus: string };
  rejected: { code: string; message: string };
  cancelled: { status: string; reason: string | null };
  replayed: { replayed: boolean; sameId: boolean };
  invalid: { code: string };
  events: string[];
}

const AUTO = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } };

/**
 * The session. Every call the client makes is serial and in a fixed order, so a recording of it
 * replays exactly. Waits are started before the operator acts, as in production.
 */
export async function scenario(cs: Countersign, operator: Operator): Promise<Outcomes> {
  // Created and decided by policy, with a signed receipt; claimed once with it; then reported.
  const auto = await cs.requestApproval({ ...AUTO, idempotencyKey: 'wire-auto-1' });
  const autoStatus = auto.status;
  const autoDecision = await auto.decision();
  await auto.claim(autoDecision);
  await auto.reportExecution({ status: 'succeeded', result: { blocked: true } });

  // The same idempotency key again: the same request, replayed.
  const again = await cs.requestApproval({ ...AUTO, idempotencyKey: 'wire-auto-1' });

  // Queued; approved with modified args while the guarded call waits; run and reported.
  let ran: unknown = null;
  const isolate = cs.guard(
    async (args: { host: string; mode?: string }) => {
      ran = args;
      return 'isolated';
    },
    { action: 'isolate_host', confidence: 0.82, idempotencyKey: () => 'wire-isolate-1' },
  );
  const pending = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-wire' }, confidence: 0.82, idempotencyKey: 'wire-isolate-1' });
  await operator.approveModified(pending.id, { host: 'ws-wire', mode: 'network-only' });
  await isolate({ host: 'ws-wire' });
  const afterRun = await cs.handle(pending.id);

  // Queued, then rejected with a reason.
  const doomed = await cs.requestApproval({ action: 'isolate_host', args: { host: 'dc-wire' }, confidence: 0.82, idempotencyKey: 'wire-reject-1' });
  await operator.reject(doomed.id, 'a domain controller');
  const rejected = await doomed.decision().then(
    () => null,
    (e: unknown) => e as CountersignError,
  );

  // Queued, then withdrawn by the agent.
  const withdrawn = await cs.requestApproval({ action: 'isolate_host', args: { host: 'ws-cancel' }, confidence: 0.82, idempotencyKey: 'wire-cancel-1' });
  await withdrawn.cancel('no longer needed');

  // The event stream of a closed request: its state, then the end.
  const events: string[] = [];
  for await (const state of afterRun.events()) events.push(state.status);

  // An error body.
  const invalid = await cs.requestApproval({ action: 'block_ip', args: {}, confidence: 7, idempotencyKey: 'wire-bad-1' }).then(
    () => null,
    (e: unknown) => e as CountersignError,
  );

  return {
    auto: { status: autoStatus, decision: autoDecision, executedStatus: auto.request.status },
    modified: { ran, finalStatus: afterRun.status },
    rejected: { code: rejected?.code ?? 'none', message: rejected?.message ?? '' },
    cancelled: { status: withdrawn.status, reason: withdrawn.request.decision?.reason ?? null },
    replayed: { replayed: again.replayed, sameId: again.id === auto.id },
    invalid: { code: invalid?.code ?? 'none' },
    events,
  };
}

/** The JSON shape of a value: object keys and value types, recursively (arrays by their first element). */
export function shapeOf(value: unknown): unknown {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length === 0 ? ['empty'] : [shapeOf(value[0])];
  if (typeof value === 'object') {
    return Object.fromEntries(Object.keys(value as object).sort().map((k) => [k, shapeOf((value as Record<string, unknown>)[k])]));
  }
  return typeof value;
}

/** An exchange's shape: JSON bodies by shape, event streams by their event names, anything else by content type. */
export function exchangeShape(exchange: Exchange): unknown {
  const head = { method: exchange.method, path: exchange.path.replace(/req_[0-9a-z]+/g, ':id'), status: exchange.status };
  if (exchange.contentType.startsWith('application/json')) return { ...head, body: shapeOf(JSON.parse(exchange.body)) };
  if (exchange.contentType.startsWith('text/event-stream')) {
    return { ...head, events: [...exchange.body.matchAll(/^event: (.*)$/gm)].map((m) => m[1]) };
  }
  return { ...head, contentType: exchange.contentType.split(';')[0] };
}

/**
 * `@countersign/client/testing`: a scripted stand-in for a Countersign server, for agent
 * developers' own CI. Script what the humans decide, then exercise your code through the very
 * same `Countersign` / `guard()` / `handle.decision()` API it uses in production:
 *
 *   const double = await CountersignDouble.create();
 *   double.decide('isolate_host', modify({ host: 'ws-042', mode: 'network-only' }));
 *   double.decideOnce('delete_data', reject('not on a Friday'));
 *   const cs = double.client();                  // a real Countersign; pass it where yours goes
 *   await isolate({ host: 'ws-042' });           // runs with the modified args
 *   double.executions;                           // what your code reported
 *
 * Nothing is faked past the transport: every decision carries a receipt signed with an Ed25519
 * key the double makes for itself (WebCrypto) and pins in the clients it makes, so the real
 * receipt checks run, and a scripted `forgedApproval()` is refused exactly as a forged
 * approval from a real server would be. An action with no script fails loudly
 * (NOT_IMPLEMENTED) rather than guessing a decision.
 *
 * Claims work as on a server (core's `decideClaim`): an approval's version 2 receipt is claimed
 * once (`{status: started, receipt}` → `executing`), a replay is ALREADY_EXECUTED, another
 * receipt RECEIPT_MISMATCH, and after `approvalValidForMs` (1 hour; `advance(ms)` moves the
 * double's clock) RECEIPT_EXPIRED; only a claimed approval takes its report.
 */
import {
  CountersignError,
  approvalLapsed,
  canonicalJson,
  decideClaim,
  payloadKey,
  receiptMessage,
  toBase64,
  toHex,
  utf8,
  type Actor,
  type AgentGateway,
  type ApprovalRequest,
  type CancelBody,
  type CreateRequestBody,
  type Decision,
  type ExecutionBody,
  type JsonObject,
  type Receipt,
  type ReceiptBody,
} from '@countersign/core';
import { Countersign, type GatewayClientOptions } from './countersign.ts';

/** What the humans (or the policy) do with a request. Build one with the helpers below. */
export type ScriptedDecision =
  | { kind: 'approve'; args?: JsonObject | undefined; reason?: string | undefined; afterMs?: number | undefined; byPolicy?: boolean | undefined }
  | { kind: 'alternative'; name: string; reason?: string | undefined; afterMs?: number | undefined }
  | { kind: 'reject'; reason: string; afterMs?: number | undefined; byPolicy?: boolean | undefined }
  | { kind: 'expire'; reason?: string | undefined; afterMs?: number | undefined }
  | { kind: 'pending' }
  | { kind: 'forged'; args: JsonObject; afterMs?: number | undefined };

interface Timing {
  /** Decide this long after the request was filed (it is `pending` until then). Default: at once, after the create returns. */
  afterMs?: number;
}

/** Approve as asked. `{ byPolicy: true }` decides at create, as an auto-approving policy does. */
export const approve = (options: Timing & { reason?: string; byPolicy?: boolean } = {}): ScriptedDecision => ({ kind: 'approve', ...options });
/** Approve with the reviewer's modified args. */
export const modify = (args: JsonObject, options: Timing & { reason?: string } = {}): ScriptedDecision => ({ kind: 'approve', args, ...options });
/** Approve one of the alternatives the agent offered, by name. */
export const chooseAlternative = (name: string, options: Timing & { reason?: string } = {}): ScriptedDecision => ({ kind: 'alternative', name, ...options });
/** Reject with a reason (`{ byPolicy: true }`: blocked by policy at create). */
export const reject = (reason: string, options: Timing & { byPolicy?: boolean } = {}): ScriptedDecision => ({ kind: 'reject', reason, ...options });
/** The request expires undecided (the escalation chain or the agent's `timeoutSeconds` ran out). */
export const expire = (reason?: string, options: Timing = {}): ScriptedDecision => ({ kind: 'expire', ...(reason !== undefined ? { reason } : {}), ...options });
/** Nobody decides: the agent's own wait runs out (WAIT_TIMEOUT; a guarded call then withdraws the request). */
export const timeOut = (): ScriptedDecision => ({ kind: 'pending' });
/** An "approval" of other args whose receipt was signed for the args asked: what a tampering proxy sends. The client must refuse it. */
export const forgedApproval = (args: JsonObject, options: Timing = {}): ScriptedDecision => ({ kind: 'forged', args, ...options });

export type Script = ScriptedDecision | ((request: ApprovalRequest) => ScriptedDecision);

export interface Execution {
  requestId: string;
  action: string;
  status: 'succeeded' | 'failed';
  result?: unknown;
  error?: string;
}

const REVIEWER: Actor = { type: 'operator', id: 'op_test_reviewer', name: 'test-reviewer' };

interface Subtle {
  generateKey(algorithm: { name: 'Ed25519' }, extractable: boolean, usages: string[]): Promise<{ publicKey: unknown; privateKey: unknown }>;
  exportKey(format: 'spki', key: unknown): Promise<ArrayBuffer>;
  sign(algorithm: { name: 'Ed25519' }, key: unknown, data: Uint8Array): Promise<ArrayBuffer>;
  digest(algorithm: 'SHA-256', data: Uint8Array): Promise<ArrayBuffer>;
}

function subtle(): Subtle {
  const s = (globalThis as { crypto?: { subtle?: Subtle } }).crypto?.subtle;
  if (!s) throw new CountersignError('NOT_IMPLEMENTED', 'the test double needs WebCrypto (crypto.subtle) to sign receipts');
  return s;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await subtle().digest('SHA-256', bytes)));
}

/** An in-memory gateway whose decisions are scripted; see the module comment. */
export class CountersignDouble implements AgentGateway {
  /** The double's audit public key (PEM), pinned by `client()`. */
  readonly auditPublicKeyPem: string;
  readonly keyId: string;
  /** Every request filed, latest state, in order. */
  get requests(): ApprovalRequest[] {
    return [...this.#requests.values()];
  }
  /** What the code under test reported after running (or refusing) an approved action. */
  readonly executions: Execution[] = [];
  /** The requests whose approval was claimed, in order (each at most once). */
  readonly claims: string[] = [];

  readonly #privateKey: unknown;
  readonly #requests = new Map<string, ApprovalRequest>();
  readonly #byKey = new Map<string, string>();
  readonly #standing = new Map<string, Script>();
  readonly #once = new Map<string, Script[]>();
  #fallback: Script | undefined;
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #seq = 0;
  #clock = Date.parse('2026-01-01T00:00:00.000Z');
  /** Moved forward by `advance()`: what the double's clock adds to the wall clock. */
  #offset = 0;
  readonly #validForMs: number;

  private constructor(privateKey: unknown, pem: string, keyId: string, validForMs: number) {
    this.#privateKey = privateKey;
    this.auditPublicKeyPem = pem;
    this.keyId = keyId;
    this.#validForMs = validForMs;
  }

  /** Makes a double with a fresh ephemeral signing key; approvals may be claimed for `approvalValidForMs` (1 hour). */
  static async create(options: { approvalValidForMs?: number } = {}): Promise<CountersignDouble> {
    const validForMs = options.approvalValidForMs ?? 60 * 60 * 1000;
    if (!Number.isFinite(validForMs) || validForMs < 1) throw new CountersignError('VALIDATION_FAILED', 'approvalValidForMs must be a positive number of milliseconds');
    const pair = await subtle().generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    const spki = new Uint8Array(await subtle().exportKey('spki', pair.publicKey));
    const body = toBase64(spki).replace(/(.{64})/g, '$1\n');
    const pem = `-----BEGIN PUBLIC KEY-----\n${body}${body.endsWith('\n') ? '' : '\n'}-----END PUBLIC KEY-----\n`;
    return new CountersignDouble(pair.privateKey, pem, (await sha256Hex(spki)).slice(0, 16), validForMs);
  }

  /** Moves the double's clock forward, e.g. past an approval's validity, so its claim is RECEIPT_EXPIRED. */
  advance(ms: number): this {
    const by = Math.max(0, ms);
    this.#offset += by;
    // The clock can run ahead of the wall clock (each reading is at least 1 ms after the last), so
    // move it too: every time after this is at least `ms` after every time before, and an
    // approval read just before `advance(validFor)` is past its expiry just after.
    this.#clock += by;
    return this;
  }

  /** A real `Countersign` over this double, with the double's key pinned. */
  client(options: Omit<GatewayClientOptions<CountersignDouble>, 'gateway'> = {}): Countersign<CountersignDouble> {
    return new Countersign({ auditPublicKey: this.auditPublicKeyPem, env: {}, ...options, gateway: this });
  }

  /** Every request of `action` is decided this way (until replaced). A function sees the request. */
  decide(action: string, script: Script): this {
    this.#standing.set(action, script);
    return this;
  }

  /** The next request of `action` only; queued scripts run before the standing one, in order. */
  decideOnce(action: string, script: Script): this {
    const queue = this.#once.get(action) ?? [];
    queue.push(script);
    this.#once.set(action, queue);
    return this;
  }

  /** For actions with no script of their own. */
  decideOtherwise(script: Script): this {
    this.#fallback = script;
    return this;
  }

  /** Cancels pending timers (scripted delays). Requests stay readable. */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  // ---- AgentGateway ----

  async createRequest(body: CreateRequestBody): Promise<{ request: ApprovalRequest; replayed: boolean }> {
    if (!body || typeof body.action !== 'string' || body.action === '') throw new CountersignError('VALIDATION_FAILED', 'action is required');
    if (body.idempotencyKey !== undefined) {
      const existing = this.#byKey.get(body.idempotencyKey);
      if (existing) {
        const known = this.#get(existing);
        const expiresAt = known.decision?.receipt?.expiresAt;
        // As the server (core approvalLapsed): an approval never claimed past its expiry can never run, so the key files anew.
        const lapsed = approvalLapsed({ status: known.status, claimedAt: null, claimExpiresAt: expiresAt === undefined ? null : Date.parse(expiresAt) }, Date.parse(this.#now()));
        if (!lapsed) return { request: known, replayed: true };
      }
    }
    const queued = this.#once.get(body.action);
    const script = queued?.shift() ?? this.#standing.get(body.action) ?? this.#fallback;
    if (!script) {
      throw new CountersignError('NOT_IMPLEMENTED', `the test double has no decision scripted for ${body.action}: call double.decide('${body.action}', …)`, {
        action: body.action,
      });
    }
    const at = this.#now();
    const id = `req_test${String(++this.#seq).padStart(22, '0')}`;
    const request: ApprovalRequest = {
      id,
      agentId: 'agt_test',
      agentName: 'test-agent',
      status: 'pending',
      action: body.action,
      args: (body.args ?? {}) as JsonObject,
      description: body.description ?? null,
      confidence: body.confidence ?? null,
      riskHint: body.riskLevel ?? null,
      context: (body.context ?? {}) as JsonObject,
      alternatives: (body.alternatives ?? []).map((a) => ({ name: a.name, action: a.action, args: (a.args ?? {}) as JsonObject, ...(a.description !== undefined ? { description: a.description } : {}) })),
      approvers: body.approvers ?? [],
      idempotencyKey: body.idempotencyKey ?? null,
      assessment: {
        riskScore: 0.5,
        riskLevel: body.riskLevel ?? 'medium',
        factors: [],
        automationLevel: 'advisory',
        route: 'review',
        requiresApproval: true,
        matchedRules: [],
        approval: null,
        slaSeconds: null,
        slaDueAt: null,
        mfaRequired: false,
        reasons: ['scripted by the test double'],
      },
      policyVersion: 1,
      reviews: [],
      decision: null,
      execution: null,
      createdAt: at,
      updatedAt: at,
      expiresAt: body.timeoutSeconds !== undefined ? new Date(Date.parse(at) + body.timeoutSeconds * 1000).toISOString() : null,
    };
    this.#requests.set(id, request);
    if (body.idempotencyKey !== undefined) this.#byKey.set(body.idempotencyKey, id);

    const scripted = typeof script === 'function' ? script(request) : script;
    if ((scripted.kind === 'approve' || scripted.kind === 'reject') && scripted.byPolicy) {
      await this.#apply(id, scripted, 'policy');
      const decided = this.#get(id);
      this.#requests.set(id, { ...decided, assessment: { ...decided.assessment, route: scripted.kind === 'approve' ? 'auto_approve' : 'block', requiresApproval: false } });
    } else if (scripted.kind !== 'pending') {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        void this.#apply(id, scripted, 'reviewers');
      }, Math.max(0, ('afterMs' in scripted ? scripted.afterMs : undefined) ?? 0));
      this.#timers.add(timer);
    }
    return { request: this.#get(id), replayed: false };
  }

  async getRequest(id: string, options: { waitSeconds?: number; signal?: AbortSignal } = {}): Promise<ApprovalRequest> {
    const request = this.#get(id);
    const waitMs = Math.max(0, Math.floor(options.waitSeconds ?? 0)) * 1000;
    if (request.status !== 'pending' || waitMs === 0) return request;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.get(id)?.delete(done);
        options.signal?.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = () => {
        done();
        reject(options.signal?.reason);
      };
      const timer = setTimeout(done, waitMs);
      const set = this.#waiters.get(id) ?? new Set();
      set.add(done);
      this.#waiters.set(id, set);
      if (options.signal?.aborted) aborted();
      else options.signal?.addEventListener('abort', aborted, { once: true });
    });
    return this.#get(id);
  }

  async reportExecution(id: string, body: ExecutionBody): Promise<ApprovalRequest> {
    const request = this.#get(id);
    const at = this.#now();
    if (body.status === 'started') return this.#claim(request, body.receipt, at);
    if (request.status !== 'executing') {
      const code = request.status === 'executed' || request.status === 'execution_failed' ? 'ALREADY_EXECUTED' : request.status === 'approved' || request.status === 'pending' ? 'ILLEGAL_TRANSITION' : 'ALREADY_DECIDED';
      throw new CountersignError(code, `request ${id} is ${request.status}; only a claimed approval (executing) takes its report`, { status: request.status });
    }
    this.executions.push({
      requestId: id,
      action: request.action,
      status: body.status,
      ...(body.result !== undefined ? { result: body.result } : {}),
      ...(body.error !== undefined ? { error: body.error } : {}),
    });
    return this.#put({
      ...request,
      status: body.status === 'succeeded' ? 'executed' : 'execution_failed',
      execution: { status: body.status, ...(body.result !== undefined ? { result: body.result } : {}), error: body.error ?? null, at },
      updatedAt: at,
    });
  }

  /** As the server claims: the double signed the stored receipt, so a presented one must be it exactly; then core's `decideClaim`. */
  #claim(request: ApprovalRequest, receipt: Receipt, at: string): ApprovalRequest {
    const issued = request.decision?.receipt;
    if (issued && canonicalJson(receipt as unknown as JsonObject) !== canonicalJson(issued as unknown as JsonObject) && receipt.requestId === request.id) {
      throw new CountersignError('RECEIPT_MISMATCH', `the receipt presented for ${request.id} is not the one the double signed`, { requestId: request.id });
    }
    const state = {
      requestId: request.id,
      status: request.status,
      nonce: issued?.nonce ?? null,
      expiresAt: issued?.expiresAt ?? new Date(0).toISOString(),
      payloadHash: issued?.payloadHash ?? null,
      // The double has no per-agent configuration: its agent is never disabled.
      agentDisabled: false,
    };
    const decided = decideClaim(state, receipt, new Date(at));
    if (!decided.ok) throw decided.error;
    this.claims.push(request.id);
    return this.#put({ ...request, status: 'executing', updatedAt: at });
  }

  async cancel(id: string, body: CancelBody = {}): Promise<ApprovalRequest> {
    const request = this.#get(id);
    if (request.status !== 'pending') throw new CountersignError('ALREADY_DECIDED', `request ${id} is already ${request.status}`, { status: request.status });
    await this.#decide(id, {
      outcome: 'cancelled',
      decidedBy: 'agent',
      deciders: [{ type: 'agent', id: request.agentId, name: request.agentName }],
      reason: body.reason ?? null,
      action: null,
      args: null,
      alternative: null,
      modified: false,
    });
    return this.#get(id);
  }

  /** The double's key, for a client made without `client()` (it would then trust it on first use). */
  async auditPublicKey(): Promise<string> {
    return this.auditPublicKeyPem;
  }

  // ---- internals ----

  #get(id: string): ApprovalRequest {
    const request = this.#requests.get(id);
    if (!request) throw new CountersignError('NOT_FOUND', `no request ${id}`);
    return request;
  }

  #put(request: ApprovalRequest): ApprovalRequest {
    this.#requests.set(request.id, request);
    for (const wake of [...(this.#waiters.get(request.id) ?? [])]) wake();
    return request;
  }

  /** A strictly increasing clock, so every state is newer than the last (the handle keeps the newest). */
  #now(): string {
    this.#clock = Math.max(this.#clock + 1, Date.now() + this.#offset);
    return new Date(this.#clock).toISOString();
  }

  async #apply(id: string, scripted: ScriptedDecision, decidedBy: 'policy' | 'reviewers'): Promise<void> {
    const request = this.#get(id);
    if (request.status !== 'pending') return; // cancelled by the agent meanwhile
    const deciders = decidedBy === 'policy' ? [] : [REVIEWER];
    const base = { decidedBy, deciders, alternative: null, modified: false } as const;
    switch (scripted.kind) {
      case 'approve': {
        const args = scripted.args ?? request.args;
        const modified = scripted.args !== undefined;
        await this.#decide(id, { ...base, outcome: 'approved', reason: scripted.reason ?? null, action: request.action, args, modified });
        return;
      }
      case 'alternative': {
        const alt = request.alternatives.find((a) => a.name === scripted.name);
        if (!alt) {
          // Fail loudly, as the server does (UNKNOWN_ALTERNATIVE): reject with the reason, so the test sees it.
          await this.#decide(id, { ...base, outcome: 'rejected', reason: `test double: the script chose "${scripted.name}", which the agent never offered (offered: ${request.alternatives.map((a) => a.name).join(', ') || 'none'})`, action: null, args: null });
          return;
        }
        await this.#decide(id, { ...base, outcome: 'approved', reason: scripted.reason ?? null, action: alt.action, args: alt.args, alternative: alt.name });
        return;
      }
      case 'reject':
        await this.#decide(id, { ...base, outcome: 'rejected', reason: scripted.reason, action: null, args: null });
        return;
      case 'expire':
        await this.#decide(id, { ...base, decidedBy: 'timeout', deciders: [], outcome: 'expired', reason: scripted.reason ?? 'no decision before the deadline', action: null, args: null });
        return;
      case 'forged': {
        // Signed for the args asked, delivered with other args.
        const decision = await this.#signed(id, { ...base, outcome: 'approved', reason: null, action: request.action, args: request.args });
        this.#put({ ...this.#get(id), status: 'approved', decision: { ...decision, args: scripted.args, modified: true }, updatedAt: decision.at });
        return;
      }
      case 'pending':
        return;
    }
  }

  async #decide(id: string, decision: Omit<Decision, 'at' | 'receipt'>): Promise<void> {
    const signed = await this.#signed(id, decision);
    const status = signed.outcome;
    this.#put({ ...this.#get(id), status, decision: signed, updatedAt: signed.at });
  }

  async #signed(id: string, decision: Omit<Decision, 'at' | 'receipt'>): Promise<Decision> {
    const at = this.#now();
    const runnable = decision.outcome === 'approved' && decision.action !== null && decision.args !== null;
    const common = {
      requestId: id,
      outcome: decision.outcome,
      decidedBy: decision.decidedBy,
      deciders: decision.deciders.map((d) => ({ type: d.type, id: d.id, name: d.name })),
      decidedAt: at,
      payloadHash: runnable ? await sha256Hex(utf8(payloadKey(decision.action!, decision.args!))) : null,
      keyId: this.keyId,
    };
    // As a server signs: a runnable approval is version 2, with the nonce and expiry it is claimed with once.
    const body: ReceiptBody = runnable
      ? { version: 2, ...common, nonce: toHex(globalThis.crypto.getRandomValues(new Uint8Array(16))), expiresAt: new Date(Date.parse(at) + this.#validForMs).toISOString() }
      : { version: 1, ...common };
    const signature = new Uint8Array(await subtle().sign({ name: 'Ed25519' }, this.#privateKey, receiptMessage(body)));
    return { ...decision, at, receipt: { ...body, signature: toBase64(signature) } };
  }
}

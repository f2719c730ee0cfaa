/**
 * The engine in the agent's own process, behind the same `AgentGateway` the HTTP transport
 * implements, so `@countersign/client` works unchanged over either. Bodies are validated with
 * the same schemas the HTTP layer uses, and errors are the same `CountersignError` codes.
 *
 *   const gateway = await createEmbeddedGateway({ database: 'sqlite:./agent.db' });
 *   const cs = new Countersign({ gateway });            // or Countersign.embedded()
 *   await gateway.review(id, { verdict: 'approve' });    // as the embedded admin operator
 */
import {
  CancelBody,
  CountersignError,
  CreateRequestBody,
  DEFAULT_POLICY_YAML,
  ExecutionBody,
  ReviewBody,
  isTerminal,
  type AgentGateway,
  type ApprovalRequest,
  type Role,
} from '@countersign/core';
import type { z } from 'zod';
import { resolve } from 'node:path';
import { KEY_FILE, defaultAuditKeyPath } from './audit/config.ts';
import { processEnvironment, resolveRuntimeConfig, serverSecretBeside } from './config.ts';
import type { Engine } from './engine/engine.ts';
import type { Principal } from './engine/principal.ts';
import { openRuntime } from './runtime.ts';
import { parseDatabaseUrl } from './store/connect.ts';

export interface EmbeddedOptions {
  /** `sqlite::memory:` (default), `sqlite:PATH` or `postgres://…`. */
  database?: string | undefined;
  /** Policy YAML text; the built-in default policy when absent. */
  policy?: string | undefined;
  /** The agent every request is filed under (created on first use). Default `embedded-agent`. */
  agent?: string | undefined;
  /** Milliseconds between scheduler polls (deadlines: `timeoutSeconds`, SLA escalation). Default 1000. */
  sweepIntervalMs?: number | undefined;
  /**
   * The Ed25519 key file that signs the audit trail and decision receipts, created if missing.
   * Default: next to the SQLite file; in memory only for `sqlite::memory:`; for PostgreSQL, `./countersign-audit-key.pg-<host>-<port>-<db>.pem`.
   */
  auditKey?: string | undefined;
  /**
   * One-time hints for the developer (default: `console.warn`). Today one: the first request that
   * waits for a human on `sqlite::memory:`, where only `review()` in this process can decide it.
   */
  onWarning?: ((message: string) => void) | undefined;
}

/** Said once per gateway when a request first waits for a human on an in-memory database. */
export const MEMORY_HINT =
  'countersign: request {id} waits for a human, but this embedded gateway uses sqlite::memory:, which no other process can open: ' +
  'the CLI and the dashboard cannot see it. Decide it in this process with gateway.review(id, { verdict: "approve" }), ' +
  "or use database: 'sqlite:./countersign.db' and run `countersign serve --database sqlite:./countersign.db` beside it " +
  '(it prints an admin token on its first start on that file).';

type OperatorPrincipal = Extract<Principal, { kind: 'operator' }>;
type AgentPrincipal = Extract<Principal, { kind: 'agent' }>;

export interface EmbeddedGateway extends AgentGateway {
  readonly engine: Engine;
  /** The principal requests are made as. */
  readonly agent: AgentPrincipal;
  /** The database's admin operator (created on first open): reviews default to it. */
  readonly admin: OperatorPrincipal;
  /** States as they change: the current one first, then each change, until the request is closed. */
  events(id: string, options?: { signal?: AbortSignal | undefined }): AsyncGenerator<ApprovalRequest, void, undefined>;
  /** One operator's vote, as `as` (default: the admin operator). */
  review(id: string, body: z.input<typeof ReviewBody>, as?: Principal): Promise<ApprovalRequest>;
  /** An operator principal by name, created with `roles` when it does not exist yet. */
  operator(name: string, roles?: Role[], groups?: string[]): Promise<OperatorPrincipal>;
  close(): Promise<void>;
}

/** Same cap as the HTTP `?waitSeconds=`. */
const MAX_WAIT_SECONDS = 300;

export async function createEmbeddedGateway(options: EmbeddedOptions = {}): Promise<EmbeddedGateway> {
  const database = options.database ?? 'sqlite::memory:';
  const agentName = options.agent ?? 'embedded-agent';
  if (!/^[A-Za-z0-9_.@-]{1,100}$/.test(agentName)) {
    throw new CountersignError('VALIDATION_FAILED', 'agent: 1–100 letters, digits and _ . @ -', { field: 'agent' });
  }
  // The options are the flags; everything else (encryption keys, reviewer limits, redacted audit
  // fields, checkpoint cadence, channel secrets, COUNTERSIGN_PUBLIC_URL) comes from the same
  // config the server resolves. The database, poll interval and policy are never taken from the
  // environment here: an agent's process must not open the server's database by accident.
  const resolved = resolveRuntimeConfig({ database, tickMs: options.sweepIntervalMs ?? 1000 }, processEnvironment());
  // The key follows the database (as the option says), never COUNTERSIGN_AUDIT_KEY_PATH: that names the server's key.
  const keyPath = options.auditKey ? resolve(options.auditKey) : defaultAuditKeyPath(database);
  const legacyKeyPath = options.auditKey || database.startsWith('sqlite:') ? null : resolve(KEY_FILE);
  // The server secret follows the key too (beside it, named after it), so a later `serve` on the same file finds it.
  const serverSecretPath = keyPath === null ? null : serverSecretBeside(keyPath);
  const config = Object.freeze({ ...resolved, serverSecretPath, audit: Object.freeze({ ...resolved.audit, keyPath, legacyKeyPath }) });
  const policy = { text: options.policy ?? DEFAULT_POLICY_YAML, source: options.policy === undefined ? 'built-in default (embedded)' : 'embedded' };
  const runtime = await openRuntime(config, { policy });
  const { engine } = runtime;
  let admin: OperatorPrincipal;
  let agent: AgentPrincipal;
  try {
    admin = await adminPrincipal(engine);
    agent = await agentPrincipal(engine, admin, agentName);
  } catch (err) {
    await runtime.close();
    throw err;
  }

  // Deadlines (timeoutSeconds, SLA escalation) fire here as they do in the server, and the trail is checkpointed.
  runtime.start({ reviewBase: config.publicUrl || 'http://127.0.0.1:8080' });

  const inMemory = parseDatabaseUrl(database).target === ':memory:';
  const warn = options.onWarning ?? ((message: string) => console.warn(message));
  let hinted = false;

  return {
    engine,
    agent,
    admin,

    async createRequest(body) {
      const created = await engine.createRequest(agent, parse(CreateRequestBody, body, 'body'));
      if (inMemory && !hinted && created.request.status === 'pending') {
        hinted = true;
        warn(MEMORY_HINT.replace('{id}', created.request.id));
      }
      return created;
    },

    async getRequest(id, { waitSeconds, signal } = {}) {
      const wait = Math.min(MAX_WAIT_SECONDS, Math.max(0, Math.floor(waitSeconds ?? 0)));
      return wait > 0 ? engine.waitForDecision(agent, id, wait * 1000, signal) : engine.getRequest(agent, id);
    },

    async reportExecution(id, body) {
      return engine.reportExecution(agent, id, parse(ExecutionBody, body, 'body'));
    },

    async cancel(id, body = {}) {
      return engine.cancel(agent, id, parse(CancelBody, body, 'body'));
    },

    async auditPublicKey() {
      return engine.trail.key.publicKeyPem;
    },

    async auditKeyChain() {
      return engine.trail.keyChain();
    },

    async *events(id, { signal } = {}) {
      const stop = new AbortController();
      const onAbort = () => stop.abort(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        // Subscribe before each read, so a change between the read and the wait is never missed.
        let changed = engine.wakeups.next(id, 60_000, stop.signal);
        let last = await engine.getRequest(agent, id);
        yield last;
        while (!isTerminal(last.status)) {
          if ((await changed) === 'aborted') break;
          changed = engine.wakeups.next(id, 60_000, stop.signal);
          const next = await engine.getRequest(agent, id);
          if (next.updatedAt !== last.updatedAt || next.status !== last.status) yield next;
          last = next;
        }
        signal?.throwIfAborted();
      } finally {
        signal?.removeEventListener('abort', onAbort);
        stop.abort();
      }
    },

    async review(id, body, as = admin) {
      // Re-resolved on every call (2 s cache): an operator disabled, removed or re-roled since
      // `operator()` (or the embedded admin) acts as they are now, or not at all.
      const current = as.kind === 'operator' ? await engine.credentials.currentOperator(as.operatorId) : as;
      if (!current) throw new CountersignError('UNAUTHENTICATED', `operator ${as.kind === 'operator' ? as.name : ''} is disabled, removed or its record does not verify`);
      return engine.review(current, id, parse(ReviewBody, body, 'body'));
    },

    async operator(name, roles = ['reviewer'], groups = []) {
      if (await engine.operatorExists(name)) {
        const active = await engine.credentials.operatorPrincipal(name);
        if (!active) throw new CountersignError('FORBIDDEN', `operator ${name} exists but is disabled, removed or its record does not verify`);
        return active;
      }
      const created = await engine.createOperator(admin, { name, roles, groups });
      const principal = await engine.authenticate(created.token);
      if (principal?.kind !== 'operator') throw new CountersignError('INTERNAL', `operator ${name} was created but cannot sign in`);
      return principal;
    },

    close() {
      return runtime.close();
    },
  };
}

/**
 * The database's admin operator: the first with the admin role, or on a new database an `admin`
 * created without a token. The gateway acts as it in-process and needs none; a later
 * `countersign serve` on the same file gives it a token and prints it (Engine.bootstrap).
 */
async function adminPrincipal(engine: Engine): Promise<OperatorPrincipal> {
  return engine.embeddedAdmin();
}

async function agentPrincipal(engine: Engine, admin: OperatorPrincipal, name: string): Promise<AgentPrincipal> {
  const existing = await engine.agentByName(name);
  if (existing) return { kind: 'agent', agentId: existing.id, agentName: existing.name };
  const created = await engine.createAgentKey(admin, name);
  return { kind: 'agent', agentId: created.agentId, agentName: created.agentName };
}

/** Validation as the HTTP layer does it: VALIDATION_FAILED naming the first issue, all issues in details. */
function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message, code: i.code }));
  const first = issues[0];
  throw new CountersignError('VALIDATION_FAILED', first ? `invalid ${where}: ${first.path || '(root)'}: ${first.message}` : `invalid ${where}`, {
    target: where,
    issues,
  });
}

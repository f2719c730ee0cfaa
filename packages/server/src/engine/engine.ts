/**
 * The orchestrator and the only writer of requests, reviews, credentials and audit entries.
 * HTTP handlers, the CLI (through HTTP), the embedded gateway and background loops all call
 * these methods; none of them writes SQL. Every state change and its audit entries are written
 * in one transaction, and waiters are woken only after the commit.
 */
import {
  type JsonObject,
  agentEnabled,
  adminChangeSigners,
  type LineageEdge,
  agentPolicy,
  isAdminChangeAction,
  AGGREGATE_ACTION,
  CountersignError,
  EMPTY_HISTORY,
  MAX_AGGREGATE_MEMBERS,
  ROLES,
  aggregateRequest,
  approvalLapsed,
  assessAggregate,
  checkArgs,
  memberDecision,
  normalizeActionName,
  canonicalJson,
  evaluate,
  policyDecision,
  transition,
  type ApprovalRequest,
  type Assessment,
  type AuditEventType,
  type AuditLeaf,
  type CancelBody,
  type CreateRequest,
  type Decision,
  type EarlierInHold,
  type ExecutionBody,
  type RiskLevel,
  type LifecycleEvent,
  type LifecycleState,
  type Policy,
  type RequestStatus,
  type ReviewBody,
  type SlicingAlert,
  type Role,
  type Transition,
  type TransitionKind,
  type AlternativeView,
  assessAlternatives,
  type Vote,
  currentRound,
  payloadKey,
  resolvePayload,
} from '@countersign/core';
import { newId, sha256Hex } from '../ids.ts';
import { ephemeralServerSecret, type ServerSecret } from '../keys/server-secret.ts';
import { Credentials } from './credentials.ts';
import type { Connection } from '../store/connect.ts';
import { ephemeralAuditKey, type AuditKey } from '../audit/crypto.ts';
import { AuditService } from '../audit/service.ts';
import { AuditWriter, SYSTEM_ACTOR, actorOf, draft, type AuditActor, type AuditDraft } from '../audit/writer.ts';
import { GuardService, SlicingReview, type GuardOptions } from '../guard/service.ts';
import { outcomeOf as lockoutOutcome } from '../guard/lockout.ts';
import { Store, type AuditRow, type HistoryCounts, type Queries, type RequestRow, type ReviewRow } from '../store/store.ts';
import { Sealer } from '../store/sealing.ts';
import { requestFromRow, voteFromRow } from './mapping.ts';
import { Decisions, type RequestFacts } from './decisions.ts';
import type { Principal } from './principal.ts';
import { SELF_REF, isSelfRef, refuseReservedName } from './refs.ts';
import { ExternalChanges } from './external-changes.ts';
import { validatePolicyText } from '../policy-checks.ts';
import { Wakeups } from './wakeups.ts';
import { ExecutionDesk, approvalClaim } from './execution.ts';
import { AgentConfigDesk } from './agent-config.ts';
import {
  canReviewAtAll,
  channelsFor,
  channelsSoFar,
  escalationTimerAt,
  extend as extendEscalation,
  onDue,
  reassign as reassignEscalation,
  escalateNow,
  startEscalation,
  type EscalationState,
  type PolicyError,
} from '@countersign/core';
import { queueDueAt, readActionableListing, readCounts, readListing, type ListOptions } from './queue.ts';
import { myDashboard, type MyDashboardOptions } from './my-dashboard.ts';
import { Listeners } from './listeners.ts';
import { COMMITTED_MODEL_VERSION, parseScreenRequest, screeningEffect, type ScreenRequest, type ScreenResult } from '@countersign/core/screen/api';
import type { EvaluationRequest } from '@countersign/core';
import { sharedScreener, type Screener } from './screener.ts';
import { ScreeningDesk } from './screening.ts';
import { ScreenModels } from './screen-models.ts';
import { NO_DEADLINE } from '../store/queue.ts';
import { TimerSkip, deliveryFromRow, deliveryRows, requestTimer, type DeliveryRow, type TimerRow } from '../store/timers.ts';

export const WAKE_CHANNEL = 'countersign_requests';
export { CREDENTIAL_CACHE_MS } from './credentials.ts';

/** A vote the gate accepted (engine/decisions.ts): the transition it makes and the guard's entries to append. */
interface Gated {
  type: 'gated';
  transition: Transition;
  entries: AuditDraft[];
}
export const HISTORY_CACHE_MS = 1_000;

export interface ActivePolicy {
  version: number;
  hash: string;
  source: string;
  policy: Policy;
}

export type { ListOptions } from './queue.ts';

/** A committed change to one request, as observers see it: the row as written and the status it left (null when new). */
export interface RequestChange {
  previousStatus: RequestStatus | null;
  row: RequestRow;
}

/** An audit entry as the API shows it: the leaf the Merkle tree commits to. */
export type AuditEntry = AuditLeaf;

type Actor = AuditActor;

/** Where a reader is: their address, for the approval allowlists in `actionable` (undefined in-process, as `review` gets it). */
export interface ReaderFrom {
  readonly ip?: string | null | undefined;
}

/** The guard's facts about one pending request, for the dry run: its aggregate review and its agent's pause. */
interface ReaderGuardFacts {
  aggregate: { id: string | null; collectingUntil: string | null } | undefined;
  paused: { until: string; reason: string } | undefined;
}
const SYSTEM = SYSTEM_ACTOR;

/** Args that break the policy's rules for the action (`actions.<name>.args`) are refused, each problem named. */
function refuseBadArgs(policy: Policy, action: string, args: Readonly<Record<string, unknown>>, field: string): void {
  const errors = checkArgs(policy, action, args);
  if (errors.length > 0) {
    throw new CountersignError('VALIDATION_FAILED', `${field} do not fit the policy for ${action}: ${errors.join('; ')}`, { field, errors });
  }
}

/** A request's `context.value`, when it stated a number. */
function statedValue(row: RequestRow): number | null {
  const value = (JSON.parse(row.context) as { value?: unknown }).value;
  return typeof value === 'number' ? value : null;
}

/** Sums the stated values; null when none is stated. */
function sumValues(...values: Array<number | null>): number | null {
  const stated = values.filter((v): v is number => v !== null);
  return stated.length > 0 ? stated.reduce((a, v) => a + v, 0) : null;
}

function encodeCursor(row: Pick<RequestRow, 'created_at' | 'id'>): string {
  return Buffer.from(`${row.created_at}:${row.id}`).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  const text = Buffer.from(cursor, 'base64url').toString();
  const match = /^(\d+):([A-Za-z0-9_]+)$/.exec(text);
  if (!match) throw new CountersignError('VALIDATION_FAILED', 'cursor is not one this server issued', { field: 'cursor' });
  return { createdAt: Number(match[1]), id: match[2] as string };
}

/** Why a request moved up a level: its level's deadline passed, or a reviewer escalated it. */
export type EscalationCause = 'sla_timeout' | 'manual';

export class Engine {
  readonly wakeups = new Wakeups();
  private active: ActivePolicy | undefined;
  private readonly agentNames = new Map<string, string>();
  private readonly historyCache = new Map<string, { counts: HistoryCounts; until: number }>();
  private unlisten: (() => Promise<void>) | undefined;
  private external: ExternalChanges | undefined;
  private readonly observers = new Listeners<RequestChange>();

  /** The tamper-evident trail's signing and read side: checkpoints, proofs, export, receipts. */
  readonly trail: AuditService;
  /** The one appender of audit entries: redacts and sets the actor of every entry (audit/writer.ts). */
  readonly writer: AuditWriter;
  /** Step-up MFA, number matching, velocity, cool-downs, agent limits and pauses, slicing (guard/). */
  readonly guard: GuardService;
  /** Identity and the credential lifecycle: keys, tokens, operators, dashboard sessions (engine/credentials.ts). */
  readonly credentials: Credentials;
  /** The gate's shell: every vote, and `actionable` as its dry run (engine/decisions.ts). */
  readonly decisions: Decisions;
  /** Claims of approvals (once, within their validity) and execution reports (engine/execution.ts). */
  private readonly executions: ExecutionDesk;
  /** Screening verdicts, the audit sample, rates, calibration proposals, pattern suggestions (engine/screening.ts). */
  readonly screening: ScreeningDesk;
  /** The screening model in use and the periodic retrain that may replace it (engine/screen-models.ts). */
  readonly screenModels: ScreenModels;
  /** Per-agent configuration over the policy file, and four-eyes on loosening it (engine/agent-config.ts). */
  readonly agentConfigs: AgentConfigDesk;

  private constructor(
    readonly store: Store,
    private readonly now: () => number,
    auditKey: AuditKey,
    guard: GuardOptions = {},
    serverSecret: ServerSecret = ephemeralServerSecret(),
    private readonly screener: Screener = sharedScreener(),
  ) {
    this.trail = new AuditService(store, auditKey, now);
    this.writer = new AuditWriter((data) => this.trail.redact(data));
    this.credentials = new Credentials(store, now, this.writer, serverSecret);
    this.guard = new GuardService(store, now, guard, this.writer, serverSecret);
    this.agentConfigs = new AgentConfigDesk({
      store,
      writer: this.writer,
      now,
      secret: serverSecret,
      policy: () => this.policy.policy,
      payloadHash: (action, args) => this.trail.payloadHash(action, args),
      proposeAdminChange: (by, action, args, description, assessment, entries) => this.proposeAdminChange(by, action, args, description, assessment, entries),
      adminSigners: async (q, proposerId) => {
        const admins = (await this.credentials.activeOperators(q)).filter((op) => op.roles.includes('admin')).map((op) => ({ id: op.operatorId, name: op.name }));
        // created/token: holds the operator's secret (until it rotates its own); admin: made it an admin (for good). Unknown: both (fail closed).
        const edges = (await q.credentials.lineage()).flatMap((e): LineageEdge[] => {
          const edge = { operatorId: e.operator_id, issuerId: e.issuer_id };
          if (e.kind === 'created' || e.kind === 'token') return [{ ...edge, kind: 'holds' }];
          if (e.kind === 'admin') return [{ ...edge, kind: 'madeAdmin' }];
          return [{ ...edge, kind: 'holds' }, { ...edge, kind: 'madeAdmin' }];
        });
        return adminChangeSigners(proposerId, admins, edges);
      },
    });
    this.decisions = new Decisions(
      this.guard,
      () => this.policy.policy,
      false,
      (tx, agentId, agentName) => this.agentConfigs.policyFor(tx, agentId, agentName),
      (q, row) => this.agentConfigs.signersOf(q, row),
    );
    this.guard.usePolicy(() => this.active?.policy);
    this.guard.useOperators((ref) => this.credentials.operatorPrincipal(ref));
    this.guard.onNoticesQueued(() => {
      for (const listener of this.timerListeners) listener();
    });
    this.screening = new ScreeningDesk({
      store,
      writer: this.writer,
      now,
      policy: () => this.policy.policy,
      getRequest: (by, id) => this.getRequest(by, id),
      readRequest: async (id) => {
        const row = await this.store.getRequest(id);
        return row ? this.toPublic(row) : undefined;
      },
      secret: serverSecret,
      activeOperators: () => this.credentials.activeOperators(),
    });
    this.screenModels = new ScreenModels({
      store,
      writer: this.writer,
      now,
      policy: () => this.policy.policy,
      secret: serverSecret,
      examples: () => this.screening.retrainExamples(),
      baseVersion: COMMITTED_MODEL_VERSION,
    });
    this.executions = new ExecutionDesk({
      store,
      trail: this.trail,
      writer: this.writer,
      now,
      policy: () => this.policy.policy,
      agentDisabled: async (q, agentId) => {
        const name = await this.agentName(agentId, q);
        return !agentEnabled(await this.agentConfigs.policyFor(q, agentId, name), name);
      },
      wakeChannel: WAKE_CHANNEL,
      committed: async (row, previousStatus) => {
        this.afterCommit(row.id);
        this.emitChange({ previousStatus, row });
        return this.toPublic(row);
      },
    });
  }

  /**
   * Opens the store (migrating it) and starts listening for cross-process wake-ups. Without
   * `auditKey`, checkpoints and receipts are signed with a key that lives in this process only.
   */
  static async open(options: {
    connection: Connection;
    now?: () => number;
    auditKey?: AuditKey | undefined;
    guard?: GuardOptions | undefined;
    /** The server secret file (keys/server-secret.ts); without it, one that lives in this process only. */
    serverSecret?: ServerSecret | undefined;
    screener?: Screener | undefined;
    /** Errors of the store's background work (audit integration rounds, retried): the runtime logs them. */
    onStoreError?: ((err: unknown) => void) | undefined;
  }): Promise<Engine> {
    // Resolved by the runtime from the config (COUNTERSIGN_ENCRYPTION_KEY…); never read from the environment here.
    const guard = options.guard ?? {};
    // COUNTERSIGN_ENCRYPTION_KEY (and _PREVIOUS) seal agent-supplied request columns and TOTP secrets; a malformed key refuses to start here.
    const sealer = Sealer.fromKey(guard.encryptionKey, guard.previousEncryptionKeys);
    const store = new Store(options.connection, sealer, options.onStoreError ? { onError: options.onStoreError } : {});
    const engine = new Engine(store, options.now ?? Date.now, options.auditKey ?? ephemeralAuditKey(), guard, options.serverSecret, options.screener);
    // Once per database (a `sealed` mark): MAC the rows and seal the `plain:` seeds from before the secret file.
    const era = await engine.credentials.beginSecretEra();
    if (era.began) await engine.guard.sealPlainSeeds();
    // Decisions sealed when migration 019 ran get their fact columns now that the key is here.
    await engine.store.history.backfillFacts();
    if (engine.store.capabilities.listenNotify) {
      // After a lost LISTEN connection is back, every waiter re-reads: a decision made meanwhile is never missed.
      engine.unlisten = await engine.store.listen(WAKE_CHANNEL, (id) => engine.wakeups.publish(id), () => engine.wakeups.resync());
    } else {
      // A SQLite file may be shared with another process (an embedded gateway beside `serve`).
      engine.external = await ExternalChanges.start(engine.store, (id) => engine.wakeups.publish(id));
    }
    // An adopted screening model survives a restart (and one that does not verify is not used).
    await engine.screenModels.refresh();
    return engine;
  }

  /**
   * How long the oldest entry still waiting for integration has waited (by this engine's clock,
   * which stamped it), or null when none is pending: /healthz is degraded past a bound.
   */
  async auditIntegrationLag(): Promise<{ ms: number; since: number } | null> {
    const oldest = await this.store.auditOldestPendingAt();
    return oldest === undefined ? null : { ms: this.now() - oldest, since: oldest };
  }

  async close(): Promise<void> {
    await this.unlisten?.();
    await this.external?.stop();
    await this.store.close();
  }

  get policy(): ActivePolicy {
    if (!this.active) throw new CountersignError('POLICY_INVALID', 'no policy is loaded');
    return this.active;
  }

  // ---- policy ----

  /**
   * Validates and activates a policy. An invalid one is refused whole and the last good policy
   * stays active. The same text as the newest stored version reuses its version number;
   * anything new is stored, versioned and recorded in the audit trail.
   */
  async activatePolicy(text: string, source: string): Promise<ActivePolicy> {
    const policy = this.checkPolicy(text, source);
    const hash = sha256Hex(text);
    const active = await this.store.transaction(async (tx) => {
      const latest = await tx.latestPolicy();
      if (latest && latest.hash === hash) return { version: latest.version, hash, source, policy };
      const version = (latest?.version ?? 0) + 1;
      const at = this.now();
      await tx.insertPolicy({ version, hash, source: text, loaded_at: at });
      await this.writer.append(tx, [this.audit('policy_loaded', null, SYSTEM, { version, hash, source }, at)]);
      return { version, hash, source, policy };
    });
    this.active = active;
    return active;
  }

  /** Validates a policy text as activating it would (policy-checks.ts), without activating it: the resolved policy, or POLICY_INVALID. */
  checkPolicy(text: string, source: string): Policy {
    return validatePolicyText(text, source, this.policyChecks);
  }

  // ---- credentials (engine/credentials.ts) ----

  /** Resolves a bearer credential (cached for `CREDENTIAL_CACHE_MS`; a change made here clears the cache). */
  async authenticate(token: string): Promise<Principal | undefined> {
    if (token.length < 10 || token.length > 200) return undefined;
    return this.credentials.authenticateHash(sha256Hex(token));
  }

  /** As `authenticate`, from the credential's SHA-256. */
  async authenticateHash(hash: string): Promise<Principal | undefined> {
    return this.credentials.authenticateHash(hash);
  }

  /**
   * First start: when no person has ever been given a token on this database (no operator token,
   * revoked or not), create an `admin` operator and a `demo-agent` key. A database an embedded
   * gateway created first already has its admin operator, without a token (it acts in-process
   * only): that operator is given the token, so `serve` on the file is never left with no way in.
   * Given values (from `COUNTERSIGN_ADMIN_TOKEN` / `COUNTERSIGN_AGENT_KEY`) are used instead of
   * random ones. Returns the secrets once, or null when someone already holds a token.
   */
  async bootstrap(given: { adminToken?: string | undefined; agentKey?: string | undefined } = {}) {
    for (const [name, value] of Object.entries(given)) {
      if (value !== undefined && (value.length < 16 || value.length > 200 || /\s/.test(value))) {
        throw new CountersignError('VALIDATION_FAILED', `${name} must be 16–200 characters without spaces`);
      }
    }
    return this.store.transaction(async (tx) => {
      if ((await tx.countOperatorTokens()) > 0) return null;
      // Never twice per database (a `bootstrapped` mark, or any credential ever issued in the trail).
      if (!(await this.credentials.mayBootstrap(tx))) return null;
      if (!(await this.credentials.markBootstrapped(tx))) return null;
      // An embedded gateway's tokenless admin (MAC-valid, active) is given the token; otherwise one is made.
      const existing = (await this.credentials.activeOperators(tx)).find((op) => op.roles.includes('admin'));
      // Only an admin whose MAC-covered `tokenless` mark says it never had a token (a real admin whose tokens were wiped gets none).
      if (existing && !(await this.credentials.isTokenless(tx, existing.operatorId))) return null;
      const admin = existing
        ? await this.credentials.issueOperatorToken(tx, existing, given.adminToken)
        : await this.credentials.insertOperator(tx, SYSTEM, { name: 'admin', roles: ['admin'], groups: [] }, given.adminToken);
      const agent = await this.insertAgentKey(tx, SYSTEM, 'demo-agent', given.agentKey);
      return {
        adminToken: admin.token,
        operatorId: admin.id,
        agentKey: agent.key,
        agentId: agent.agentId,
        given: { adminToken: given.adminToken !== undefined, agentKey: given.agentKey !== undefined },
      };
    });
  }

  /**
   * The embedded gateway's admin: the first active operator with the admin role, or, on a
   * database with no admin at all, an `admin` created without a token (nobody outside this
   * process could use one; a later `serve` on the file gives it its token through `bootstrap`).
   * Checked as a login is (engine/credentials.ts `embeddedAdmin`).
   */
  async embeddedAdmin(): Promise<Extract<Principal, { kind: 'operator' }>> {
    return this.credentials.embeddedAdmin();
  }

  async createOperator(by: Principal, input: { name: string; roles: Role[]; groups?: string[] | undefined }) {
    this.requireRole(by, 'admin');
    for (const role of input.roles) {
      if (!ROLES.includes(role)) throw new CountersignError('VALIDATION_FAILED', `unknown role "${role}"`, { roles: ROLES });
    }
    refuseReservedName('operator', input.name);
    const made = await this.store.transaction(async (tx) => {
      if (await tx.findOperatorByName(input.name)) {
        throw new CountersignError('VALIDATION_FAILED', `an operator named "${input.name}" already exists`);
      }
      return this.credentials.insertOperator(tx, actorOf(by), { name: input.name, roles: input.roles, groups: input.groups ?? [] });
    });
    return { id: made.id, name: made.name, roles: made.roles, token: made.token };
  }

  async createAgentKey(by: Principal, agentName: string) {
    this.requireRole(by, 'admin');
    refuseReservedName('agent', agentName);
    return this.store.transaction((tx) => this.insertAgentKey(tx, actorOf(by), agentName));
  }

  async listOperators(by: Principal) {
    return this.credentials.listOperators(by);
  }

  private async insertAgentKey(tx: Queries, by: Actor, agentName: string, key?: string) {
    const agentId = await this.ensureAgent(tx, agentName, this.now(), by);
    return this.credentials.insertAgentKey(tx, by, agentId, agentName, key);
  }

  private async ensureAgent(tx: Queries, name: string, at: number, by: Actor): Promise<string> {
    const existing = await tx.findAgentByName(name);
    if (existing) return existing.id;
    const id = newId('agt', at);
    await tx.insertAgent({ id, name, created_at: at });
    await this.writer.append(tx, [this.audit('agent_created', null, by, { agentId: id, name }, at)]);
    return id;
  }

  // ---- requests ----

  /**
   * Proposes an action. Idempotent per agent on `idempotencyKey`: the same key and body return
   * the same request (`replayed: true`); the same key with a different body is a conflict.
   */
  async createRequest(by: Principal, body: CreateRequest, slicing?: SlicingReview): Promise<{ request: ApprovalRequest; replayed: boolean }> {
    const policy = this.policy;
    const at = this.now();
    const agent = await this.requesterAgent(by, at);
    // The agent's own configuration (policy file agents.<name>, then its API overlay): the policy that judges this request.
    let overlay: Awaited<ReturnType<AgentConfigDesk['overlayOf']>>;
    try {
      overlay = await this.agentConfigs.overlayOf(this.store, agent.id, agent.name);
    } catch (err) {
      await this.guard.auditRefusal(err, by, null, 'create');
      throw err;
    }
    const judged = agentPolicy(policy.policy, agent.name, overlay.config, overlay.baselines);
    if (!agentEnabled(judged, agent.name)) {
      const err = new CountersignError('AGENT_DISABLED', `agent ${agent.name} is disabled (enabled: false${overlay.config?.enabled === false ? ', set through the API' : ' in the policy file'}); nothing was created`, { agent: agent.name, source: overlay.config?.enabled === false ? 'overlay' : 'policy' });
      await this.guard.auditRefusal(err, by, null, 'create');
      throw err;
    }
    const bodyHash = sha256Hex(canonicalJson(body));
    let refiles: RequestRow | undefined;
    if (body.idempotencyKey !== undefined) {
      const existing = await this.store.findByIdempotencyKey(agent.id, body.idempotencyKey);
      if (existing) {
        const lapsed = approvalLapsed({ status: existing.status, claimedAt: existing.claimed_at === null ? null : Number(existing.claimed_at), claimExpiresAt: existing.claim_expires_at === null ? null : Number(existing.claim_expires_at) }, at);
        if (!lapsed || existing.body_hash !== bodyHash) return { request: await this.replay(existing, bodyHash), replayed: true };
        refiles = existing; // it can never run: file a new request under the key (below, in one transaction)
      }
    }
    refuseBadArgs(policy.policy, body.action, body.args, 'args');
    for (const [i, alt] of (body.alternatives ?? []).entries()) refuseBadArgs(policy.policy, alt.action, alt.args, `alternatives[${i}].args`);
    const history = await this.history(agent.id, body.action, at);
    const gate = await this.guard.createGate(agent, judged, at); // whilePaused: hold; onSlicing: review, aggregate
    const forcedReview = slicing?.review ?? (gate && { rule: gate.rule, reason: gate.reason });
    // Prompt-injection screening of every agent-written string (core screen/request.ts), off the event loop when large (screener.ts).
    const screening = await this.screenBody(body, policy.policy);
    const assessment = evaluate({ ...body, agent: agent.name, forcedReview, screening }, judged, history, new Date(at));
    // Each alternative gets the full evaluation too: a blocked one is kept, marked with its rules, and can never be chosen (finding 1).
    const alternatives = await this.assessedAlternatives(body, agent, at, judged);
    const id = newId('req', at);
    const sampled = this.screening.drawSample(id, screening?.result);
    const { row, decision, status } = this.newRequestRow(id, agent.id, by.kind === 'operator' ? by.operatorId : null, body, bodyHash, assessment, policy.version, at, alternatives);
    const escalation = status === 'pending' ? startEscalation(judged, assessment, at) : null;
    row.queue_due_at = queueDueAt(row, escalation);
    const actor = actorOf(by);
    const entries: AuditDraft[] = [
      this.audit('created', id, actor, {
        action: body.action,
        agentId: agent.id,
        confidence: body.confidence,
        policyVersion: policy.version,
        riskScore: assessment.riskScore,
        riskLevel: assessment.riskLevel,
        automationLevel: assessment.automationLevel,
        route: assessment.route,
        matchedRules: assessment.matchedRules.map((r) => r.name),
        payloadHash: this.trail.payloadHash(body.action, body.args),
        ...(alternatives?.some((a) => a.blocked) ? { blockedAlternatives: alternatives.filter((a) => a.blocked).map((a) => ({ name: a.name, rules: a.blocked!.rules })) } : {}),
        ...(refiles ? { refiles: refiles.id } : {}),
        ...(overlay.version > 0 ? { agentConfigVersion: overlay.version } : {}),
        ...(sampled && !assessment.screening ? { screening: { score: screening!.result.score, action: screening!.result.action, sampled: true, findings: [] } } : {}),
        ...(assessment.screening
          ? {
              screening: {
                ...(sampled ? { sampled: true } : {}),
                score: assessment.screening.score,
                action: assessment.screening.action,
                overBudget: assessment.screening.overBudget,
                findings: assessment.screening.findings.map((f) => ({ field: f.field, kind: f.kind, span: f.span, score: f.score })),
              },
            }
          : {}),
      }, at),
      ...(refiles ? [this.audit('claim_lapsed', refiles.id, SYSTEM, { refiledAs: id, expiresAt: new Date(Number(refiles.claim_expires_at)).toISOString() }, at)] : []),
      status === 'pending'
        ? this.audit('queued', id, SYSTEM, {
            slaDueAt: assessment.slaDueAt,
            approval: assessment.approval,
            escalation: escalation && { level: escalation.level, dueAt: new Date(escalation.dueAt).toISOString() },
          }, at)
        : this.audit(status, id, SYSTEM, { decidedBy: 'policy', reason: decision?.reason ?? null, payloadHash: status === 'approved' ? this.trail.payloadHash(body.action, body.args) : null }, at),
    ];
    let alerts: SlicingAlert[] = [];
    try {
      await this.store.transaction(async (tx) => {
        // Judged by the overlay still in force (a change takes the same agent lock): else refuse, and the agent sends it again.
        await this.agentConfigs.recheck(tx, agent, overlay);
        const checked = await this.guard.checkCreate(tx, agent, judged, at, status === 'pending', { id, action: body.action, args: body.args, value: assessment.value?.amount, autoApproved: status === 'approved' });
        const held = checked.entries;
        alerts = checked.alerts;
        // A racing create (or claim) got there first: the catch below replays what now holds the key.
        if (refiles && !(await tx.releaseLapsedKey(refiles.id, body.idempotencyKey!, at))) {
          throw new CountersignError('IDEMPOTENCY_CONFLICT', 'the lapsed approval under this idempotency key changed meanwhile', { requestId: refiles.id });
        }
        await tx.insertRequest(row, true); // with the statements after it: a taken key fails the transaction there (store/pipeline.ts)
        if (sampled) await this.screening.recordSample(tx, id, screening!.result, at);
        // Under `onSlicing: aggregate` the request waits in the agent's collection: its own channels hear of the aggregate instead.
        const collect = gate?.aggregate && status === 'pending' ? gate.aggregate : undefined;
        await this.scheduleCreated(tx, row, escalation, at, collect === undefined);
        if (collect) {
          const collection = await this.guard.park(tx, agent.id, [id], collect, judged, at);
          held.push(this.audit('collected', id, SYSTEM, { collectionId: collection.id, closesAt: new Date(collection.closesAt).toISOString() }, at));
        }
        // In the same transaction as the request; on PostgreSQL sent with the commit (store/pipeline.ts).
        await this.writer.appendLater(tx, held.length === 0 ? entries : [...entries, ...held.map((e) => ({ ...e, requestId: id }))]);
        await tx.notify(WAKE_CHANNEL, id);
      });
    } catch (err) {
      // This create raised slicing alerts its onSlicing holds for: created again, held for review (once).
      if (err instanceof SlicingReview && !slicing) return this.createRequest(by, body, err);
      await this.guard.auditRefusal(err, by, null, 'create');
      // Two creates raced on one idempotency key: the loser returns the winner's request.
      if (body.idempotencyKey !== undefined) {
        const existing = await this.store.findByIdempotencyKey(agent.id, body.idempotencyKey);
        if (existing) return { request: await this.replay(existing, bodyHash), replayed: true };
      }
      throw err;
    }
    this.afterCommit(id);
    this.emitChange({ previousStatus: null, row });
    await this.guard.afterCreate(agent, judged, alerts);
    return { request: requestFromRow(row, agent.name, [], escalation), replayed: false };
  }

  /**
   * Files an admin change (core admin-change.ts: `countersign.agent_config`) as a request of the
   * admin, judged by `assessment` (always review, by another admin), with `entries` in the same
   * transaction. Only the engine files these; agents cannot name a `countersign.*` action.
   */
  private async proposeAdminChange(
    by: Extract<Principal, { kind: 'operator' }>,
    action: string,
    args: JsonObject,
    description: string,
    assessment: Assessment,
    entries: (requestId: string) => AuditDraft[],
  ): Promise<ApprovalRequest> {
    if (!isAdminChangeAction(action) || assessment.route !== 'review') throw new CountersignError('INTERNAL', `${action} is not an admin change`);
    const policy = this.policy;
    const at = this.now();
    const agent = await this.requesterAgent(by, at);
    const body: CreateRequest = { action, args, description };
    const id = newId('req', at);
    const { row } = this.newRequestRow(id, agent.id, by.operatorId, body, sha256Hex(canonicalJson(body)), assessment, policy.version, at);
    const escalation = startEscalation(policy.policy, assessment, at);
    row.queue_due_at = queueDueAt(row, escalation);
    await this.store.transaction(async (tx) => {
      await tx.insertRequest(row);
      await this.scheduleCreated(tx, row, escalation, at);
      await this.writer.append(tx, [
        this.audit('created', id, actorOf(by), {
          action,
          agentId: agent.id,
          policyVersion: policy.version,
          riskScore: assessment.riskScore,
          riskLevel: assessment.riskLevel,
          automationLevel: assessment.automationLevel,
          route: assessment.route,
          matchedRules: assessment.matchedRules.map((r) => r.name),
          payloadHash: this.trail.payloadHash(action, args),
        }, at),
        this.audit('queued', id, SYSTEM, { slaDueAt: assessment.slaDueAt, approval: assessment.approval, escalation: escalation && { level: escalation.level, dueAt: new Date(escalation.dueAt).toISOString() } }, at),
        ...entries(id),
      ]);
      await tx.notify(WAKE_CHANNEL, id);
    });
    this.afterCommit(id);
    this.emitChange({ previousStatus: null, row });
    return requestFromRow(row, agent.name, [], escalation);
  }

  /**
   * `POST /v1/screen`: any authenticated caller (agent or operator) screens one text under the
   * active policy's `screening:` section. Stateless: nothing is stored or audited.
   */
  async screenText(by: Principal, request: ScreenRequest): Promise<ScreenResult> {
    // Every principal may screen; each has its own small share of the worker (screener.ts: RATE_LIMITED when full).
    const caller = by.kind === 'agent' ? `agent:${by.agentId}` : `operator:${by.operatorId}`;
    return this.screener.screenText(parseScreenRequest(request), this.policy.policy.screening, caller, this.screenModels.current());
  }

  /** Screen a create body's text under the policy's `screening:` section; nothing when screening is disabled. */
  private async screenBody(body: CreateRequest, policy: Policy): Promise<EvaluationRequest['screening']> {
    const config = policy.screening;
    if (!config.enabled) return undefined;
    const result = await this.screener.screen(body, config, this.screenModels.current());
    return { result, outcomes: screeningEffect(result, config) };
  }

  /** A new request's row from its body and assessment: decided at once unless routed to review. */
  private newRequestRow(
    id: string,
    agentId: string,
    requesterOperatorId: string | null,
    body: CreateRequest,
    bodyHash: string,
    assessment: Assessment,
    policyVersion: number,
    at: number,
    alternatives: readonly AlternativeView[] | null = null,
  ) {
    const decision =
      assessment.route === 'review'
        ? null
        : policyDecision(assessment.route, body.action, body.args, assessment.reasons.join(' ') || assessment.route, new Date(at).toISOString());
    const status: RequestStatus = decision === null ? 'pending' : decision.outcome === 'approved' ? 'approved' : 'rejected';
    const row: RequestRow = {
      id,
      agent_id: agentId,
      requester_operator_id: requesterOperatorId,
      idempotency_key: body.idempotencyKey ?? null,
      body_hash: bodyHash,
      action: body.action,
      args: JSON.stringify(body.args),
      description: body.description ?? null,
      confidence: body.confidence ?? null,
      risk_hint: body.riskLevel ?? null,
      context: JSON.stringify(body.context ?? {}),
      alternatives: JSON.stringify(alternatives ?? body.alternatives ?? []),
      approvers: JSON.stringify(body.approvers ?? []),
      timeout_seconds: body.timeoutSeconds ?? null,
      status,
      risk_score: assessment.riskScore,
      risk_level: assessment.riskLevel,
      automation_level: assessment.automationLevel,
      route: assessment.route,
      assessment: JSON.stringify(assessment),
      policy_version: policyVersion,
      ...(decision === null ? { decision: null, claim_nonce: null, claim_expires_at: null } : this.sealed(id, decision, assessment.riskLevel)),
      claimed_at: null,
      execution: null,
      created_at: at,
      updated_at: at,
      decided_at: decision === null ? null : at,
      expires_at: decision === null && body.timeoutSeconds !== undefined ? at + body.timeoutSeconds * 1000 : null,
      queue_due_at: NO_DEADLINE, // set from the escalation state once it is planned (queueDueAt)
      action_key: normalizeActionName(body.action),
    };
    return { row, decision, status };
  }

  /** A create's alternatives, each assessed as a request of its own; a blocked one carries `blocked: {rules}`. Null without alternatives. */
  private async assessedAlternatives(body: CreateRequest, agent: { id: string; name: string }, at: number, policy: Policy): Promise<AlternativeView[] | null> {
    if (!body.alternatives || body.alternatives.length === 0) return null;
    const histories = new Map<string, HistoryCounts>();
    for (const alt of body.alternatives) if (!histories.has(alt.action)) histories.set(alt.action, await this.history(agent.id, alt.action, at));
    const assessed = assessAlternatives({ ...body, agent: agent.name }, policy, (action) => histories.get(action) ?? EMPTY_HISTORY, new Date(at));
    return body.alternatives.map((alt, i) => {
      const blocked = assessed[i]?.blocked;
      return blocked ? { ...alt, blocked } : alt;
    });
  }

  /**
   * The agent's recent outcomes for this action. History is a soft risk signal (one factor of
   * seven), so a second-old answer is good enough and keeps bursts of creates from re-reading it.
   */
  private async history(agentId: string, action: string, now: number): Promise<HistoryCounts> {
    const key = `${agentId}\u0000${normalizeActionName(action)}`;
    const cached = this.historyCache.get(key);
    if (cached && cached.until > now) return cached.counts;
    const counts = await this.store.historyCounts(agentId, action);
    if (this.historyCache.size >= 10_000) this.historyCache.clear();
    this.historyCache.set(key, { counts, until: now + HISTORY_CACHE_MS });
    return counts;
  }

  private async replay(existing: RequestRow, bodyHash: string): Promise<ApprovalRequest> {
    if (existing.body_hash !== bodyHash) {
      throw new CountersignError('IDEMPOTENCY_CONFLICT', 'this idempotency key was used for a different request', {
        requestId: existing.id,
      });
    }
    return this.toPublic(existing);
  }

  /** Operators may propose actions too; they act as an agent named `operator:<name>`. */
  private async requesterAgent(by: Principal, at: number): Promise<{ id: string; name: string }> {
    if (by.kind === 'agent') return { id: by.agentId, name: by.agentName };
    const name = `operator:${by.name}`;
    const existing = await this.store.findAgentByName(name);
    if (existing) return { id: existing.id, name };
    const id = await this.store.transaction((tx) => this.ensureAgent(tx, name, at, actorOf(by)));
    return { id, name };
  }

  /** `from.ip`: the reader's address, judged against the approval allowlists in `actionable` exactly as `review` would judge it. */
  async getRequest(by: Principal, id: string, from: ReaderFrom = {}): Promise<ApprovalRequest> {
    const row = await this.store.getRequest(id);
    this.checkReadable(by, row, id);
    const aggregate = await this.guard.aggregateOf(row.id);
    const paused = row.status === 'pending' ? await this.guard.pauseOf(row.agent_id) : undefined;
    const request = await this.toPublic(row, by, { aggregate, paused }, from);
    // Number matching: only an operator reading the request itself sees the code (never listings or notifications).
    if (by.kind === 'operator' && this.guard.needsMatchCode(row.risk_level)) request.matchCode = await this.guard.matchCode(row.id);
    if (aggregate) request.aggregate = aggregate;
    if (paused) request.agentPaused = paused;
    return request;
  }

  /**
   * Returns as soon as the request leaves `pending` (or, when it already has, at once), else
   * after `waitMs` with its current state. Subscribes before reading, so a decision that lands
   * between the read and the wait is never missed.
   */
  async waitForDecision(by: Principal, id: string, waitMs: number, signal?: AbortSignal): Promise<ApprovalRequest> {
    const deadline = this.now() + waitMs;
    for (;;) {
      const stop = new AbortController();
      const onAbort = () => stop.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const changed = this.wakeups.next(id, Math.max(0, deadline - this.now()), stop.signal);
      try {
        const row = await this.store.getRequest(id);
        this.checkReadable(by, row, id);
        if (row.status !== 'pending' || this.now() >= deadline || signal?.aborted) return await this.toPublic(row);
        if ((await changed) !== 'changed') return await this.toPublic((await this.store.getRequest(id)) ?? row);
      } finally {
        stop.abort();
        signal?.removeEventListener('abort', onAbort);
      }
    }
  }

  /** The queue and the history: filtered, ordered and paged in SQL, with counts (engine/queue.ts). */
  async listRequests(by: Principal, options: ListOptions = {}, from: ReaderFrom = {}) {
    this.requireOperator(by);
    if (options.actionableBy !== undefined) {
      const reader = by;
      if (!isSelfRef(reader, options.actionableBy)) {
        throw new CountersignError('VALIDATION_FAILED', 'actionableBy takes me (or your own operator id or name): whether someone else may act is theirs to see', { field: 'actionableBy' });
      }
      const views = new Map<string, ApprovalRequest>();
      const listing = await readActionableListing(this.store, options, async (rows) => {
        const seen = await this.viewOfRows(reader, rows, from);
        return seen.map((view) => (view.actionable === true ? (views.set(view.id, view), true) : false));
      });
      const items = listing.rows.map((row) => views.get(row.id)!);
      return { items, nextCursor: listing.nextCursor, order: listing.order, counts: listing.counts, remaining: listing.remaining };
    }
    const listing = await readListing(this.store, options);
    const items = await this.viewOfRows(by, listing.rows, from);
    return { items, nextCursor: listing.nextCursor, order: listing.order, counts: listing.counts, remaining: listing.remaining };
  }

  /** `GET /v1/requests/count`: the requests matching the listing's filters, by status and risk level (engine/queue.ts). */
  async countRequests(by: Principal, options: ListOptions = {}) {
    this.requireOperator(by);
    return readCounts(this.store, options);
  }

  /** `GET /v1/me/dashboard` (engine/my-dashboard.ts): what I may approve now, my metrics, my recent actions. */
  async myDashboard(by: Principal, options: MyDashboardOptions = {}, from: ReaderFrom = {}) {
    this.requireOperator(by);
    const actionable = (reader: Principal, limit: number) => this.listRequests(reader, { actionableBy: SELF_REF, limit }, from);
    return myDashboard({ store: this.store, now: this.now, actionable }, by, options);
  }

  /** Rows as `by` sees them in a listing: reviews, escalation and whether they may act on each now (one query per kind). */
  private async viewOfRows(by: Extract<Principal, { kind: 'operator' }>, page: readonly RequestRow[], from: ReaderFrom = {}): Promise<ApprovalRequest[]> {
    const reviews = await this.store.reviewsFor(page.map((r) => r.id));
    const escalations = await this.escalationsOf(page.map((r) => r.id));
    // Requests in an aggregate review are decided there (the queue offers the aggregate instead);
    // a paused agent's requests wait for the pause to end. Both are facts of the gate's dry run.
    const pending = page.filter((r) => r.status === 'pending');
    const limits = pending.length > 0 ? await this.guard.readerFacts(by, from.ip) : undefined;
    const aggregated = await this.store.aggregates.membersAmong(pending.map((r) => r.id));
    const pausedIds = await this.guard.pausedAmong(pending.map((r) => r.agent_id));
    const pauses = new Map<string, { until: string; reason: string } | undefined>();
    for (const agentId of pausedIds) pauses.set(agentId, await this.guard.pauseOf(agentId));
    return Promise.all(
      page.map(async (row) => {
        const own = reviews.filter((v) => v.request_id === row.id);
        const escalation = escalations.get(row.id) ?? null;
        const request = requestFromRow(row, await this.agentName(row.agent_id), own, escalation);
        if (!limits || row.status !== 'pending') return request;
        const aggregate = aggregated.has(row.id) ? { id: null, collectingUntil: null } : undefined;
        return this.withActionable(by, request, row, own, escalation, { aggregate, paused: pauses.get(row.agent_id) }, limits);
      }),
    );
  }

  /**
   * A reviewer's vote, judged by the gate (engine/decisions.ts → core `gate()`): every check in
   * one ordered list over the payload that will run, in the change's transaction. A refusal
   * changes nothing (no counter, no TOTP step, no escalation) and is audited after the rollback.
   * `from.ip`: the caller's address, for the approval allowlists.
   */
  async review(by: Principal, id: string, body: ReviewBody, from: { ip?: string | null | undefined } = {}): Promise<ApprovalRequest> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot review requests');
    // Step-up attempt limits (guard/lockout.ts): an approval carrying a code reserves an attempt, committed
    // before any code is judged (or is MFA_LOCKED); a refusal for a wrong code keeps it as a failure.
    const attempt = body.verdict === 'approve' && (body.totp !== undefined || body.matchCode !== undefined) ? await this.guard.lockout.begin(by) : null;
    try {
      const decided = await this.change(by, id, async (tx, current, escalation) => {
        if (body.verdict === 'approve' && body.args !== undefined) refuseBadArgs(this.policy.policy, current.action, body.args, 'args');
        const votes = (await tx.reviewsFor([id])).map(voteFromRow);
        const agentName = await this.agentName(current.agent_id, tx);
        const { transition, entries } = await this.decisions.vote(tx, by, current, agentName, escalation, votes, body, from.ip, this.now());
        if (entries.some((e) => e.type === 'cooldown_started')) this.timersDue = true; // its guard notices, if any
        return { type: 'gated', transition, entries };
      });
      await attempt?.settle('good');
      return decided;
    } catch (err) {
      await attempt?.settle(lockoutOutcome(err));
      await this.guard.auditRefusal(err, by, id, 'review');
      throw err;
    }
  }

  async cancel(by: Principal, id: string, body: CancelBody = {}): Promise<ApprovalRequest> {
    return this.change(by, id, { type: 'cancel', actor: actorOf(by), reason: body.reason, at: '' }, true);
  }

  /** `{status: started, receipt}` claims the approval once; `{status: succeeded | failed}` closes it (engine/execution.ts). */
  async reportExecution(by: Principal, id: string, body: ExecutionBody): Promise<ApprovalRequest> {
    return body.status === 'started' ? this.executions.claim(by, id, body.receipt) : this.executions.report(by, id, body);
  }

  /** A decision as stored: sealed with its receipt and, when it approves something to run, the claim it runs with once. */
  private sealed(id: string, decision: Decision, riskLevel: string): Pick<RequestRow, 'decision' | 'claim_nonce' | 'claim_expires_at'> {
    const issued = approvalClaim(decision, riskLevel as RiskLevel, this.policy.policy);
    return {
      decision: JSON.stringify(this.trail.seal(id, decision, issued?.claim)),
      claim_nonce: issued?.columns.claim_nonce ?? null,
      claim_expires_at: issued?.columns.claim_expires_at ?? null,
    };
  }

  /**
   * One state change: lock the row, replay the votes into the pure state machine, write the
   * result and its audit entries in the same transaction, then wake waiters.
   */
  private async change(
    by: Principal | undefined,
    id: string,
    /** The event, or a function that decides it inside the transaction (timers); `null` commits what it wrote without a transition. */
    eventOrFire: LifecycleEvent | ((tx: Queries, current: RequestRow, escalation: EscalationState | null) => Promise<LifecycleEvent | Gated | null>),
    ownerOnly = false,
  ): Promise<ApprovalRequest> {
    let previousStatus: RequestStatus = 'pending';
    let settled: RequestRow[] = [];
    const row = await this.store.transaction(async (tx) => {
      const current = await tx.getRequest(id, true);
      if (by) this.checkReadable(by, current, id);
      if (!current) throw new CountersignError('NOT_FOUND', `no request ${id}`);
      if (by && ownerOnly) this.checkOwner(by, current);
      const escalation = await this.escalationOf(tx, id);
      const event = typeof eventOrFire === 'function' ? await eventOrFire(tx, current, escalation) : eventOrFire;
      if (event === null) return (await tx.getRequest(id)) ?? current;
      // Fail closed: a vote is decided by the gate (review()), never by a raw lifecycle event.
      if (event.type === 'review') throw new CountersignError('INTERNAL', 'reviews are decided through the gate (Engine.review)');
      const at = this.now();
      const atIso = new Date(at).toISOString();
      let result: Transition;
      if (event.type === 'gated') result = event.transition;
      else {
        const assessment = JSON.parse(current.assessment) as Assessment;
        const votes = (await tx.reviewsFor([id])).map(voteFromRow);
        const state: LifecycleState = {
          status: current.status as RequestStatus,
          action: current.action,
          args: JSON.parse(current.args),
          alternatives: JSON.parse(current.alternatives),
          approval: assessment.approval,
          votes,
          requesterOperatorId: current.requester_operator_id,
        };
        result = transition(state, { ...event, at: atIso });
      }
      const actor = by ? actorOf(by) : SYSTEM;
      if (result.vote) {
        const v = result.vote;
        await tx.insertReview({
          id: newId('rev', at),
          request_id: id,
          operator_id: v.reviewer.id,
          operator_name: v.reviewer.name,
          verdict: v.verdict,
          reason: v.reason,
          args: v.args === null ? null : JSON.stringify(v.args),
          alternative: v.alternative,
          payload_key: v.payloadKey,
          stage: v.stage,
          stage_key: v.stageKey ?? null,
          created_at: at,
        });
      }
      const patch: Partial<RequestRow> = { status: result.status, updated_at: at };
      if (result.decision) {
        Object.assign(patch, this.sealed(id, result.decision, current.risk_level));
        patch.decided_at = at;
      }
      if (!(await tx.updateRequest(id, patch, current.status))) {
        throw new CountersignError('ALREADY_DECIDED', `request ${id} changed concurrently`);
      }
      if (current.status === 'pending' && result.status !== 'pending') await this.closeEscalation(tx, current, escalation, result.status, at);
      await this.writer.append(tx, result.kinds.map((kind) => this.audit(kind, id, kind === 'expired' ? SYSTEM : actor, this.auditData(kind, result), at)));
      if (event.type === 'gated' && event.entries.length > 0) await this.writer.append(tx, event.entries);
      await tx.notify(WAKE_CHANNEL, id);
      previousStatus = current.status as RequestStatus;
      if (current.action === AGGREGATE_ACTION && current.status === 'pending' && result.decision) {
        const outcome = await this.settleAggregate(tx, current, result.decision, at);
        settled = outcome.members;
        Object.assign(patch, outcome.patch);
      }
      // Four-eyes: an approved admin change is applied here, exactly as approved, once (engine/agent-config.ts).
      if (isAdminChangeAction(current.action) && current.status === 'pending' && result.decision) {
        Object.assign(patch, await this.agentConfigs.settle(tx, { ...current, ...patch } as RequestRow, result.decision, at));
      }
      return { ...current, ...patch } as RequestRow;
    });
    this.afterCommit(id);
    this.emitChange({ previousStatus, row });
    for (const member of settled) {
      this.afterCommit(member.id);
      this.emitChange({ previousStatus: 'pending', row: member });
    }
    return this.toPublic(row);
  }

  private auditData(kind: TransitionKind, result: Transition) {
    if (kind === 'reviewed' && result.vote) {
      const v = result.vote;
      return { verdict: v.verdict, reason: v.reason, modifiedArgs: v.args !== null, alternative: v.alternative, stage: v.stage };
    }
    const d = result.decision;
    return d
      ? {
          decidedBy: d.decidedBy,
          deciders: d.deciders.map((x) => x.name),
          reason: d.reason,
          alternative: d.alternative,
          modified: d.modified,
          // The trail binds exactly what may run (as the receipt does) without storing the args.
          payloadHash: d.outcome === 'approved' && d.action !== null && d.args !== null ? this.trail.payloadHash(d.action, d.args) : null,
        }
      : {};
  }

  /**
   * Post-hoc feedback on a request the policy approved on its own (the dashboard's supervised
   * feed): "should have asked", or "ok". It changes no request state; it is an audit entry, so
   * it is part of the trail. A repeat of an operator's latest verdict returns that entry.
   */
  async recordFeedback(by: Principal, id: string, body: { verdict: 'should_have_asked' | 'ok'; note?: string | undefined }): Promise<AuditEntry> {
    this.requireOperator(by);
    const request = await this.store.getRequest(id);
    this.checkReadable(by, request, id);
    if (request.route !== 'auto_approve') {
      throw new CountersignError('ILLEGAL_TRANSITION', `feedback is for requests the policy approved on its own; ${id} was routed to ${request.route}`);
    }
    const entryId = await this.store.transaction(async (tx) => {
      const mine = (await tx.auditFor(id)).filter((e) => e.type === 'feedback' && e.actor_id === by.operatorId);
      const latest = mine[mine.length - 1];
      if (latest && (JSON.parse(latest.data) as { verdict?: string }).verdict === body.verdict) return latest.entry_id ?? latest.seq;
      const data = { verdict: body.verdict, note: body.note ?? null, automationLevel: request.automation_level, riskLevel: request.risk_level };
      const entry = this.audit('feedback', id, actorOf(by), data, this.now());
      const [row] = await this.writer.append(tx, [entry]);
      return row!.id;
    });
    // The answer names the entry's seq: wait (bounded) for the integrator to give it one.
    await this.store.settleAudit();
    const row = await this.store.auditByEntryId(entryId);
    if (!row) throw new CountersignError('STORE_UNAVAILABLE', `the feedback is recorded (entry ${entryId}) but not yet in the audit tree; it will be within seconds: read GET /v1/requests/${id}/audit`);
    return auditFromRow(row);
  }

  /** Hears every committed request change made by this process (metrics). Observers must be cheap. */
  observe(observer: (change: RequestChange) => void): () => void {
    return this.observers.add(observer);
  }

  private emitChange(change: RequestChange): void {
    this.observers.emit(change);
  }

  // ---- escalation, deadlines and deliveries (the scheduler calls these; see scheduler/) ----

  private readonly policyChecks: Array<(policy: Policy) => PolicyError[]> = [];
  private readonly timerListeners = new Set<() => void>();
  private timersDue = false;

  /**
   * Extra validation every policy must pass before it is activated, e.g. the channel settings,
   * which belong to the server's channel adapters rather than to core. Runs on later loads only.
   */
  addPolicyCheck(check: (policy: Policy) => PolicyError[]): void {
    this.policyChecks.push(check);
  }

  /** Told (after commit) when this process wrote timers that are due now: deliveries to send. */
  onTimersDue(listener: () => void): () => void {
    this.timerListeners.add(listener);
    return () => {
      this.timerListeners.delete(listener);
    };
  }

  /** One round of the scheduler's lapse sweep (engine/execution.ts `sweepLapsed`): how many approvals became `lapsed`. */
  sweepLapsedApprovals(limit: number): Promise<number> {
    return this.executions.sweepLapsed(limit);
  }

  /** The engine's clock, for the scheduler's claims. */
  clock(): number {
    return this.now();
  }

  /** A request as the API shows it, read for background work (notifications) that acts for no caller. */
  async requestById(id: string): Promise<ApprovalRequest | undefined> {
    const row = await this.store.getRequest(id);
    return row ? this.toPublic(row) : undefined;
  }

  /** At creation, in the create transaction: escalation state, its deadline, the agent's hard deadline, first notifications. */
  private async scheduleCreated(tx: Queries, row: RequestRow, escalation: EscalationState | null, at: number, notify = true): Promise<void> {
    const timers: TimerRow[] = [];
    if (row.expires_at !== null) timers.push(requestTimer('expire', row.id, row.expires_at, at));
    if (escalation) {
      await tx.timers.insertEscalation({ request_id: row.id, level: escalation.level, due_at: escalation.dueAt, state: JSON.stringify(escalation), updated_at: at });
      const due = escalationTimerAt(escalation, row.expires_at);
      if (due !== null) timers.push(requestTimer('escalate', row.id, due, at, { level: escalation.level }));
    }
    await tx.timers.insertTimers(timers);
    if (escalation && notify) await this.enqueueDeliveries(tx, row.id, channelsFor(escalation, escalation.level), 'requested', { level: escalation.level }, at);
  }

  private async enqueueDeliveries(tx: Queries, requestId: string, channels: readonly string[], event: string, data: unknown, at: number): Promise<void> {
    if (channels.length === 0) return;
    const rows = channels.map((channel) => deliveryRows(newId('dlv', at), requestId, channel, event, data, at));
    await tx.timers.insertDeliveries(rows.map((r) => r.delivery));
    await tx.timers.insertTimers(rows.map((r) => r.timer));
    this.timersDue = true;
  }

  /** When a request leaves `pending`: its deadlines are moot, and every channel told about it hears the outcome. */
  private async closeEscalation(tx: Queries, current: RequestRow, escalation: EscalationState | null, status: RequestStatus, at: number): Promise<void> {
    await tx.timers.cancelRequestTimers(current.id, ['escalate', 'expire']);
    if (escalation) await this.enqueueDeliveries(tx, current.id, channelsSoFar(escalation), 'decided', { status }, at);
  }

  private async escalationOf(tx: Queries, id: string): Promise<EscalationState | null> {
    const [row] = await tx.timers.escalationsFor([id]);
    return row ? (JSON.parse(row.state) as EscalationState) : null;
  }

  private async escalationsOf(ids: readonly string[]): Promise<Map<string, EscalationState>> {
    const rows = await this.store.timers.escalationsFor(ids);
    return new Map(rows.map((r) => [r.request_id, JSON.parse(r.state) as EscalationState]));
  }

  private async saveEscalation(tx: Queries, current: RequestRow, state: EscalationState, at: number, isNew: boolean): Promise<void> {
    const row = { request_id: current.id, level: state.level, due_at: state.dueAt, state: JSON.stringify(state), updated_at: at };
    if (isNew) await tx.timers.insertEscalation(row);
    else await tx.timers.updateEscalation(row);
    await tx.timers.cancelRequestTimers(current.id, ['escalate']);
    const due = escalationTimerAt(state, current.expires_at);
    if (due !== null) await tx.timers.insertTimers([requestTimer('escalate', current.id, due, at, { level: state.level })]);
    // The request itself changed for its readers (level, deadline): waiters and SSE see a new updatedAt.
    if (!(await tx.updateRequest(current.id, { updated_at: at, queue_due_at: queueDueAt(current, state) }, 'pending'))) {
      throw new CountersignError('ALREADY_DECIDED', `request ${current.id} changed concurrently`);
    }
    await tx.notify(WAKE_CHANNEL, current.id);
  }

  /**
   * Fires one request timer (`escalate` or `expire`) claimed by the scheduler. The timer is
   * deleted in the transaction that makes its change, so it fires once. `escalated`: up a level;
   * `decided`: expired, or approved by timeout; `gone`: another process (or an earlier attempt)
   * fired it; `rescheduled`: its deadline moved after the claim; `stale`: decided meanwhile.
   */
  async fireTimer(timer: TimerRow): Promise<'escalated' | 'decided' | 'gone' | 'rescheduled' | 'stale'> {
    if (timer.kind === 'collect') return this.collectAggregate(timer);
    if (timer.kind === 'pause_end') return this.guard.pauseRanOut(timer);
    const id = timer.request_id;
    if (id === null || (timer.kind !== 'escalate' && timer.kind !== 'expire')) {
      throw new CountersignError('INTERNAL', `fireTimer: ${timer.kind} is not a request timer`);
    }
    let outcome = 'decided' as 'escalated' | 'decided' | 'stale';
    try {
      await this.change(undefined, id, async (tx, current, escalation) => {
        const taken = await tx.timers.takeTimer(timer.id);
        // Gone, or already replaced by the next level's timer (same id, a later incarnation).
        if (!taken || taken.created_at !== timer.created_at || taken.payload !== timer.payload) throw new TimerSkip('gone');
        const at = this.now();
        if (taken.due_at > at) throw new TimerSkip('rescheduled');
        if (current.status !== 'pending') {
          outcome = 'stale';
          return null;
        }
        if (taken.kind === 'expire') {
          return { type: 'expire', reason: "the agent's own timeout (timeoutSeconds) passed before a decision", at: '' };
        }
        // A request in an aggregate review follows the aggregate's deadlines, never its own chain.
        if (await tx.aggregates.membership(id)) {
          outcome = 'stale';
          return null;
        }
        const state = escalation ?? startEscalation(this.policy.policy, JSON.parse(current.assessment) as Assessment, current.created_at);
        if (!state) throw new CountersignError('INTERNAL', `request ${id} is pending without a review route`);
        const due = onDue(state, this.policy.policy, at);
        if (due.type === 'final') {
          if (due.outcome === 'approve' && (await tx.guard.activePause(current.agent_id, at))) {
            // Fail closed: a paused agent's request is never approved by a clock.
            return { type: 'expire', reason: `${due.reason}; the agent is paused, so onFinalTimeout: approve does not apply`, at: '' };
          }
          if (due.outcome !== 'approve') return { type: 'expire', reason: due.reason, at: '' };
          // Silence approves only the request as asked, and only if the active policy would not block it.
          const votes = (await tx.reviewsFor([id])).map(voteFromRow);
          return this.decisions.timeoutEvent(tx, current, await this.agentName(current.agent_id, tx), votes, due.reason, at);
        }
        outcome = 'escalated';
        await this.saveEscalation(tx, current, due.state, at, escalation === null);
        await this.enqueueDeliveries(tx, id, due.notify, 'escalated', { from: due.from, to: due.to, role: due.role, reason: 'sla_timeout' }, at);
        await this.writer.append(tx, [
          this.audit(
            'escalated',
            id,
            SYSTEM,
            { from: due.from, to: due.to, role: due.role, dueAt: new Date(due.state.dueAt).toISOString(), notify: due.notify, reason: 'sla_timeout', lateMs: at - taken.due_at },
            at,
          ),
        ]);
        return null;
      });
    } catch (err) {
      if (err instanceof TimerSkip) return err.why;
      throw err;
    }
    if (outcome === 'escalated') this.emitEscalated('sla_timeout');
    return outcome;
  }

  // ---- aggregate reviews (onSlicing: aggregate; the pure parts are core's guard/aggregate.ts) ----

  /**
   * Closes an aggregate collection (its `collect` timer): the agent's still-pending requests in it
   * become one aggregate review request (several when there are more than MAX_AGGREGATE_MEMBERS;
   * one request alone is an aggregate of one), whose total value also counts what the agent
   * asked for in this hold's earlier aggregates, evaluated by the policy as a whole and routed to
   * review with its own escalation. `decided`: something was put together.
   */
  private async collectAggregate(timer: TimerRow): Promise<'decided' | 'gone' | 'rescheduled' | 'stale'> {
    const { collectionId } = JSON.parse(timer.payload) as { collectionId: string };
    const made: RequestRow[] = [];
    const settled: RequestRow[] = [];
    try {
      await this.store.transaction(async (tx) => {
        const taken = await tx.timers.takeTimer(timer.id);
        if (!taken || taken.created_at !== timer.created_at) throw new TimerSkip('gone');
        const at = this.now();
        if (taken.due_at > at) throw new TimerSkip('rescheduled');
        // Locked: a create joining the collection and this close take turns (PostgreSQL).
        const collection = await tx.aggregates.collection(collectionId, true);
        if (!collection || collection.closed_at !== null) return;
        const members: RequestRow[] = [];
        for (const id of await tx.aggregates.collecting(collection.id)) {
          const row = await tx.getRequest(id, true);
          if (row?.status === 'pending') members.push(row);
        }
        const alerts = JSON.parse(collection.alerts) as string[];
        const agentName = await this.agentName(collection.agent_id, tx);
        let earlier = await tx.aggregates.earlierInHold(collection.agent_id, Number(collection.hold_since));
        const groups = Math.ceil(members.length / MAX_AGGREGATE_MEMBERS);
        for (let g = 0; g < groups; g++) {
          const group = members.filter((_, i) => i % groups === g);
          const aggregate = await this.insertAggregate(tx, group, agentName, alerts, earlier, at, settled);
          made.push(aggregate.row);
          earlier = { count: earlier.count + group.length, value: sumValues(earlier.value, aggregate.value) };
        }
        await tx.aggregates.closeCollection(collection.id, at, members.length, sumValues(...members.map(statedValue)));
      });
    } catch (err) {
      if (err instanceof TimerSkip) return err.why as 'gone' | 'rescheduled';
      throw err;
    }
    for (const row of [...made, ...settled]) {
      this.afterCommit(row.id);
      this.emitChange({ previousStatus: made.includes(row) ? null : 'pending', row });
    }
    return made.length > 0 ? 'decided' : 'stale';
  }

  private async insertAggregate(
    tx: Queries,
    members: readonly RequestRow[],
    agentName: string,
    alerts: readonly string[],
    earlier: EarlierInHold,
    at: number,
    settled: RequestRow[],
  ): Promise<{ row: RequestRow; value: number | null }> {
    const body = aggregateRequest(
      members.map((m) => ({
        id: m.id,
        action: m.action,
        args: JSON.parse(m.args),
        value: statedValue(m) ?? undefined,
        riskLevel: m.risk_level as Assessment['riskLevel'],
        confidence: m.confidence ?? undefined,
      })),
      agentName,
      alerts,
      earlier,
    );
    const forced = {
      rule: `slicing-aggregate:${alerts.join('+')}`,
      reason: `slicing detected (${alerts.join(', ')}); policy onSlicing: aggregate puts ${members.length === 1 ? 'this request' : `${members.length} requests`} before a reviewer as one`,
    };
    // Never easier to approve than any member was on its own (its MFA, approvers, quorum).
    const own = members.map((m) => JSON.parse(m.assessment) as Assessment);
    const first = members[0]!;
    // The agent's policy (file + overlay: an overlay block, levels or escalation apply to the bundle as to each member, review2 F3).
    const policy = await this.agentConfigs.policyFor(tx, first.agent_id, agentName);
    const assessment = assessAggregate(body, agentName, policy, EMPTY_HISTORY, new Date(at), forced, own);
    const id = newId('req', at);
    const { row, decision, status } = this.newRequestRow(id, first.agent_id, first.requester_operator_id, body, sha256Hex(canonicalJson(body)), assessment, this.policy.version, at);
    const escalation = status === 'pending' ? startEscalation(policy, assessment, at) : null;
    row.queue_due_at = queueDueAt(row, escalation);
    await tx.insertRequest(row);
    await this.scheduleCreated(tx, row, escalation, at);
    await tx.aggregates.bundle(
      members.map((m) => m.id),
      id,
    );
    await this.writer.append(tx, [
      this.audit('created', id, SYSTEM, {
        action: body.action,
        agentId: row.agent_id,
        policyVersion: row.policy_version,
        riskScore: assessment.riskScore,
        riskLevel: assessment.riskLevel,
        route: assessment.route,
        matchedRules: assessment.matchedRules.map((r) => r.name),
        members: members.map((m) => m.id),
        payloadHash: this.trail.payloadHash(body.action, body.args),
      }, at),
      ...members.map((m) => this.audit('aggregated', m.id, SYSTEM, { aggregateId: id }, at)),
      status === 'pending' ? this.audit('queued', id, SYSTEM, { slaDueAt: assessment.slaDueAt, approval: assessment.approval }, at) : this.audit(status, id, SYSTEM, { decidedBy: 'policy', reason: decision?.reason ?? null }, at),
    ]);
    await tx.notify(WAKE_CHANNEL, id);
    // A policy that blocks the whole decides every member at once.
    if (decision) settled.push(...(await this.settleAggregate(tx, row, decision, at)).members);
    return { row, value: (body.args['value'] as number | null | undefined) ?? null };
  }

  /**
   * An aggregate review was decided: each still-pending member gets the same outcome, bound to
   * its own action and args (its own signed receipt), in the same transaction. An approved
   * aggregate has nothing left to run, so it is recorded as executed (the members run, each
   * reported by its agent).
   */
  private async settleAggregate(tx: Queries, aggregate: RequestRow, decision: Decision, at: number): Promise<{ members: RequestRow[]; patch: Partial<RequestRow> }> {
    const members: RequestRow[] = [];
    const deciders = decision.deciders.map((d) => d.name);
    for (const memberId of await tx.aggregates.members(aggregate.id)) {
      const member = await tx.getRequest(memberId, true);
      if (member?.status !== 'pending') continue;
      // An objection already raised on the member stands: the aggregate's approval does not override it.
      const objected = decision.outcome === 'approved' && (await tx.reviewsFor([member.id])).some((v) => v.verdict === 'reject');
      const d = objected
        ? {
            ...memberDecision(aggregate.id, { ...decision, outcome: 'expired' }, { action: member.action, args: {} }),
            reason: `aggregate review ${aggregate.id} was approved, but a reviewer had objected to this request, so it is not`,
          }
        : memberDecision(aggregate.id, decision, { action: member.action, args: JSON.parse(member.args) });
      const patch = { status: d.outcome as RequestStatus, updated_at: at, ...this.sealed(member.id, d, member.risk_level), decided_at: at };
      if (!(await tx.updateRequest(member.id, patch, 'pending'))) throw new CountersignError('ALREADY_DECIDED', `request ${member.id} changed concurrently`);
      await tx.timers.cancelRequestTimers(member.id, ['escalate', 'expire']);
      const payloadHash = d.action !== null && d.args !== null ? this.trail.payloadHash(d.action, d.args) : null;
      await this.writer.append(tx, [this.audit(d.outcome, member.id, SYSTEM, { decidedBy: d.decidedBy, deciders, reason: d.reason, aggregateId: aggregate.id, payloadHash }, at)]);
      await tx.notify(WAKE_CHANNEL, member.id);
      members.push({ ...member, ...patch });
    }
    if (decision.outcome !== 'approved') return { members, patch: {} };
    const execution = { status: 'succeeded', result: { decided: members.map((m) => m.id) }, error: null, at: new Date(at).toISOString() };
    const patch = { status: 'executed' as RequestStatus, execution: JSON.stringify(execution), updated_at: at };
    if (!(await tx.updateRequest(aggregate.id, patch, 'approved'))) throw new CountersignError('ALREADY_DECIDED', `request ${aggregate.id} changed concurrently`);
    await this.writer.append(tx, [this.audit('executed', aggregate.id, SYSTEM, { status: 'succeeded', members: members.length }, at)]);
    return { members, patch };
  }

  /**
   * Who may extend or reassign: someone the gate would let vote on the request now (its identity
   * and separation checks, over the payload that would run). Returns the index of the stage the
   * request waits on, which a reassignment moves (and only that one).
   */
  private async actingStage(tx: Queries, by: Extract<Principal, { kind: 'operator' }>, current: RequestRow, escalation: EscalationState): Promise<number> {
    if (current.requester_operator_id === by.operatorId) throw new CountersignError('SELF_REVIEW', 'a requester cannot manage their own request');
    const votes = (await tx.reviewsFor([current.id])).map(voteFromRow);
    const agentName = await this.agentName(current.agent_id, tx);
    const { eligible, stage, stageIndex } = await this.decisions.stageFor(tx, by, current, agentName, escalation, votes, this.now());
    if (!eligible) throw new CountersignError('NOT_ELIGIBLE', `only someone who may review this request now may do this (${stage.label})`, { stage });
    return stageIndex;
  }

  /** Locks a pending request with escalation state, runs `fn`, writes its audit entry; one transaction. */
  private async manage(
    by: Principal,
    id: string,
    fn: (tx: Queries, current: RequestRow, escalation: EscalationState, at: number, stage: number) => Promise<{ state: EscalationState; audit: [AuditEventType, unknown]; notify?: readonly string[] }>,
  ): Promise<ApprovalRequest> {
    this.requireOperator(by);
    const row = await this.store.transaction(async (tx) => {
      const current = await tx.getRequest(id, true);
      this.checkReadable(by, current, id);
      if (current.status !== 'pending') throw new CountersignError('ALREADY_DECIDED', `request is already ${current.status}`, { status: current.status });
      const escalation = await this.escalationOf(tx, id);
      if (!escalation) throw new CountersignError('ILLEGAL_TRANSITION', `request ${id} has no deadline to manage`);
      const stage = await this.actingStage(tx, by, current, escalation);
      const at = this.now();
      const out = await fn(tx, current, escalation, at, stage);
      await this.saveEscalation(tx, current, out.state, at, false);
      const [type, data] = out.audit;
      if (out.notify) await this.enqueueDeliveries(tx, id, out.notify, type, data, at);
      await this.writer.append(tx, [this.audit(type, id, actorOf(by), data, at)]);
      return { ...current, updated_at: at };
    });
    this.afterCommit(id);
    return this.toPublic(row);
  }

  /** A reviewer grants more time at the current level: once per request, bounded, with a reason. The agent's own timeout never moves. */
  async extendDeadline(by: Principal, id: string, body: { seconds: number; reason: string }): Promise<ApprovalRequest> {
    return this.manage(by, id, async (_tx, _current, escalation, at) => {
      const state = extendEscalation(escalation, body.seconds * 1000, body.reason, by.kind === 'operator' ? by.name : '', at);
      const data = { level: state.level, bySeconds: body.seconds, reason: body.reason, dueAt: new Date(state.dueAt).toISOString() };
      return { state, audit: ['extended', data] };
    });
  }

  /** Hands a pending request to another operator or a group; the current level's channels hear of it. */
  async reassign(by: Principal, id: string, body: { operator?: string | undefined; group?: string | undefined; reason: string }): Promise<ApprovalRequest> {
    let operator: string | undefined;
    if (body.operator !== undefined) {
      // Only an operator who could sign in (MAC valid, not disabled or removed) is handed a request.
      const found = await this.credentials.operatorPrincipal(body.operator);
      if (!found) throw new CountersignError('VALIDATION_FAILED', `no active operator named "${body.operator}"`, { field: 'operator' });
      if (!canReviewAtAll({ roles: found.roles })) {
        throw new CountersignError('VALIDATION_FAILED', `operator "${found.name}" has no reviewing role`, { field: 'operator' });
      }
      operator = found.name;
    }
    return this.manage(by, id, async (_tx, _current, escalation, at, stage) => {
      // Only the current stage moves, and never one that names people (the gate's eligibility, finding 4).
      const state = reassignEscalation(escalation, { operator, group: body.group }, body.reason, by.kind === 'operator' ? by.name : '', at, stage);
      const data = { level: state.level, to: operator !== undefined ? { operator } : { group: body.group }, reason: body.reason, stage };
      return { state, audit: ['reassigned', data], notify: channelsFor(state, state.level) };
    });
  }

  /**
   * A reviewer escalates a pending request now: the same move up one level as a timeout (core's
   * `escalateNow`), its next level's channels told with the reason, the timer rescheduled for
   * that level's period. Whoever may review it now may (as for extend and reassign); it never
   * decides the request, and is refused at the last level. `fromLevel` (the level the caller
   * saw) makes two escalations made at once move one level: the row lock serialises them, and
   * the second finds the level moved on.
   */
  async escalate(by: Principal, id: string, body: { reason: string; fromLevel?: number | undefined }): Promise<ApprovalRequest> {
    const request = await this.manage(by, id, async (tx, _current, escalation, at) => {
      // A parked member's own chain stopped when it joined an aggregate review, which has its own (as fireTimer).
      const aggregated = await this.guard.aggregateOf(id, tx);
      if (aggregated) throw new CountersignError('AGGREGATED', 'this request is decided in its aggregate review: escalate that instead', { aggregateId: aggregated.id, collectingUntil: aggregated.collectingUntil });
      const up = escalateNow(escalation, body.reason, at, body.fromLevel);
      const operator = by.kind === 'operator' ? by.name : '';
      const data = { from: up.from, to: up.to, role: up.role, dueAt: new Date(up.state.dueAt).toISOString(), notify: up.notify, reason: 'manual', by: operator, text: body.reason };
      return { state: up.state, audit: ['escalated', data], notify: up.notify };
    });
    this.emitEscalated('manual');
    return request;
  }

  private readonly escalationListeners = new Listeners<EscalationCause>();

  /** Told after each committed escalation in this process, with its cause (metrics). */
  onEscalated(listener: (reason: EscalationCause) => void): () => void {
    return this.escalationListeners.add(listener);
  }

  private emitEscalated(reason: EscalationCause): void {
    this.escalationListeners.emit(reason);
  }

  /**
   * Records one delivery attempt made by the scheduler. Success and final failure fire the
   * delivery's timer and leave an audit entry (`notified`, `delivery_failed`); a failure with
   * retries left moves the timer to the next attempt. Attempts are kept in the delivery row.
   */
  async recordDelivery(
    id: string,
    result: { ok: true; ms: number; response?: unknown } | { ok: false; ms: number; error: string; retryInMs: number | null },
  ): Promise<DeliveryRow | undefined> {
    const done = await this.store.transaction(async (tx) => {
      const delivery = await tx.timers.getDelivery(id);
      if (!delivery || delivery.status !== 'pending') {
        await tx.timers.takeTimer(id);
        return delivery;
      }
      const at = this.now();
      const attempts = delivery.attempts + 1;
      const log = [...(JSON.parse(delivery.attempt_log) as unknown[]), { at: new Date(at).toISOString(), ok: result.ok, ms: Math.round(result.ms), ...(result.ok ? {} : { error: result.error }) }];
      const common = { attempts, attempt_log: JSON.stringify(log), updated_at: at };
      const what = { deliveryId: id, channel: delivery.channel, event: delivery.event, attempts };
      if (!result.ok && result.retryInMs !== null) {
        if (!(await tx.timers.rescheduleTimer(id, at + result.retryInMs))) return delivery; // finished elsewhere
        await tx.timers.updateDelivery(id, { ...common, last_error: result.error });
        return { ...delivery, ...common, last_error: result.error };
      }
      if (!(await tx.timers.takeTimer(id))) return delivery;
      if (result.ok) {
        const patch = { ...common, status: 'delivered', finished_at: at, response: result.response === undefined ? null : JSON.stringify(result.response) };
        await tx.timers.updateDelivery(id, patch);
        await this.writer.append(tx, [this.audit('notified', delivery.request_id, SYSTEM, what, at)]);
        return { ...delivery, ...patch };
      }
      const patch = { ...common, status: 'failed', finished_at: at, last_error: result.error };
      await tx.timers.updateDelivery(id, patch);
      await this.writer.append(tx, [this.audit('delivery_failed', delivery.request_id, SYSTEM, { ...what, error: result.error }, at)]);
      return { ...delivery, ...patch };
    });
    return done;
  }

  async listDeliveries(by: Principal, options: { status?: string | undefined; requestId?: string | undefined; channel?: string | undefined; limit?: number | undefined; cursor?: string | undefined } = {}) {
    this.requireOperator(by);
    const limit = Math.min(Math.max(options.limit ?? 50, 1), 500);
    const rows = await this.store.timers.listDeliveries({
      status: options.status,
      requestId: options.requestId,
      channel: options.channel,
      limit: limit + 1,
      before: options.cursor ? decodeCursor(options.cursor) : undefined,
    });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { items: page.map(deliveryFromRow), nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  /**
   * Records a one-time value (a signed callback's signature) until `ttlMs` from now; false when
   * it was seen before, i.e. a replay. Shared by every process on the database.
   */
  async claimNonce(scope: string, value: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    return this.store.transaction((tx) => tx.timers.claimNonce(`${scope}:${sha256Hex(value)}`, now + ttlMs, now));
  }

  // ---- audit (read side; the trail's format grows in the audit issue) ----

  async auditForRequest(by: Principal, id: string): Promise<AuditEntry[]> {
    const row = await this.store.getRequest(id);
    this.checkReadable(by, row, id);
    return (await this.store.auditFor(id)).map(auditFromRow);
  }

  async listAudit(by: Principal, options: { afterSeq?: number; limit?: number; type?: string }) {
    this.requireOperator(by);
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1000);
    const rows = await this.store.listAudit({ afterSeq: options.afterSeq, limit, type: options.type });
    return rows.map(auditFromRow);
  }

  // ---- helpers ----

  private audit(type: AuditEventType, requestId: string | null, actor: AuditActor, data: unknown, at: number): AuditDraft {
    return draft(type, requestId, actor, data, at);
  }

  private afterCommit(id: string): void {
    // On PostgreSQL the NOTIFY sent in the transaction wakes every process, this one included.
    if (!this.store.capabilities.listenNotify) this.wakeups.publish(id);
    if (this.timersDue) {
      this.timersDue = false;
      for (const listener of this.timerListeners) listener();
    }
  }

  private async toPublic(row: RequestRow, viewer?: Principal, guardFacts?: ReaderGuardFacts, from: ReaderFrom = {}): Promise<ApprovalRequest> {
    const reviews = await this.store.reviewsFor([row.id]);
    const escalation = (await this.escalationsOf([row.id])).get(row.id) ?? null;
    const request = requestFromRow(row, await this.agentName(row.agent_id), reviews, escalation);
    if (!viewer || viewer.kind !== 'operator' || row.status !== 'pending') return request;
    const facts = guardFacts ?? { aggregate: await this.guard.aggregateOf(row.id), paused: await this.guard.pauseOf(row.agent_id) };
    return this.withActionable(viewer, request, row, reviews, escalation, facts, await this.guard.readerFacts(viewer, from.ip));
  }

  /**
   * Marks, for an operator, whether they may approve this pending request now, and why not: the
   * gate's dry run (engine/decisions.ts), the same ordered checks a vote goes through, so the
   * queue never offers what the server refuses. Also the payload an approval approves now.
   */
  private async withActionable(
    by: Extract<Principal, { kind: 'operator' }>,
    request: ApprovalRequest,
    row: RequestRow,
    reviews: readonly ReviewRow[],
    escalation: EscalationState | null,
    guardFacts: ReaderGuardFacts,
    limits: Awaited<ReturnType<GuardService['readerFacts']>>,
  ): Promise<ApprovalRequest> {
    const votes = reviews.map(voteFromRow);
    const facts: Omit<RequestFacts, 'agentDisabled'> = {
      votes,
      escalation,
      aggregated: guardFacts.aggregate ? { aggregateId: guardFacts.aggregate.id, collectingUntil: guardFacts.aggregate.collectingUntil } : null,
      agentPaused: guardFacts.paused ?? null,
    };
    const round = currentRound({ action: row.action, args: request.args, votes });
    // Another payload's own evaluation reads its history (a soft signal, cached a second).
    const history = round.key === payloadKey(row.action, request.args) ? EMPTY_HISTORY : await this.history(row.agent_id, this.roundAction(request, votes), this.now());
    // The agent's own policy (file + overlay) and, for an admin change, who may sign it: as the vote reads them (review F5).
    let context: Awaited<ReturnType<Decisions['requestContext']>>;
    try {
      context = await this.decisions.requestContext(this.store, row, request.agentName);
    } catch (err) {
      request.actionable = false;
      request.notActionable = { code: err instanceof CountersignError ? err.code : 'INTERNAL', message: (err as Error).message };
      return request;
    }
    const view = this.decisions.readerView(
      by,
      row,
      request.agentName,
      { ...facts, adminSigners: context.adminSigners },
      { ...limits, ...this.guard.limitsFor(context.policy) },
      history,
      this.now(),
      context.policy,
    );
    request.actionable = view.actionable;
    if (view.notActionable) request.notActionable = view.notActionable;
    request.payload = view.payload;
    return request;
  }

  /** The action of the round's payload (an alternative's, or the request's own). */
  private roundAction(request: ApprovalRequest, votes: readonly Vote[]): string {
    try {
      return resolvePayload({ action: request.action, args: request.args, alternatives: request.alternatives, votes }, {}).action;
    } catch {
      return request.action;
    }
  }

  /** `q`: inside a transaction, its handle (on SQLite a read outside it would wait for it to commit). */
  private async agentName(agentId: string, q: Queries = this.store): Promise<string> {
    const cached = this.agentNames.get(agentId);
    if (cached !== undefined) return cached;
    const agent = await q.findAgentById(agentId);
    const name = agent?.name ?? agentId;
    this.agentNames.set(agentId, name);
    return name;
  }

  /** Unknown and not-yours look the same to an agent, so ids cannot be probed. */
  private checkReadable(by: Principal, row: RequestRow | undefined, id: string): asserts row is RequestRow {
    if (!row || (by.kind === 'agent' && row.agent_id !== by.agentId)) {
      throw new CountersignError('NOT_FOUND', `no request ${id}`);
    }
  }

  private checkOwner(by: Principal, row: RequestRow): void {
    if (by.kind === 'agent') return; // checkReadable already limited agents to their own
    if (row.requester_operator_id !== by.operatorId) {
      throw new CountersignError('FORBIDDEN', 'only the requesting agent may do this');
    }
  }

  private requireOperator(by: Principal): asserts by is Extract<Principal, { kind: 'operator' }> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
  }

  private requireRole(by: Principal, role: Role): void {
    this.requireOperator(by);
    if (!by.roles.includes(role)) throw new CountersignError('FORBIDDEN', `this needs the ${role} role`);
  }
}

export function auditFromRow(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    at: new Date(row.at).toISOString(),
    type: row.type,
    requestId: row.request_id,
    actor: { type: row.actor_type, id: row.actor_id, name: row.actor_name },
    data: JSON.parse(row.data),
  };
}

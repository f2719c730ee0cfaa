/**
 * The engine: the facade over its rooms (engine/house.ts wires them) and the only writer of
 * requests, reviews, credentials and audit entries. HTTP handlers, the CLI (through HTTP), the
 * embedded gateway and background loops call these methods; none of them writes SQL, and none
 * reaches through the engine to its store. Every state change and its audit entries are written
 * in one transaction by the room that owns it, and waiters are woken only after the commit.
 *
 *   policies.ts    the active policy          identity.ts    callers, bootstrap, operators, agent keys
 *   requests.ts    proposals and routing      reviews.ts     votes (through decisions.ts), cancel, state changes
 *   escalation.ts  deadlines and levels       aggregates.ts  aggregate reviews (onSlicing: aggregate)
 *   deliveries.ts  channel deliveries         timer-registry.ts  timer kind → the room that fires it
 *   views.ts       every read                 commits.ts     what follows a commit (wake-ups, observers)
 */
import type { MetricBucket } from '@countersign/core';
import type { SummaryAggregates } from '../store/history.ts';
import type { CancelBody, CreateRequest, ExecutionBody, Policy, PolicyError, ReviewBody, Role, ApprovalRequest } from '@countersign/core';
import { CountersignError, agentEnabled } from '@countersign/core';
import { COMMITTED_MODEL_VERSION, type ScreenRequest, type ScreenResult } from '@countersign/core/screen/api';
import { ephemeralServerSecret, type ServerSecret } from '../keys/server-secret.ts';
import type { Connection } from '../store/connect.ts';
import { ephemeralAuditKey, type AuditKey } from '../audit/crypto.ts';
import { AuditService } from '../audit/service.ts';
import { AuditWriter } from '../audit/writer.ts';
import { GuardService, type GuardOptions, type SlicingReview } from '../guard/service.ts';
import { Store } from '../store/store.ts';
import { Sealer } from '../store/sealing.ts';
import type { DeliveryFilter, DeliveryRow, TimerKind, TimerRow } from '../store/timers.ts';
import { Credentials } from './credentials.ts';
import { Decisions } from './decisions.ts';
import type { Principal } from './principal.ts';
import { ExternalChanges } from './external-changes.ts';
import { Wakeups } from './wakeups.ts';
import { ExecutionDesk } from './execution.ts';
import { AgentConfigDesk } from './agent-config.ts';
import type { ListOptions } from './queue.ts';
import type { MyDashboardOptions } from './my-dashboard.ts';
import { sharedScreener, type Screener } from './screener.ts';
import { ScreeningDesk } from './screening.ts';
import { ScreenModels } from './screen-models.ts';
import { WAKE_CHANNEL, type ActivePolicy, type AuditEntry, type EscalationCause, type House, type ReaderFrom, type RequestChange } from './house.ts';
import { Commits } from './commits.ts';
import { Policies } from './policies.ts';
import { Identity, adminSigners } from './identity.ts';
import { Requests } from './requests.ts';
import { Reviews } from './reviews.ts';
import { Escalation } from './escalation.ts';
import { Aggregates } from './aggregates.ts';
import { Deliveries } from './deliveries.ts';
import { Views } from './views.ts';
import { TimerRegistry, type TimerOutcome } from './timer-registry.ts';
import { forwardingStatus, forwardLabelKey } from '../forwarding/status.ts';
import type { ForwardDestination } from '../forwarding/config.ts';
import { PrecheckCaller } from '../precheck/caller.ts';
import { Prechecks } from './prechecks.ts';

export { CREDENTIAL_CACHE_MS } from './credentials.ts';
export { HISTORY_CACHE_MS, WAKE_CHANNEL } from './house.ts';
export type { ActivePolicy, AuditEntry, EscalationCause, ReaderFrom, RequestChange } from './house.ts';
export type { ListOptions } from './queue.ts';
export { auditFromRow } from './views.ts';

/**
 * The store an engine runs on, for a composition root that wires other parts to the same
 * database (runtime.ts, the audit CLI commands): open it here, pass it to `Engine.open({ store })`.
 */
export function openStore(options: { connection: Connection; guard?: GuardOptions | undefined; onStoreError?: ((err: unknown) => void) | undefined }): Store {
  const guard = options.guard ?? {};
  // COUNTERSIGN_ENCRYPTION_KEY (and _PREVIOUS) seal agent-supplied request columns and TOTP secrets; a malformed key refuses to start here.
  const sealer = Sealer.fromKey(guard.encryptionKey, guard.previousEncryptionKeys);
  return new Store(options.connection, sealer, options.onStoreError ? { onError: options.onStoreError } : {});
}

export class Engine {
  readonly wakeups = new Wakeups();
  private unlisten: (() => Promise<void>) | undefined;
  private external: ExternalChanges | undefined;
  private readonly commits: Commits;
  /** The rooms and what they share (engine/house.ts). */
  private readonly house: House;
  private readonly timers: TimerRegistry;

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
    /** The tests' seam into the database. Code under src/ never reads it from outside engine/ (test/house-guard.test.ts). */
    readonly store: Store,
    private readonly now: () => number,
    auditKey: AuditKey,
    guard: GuardOptions = {},
    serverSecret: ServerSecret = ephemeralServerSecret(),
    screener: Screener = sharedScreener(),
    prechecks: PrecheckCaller = new PrecheckCaller({ env: {} }),
  ) {
    this.commits = new Commits(store, this.wakeups);
    this.trail = new AuditService(store, auditKey, now);
    this.writer = new AuditWriter((data) => this.trail.redact(data));
    this.credentials = new Credentials(store, now, this.writer, serverSecret);
    this.guard = new GuardService(store, now, guard, this.writer, serverSecret);
    this.agentConfigs = new AgentConfigDesk({
      store,
      writer: this.writer,
      now,
      secret: serverSecret,
      policy: () => this.house.policy().policy,
      payloadHash: (action, args) => this.trail.payloadHash(action, args),
      proposeAdminChange: (by, action, args, description, assessment, entries) => this.house.requests.proposeAdminChange(by, action, args, description, assessment, entries),
      adminSigners: (q, proposerId) => adminSigners(this.credentials, q, proposerId),
    });
    this.decisions = new Decisions(
      this.guard,
      () => this.house.policy().policy,
      false,
      (tx, agentId, agentName) => this.agentConfigs.policyFor(tx, agentId, agentName),
      (q, row) => this.agentConfigs.signersOf(q, row),
    );
    this.guard.usePolicy(() => this.house.policies.current?.policy);
    this.guard.useOperators((ref) => this.credentials.operatorPrincipal(ref));
    // An admin replacing another's token (or `admin recover`) revokes the passkeys enrolled while the old token was live (guard/webauthn.ts).
    this.credentials.usePasskeyReset((tx, actor, operatorId, name, since, reason, at) => this.guard.webauthn.revokeEnrolledSince(tx, actor, operatorId, name, since, reason, at));
    this.guard.onNoticesQueued(() => {
      this.commits.timersNow();
    });
    this.screening = new ScreeningDesk({
      store,
      writer: this.writer,
      now,
      policy: () => this.house.policy().policy,
      getRequest: (by, id) => this.getRequest(by, id),
      readRequest: async (id) => {
        const row = await this.store.getRequest(id);
        return row ? this.house.views.toPublic(row) : undefined;
      },
      secret: serverSecret,
      activeOperators: () => this.credentials.activeOperators(),
    });
    this.screenModels = new ScreenModels({
      store,
      writer: this.writer,
      now,
      policy: () => this.house.policy().policy,
      secret: serverSecret,
      examples: () => this.screening.retrainExamples(),
      baseVersion: COMMITTED_MODEL_VERSION,
    });
    this.executions = new ExecutionDesk({
      store,
      trail: this.trail,
      writer: this.writer,
      now,
      policy: () => this.house.policy().policy,
      agentDisabled: async (q, agentId) => {
        const name = await this.house.views.agentName(agentId, q);
        return !agentEnabled(await this.agentConfigs.policyFor(q, agentId, name), name);
      },
      wakeChannel: WAKE_CHANNEL,
      committed: async (row, previousStatus) => {
        this.commits.afterCommit(row.id);
        this.commits.emitChange({ previousStatus, row });
        return this.house.views.toPublic(row);
      },
    });
    const house = {
      store,
      now,
      policy: () => house.policies.policy,
      trail: this.trail,
      writer: this.writer,
      guard: this.guard,
      credentials: this.credentials,
      decisions: this.decisions,
      agentConfigs: this.agentConfigs,
      screening: this.screening,
      screenModels: this.screenModels,
      screener,
      wakeups: this.wakeups,
      commits: this.commits,
      precheckCaller: prechecks,
    } as House;
    house.policies = new Policies(house);
    house.identity = new Identity(house);
    house.requests = new Requests(house);
    house.reviews = new Reviews(house);
    house.escalation = new Escalation(house);
    house.aggregates = new Aggregates(house);
    house.deliveries = new Deliveries(house);
    house.views = new Views(house);
    house.prechecks = new Prechecks(house);
    this.house = house;
    this.timers = new TimerRegistry(house);
  }

  /**
   * Opens the store (migrating it) and starts listening for cross-process wake-ups. Without
   * `auditKey`, checkpoints and receipts are signed with a key that lives in this process only.
   */
  static async open(options: {
    /** The database; or `store`, a store the composition root opened (openStore) and keeps for its own wiring. */
    connection?: Connection | undefined;
    store?: Store | undefined;
    now?: () => number;
    auditKey?: AuditKey | undefined;
    guard?: GuardOptions | undefined;
    /** The server secret file (keys/server-secret.ts); without it, one that lives in this process only. */
    serverSecret?: ServerSecret | undefined;
    screener?: Screener | undefined;
    /** The governance pre-check caller (runtime.ts builds it with the server's environment); without it, one with an empty environment. */
    prechecks?: PrecheckCaller | undefined;
    /** Errors of the store's background work (audit integration rounds, retried): the runtime logs them. */
    onStoreError?: ((err: unknown) => void) | undefined;
  }): Promise<Engine> {
    // Resolved by the runtime from the config (COUNTERSIGN_ENCRYPTION_KEY…); never read from the environment here.
    const guard = options.guard ?? {};
    let store = options.store;
    if (!store) {
      if (!options.connection) throw new CountersignError('INTERNAL', 'Engine.open needs a connection or a store');
      store = openStore({ connection: options.connection, guard, onStoreError: options.onStoreError });
    }
    const engine = new Engine(store, options.now ?? Date.now, options.auditKey ?? ephemeralAuditKey(), guard, options.serverSecret, options.screener, options.prechecks);
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

  async close(): Promise<void> {
    await this.unlisten?.();
    await this.external?.stop();
    await this.store.close();
  }

  get policy(): ActivePolicy {
    return this.house.policies.policy;
  }

  // ---- policy (engine/policies.ts) ----

  /** Validates and activates a policy; an invalid one is refused whole and the last good policy stays active. */
  activatePolicy(text: string, source: string): Promise<ActivePolicy> {
    return this.house.policies.activatePolicy(text, source);
  }

  /** Validates a policy text as activating it would, without activating it. */
  checkPolicy(text: string, source: string): Policy {
    return this.house.policies.checkPolicy(text, source);
  }

  /** Extra validation every policy must pass before it is activated (the channel settings). */
  addPolicyCheck(check: (policy: Policy) => PolicyError[]): void {
    this.house.policies.addPolicyCheck(check);
  }

  // ---- identity (engine/identity.ts, over engine/credentials.ts) ----

  /** Resolves a bearer credential (cached for `CREDENTIAL_CACHE_MS`; a change made here clears the cache). */
  authenticate(token: string): Promise<Principal | undefined> {
    return this.house.identity.authenticate(token);
  }

  /** As `authenticate`, from the credential's SHA-256. */
  async authenticateHash(hash: string): Promise<Principal | undefined> {
    return this.credentials.authenticateHash(hash);
  }

  /** First start: an `admin` operator and a `demo-agent` key, once per database (engine/identity.ts). */
  bootstrap(given: { adminToken?: string | undefined; agentKey?: string | undefined } = {}) {
    return this.house.identity.bootstrap(given);
  }

  /** The embedded gateway's admin (engine/credentials.ts `embeddedAdmin`). */
  async embeddedAdmin(): Promise<Extract<Principal, { kind: 'operator' }>> {
    return this.credentials.embeddedAdmin();
  }

  createOperator(by: Principal, input: { name: string; roles: Role[]; groups?: string[] | undefined }) {
    return this.house.identity.createOperator(by, input);
  }

  createAgentKey(by: Principal, agentName: string) {
    return this.house.identity.createAgentKey(by, agentName);
  }

  async listOperators(by: Principal) {
    return this.credentials.listOperators(by);
  }

  // ---- requests (engine/requests.ts) ----

  /** Proposes an action; idempotent per agent on `idempotencyKey`. */
  createRequest(by: Principal, body: CreateRequest, slicing?: SlicingReview): Promise<{ request: ApprovalRequest; replayed: boolean }> {
    return this.house.requests.createRequest(by, body, slicing);
  }

  /** `POST /v1/screen`: one text screened under the active policy; nothing stored or audited. */
  screenText(by: Principal, request: ScreenRequest): Promise<ScreenResult> {
    return this.house.requests.screenText(by, request);
  }

  // ---- views (engine/views.ts) ----

  getRequest(by: Principal, id: string, from: ReaderFrom = {}): Promise<ApprovalRequest> {
    return this.house.views.getRequest(by, id, from);
  }

  waitForDecision(by: Principal, id: string, waitMs: number, signal?: AbortSignal): Promise<ApprovalRequest> {
    return this.house.views.waitForDecision(by, id, waitMs, signal);
  }

  listRequests(by: Principal, options: ListOptions = {}, from: ReaderFrom = {}) {
    return this.house.views.listRequests(by, options, from);
  }

  countRequests(by: Principal, options: ListOptions = {}) {
    return this.house.views.countRequests(by, options);
  }

  myDashboard(by: Principal, options: MyDashboardOptions = {}, from: ReaderFrom = {}) {
    return this.house.views.myDashboard(by, options, from);
  }

  /** A request as the API shows it, read for background work (notifications) that acts for no caller. */
  requestById(id: string): Promise<ApprovalRequest | undefined> {
    return this.house.views.requestById(id);
  }

  /** How long the oldest entry still waiting for integration has waited, or null when none is pending. */
  auditIntegrationLag(): Promise<{ ms: number; since: number } | null> {
    return this.house.views.auditIntegrationLag();
  }

  auditForRequest(by: Principal, id: string): Promise<AuditEntry[]> {
    return this.house.views.auditForRequest(by, id);
  }

  listAudit(by: Principal, options: { afterSeq?: number; limit?: number; type?: string }) {
    return this.house.views.listAudit(by, options);
  }

  // ---- reviews (engine/reviews.ts; the gate is engine/decisions.ts) ----

  /** A reviewer's vote, judged by the gate in the change's transaction. */
  review(by: Principal, id: string, body: ReviewBody, from: { ip?: string | null | undefined } = {}): Promise<ApprovalRequest> {
    return this.house.reviews.review(by, id, body, from);
  }

  cancel(by: Principal, id: string, body: CancelBody = {}): Promise<ApprovalRequest> {
    return this.house.reviews.cancel(by, id, body);
  }

  /** Post-hoc feedback on a request the policy approved on its own. */
  recordFeedback(by: Principal, id: string, body: { verdict: 'should_have_asked' | 'ok'; note?: string | undefined }): Promise<AuditEntry> {
    return this.house.reviews.recordFeedback(by, id, body);
  }

  /** `{status: started, receipt}` claims the approval once; `{status: succeeded | failed}` closes it (engine/execution.ts). */
  async reportExecution(by: Principal, id: string, body: ExecutionBody): Promise<ApprovalRequest> {
    return body.status === 'started' ? this.executions.claim(by, id, body.receipt) : this.executions.report(by, id, body);
  }

  /** Hears every committed request change made by this process (metrics). Observers must be cheap. */
  observe(observer: (change: RequestChange) => void): () => void {
    return this.commits.observe(observer);
  }

  // ---- escalation, timers and deliveries (the scheduler calls these; see scheduler/) ----

  /** Told (after commit) when this process wrote timers that are due now: deliveries to send. */
  onTimersDue(listener: () => void): () => void {
    return this.commits.onTimersDue(listener);
  }

  /** One round of the scheduler's lapse sweep (engine/execution.ts `sweepLapsed`): how many approvals became `lapsed`. */
  sweepLapsedApprovals(limit: number): Promise<number> {
    return this.executions.sweepLapsed(limit);
  }

  /** The engine's clock, for the scheduler's claims. */
  clock(): number {
    return this.now();
  }

  /** Fires one timer the scheduler claimed, through the timer registry (engine/timer-registry.ts). */
  fireTimer(timer: TimerRow): Promise<TimerOutcome> {
    return this.timers.fire(timer);
  }

  /** A reviewer grants more time at the current level (engine/escalation.ts). */
  extendDeadline(by: Principal, id: string, body: { seconds: number; reason: string }): Promise<ApprovalRequest> {
    return this.house.escalation.extendDeadline(by, id, body);
  }

  /** Hands a pending request to another operator or a group (engine/escalation.ts). */
  reassign(by: Principal, id: string, body: { operator?: string | undefined; group?: string | undefined; reason: string }): Promise<ApprovalRequest> {
    return this.house.escalation.reassign(by, id, body);
  }

  /** A reviewer escalates a pending request now (engine/escalation.ts). */
  escalate(by: Principal, id: string, body: { reason: string; fromLevel?: number | undefined }): Promise<ApprovalRequest> {
    return this.house.escalation.escalate(by, id, body);
  }

  /** Told after each committed escalation in this process, with its cause (metrics). */
  onEscalated(listener: (reason: EscalationCause) => void): () => void {
    return this.house.escalation.onEscalated(listener);
  }

  /** Records one delivery attempt made by the scheduler (engine/deliveries.ts). */
  recordDelivery(
    id: string,
    result: { ok: true; ms: number; response?: unknown } | { ok: false; ms: number; error: string; retryInMs: number | null },
  ): Promise<DeliveryRow | undefined> {
    return this.house.deliveries.recordDelivery(id, result);
  }

  listDeliveries(by: Principal, options: { status?: string | undefined; requestId?: string | undefined; channel?: string | undefined; limit?: number | undefined; cursor?: string | undefined } = {}) {
    return this.house.deliveries.listDeliveries(by, options);
  }

  /** Records a one-time value until `ttlMs` from now; false when it was seen before (a replay). */
  claimNonce(scope: string, value: string, ttlMs: number): Promise<boolean> {
    return this.house.deliveries.claimNonce(scope, value, ttlMs);
  }

  // ---- reads for the shell (engine/views.ts): health, metrics, reports, the embedded gateway, recover ----

  get databaseDialect(): string {
    return this.house.views.databaseDialect;
  }
  ping(): Promise<void> {
    return this.house.views.ping();
  }
  pendingCountsByRisk(): Promise<Record<string, number>> {
    return this.house.views.pendingCountsByRisk();
  }
  settleAudit(): Promise<boolean> {
    return this.house.views.settleAudit();
  }
  historySummary(from: number, to: number, bucket: MetricBucket, now: number): Promise<SummaryAggregates> {
    return this.house.views.historySummary(from, to, bucket, now);
  }
  complianceReport(by: Principal, input: Parameters<Views['complianceReport']>[1], now: number, integrity: Parameters<Views['complianceReport']>[3]) {
    return this.house.views.complianceReport(by, input, now, integrity);
  }
  operatorMetrics(by: Principal, ref: string, period: string, now: number) {
    return this.house.views.operatorMetrics(by, ref, period, now);
  }
  agentByName(name: string): Promise<{ id: string; name: string } | undefined> {
    return this.house.views.agentByName(name);
  }
  operatorExists(name: string): Promise<boolean> {
    return this.house.views.operatorExists(name);
  }
  countCredentials(): Promise<number> {
    return this.house.views.countCredentials();
  }
  deliveryById(id: string): Promise<DeliveryRow | undefined> {
    return this.house.views.deliveryById(id);
  }
  /** Deliveries as stored, newest first (engine/views.ts). */
  storedDeliveries(filter: DeliveryFilter): Promise<DeliveryRow[]> {
    return this.house.views.storedDeliveries(filter);
  }

  /** Each SIEM destination's cursor, lag, lease and last error (forwarding/status.ts), labelled under the audit key. */
  forwardingStatus(destinations: readonly ForwardDestination[], now: number): ReturnType<typeof forwardingStatus> {
    return forwardingStatus(this.house.store, destinations, now, forwardLabelKey(this.trail.key));
  }

  /** Claims due timers for the scheduler (a lease per claim; engine/timer-registry.ts). */
  claimDueTimers(now: number, limit: number, owner: string, leaseMs: number, kinds?: readonly TimerKind[]): Promise<TimerRow[]> {
    return this.timers.claimDue(now, limit, owner, leaseMs, kinds);
  }
}

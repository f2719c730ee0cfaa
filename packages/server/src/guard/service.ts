/**
 * Protecting reviewers, as a collaborator of the engine (which composes it, as it does the
 * audit trail): step-up TOTP and number matching on approvals, approver velocity limits and
 * cool-downs, per-agent request limits, agent pauses and slicing reports. The decisions are
 * core's pure functions (`approverVelocity`, `cooldownState`, `checkRate`, `detectSlicing`);
 * this file reads the history they judge and writes the few rows they need, always with an
 * audit entry in the same transaction.
 */
import {
  CountersignError,
  DEFAULT_APPROVER_LIMITS,
  DEFAULT_COOLDOWN,
  DEFAULT_SLICING_CONFIG,
  ROLE_RANK,
  ROLES,
  approverVelocity,
  checkRate,
  cooldownState,
  detectOnCreate,
  flatten,
  payloadFingerprint,
  payloadKeys,
  slicingReview,
  detectSlicing,
  freshAlerts,
  HISTORY_DETECTORS,
  normalizeActionName,
  ON_CREATE_RECENT,
  type JsonObject,
  type WebAuthnAssertion,
  type SlicingSeen,
  highestRank,
  valueAlertsFromSlices,
  type ValueSlice,
  type ApprovalRecord,
  type ApproverLimits,
  type CooldownConfig,
  type GateRecord,
  type GuardEvent,
  type GuardFacts,
  type IpFact,
  type SlicingAlert,
  type StepUpFact,
  type ValueBucket,
  mergeBucket,
  runningTotal,
  valueThresholds,
  type GuardNoticeData,
  type Policy,
  type RiskLevel,
  type Role,
} from '@countersign/core';
import { newId, sha256Hex } from '../ids.ts';
import type { Principal } from '../engine/principal.ts';
import type { Queries, Store } from '../store/store.ts';
import { AuditWriter, SYSTEM_ACTOR, actorOf, draft as audit, type AuditDraft } from '../audit/writer.ts';
import type { AgentPausesTable } from '../store/guard.ts';
import { TimerSkip, deliveryRows, type TimerRow } from '../store/timers.ts';
import { ipAllowed, parseCidr } from './ip.ts';
import { SecretBox, matchCodeFor, newTotpSecret, seedSealer, totpUri, verifyTotp } from './totp.ts';
import { StepUpLockout } from './lockout.ts';
import { ephemeralServerSecret, type ServerSecret } from '../keys/server-secret.ts';
import { WebAuthnGuard } from './webauthn.ts';

const MINUTE = 60_000;
/** The running-total slicing window and its bucket width (core `runningTotal`). */
const SLICING_WINDOW_MS = 60 * MINUTE;
const SLICING_BUCKET_MS = MINUTE;
const HOLD_CACHE_MS = 1_000;
const DAY = 24 * 60 * MINUTE;

type Operator = Extract<Principal, { kind: 'operator' }>;
export { guardOptionsFromEnv, type GuardOptions } from '../config.ts';
import type { GuardOptions } from '../config.ts';
import { agentRef, operatorRef } from '../engine/refs.ts';

/** What a review carries that the guard checks (the engine passes the review body). */
export interface StepUp {
  verdict: 'approve' | 'reject';
  totp?: string | undefined;
  matchCode?: string | undefined;
  /** Where the review came from (HTTP); null when unknown (Slack, embedded), which an allowlist refuses. */
  ip?: string | null | undefined;
}

/** Codes of refusals that leave an audit entry even though nothing changed (SELF_REVIEW: compliance reports count the attempts). */
const aggregateIdOf = (details: unknown) => {
  const id = (details as { aggregateId?: unknown } | undefined)?.aggregateId;
  return typeof id === 'string' ? { aggregateId: id } : {};
};

const AUDITED_REFUSALS = new Set(['AGGREGATED', 'SELF_REVIEW', 'IP_NOT_ALLOWED', 'MFA_REQUIRED', 'MFA_INVALID', 'MATCH_CODE_INVALID', 'VELOCITY_LIMITED', 'COOLDOWN_ACTIVE', 'AGENT_PAUSED', 'RATE_LIMITED', 'AGENT_DISABLED']);

export class GuardService {
  private readonly box: SecretBox;
  /** Step-up attempt limits (guard/lockout.ts): reserved before a code is evaluated, settled after. */
  readonly lockout: StepUpLockout;
  /** WebAuthn step-up (guard/webauthn.ts): credentials, challenges bound to one approval, assertions. */
  readonly webauthn: WebAuthnGuard;
  /** Set only by COUNTERSIGN_REVIEWER_LIMITS=off (or a test): overrides the policy's `guard:` thresholds. */
  private readonly fixedLimits: ApproverLimits | undefined;
  private readonly fixedCooldown: CooldownConfig | undefined;
  /** The active policy (the engine wires it); its `guard:` section sets the thresholds. */
  private activePolicy: () => Policy | undefined = () => undefined;
  private matchSecret: string | undefined;
  /** Rate-limit refusals are audited once per agent per minute, so a flooding agent cannot flood the trail. */
  private readonly lastRateAudit = new Map<string, number>();
  /** When this process last ran the full report after an agent's create (a cost bound only: what is new is decided in the store, `slicing_seen:<agentId>`). */
  private readonly lastSlicingCheck = new Map<string, number>();
  /**
   * Review holds read by every create, remembered for a second: a read outside the create's
   * transaction would wait for the group commit in flight and stall the pipeline. A hold set by
   * this process clears its entry at once; one set by another process is seen within a second.
   */
  private readonly holdCache = new Map<string, { raw: string | undefined; pause: { until: number; reason: string } | null; until: number }>();

  constructor(
    private readonly store: Store,
    private readonly now: () => number,
    options: GuardOptions = {},
    /** The engine's audit writer: every guard entry, refusals included, is redacted and attributed there. */
    private readonly writer: AuditWriter = new AuditWriter((data) => data),
    /** The server secret file: its seed key seals TOTP seeds when no encryption key is set. */
    serverSecret?: ServerSecret,
  ) {
    this.box = new SecretBox(store.sealer, serverSecret ? seedSealer(serverSecret) : null);
    this.lockout = new StepUpLockout(store, now, this.writer, (tx, data) => this.queueNotice(tx, data), () => this.noticesQueued());
    this.fixedLimits = options.approverLimits;
    this.fixedCooldown = options.cooldown;
    // Without the secret file (tools), an in-memory secret: no stored credential verifies (fail closed).
    this.webauthn = new WebAuthnGuard(store, now, this.writer, serverSecret ?? ephemeralServerSecret(), this.lockout, {
      enrolled: async (q, operatorId) => (await q.guard.totpFor(operatorId))?.confirmed_at != null,
      check: async (q, by, code, at) => {
        const { fact, step } = await this.totpFact(q, by, code, at);
        return { fact, step };
      },
      use: (q, operatorId, step) => q.guard.useTotpStep(operatorId, step),
    });
  }

  /** Resolves an operator named in a manual action; fails closed until the engine says how (engine/credentials.ts). */
  private activeOperator: (ref: string) => Promise<Operator | undefined> = async () => undefined;

  /** The engine tells the guard how to resolve an operator with the same checks as a login (MAC, disabled, removed). */
  useOperators(resolve: (ref: string) => Promise<Operator | undefined>): void {
    this.activeOperator = resolve;
  }

  /** The engine tells the guard where the active policy is. */
  usePolicy(active: () => Policy | undefined): void {
    this.activePolicy = active;
  }

  /** Told after a commit that queued guard notices (the engine wakes its scheduler). */
  private noticesQueued: () => void = () => {};
  onNoticesQueued(listener: () => void): void {
    this.noticesQueued = listener;
  }

  /**
   * Queues a guard notice to each channel in the active policy's `guard.notify`, in the caller's
   * transaction (a delivery row and its `deliver` timer, as request notifications): the
   * scheduler sends it with retries. Returns whether anything was queued (call `noticesQueued`
   * after the commit).
   */
  private async queueNotice(tx: Queries, data: GuardNoticeData): Promise<boolean> {
    const channels = this.activePolicy()?.guard.notify ?? [];
    if (channels.length === 0) return false;
    const rows = channels.map((channel) => deliveryRows(newId('dlv', data.at), null, channel, `guard.${data.kind}`, data, data.at));
    await tx.timers.insertDeliveries(rows.map((r) => r.delivery));
    await tx.timers.insertTimers(rows.map((r) => r.timer));
    return true;
  }

  /**
   * A cool-down starts (automatic or set by a lead): in its transaction, a `cooldown` timer due at
   * once, so the scheduler escalates the pending requests it leaves with nobody free to approve
   * (engine/escalation.ts `fireCooldown`). Durable like every timer: a crash before the commit
   * leaves no cool-down and no timer; after it, the timer fires (late, after a restart). Its id
   * is the cool-down's key, so the same cool-down never queues two.
   */
  private async queueCooldownSweep(tx: Queries, c: { id: string; operatorId: string; operator: string; until: string; at: number; setBy: string | null }): Promise<void> {
    const key = `cooldown:${c.id}`;
    const payload = JSON.stringify({ key, operatorId: c.operatorId, operator: c.operator, until: c.until, setBy: c.setBy });
    await tx.timers.insertTimers([{ id: key, kind: 'cooldown', request_id: null, due_at: c.at, payload, claimed_by: null, claimed_until: null, created_at: c.at }]);
  }

  /**
   * Each operator's cool-down facts at `at` (their approvals of the last day and a manual
   * cool-down running), for the cool-down escalation: judged per request by core `cooldownState`
   * under the thresholds of the policy that judges it (`limitsFor`).
   */
  async coolingFacts(q: Queries, operatorIds: readonly string[], at: number): Promise<Map<string, Pick<GuardFacts, 'approvals' | 'manualCooldown'>>> {
    const out = new Map<string, Pick<GuardFacts, 'approvals' | 'manualCooldown'>>();
    for (const id of operatorIds) out.set(id, { approvals: await this.approvals(q, id, at), manualCooldown: await this.manualCooldown(q, id, at) });
    return out;
  }

  /** The thresholds in force now (for facts of votes that are not approvals). */
  get velocityLimits(): ApproverLimits {
    return this.limits;
  }
  get cooldownLimits(): CooldownConfig {
    return this.cooldownConfig;
  }

  /** Velocity limits: the environment's override, else the active policy's `guard.velocity`, else core's defaults. */
  private get limits(): ApproverLimits {
    return this.fixedLimits ?? this.activePolicy()?.guard.velocity ?? DEFAULT_APPROVER_LIMITS;
  }

  /** Cool-down thresholds: the environment's override, else the active policy's `guard.cooldown`, else core's defaults. */
  private get cooldownConfig(): CooldownConfig {
    return this.fixedCooldown ?? this.activePolicy()?.guard.cooldown ?? DEFAULT_COOLDOWN;
  }

  // ---- TOTP enrolment ----

  /**
   * Once, at the start of the secret-file era (engine/credentials.ts `beginSecretEra`): seeds
   * stored `plain:` or sealed unbound by earlier versions are sealed bound to their operator
   * (each swapped only if unchanged), audited. Afterwards such seeds are refused (`openFor`), so
   * a database writer who plants one later gains nothing.
   */
  async sealPlainSeeds(): Promise<number> {
    if (!this.box.encrypts) return 0;
    const rows = await this.store.guard.allTotpSecrets();
    return this.store.transaction(async (tx) => {
      let count = 0;
      for (const row of rows) {
        let seed: string | null;
        try {
          seed = this.box.openLegacy(row.secret);
        } catch {
          continue; // unreadable: stays refused, the operator re-enrols
        }
        if (seed === null) continue;
        if (await tx.guard.replaceTotpSecret(row.operator_id, row.secret, this.box.sealFor(seed, row.operator_id))) count++;
      }
      if (count > 0) await this.writer.append(tx, [audit('totp_sealed', null, SYSTEM, { count, keyId: this.box.keyId }, this.now())]);
      return count;
    });
  }

  /**
   * Starts (or restarts, while unconfirmed) an enrolment and returns the secret once. An
   * operator who already confirmed one must keep it: replacing a second factor is an admin's
   * job, not something a stolen token may do.
   */
  async enrolTotp(by: Principal) {
    const op = requireOperator(by);
    const at = this.now();
    const secret = newTotpSecret();
    await this.store.transaction(async (tx) => {
      const existing = await tx.guard.totpFor(op.operatorId);
      if (existing?.confirmed_at != null) {
        throw new CountersignError('ILLEGAL_TRANSITION', 'TOTP is already enrolled and confirmed for this operator');
      }
      await tx.guard.putPendingTotp({ operator_id: op.operatorId, secret: this.box.sealFor(secret, op.operatorId), confirmed_at: null, last_step: null, created_at: at });
      await this.writer.append(tx, [audit('totp_enrolment_started', null, actorOf(op), { operatorId: op.operatorId, encrypted: this.box.encrypts }, at)]);
    });
    return {
      secret,
      otpauthUri: totpUri(secret, op.name),
      encryptedAtRest: this.box.encrypts,
      confirmWith: 'POST /v1/operators/me/totp/confirm {"code": "123456"}',
    };
  }

  /**
   * Confirms the enrolment with a first valid code. Beside an active passkey it also needs an
   * assertion from one (`webauthn`, over `POST /v1/operators/me/totp/challenge`): a stolen token
   * must not add a TOTP and then approve where a level accepts it (`mfa: true`).
   */
  async confirmTotp(by: Principal, code: string, proof: { webauthn?: WebAuthnAssertion | undefined } = {}) {
    const op = requireOperator(by);
    return this.webauthn.underLockout(op, proof, () =>
      this.store.transaction(async (tx) => {
        const at = this.now();
        const row = await tx.guard.totpFor(op.operatorId);
        if (!row) throw new CountersignError('MFA_REQUIRED', 'no TOTP enrolment to confirm; start one with POST /v1/operators/me/totp');
        if (row.confirmed_at != null) throw new CountersignError('ILLEGAL_TRANSITION', 'TOTP is already confirmed');
        const step = verifyTotp(this.box.openFor(row.secret, op.operatorId), code, at);
        if (step === null) throw new CountersignError('MFA_INVALID', 'that code is not valid now; check the authenticator clock and try the current code');
        const authorised = await this.webauthn.authoriseTotp(tx, op, proof, at);
        await tx.guard.confirmTotp(op.operatorId, at, step);
        await this.writer.append(tx, [audit('totp_enrolled', null, actorOf(op), { operatorId: op.operatorId, authorisedBy: authorised.by }, at)]);
        return { enrolled: true as const, confirmedAt: new Date(at).toISOString() };
      }),
    );
  }

  async totpStatus(by: Principal) {
    const op = requireOperator(by);
    const row = await this.store.guard.totpFor(op.operatorId);
    return { enrolled: row?.confirmed_at != null, pending: row != null && row.confirmed_at == null };
  }

  // ---- number matching ----

  /** `q`: inside a transaction, its handle (on SQLite a read outside it would wait for it to commit, for ever). */
  async matchCode(requestId: string, q: Queries = this.store): Promise<string> {
    this.matchSecret ??= await q.guard.setting('match_secret');
    if (!this.matchSecret) throw new CountersignError('STORE_UNAVAILABLE', 'the number-matching secret is missing; run the migrations');
    return matchCodeFor(this.matchSecret, requestId);
  }

  // ---- the review path: facts for the gate (core gate/), gathered in the engine's transaction ----

  /**
   * The reviewer's limit facts for the gate, read under their lock: on PostgreSQL a
   * transaction-scoped advisory lock per approver, so two approvals by one reviewer take turns
   * from this read to their commit and the velocity and cool-down counts cannot race (finding 5);
   * other reviewers never wait. The counts are the approver's `approval_events` of the last day.
   */
  async limitFacts(tx: Queries, operatorId: string, at: number, lock: boolean, policy?: Policy): Promise<Pick<GuardFacts, 'approvals' | 'manualCooldown' | 'velocity' | 'cooldown'>> {
    if (lock) await tx.counters.lock(`approver:${operatorId}`);
    return {
      approvals: await this.approvals(tx, operatorId, at),
      manualCooldown: await this.manualCooldown(tx, operatorId, at),
      // `policy`: the request's agent's (agents.<name>.velocity / cooldown over guard's); the environment's override still wins.
      ...(policy ? this.limitsFor(policy) : { velocity: this.limits, cooldown: this.cooldownConfig }),
    };
  }

  /** The approver velocity and cool-down that apply to one agent's requests (its policy: file + overlay); the environment's override still wins. */
  limitsFor(policy: Policy): Pick<GuardFacts, 'velocity' | 'cooldown'> {
    return { velocity: this.fixedLimits ?? policy.guard.velocity, cooldown: this.fixedCooldown ?? policy.guard.cooldown };
  }

  /** Every allowlist that applies must pass (the operator's own and one per role held); an unknown address passes none. */
  async ipFact(tx: Queries, by: Operator, ip: string | null | undefined): Promise<IpFact> {
    const refusedBy = (await tx.guard.allowlistsFor(by.operatorId, by.roles)).filter((list) => !(ip && ipAllowed(ip, list.cidrs)));
    if (refusedBy.length === 0) return { allowed: true };
    return {
      allowed: false,
      ip: ip ?? null,
      refusedBy: refusedBy.map((list) => (list.kind === 'operator' ? { operator: by.name } : { role: list.role as Role })),
      lists: refusedBy.map((list) => `${list.kind === 'operator' ? `operator ${by.name}` : `role ${list.role}`} (${list.cidrs.join(', ')})`),
    };
  }

  /**
   * What the vote's codes are worth, without using anything up: the TOTP code checked against the
   * operator's secret (newer than their last used step), the match code against the request's.
   * The gate decides whether they are needed; `recordApproval` marks the step used.
   */
  async stepUpFacts(tx: Queries, by: Operator, requestId: string, codes: { totp?: string | undefined; matchCode?: string | undefined }, at: number): Promise<{ totp: StepUpFact; step: number | null; matchCode: 'absent' | 'valid' | 'invalid' }> {
    const { fact: totp, step } = codes.totp !== undefined ? await this.totpFact(tx, by, codes.totp, at) : { fact: 'absent' as StepUpFact, step: null };
    const matchCode = codes.matchCode === undefined ? 'absent' : codes.matchCode === (await this.matchCode(requestId, tx)) ? 'valid' : 'invalid';
    return { totp, step, matchCode };
  }

  /** One TOTP code judged against the operator's seed (newer than their last used step), without using it up. */
  async totpFact(tx: Queries, by: Operator, code: string, at: number): Promise<{ fact: StepUpFact; step: number | null }> {
    const enrolment = await tx.guard.totpFor(by.operatorId);
    if (!enrolment || enrolment.confirmed_at == null) return { fact: 'not_enrolled', step: null };
    let secret: string;
    try {
      secret = this.box.openFor(enrolment.secret, by.operatorId);
    } catch {
      return { fact: 'not_enrolled', step: null }; // an unreadable (or another operator's) seed never verifies (fail closed)
    }
    const step = verifyTotp(secret, code, at, enrolment.last_step);
    return { fact: step !== null ? 'valid' : verifyTotp(secret, code, at) !== null ? 'replayed' : 'invalid', step };
  }

  /**
   * An accepted vote's counters, in its transaction (the approver's lock is still held): the TOTP
   * step is marked used (conditionally: a code that lost a race to another review is MFA_INVALID
   * and the whole vote rolls back), the approval is counted at the payload's risk level, and a
   * cool-down it starts is audited and told. Nothing is recorded for a refused vote.
   */
  async recordApproval(tx: Queries, by: Operator, requestId: string, record: GateRecord, step: number | null, at: number): Promise<AuditDraft[]> {
    if (record.totpStep && (step === null || !(await tx.guard.useTotpStep(by.operatorId, step)))) {
      throw new CountersignError('MFA_INVALID', 'that TOTP code was already used; wait for the next one');
    }
    if (record.approval) {
      await tx.counters.insertApproval({ id: newId('apv', at), operator_id: by.operatorId, request_id: requestId, risk_level: record.approval.riskLevel, at });
    }
    const entries: AuditDraft[] = [];
    // Which factor the step-up was (WebAuthn's entry is written by guard/webauthn.ts recordUse).
    if (record.factor === 'totp') entries.push(audit('step_up', requestId, actorOf(by), { operatorId: by.operatorId, factor: 'totp' }, at));
    const after = record.cooldownStarted;
    if (after) {
      entries.push(audit('cooldown_started', requestId, SYSTEM, { operatorId: by.operatorId, operator: by.name, until: after.until, reason: after.reason, triggeredBy: after.triggeredBy }, at));
      await this.queueNotice(tx, { kind: 'cooldown_started', at, operator: by.name, by: SYSTEM.name, until: after.until ?? '', reason: after.reason ?? '' });
      await this.queueCooldownSweep(tx, { id: `auto:${by.operatorId}:${at}`, operatorId: by.operatorId, operator: by.name, until: after.until ?? '', at, setBy: null });
    }
    return entries;
  }

  /** After a refused approval, create or deadline move (extend, reassign, escalate) rolled back: the refusal itself goes on the trail. */
  async auditRefusal(err: unknown, by: Principal, requestId: string | null, what: 'review' | 'create' | 'extend' | 'reassign' | 'escalate'): Promise<void> {
    if (!(err instanceof CountersignError) || !AUDITED_REFUSALS.has(err.code)) return;
    const details = err.details as { factor?: unknown; reason?: unknown; credentialId?: unknown } | undefined;
    if (by.kind === 'operator' && requestId !== null && details?.factor === 'webauthn' && details.reason === 'counter' && typeof details.credentialId === 'string') {
      await this.webauthn.auditClone(by, requestId, details.credentialId, err.message);
    }
    const at = this.now();
    if ((err.code === 'RATE_LIMITED' || err.code === 'AGENT_DISABLED') && by.kind === 'agent') {
      // At most once a minute per agent and code: a flooding (or disabled) agent cannot flood the trail.
      const key = `${err.code}:${by.agentId}`;
      const last = this.lastRateAudit.get(key);
      if (last !== undefined && at - last < MINUTE) return;
      if (this.lastRateAudit.size > 10_000) this.lastRateAudit.clear();
      this.lastRateAudit.set(key, at);
    }
    try {
      const entry =
        what === 'review' || what === 'create'
          ? audit(what === 'review' ? 'review_refused' : 'create_refused', requestId, actorOf(by), { code: err.code, message: err.message }, at)
          : // Managing the deadline (engine/escalation.ts): which move, and the aggregate that decides the request instead.
            audit('escalation_refused', requestId, actorOf(by), { code: err.code, message: err.message, what, ...aggregateIdOf(err.details) }, at);
      await this.store.transaction((tx) => this.writer.append(tx, [entry]));
    } catch {
      // The caller is already being refused; a failed audit of the refusal must not mask that.
    }
  }

  // ---- the create path ----

  /**
   * Before a create calls any validator (pre-checks, engine/requests.ts): the agent's own request
   * limit read without its lock, so an agent already over its limit cannot make Countersign call
   * validators. RATE_LIMITED as checkCreate's; checkCreate, under the lock, stays the authority.
   */
  async refuseCreateOverLimit(q: Queries, agent: { id: string; name: string }, policy: Policy, at: number): Promise<void> {
    const windows = createWindows(policy, agent.name);
    if (windows.length === 0) return;
    const state = await q.counters.createState(agent.id, at, windows.map((w) => at - w.ms));
    await refuseOverLimit(q, agent, windows, state.counts, at);
  }

  /**
   * In the create's transaction: a paused agent's request is refused, or, when policy says
   * `whilePaused: hold` and the request is going to review, kept (a `held` audit entry, returned
   * for the caller to append). Then, under the agent's lock (PostgreSQL: an advisory lock per
   * agent, so 30 concurrent creates cannot all read "4 so far"; finding 5), a request over the
   * agent's limits (`agents.<name>.limits`, else `guard.agentLimits`, 600 a minute by default) is
   * refused with RATE_LIMITED and `retryAfter`; otherwise the create is counted, with its value
   * slice for the running-total slicing detector (`runningTotal` against the policy's own value
   * thresholds, grouped by the action's normal form; finding 7), whose alert, if this create
   * crosses a threshold, is returned for `afterCreate`.
   */
  async checkCreate(
    tx: Queries,
    agent: { id: string; name: string },
    policy: Policy,
    at: number,
    toReview: boolean,
    request: { id: string; action: string; args: JsonObject; value: number | undefined; autoApproved: boolean },
  ): Promise<{ entries: AuditDraft[]; alerts: SlicingAlert[] }> {
    const entries: AuditDraft[] = [];
    await tx.counters.lock(`agent:${agent.id}`);
    const windows = createWindows(policy, agent.name);
    // One statement, after the lock: the pause and the window counts (store/counters.ts); the value minutes below.
    const state = await tx.counters.createState(agent.id, at, windows.map((w) => at - w.ms));
    const pause = state.pause;
    if (pause) {
      const until = new Date(Number(pause.until)).toISOString();
      if (whilePaused(policy, agent.name) !== 'hold' || !toReview) {
        const raced = whilePaused(policy, agent.name) === 'hold' ? ' (it was paused while this request was evaluated; send it again to have it held)' : '';
        throw new CountersignError('AGENT_PAUSED', `agent ${agent.name} is paused until ${until}: ${pause.reason}${raced}`, { until, reason: pause.reason });
      }
      entries.push(audit('held', null, SYSTEM, { agentId: agent.id, agent: agent.name, pausedUntil: until, reason: pause.reason }, at));
    }
    await refuseOverLimit(tx, agent, windows, state.counts, at);
    // The agent's minute totals (at most 61 rows, however busy it is), not every slice of the hour.
    const buckets = (await tx.counters.valueMinutes(agent.id, at - SLICING_WINDOW_MS - SLICING_BUCKET_MS)).map((b) => JSON.parse(b) as ValueBucket);
    const total = runningTotal({
      buckets,
      value: request.value,
      now: at,
      windowMs: SLICING_WINDOW_MS,
      bucketMs: SLICING_BUCKET_MS,
      thresholds: valueThresholds(policy, agent.name, request.action),
      requestId: request.id,
      agentId: agent.name,
      action: request.action,
    });
    const response = policy.agents[agent.name]?.onSlicing;
    // What the per-create detectors compare, for an agent they judge: a small fingerprint, whatever the payload's size.
    const fingerprint = response ? payloadFingerprint(request.args) : undefined;
    const keysKey = fingerprint ? sha256Hex(payloadKeys(flatten(fingerprint))) : null;
    await tx.counters.insertAgentEvent({
      id: newId('are', at),
      agent_id: agent.id,
      request_id: request.id,
      at,
      value_bucket: total.bucket ? JSON.stringify(total.bucket) : null,
      action_key: fingerprint ? normalizeActionName(request.action) : null,
      keys_key: keysKey,
      fingerprint: fingerprint ? this.store.sealer.seal(JSON.stringify(fingerprint)) : null,
    });
    if (total.bucket) {
      const minute = total.bucket.start;
      const current = buckets.filter((b) => b.start === minute);
      // A minute's first slice also drops the minutes no window reaches any more (once a minute an agent).
      if (current.length === 0) await tx.counters.pruneValueMinutes(agent.id, at - SLICING_WINDOW_MS - SLICING_BUCKET_MS);
      const merged = mergeBucket(current, total.bucket, minute)[0]!;
      await tx.counters.putValueMinute({ agent_id: agent.id, start: minute, bucket: JSON.stringify(merged) });
    }
    // Slicing is judged before this create's route is final: under onSlicing review, aggregate or
    // pause, the create that crosses a threshold or completes a burst is held itself (core
    // `slicingReview`), not only the ones after it. The engine evaluates it again with that review.
    if (!fingerprint || !keysKey) return { entries, alerts: [] };
    const alerts = [...(total.alert ? [total.alert] : []), ...(await this.onCreateAlerts(tx, agent, { ...request, args: fingerprint, keysKey, at }))];
    const review = request.autoApproved ? slicingReview(response, alerts, agent.name) : undefined;
    if (review) throw new SlicingReview(review);
    return { entries, alerts };
  }

  // ---- aggregate review (onSlicing: aggregate) ----

  /**
   * Parks pending requests of the agent in its open collection (opening one, with its `collect`
   * timer, if there is none), in the caller's transaction. A parked request's own escalation is
   * stopped: the aggregate review it joins has its own. Its approval waits for that review.
   */
  async park(
    tx: Queries,
    agentId: string,
    requestIds: readonly string[],
    hold: { alerts: readonly string[]; since: number },
    policy: Policy,
    at: number,
  ): Promise<{ id: string; closesAt: number }> {
    let open = await tx.aggregates.openCollection(agentId, true);
    if (!open) {
      const fresh = {
        id: newId('agc', at),
        agent_id: agentId,
        hold_since: hold.since,
        closes_at: at + policy.guard.slicing.collectSeconds * 1000,
        alerts: JSON.stringify(hold.alerts),
        closed_at: null,
        members: null,
        value: null,
        created_at: at,
      };
      await tx.aggregates.openCollectionIfNone(fresh); // another create may have opened one meanwhile: then join it
      open = await tx.aggregates.openCollection(agentId, true);
      if (!open) throw new CountersignError('STORE_UNAVAILABLE', `could not open an aggregate collection for agent ${agentId}`);
      if (open.id === fresh.id) await tx.timers.insertTimers([collectTimer(open.id, fresh.closes_at, at)]);
    }
    const collectionId = open.id;
    await tx.aggregates.park(requestIds.map((id) => ({ request_id: id, collection_id: collectionId, bundle_id: null, created_at: at })));
    for (const id of requestIds) await tx.timers.cancelRequestTimers(id, ['escalate']);
    return { id: open.id, closesAt: Number(open.closes_at) };
  }

  /** The aggregate review a request belongs to (a null id while it is being collected). */
  async aggregateOf(requestId: string, q: Queries = this.store): Promise<{ id: string | null; collectingUntil: string | null } | undefined> {
    const member = await q.aggregates.membership(requestId);
    if (!member) return undefined;
    if (member.bundle_id !== null) return { id: member.bundle_id, collectingUntil: null };
    const collection = await q.aggregates.collection(member.collection_id);
    if (collection && collection.closed_at !== null) return undefined; // closed without it (it was decided first): nothing waits
    return { id: null, collectingUntil: collection ? new Date(Number(collection.closes_at)).toISOString() : null };
  }

  // ---- reads and manual actions over HTTP ----

  async velocity(by: Principal, ref: string) {
    requireOperator(by);
    const op = await operatorRef(this.store, by, ref);
    const at = this.now();
    const approvals = await this.approvals(this.store, op.id, at);
    const check = approverVelocity(approvals, at, 'critical', this.limits);
    return {
      operatorId: op.id,
      operator: op.name,
      riskLevels: [...this.limits.riskLevels],
      counts: check.counts,
      limits: check.limits,
      allowed: check.allowed,
      reason: check.reason,
      resetAt: check.resetAt,
    };
  }

  /**
   * The reviewer's guard facts for a dry run (`actionable`), outside any transaction: nothing is
   * locked or recorded. `ip` is the reader's address, judged against the approval allowlists the
   * same way a vote from that address is (`ipFact`; unknown is refused wherever a list applies),
   * so the queue never offers an approval the server will refuse (issue 12).
   */
  async readerFacts(by: Operator, ip: string | null | undefined): Promise<Pick<GuardFacts, 'approvals' | 'manualCooldown' | 'velocity' | 'cooldown' | 'ip'>> {
    const at = this.now();
    const operatorId = by.operatorId;
    return {
      approvals: await this.approvals(this.store, operatorId, at),
      manualCooldown: await this.manualCooldown(this.store, operatorId, at),
      velocity: this.limits,
      cooldown: this.cooldownConfig,
      ip: await this.ipFact(this.store, by, ip),
    };
  }

  async cooldown(by: Principal, ref: string) {
    requireOperator(by);
    const op = await operatorRef(this.store, by, ref);
    const at = this.now();
    const state = cooldownState(await this.approvals(this.store, op.id, at), at, this.cooldownConfig, await this.manualCooldown(this.store, op.id, at));
    return { operatorId: op.id, operator: op.name, ...state, config: { ...this.cooldownConfig, riskLevels: [...this.cooldownConfig.riskLevels] } };
  }

  /**
   * A lead (or more senior) sends an approver of lower rank to cool down, with a reason; audited.
   * (Issue 13, finding 6: a lead could cool down admins and directors.)
   */
  async setCooldown(by: Principal, ref: string, body: { minutes: number; reason: string }) {
    const lead = requireRank(by, 'lead');
    const target = await this.active(by, ref);
    const op = { id: target.operatorId, name: target.name };
    const targetRank = highestRank(target.roles);
    if (targetRank >= highestRank(lead.roles)) {
      throw new CountersignError('FORBIDDEN', `${op.name} is not of lower rank than you: a cool-down can only be set on someone you outrank`, { reason: 'rank' });
    }
    const at = this.now();
    const until = at + body.minutes * MINUTE;
    await this.store.transaction(async (tx) => {
      const id = newId('cool', at);
      await tx.guard.insertCooldown({ id, operator_id: op.id, until, reason: body.reason, set_by: lead.operatorId, set_by_rank: highestRank(lead.roles), created_at: at });
      await this.writer.append(tx, [audit('cooldown_started', null, actorOf(lead), { operatorId: op.id, operator: op.name, until: new Date(until).toISOString(), reason: `manual: ${body.reason}`, manual: true }, at)]);
      await this.queueNotice(tx, { kind: 'cooldown_started', at, operator: op.name, by: lead.name, until: new Date(until).toISOString(), reason: `manual: ${body.reason}` });
      await this.queueCooldownSweep(tx, { id, operatorId: op.id, operator: op.name, until: new Date(until).toISOString(), at, setBy: lead.operatorId });
    });
    // The cool-down's escalation timer is due now (and any notices): wake the scheduler.
    this.noticesQueued();
    return this.cooldown(by, op.id);
  }

  /**
   * Ends an approver's manual cool-downs early, with a reason; audited (`cooldown_lifted`). Only
   * by a lead or more senior of at least the rank of whoever set each one, never by the approver
   * it applies to. Automatic cool-downs (computed from recent approvals) are not lifted: they end
   * by themselves.
   */
  async liftCooldown(by: Principal, ref: string, body: { reason: string }) {
    const lifter = requireRank(by, 'lead');
    const found = await this.active(by, ref);
    const op = { id: found.operatorId, name: found.name };
    if (op.id === lifter.operatorId) throw new CountersignError('FORBIDDEN', 'nobody lifts their own cool-down; ask someone of the same or higher rank', { reason: 'self' });
    const rank = highestRank(lifter.roles);
    const at = this.now();
    const lifted = await this.store.transaction(async (tx) => {
      await tx.credentials.operator(op.id, true); // the per-operator lock (PostgreSQL FOR UPDATE): a parallel set waits
      const rows = await tx.guard.activeCooldowns(op.id, at);
      if (rows.length === 0) throw new CountersignError('NOT_FOUND', `${op.name} has no manual cool-down running`);
      for (const row of rows) {
        const setter = await tx.credentials.operator(row.set_by);
        // The rank the setter had when they set it (a later demotion does not weaken it), and never less than their rank now.
        const setterRank = Math.max(row.set_by_rank === null ? -Infinity : Number(row.set_by_rank), highestRank(setter ? (JSON.parse(setter.roles) as Role[]) : ['admin']));
        if (setterRank > rank) throw new CountersignError('FORBIDDEN', `a cool-down set by ${setter?.name ?? 'someone more senior'} can only be lifted by someone of the same or higher rank`, { reason: 'rank' });
      }
      const wasUntil = new Date(Math.max(...rows.map((r) => Number(r.until)))).toISOString();
      await tx.guard.endCooldowns(op.id, rows.map((r) => r.id), at);
      await this.writer.append(tx, [audit('cooldown_lifted', null, actorOf(lifter), { operatorId: op.id, operator: op.name, reason: body.reason, wasUntil }, at)]);
      return wasUntil;
    });
    return { ...(await this.cooldown(by, op.id)), lifted: { wasUntil: lifted, by: lifter.name } };
  }

  /** An admin limits where an operator may approve from (CIDRs); an empty list lifts the limit. Audited. */
  async setAllowlist(by: Principal, ref: string, cidrs: readonly string[]) {
    const admin = requireRank(by, 'admin');
    const normalised = normaliseCidrs(cidrs);
    const found = await this.active(by, ref);
    const op = { id: found.operatorId, name: found.name };
    const at = this.now();
    await this.store.transaction(async (tx) => {
      await tx.guard.setAllowlist(op.id, normalised, admin.operatorId, at);
      await this.writer.append(tx, [audit('ip_allowlist_set', null, actorOf(admin), { operatorId: op.id, operator: op.name, cidrs: normalised }, at)]);
    });
    return { operatorId: op.id, operator: op.name, cidrs: normalised };
  }

  async allowlist(by: Principal, ref: string) {
    requireOperator(by);
    const op = await operatorRef(this.store, by, ref);
    return { operatorId: op.id, operator: op.name, cidrs: (await this.store.guard.allowlistFor(op.id)) ?? [] };
  }

  /**
   * An admin limits where everyone holding `role` may approve from; an empty list lifts it. It
   * applies on top of each operator's own list (both must allow the address). Audited.
   */
  async setRoleAllowlist(by: Principal, roleName: string, cidrs: readonly string[]) {
    const admin = requireRank(by, 'admin');
    const role = knownRole(roleName);
    const normalised = normaliseCidrs(cidrs);
    const at = this.now();
    await this.store.transaction(async (tx) => {
      await tx.guard.setRoleAllowlist(role, normalised, admin.operatorId, at);
      await this.writer.append(tx, [audit('ip_allowlist_set', null, actorOf(admin), { role, cidrs: normalised }, at)]);
    });
    return { role, cidrs: normalised };
  }

  async roleAllowlist(by: Principal, roleName: string) {
    requireOperator(by);
    const role = knownRole(roleName);
    return { role, cidrs: (await this.store.guard.roleAllowlistFor(role)) ?? [] };
  }

  async pause(by: Principal, ref: string, body: { minutes: number; reason: string }) {
    const lead = requireRank(by, 'lead');
    const agent = await agentRef(this.store, by, ref);
    const at = this.now();
    const until = at + body.minutes * MINUTE;
    const queued = await this.store.transaction(async (tx) => {
      await this.insertPause(tx, { id: newId('pause', at), agent_id: agent.id, until, reason: body.reason, set_by: lead.operatorId, created_at: at, resumed_at: null });
      await this.writer.append(tx, [audit('agent_paused', null, actorOf(lead), { agentId: agent.id, agent: agent.name, until: new Date(until).toISOString(), reason: body.reason }, at)]);
      return this.queueNotice(tx, { kind: 'agent_paused', at, agent: agent.name, by: lead.name, until: new Date(until).toISOString(), reason: body.reason });
    });
    this.holdCache.delete(agent.id);
    if (queued) this.noticesQueued();
    return this.pauseState(agent);
  }

  async resume(by: Principal, ref: string, body: { reason: string }) {
    const lead = requireRank(by, 'lead');
    const agent = await agentRef(this.store, by, ref);
    const at = this.now();
    const queued = await this.store.transaction(async (tx) => {
      const ended = await tx.guard.resumeAgent(agent.id, at);
      if (ended === 0) throw new CountersignError('ILLEGAL_TRANSITION', `agent ${agent.name} is not paused`);
      await this.writer.append(tx, [audit('agent_resumed', null, actorOf(lead), { agentId: agent.id, agent: agent.name, reason: body.reason }, at)]);
      return this.queueNotice(tx, { kind: 'agent_resumed', at, agent: agent.name, by: lead.name, reason: body.reason });
    });
    this.holdCache.delete(agent.id);
    if (queued) this.noticesQueued();
    return this.pauseState(agent);
  }

  /** A pause, and the timer that tells the guard channels when it runs out (`pauseRanOut`). */
  private async insertPause(tx: Queries, row: AgentPausesTable): Promise<void> {
    await tx.guard.insertPause(row);
    await tx.timers.insertTimers([
      { id: `pause_end:${row.id}`, kind: 'pause_end', request_id: null, due_at: row.until, payload: JSON.stringify({ pauseId: row.id }), claimed_by: null, claimed_until: null, created_at: row.created_at },
    ]);
  }

  /**
   * A pause's `pause_end` timer (fired by the scheduler through the engine): unless it was
   * resumed by hand, the pause ran out, so the trail says so (`pause_expired`) and the guard
   * channels hear the agent is active again (an `agent_resumed` notice: PagerDuty resolves the
   * pause's alert). `decided` when it told anyone; `stale` when a resume came first.
   */
  async pauseRanOut(timer: TimerRow): Promise<'decided' | 'gone' | 'rescheduled' | 'stale'> {
    const { pauseId } = JSON.parse(timer.payload) as { pauseId: string };
    const outcome = await this.store.transaction(async (tx) => {
      const taken = await tx.timers.takeTimer(timer.id);
      if (!taken || taken.created_at !== timer.created_at) return 'gone' as const;
      const at = this.now();
      if (taken.due_at > at) throw new TimerSkip('rescheduled'); // rolls the take back
      const pause = await tx.guard.pauseById(pauseId);
      if (!pause || pause.resumed_at !== null) return 'stale' as const;
      // Another pause still holds the agent: its own end will be told.
      if (await tx.guard.activePause(pause.agent_id, at)) return 'stale' as const;
      const agent = (await tx.findAgentById(pause.agent_id))?.name ?? pause.agent_id;
      const reason = `the pause ran out (it was: ${pause.reason})`;
      await this.writer.append(tx, [audit('pause_expired', null, SYSTEM, { agentId: pause.agent_id, agent, pausedUntil: new Date(Number(pause.until)).toISOString(), reason: pause.reason }, at)]);
      return (await this.queueNotice(tx, { kind: 'agent_resumed', at, agent, by: SYSTEM.name, reason })) ? ('decided' as const) : ('stale' as const);
    }).catch((err: unknown) => {
      if (err instanceof TimerSkip) return err.why as 'rescheduled';
      throw err;
    });
    if (outcome === 'decided') this.noticesQueued();
    return outcome;
  }

  async pauseStatus(by: Principal, ref: string) {
    requireOperator(by);
    return this.pauseState(await agentRef(this.store, by, ref));
  }

  /** `detectSlicing` over the agent's requests in the window (and a day before it, the baseline). */
  async slicing(by: Principal, ref: string, windowMinutes = 60) {
    requireOperator(by);
    return this.slicingReport(await agentRef(this.store, by, ref), windowMinutes);
  }

  /**
   * The policy's response to slicing (`agents.<name>.onSlicing`), run after every create: the
   * alerts `checkCreate` found in the create's transaction (its running-total crossing, and core
   * `detectOnCreate` over the payload fingerprints of the newest `ON_CREATE_RECENT` earlier
   * requests of the action and as many of its key set), and, at most once a minute per agent in
   * this process, the full report (every history detector and the window's value crossings: the
   * backstop for velocity, fatigue, what the bounded reads cannot see, and a crossing whose
   * recording failed). Which alerts are new is
   * decided under the agent's slicing lock from `slicing_seen:<agentId>` (core `freshAlerts`), so
   * two servers never record one alert twice. A new set is recorded (`slicing_alert`); with
   * `pause` the agent is paused for an hour, with `review` its requests need review for an hour
   * (`review_forced`, see `reviewHold`). Never fails the create that triggered it.
   */
  async afterCreate(agent: { id: string; name: string }, policy: Policy, alerts: readonly SlicingAlert[]): Promise<void> {
    const response = policy.agents[agent.name]?.onSlicing;
    if (!response) return;
    const at = this.now();
    try {
      const found: SlicingAlert[] = [...alerts];
      const last = this.lastSlicingCheck.get(agent.id);
      if (last === undefined || at - last >= MINUTE) {
        if (this.lastSlicingCheck.size > 10_000) this.lastSlicingCheck.clear();
        this.lastSlicingCheck.set(agent.id, at);
        // With the value crossings of the window: one whose recording failed after its create is
        // recorded now (freshAlerts knows the crossings already recorded).
        found.push(...(await this.slicingReport(agent, DEFAULT_SLICING_CONFIG.windowMinutes)).alerts);
      }
      if (!found.some((a) => a.confidence >= 0.5)) return;
      const queued = await this.store.transaction(async (tx) => {
        await tx.counters.lock(`slicing:${agent.id}`);
        const seenKey = `slicing_seen:${agent.id}`;
        let seen: SlicingSeen = {};
        try {
          seen = JSON.parse((await tx.guard.setting(seenKey)) ?? '{}') as SlicingSeen;
        } catch {
          // An unreadable record remembers nothing: the alerts are recorded (fail loud, not quiet).
        }
        const next = freshAlerts(found, seen, at, MINUTE);
        const report = detectSlicing([], at, DEFAULT_SLICING_CONFIG, { detectors: [], extra: next.fresh });
        if (!report.attackDetected) return null;
        await tx.guard.putSetting(seenKey, JSON.stringify(next.seen));
        const alerts = report.alerts.map((a) => ({ type: a.type, confidence: a.confidence, description: a.description, requestIds: a.evidence.requestIds }));
        const entries = [audit('slicing_alert', null, SYSTEM, { agentId: agent.id, agent: agent.name, confidence: report.confidence, response, alerts }, at)];
        let queued = await this.queueNotice(tx, { kind: 'slicing_alert', at, agent: agent.name, by: SYSTEM.name, response, confidence: report.confidence, alerts });
        const holdUntil = at + policy.guard.slicing.holdMinutes * MINUTE;
        if (response === 'review') {
          const types = [...new Set(report.alerts.map((a) => a.type))].sort();
          await tx.guard.putSetting(`review_hold:${agent.id}`, JSON.stringify({ until: holdUntil, alerts: types, mode: 'review' } satisfies ReviewHold));
          entries.push(audit('review_forced', null, SYSTEM, { agentId: agent.id, agent: agent.name, until: new Date(holdUntil).toISOString(), alerts: types }, at));
        }
        if (response === 'aggregate') {
          const types = [...new Set(report.alerts.map((a) => a.type))].sort();
          // A hold renewed by new alerts keeps its start, so its earlier aggregates still count towards the total.
          const running = activeHold(await tx.guard.setting(`review_hold:${agent.id}`), at);
          const since = running?.mode === 'aggregate' ? (running.since ?? at) : at;
          await tx.guard.putSetting(`review_hold:${agent.id}`, JSON.stringify({ until: holdUntil, alerts: types, mode: 'aggregate', since } satisfies ReviewHold));
          // Each locked and checked again, so an approval racing with this cannot slip between (PostgreSQL).
          const loose: string[] = [];
          for (const id of await tx.aggregates.pendingLoose(agent.id, at - DEFAULT_SLICING_CONFIG.windowMinutes * MINUTE)) {
            if ((await tx.getRequest(id, true))?.status === 'pending') loose.push(id);
          }
          const collection = loose.length > 0 ? await this.park(tx, agent.id, loose, { alerts: types, since }, policy, at) : undefined;
          entries.push(
            audit('aggregation_started', null, SYSTEM, { agentId: agent.id, agent: agent.name, until: new Date(holdUntil).toISOString(), alerts: types, collectionId: collection?.id ?? null, requestIds: loose }, at),
          );
        }
        if (response === 'pause' && !(await tx.guard.activePause(agent.id, at))) {
          const until = holdUntil;
          const reason = `slicing detected: ${[...new Set(report.alerts.map((a) => a.type))].join(', ')}`;
          await this.insertPause(tx, { id: newId('pause', at), agent_id: agent.id, until, reason, set_by: 'system', created_at: at, resumed_at: null });
          entries.push(audit('agent_paused', null, SYSTEM, { agentId: agent.id, agent: agent.name, until: new Date(until).toISOString(), reason }, at));
          queued = (await this.queueNotice(tx, { kind: 'agent_paused', at, agent: agent.name, by: SYSTEM.name, until: new Date(until).toISOString(), reason })) || queued;
        }
        await this.writer.append(tx, entries);
        return queued;
      });
      if (queued === null) return;
      this.holdCache.delete(agent.id);
      if (queued) this.noticesQueued();
    } catch {
      // Detection is advisory here; the request it followed is already committed.
    }
  }

  /** `detectOnCreate` for one create, in its transaction: the fingerprints of the agent's newest requests of the action, and of its key set (bounded reads). */
  private async onCreateAlerts(tx: Queries, agent: { id: string; name: string }, created: { id: string; action: string; args: JsonObject; keysKey: string; at: number }): Promise<SlicingAlert[]> {
    const since = created.at - DEFAULT_SLICING_CONFIG.windowMinutes * MINUTE;
    const rows = await tx.counters.recentFingerprints(agent.id, normalizeActionName(created.action), created.keysKey, since, ON_CREATE_RECENT + 1);
    const recent: GuardEvent[] = [];
    for (const r of rows) {
      if (r.request_id === created.id) continue;
      let args: JsonObject;
      try {
        args = JSON.parse(this.store.sealer.open(r.fingerprint, 'agent_rate_events.fingerprint') ?? '{}') as JsonObject;
      } catch {
        continue; // unreadable (a retired key): it adds nothing, as an unreadable slice
      }
      recent.push({ requestId: r.request_id, agentId: agent.id, action: created.action, args, riskLevel: 'low', createdAt: r.at });
    }
    return detectOnCreate({ requestId: created.id, agentId: agent.id, action: created.action, args: created.args, riskLevel: 'low', createdAt: created.at }, recent);
  }

  /**
   * What the agent's guard state does to a create, read before its evaluation: while the agent is
   * paused and policy says `whilePaused: hold`, or while a slicing hold (`onSlicing: review` or
   * `aggregate`) lasts, its requests are routed to review with a matched rule naming why. The
   * create's transaction checks the pause again (`checkCreate`), so this cached read only decides
   * the route, never whether a paused agent gets through.
   */
  async createGate(agent: { id: string; name: string }, policy: Policy, at: number): Promise<CreateGate | undefined> {
    let cached = this.holdCache.get(agent.id);
    if (!cached || cached.until <= at) {
      const [raw, pause] = await Promise.all([this.store.guard.setting(`review_hold:${agent.id}`), this.store.guard.activePause(agent.id, at)]);
      cached = { raw, pause: pause ? { until: Number(pause.until), reason: pause.reason } : null, until: at + HOLD_CACHE_MS };
      if (this.holdCache.size >= 10_000) this.holdCache.clear();
      this.holdCache.set(agent.id, cached);
    }
    const held = activeHold(cached.raw, at);
    // A request held for a pause still joins an aggregate hold's collection: pausing must not turn aggregation off.
    const aggregate = held?.mode === 'aggregate' ? { alerts: held.alerts, since: held.since ?? 0 } : undefined;
    if (cached.pause && cached.pause.until > at && whilePaused(policy, agent.name) === 'hold') {
      const until = new Date(cached.pause.until).toISOString();
      return {
        rule: 'agent-paused',
        reason: `agent ${agent.name} is paused until ${until} (${cached.pause.reason}); policy whilePaused: hold keeps its requests for review, approvable once the pause ends`,
        ...(aggregate ? { aggregate } : {}),
      };
    }
    if (!held) return undefined;
    const until = new Date(held.until).toISOString();
    return aggregate
      ? {
          rule: `slicing-aggregate:${held.alerts.join('+')}`,
          reason: `slicing detected (${held.alerts.join(', ')}); policy onSlicing: aggregate reviews this agent's requests together, as one, until ${until}`,
          aggregate,
        }
      : {
          rule: `slicing-alert:${held.alerts.join('+')}`,
          reason: `slicing detected (${held.alerts.join(', ')}); policy onSlicing: review routes this agent's requests to review until ${until}`,
        };
  }

  private async slicingReport(agent: { id: string; name: string }, windowMinutes: number) {
    const at = this.now();
    const { requests, approvals } = await this.store.guard.agentHistory(agent.id, at - windowMinutes * MINUTE - DAY);
    const firstApproval = new Map<string, { operator_id: string; created_at: number }>();
    for (const a of approvals) if (!firstApproval.has(a.request_id)) firstApproval.set(a.request_id, a);
    const events: GuardEvent[] = requests.map((r) => {
      const context = JSON.parse(r.context) as { value?: unknown };
      const approval = firstApproval.get(r.id);
      return {
        requestId: r.id,
        agentId: r.agent_id,
        action: r.action,
        args: JSON.parse(r.args),
        value: typeof context.value === 'number' ? context.value : undefined,
        riskLevel: r.risk_level as RiskLevel,
        createdAt: Number(r.created_at),
        approverId: approval?.operator_id,
        decidedAt: r.decided_at === null ? undefined : Number(r.decided_at),
        outcome: r.status === 'rejected' || r.status === 'expired' ? 'rejected' : r.status === 'pending' || r.status === 'cancelled' ? undefined : 'approved',
      };
    });
    // The value detector is the create path's own rule (runningTotal against the policy's value
    // thresholds), read from the slices each create stored, not the fixed band of detectValueAggregation.
    const slices: ValueSlice[] = [];
    for (const r of await this.store.counters.valueSlices(agent.id, at - windowMinutes * MINUTE)) {
      try {
        slices.push({ requestId: r.request_id, at: r.at, bucket: JSON.parse(r.value_bucket) as ValueBucket });
      } catch {
        // An unreadable slice adds nothing to the report (the create path skips it the same way: it never parses).
      }
    }
    const extra = valueAlertsFromSlices(slices, at, windowMinutes * MINUTE, agent.name);
    const report = detectSlicing(events, at, { ...DEFAULT_SLICING_CONFIG, windowMinutes }, { detectors: HISTORY_DETECTORS, extra });
    return { agentId: agent.id, agent: agent.name, windowMinutes, ...report };
  }

  // ---- helpers ----

  /** The agent's pause now, for readers of its requests (approvals wait for it to end). */
  async pauseOf(agentId: string): Promise<{ until: string; reason: string } | undefined> {
    const pause = await this.store.guard.activePause(agentId, this.now());
    return pause ? { until: new Date(Number(pause.until)).toISOString(), reason: pause.reason } : undefined;
  }

  /** Which of these agents are paused now (one query, for listings). */
  pausedAmong(agentIds: readonly string[]): Promise<Set<string>> {
    return this.store.guard.pausedAmong(agentIds, this.now());
  }

  private async pauseState(agent: { id: string; name: string }) {
    const pause = await this.store.guard.activePause(agent.id, this.now());
    return {
      agentId: agent.id,
      agent: agent.name,
      paused: pause !== undefined,
      until: pause ? new Date(pause.until).toISOString() : null,
      reason: pause?.reason ?? null,
    };
  }

  private async approvals(q: Queries, operatorId: string, at: number): Promise<ApprovalRecord[]> {
    const rows = await q.counters.approvalsBy(operatorId, at - DAY);
    // An approval committed while this one waited for the approver's lock can carry a later time
    // than this vote's clock reading: it happened, so it counts as now (never as the future).
    return rows.map((r) => ({ requestId: r.request_id, at: Math.min(r.at, at), riskLevel: r.risk_level as RiskLevel }));
  }

  private async manualCooldown(q: Queries, operatorId: string, at: number) {
    const row = await q.guard.activeCooldown(operatorId, at);
    return row ? { until: Number(row.until), reason: row.reason } : null;
  }

  /**
   * For actions that change something about an operator: the operator the path names (engine/refs.ts:
   * `me`, an id, then a name), and only one who could sign in (MAC valid, not disabled or removed).
   */
  private async active(by: Principal, ref: string): Promise<Operator> {
    const named = await operatorRef(this.store, by, ref);
    const found = await this.activeOperator(named.id);
    if (!found || found.operatorId !== named.id) throw new CountersignError('NOT_FOUND', `no active operator ${ref}`);
    return found;
  }
}

const SYSTEM = SYSTEM_ACTOR;

/**
 * Thrown by `checkCreate` (rolling the create's transaction back) when the create would be
 * auto-approved but raises slicing alerts its agent's `onSlicing` holds for: the engine creates it
 * again, evaluated with this forced review. Never reaches a caller.
 */
export class SlicingReview extends Error {
  constructor(readonly review: { rule: string; reason: string }) {
    super(`slicing: ${review.rule}`);
  }
}

/** What the agent's guard state does to a create: a forced review, and whether the request joins an aggregate review. */
export interface CreateGate {
  rule: string;
  reason: string;
  aggregate?: { alerts: readonly string[]; since: number };
}

/** The timer that closes an aggregate collection (fired by the scheduler through the engine). */
function collectTimer(collectionId: string, dueAt: number, at: number): TimerRow {
  return { id: `collect:${collectionId}`, kind: 'collect', request_id: null, due_at: dueAt, payload: JSON.stringify({ collectionId }), claimed_by: null, claimed_until: null, created_at: at };
}

/** A slicing hold (`review_hold:<agentId>` setting): its end, the alert types, and the response that set it. */
interface ReviewHold {
  until: number;
  alerts: string[];
  mode?: 'review' | 'aggregate';
  /** When an aggregate hold began (kept when new alerts renew it). */
  since?: number;
}

/** The slicing hold in a `review_hold:<agentId>` setting, if it is still running. */
function activeHold(raw: string | undefined, at: number): ReviewHold | undefined {
  const hold = raw ? (JSON.parse(raw) as ReviewHold) : undefined;
  return hold && hold.until > at ? hold : undefined;
}

/** The agent's own `whilePaused`, else the policy's. */
function whilePaused(policy: Policy, agentName: string) {
  return policy.agents[agentName]?.whilePaused ?? policy.guard.whilePaused;
}

/** CIDRs as stored (`10.1.2.3` → `10.1.2.3/32`); the first that is not one refuses the whole list. */
function normaliseCidrs(cidrs: readonly string[]): string[] {
  return cidrs.map((text) => {
    const c = parseCidr(text);
    if (!c) throw new CountersignError('VALIDATION_FAILED', `"${text}" is not an IP address or CIDR`, { field: 'cidrs' });
    return c.cidr;
  });
}

function knownRole(name: string): Role {
  const role = ROLES.find((r) => r === name);
  if (!role) throw new CountersignError('VALIDATION_FAILED', `unknown role "${name}"`, { field: 'role', roles: ROLES });
  return role;
}

function requireOperator(by: Principal): Operator {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
  return by;
}

function requireRank(by: Principal, role: Role): Operator {
  const op = requireOperator(by);
  if (!op.roles.some((r) => ROLE_RANK[r] >= ROLE_RANK[role])) throw new CountersignError('FORBIDDEN', `this needs the ${role} role or a more senior one`);
  return op;
}

/** An agent's create-limit windows: `agents.<name>.limits`, else `guard.agentLimits`. */
function createWindows(policy: Policy, agentName: string): Array<{ name: string; ms: number; limit: number }> {
  const own = policy.agents[agentName]?.limits;
  const limits = own && (own.perMinute !== undefined || own.perHour !== undefined) ? own : policy.guard.agentLimits;
  return [
    ...(limits.perMinute !== undefined ? [{ name: 'minute', ms: MINUTE, limit: limits.perMinute }] : []),
    ...(limits.perHour !== undefined ? [{ name: 'hour', ms: 60 * MINUTE, limit: limits.perHour }] : []),
  ];
}

/** RATE_LIMITED (with `retryAfter`) when any window's count has reached its limit. */
async function refuseOverLimit(q: Queries, agent: { id: string; name: string }, windows: ReadonlyArray<{ name: string; ms: number; limit: number }>, counts: readonly number[], at: number): Promise<void> {
  if (!windows.some((w, i) => counts[i]! >= w.limit)) return;
  // Only when refusing: the times that say when a slot frees (at most the largest limit of them).
  const times = await q.counters.agentTimes(agent.id, at - Math.max(...windows.map((w) => w.ms)), Math.max(...windows.map((w) => w.limit)));
  const check = checkRate(times.map((t) => Math.min(t, at)), at, windows);
  const resetAt = check.resetAt ?? new Date(at + MINUTE).toISOString();
  throw new CountersignError('RATE_LIMITED', `agent ${agent.name} is over its request limit: ${check.reason ?? 'limit reached'}`, {
    counts: check.counts,
    limits: check.limits,
    resetAt,
    retryAfter: Math.max(1, Math.ceil((Date.parse(resetAt) - at) / 1000)),
  });
}

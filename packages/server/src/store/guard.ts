/**
 * The guard's tables and their SQL: TOTP enrolments (with the last used time step, so a code
 * works once), manual cool-downs, agent pauses, and the server secret behind number matching.
 * Automatic cool-downs and velocity are not stored: they are computed from the reviews table.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';
import { Sealer } from './sealing.ts';
import { replaceSealedValue, sealCensus, selectResealBatch, type ResealTarget, type SealCensus, type SealedRow, type SealedTable } from './sealed-sql.ts';

export interface OperatorTotpTable {
  operator_id: string;
  /** `enc:v2:<keyId>:…` (AES-256-GCM under COUNTERSIGN_ENCRYPTION_KEY; `enc:v1:…` before key ids) or `plain:<base32>`. */
  secret: string;
  /** Null until the first valid code confirms the enrolment. */
  confirmed_at: number | null;
  /** The newest RFC 6238 time step accepted; codes of this step or older are refused. */
  last_step: number | null;
  created_at: number;
}

export interface ApproverCooldownsTable {
  id: string;
  operator_id: string;
  until: number;
  reason: string;
  set_by: string;
  /** The setter's rank when it was set (core's `highestRank`): lifting needs at least this. Null on rows from before 010. */
  set_by_rank: number | null;
  created_at: number;
}

export interface AgentPausesTable {
  id: string;
  agent_id: string;
  until: number;
  reason: string;
  set_by: string;
  created_at: number;
  resumed_at: number | null;
}

export interface OperatorIpAllowlistTable {
  operator_id: string;
  /** JSON array of CIDRs (`10.0.0.0/8`, `2001:db8::/32`); an operator without a row may approve from anywhere. */
  cidrs: string;
  set_by: string;
  updated_at: number;
}

export interface RoleIpAllowlistTable {
  /** A core `Role` (`reviewer`, `lead`, …); the service refuses any other name. */
  role: string;
  /** JSON array of CIDRs; every operator holding the role must approve from inside it. No row: no limit. */
  cidrs: string;
  set_by: string;
  updated_at: number;
}

export interface GuardSettingsTable {
  key: string;
  value: string;
}




/** An allowlist that binds an approver: their own, or one of a role they hold. */
export type AppliedAllowlist = { kind: 'operator'; cidrs: string[] } | { kind: 'role'; role: string; cidrs: string[] };

type Db = Kysely<Database> | Transaction<Database>;

const TOTP_SECRETS: SealedTable = { table: 'operator_totp', key: 'operator_id', columns: ['secret'] };

export interface ApprovalRow {
  request_id: string;
  created_at: number;
  risk_level: string;
}

export class GuardQueries {
  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer = Sealer.none,
  ) {}

  /** An approver's approvals since `since`, with the risk level of each request. */
  async approvalsBy(operatorId: string, since: number): Promise<ApprovalRow[]> {
    return this.db
      .selectFrom('reviews')
      .innerJoin('requests', 'requests.id', 'reviews.request_id')
      .select(['reviews.request_id', 'reviews.created_at', 'requests.risk_level'])
      .where('reviews.operator_id', '=', operatorId)
      .where('reviews.verdict', '=', 'approve')
      .where('reviews.created_at', '>', since)
      .orderBy('reviews.created_at')
      .execute();
  }

  /** When an agent's requests since `since` were created (at most `limit`, newest kept). */
  async requestTimes(agentId: string, since: number, limit = 10_000): Promise<number[]> {
    const rows = await this.db
      .selectFrom('requests')
      .select('created_at')
      .where('agent_id', '=', agentId)
      .where('created_at', '>', since)
      .orderBy('created_at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => Number(r.created_at));
  }

  /**
   * An agent's newest requests of one action (its normal form, `requests.action_key`) since
   * `since`, at most `limit`: the bounded read of the per-create slicing detectors (index
   * `requests_agent_action_key`).
   */
  async recentOfAction(agentId: string, actionKey: string, since: number, limit: number) {
    return (
      await this.db
        .selectFrom('requests')
        .select(['id', 'agent_id', 'action', 'args', 'created_at'])
        .where('agent_id', '=', agentId)
        .where('action_key', '=', actionKey)
        .where('created_at', '>', since)
        .orderBy('created_at', 'desc')
        .limit(limit)
        .execute()
    ).map((r) => this.sealer.openRequest(r));
  }

  /** An agent's requests since `since` with their approving reviews, for slicing detection. */
  async agentHistory(agentId: string, since: number, limit = 5_000) {
    const requests = (
      await this.db
        .selectFrom('requests')
        .select(['id', 'agent_id', 'action', 'args', 'context', 'risk_level', 'status', 'created_at', 'decided_at'])
        .where('agent_id', '=', agentId)
        .where('created_at', '>', since)
        .orderBy('created_at', 'desc')
        .limit(limit)
        .execute()
    ).map((r) => this.sealer.openRequest(r));
    const ids = requests.map((r) => r.id);
    const approvals =
      ids.length === 0
        ? []
        : await this.db
            .selectFrom('reviews')
            .select(['request_id', 'operator_id', 'created_at'])
            .where('request_id', 'in', ids)
            .where('verdict', '=', 'approve')
            .orderBy('created_at')
            .execute();
    return { requests, approvals };
  }

  // ---- TOTP ----

  async totpFor(operatorId: string): Promise<OperatorTotpTable | undefined> {
    return this.db.selectFrom('operator_totp').selectAll().where('operator_id', '=', operatorId).executeTakeFirst();
  }

  /** A new (unconfirmed) enrolment replaces an unconfirmed one; a confirmed one is never overwritten here. */
  async putPendingTotp(row: OperatorTotpTable): Promise<void> {
    await this.db.deleteFrom('operator_totp').where('operator_id', '=', row.operator_id).where('confirmed_at', 'is', null).execute();
    await this.db.insertInto('operator_totp').values(row).execute();
  }

  async confirmTotp(operatorId: string, at: number, step: number): Promise<boolean> {
    const result = await this.db
      .updateTable('operator_totp')
      .set({ confirmed_at: at, last_step: step })
      .where('operator_id', '=', operatorId)
      .where('confirmed_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Records `step` as used. False when this step (or a later one) was already used: the
   * conditional update is the replay guard, so two racing reviews with one code cannot both pass.
   */
  async useTotpStep(operatorId: string, step: number): Promise<boolean> {
    const result = await this.db
      .updateTable('operator_totp')
      .set({ last_step: step })
      .where('operator_id', '=', operatorId)
      .where('confirmed_at', 'is not', null)
      .where((eb) => eb.or([eb('last_step', 'is', null), eb('last_step', '<', step)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Enrolments whose seed an earlier version stored `plain:` (sealed at start). */
  async allTotpSecrets(): Promise<Array<{ operator_id: string; secret: string }>> {
    return this.db.selectFrom('operator_totp').select(['operator_id', 'secret']).execute();
  }

  /** Enrolments after operator `after` whose secret the target wants re-sealed (keys rotate-encryption), raw. */
  async totpResealBatch(after: string, limit: number, target: ResealTarget): Promise<SealedRow[]> {
    return selectResealBatch(this.db, TOTP_SECRETS, after, limit, target);
  }

  /** Swaps a raw secret for its re-sealed form, unless it changed meanwhile (a new enrolment: false). */
  async replaceTotpSecret(operatorId: string, before: string, after: string): Promise<boolean> {
    return replaceSealedValue(this.db, TOTP_SECRETS, operatorId, 'secret', before, after);
  }

  async totpCensus(currentPrefix: string): Promise<SealCensus> {
    return sealCensus(this.db, TOTP_SECRETS, currentPrefix);
  }

  // ---- cool-downs and pauses ----

  async insertCooldown(row: ApproverCooldownsTable): Promise<void> {
    await this.db.insertInto('approver_cooldowns').values(row).execute();
  }

  /** The manual cool-down that ends last among those still running at `now`. */
  async activeCooldown(operatorId: string, now: number): Promise<ApproverCooldownsTable | undefined> {
    return this.db
      .selectFrom('approver_cooldowns')
      .selectAll()
      .where('operator_id', '=', operatorId)
      .where('until', '>', now)
      .orderBy('until', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** Every manual cool-down of the operator still running at `now`. */
  async activeCooldowns(operatorId: string, now: number): Promise<ApproverCooldownsTable[]> {
    return this.db.selectFrom('approver_cooldowns').selectAll().where('operator_id', '=', operatorId).where('until', '>', now).execute();
  }

  /** Ends the named running manual cool-downs at `now` (a lift: only the rows the lifter was checked against); how many there were. */
  async endCooldowns(operatorId: string, ids: readonly string[], now: number): Promise<number> {
    if (ids.length === 0) return 0;
    const result = await this.db.updateTable('approver_cooldowns').set({ until: now }).where('operator_id', '=', operatorId).where('id', 'in', [...ids]).where('until', '>', now).executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async insertPause(row: AgentPausesTable): Promise<void> {
    await this.db.insertInto('agent_pauses').values(row).execute();
  }

  /** Which of these agents are paused now. */
  async pausedAmong(agentIds: readonly string[], now: number): Promise<Set<string>> {
    if (agentIds.length === 0) return new Set();
    const rows = await this.db
      .selectFrom('agent_pauses')
      .select('agent_id')
      .where('agent_id', 'in', [...new Set(agentIds)])
      .where('until', '>', now)
      .where('resumed_at', 'is', null)
      .execute();
    return new Set(rows.map((r) => r.agent_id));
  }

  async pauseById(id: string): Promise<AgentPausesTable | undefined> {
    return this.db.selectFrom('agent_pauses').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async activePause(agentId: string, now: number): Promise<AgentPausesTable | undefined> {
    return this.db
      .selectFrom('agent_pauses')
      .selectAll()
      .where('agent_id', '=', agentId)
      .where('until', '>', now)
      .where('resumed_at', 'is', null)
      .orderBy('until', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** Ends every running pause of the agent; returns how many. */
  async resumeAgent(agentId: string, at: number): Promise<number> {
    const result = await this.db
      .updateTable('agent_pauses')
      .set({ resumed_at: at })
      .where('agent_id', '=', agentId)
      .where('until', '>', at)
      .where('resumed_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async allowlistFor(operatorId: string): Promise<string[] | null> {
    const row = await this.db.selectFrom('operator_ip_allowlist').select('cidrs').where('operator_id', '=', operatorId).executeTakeFirst();
    return row ? (JSON.parse(row.cidrs) as string[]) : null;
  }

  /** Replaces the operator's allowlist; an empty list removes it (approvals from anywhere). */
  async setAllowlist(operatorId: string, cidrs: readonly string[], setBy: string, at: number): Promise<void> {
    await this.db.deleteFrom('operator_ip_allowlist').where('operator_id', '=', operatorId).execute();
    if (cidrs.length > 0) {
      await this.db.insertInto('operator_ip_allowlist').values({ operator_id: operatorId, cidrs: JSON.stringify(cidrs), set_by: setBy, updated_at: at }).execute();
    }
  }

  /**
   * Every allowlist that binds an approver, for the review path: their own first, then those of
   * their roles (by name). Two primary-key reads at most, in the caller's transaction.
   */
  async allowlistsFor(operatorId: string, roles: readonly string[]): Promise<AppliedAllowlist[]> {
    const lists: AppliedAllowlist[] = [];
    const own = await this.allowlistFor(operatorId);
    if (own) lists.push({ kind: 'operator', cidrs: own });
    if (roles.length === 0) return lists;
    const rows = await this.db.selectFrom('role_ip_allowlist').select(['role', 'cidrs']).where('role', 'in', [...roles]).orderBy('role').execute();
    for (const row of rows) lists.push({ kind: 'role', role: row.role, cidrs: JSON.parse(row.cidrs) as string[] });
    return lists;
  }

  async roleAllowlistFor(role: string): Promise<string[] | null> {
    const row = await this.db.selectFrom('role_ip_allowlist').select('cidrs').where('role', '=', role).executeTakeFirst();
    return row ? (JSON.parse(row.cidrs) as string[]) : null;
  }

  /** Replaces a role's allowlist; an empty list removes it. */
  async setRoleAllowlist(role: string, cidrs: readonly string[], setBy: string, at: number): Promise<void> {
    await this.db.deleteFrom('role_ip_allowlist').where('role', '=', role).execute();
    if (cidrs.length > 0) {
      await this.db.insertInto('role_ip_allowlist').values({ role, cidrs: JSON.stringify(cidrs), set_by: setBy, updated_at: at }).execute();
    }
  }

  async setting(key: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('guard_settings').select('value').where('key', '=', key).executeTakeFirst();
    return row?.value;
  }

  /** Sets a setting (an agent's forced-review hold is `review_hold:<agentId>`). */
  async putSetting(key: string, value: string): Promise<void> {
    await this.db.insertInto('guard_settings').values({ key, value }).onConflict((oc) => oc.column('key').doUpdateSet({ value })).execute();
  }
}

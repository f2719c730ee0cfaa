/**
 * The credential tables' SQL (issue 13): operators, their tokens, agent keys, dashboard sessions
 * and step-up attempts. Rows carry a `mac` the engine computes and checks (engine/credentials.ts);
 * this file only reads and writes them.
 */
import { type Kysely, type Transaction } from 'kysely';
import type { Capabilities } from './connect.ts';
import type { Database } from './schema.ts';

export interface SessionsTable {
  /** SHA-256 (hex) of the random id only the cookie holds: the database cannot rebuild a cookie. */
  id_hash: string;
  operator_id: string;
  token_id: string;
  created_at: number;
  expires_at: number;
  /** HMAC under the server secret of (id_hash, operator_id, token_id, expires_at). */
  mac: string;
}

export interface ServerMarksTable {
  /** `sealed` | `bootstrapped`. */
  name: string;
  at: number;
  mac: string;
}

export interface MfaAttemptsTable {
  id: string;
  operator_id: string;
  at: number;
  /** `pending` while a code is being evaluated (counted as a failure until settled), then `failed` (`struck` for one that started a lockout); a good code deletes its row. */
  state: string;
}

export type OperatorRecord = Database['operators'];
export type TokenRecord = Database['operator_tokens'];
export type KeyRecord = Database['api_keys'];

export type FoundCredential =
  | { kind: 'agent'; key: KeyRecord; agentName: string }
  | { kind: 'operator'; token: TokenRecord; operator: OperatorRecord };

type Db = Kysely<Database> | Transaction<Database>;

export class CredentialQueries {
  constructor(
    private readonly db: Db,
    private readonly capabilities: Capabilities,
  ) {}

  /** The key or token with this SHA-256, with its agent or operator; revoked, disabled and MAC checks are the caller's. */
  async find(hash: string): Promise<FoundCredential | undefined> {
    const key = await this.db
      .selectFrom('api_keys')
      .innerJoin('agents', 'agents.id', 'api_keys.agent_id')
      .selectAll('api_keys')
      .select('agents.name as agent_name')
      .where('api_keys.key_hash', '=', hash)
      .executeTakeFirst();
    if (key) {
      const { agent_name, ...row } = key;
      return { kind: 'agent', key: row, agentName: agent_name };
    }
    const token = await this.db.selectFrom('operator_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    if (!token) return undefined;
    const operator = await this.operator(token.operator_id);
    return operator ? { kind: 'operator', token, operator } : undefined;
  }

  async operator(id: string, lock = false): Promise<OperatorRecord | undefined> {
    let q = this.db.selectFrom('operators').selectAll().where('id', '=', id);
    if (lock && this.capabilities.rowLocks) q = q.forUpdate();
    return q.executeTakeFirst();
  }

  async operatorByName(name: string): Promise<OperatorRecord | undefined> {
    return this.db.selectFrom('operators').selectAll().where('name', '=', name).executeTakeFirst();
  }

  /**
   * Every operator not removed, locked (PostgreSQL) so that two admins changing roles or
   * disabling at once serialise: the last active admin is counted under the lock.
   */
  async lockActiveOperators(): Promise<OperatorRecord[]> {
    let q = this.db.selectFrom('operators').selectAll().where('removed_at', 'is', null).orderBy('id');
    if (this.capabilities.rowLocks) q = q.forUpdate();
    return q.execute();
  }

  async updateOperator(id: string, patch: Partial<Pick<OperatorRecord, 'roles' | 'groups' | 'disabled_at' | 'removed_at' | 'tokenless' | 'mac'>>): Promise<void> {
    await this.db.updateTable('operators').set(patch).where('id', '=', id).execute();
  }

  async tokensOf(operatorId: string): Promise<TokenRecord[]> {
    return this.db.selectFrom('operator_tokens').selectAll().where('operator_id', '=', operatorId).orderBy('created_at').execute();
  }

  async allTokens(): Promise<TokenRecord[]> {
    return this.db.selectFrom('operator_tokens').selectAll().orderBy('created_at').execute();
  }

  async updateToken(id: string, patch: Partial<Pick<TokenRecord, 'revoked_at' | 'expires_at' | 'mac'>>): Promise<void> {
    await this.db.updateTable('operator_tokens').set(patch).where('id', '=', id).execute();
  }

  async insertToken(row: TokenRecord): Promise<void> {
    await this.db.insertInto('operator_tokens').values(row).execute();
  }

  /** Records that `issuer_id` created, granted admin to, or issued a token of `operator_id` (migration 017). */
  async addLineage(edge: { operator_id: string; issuer_id: string; kind: 'created' | 'admin' | 'token'; at: number }): Promise<void> {
    if (edge.operator_id === edge.issuer_id) return;
    await this.db.insertInto('operator_lineage').values(edge).onConflict((oc) => oc.columns(['operator_id', 'issuer_id', 'kind']).doNothing()).execute();
  }

  /**
   * `operator_id` (an admin) rotated its own token: whoever created it no longer holds its secret,
   * so those `created` rows go. `token` rows (someone else rotated it: they may have done this
   * "own" rotation too) and `admin` rows stay: they never end.
   */
  async endHolds(operatorId: string): Promise<void> {
    await this.db.deleteFrom('operator_lineage').where('operator_id', '=', operatorId).where('kind', '=', 'created').execute();
  }

  /**
   * `operator_id` is being made an admin: whoever holds its credential now (its creator, until it
   * rotated its own) could do its "own" rotation as an admin, so that hold becomes one that never
   * ends (a `token` row).
   */
  async pinHolds(operatorId: string, at: number): Promise<void> {
    const holders = await this.db.selectFrom('operator_lineage').select('issuer_id').where('operator_id', '=', operatorId).where('kind', '=', 'created').execute();
    for (const h of holders) await this.addLineage({ operator_id: operatorId, issuer_id: h.issuer_id, kind: 'token', at });
  }

  /** Every lineage edge (a few per operator): four-eyes walks it both ways from the proposer. */
  async lineage(): Promise<Array<{ operator_id: string; issuer_id: string; kind: string }>> {
    return this.db.selectFrom('operator_lineage').select(['operator_id', 'issuer_id', 'kind']).execute();
  }

  async keys(): Promise<Array<KeyRecord & { agent_name: string }>> {
    return this.db
      .selectFrom('api_keys')
      .innerJoin('agents', 'agents.id', 'api_keys.agent_id')
      .selectAll('api_keys')
      .select('agents.name as agent_name')
      .orderBy('api_keys.created_at')
      .orderBy('api_keys.id')
      .execute();
  }

  async key(id: string, lock = false): Promise<(KeyRecord & { agent_name: string }) | undefined> {
    let q = this.db
      .selectFrom('api_keys')
      .innerJoin('agents', 'agents.id', 'api_keys.agent_id')
      .selectAll('api_keys')
      .select('agents.name as agent_name')
      .where('api_keys.id', '=', id);
    if (lock && this.capabilities.rowLocks) q = q.forUpdate();
    return q.executeTakeFirst();
  }

  async keysOfAgentNamed(name: string): Promise<Array<KeyRecord & { agent_name: string }>> {
    return this.db
      .selectFrom('api_keys')
      .innerJoin('agents', 'agents.id', 'api_keys.agent_id')
      .selectAll('api_keys')
      .select('agents.name as agent_name')
      .where('agents.name', '=', name)
      .orderBy('api_keys.created_at')
      .execute();
  }

  async updateKey(id: string, patch: Partial<Pick<KeyRecord, 'revoked_at' | 'expires_at' | 'mac'>>): Promise<void> {
    await this.db.updateTable('api_keys').set(patch).where('id', '=', id).execute();
  }

  /** Stamps last use at most once per `everyMs` (one conditional UPDATE; nothing when recent). */
  async touch(kind: 'agent' | 'operator', id: string, at: number, everyMs: number): Promise<void> {
    const table = kind === 'agent' ? 'api_keys' : 'operator_tokens';
    await this.db
      .updateTable(table)
      .set({ last_used_at: at })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at - everyMs)]))
      .execute();
  }

  /** Rows written before MACs existed (adopted once, on the start that creates the server secret). */
  async unsealed(): Promise<{ operators: OperatorRecord[]; tokens: TokenRecord[]; keys: Array<KeyRecord & { agent_name: string }> }> {
    return {
      operators: await this.db.selectFrom('operators').selectAll().where('mac', 'is', null).execute(),
      tokens: await this.db.selectFrom('operator_tokens').selectAll().where('mac', 'is', null).execute(),
      keys: await this.db.selectFrom('api_keys').innerJoin('agents', 'agents.id', 'api_keys.agent_id').selectAll('api_keys').select('agents.name as agent_name').where('api_keys.mac', 'is', null).execute(),
    };
  }

  // ---- one-off marks ----

  async mark(name: string): Promise<ServerMarksTable | undefined> {
    return this.db.selectFrom('server_marks').selectAll().where('name', '=', name).executeTakeFirst();
  }

  /** Inserts a mark once: false when it is already there (another process won the race). */
  async insertMark(row: ServerMarksTable): Promise<boolean> {
    const result = await this.db.insertInto('server_marks').values(row).onConflict((oc) => oc.column('name').doNothing()).executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
  }

  // ---- sessions ----

  async insertSession(row: SessionsTable): Promise<void> {
    await this.db.insertInto('sessions').values(row).execute();
  }

  async session(idHash: string): Promise<SessionsTable | undefined> {
    return this.db.selectFrom('sessions').selectAll().where('id_hash', '=', idHash).executeTakeFirst();
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('id_hash', '=', idHash).execute();
  }

  /** Ends every session made from these tokens (revocation, rotation), or of an operator. */
  async deleteSessions(by: { tokenIds?: readonly string[]; operatorId?: string }): Promise<number> {
    let q = this.db.deleteFrom('sessions');
    if (by.operatorId !== undefined) q = q.where('operator_id', '=', by.operatorId);
    else if (by.tokenIds && by.tokenIds.length > 0) q = q.where('token_id', 'in', [...by.tokenIds]);
    else return 0;
    const result = await q.executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async sweepSessions(at: number): Promise<void> {
    await this.db.deleteFrom('sessions').where('expires_at', '<=', at).execute();
  }

  // ---- step-up attempts ----

  /** Failed and in-flight attempts of one operator since `since`, oldest first. */
  async attemptsSince(operatorId: string, since: number): Promise<MfaAttemptsTable[]> {
    return this.db.selectFrom('mfa_attempts').selectAll().where('operator_id', '=', operatorId).where('at', '>', since).orderBy('at').orderBy('id').execute();
  }

  async insertAttempt(row: MfaAttemptsTable): Promise<void> {
    await this.db.insertInto('mfa_attempts').values(row).execute();
  }

  async settleAttempt(id: string, state: 'failed' | 'struck'): Promise<void> {
    await this.db.updateTable('mfa_attempts').set({ state }).where('id', '=', id).execute();
  }

  async deleteAttempt(id: string): Promise<void> {
    await this.db.deleteFrom('mfa_attempts').where('id', '=', id).execute();
  }

  async pruneAttempts(operatorId: string, before: number): Promise<void> {
    await this.db.deleteFrom('mfa_attempts').where('operator_id', '=', operatorId).where('at', '<=', before).execute();
  }
}



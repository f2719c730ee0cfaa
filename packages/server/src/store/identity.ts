/**
 * The identity provider's tables' SQL (issue 20): sign-ins in flight, provider subjects linked to
 * operators, SCIM users, groups, memberships and tokens. Rows with a `mac` are MACed by the
 * engine's identity room (identity/provisioning.ts); this file only reads and writes them.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Capabilities } from './connect.ts';
import type { Database } from './schema.ts';

export interface SsoLoginsTable {
  id_hash: string;
  state: string;
  nonce: string;
  verifier: string;
  /** The address that started it (IPv6: its /64 prefix); null when unknown. */
  client: string | null;
  created_at: number;
  expires_at: number;
}

export interface SsoIdentitiesTable {
  issuer: string;
  subject: string;
  operator_id: string;
  email: string;
  created_at: number;
  last_sign_in_at: number;
  /** HMAC under the server secret of (issuer, subject, operator_id). */
  mac: string;
}

export interface ScimUsersTable {
  operator_id: string;
  user_name: string;
  user_key: string;
  external_id: string | null;
  active: number;
  display_name: string | null;
  /** JSON: { givenName, familyName, formatted }. */
  name: string;
  /** JSON: [{ value, type, primary }]. */
  emails: string;
  created_at: number;
  updated_at: number;
  version: number;
  /** Deleted through SCIM (the operator is removed, its provider subjects unlinked); provisioning the userName again restores the operator with no subject linked. */
  removed_at: number | null;
  /** 1 when an admin disabled the operator (PATCH /v1/operators/:id): SCIM's `active: true` does not lift it. */
  admin_disabled: number;
  /** 1 once an admin removed the operator (`DELETE /v1/operators/:id`): SCIM never restores it (review2 F1). */
  admin_removed: number;
  /** HMAC under the server secret of (operator_id, user_key, admin_disabled, admin_removed). */
  mac: string;
}

export interface ScimGroupsTable {
  id: string;
  display_name: string;
  display_key: string;
  external_id: string | null;
  created_at: number;
  updated_at: number;
  version: number;
  /** HMAC under the server secret of (id, display_name, display_key, external_id): the role map reads them (review F2b). */
  mac: string;
}

export interface ScimMembersTable {
  group_id: string;
  operator_id: string;
  /** HMAC under the server secret of (group_id, operator_id): a row without one (null) or with a wrong one gives no role (review F2). */
  mac: string | null;
}

export interface ScimTokensTable {
  id: string;
  name: string;
  token_hash: string;
  created_at: number;
  created_by: string | null;
  revoked_at: number | null;
  last_used_at: number | null;
  /** HMAC under the server secret of (id, token_hash, revoked_at, created_by). */
  mac: string;
}

type Db = Kysely<Database> | Transaction<Database>;

export class IdentityQueries {
  constructor(
    private readonly db: Db,
    private readonly capabilities: Capabilities,
  ) {}

  // ---- sign-ins in flight ----

  async insertLogin(row: SsoLoginsTable): Promise<void> {
    await this.db.deleteFrom('sso_logins').where('expires_at', '<=', row.created_at).execute();
    await this.db.insertInto('sso_logins').values(row).execute();
  }

  async countLogins(client?: string): Promise<number> {
    let q = this.db.selectFrom('sso_logins').select((eb) => eb.fn.countAll<number>().as('n'));
    if (client !== undefined) q = q.where('client', '=', client);
    return Number((await q.executeTakeFirst())?.n ?? 0);
  }

  /** Deletes and returns the login: whoever deletes it gets it, once. */
  async takeLogin(idHash: string): Promise<SsoLoginsTable | undefined> {
    const row = await this.db.selectFrom('sso_logins').selectAll().where('id_hash', '=', idHash).executeTakeFirst();
    if (!row) return undefined;
    const gone = await this.db.deleteFrom('sso_logins').where('id_hash', '=', idHash).executeTakeFirst();
    return Number(gone.numDeletedRows) === 1 ? row : undefined;
  }

  // ---- linked subjects ----

  async identity(issuer: string, subject: string): Promise<SsoIdentitiesTable | undefined> {
    return this.db.selectFrom('sso_identities').selectAll().where('issuer', '=', issuer).where('subject', '=', subject).executeTakeFirst();
  }

  async identitiesOf(operatorId: string): Promise<SsoIdentitiesTable[]> {
    return this.db.selectFrom('sso_identities').selectAll().where('operator_id', '=', operatorId).execute();
  }

  async insertIdentity(row: SsoIdentitiesTable): Promise<void> {
    await this.db.insertInto('sso_identities').values(row).execute();
  }

  /** Unlinks every provider subject of an operator (a SCIM delete); the number unlinked. */
  async deleteIdentitiesOf(operatorId: string): Promise<number> {
    const gone = await this.db.deleteFrom('sso_identities').where('operator_id', '=', operatorId).executeTakeFirst();
    return Number(gone.numDeletedRows);
  }

  async touchIdentity(issuer: string, subject: string, at: number, email: string): Promise<void> {
    await this.db.updateTable('sso_identities').set({ last_sign_in_at: at, email }).where('issuer', '=', issuer).where('subject', '=', subject).execute();
  }

  // ---- SCIM users ----

  async scimUser(operatorId: string): Promise<ScimUsersTable | undefined> {
    return this.db.selectFrom('scim_users').selectAll().where('operator_id', '=', operatorId).executeTakeFirst();
  }

  async scimUserByKey(userKey: string): Promise<ScimUsersTable | undefined> {
    return this.db.selectFrom('scim_users').selectAll().where('user_key', '=', userKey).executeTakeFirst();
  }

  async scimUsers(filter: { column: 'user_key' | 'external_id' | 'operator_id'; value: string } | null, offset: number, limit: number): Promise<{ rows: ScimUsersTable[]; total: number }> {
    let q = this.db.selectFrom('scim_users').where('removed_at', 'is', null);
    if (filter) q = q.where(filter.column, '=', filter.value);
    const total = Number((await q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst())?.n ?? 0);
    const rows = limit === 0 ? [] : await q.selectAll().orderBy('created_at').orderBy('operator_id').offset(offset).limit(limit).execute();
    return { rows, total };
  }

  async insertScimUser(row: ScimUsersTable): Promise<void> {
    await this.db.insertInto('scim_users').values(row).execute();
  }

  async updateScimUser(operatorId: string, patch: Partial<Omit<ScimUsersTable, 'operator_id' | 'created_at'>>): Promise<void> {
    await this.db.updateTable('scim_users').set(patch).where('operator_id', '=', operatorId).execute();
  }

  /** A SCIM delete: the row stays (marked), its memberships go. */
  async removeScimUser(operatorId: string, at: number): Promise<void> {
    await this.db.deleteFrom('scim_members').where('operator_id', '=', operatorId).execute();
    await this.db.updateTable('scim_users').set({ removed_at: at, updated_at: at }).where('operator_id', '=', operatorId).execute();
  }

  // ---- SCIM groups ----

  async group(id: string, lock = false): Promise<ScimGroupsTable | undefined> {
    let q = this.db.selectFrom('scim_groups').selectAll().where('id', '=', id);
    if (lock && this.capabilities.rowLocks) q = q.forUpdate();
    return q.executeTakeFirst();
  }

  async groupByKey(displayKey: string): Promise<ScimGroupsTable | undefined> {
    return this.db.selectFrom('scim_groups').selectAll().where('display_key', '=', displayKey).executeTakeFirst();
  }

  async groups(filter: { column: 'display_key' | 'external_id' | 'id'; value: string } | null, offset: number, limit: number): Promise<{ rows: ScimGroupsTable[]; total: number }> {
    let q = this.db.selectFrom('scim_groups');
    if (filter) q = q.where(filter.column, '=', filter.value);
    const total = Number((await q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst())?.n ?? 0);
    const rows = limit === 0 ? [] : await q.selectAll().orderBy('created_at').orderBy('id').offset(offset).limit(limit).execute();
    return { rows, total };
  }

  async insertGroup(row: ScimGroupsTable): Promise<void> {
    await this.db.insertInto('scim_groups').values(row).execute();
  }

  async updateGroup(id: string, patch: Partial<Pick<ScimGroupsTable, 'display_name' | 'display_key' | 'external_id' | 'updated_at' | 'version' | 'mac'>>): Promise<void> {
    await this.db.updateTable('scim_groups').set(patch).where('id', '=', id).execute();
  }

  async deleteGroup(id: string): Promise<void> {
    await this.db.deleteFrom('scim_members').where('group_id', '=', id).execute();
    await this.db.deleteFrom('scim_groups').where('id', '=', id).execute();
  }

  async members(groupId: string): Promise<ScimMembersTable[]> {
    return this.db.selectFrom('scim_members').selectAll().where('group_id', '=', groupId).orderBy('operator_id').execute();
  }

  /** Adds (or re-seals: the provider said so now) membership rows with their MACs. */
  async addMembers(rows: readonly ScimMembersTable[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      await this.db.insertInto('scim_members').values(chunk).onConflict((oc) => oc.columns(['group_id', 'operator_id']).doUpdateSet((eb) => ({ mac: eb.ref('excluded.mac') }))).execute();
    }
  }

  async removeMembers(groupId: string, operatorIds: readonly string[]): Promise<void> {
    for (let i = 0; i < operatorIds.length; i += 500) {
      await this.db.deleteFrom('scim_members').where('group_id', '=', groupId).where('operator_id', 'in', operatorIds.slice(i, i + 500)).execute();
    }
  }

  /** The display names of an operator's groups. */
  async groupNamesOf(operatorId: string): Promise<Array<Pick<ScimGroupsTable, 'id' | 'display_name' | 'display_key' | 'external_id' | 'mac'> & { member_mac: string | null }>> {
    return this.db
      .selectFrom('scim_members')
      .innerJoin('scim_groups', 'scim_groups.id', 'scim_members.group_id')
      .select(['scim_groups.id', 'scim_groups.display_name', 'scim_groups.display_key', 'scim_groups.external_id', 'scim_groups.mac', 'scim_members.mac as member_mac'])
      .where('scim_members.operator_id', '=', operatorId)
      .orderBy('scim_groups.display_name')
      .execute();
  }

  /** Which of these ids are SCIM users (only they may be members). */
  /** A group's live members with their userName, in one query (not one per member). */
  async memberUsers(groupId: string): Promise<Array<{ id: string; userName: string; mac: string | null }>> {
    const rows = await this.db
      .selectFrom('scim_members')
      .innerJoin('scim_users', 'scim_users.operator_id', 'scim_members.operator_id')
      .select(['scim_members.operator_id as id', 'scim_users.user_name as userName', 'scim_members.mac as mac'])
      .where('scim_members.group_id', '=', groupId)
      .where('scim_users.removed_at', 'is', null)
      .orderBy('scim_members.operator_id')
      .execute();
    return rows.map((r) => ({ id: r.id, userName: r.userName, mac: r.mac }));
  }

  async scimUserIds(operatorIds: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (let i = 0; i < operatorIds.length; i += 500) {
      const rows = await this.db.selectFrom('scim_users').select('operator_id').where('removed_at', 'is', null).where('operator_id', 'in', operatorIds.slice(i, i + 500)).execute();
      for (const r of rows) found.add(r.operator_id);
    }
    return found;
  }

  // ---- SCIM tokens ----

  async scimToken(hash: string): Promise<ScimTokensTable | undefined> {
    return this.db.selectFrom('scim_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
  }

  async scimTokenById(id: string): Promise<ScimTokensTable | undefined> {
    return this.db.selectFrom('scim_tokens').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async scimTokensBy(makerId: string): Promise<ScimTokensTable[]> {
    return this.db.selectFrom('scim_tokens').selectAll().where('created_by', '=', makerId).orderBy('id').execute();
  }

  async scimTokens(): Promise<ScimTokensTable[]> {
    return this.db.selectFrom('scim_tokens').selectAll().orderBy('created_at').orderBy('id').execute();
  }

  async insertScimToken(row: ScimTokensTable): Promise<void> {
    await this.db.insertInto('scim_tokens').values(row).execute();
  }

  async updateScimToken(id: string, patch: Partial<Pick<ScimTokensTable, 'revoked_at' | 'mac'>>): Promise<void> {
    await this.db.updateTable('scim_tokens').set(patch).where('id', '=', id).execute();
  }

  async touchScimToken(id: string, at: number, everyMs: number): Promise<void> {
    await this.db
      .updateTable('scim_tokens')
      .set({ last_used_at: at })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at - everyMs)]))
      .execute();
  }
}

/**
 * Operators from the identity provider (issue 20): the shell around core's identity decisions.
 * A single sign-on creates or updates the operator behind a provider subject; SCIM creates,
 * changes, deactivates and deletes users and groups. Either way the operator's roles are the role
 * map's roles of its groups (core `rolesFromGroups`), written through the credentials room (which
 * MACs every operator row) with the change and its audit entry in one transaction.
 *
 * Boundaries that hold whatever the provider sends:
 * - Only operators the provider made are ever changed: a SCIM id or group member must be a SCIM
 *   user, and a sign-in whose name meets an operator made some other way (a token admin, the
 *   break-glass account) is refused, never linked.
 * - No mapped group, no role: a sign-in is refused, and an operator that loses every role keeps
 *   none and has its sessions ended (core `credentialStatus` refuses an operator without roles).
 * - Deactivation and deletion go through the credentials room's disable and removal: sessions end
 *   in the same transaction, the credential cache is cleared here and expires within 2 s on
 *   every other server.
 */
import { timingSafeEqual } from 'node:crypto';
import {
  CountersignError,
  ScimProblem,
  applyGroupPatch,
  applyUserPatch,
  asciiLower,
  replaceScimUser,
  operatorNameFor,
  rolesFromGroups,
  type IdentitySettings,
  type PatchOperation,
  type Role,
  type ScimGroupData,
  type ScimUserData,
  type ScimUserReplacement,
  type SignInIdentity,
} from '@countersign/core';
import { SYSTEM_ACTOR, draft, type AuditActor, type AuditWriter } from '../audit/writer.ts';
import type { Credentials } from '../engine/credentials.ts';
import { requireAdmin, scimTokenFields, scimUserFields } from '../engine/credentials.ts';
import type { Principal } from '../engine/principal.ts';
import { newId, newSecret, sha256Hex } from '../ids.ts';
import type { OperatorRecord } from '../store/credentials.ts';
import type { ScimGroupsTable, ScimTokensTable, ScimUsersTable, SsoLoginsTable } from '../store/identity.ts';
import type { Queries, Store } from '../store/store.ts';
import { inBackground } from '../store/sqlite-busy.ts';

/** A sign-in in flight lapses after this. */
export const LOGIN_TTL_MS = 10 * 60_000;
/** At most this many sign-ins in flight at once (an unauthenticated GET makes one). */
export const MAX_LOGINS_IN_FLIGHT = 10_000;
/** …and at most this many from one client address (IPv6: one /64), so one client cannot use up the rest. */
export const MAX_LOGINS_PER_CLIENT = 20;

export interface ScimCaller {
  readonly tokenId: string;
  readonly name: string;
  /** The admin who made the token: its authority and its lineage (review F1/F5). */
  readonly makerId: string;
}

export type SignInOutcome =
  | { ok: true; operatorId: string; name: string; roles: Role[]; session: { id: string; expiresAt: number } }
  | { ok: false; reason: 'no_role' | 'deactivated' | 'name_taken' | 'tampered' | 'last_admin'; message: string };

export interface ScimUserView {
  row: ScimUsersTable;
  groups: Array<{ id: string; display_name: string }>;
}

export interface ScimGroupView {
  row: ScimGroupsTable;
  members: Array<{ id: string; userName: string }>;
}

const scimActor = (caller: ScimCaller): AuditActor => ({ type: 'system', id: `scim:${caller.tokenId}`, name: `scim:${caller.name}` });
const oidcActor = (issuer: string): AuditActor => ({ type: 'system', id: 'oidc', name: issuer.slice(0, 200) });

export class Provisioning {
  constructor(
    private readonly store: Store,
    private readonly credentials: Credentials,
    private readonly writer: AuditWriter,
    readonly settings: IdentitySettings,
    private readonly now: () => number,
  ) {}

  private roles(groupKeys: readonly string[]) {
    return rolesFromGroups(groupKeys, this.settings.roleMap);
  }

  // ---- sign-ins in flight ----

  async beginLogin(row: Omit<SsoLoginsTable, 'created_at' | 'expires_at'>): Promise<void> {
    const at = this.now();
    await this.store.transaction(async (tx) => {
      await tx.identity.insertLogin({ ...row, created_at: at, expires_at: at + LOGIN_TTL_MS });
      if (row.client !== null && (await tx.identity.countLogins(row.client)) > MAX_LOGINS_PER_CLIENT) {
        throw new CountersignError('RATE_LIMITED', `more than ${MAX_LOGINS_PER_CLIENT} sign-ins started from this address are still open; finish one or wait ${LOGIN_TTL_MS / 60_000} minutes`);
      }
      if ((await tx.identity.countLogins()) > MAX_LOGINS_IN_FLIGHT) throw new CountersignError('RATE_LIMITED', 'too many sign-ins in flight; try again in a few minutes');
    });
  }

  /** The login this browser started, taken once (deleted), if it has not lapsed and `state` matches. */
  async takeLogin(idHash: string, state: string): Promise<SsoLoginsTable | undefined> {
    const row = await this.store.transaction((tx) => tx.identity.takeLogin(idHash));
    if (!row || Number(row.expires_at) <= this.now()) return undefined;
    const a = Buffer.from(row.state);
    const b = Buffer.from(state);
    return a.length === b.length && timingSafeEqual(a, b) ? row : undefined;
  }

  // ---- single sign-on ----

  private identityMac(issuer: string, subject: string, operatorId: string): string {
    return this.credentials.secret.mac('sso_identity', [issuer, subject, operatorId]);
  }

  private scimMac(operatorId: string, userKey: string, adminDisabled: number, adminRemoved: number): string {
    return this.credentials.secret.mac('scim_user', scimUserFields({ operator_id: operatorId, user_key: userKey, admin_disabled: adminDisabled, admin_removed: adminRemoved }));
  }

  /**
   * Review2 F6: a provider change refused by core's last-admin rule (syncManagedOperator) rolled
   * back everything; it is audited here, in a transaction of its own, and answered as a conflict.
   */
  private async lastAdminRefused(err: unknown, actor: AuditActor, source: 'oidc' | 'scim', change: string): Promise<boolean> {
    const details = err instanceof CountersignError ? (err.details as { reason?: string; operatorId?: string; name?: string } | undefined) : undefined;
    if (!(err instanceof CountersignError) || err.code !== 'ILLEGAL_TRANSITION' || details?.reason !== 'last_admin') return false;
    await this.store.transaction((tx) => this.writer.append(tx, [draft('operator_sync_refused', null, actor, { operatorId: details.operatorId ?? null, name: details.name ?? null, source, reason: 'last_admin', change }, this.now())]));
    return true;
  }

  /** Runs a SCIM change; one refused by the last-admin rule is audited and answered 409 (nothing changed). */
  private async scimChange<T>(caller: ScimCaller, change: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (await this.lastAdminRefused(err, scimActor(caller), 'scim', change)) {
        throw new ScimProblem(409, null, `refused: ${(err as Error).message.slice(0, 300)}; nothing was changed`);
      }
      throw err;
    }
  }

  private scimRowOk(row: ScimUsersTable): boolean {
    return this.credentials.secret.verify('scim_user', scimUserFields(row), row.mac);
  }

  /**
   * A verified identity signs in: its operator is found (by subject, else a SCIM user of that
   * address not yet linked) or made, given the roles of its groups, and a session. Refusals that
   * follow from the provider's word (no mapped role) are written too: the operator keeps no role.
   */
  async signIn(identity: SignInIdentity, ttlMs: number): Promise<SignInOutcome> {
    try {
      return await this.guardedSignIn(identity, ttlMs);
    } catch (err) {
      // Two first sign-ins of one person at once (PostgreSQL: neither sees the other's uncommitted
      // operator): the loser hits the unique name or (issuer, subject) and, run again, finds the
      // winner's link. Once only: a second collision is an error.
      if (!isUniqueViolation(err) && !(err instanceof LinkedMeanwhile)) throw err;
      return this.guardedSignIn(identity, ttlMs);
    }
  }

  /** Review2 F6: a sign-in whose groups would take admin from the last active admin is refused (audited), its roles left as they were. */
  private async guardedSignIn(identity: SignInIdentity, ttlMs: number): Promise<SignInOutcome> {
    try {
      return await this.signInOnce(identity, ttlMs);
    } catch (err) {
      if (!(await this.lastAdminRefused(err, oidcActor(identity.issuer), 'oidc', 'sign-in group sync'))) throw err;
      return { ok: false, reason: 'last_admin', message: 'your groups at the identity provider no longer give the admin role, and you are the last active admin here: make another admin first (your roles are unchanged)' };
    }
  }

  private async signInOnce(identity: SignInIdentity, ttlMs: number): Promise<SignInOutcome> {
    const actor = oidcActor(identity.issuer);
    const outcome = await this.store.transaction(async (tx): Promise<SignInOutcome> => {
      const at = this.now();
      const refuse = async (reason: Exclude<SignInOutcome, { ok: true }>['reason'], message: string, operatorId?: string): Promise<SignInOutcome> => {
        await this.writer.append(tx, [draft('sso_refused', null, actor, { issuer: identity.issuer, subject: identity.subject, reason, ...(operatorId ? { operatorId } : {}) }, at)]);
        return { ok: false, reason, message };
      };
      let row: OperatorRecord | undefined;
      let linked = false;
      const link = await tx.identity.identity(identity.issuer, identity.subject);
      if (link) {
        if (!this.credentials.secret.verify('sso_identity', [link.issuer, link.subject, link.operator_id], link.mac)) return refuse('tampered', 'this account’s link to its operator does not verify (edited in the database?)');
        row = await tx.credentials.operator(link.operator_id, true);
        linked = true;
      } else {
        const scim = await tx.identity.scimUserByKey(identity.email);
        if (scim && scim.removed_at === null && this.scimRowOk(scim) && (await tx.identity.identitiesOf(scim.operator_id)).every((i) => i.issuer !== identity.issuer)) {
          row = await tx.credentials.operator(scim.operator_id, true);
        } else if (scim && scim.removed_at !== null) {
          return refuse('deactivated', 'this account is deactivated (the identity provider deleted it)', scim.operator_id);
        } else if (await tx.credentials.operatorByName(operatorNameFor(identity.email))) {
          // A first sign-in of this subject committed between the link lookup above and this one
          // (PostgreSQL, read committed): its operator is the one found; run once more to find the link.
          if (await tx.identity.identity(identity.issuer, identity.subject)) throw new LinkedMeanwhile();
          return refuse('name_taken', `an operator named ${operatorNameFor(identity.email)} already exists and was not made by this identity provider; an admin must remove or rename it first`);
        }
      }
      if (row && !this.credentials.verifies(row)) return refuse('tampered', 'this account’s operator record does not verify (edited in the database?)', row.id);
      if (row && (row.removed_at !== null || row.disabled_at !== null)) return refuse('deactivated', 'this account is deactivated', row.id);
      const scimRow = row ? await tx.identity.scimUser(row.id) : undefined;
      // A SCIM-provisioned operator whose token carries no groups claim keeps the roles SCIM gave it.
      const mapped = scimRow && !identity.groupsPresent ? await this.scimRoles(tx, row!.id) : this.roles(identity.groups);
      if (!row) {
        if (mapped.roles.length === 0) return refuse('no_role', 'none of your groups gives a role here; ask an admin to map one');
        row = await this.credentials.insertManagedOperator(tx, { name: operatorNameFor(identity.email), roles: mapped.roles, groups: mapped.groups, disabled: false });
        await this.writer.append(tx, [draft('operator_provisioned', null, actor, { operatorId: row.id, name: row.name, source: 'oidc', roles: mapped.roles, groups: mapped.groups, disabled: false, subject: identity.subject }, at)]);
      } else {
        const synced = await this.credentials.syncManagedOperator(tx, row, { roles: mapped.roles, groups: mapped.groups, by: actor });
        await this.auditSync(tx, actor, 'oidc', synced);
        row = synced.row;
        if (mapped.roles.length === 0) return refuse('no_role', 'none of your groups gives a role here any more; ask an admin to map one', row.id);
      }
      if (!linked) await tx.identity.insertIdentity({ issuer: identity.issuer, subject: identity.subject, operator_id: row.id, email: identity.email, created_at: at, last_sign_in_at: at, mac: this.identityMac(identity.issuer, identity.subject, row.id) });
      else await tx.identity.touchIdentity(identity.issuer, identity.subject, at, identity.email);
      const session = await this.credentials.openManagedSession(tx, row.id, ttlMs);
      await this.writer.append(tx, [draft('sso_signed_in', null, { type: 'operator', id: row.id, name: row.name }, { operatorId: row.id, name: row.name, issuer: identity.issuer, subject: identity.subject, roles: mapped.roles }, at)]);
      return { ok: true, operatorId: row.id, name: row.name, roles: mapped.roles, session };
    });
    this.credentials.forget();
    return outcome;
  }

  /** A verified token refused on its claims about the person (domain, unverified email): worth an entry, since only the provider's users can cause one. */
  async recordRefusal(issuer: string, subject: unknown, reason: string): Promise<void> {
    if (typeof subject !== 'string' || subject === '' || subject.length > 255) return;
    await this.store.transaction((tx) => this.writer.append(tx, [draft('sso_refused', null, oidcActor(issuer), { issuer, subject, reason }, this.now())]));
  }

  private async auditSync(tx: Queries, actor: AuditActor, source: 'oidc' | 'scim', synced: Awaited<ReturnType<Credentials['syncManagedOperator']>>): Promise<void> {
    if (!synced.rolesChanged && !synced.groupsChanged && !synced.disabledChanged) return;
    const data: Record<string, unknown> = { operatorId: synced.row.id, name: synced.row.name, source, sessionsEnded: synced.sessionsEnded };
    if (synced.rolesChanged) {
      data.roles = JSON.parse(synced.row.roles);
      data.previousRoles = synced.before.roles;
    }
    if (synced.groupsChanged) data.groups = JSON.parse(synced.row.groups);
    if (synced.disabledChanged) data.disabled = synced.row.disabled_at !== null;
    if (synced.revokedTokenIds.length > 0) data.revokedTokenIds = synced.revokedTokenIds;
    await this.writer.append(tx, [draft('operator_synced', null, actor, data, this.now())]);
  }

  // ---- SCIM tokens (admin) ----

  private tokenMac(row: Pick<ScimTokensTable, 'id' | 'token_hash' | 'revoked_at' | 'created_by'>): string {
    return this.credentials.secret.mac('scim_token', scimTokenFields(row));
  }

  async createScimToken(by: Principal, name: string): Promise<{ id: string; name: string; token: string; createdAt: string }> {
    const admin = requireAdmin(by);
    if (!/^[A-Za-z0-9 _.@-]{1,64}$/.test(name)) throw new CountersignError('VALIDATION_FAILED', 'the token name must be 1–64 letters, digits, spaces or _ . @ -', { field: 'name' });
    const token = newSecret('css');
    const at = this.now();
    const id = newId('scim', at);
    const row = { id, name, token_hash: sha256Hex(token), created_at: at, created_by: admin.operatorId, revoked_at: null, last_used_at: null };
    await this.store.transaction(async (tx) => {
      await tx.identity.insertScimToken({ ...row, mac: this.tokenMac(row) });
      await this.writer.append(tx, [draft('scim_token_created', null, admin, { tokenId: id, name }, at)]);
    });
    return { id, name, token, createdAt: new Date(at).toISOString() };
  }

  async listScimTokens(by: Principal) {
    requireAdmin(by);
    return (await this.store.identity.scimTokens()).map((t) => this.tokenView(t));
  }

  private tokenView(t: ScimTokensTable) {
    const iso = (v: number | null) => (v === null ? null : new Date(Number(v)).toISOString());
    const valid = this.credentials.secret.verify('scim_token', scimTokenFields(t), t.mac);
    return { id: t.id, name: t.name, status: !valid ? ('invalid' as const) : t.revoked_at !== null ? ('revoked' as const) : ('active' as const), createdAt: iso(t.created_at)!, createdBy: t.created_by, lastUsedAt: iso(t.last_used_at), revokedAt: iso(t.revoked_at) };
  }

  async revokeScimToken(by: Principal, id: string) {
    const admin = requireAdmin(by);
    return this.store.transaction(async (tx) => {
      const row = await tx.identity.scimTokenById(id);
      if (!row) throw new CountersignError('NOT_FOUND', `no SCIM token ${id}`);
      if (row.revoked_at !== null) return this.tokenView(row);
      const at = this.now();
      const next = { ...row, revoked_at: at };
      await tx.identity.updateScimToken(id, { revoked_at: at, mac: this.tokenMac(next) });
      await this.writer.append(tx, [draft('scim_token_revoked', null, admin, { tokenId: id, name: row.name }, at)]);
      return this.tokenView({ ...next, mac: this.tokenMac(next) });
    });
  }

  /** The SCIM client behind a bearer token, or undefined (unknown, revoked, or a row that does not verify). Read every time: a revocation holds at once. */
  async authenticateScim(token: string): Promise<ScimCaller | undefined> {
    if (!token.startsWith('css_') || token.length > 200) return undefined;
    const row = await this.store.identity.scimToken(sha256Hex(token));
    if (!row || row.revoked_at !== null || row.created_by === null) return undefined;
    if (!this.credentials.secret.verify('scim_token', scimTokenFields(row), row.mac)) return undefined;
    // Review F5: the token acts with its maker's authority, checked at every use (the maker's
    // removal or disable also revokes it): a maker who is not an active admin now, no SCIM.
    const maker = await this.credentials.operatorPrincipal(row.created_by);
    if (!maker || maker.operatorId !== row.created_by || !maker.roles.includes('admin')) return undefined;
    const at = this.now();
    if (row.last_used_at === null || Number(row.last_used_at) < at - 60_000) inBackground(() => this.store.identity.touchScimToken(row.id, at, 60_000)).catch(() => {});
    return { tokenId: row.id, name: row.name, makerId: row.created_by };
  }

  // ---- SCIM users ----

  private groupMac(g: Pick<ScimGroupsTable, 'id' | 'display_name' | 'display_key' | 'external_id'>): string {
    return this.credentials.secret.mac('scim_group', [g.id, g.display_name, g.display_key, g.external_id]);
  }

  private groupOk(g: Pick<ScimGroupsTable, 'id' | 'display_name' | 'display_key' | 'external_id' | 'mac'>): boolean {
    return this.credentials.secret.verify('scim_group', [g.id, g.display_name, g.display_key, g.external_id], g.mac);
  }

  private memberRows(groupId: string, operatorIds: readonly string[]) {
    return operatorIds.map((operator_id) => ({ group_id: groupId, operator_id, mac: this.credentials.secret.mac('scim_member', [groupId, operator_id]) }));
  }

  private memberOk(groupId: string, operatorId: string, mac: string | null): boolean {
    return mac !== null && this.credentials.secret.verify('scim_member', [groupId, operatorId], mac);
  }

  /**
   * An operator's groups whose group row and membership row both verify (review F2/F2b: a row a
   * database writer planted or edited gives no role); `refused`: the ones that do not.
   */
  private async verifiedGroupsOf(q: Queries, operatorId: string) {
    const rows = await q.identity.groupNamesOf(operatorId);
    const ok = rows.filter((g) => this.groupOk(g) && this.memberOk(g.id, operatorId, g.member_mac));
    return { ok, refused: rows.filter((g) => !ok.includes(g)) };
  }

  /** The role map's roles of an operator's verified groups; refused rows are audited (and give nothing). */
  private async scimRoles(q: Queries, operatorId: string) {
    const { ok, refused } = await this.verifiedGroupsOf(q, operatorId);
    if (refused.length > 0) {
      await this.writer.append(q, [draft('identity_row_refused', null, SYSTEM_ACTOR, { table: 'scim_groups/scim_members', operatorId, groupIds: refused.map((g) => g.id).slice(0, 50) }, this.now())]);
    }
    return this.roles(ok.flatMap((g) => (g.external_id ? [g.display_name, g.external_id] : [g.display_name])));
  }

  /** A live SCIM user (not deleted) by id, with a verified row, or 404. */
  private async liveUser(q: Queries, id: string): Promise<ScimUsersTable> {
    const row = await q.identity.scimUser(id);
    if (!row || row.removed_at !== null) throw new ScimProblem(404, null, `no user ${id.slice(0, 100)}`);
    if (!this.scimRowOk(row)) throw new ScimProblem(409, null, `user ${id.slice(0, 100)}: its record does not verify under the server secret (edited in the database?); it is not changed`);
    return row;
  }

  async userView(q: Queries, row: ScimUsersTable): Promise<ScimUserView> {
    return { row, groups: (await this.verifiedGroupsOf(q, row.operator_id)).ok.map((g) => ({ id: g.id, display_name: g.display_name })) };
  }

  async getUser(id: string): Promise<ScimUserView> {
    return this.userView(this.store, await this.liveUser(this.store, id));
  }

  async listUsers(filter: { column: 'user_key' | 'external_id' | 'operator_id'; value: string } | null, offset: number, limit: number) {
    const { rows, total } = await this.store.identity.scimUsers(filter, offset, limit);
    return { total, items: await Promise.all(rows.map((r) => this.userView(this.store, r))) };
  }

  async createUser(caller: ScimCaller, data: ScimUserData): Promise<ScimUserView> {
    const actor = scimActor(caller);
    const view = await this.scimChange(caller, 'create', () => this.store.transaction(async (tx) => {
      const at = this.now();
      const key = asciiLower(data.userName);
      const existing = await tx.identity.scimUserByKey(key);
      if (existing && existing.removed_at === null) throw new ScimProblem(409, 'uniqueness', `a user with userName ${data.userName.slice(0, 100)} exists`);
      const name = operatorNameFor(data.userName);
      if (name === 'me' || name === '') throw new ScimProblem(400, 'invalidValue', 'this userName cannot name an operator');
      if (existing) {
        // Deleted before, provisioned again: the same operator comes back with no provider subject
        // linked (the delete unlinked them: review F6) and its old tokens revoked.
        if (!this.scimRowOk(existing)) throw new ScimProblem(409, 'uniqueness', `user ${data.userName.slice(0, 100)}: its record does not verify; an admin must remove it`);
        // Review2 F1: an admin's removal is final for SCIM: only an admin brings the person back (a new operator).
        if (Number(existing.admin_removed) === 1) throw new ScimProblem(409, 'uniqueness', `user ${data.userName.slice(0, 100)}: an admin removed this operator; SCIM cannot restore it (an admin must act in Countersign)`);
        const operator = await tx.credentials.operator(existing.operator_id, true);
        if (!operator) throw new ScimProblem(409, 'uniqueness', `user ${data.userName.slice(0, 100)} cannot be restored`);
        await tx.identity.updateScimUser(existing.operator_id, { ...this.userColumns(data), removed_at: null, updated_at: at, version: Number(existing.version) + 1 });
        const roles = await this.scimRoles(tx, existing.operator_id);
        await this.credentials.madeByScimMaker(tx, operator.id, caller.makerId, at);
        await this.credentials.syncManagedOperator(tx, operator, { roles: roles.roles, groups: roles.groups, disabled: !data.active || Number(existing.admin_disabled) === 1, removed: false, grantedBy: caller.makerId, by: actor });
        await this.writer.append(tx, [draft('operator_provisioned', null, actor, { operatorId: operator.id, name: operator.name, source: 'scim', roles: roles.roles, groups: roles.groups, disabled: !data.active, scimId: operator.id }, at)]);
        return this.userView(tx, (await tx.identity.scimUser(operator.id))!);
      }
      if (await tx.credentials.operatorByName(name)) throw new ScimProblem(409, 'uniqueness', `an operator named ${name} exists and was not provisioned by SCIM`);
      const operator = await this.credentials.insertManagedOperator(tx, { name, roles: [], groups: [], disabled: !data.active, madeBy: caller.makerId });
      await tx.identity.insertScimUser({ operator_id: operator.id, user_key: key, ...this.userColumns(data), created_at: at, updated_at: at, version: 1, removed_at: null, admin_disabled: 0, admin_removed: 0, mac: this.scimMac(operator.id, key, 0, 0) });
      await this.writer.append(tx, [draft('operator_provisioned', null, actor, { operatorId: operator.id, name, source: 'scim', roles: [], groups: [], disabled: !data.active, scimId: operator.id }, at)]);
      return this.userView(tx, (await tx.identity.scimUser(operator.id))!);
    }));
    this.credentials.forget();
    return view;
  }

  private userColumns(data: ScimUserData) {
    return { user_name: data.userName, external_id: data.externalId, active: data.active ? 1 : 0, display_name: data.displayName, name: JSON.stringify(data.name), emails: JSON.stringify(data.emails) };
  }

  userData(row: ScimUsersTable): ScimUserData {
    return { userName: row.user_name, externalId: row.external_id, active: Number(row.active) === 1, displayName: row.display_name, name: JSON.parse(row.name), emails: JSON.parse(row.emails) };
  }

  /** PUT (a whole user) or PATCH (operations on it): the new state written, `active` applied to the operator. */
  async updateUser(caller: ScimCaller, id: string, change: { put: ScimUserReplacement } | { patch: readonly PatchOperation[] }): Promise<ScimUserView> {
    const actor = scimActor(caller);
    const view = await this.scimChange(caller, 'update user', () => this.store.transaction(async (tx) => {
      const operator = await tx.credentials.operator(id, true);
      const row = await this.liveUser(tx, id);
      if (!operator || operator.removed_at !== null) throw new ScimProblem(404, null, `no user ${id.slice(0, 100)}`);
      const before = this.userData(row);
      const next = 'put' in change ? replaceScimUser(before, change.put) : applyUserPatch(before, change.patch);
      const key = asciiLower(next.userName);
      if (key !== row.user_key) {
        const other = await tx.identity.scimUserByKey(key);
        if (other && other.operator_id !== id) throw new ScimProblem(409, 'uniqueness', `a user with userName ${next.userName.slice(0, 100)} exists`);
      }
      const at = this.now();
      await tx.identity.updateScimUser(id, { ...this.userColumns(next), user_key: key, updated_at: at, version: Number(row.version) + 1, mac: this.scimMac(id, key, Number(row.admin_disabled), Number(row.admin_removed)) });
      // Review F4: only a change of `active` moves the operator's disable, and `active: true` never
      // lifts an admin's disable (scim_users.admin_disabled, set by the admin's PATCH): a profile
      // push from the directory leaves an incident responder's kill switch where it is.
      const disabled = next.active === before.active ? undefined : !next.active ? true : Number(row.admin_disabled) === 1 ? undefined : false;
      const synced = await this.credentials.syncManagedOperator(tx, operator, { disabled, by: actor });
      await this.auditSync(tx, actor, 'scim', synced);
      return this.userView(tx, (await tx.identity.scimUser(id))!);
    }));
    this.credentials.forget();
    return view;
  }

  async deleteUser(caller: ScimCaller, id: string): Promise<void> {
    const actor = scimActor(caller);
    await this.scimChange(caller, 'delete user', () => this.store.transaction(async (tx) => {
      const operator = await tx.credentials.operator(id, true);
      await this.liveUser(tx, id);
      if (!operator) throw new ScimProblem(404, null, `no user ${id.slice(0, 100)}`);
      const at = this.now();
      const groups = await tx.identity.groupNamesOf(id);
      await tx.identity.removeScimUser(id, at);
      // Review F6: the departed person's provider subject is unlinked, so a recycled userName (a new
      // hire given the address) is restored with no subject: the old subject can never sign in to
      // it, and the new one links at its first sign-in.
      const unlinked = await tx.identity.deleteIdentitiesOf(id);
      const synced = await this.credentials.syncManagedOperator(tx, operator, { removed: true, roles: [], groups: [], by: actor });
      for (const g of groups) await this.writer.append(tx, [draft('scim_group_changed', null, actor, { groupId: g.id, displayName: g.display_name, change: 'updated', added: [], removed: [id] }, at)]);
      await this.writer.append(tx, [draft('operator_deprovisioned', null, actor, { operatorId: id, name: operator.name, source: 'scim', revokedTokenIds: synced.revokedTokenIds, sessionsEnded: synced.sessionsEnded, unlinkedSubjects: unlinked }, at)]);
    }));
    this.credentials.forget();
  }

  // ---- SCIM groups ----

  async groupView(q: Queries, row: ScimGroupsTable): Promise<ScimGroupView> {
    const members = (await q.identity.memberUsers(row.id)).filter((m) => this.memberOk(row.id, m.id, m.mac)).map((m) => ({ id: m.id, userName: m.userName }));
    return { row, members };
  }

  /** A group by id, or 404; one whose row does not verify is refused (409), never re-sealed, except to delete it. */
  private async liveGroup(q: Queries, id: string, lock = false, toDelete = false): Promise<ScimGroupsTable> {
    const row = await q.identity.group(id, lock);
    if (!row) throw new ScimProblem(404, null, `no group ${id.slice(0, 100)}`);
    if (!toDelete && !this.groupOk(row)) throw new ScimProblem(409, null, `group ${id.slice(0, 100)}: its record does not verify under the server secret (edited in the database?); it is not changed`);
    return row;
  }

  /** A group's members whose membership rows verify. */
  private async verifiedMembers(q: Queries, groupId: string): Promise<string[]> {
    return (await q.identity.members(groupId)).filter((m) => this.memberOk(groupId, m.operator_id, m.mac)).map((m) => m.operator_id);
  }

  async getGroup(id: string): Promise<ScimGroupView> {
    return this.groupView(this.store, await this.liveGroup(this.store, id));
  }

  async listGroups(filter: { column: 'display_key' | 'external_id' | 'id'; value: string } | null, offset: number, limit: number, withMembers: boolean) {
    const { rows, total } = await this.store.identity.groups(filter, offset, limit);
    return { total, items: await Promise.all(rows.map(async (r) => (withMembers ? this.groupView(this.store, r) : { row: r, members: [] }))) };
  }

  /** Every id must be a live SCIM user: SCIM never reaches an operator it did not make. Call with the operators locked (`lockOperators`). */
  private async checkMembers(tx: Queries, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const known = await tx.identity.scimUserIds(ids);
    const unknown = ids.filter((id) => !known.has(id));
    if (unknown.length > 0) throw new ScimProblem(400, 'invalidValue', `not SCIM users here: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}`);
  }

  /** Recomputes the roles of these operators from their groups (rows locked in id order first). */
  private async resync(tx: Queries, caller: ScimCaller, operatorIds: readonly string[]): Promise<void> {
    const actor = scimActor(caller);
    for (const id of [...new Set(operatorIds)].sort()) {
      const row = await tx.credentials.operator(id, true);
      if (!row || row.removed_at !== null) continue;
      const mapped = await this.scimRoles(tx, id);
      const synced = await this.credentials.syncManagedOperator(tx, row, { roles: mapped.roles, groups: mapped.groups, grantedBy: caller.makerId, by: actor });
      await this.auditSync(tx, actor, 'scim', synced);
    }
  }

  private async lockOperators(tx: Queries, ids: readonly string[]): Promise<void> {
    for (const id of [...new Set(ids)].sort()) await tx.credentials.operator(id, true);
  }

  async createGroup(caller: ScimCaller, data: ScimGroupData): Promise<ScimGroupView> {
    const actor = scimActor(caller);
    const view = await this.scimChange(caller, 'create group', () => this.store.transaction(async (tx) => {
      const key = asciiLower(data.displayName);
      if (await tx.identity.groupByKey(key)) throw new ScimProblem(409, 'uniqueness', `a group named ${data.displayName.slice(0, 100)} exists`);
      // Locked before they are checked (PostgreSQL): a SCIM delete of a member commits before the
      // check, and is seen, or waits for this change, never lands between the two.
      await this.lockOperators(tx, data.members);
      await this.checkMembers(tx, data.members);
      const at = this.now();
      const id = newId('grp', at);
      const group = { id, display_name: data.displayName, display_key: key, external_id: data.externalId };
      await tx.identity.insertGroup({ ...group, created_at: at, updated_at: at, version: 1, mac: this.groupMac(group) });
      await tx.identity.addMembers(this.memberRows(id, data.members));
      await this.writer.append(tx, [draft('scim_group_changed', null, actor, { groupId: id, displayName: data.displayName, change: 'created', added: data.members, removed: [] }, at)]);
      await this.resync(tx, caller, data.members);
      return this.groupView(tx, (await tx.identity.group(id))!);
    }));
    this.credentials.forget();
    return view;
  }

  async updateGroup(caller: ScimCaller, id: string, change: { put: ScimGroupData } | { patch: readonly PatchOperation[] }): Promise<ScimGroupView> {
    const actor = scimActor(caller);
    const view = await this.scimChange(caller, 'update group', () => this.store.transaction(async (tx) => {
      const row = await this.liveGroup(tx, id, true);
      const current = await this.verifiedMembers(tx, id);
      const before: ScimGroupData = { displayName: row.display_name, externalId: row.external_id, members: current };
      const next = 'put' in change ? change.put : applyGroupPatch(before, change.patch);
      const key = asciiLower(next.displayName);
      if (key !== row.display_key) {
        const other = await tx.identity.groupByKey(key);
        if (other && other.id !== id) throw new ScimProblem(409, 'uniqueness', `a group named ${next.displayName.slice(0, 100)} exists`);
      }
      const had = new Set(current);
      const wants = new Set(next.members);
      const added = next.members.filter((m) => !had.has(m));
      const removed = current.filter((m) => !wants.has(m));
      const renamed = next.displayName !== row.display_name || next.externalId !== row.external_id;
      const affected = renamed ? [...new Set([...current, ...added])] : [...added, ...removed];
      await this.lockOperators(tx, affected);
      await this.checkMembers(tx, added); // after the lock, as in createGroup
      const at = this.now();
      const group = { id, display_name: next.displayName, display_key: key, external_id: next.externalId };
      await tx.identity.updateGroup(id, { ...group, updated_at: at, version: Number(row.version) + 1, mac: this.groupMac(group) });
      await tx.identity.addMembers(this.memberRows(id, added));
      await tx.identity.removeMembers(id, removed);
      if (renamed || added.length > 0 || removed.length > 0) {
        await this.writer.append(tx, [draft('scim_group_changed', null, actor, { groupId: id, displayName: next.displayName, change: 'updated', added, removed }, at)]);
      }
      await this.resync(tx, caller, affected);
      return this.groupView(tx, (await tx.identity.group(id))!);
    }));
    this.credentials.forget();
    return view;
  }

  async deleteGroup(caller: ScimCaller, id: string): Promise<void> {
    const actor = scimActor(caller);
    await this.scimChange(caller, 'delete group', () => this.store.transaction(async (tx) => {
      const row = await this.liveGroup(tx, id, true, true);
      const members = (await tx.identity.members(id)).map((m) => m.operator_id);
      await this.lockOperators(tx, members);
      await tx.identity.deleteGroup(id);
      await this.writer.append(tx, [draft('scim_group_changed', null, actor, { groupId: id, displayName: row.display_name, change: 'deleted', added: [], removed: members }, this.now())]);
      await this.resync(tx, caller, members);
    }));
    this.credentials.forget();
  }
}

/** A concurrent first sign-in of the same subject linked it while this one was looking (signIn runs once more). */
class LinkedMeanwhile extends Error {}

/** A unique-constraint violation on either engine. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || /UNIQUE constraint failed/.test(e?.message ?? '');
}

/**
 * Identity and credentials, a role module of the engine (issue 13): who a bearer credential or a
 * dashboard session is, and the lifecycle of operators, their tokens and agent keys — list,
 * revoke, rotate (with a grace period), disable, enable, set roles, remove, rotate a token,
 * break-glass recovery. Every change and its audit entry commit in one transaction.
 *
 * Rows are MACed under the server secret (keys/server-secret.ts): authentication refuses a row
 * whose MAC does not verify, so someone who can write the database but not read the secret file
 * cannot mint a credential, raise an operator's roles or re-enable one. (They can still put back
 * a row exactly as it once was; the MAC cannot tell a restored copy from the original.)
 *
 * Verified credentials are cached for `CREDENTIAL_CACHE_MS` (2 s): a revocation, a disable or a
 * removal takes effect at once on this server (the cache is cleared) and within 2 s on every
 * other server sharing the database; open streams re-check every second (http/stream-auth.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  CountersignError,
  ROLES,
  checkOperatorChange,
  credentialStatus,
  graceEnd,
  operatorStatus,
  type ManagedOperator,
  type Role,
} from '@countersign/core';
import { newId, newSecret, sha256Hex } from '../ids.ts';
import { SYSTEM_ACTOR, actorOf, draft, type AuditActor, type AuditDraft, type AuditWriter } from '../audit/writer.ts';
import type { ServerSecret } from '../keys/server-secret.ts';
import type { KeyRecord, OperatorRecord, TokenRecord } from '../store/credentials.ts';
import type { Queries, Store } from '../store/store.ts';
import { inBackground } from '../store/sqlite-busy.ts';
import type { Principal } from './principal.ts';
import { refuseReservedName } from './refs.ts';

export const CREDENTIAL_CACHE_MS = 2_000;
/** How many `operator_created` entries bootstrap reads to see that every one was tokenless. */
const TOKENLESS_SCAN = 16;
/** `last_used_at` is stamped at most this often per credential (one conditional UPDATE). */
export const LAST_USED_EVERY_MS = 60_000;

type Operator = Extract<Principal, { kind: 'operator' }>;

/** What a listing shows of an agent key: never the key, nor any part of it. */
export interface KeyView {
  id: string;
  agentId: string;
  agentName: string;
  status: 'active' | 'expiring' | 'revoked' | 'expired' | 'invalid';
  createdAt: string;
  createdBy: string | null;
  lastUsedAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

export interface OperatorView {
  id: string;
  name: string;
  roles: Role[];
  groups: string[];
  disabled: boolean;
  createdAt: string;
  lastUsedAt: string | null;
  activeTokens: number;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());
const num = (v: number | null) => (v === null ? null : Number(v));

export function sessionIdHash(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

export class Credentials {
  private readonly principals = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly store: Store,
    private readonly now: () => number,
    private readonly writer: AuditWriter,
    readonly secret: ServerSecret,
  ) {}

  /** Revokes an operator's passkeys enrolled since `since`, in `tx` (the engine wires guard/webauthn.ts revokeEnrolledSince); its audit drafts. */
  private passkeysSince: (tx: Queries, actor: AuditActor, operatorId: string, name: string, since: number, reason: string, at: number) => Promise<AuditDraft[]> = async () => [];

  usePasskeyReset(reset: (tx: Queries, actor: AuditActor, operatorId: string, name: string, since: number, reason: string, at: number) => Promise<AuditDraft[]>): void {
    this.passkeysSince = reset;
  }

  /** When the oldest of an operator's tokens still live at `at` was issued (`at` when none is): whoever held one of them could have enrolled a passkey since. */
  private liveSince(tokens: readonly TokenRecord[], at: number): number {
    const live = tokens.filter((t) => t.revoked_at === null || Number(t.revoked_at) > at).map((t) => Number(t.created_at));
    return live.length === 0 ? at : Math.min(...live);
  }

  // ---- MACs ----

  private operatorFields(r: OperatorRecord): unknown[] {
    return [r.id, r.name, r.roles, r.groups, num(r.disabled_at), num(r.removed_at), Number(r.tokenless) === 1];
  }

  private tokenFields(r: TokenRecord): unknown[] {
    return [r.id, r.operator_id, r.token_hash, num(r.revoked_at), num(r.expires_at)];
  }

  /** The agent's name is bound too: policy reads it (per-agent rules), and the `agents` row has no MAC of its own. */
  private keyFields(r: KeyRecord, agentName: string): unknown[] {
    return [r.id, r.agent_id, agentName, r.key_hash, num(r.revoked_at), num(r.expires_at)];
  }

  private sessionFields(r: { id_hash: string; operator_id: string; token_id: string; expires_at: number }): unknown[] {
    return [r.id_hash, r.operator_id, r.token_id, Number(r.expires_at)];
  }

  private sealOperator(r: OperatorRecord): OperatorRecord {
    return { ...r, mac: this.secret.mac('operator', this.operatorFields(r)) };
  }

  private sealToken(r: TokenRecord): TokenRecord {
    return { ...r, mac: this.secret.mac('token', this.tokenFields(r)) };
  }

  private sealKey(r: KeyRecord, agentName: string): KeyRecord {
    return { ...r, mac: this.secret.mac('key', this.keyFields(r, agentName)) };
  }

  private keyOk(r: KeyRecord, agentName: string): boolean {
    return this.secret.verify('key', this.keyFields(r, agentName), r.mac);
  }

  private operatorOk(r: OperatorRecord): boolean {
    return this.secret.verify('operator', this.operatorFields(r), r.mac);
  }

  /** Refuses to act on an operator row whose MAC does not verify (edited or planted in the database). */
  private refuseTampered(r: OperatorRecord): void {
    if (this.operatorOk(r)) return;
    throw new CountersignError(
      'VALIDATION_FAILED',
      `operator ${r.name} (${r.id}): its record does not verify under the server secret (edited in the database?); it is not changed — run \`countersign admin recover\` where the secret file is to reset it`,
      { operatorId: r.id, tampered: true },
    );
  }

  /**
   * Writes an operator change with its new MAC. The old row must verify first: re-sealing a row a
   * database writer edited (raised roles, say) would launder the edit into a MAC-valid row. Only
   * break-glass (`admin recover`, `knowingly`) re-seals a row whatever it holds.
   */
  private async patchOperator(tx: Queries, row: OperatorRecord, patch: Partial<Pick<OperatorRecord, 'roles' | 'groups' | 'disabled_at' | 'removed_at' | 'tokenless'>>, knowingly = false): Promise<OperatorRecord> {
    if (!knowingly) this.refuseTampered(row);
    const next = this.sealOperator({ ...row, ...patch });
    await tx.credentials.updateOperator(row.id, { ...patch, mac: next.mac });
    return next;
  }

  private async revokeTokens(tx: Queries, tokens: readonly TokenRecord[], at: number): Promise<string[]> {
    const revoked: string[] = [];
    for (const token of tokens) {
      if (token.revoked_at !== null && Number(token.revoked_at) <= at) continue;
      const next = this.sealToken({ ...token, revoked_at: at });
      await tx.credentials.updateToken(token.id, { revoked_at: at, mac: next.mac });
      revoked.push(token.id);
    }
    return revoked;
  }

  // ---- who is calling ----

  /** Forget every cached verification (after any change made here; other servers wait out the cache). */
  forget(): void {
    this.principals.clear();
  }

  async authenticateHash(hash: string): Promise<Principal | undefined> {
    const now = this.now();
    const cached = this.principals.get(hash);
    if (cached && cached.until > now) return cached.principal;
    const found = await this.store.credentials.find(hash);
    if (!found) return undefined;
    let principal: Principal;
    if (found.kind === 'agent') {
      const k = found.key;
      const status = credentialStatus({ revokedAt: num(k.revoked_at), expiresAt: num(k.expires_at), macValid: this.keyOk(k, found.agentName) }, null, now);
      if (!status.ok) return undefined;
      principal = { kind: 'agent', agentId: k.agent_id, agentName: found.agentName };
      this.touch('agent', k.id, k.last_used_at, now);
    } else {
      const t = found.token;
      const o = found.operator;
      const status = credentialStatus(
        { revokedAt: num(t.revoked_at), expiresAt: num(t.expires_at), macValid: this.secret.verify('token', this.tokenFields(t), t.mac) },
        { disabledAt: num(o.disabled_at), removedAt: num(o.removed_at), macValid: this.operatorOk(o), roles: JSON.parse(o.roles) as string[] },
        now,
      );
      if (!status.ok) return undefined;
      principal = { kind: 'operator', operatorId: o.id, name: o.name, roles: JSON.parse(o.roles) as Role[], groups: JSON.parse(o.groups) as string[] };
      this.touch('operator', t.id, t.last_used_at, now);
    }
    if (this.principals.size >= 10_000) this.principals.clear();
    this.principals.set(hash, { principal, until: now + CREDENTIAL_CACHE_MS });
    return principal;
  }

  /**
   * An operator by name or id as someone acting for them without their token (a Slack click
   * mapped to them, a reassignment or cool-down naming them): the same operator checks as a
   * login — MAC under the server secret, not removed, not disabled — or undefined.
   */
  async operatorPrincipal(ref: string, q: Queries | Store = this.store): Promise<Operator | undefined> {
    // An id before a name (engine/refs.ts): a name that spells another operator's id never shadows it.
    const row = (await q.credentials.operator(ref)) ?? (await q.credentials.operatorByName(ref));
    if (!row) return undefined;
    const status = operatorStatus({ disabledAt: num(row.disabled_at), removedAt: num(row.removed_at), macValid: this.operatorOk(row), roles: JSON.parse(row.roles) as string[] });
    if (!status.ok) return undefined;
    return { kind: 'operator', operatorId: row.id, name: row.name, roles: JSON.parse(row.roles) as Role[], groups: JSON.parse(row.groups) as string[] };
  }

  /**
   * `operatorPrincipal` by operator id on the credential cache (2 s, cleared by every change made
   * here): for in-process callers that hold a principal object (the embedded gateway), so a disable,
   * removal or role change holds for them as it does for a token.
   */
  async currentOperator(operatorId: string): Promise<Operator | undefined> {
    const now = this.now();
    const key = `operator:${operatorId}`;
    const cached = this.principals.get(key);
    if (cached && cached.until > now) return cached.principal as Operator;
    const principal = await this.operatorPrincipal(operatorId);
    if (!principal || principal.operatorId !== operatorId) return undefined;
    if (this.principals.size >= 10_000) this.principals.clear();
    this.principals.set(key, { principal, until: now + CREDENTIAL_CACHE_MS });
    return principal;
  }

  /**
   * Review2 F4: the operator behind a principal as it is now, its row read under lock inside the
   * caller's transaction (one primary-key read; PostgreSQL: FOR UPDATE, so a concurrent
   * deactivation either committed before, and is seen, or waits for this transaction). The
   * principal a request was authenticated with may be up to 2 s old (the credential cache) on
   * this server or another; a vote must not be. Refuses (UNAUTHENTICATED) an operator removed,
   * disabled, without a role or whose row does not verify; otherwise answers its current roles
   * and groups (a role lost is then refused by the gate).
   */
  async lockCurrent(tx: Queries, operatorId: string): Promise<Operator> {
    const row = await tx.credentials.operator(operatorId, true);
    const status = row ? operatorStatus({ disabledAt: num(row.disabled_at), removedAt: num(row.removed_at), macValid: this.operatorOk(row), roles: JSON.parse(row.roles) as string[] }) : { ok: false };
    if (!row || !status.ok) throw new CountersignError('UNAUTHENTICATED', 'this operator is disabled, removed or has no role any more (changed since this request was authenticated)');
    return { kind: 'operator', operatorId: row.id, name: row.name, roles: JSON.parse(row.roles) as Role[], groups: JSON.parse(row.groups) as string[] };
  }

  /** Every operator who passes `operatorPrincipal`'s checks. */
  async activeOperators(q: Queries | Store = this.store): Promise<Operator[]> {
    const rows = await q.listOperators();
    return rows
      .filter((row) => operatorStatus({ disabledAt: num(row.disabled_at), removedAt: num(row.removed_at), macValid: this.operatorOk(row), roles: JSON.parse(row.roles) as string[] }).ok)
      .map((row) => ({ kind: 'operator', operatorId: row.id, name: row.name, roles: JSON.parse(row.roles) as Role[], groups: JSON.parse(row.groups) as string[] }));
  }

  /** Best effort, never failing the request it rides on. */
  private touch(kind: 'agent' | 'operator', id: string, last: number | null, now: number): void {
    if (last !== null && Number(last) > now - LAST_USED_EVERY_MS) return;
    inBackground(() => this.store.credentials.touch(kind, id, now, LAST_USED_EVERY_MS)).catch(() => {});
  }

  // ---- dashboard sessions ----

  /**
   * A new session for an operator token: a random id (32 bytes) goes in the cookie, only its
   * SHA-256 in the database, so neither the database nor a credential hash yields a cookie.
   */
  async openSession(token: string, ttlMs: number): Promise<{ id: string; principal: Operator; expiresAt: number }> {
    const principal = await this.authenticateHash(sha256Hex(token));
    if (!principal) throw new CountersignError('UNAUTHENTICATED', 'unknown or revoked token');
    if (principal.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot sign in to the dashboard; use an operator token');
    const found = await this.store.credentials.find(sha256Hex(token));
    if (found?.kind !== 'operator') throw new CountersignError('UNAUTHENTICATED', 'unknown or revoked token');
    const id = randomBytes(32).toString('base64url');
    const at = this.now();
    const expiresAt = at + ttlMs;
    await this.store.transaction(async (tx) => {
      await tx.credentials.sweepSessions(at);
      const row = { id_hash: sessionIdHash(id), operator_id: principal.operatorId, token_id: found.token.id, created_at: at, expires_at: expiresAt };
      await tx.credentials.insertSession({ ...row, mac: this.secret.mac('session', this.sessionFields(row)) });
    });
    return { id, principal, expiresAt };
  }

  /** The operator behind a session id, or undefined when it is unknown, expired, signed out or its token no longer holds. */
  async sessionPrincipal(id: string): Promise<{ principal: Operator; expiresAt: number } | undefined> {
    const now = this.now();
    const idHash = sessionIdHash(id);
    // Read every time (one primary-key query), so a sign-out anywhere holds at once everywhere.
    const row = await this.store.credentials.session(idHash);
    if (!row || Number(row.expires_at) <= now) return undefined;
    // A row a database writer inserted or edited (another operator, a later expiry) has no valid MAC.
    if (!this.secret.verify('session', this.sessionFields(row), row.mac)) return undefined;
    const token = (await this.store.credentials.tokensOf(row.operator_id)).find((t) => t.id === row.token_id);
    if (!token) return undefined;
    const principal = await this.authenticateHash(token.token_hash);
    if (principal?.kind !== 'operator' || principal.operatorId !== row.operator_id) return undefined;
    return { principal, expiresAt: Number(row.expires_at) };
  }

  async endSession(id: string): Promise<void> {
    const idHash = sessionIdHash(id);
    await this.store.transaction((tx) => tx.credentials.deleteSession(idHash));
  }

  // ---- operators the identity provider manages (identity/provisioning.ts writes their audit entries) ----

  /** Whether an operator row's MAC verifies under the server secret. */
  verifies(row: OperatorRecord): boolean {
    return this.operatorOk(row);
  }

  /** A new operator made by the identity provider: no token (its people sign in through SSO). */
  async insertManagedOperator(tx: Queries, input: { name: string; roles: Role[]; groups: string[]; disabled: boolean; madeBy?: string | null | undefined }): Promise<OperatorRecord> {
    const at = this.now();
    const row = this.sealOperator({ id: newId('op', at), name: input.name, roles: JSON.stringify(input.roles), groups: JSON.stringify(input.groups), created_at: at, disabled_at: input.disabled ? at : null, removed_at: null, tokenless: 0, mac: null });
    await tx.insertOperator(row);
    if (input.madeBy) await this.madeByScimMaker(tx, row.id, input.madeBy, at);
    return row;
  }

  /**
   * Four-eyes (review F1): an operator a SCIM token provisioned, or made admin through a group,
   * is in the hands of the admin who made that token, for good (`admin` lineage, like an admin
   * creating an admin): the token's maker may have provisioned an identity they play at the
   * provider, so the two never sign each other's admin changes.
   */
  async madeByScimMaker(tx: Queries, operatorId: string, makerId: string, at = this.now()): Promise<void> {
    if (makerId === operatorId) return;
    await tx.credentials.addLineage({ operator_id: operatorId, issuer_id: makerId, kind: 'admin', at });
  }

  /**
   * Review F5: a SCIM token acts with its maker's authority, so it ends with it: every live SCIM
   * token an operator made is revoked when that operator is removed, disabled or loses admin
   * (each audited). `authenticateScim` also checks the maker at every use.
   */
  async revokeScimTokensOf(tx: Queries, makerId: string, by: Parameters<typeof draft>[2], reason: string, at = this.now()): Promise<string[]> {
    const revoked: string[] = [];
    for (const t of await tx.identity.scimTokensBy(makerId)) {
      if (t.revoked_at !== null) continue;
      await tx.identity.updateScimToken(t.id, { revoked_at: at, mac: this.secret.mac('scim_token', scimTokenFields({ ...t, revoked_at: at })) });
      await this.writer.append(tx, [draft('scim_token_revoked', null, by, { tokenId: t.id, name: t.name, reason }, at)]);
      revoked.push(t.id);
    }
    return revoked;
  }

  /**
   * The provider's view of an operator applied to its row: roles and groups, disabled, removed.
   * A row that does not verify is refused (never re-sealed), and so is a change that would leave
   * no active admin. A role change, a disable or a removal ends every session at once (and a
   * disable or a removal revokes every token); the credential cache is cleared by the caller
   * after the commit (`forget`).
   */
  async syncManagedOperator(tx: Queries, row: OperatorRecord, next: { roles?: Role[] | undefined; groups?: string[] | undefined; disabled?: boolean | undefined; removed?: boolean | undefined; grantedBy?: string | null | undefined; by?: AuditActor | undefined }) {
    this.refuseTampered(row);
    const at = this.now();
    // Review2 F6: the provider is held to core's last-admin rule as an admin is (with every
    // operator locked, as `guardChange`): a deactivation, removal or demotion that would leave no
    // active admin is refused (ILLEGAL_TRANSITION, reason last_admin) and nothing is written.
    const wasAdmin = (JSON.parse(row.roles) as Role[]).includes('admin') && row.disabled_at === null && row.removed_at === null;
    const losing = next.removed === true || next.disabled === true || (next.roles !== undefined && !next.roles.includes('admin'));
    if (wasAdmin && losing) {
      const everyone = (await tx.credentials.lockActiveOperators()).map((r) => this.managed(r, at));
      const fresh = everyone.find((o) => o.id === row.id) ?? this.managed(row, at);
      try {
        checkOperatorChange({ id: 'identity-provider', roles: ['admin'] }, fresh, { removed: next.removed, disabled: next.disabled, roles: next.roles }, everyone);
      } catch (err) {
        if (err instanceof CountersignError && err.code === 'ILLEGAL_TRANSITION') throw new CountersignError('ILLEGAL_TRANSITION', err.message, { reason: 'last_admin', operatorId: row.id, name: row.name });
        throw err;
      }
    }
    const patch: Partial<Pick<OperatorRecord, 'roles' | 'groups' | 'disabled_at' | 'removed_at'>> = {};
    const before = { roles: JSON.parse(row.roles) as Role[], groups: JSON.parse(row.groups) as string[], disabled: row.disabled_at !== null };
    const rolesChanged = next.roles !== undefined && JSON.stringify([...next.roles].sort()) !== JSON.stringify([...before.roles].sort());
    const groupsChanged = next.groups !== undefined && JSON.stringify([...next.groups].sort()) !== JSON.stringify([...before.groups].sort());
    if (rolesChanged) patch.roles = JSON.stringify(next.roles);
    if (groupsChanged) patch.groups = JSON.stringify(next.groups);
    const disabledChanged = next.disabled !== undefined && next.disabled !== before.disabled;
    if (disabledChanged) patch.disabled_at = next.disabled ? at : null;
    if (next.removed === true && row.removed_at === null) patch.removed_at = at;
    if (next.removed === false && row.removed_at !== null) patch.removed_at = null; // provisioned again (its old tokens stay revoked)
    const updated = Object.keys(patch).length > 0 ? await this.patchOperator(tx, row, patch) : row;
    // Any role change ends the sessions (the person signs in again and gets the new roles, and an
    // open event stream ends with its session: http/stream-auth.ts); so do a disable and a removal.
    const endSessions = next.removed === true || (disabledChanged && next.disabled === true) || rolesChanged;
    const sessionsEnded = endSessions ? await tx.credentials.deleteSessions({ operatorId: row.id }) : 0;
    // Review2 F3: a deactivation revokes every token, as a removal does (the issue: "deactivation
    // revokes sessions and tokens"): a later `active: true` brings none of them back.
    const revokedTokenIds = next.removed === true || (disabledChanged && next.disabled === true) ? await this.revokeTokens(tx, await tx.credentials.tokensOf(row.id), at) : [];
    // An admin role from the provider's groups is a role grant (review F1): lineage to whoever's SCIM token granted it.
    if (rolesChanged && next.roles!.includes('admin') && !before.roles.includes('admin')) {
      await tx.credentials.pinHolds(row.id, at);
      if (next.grantedBy) await this.madeByScimMaker(tx, row.id, next.grantedBy, at);
    }
    const lostAdmin = next.removed === true || (disabledChanged && next.disabled === true) || (rolesChanged && before.roles.includes('admin') && !next.roles!.includes('admin'));
    if (lostAdmin && before.roles.includes('admin')) await this.revokeScimTokensOf(tx, row.id, next.by ?? SYSTEM_ACTOR, 'its maker is no longer an active admin', at);
    return { row: updated, before, rolesChanged, groupsChanged, disabledChanged, sessionsEnded, revokedTokenIds };
  }

  /**
   * A dashboard session for an operator the provider signed in. Sessions hang off a token (a
   * revocation ends both), so the sign-in makes one whose secret is thrown away at once, lapsing
   * with the session: it can never be presented as a bearer credential.
   */
  async openManagedSession(tx: Queries, operatorId: string, ttlMs: number): Promise<{ id: string; expiresAt: number }> {
    const at = this.now();
    const expiresAt = at + ttlMs;
    const tokenId = newId('tok', at);
    await tx.credentials.insertToken(this.sealToken({ ...this.newToken(tokenId, operatorId, newSecret('cso'), at), prefix: 'sso_', expires_at: expiresAt, mac: null }));
    await tx.credentials.sweepSessions(at);
    const id = randomBytes(32).toString('base64url');
    const row = { id_hash: sessionIdHash(id), operator_id: operatorId, token_id: tokenId, created_at: at, expires_at: expiresAt };
    await tx.credentials.insertSession({ ...row, mac: this.secret.mac('session', this.sessionFields(row)) });
    return { id, expiresAt };
  }

  // ---- creating ----

  async insertOperator(tx: Queries, by: AuditActor, input: { name: string; roles: Role[]; groups: string[] }, token = newSecret('cso')) {
    const at = this.now();
    const id = newId('op', at);
    const row = this.sealOperator({ id, name: input.name, roles: JSON.stringify(input.roles), groups: JSON.stringify(input.groups), created_at: at, disabled_at: null, removed_at: null, tokenless: 0, mac: null });
    await tx.insertOperator(row);
    const tokenId = newId('tok', at);
    await tx.credentials.insertToken(this.newToken(tokenId, id, token, at));
    // Four-eyes (review F4, review2 F1b): the creator holds this operator's first token (until the
    // operator rotates its own) and, for an admin, made it one (for good): the two never sign each other's admin changes.
    if (by.type === 'operator') {
      await tx.credentials.addLineage({ operator_id: id, issuer_id: by.id, kind: 'created', at });
      if (input.roles.includes('admin')) await tx.credentials.addLineage({ operator_id: id, issuer_id: by.id, kind: 'admin', at });
    }
    await this.writer.append(tx, [draft('operator_created', null, by, { operatorId: id, name: input.name, roles: input.roles, groups: input.groups }, at)]);
    return { id, name: input.name, roles: input.roles, token, tokenId };
  }

  /** An operator row without any token (the embedded gateway's admin acts in-process only). */
  async insertTokenlessOperator(tx: Queries, by: AuditActor, input: { name: string; roles: Role[]; groups: string[] }): Promise<Operator> {
    const at = this.now();
    const id = newId('op', at);
    await tx.insertOperator(this.sealOperator({ id, name: input.name, roles: JSON.stringify(input.roles), groups: JSON.stringify(input.groups), created_at: at, disabled_at: null, removed_at: null, tokenless: 1, mac: null }));
    await this.writer.append(tx, [draft('operator_created', null, by, { operatorId: id, name: input.name, roles: input.roles, groups: input.groups, tokenless: true }, at)]);
    return { kind: 'operator', operatorId: id, name: input.name, roles: input.roles, groups: input.groups };
  }

  /**
   * The first token of an operator who has none (bootstrap's rule: a database an embedded gateway
   * made has its admin already). MACed like every token; the entry names the token's id, never
   * any part of the token.
   */
  async issueOperatorToken(tx: Queries, op: Operator, token = newSecret('cso')) {
    const row = await tx.credentials.operator(op.operatorId, true);
    // Only a row whose MAC-covered fields say it was made without a token: a database writer who
    // wiped the tokens of a real admin does not get that admin a fresh one.
    if (!row || !this.operatorOk(row) || Number(row.tokenless) !== 1) {
      throw new CountersignError('FORBIDDEN', `operator ${op.name} was not made tokenless (or its record does not verify): bootstrap gives it no token; use \`countersign admin recover\``);
    }
    await this.patchOperator(tx, row, { tokenless: 0 });
    const at = this.now();
    const tokenId = newId('tok', at);
    await tx.credentials.insertToken(this.newToken(tokenId, op.operatorId, token, at));
    await this.writer.append(tx, [draft('operator_token_issued', null, SYSTEM_ACTOR, { operatorId: op.operatorId, name: op.name, tokenId }, at)]);
    return { id: op.operatorId, name: op.name, roles: op.roles, token, tokenId };
  }

  /**
   * The embedded gateway's admin: an active admin (MAC-valid, not disabled or removed), or on a
   * database with no admin-role operator at all a tokenless `admin`. A database whose admins are
   * all disabled, removed or fail their MAC is refused: the gateway never makes a new admin
   * beside them (that would undo a disable).
   */
  async embeddedAdmin(): Promise<Operator> {
    const active = async (q: Queries | Store) => (await this.activeOperators(q)).find((op) => op.roles.includes('admin'));
    const found = await active(this.store);
    if (found) return found;
    return this.store.transaction(async (tx) => {
      const again = await active(tx);
      if (again) return again;
      const rows = await tx.listOperators();
      if (rows.some((op) => (JSON.parse(op.roles) as Role[]).includes('admin'))) {
        throw new CountersignError('FORBIDDEN', 'this database has no active admin operator (each is disabled, removed or its record does not verify), so the embedded gateway cannot act as one');
      }
      if (rows.some((op) => op.name === 'admin')) {
        throw new CountersignError('FORBIDDEN', 'this database has an operator named "admin" without the admin role, so the embedded gateway cannot make its admin');
      }
      return this.insertTokenlessOperator(tx, SYSTEM_ACTOR, { name: 'admin', roles: ['admin'], groups: [] });
    });
  }

  private newToken(id: string, operatorId: string, token: string, at: number): TokenRecord {
    // `prefix` keeps only the kind: no part of a secret is stored (issue 13, point 7).
    return this.sealToken({ id, operator_id: operatorId, token_hash: sha256Hex(token), prefix: 'cso_', created_at: at, revoked_at: null, last_used_at: null, expires_at: null, mac: null });
  }

  async insertAgentKey(tx: Queries, by: AuditActor, agentId: string, agentName: string, key = newSecret('csk')) {
    const at = this.now();
    const keyId = newId('key', at);
    await tx.insertApiKey(
      this.sealKey({ id: keyId, agent_id: agentId, key_hash: sha256Hex(key), prefix: 'csk_', created_at: at, created_by: by.type === 'operator' ? by.id : null, revoked_at: null, last_used_at: null, expires_at: null, mac: null }, agentName),
    );
    await this.writer.append(tx, [draft('key_created', null, by, { agentId, agentName, keyId }, at)]);
    return { agentId, agentName, keyId, key };
  }

  /**
   * The start of this database's secret-file era, once: on the start that created the server
   * secret file, when the database has no `sealed` mark and its trail no `credentials_adopted`
   * entry, the credential rows written before MACs existed are MACed and the mark is written
   * (MACed under this secret). Any later start — even one that makes a new secret file, after a
   * database writer stripped MACs — adopts nothing. Returns whether this start began the era
   * (the guard seals `plain:` TOTP seeds only then).
   */
  async beginSecretEra(): Promise<{ began: boolean; adopted: { operators: number; tokens: number; keys: number } | null }> {
    if (!this.secret.created) return { began: false, adopted: null };
    return this.store.transaction(async (tx) => {
      if (await tx.credentials.mark('sealed')) return { began: false, adopted: null };
      const at = this.now();
      const seen = await tx.trail.countAuditByType(['credentials_adopted'], 0, Number.MAX_SAFE_INTEGER);
      if ((seen.credentials_adopted ?? 0) > 0) return { began: false, adopted: null };
      if (!(await tx.credentials.insertMark(this.markRow('sealed', at)))) return { began: false, adopted: null };
      const rows = await tx.credentials.unsealed();
      for (const o of rows.operators) await tx.credentials.updateOperator(o.id, { mac: this.sealOperator(o).mac });
      for (const t of rows.tokens) await tx.credentials.updateToken(t.id, { mac: this.sealToken(t).mac });
      for (const { agent_name, ...k } of rows.keys) await tx.credentials.updateKey(k.id, { mac: this.sealKey(k, agent_name).mac });
      const counts = { operators: rows.operators.length, tokens: rows.tokens.length, keys: rows.keys.length };
      if (counts.operators + counts.tokens + counts.keys === 0) return { began: true, adopted: null };
      await this.writer.append(tx, [draft('credentials_adopted', null, SYSTEM_ACTOR, counts, at)]);
      return { began: true, adopted: counts };
    });
  }

  /** Whether this secret began the database's secret-file era (its `sealed` mark verifies). */
  async ownsDatabase(q: Queries | Store = this.store): Promise<boolean> {
    const mark = await q.credentials.mark('sealed');
    return mark !== undefined && this.secret.verify('mark', [mark.name, Number(mark.at)], mark.mac);
  }

  /**
   * With no `sealed` mark at all (a database writer deleted it), the secret is still this
   * database's when a credential row's MAC verifies under it: only the secret makes one. The mark
   * is then written again, so break-glass cannot be disabled by deleting it.
   */
  private async vouchedByRows(tx: Queries): Promise<boolean> {
    if (await tx.credentials.mark('sealed')) return false;
    const operators = await tx.listOperators();
    const tokens = await tx.credentials.allTokens();
    const vouched = operators.some((o) => o.mac !== null && this.operatorOk(o)) || tokens.some((t) => t.mac !== null && this.secret.verify('token', this.tokenFields(t), t.mac));
    if (!vouched) return false;
    return tx.credentials.insertMark(this.markRow('sealed', this.now()));
  }

  private markRow(name: string, at: number) {
    return { name, at, mac: this.secret.mac('mark', [name, at]) };
  }

  /**
   * Whether this database may be given its first admin token (`bootstrap`): never once it has a
   * `bootstrapped` mark (valid or not), nor when its trail shows an operator token was ever issued —
   * so deleting the credential rows does not make the next start mint an admin. An operator an
   * embedded gateway created without a token (audited `operator_created`, no token) does not
   * count: such a database is still given its token once.
   */
  async mayBootstrap(tx: Queries): Promise<boolean> {
    if (await tx.credentials.mark('bootstrapped')) return false;
    // A `sealed` mark, operator rows and an empty trail: the trail was wiped (every path that makes
    // an operator writes an entry). Fail closed.
    const trailEmpty = (await tx.listAudit({ limit: 1 })).length === 0;
    if (trailEmpty && (await tx.credentials.mark('sealed')) && (await tx.listOperators()).length > 0) return false;
    // Only operator tokens count (main's first-hour rule): an embedded gateway's agent key does not.
    const issued = await tx.trail.countAuditByType(['token_rotated', 'admin_recovered', 'operator_token_issued', 'operator_created'], 0, Number.MAX_SAFE_INTEGER);
    if ((issued.token_rotated ?? 0) + (issued.admin_recovered ?? 0) + (issued.operator_token_issued ?? 0) > 0) return false;
    // Every operator created so far must have been created without a token (the embedded admin);
    // past a handful, someone surely held one (fail closed: no bootstrap).
    const created = issued.operator_created ?? 0;
    if (created === 0) return true;
    if (created > TOKENLESS_SCAN) return false;
    const entries = await tx.listAudit({ limit: TOKENLESS_SCAN, type: 'operator_created' });
    return entries.length === created && entries.every((e) => (JSON.parse(e.data) as { tokenless?: unknown }).tokenless === true);
  }

  /** Whether an operator's MAC-valid row says it was made without a token. */
  async isTokenless(tx: Queries, operatorId: string): Promise<boolean> {
    const row = await tx.credentials.operator(operatorId, true);
    return row !== undefined && this.operatorOk(row) && Number(row.tokenless) === 1;
  }

  /** Written in bootstrap's transaction; false when another process bootstrapped first. */
  async markBootstrapped(tx: Queries): Promise<boolean> {
    return tx.credentials.insertMark(this.markRow('bootstrapped', this.now()));
  }

  // ---- listings ----

  async listKeys(by: Principal): Promise<KeyView[]> {
    requireAdmin(by);
    const now = this.now();
    return (await this.store.credentials.keys()).map((k) => this.keyView(k, now));
  }

  private keyView(k: KeyRecord & { agent_name: string }, now: number): KeyView {
    const revoked = num(k.revoked_at);
    const expires = num(k.expires_at);
    const status: KeyView['status'] = !this.keyOk(k, k.agent_name)
      ? 'invalid'
      : revoked !== null && revoked <= now
        ? 'revoked'
        : expires !== null && expires <= now
          ? 'expired'
          : expires !== null
            ? 'expiring'
            : 'active';
    return {
      id: k.id,
      agentId: k.agent_id,
      agentName: k.agent_name,
      status,
      createdAt: iso(k.created_at)!,
      createdBy: k.created_by,
      lastUsedAt: iso(k.last_used_at),
      expiresAt: iso(expires),
      revokedAt: iso(revoked),
    };
  }

  async listOperators(by: Principal): Promise<OperatorView[]> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
    const now = this.now();
    const tokens = await this.store.credentials.allTokens();
    const rows = await this.store.listOperators();
    return rows
      .filter((r) => r.removed_at === null)
      .map((r) => {
        const own = tokens.filter((t) => t.operator_id === r.id);
        const active = own.filter((t) => (t.revoked_at === null || Number(t.revoked_at) > now) && (t.expires_at === null || Number(t.expires_at) > now));
        const used = own.map((t) => num(t.last_used_at)).filter((v): v is number => v !== null);
        return {
          id: r.id,
          name: r.name,
          roles: JSON.parse(r.roles) as Role[],
          groups: JSON.parse(r.groups) as string[],
          disabled: r.disabled_at !== null,
          createdAt: iso(r.created_at)!,
          lastUsedAt: used.length > 0 ? iso(Math.max(...used)) : null,
          activeTokens: active.length,
        };
      });
  }

  // ---- agent keys ----

  /** A key by id, or by agent name when that agent has exactly one usable key. */
  private async resolveKey(tx: Queries, ref: string): Promise<KeyRecord & { agent_name: string }> {
    const byId = await tx.credentials.key(ref, true);
    if (byId) return byId;
    const now = this.now();
    const usable = (await tx.credentials.keysOfAgentNamed(ref)).filter((k) => this.keyOk(k, k.agent_name) && (k.revoked_at === null || Number(k.revoked_at) > now) && (k.expires_at === null || Number(k.expires_at) > now));
    if (usable.length === 1) return (await tx.credentials.key(usable[0]!.id, true))!;
    if (usable.length > 1) {
      throw new CountersignError('VALIDATION_FAILED', `agent ${ref} has ${usable.length} usable keys: name one by id`, { keyIds: usable.map((k) => k.id) });
    }
    throw new CountersignError('NOT_FOUND', `no agent key ${ref}`);
  }

  async revokeKey(by: Principal, ref: string): Promise<KeyView> {
    const admin = requireAdmin(by);
    const view = await this.store.transaction(async (tx) => {
      const key = await this.resolveKey(tx, ref);
      const at = this.now();
      if (key.revoked_at !== null && Number(key.revoked_at) <= at) return this.keyView(key, at);
      // Sealing a row that does not verify as revoked grants nothing (it can only stop working).
      const next = this.sealKey({ ...stripName(key), revoked_at: at }, key.agent_name);
      await tx.credentials.updateKey(key.id, { revoked_at: at, mac: next.mac });
      await this.writer.append(tx, [draft('key_revoked', null, admin, { keyId: key.id, agentId: key.agent_id, agentName: key.agent_name }, at)]);
      return this.keyView({ ...next, agent_name: key.agent_name }, at);
    });
    this.forget();
    return view;
  }

  async rotateKey(by: Principal, ref: string, body: { graceSeconds?: number | undefined } = {}) {
    const admin = requireAdmin(by);
    const result = await this.store.transaction(async (tx) => {
      const old = await this.resolveKey(tx, ref);
      const at = this.now();
      // A row that does not verify (planted or edited in the database) is never re-sealed with a grace period: revoke it instead.
      if (!this.keyOk(old, old.agent_name)) {
        throw new CountersignError('VALIDATION_FAILED', `key ${old.id}: its record does not verify under the server secret (planted or edited in the database?); it is not rotated — revoke it and create a new one with POST /v1/keys`, { keyId: old.id, tampered: true });
      }
      if ((old.revoked_at !== null && Number(old.revoked_at) <= at) || (old.expires_at !== null && Number(old.expires_at) <= at)) {
        throw new CountersignError('ILLEGAL_TRANSITION', `key ${old.id} is no longer valid; create a new one with POST /v1/keys`);
      }
      const until = graceEnd(at, body.graceSeconds);
      const ended = until <= at ? { revoked_at: at, expires_at: old.expires_at } : { revoked_at: old.revoked_at, expires_at: old.expires_at === null ? until : Math.min(Number(old.expires_at), until) };
      const next = this.sealKey({ ...stripName(old), ...ended }, old.agent_name);
      await tx.credentials.updateKey(old.id, { ...ended, mac: next.mac });
      const key = newSecret('csk');
      const keyId = newId('key', at);
      await tx.insertApiKey(this.sealKey({ id: keyId, agent_id: old.agent_id, key_hash: sha256Hex(key), prefix: 'csk_', created_at: at, created_by: admin.operatorId, revoked_at: null, last_used_at: null, expires_at: null, mac: null }, old.agent_name));
      const previousValidUntil = new Date(Math.max(at, Number(ended.expires_at ?? at))).toISOString();
      await this.writer.append(tx, [draft('key_rotated', null, admin, { keyId, agentId: old.agent_id, agentName: old.agent_name, previousKeyId: old.id, previousValidUntil }, at)]);
      return { keyId, agentId: old.agent_id, agentName: old.agent_name, key, previousKeyId: old.id, previousValidUntil };
    });
    this.forget();
    return result;
  }

  // ---- operators ----

  private async resolveOperator(tx: Queries, by: Operator, ref: string): Promise<OperatorRecord> {
    const id = ref === 'me' ? by.operatorId : ref;
    const row = (await tx.credentials.operator(id, true)) ?? (ref === 'me' ? undefined : await tx.credentials.operatorByName(ref));
    if (!row || row.removed_at !== null) throw new CountersignError('NOT_FOUND', `no operator ${ref}`);
    return row;
  }

  private managed(r: OperatorRecord, at: number): ManagedOperator {
    return { id: r.id, name: r.name, roles: JSON.parse(r.roles) as Role[], active: r.removed_at === null && r.disabled_at === null && this.operatorOk(r) && at >= 0 };
  }

  /** Checks a change against core's rules with every operator read under lock (PostgreSQL: FOR UPDATE). */
  private async guardChange(tx: Queries, admin: Operator, target: OperatorRecord, change: { roles?: Role[] | undefined; disabled?: boolean | undefined; removed?: boolean | undefined }) {
    const at = this.now();
    const everyone = (await tx.credentials.lockActiveOperators()).map((r) => this.managed(r, at));
    const fresh = everyone.find((o) => o.id === target.id) ?? this.managed(target, at);
    checkOperatorChange({ id: admin.operatorId, roles: admin.roles }, fresh, change, everyone);
  }

  async updateOperator(by: Principal, ref: string, patch: { roles?: Role[] | undefined; groups?: string[] | undefined; disabled?: boolean | undefined }): Promise<OperatorView> {
    const admin = requireAdmin(by);
    for (const role of patch.roles ?? []) {
      if (!ROLES.includes(role)) throw new CountersignError('VALIDATION_FAILED', `unknown role "${role}"`, { roles: ROLES });
    }
    if (patch.roles !== undefined && patch.roles.length === 0) throw new CountersignError('VALIDATION_FAILED', 'an operator needs at least one role', { field: 'roles' });
    if (patch.roles === undefined && patch.groups === undefined && patch.disabled === undefined) {
      throw new CountersignError('VALIDATION_FAILED', 'send at least one of roles, groups, disabled');
    }
    const id = await this.store.transaction(async (tx) => {
      const row = await this.resolveOperator(tx, admin, ref);
      this.refuseTampered(row);
      // Review2 F2: the roles and groups of an operator the identity provider manages are the
      // provider's (recomputed at every SCIM change and sign-in), so an admin's edit would be undone
      // without a word. Refused; the admin changes the group at the provider, or disables the
      // operator here (a disable the provider never lifts).
      if ((patch.roles !== undefined || patch.groups !== undefined) && (await this.managedByProvider(tx, row.id))) {
        throw new CountersignError('ILLEGAL_TRANSITION', `${row.name}'s roles and groups come from the identity provider (SCIM or single sign-on) and would be put back at its next change or sign-in: change the group at the provider, or disable the operator here`, { operatorId: row.id, reason: 'idp_managed' });
      }
      await this.guardChange(tx, admin, row, patch);
      const at = this.now();
      const change: Partial<Pick<OperatorRecord, 'roles' | 'groups' | 'disabled_at'>> = {};
      if (patch.roles !== undefined) change.roles = JSON.stringify([...new Set(patch.roles)]);
      if (patch.groups !== undefined) change.groups = JSON.stringify([...new Set(patch.groups)]);
      if (patch.disabled !== undefined) change.disabled_at = patch.disabled ? (row.disabled_at ?? at) : null;
      await this.patchOperator(tx, row, change);
      // Review F4: an admin's disable of a SCIM user is recorded apart from SCIM's `active`, so the
      // provider's `active: true` never lifts it (a row that does not verify is left refused).
      if (patch.disabled !== undefined) {
        const scim = await tx.identity.scimUser(row.id);
        if (scim && this.secret.verify('scim_user', scimUserFields(scim), scim.mac)) {
          const adminDisabled = patch.disabled ? 1 : 0;
          await tx.identity.updateScimUser(row.id, { admin_disabled: adminDisabled, mac: this.secret.mac('scim_user', scimUserFields({ ...scim, admin_disabled: adminDisabled })) });
        }
      }
      if (patch.roles?.includes('admin')) {
        await tx.credentials.pinHolds(row.id, at);
        await tx.credentials.addLineage({ operator_id: row.id, issuer_id: admin.operatorId, kind: 'admin', at });
      }
      // Disabling ends every session at once; a later enable does not bring them back.
      const sessionsEnded = patch.disabled === true ? await tx.credentials.deleteSessions({ operatorId: row.id }) : 0;
      const wasAdmin = (JSON.parse(row.roles) as Role[]).includes('admin');
      if (wasAdmin && (patch.disabled === true || (patch.roles !== undefined && !patch.roles.includes('admin')))) {
        await this.revokeScimTokensOf(tx, row.id, admin, patch.disabled === true ? 'its maker was disabled' : 'its maker is no longer an admin', at);
      }
      const data: Record<string, unknown> = { operatorId: row.id, name: row.name, sessionsEnded };
      if (patch.roles !== undefined) data.roles = [...new Set(patch.roles)];
      if (patch.groups !== undefined) data.groups = [...new Set(patch.groups)];
      if (patch.disabled !== undefined) data.disabled = patch.disabled;
      await this.writer.append(tx, [draft('operator_updated', null, admin, data, at)]);
      return row.id;
    });
    this.forget();
    return (await this.listOperators(admin)).find((o) => o.id === id)!;
  }

  /** Whether the identity provider manages an operator's roles: a live SCIM user, or an operator a single sign-on links to. */
  private async managedByProvider(tx: Queries, operatorId: string): Promise<boolean> {
    const scim = await tx.identity.scimUser(operatorId);
    if (scim && scim.removed_at === null) return true;
    return (await tx.identity.identitiesOf(operatorId)).length > 0;
  }

  async removeOperator(by: Principal, ref: string): Promise<{ operatorId: string; name: string; removed: true; revokedTokenIds: string[] }> {
    const admin = requireAdmin(by);
    const result = await this.store.transaction(async (tx) => {
      const row = await this.resolveOperator(tx, admin, ref);
      await this.guardChange(tx, admin, row, { removed: true });
      const at = this.now();
      await this.patchOperator(tx, row, { removed_at: at });
      // Review2 F1: the removal is recorded on the SCIM user too (under its MAC), so the provider
      // cannot undo it (a DELETE then POST of the same userName is refused). A row that does not
      // verify is left as it is: SCIM refuses it anyway.
      const scim = await tx.identity.scimUser(row.id);
      if (scim && this.secret.verify('scim_user', scimUserFields(scim), scim.mac)) {
        await tx.identity.updateScimUser(row.id, { admin_removed: 1, mac: this.secret.mac('scim_user', scimUserFields({ ...scim, admin_removed: 1 })) });
      }
      const revokedTokenIds = await this.revokeTokens(tx, await tx.credentials.tokensOf(row.id), at);
      const sessionsEnded = await tx.credentials.deleteSessions({ operatorId: row.id });
      await this.revokeScimTokensOf(tx, row.id, admin, 'its maker was removed', at);
      await this.writer.append(tx, [draft('operator_removed', null, admin, { operatorId: row.id, name: row.name, revokedTokenIds, sessionsEnded }, at)]);
      return { operatorId: row.id, name: row.name, removed: true as const, revokedTokenIds };
    });
    this.forget();
    return result;
  }

  /**
   * A new token for an operator (admin); every other token of theirs is revoked and its sessions
   * end. Whoever rotates another's token holds it, for good (four-eyes: the two are in the same
   * hands; they may do the "own" rotation next). An admin rotating their own (`me`) ends their
   * creator's hold (review2 F1: how admins made by one admin become independent of each other;
   * the creator made them admin, which never ends).
   */
  async rotateToken(by: Principal, ref: string): Promise<{ operatorId: string; name: string; tokenId: string; token: string; revokedTokenIds: string[] }> {
    const admin = requireAdmin(by);
    const result = await this.store.transaction(async (tx) => {
      const row = await this.resolveOperator(tx, admin, ref);
      await this.guardChange(tx, admin, row, {});
      const at = this.now();
      const tokens = await tx.credentials.tokensOf(row.id);
      const since = this.liveSince(tokens, at);
      const revokedTokenIds = await this.revokeTokens(tx, tokens, at);
      const sessionsEnded = await tx.credentials.deleteSessions({ operatorId: row.id });
      const token = newSecret('cso');
      const tokenId = newId('tok', at);
      await tx.credentials.insertToken(this.newToken(tokenId, row.id, token, at));
      // Whoever rotates another's token holds it, for good (four-eyes); rotating your own ends your creator's hold.
      if (row.id === admin.operatorId) await tx.credentials.endHolds(row.id);
      else await tx.credentials.addLineage({ operator_id: row.id, issuer_id: admin.operatorId, kind: 'token', at });
      // Another's token replaced (suspected stolen?): the passkeys enrolled while it was live go too, since its holder could have added them.
      // Your own rotation keeps yours (a stolen token rotating itself must not strip factors).
      const passkeys = row.id === admin.operatorId ? [] : await this.passkeysSince(tx, actorOf(admin), row.id, row.name, since, 'an admin replaced the token they were enrolled with', at);
      await this.writer.append(tx, [draft('token_rotated', null, admin, { operatorId: row.id, name: row.name, tokenId, revokedTokenIds, sessionsEnded, own: row.id === admin.operatorId }, at), ...passkeys]);
      return { operatorId: row.id, name: row.name, tokenId, token, revokedTokenIds };
    });
    this.forget();
    return result;
  }

  /**
   * Break-glass (`countersign admin recover`, run where the server secret file is): a new admin
   * token. An operator named `name` is re-enabled with the admin role (their other tokens stay
   * revoked) or created. The MACs need the secret, so a database writer alone cannot do this.
   */
  async recoverAdmin(name: string, actor: AuditActor): Promise<{ operatorId: string; name: string; token: string; tokenId: string; created: boolean }> {
    if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) throw new CountersignError('VALIDATION_FAILED', 'the operator name must be 1–64 letters, digits or _ . @ -');
    refuseReservedName('operator', name);
    const result = await this.store.transaction(async (tx) => {
      // The secret must be this database's: its `sealed` mark verifies under it. Another file
      // (a database writer's own, a wrong host) is refused before anything is written.
      if (!(await this.ownsDatabase(tx)) && !(await this.vouchedByRows(tx))) {
        throw new CountersignError('VALIDATION_FAILED', 'this server secret file is not the one this database’s servers use (its `sealed` mark does not verify): pass the servers’ --secret-file');
      }
      const at = this.now();
      const existing = await tx.credentials.operatorByName(name);
      if (!existing) {
        const made = await this.insertOperator(tx, actor, { name, roles: ['admin'], groups: [] });
        await this.writer.append(tx, [draft('admin_recovered', null, actor, { operatorId: made.id, name, tokenId: made.tokenId, created: true }, at)]);
        return { operatorId: made.id, name, token: made.token, tokenId: made.tokenId, created: true };
      }
      const roles = [...new Set([...(JSON.parse(existing.roles) as Role[]), 'admin' as Role])];
      await this.patchOperator(tx, existing, { roles: JSON.stringify(roles), disabled_at: null, removed_at: null, tokenless: 0 }, true);
      const tokens = await tx.credentials.tokensOf(existing.id);
      const since = this.liveSince(tokens, at);
      await this.revokeTokens(tx, tokens, at);
      await tx.credentials.deleteSessions({ operatorId: existing.id });
      const token = newSecret('cso');
      const tokenId = newId('tok', at);
      await tx.credentials.insertToken(this.newToken(tokenId, existing.id, token, at));
      // Break-glass: the tokens it replaces may be in other hands, so the passkeys enrolled while they were live are revoked too.
      const passkeys = await this.passkeysSince(tx, actor, existing.id, name, since, 'admin recover replaced the token they were enrolled with', at);
      await this.writer.append(tx, [draft('admin_recovered', null, actor, { operatorId: existing.id, name, tokenId, created: false }, at), ...passkeys]);
      return { operatorId: existing.id, name, token, tokenId, created: false };
    });
    this.forget();
    return result;
  }
}

function stripName<T extends { agent_name: string }>(row: T): Omit<T, 'agent_name'> {
  const { agent_name: _name, ...rest } = row;
  return rest;
}

export function requireAdmin(by: Principal): Operator {
  if (by.kind !== 'operator' || !by.roles.includes('admin')) throw new CountersignError('FORBIDDEN', 'only admins manage operators and credentials');
  return by;
}

/** What a SCIM token's MAC covers: its maker too (review F1/F5: the maker is whose authority it carries and whose lineage it gives). */
export function scimTokenFields(r: { id: string; token_hash: string; revoked_at: number | null; created_by: string | null }): unknown[] {
  return [r.id, r.token_hash, r.revoked_at === null ? null : Number(r.revoked_at), r.created_by];
}

/** What a SCIM user row's MAC covers: its operator, its userName key and whether an admin disabled (review F4) or removed (review2 F1) it. */
export function scimUserFields(r: { operator_id: string; user_key: string; admin_disabled: number; admin_removed: number }): unknown[] {
  return [r.operator_id, r.user_key, Number(r.admin_disabled), Number(r.admin_removed)];
}

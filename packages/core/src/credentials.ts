/**
 * Credential lifecycle decisions (issue 13): whether a stored key or token still authenticates,
 * and whether an admin may change an operator. Pure; the server reads the rows (and checks
 * their MACs) and applies the answer in one transaction.
 */
import { CountersignError } from './errors.ts';
import { ROLE_RANK } from './lifecycle.ts';
import type { Role } from './schemas.ts';

export type CredentialRefusal = 'revoked' | 'expired' | 'disabled' | 'removed' | 'integrity' | 'no_roles';

export interface StoredCredential {
  readonly revokedAt: number | null;
  /** A rotated credential's grace period ends here. */
  readonly expiresAt: number | null;
  /** The row's MAC under the server secret checked out. */
  readonly macValid: boolean;
}

export interface StoredOperator {
  readonly disabledAt: number | null;
  readonly removedAt: number | null;
  readonly macValid: boolean;
  /**
   * The operator's roles, when the caller has them: none at all refuses (fail closed). Only an
   * identity provider's sync leaves an operator without a role (its groups map to none); every
   * other path needs at least one.
   */
  readonly roles?: readonly string[] | undefined;
}

/** Whether a key or token (and its operator, for a token) authenticates at `now`; the first reason it does not, otherwise. */
export function credentialStatus(credential: StoredCredential, operator: StoredOperator | null, now: number): { ok: true } | { ok: false; reason: CredentialRefusal } {
  if (!credential.macValid || (operator !== null && !operator.macValid)) return { ok: false, reason: 'integrity' };
  if (operator?.removedAt != null) return { ok: false, reason: 'removed' };
  if (credential.revokedAt !== null && credential.revokedAt <= now) return { ok: false, reason: 'revoked' };
  if (credential.expiresAt !== null && credential.expiresAt <= now) return { ok: false, reason: 'expired' };
  if (operator?.disabledAt != null) return { ok: false, reason: 'disabled' };
  if (operator?.roles !== undefined && operator.roles.length === 0) return { ok: false, reason: 'no_roles' };
  return { ok: true };
}

/**
 * Whether an operator may act without a bearer credential of their own in hand — a Slack or
 * Teams click mapped to them, a reassignment or a cool-down naming them: the same operator
 * checks as a login (MAC, removed, disabled), without the token's.
 */
export function operatorStatus(operator: StoredOperator): { ok: true } | { ok: false; reason: CredentialRefusal } {
  if (!operator.macValid) return { ok: false, reason: 'integrity' };
  if (operator.removedAt != null) return { ok: false, reason: 'removed' };
  if (operator.disabledAt != null) return { ok: false, reason: 'disabled' };
  if (operator.roles !== undefined && operator.roles.length === 0) return { ok: false, reason: 'no_roles' };
  return { ok: true };
}

export function highestRank(roles: readonly Role[]): number {
  return roles.reduce((max, r) => Math.max(max, ROLE_RANK[r]), -1);
}

export interface OperatorChange {
  readonly roles?: readonly Role[] | undefined;
  readonly disabled?: boolean | undefined;
  readonly removed?: boolean | undefined;
}

export interface ManagedOperator {
  readonly id: string;
  readonly name: string;
  readonly roles: readonly Role[];
  readonly active: boolean;
}

/**
 * Refuses an operator change that an admin may not make: only admins manage credentials; nobody
 * changes an operator who outranks them or grants a role above their own; and the last active
 * admin is never disabled, removed or demoted (`operators` is everyone not removed, read under
 * a lock, so two admins acting at once cannot both pass).
 */
export function checkOperatorChange(actor: { id: string; roles: readonly Role[] }, target: ManagedOperator, change: OperatorChange, operators: readonly ManagedOperator[]): void {
  const rank = highestRank(actor.roles);
  if (rank < ROLE_RANK.admin) throw new CountersignError('FORBIDDEN', 'only admins manage operators and credentials');
  if (highestRank(target.roles) > rank) throw new CountersignError('FORBIDDEN', `${target.name} outranks you`);
  for (const role of change.roles ?? []) {
    if (ROLE_RANK[role] > rank) throw new CountersignError('FORBIDDEN', `you cannot grant ${role}, which outranks you`);
  }
  const isAdmin = (o: ManagedOperator) => o.active && o.roles.includes('admin');
  if (!isAdmin(target)) return;
  const losesAdmin = change.removed === true || change.disabled === true || (change.roles !== undefined && !change.roles.includes('admin'));
  if (!losesAdmin) return;
  const others = operators.filter((o) => o.id !== target.id && isAdmin(o));
  if (others.length === 0) {
    throw new CountersignError('ILLEGAL_TRANSITION', `${target.name} is the last active admin: make another admin first (or use \`countersign admin recover\` on the server host)`, { reason: 'last_admin' });
  }
}

/** The end of a rotated credential's grace period: now, or `graceSeconds` later (at most 7 days). */
export function graceEnd(now: number, graceSeconds: number | undefined): number {
  const seconds = graceSeconds ?? 0;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 7 * 86_400) {
    throw new CountersignError('VALIDATION_FAILED', 'graceSeconds must be a whole number of seconds from 0 to 604800 (7 days)', { field: 'graceSeconds' });
  }
  return now + seconds * 1000;
}

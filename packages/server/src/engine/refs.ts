/**
 * How a path parameter names an operator or an agent, in one place for every route (DESIGN:
 * "path parameters take an id, a name or `me`"): `me` is the caller, then an id, then a name.
 * The id is tried before the name, so a name that spells another operator's id never shadows it;
 * `me` cannot be a name (the create schemas refuse it).
 */
import { CountersignError } from '@countersign/core';
import type { Store } from '../store/store.ts';
import type { Principal } from './principal.ts';

export const SELF_REF = 'me';

export interface Named {
  id: string;
  name: string;
}

/** The operator `ref` names, or undefined. `me` from an agent key names no operator. */
export async function findOperatorRef(store: Pick<Store, 'listOperators'>, by: Principal | undefined, ref: string): Promise<Named | undefined> {
  const operators = await store.listOperators();
  const wanted = ref === SELF_REF ? (by?.kind === 'operator' ? by.operatorId : undefined) : ref;
  if (wanted === undefined) return undefined;
  const found = operators.find((o) => o.id === wanted) ?? operators.find((o) => o.name === wanted);
  return found && { id: found.id, name: found.name };
}

export async function operatorRef(store: Pick<Store, 'listOperators'>, by: Principal | undefined, ref: string): Promise<Named> {
  const found = await findOperatorRef(store, by, ref);
  if (found) return found;
  if (ref === SELF_REF) throw new CountersignError('NOT_FOUND', '`me` names the calling operator; an agent key is not one');
  throw new CountersignError('NOT_FOUND', `no operator ${ref}`);
}

/** The agent `ref` names: `me` (an agent key's own agent), an id, or a name. */
export async function agentRef(store: Pick<Store, 'findAgentById' | 'findAgentByName'>, by: Principal | undefined, ref: string): Promise<Named> {
  if (ref === SELF_REF) {
    if (by?.kind !== 'agent') throw new CountersignError('NOT_FOUND', '`me` names the calling agent; an operator token is not one');
    return { id: by.agentId, name: by.agentName };
  }
  const found = (await store.findAgentById(ref)) ?? (await store.findAgentByName(ref));
  if (!found) throw new CountersignError('NOT_FOUND', `no agent ${ref}`);
  return { id: found.id, name: found.name };
}

/** `me` is how a path names the caller, so no operator or agent may be called that. */
export function refuseReservedName(kind: 'operator' | 'agent', name: string): void {
  if (name === SELF_REF) throw new CountersignError('VALIDATION_FAILED', `"${SELF_REF}" cannot be an ${kind}'s name: paths use it for the caller`, { field: 'name' });
}

/** Whether `ref` names the calling operator: `me`, their id or their name. */
export function isSelfRef(by: Extract<Principal, { kind: 'operator' }>, ref: string): boolean {
  return ref === SELF_REF || ref === by.operatorId || ref === by.name;
}

/**
 * Identity (engine room): who calls, and the first start. Bearer credentials resolved through
 * engine/credentials.ts; the bootstrap admin and demo agent; operators and agent keys made by an
 * admin; agents made on first use, operators proposing as `operator:<name>`.
 */
import { CountersignError, ROLES, adminChangeSigners, type LineageEdge, type Role } from '@countersign/core';
import { newId, sha256Hex } from '../ids.ts';
import { SYSTEM_ACTOR, actorOf, type AuditActor } from '../audit/writer.ts';
import { type Queries } from '../store/store.ts';
import type { Principal } from './principal.ts';
import type { Credentials } from './credentials.ts';
import { refuseReservedName } from './refs.ts';
import { audit, requireRole, type House } from './house.ts';

const SYSTEM = SYSTEM_ACTOR;
type Actor = AuditActor;

export class Identity {
  constructor(private readonly h: House) {}

  /** Resolves a bearer credential (cached for `CREDENTIAL_CACHE_MS`; a change made here clears the cache). */
  async authenticate(token: string): Promise<Principal | undefined> {
    if (token.length < 10 || token.length > 200) return undefined;
    return this.h.credentials.authenticateHash(sha256Hex(token));
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
    return this.h.store.transaction(async (tx) => {
      if ((await tx.countOperatorTokens()) > 0) return null;
      // Never twice per database (a `bootstrapped` mark, or any credential ever issued in the trail).
      if (!(await this.h.credentials.mayBootstrap(tx))) return null;
      if (!(await this.h.credentials.markBootstrapped(tx))) return null;
      // An embedded gateway's tokenless admin (MAC-valid, active) is given the token; otherwise one is made.
      const existing = (await this.h.credentials.activeOperators(tx)).find((op) => op.roles.includes('admin'));
      // Only an admin whose MAC-covered `tokenless` mark says it never had a token (a real admin whose tokens were wiped gets none).
      if (existing && !(await this.h.credentials.isTokenless(tx, existing.operatorId))) return null;
      const admin = existing
        ? await this.h.credentials.issueOperatorToken(tx, existing, given.adminToken)
        : await this.h.credentials.insertOperator(tx, SYSTEM, { name: 'admin', roles: ['admin'], groups: [] }, given.adminToken);
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

  async createOperator(by: Principal, input: { name: string; roles: Role[]; groups?: string[] | undefined }) {
    requireRole(by, 'admin');
    for (const role of input.roles) {
      if (!ROLES.includes(role)) throw new CountersignError('VALIDATION_FAILED', `unknown role "${role}"`, { roles: ROLES });
    }
    refuseReservedName('operator', input.name);
    const made = await this.h.store.transaction(async (tx) => {
      if (await tx.findOperatorByName(input.name)) {
        throw new CountersignError('VALIDATION_FAILED', `an operator named "${input.name}" already exists`);
      }
      return this.h.credentials.insertOperator(tx, actorOf(by), { name: input.name, roles: input.roles, groups: input.groups ?? [] });
    });
    return { id: made.id, name: made.name, roles: made.roles, token: made.token };
  }

  async createAgentKey(by: Principal, agentName: string) {
    requireRole(by, 'admin');
    refuseReservedName('agent', agentName);
    return this.h.store.transaction((tx) => this.insertAgentKey(tx, actorOf(by), agentName));
  }

  async insertAgentKey(tx: Queries, by: Actor, agentName: string, key?: string) {
    const agentId = await this.ensureAgent(tx, agentName, this.h.now(), by);
    return this.h.credentials.insertAgentKey(tx, by, agentId, agentName, key);
  }

  async ensureAgent(tx: Queries, name: string, at: number, by: Actor): Promise<string> {
    const existing = await tx.findAgentByName(name);
    if (existing) return existing.id;
    const id = newId('agt', at);
    await tx.insertAgent({ id, name, created_at: at });
    await this.h.writer.append(tx, [audit('agent_created', null, by, { agentId: id, name }, at)]);
    return id;
  }

  /** Operators may propose actions too; they act as an agent named `operator:<name>`. */
  async requesterAgent(by: Principal, at: number): Promise<{ id: string; name: string }> {
    if (by.kind === 'agent') return { id: by.agentId, name: by.agentName };
    const name = `operator:${by.name}`;
    const existing = await this.h.store.findAgentByName(name);
    if (existing) return { id: existing.id, name };
    const id = await this.h.store.transaction((tx) => this.ensureAgent(tx, name, at, actorOf(by)));
    return { id, name };
  }
}

/**
 * Who may sign an admin change proposed by `proposerId` (core `adminChangeSigners`): active
 * admins, less those the credential lineage ties to the proposer. created/token: holds the
 * operator's secret (until it rotates its own); admin: made it an admin (for good). Unknown: both (fail closed).
 */
export async function adminSigners(credentials: Credentials, q: Queries, proposerId: string) {
  const admins = (await credentials.activeOperators(q)).filter((op) => op.roles.includes('admin')).map((op) => ({ id: op.operatorId, name: op.name }));
  const edges = (await q.credentials.lineage()).flatMap((e): LineageEdge[] => {
    const edge = { operatorId: e.operator_id, issuerId: e.issuer_id };
    if (e.kind === 'created' || e.kind === 'token') return [{ ...edge, kind: 'holds' }];
    if (e.kind === 'admin') return [{ ...edge, kind: 'madeAdmin' }];
    return [{ ...edge, kind: 'holds' }, { ...edge, kind: 'madeAdmin' }];
  });
  return adminChangeSigners(proposerId, admins, edges);
}

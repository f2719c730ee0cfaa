/**
 * The agent-config desk (issue 18): `GET/PUT /v1/agents/:name/config`, per-agent settings over
 * the policy file's `agents.<name>`, and four-eyes on loosening them.
 *
 * - **Validated** by core `validateAgentConfig` (the policy file's own schema and checks), so a
 *   bad body is `POLICY_INVALID` naming every wrong key, and nothing is written.
 * - **Judged**: core `weakens(current, proposed, agent)` over the active policy with each overlay.
 *   Nothing loosened (or `admin.singleAdmin: true`): applied at once. Something loosened: filed
 *   as a `countersign.agent_config` request by the admin (the engine's `proposeAdminChange`), which
 *   the one gate lets only another admin approve (the requester's own vote is SELF_REVIEW).
 * - **Applied once**: when that request is approved, in the deciding transaction (`settle`), the
 *   args exactly as approved — after checking they still hash to the `created` entry's
 *   payloadHash (a database writer's edit of the pending request's args is refused) and that the
 *   base version is still the one in force (else `agent_config_refused`, `execution_failed`).
 * - **Versioned and audited** like a policy change: every overlay is a row in
 *   `agent_config_versions` and an `agent_config_changed` entry; a request judged under an
 *   overlay records its version in its `created` entry (`agentConfigVersion`).
 * - **Trusted only with its MAC**: the row in force carries an HMAC under the server secret; a
 *   row whose MAC fails refuses the agent's requests (AGENT_DISABLED), never runs ungated.
 * - **Linearised with creates**: a change takes the agent's advisory lock (`agent:<id>`, the lock
 *   the create path's limits take) and the create re-reads the version under it in its own
 *   transaction, so no create is judged by an overlay that was replaced before it committed.
 */
import {
  AGENT_CONFIG_ACTION,
  CountersignError,
  adminChangeAssessment,
  agentPolicy,
  canonicalJson,
  effectiveAgentConfig,
  needsSecondAdmin,
  overlayBaselines,
  parseBaselines,
  validateAgentConfig,
  weakens,
  withAgentOverlay,
  type AgentConfig,
  type AgentConfigChangeArgs,
  type ApprovalRequest,
  type Baselines,
  type Assessment,
  type Decision,
  type JsonObject,
  type Policy,
} from '@countersign/core';
import { actorOf, draft, SYSTEM_ACTOR, type AuditDraft, type AuditWriter } from '../audit/writer.ts';
import { sha256Hex } from '../ids.ts';
import type { ServerSecret } from '../keys/server-secret.ts';
import type { AgentConfigsTable } from '../store/agent-configs.ts';
import type { Queries, RequestRow, Store } from '../store/store.ts';
import type { Principal } from './principal.ts';
import { agentRef } from './refs.ts';

/** The overlay in force for one agent: version 0 and null config when it has none. */
export interface Overlay {
  readonly version: number;
  readonly config: AgentConfig | null;
  /** For each key the overlay loosens, the file's value it was approved against (core overlay.ts). */
  readonly baselines: Baselines;
}

const NO_OVERLAY: Overlay = Object.freeze({ version: 0, config: null, baselines: Object.freeze({}) });

export interface AgentConfigDeps {
  store: Store;
  writer: AuditWriter;
  now: () => number;
  secret: ServerSecret;
  /** The active policy (the file's, without any overlay). */
  policy: () => Policy;
  payloadHash: (action: string, args: JsonObject) => string;
  /** Files an admin change as a request (the engine is the only writer of requests), with extra audit entries in its transaction. */
  /** The admins who may sign an admin change `proposerId` files now (core adminChangeSigners over the active admins and operator lineage). */
  adminSigners: (q: Queries, proposerId: string) => Promise<{ id: string; name: string }[]>;
  proposeAdminChange: (by: Extract<Principal, { kind: 'operator' }>, action: string, args: JsonObject, description: string, assessment: Assessment, entries: (requestId: string) => AuditDraft[]) => Promise<ApprovalRequest>;
}

export type PutOutcome =
  | { status: 'applied'; version: number; loosens: readonly { key: string; why: string }[] }
  | { status: 'unchanged'; version: number }
  | { status: 'pending_approval'; requestId: string; loosens: readonly { key: string; why: string }[]; approvers: readonly { id: string; name: string }[] };

export class AgentConfigDesk {
  constructor(private readonly deps: AgentConfigDeps) {}

  private mac(agentId: string, version: number, hash: string, config: string, baselines: string): string {
    return this.deps.secret.mac('agent_config', [agentId, version, hash, config, baselines]);
  }

  /**
   * The overlay in force for the agent, read on `q` (a transaction's handle inside one). A row
   * whose MAC or hash fails, or that no longer validates, is refused (fail closed): the agent's
   * requests are AGENT_DISABLED until an admin sets its config again.
   */
  async overlayOf(q: Queries, agentId: string, agentName: string, lock = false): Promise<Overlay> {
    const row = await q.agentConfigs.current(agentId, lock);
    if (!row) return NO_OVERLAY;
    return { version: row.version, config: this.trusted(row, agentName), baselines: baselinesOf(row) };
  }

  private trusted(row: AgentConfigsTable, agentName: string): AgentConfig {
    const untrusted = (why: string) =>
      new CountersignError('AGENT_DISABLED', `agent ${agentName}'s stored configuration ${why}; its requests are refused until an admin sets it again (PUT /v1/agents/${agentName}/config)`, { agent: agentName, source: 'integrity' });
    if (sha256Hex(row.config) !== row.hash || !this.deps.secret.verify('agent_config', [row.agent_id, row.version, row.hash, row.config, row.baselines], row.mac)) throw untrusted('fails its integrity check');
    let parsed: unknown;
    try {
      parsed = JSON.parse(row.config);
    } catch {
      throw untrusted('is not JSON');
    }
    const checked = validateAgentConfig(agentName, parsed);
    if (!checked.ok) throw untrusted('no longer validates');
    return checked.config;
  }

  /** In the create's transaction, under the agent's lock: the overlay it was judged by is still the one in force. */
  async recheck(tx: Queries, agent: { id: string; name: string }, judged: Overlay): Promise<void> {
    await tx.counters.lock(`agent:${agent.id}`);
    const now = await this.overlayOf(tx, agent.id, agent.name);
    if (now.version !== judged.version) {
      throw new CountersignError('PAYLOAD_CHANGED', `agent ${agent.name}'s configuration changed while this request was evaluated; send it again`, { agent: agent.name, version: now.version });
    }
  }

  /** `GET /v1/agents/:name/config`: the overlay, the effective values with their sources, the versions, pending changes. */
  async view(by: Principal, ref: string) {
    requireReader(by);
    const agent = await agentRef(this.deps.store, by, ref);
    const row = await this.deps.store.agentConfigs.current(agent.id);
    const policy = this.deps.policy();
    let overlay: AgentConfig | null = null;
    let integrity: 'ok' | 'failed' = 'ok';
    if (row) {
      try {
        overlay = this.trusted(row, agent.name);
      } catch {
        integrity = 'failed';
      }
    }
    const versions = await this.deps.store.agentConfigs.history(agent.id, 20);
    return {
      agent,
      version: row?.version ?? 0,
      integrity,
      overlay: overlay ?? {},
      baselines: overlay && row ? baselinesOf(row) : {},
      effective: effectiveAgentConfig(policy, agent.name, overlay, overlay && row ? baselinesOf(row) : {}),
      singleAdmin: policy.admin.singleAdmin,
      versions: versions.map((v) => ({ version: v.version, hash: v.hash, setAt: new Date(v.set_at).toISOString(), setBy: v.set_by, requestId: v.request_id })),
    };
  }

  /**
   * `PUT /v1/agents/:name/config`: the whole overlay (`{}` clears it). Applied at once when it
   * loosens nothing (or `admin.singleAdmin`), else filed for another admin.
   */
  async put(by: Principal, ref: string, body: unknown): Promise<PutOutcome> {
    const admin = requireAdmin(by);
    const agent = await agentRef(this.deps.store, by, ref);
    if (agent.name.startsWith('operator:')) throw new CountersignError('VALIDATION_FAILED', `${agent.name} stands for an operator filing requests; configure operators through their roles`, { field: 'name' });
    const checked = validateAgentConfig(agent.name, body);
    if (!checked.ok) throw new CountersignError('POLICY_INVALID', `the configuration for agent ${agent.name} is invalid: ${checked.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, { errors: checked.errors });
    const config = checked.config;
    const text = canonicalJson(config as JsonObject);
    const hash = sha256Hex(text);
    const policy = this.deps.policy();
    const current = await this.currentForChange(this.deps.store, agent);
    // Each loosening records the file value it is judged (and, if so, approved) against: core overlay.ts.
    const baselines = overlayBaselines(policy, agent.name, config);
    const baselineText = canonicalJson(baselines as JsonObject);
    const loosens = weakens(withAgentOverlay(policy, agent.name, current.config, current.baselines), withAgentOverlay(policy, agent.name, config, baselines), agent.name);
    const summary = loosens.map((l) => ({ key: l.key, why: l.why }));
    if (needsSecondAdmin(policy, loosens)) {
      const approvers = await this.deps.adminSigners(this.deps.store, admin.operatorId);
      const args: AgentConfigChangeArgs = { agent: agent.name, agentId: agent.id, config: config as JsonObject, baseVersion: current.version, baselines, approvers: approvers.map((a) => a.id), loosens: summary };
      const description = `Set agent ${agent.name}'s configuration; it loosens the gate: ${summary.map((l) => `${l.key} (${l.why})`).join('; ')}`;
      const request = await this.deps.proposeAdminChange(admin, AGENT_CONFIG_ACTION, args as unknown as JsonObject, description, adminChangeAssessment(policy, loosens, new Date(this.deps.now()), approvers), (requestId) => [
        draft('agent_config_proposed', requestId, actorOf(admin), { agentId: agent.id, agent: agent.name, baseVersion: current.version, hash, loosens: summary, approvers: approvers.map((a) => a.name), requestId }, this.deps.now()),
      ]);
      return { status: 'pending_approval', requestId: request.id, loosens: summary, approvers };
    }
    return this.deps.store.transaction(async (tx) => {
      await tx.counters.lock(`agent:${agent.id}`);
      const row = await tx.agentConfigs.current(agent.id, true);
      const version = row?.version ?? 0;
      if (version !== current.version) throw new CountersignError('PAYLOAD_CHANGED', `agent ${agent.name}'s configuration changed meanwhile (now version ${version}); read it and try again`, { version });
      if (row && row.hash === hash && row.baselines === baselineText) return { status: 'unchanged' as const, version };
      const next = await this.write(tx, agent, version, text, hash, baselineText, actorOf(admin).name, null);
      await this.deps.writer.append(tx, [
        draft('agent_config_changed', null, actorOf(admin), { agentId: agent.id, agent: agent.name, version: next, previousVersion: version, hash, config, loosens: summary }, this.deps.now()),
      ]);
      return { status: 'applied' as const, version: next, loosens: summary };
    });
  }

  /** The overlay a change is judged against: a row that fails its MAC counts as none (the change then replaces it). */
  private async currentForChange(q: Queries, agent: { id: string; name: string }): Promise<Overlay> {
    const row = await q.agentConfigs.current(agent.id);
    if (!row) return NO_OVERLAY;
    try {
      return { version: row.version, config: this.trusted(row, agent.name), baselines: baselinesOf(row) };
    } catch {
      // Judged against "disabled" (what an untrusted row means), so replacing it is a loosening a second admin sees.
      return { version: row.version, config: { enabled: false }, baselines: {} };
    }
  }

  private async write(tx: Queries, agent: { id: string; name: string }, baseVersion: number, text: string, hash: string, baselines: string, by: string, requestId: string | null): Promise<number> {
    const version = baseVersion + 1;
    const at = this.deps.now();
    const ok = await tx.agentConfigs.replace(
      { agent_id: agent.id, version, config: text, hash, mac: this.mac(agent.id, version, hash, text, baselines), baselines, updated_at: at, updated_by: by },
      baseVersion,
      requestId,
    );
    if (!ok) throw new CountersignError('PAYLOAD_CHANGED', `agent ${agent.name}'s configuration changed meanwhile; read it and try again`);
    return version;
  }

  /**
   * In the transaction that decided a `countersign.agent_config` request: on approval, apply the
   * args exactly as approved, once, and close the request (`executed`, or `execution_failed`
   * when the base moved or the args are not what was filed). Rejections and expiry change nothing.
   */
  async settle(tx: Queries, row: RequestRow, decision: Decision, at: number): Promise<Partial<RequestRow>> {
    if (decision.outcome !== 'approved') return {};
    const fail = async (reason: string, data: Record<string, unknown>) => {
      const execution = { status: 'failed', result: null, error: reason, at: new Date(at).toISOString() };
      const patch = { status: 'execution_failed' as const, execution: JSON.stringify(execution), updated_at: at };
      if (!(await tx.updateRequest(row.id, patch, 'approved'))) throw new CountersignError('ALREADY_DECIDED', `request ${row.id} changed concurrently`);
      await this.deps.writer.append(tx, [
        draft('agent_config_refused', row.id, SYSTEM_ACTOR, data, at),
        draft('execution_failed', row.id, SYSTEM_ACTOR, { status: 'failed', error: reason }, at),
      ]);
      return patch;
    };
    const args = JSON.parse(row.args) as AgentConfigChangeArgs;
    // The payload that runs is the one filed: the trail's `created` entry binds its hash.
    const created = (await tx.auditFor(row.id)).find((e) => e.type === 'created');
    const filedHash = created ? (JSON.parse(created.data) as { payloadHash?: unknown }).payloadHash : undefined;
    if (filedHash !== this.deps.payloadHash(row.action, JSON.parse(row.args) as JsonObject) || row.requester_operator_id === null) {
      return fail('the change is not the one that was filed (its args do not match the created entry)', { agentId: args.agentId ?? null, agent: args.agent ?? null, baseVersion: args.baseVersion ?? null, currentVersion: null, requestId: row.id });
    }
    const agent = { id: args.agentId, name: args.agent };
    const checked = validateAgentConfig(agent.name, args.config);
    if (!checked.ok) return fail('the approved configuration no longer validates', { agentId: agent.id, agent: agent.name, baseVersion: args.baseVersion, currentVersion: null, requestId: row.id });
    await tx.counters.lock(`agent:${agent.id}`);
    const current = await tx.agentConfigs.current(agent.id, true);
    const version = current?.version ?? 0;
    if (version !== args.baseVersion) {
      return fail(`agent ${agent.name}'s configuration changed after this was proposed (version ${args.baseVersion} → ${version}); propose it again`, { agentId: agent.id, agent: agent.name, baseVersion: args.baseVersion, currentVersion: version, requestId: row.id });
    }
    const text = canonicalJson(checked.config as JsonObject);
    const hash = sha256Hex(text);
    // The baselines it was judged against at proposal: if the file has since become stricter, the loosening does not apply (overlay.ts).
    const next = await this.write(tx, agent, version, text, hash, canonicalJson(parseBaselines(args.baselines) as JsonObject), `request ${row.id}`, row.id);
    const execution = { status: 'succeeded', result: { agent: agent.name, version: next }, error: null, at: new Date(at).toISOString() };
    const patch = { status: 'executed' as const, execution: JSON.stringify(execution), updated_at: at };
    if (!(await tx.updateRequest(row.id, patch, 'approved'))) throw new CountersignError('ALREADY_DECIDED', `request ${row.id} changed concurrently`);
    await this.deps.writer.append(tx, [
      draft('agent_config_changed', row.id, SYSTEM_ACTOR, { agentId: agent.id, agent: agent.name, version: next, previousVersion: version, hash, config: checked.config, loosens: args.loosens, requestId: row.id, approvedBy: decision.deciders.map((d) => d.name) }, at),
      draft('executed', row.id, SYSTEM_ACTOR, { status: 'succeeded', agentConfigVersion: next }, at),
    ]);
    return patch;
  }

  /** The policy that judges this agent's requests now (file + overlay, per agent), read on `q`. */
  async policyFor(q: Queries, agentId: string, agentName: string): Promise<Policy> {
    const overlay = await this.overlayOf(q, agentId, agentName);
    return agentPolicy(this.deps.policy(), agentName, overlay.config, overlay.baselines);
  }

  /**
   * Who may sign this admin change now: the admins its proposal named (args.approvers), less any
   * who have since come into the same hands as the proposer, either way (core `sameHands`: one
   * holds or could hold the other's credential, or made the other admin; review F4, review2 F1).
   */
  async signersOf(q: Queries, row: RequestRow): Promise<string[]> {
    if (row.requester_operator_id === null) return [];
    let named: unknown;
    try {
      named = (JSON.parse(row.args) as { approvers?: unknown }).approvers;
    } catch {
      return [];
    }
    if (!Array.isArray(named)) return [];
    const now = new Set((await this.deps.adminSigners(q, row.requester_operator_id)).map((a) => a.id));
    return named.filter((id): id is string => typeof id === 'string' && now.has(id));
  }
}

/** A stored row's baselines (MAC-checked with it by `trusted`); unreadable: none, which only makes the overlay stricter. */
function baselinesOf(row: AgentConfigsTable): Baselines {
  try {
    return parseBaselines(JSON.parse(row.baselines));
  } catch {
    return {};
  }
}

function requireReader(by: Principal): void {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot read agent configuration');
  if (!by.roles.includes('admin') && !by.roles.includes('auditor')) throw new CountersignError('FORBIDDEN', 'this needs the admin or auditor role');
}

function requireAdmin(by: Principal): Extract<Principal, { kind: 'operator' }> {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot change agent configuration');
  if (!by.roles.includes('admin')) throw new CountersignError('FORBIDDEN', 'this needs the admin role');
  return by;
}

/**
 * Per-agent configuration overlays (migration 017_agent_config): the one in force per agent and
 * every version ever set. The engine's agent-config desk (engine/agent-config.ts) is the only
 * caller of the writes; the MAC is computed there (the store knows no secret).
 */
import type { Kysely, Transaction } from 'kysely';
import type { Capabilities } from './connect.ts';
import type { Database } from './schema.ts';

export interface AgentConfigsTable {
  agent_id: string;
  version: number;
  /** Canonical JSON of the overlay (core `AgentConfig`). */
  config: string;
  /** SHA-256 of `config`. */
  hash: string;
  /** HMAC under the server secret of agent id, version, hash (engine/agent-config.ts `configMac`). */
  mac: string;
  /** JSON: key → the policy file's value each loosening was approved against (core overlay.ts); MACed with the rest. */
  baselines: string;
  updated_at: number;
  updated_by: string;
}

export interface AgentConfigVersionsTable {
  agent_id: string;
  version: number;
  config: string;
  hash: string;
  baselines: string;
  set_at: number;
  set_by: string;
  /** The `countersign.agent_config` request a second admin approved, when it came that way. */
  request_id: string | null;
}

type Db = Kysely<Database> | Transaction<Database>;

export class AgentConfigQueries {
  constructor(
    private readonly db: Db,
    private readonly capabilities: Capabilities,
  ) {}

  /** The overlay in force for the agent; `lock` (PostgreSQL, in a transaction) holds its row until the end. */
  async current(agentId: string, lock = false): Promise<AgentConfigsTable | undefined> {
    let q = this.db.selectFrom('agent_configs').selectAll().where('agent_id', '=', agentId);
    if (lock && this.capabilities.rowLocks) q = q.forUpdate();
    const row = await q.executeTakeFirst();
    return row && { ...row, version: Number(row.version), updated_at: Number(row.updated_at) };
  }

  /**
   * Replaces the overlay, compare-and-set on the version it was judged against (0: none yet).
   * Returns false when another change got there first (nothing written).
   */
  async replace(row: AgentConfigsTable, baseVersion: number, requestId: string | null): Promise<boolean> {
    if (baseVersion === 0) {
      const inserted = await this.db.insertInto('agent_configs').values(row).onConflict((oc) => oc.column('agent_id').doNothing()).executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) !== 1) return false;
    } else {
      const updated = await this.db
        .updateTable('agent_configs')
        .set({ version: row.version, config: row.config, hash: row.hash, mac: row.mac, baselines: row.baselines, updated_at: row.updated_at, updated_by: row.updated_by })
        .where('agent_id', '=', row.agent_id)
        .where('version', '=', baseVersion)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) return false;
    }
    await this.db
      .insertInto('agent_config_versions')
      .values({ agent_id: row.agent_id, version: row.version, config: row.config, hash: row.hash, baselines: row.baselines, set_at: row.updated_at, set_by: row.updated_by, request_id: requestId })
      .execute();
    return true;
  }

  /** Every version set for the agent, newest first (at most `limit`). */
  async history(agentId: string, limit = 50): Promise<AgentConfigVersionsTable[]> {
    const rows = await this.db.selectFrom('agent_config_versions').selectAll().where('agent_id', '=', agentId).orderBy('version', 'desc').limit(limit).execute();
    return rows.map((r) => ({ ...r, version: Number(r.version), set_at: Number(r.set_at) }));
  }
}

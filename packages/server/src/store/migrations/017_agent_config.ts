import type { Kysely, Migration } from 'kysely';

/**
 * Migration 017 (issue 18): per-agent configuration written through the API, over the policy
 * file's `agents.<name>`.
 *
 * - `agent_configs`: the overlay in force, one row per agent (`version` counts from 1, `mac` is an
 *   HMAC under the server secret binding agent, version, hash and config, so a database writer
 *   cannot switch an agent's gating off by editing the row: a row whose MAC fails refuses the
 *   agent's requests).
 * - `agent_config_versions`: every overlay ever in force (insert-only), with who set it and, for a
 *   change a second admin approved, the `countersign.agent_config` request that carried it.
 * - `baselines` (both tables): for each key the overlay loosens, the policy file's value it was
 *   approved against (core overlay.ts); the loosening stops applying once the file is stricter.
 * - `operator_lineage`: who holds an operator's credential (`created` it: deleted when the
 *   operator rotates its own token; or `token`: rotated it, or held it when the operator was
 *   granted admin, never ends) and who made it an admin (`admin`: created it as one or granted
 *   the role; never ends), written by the
 *   credentials desk, so an admin in the same hands as the proposer, either way, never signs
 *   their admin change (four-eyes, review F4, review2 F1). A table rather than the audit trail:
 *   retention prunes the trail, and four-eyes must not forget. Backfilled here from the trail's
 *   `operator_created`, `operator_updated` (roles with admin) and `token_rotated`, in order.
 */
export const m017_agent_config: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('agent_configs')
      .addColumn('agent_id', 'text', (c) => c.primaryKey())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('mac', 'text', (c) => c.notNull())
      .addColumn('baselines', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_by', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('agent_config_versions')
      .addColumn('agent_id', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('set_at', 'bigint', (c) => c.notNull())
      .addColumn('set_by', 'text', (c) => c.notNull())
      .addColumn('baselines', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('request_id', 'text')
      .addPrimaryKeyConstraint('agent_config_versions_pk', ['agent_id', 'version'])
      .execute();
    await db.schema
      .createTable('operator_lineage')
      .addColumn('operator_id', 'text', (c) => c.notNull())
      .addColumn('issuer_id', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('operator_lineage_pk', ['operator_id', 'issuer_id', 'kind'])
      .execute();
    await db.schema.createIndex('operator_lineage_issuer').on('operator_lineage').column('issuer_id').execute();
    // Backfill from the trail (integrated, then pending entries, each in order) what operators already did.
    const add = (operator_id: string, issuer_id: string, kind: string, at: number) =>
      db.insertInto('operator_lineage').values({ operator_id, issuer_id, kind, at }).onConflict((oc) => oc.columns(['operator_id', 'issuer_id', 'kind']).doNothing()).execute();
    const types = ['operator_created', 'operator_updated', 'token_rotated'];
    for (const [table, order] of [['audit_log', 'seq'], ['audit_pending', 'id']] as const) {
      const rows: Array<{ type: string; actor_id: string; data: string; at: number | string }> = await db
        .selectFrom(table)
        .select(['type', 'actor_id', 'data', 'at'])
        .where('actor_type', '=', 'operator')
        .where('type', 'in', types)
        .orderBy(order)
        .execute();
      for (const r of rows) {
        let data: { operatorId?: unknown; roles?: unknown };
        try {
          data = JSON.parse(r.data) as typeof data;
        } catch {
          continue;
        }
        if (typeof data.operatorId !== 'string') continue;
        const admin = Array.isArray(data.roles) && data.roles.includes('admin');
        if (data.operatorId === r.actor_id) {
          // An operator rotating its own token ends its creator's hold (store/credentials.ts endHolds).
          if (r.type === 'token_rotated') await db.deleteFrom('operator_lineage').where('operator_id', '=', data.operatorId).where('kind', '=', 'created').execute();
          continue;
        }
        if (r.type === 'operator_created') await add(data.operatorId, r.actor_id, 'created', Number(r.at));
        if (r.type === 'token_rotated') await add(data.operatorId, r.actor_id, 'token', Number(r.at));
        if (r.type === 'operator_updated' && admin) {
          // Granted admin: a creator still holding it holds it for good (pinHolds).
          const holders: Array<{ issuer_id: string }> = await db.selectFrom('operator_lineage').select('issuer_id').where('operator_id', '=', data.operatorId).where('kind', '=', 'created').execute();
          for (const h of holders) await add(data.operatorId, h.issuer_id, 'token', Number(r.at));
        }
        if (r.type !== 'token_rotated' && admin) await add(data.operatorId, r.actor_id, 'admin', Number(r.at));
      }
    }
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('operator_lineage').execute();
    await db.schema.dropTable('agent_config_versions').execute();
    await db.schema.dropTable('agent_configs').execute();
  },
};

/**
 * The reads a what-if replay needs (engine/replay.ts): stored requests of a period, newest first,
 * one page at a time (keyset on created_at, id, the `requests_created` index), with what their
 * create was judged on; and the policy text of a version. Read-only.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';
import type { Sealer } from './sealing.ts';

type Db = Kysely<Database> | Transaction<Database>;

export interface ReplayRow {
  id: string;
  agent_name: string;
  action: string;
  args: string;
  description: string | null;
  confidence: number | null;
  risk_hint: string | null;
  context: string;
  alternatives: string;
  approvers: string;
  timeout_seconds: number | null;
  assessment: string;
  policy_version: number;
  created_at: number;
}

export class ReplayQueries {
  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {}

  /** Requests created in [from, to), newest first, strictly before `before` in that order; at most `limit`. */
  async page(from: number, to: number, limit: number, before?: { createdAt: number; id: string }): Promise<ReplayRow[]> {
    let query = this.db
      .selectFrom('requests')
      .innerJoin('agents', 'agents.id', 'requests.agent_id')
      .select([
        'requests.id',
        'agents.name as agent_name',
        'requests.action',
        'requests.args',
        'requests.description',
        'requests.confidence',
        'requests.risk_hint',
        'requests.context',
        'requests.alternatives',
        'requests.approvers',
        'requests.timeout_seconds',
        'requests.assessment',
        'requests.policy_version',
        'requests.created_at',
      ])
      .where('requests.created_at', '>=', from)
      .where('requests.created_at', '<', to);
    if (before) {
      const { createdAt, id } = before;
      query = query.where((eb) => eb.or([eb('requests.created_at', '<', createdAt), eb.and([eb('requests.created_at', '=', createdAt), eb('requests.id', '<', id)])]));
    }
    const rows = await query.orderBy('requests.created_at', 'desc').orderBy('requests.id', 'desc').limit(limit).execute();
    return rows.map((r) => this.sealer.openRequest(r));
  }

  /** The text of a stored policy version; undefined when it is not stored. */
  async policyText(version: number): Promise<string | undefined> {
    const row = await this.db.selectFrom('policies').select('source').where('version', '=', version).executeTakeFirst();
    return row?.source;
  }
}

/**
 * The gate's counters (migration 009_gate): insert-only rows, one per accepted approval and one
 * per create, read over a time window, and the agent's value totals by minute (024_gate12). A limit is checked and recorded atomically by taking the
 * principal's lock first (`lock`): on PostgreSQL a transaction-scoped advisory lock keyed by the
 * principal, so two approvals by one reviewer (or two creates by one agent) take turns while
 * other reviewers and agents never wait on them; on SQLite the one writer already serialises
 * every transaction, so there is nothing to take.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Capabilities } from './connect.ts';
import { deferred } from './pipeline.ts';
import type { Database } from './schema.ts';

export interface ApprovalEventsTable {
  id: string;
  operator_id: string;
  request_id: string;
  /** The risk level of the payload the approval approved (the gate's requirement), which limits count at. */
  risk_level: string;
  at: number;
}

export interface AgentRateEventsTable {
  id: string;
  agent_id: string;
  request_id: string;
  at: number;
  /** JSON of core's `ValueBucket` written by `runningTotal` for this create; null when it had no value under any threshold. */
  value_bucket: string | null;
  /** The action's normal form (024_gate12; null on older rows and for agents without onSlicing). */
  action_key?: string | null;
  /** A hash of the payload's key set (core `payloadKeys`), for the per-create read of similar payloads. */
  keys_key?: string | null;
  /** JSON of core's `payloadFingerprint` of the args, sealed like them. */
  fingerprint?: string | null;
}

/**
 * An agent's running value totals by minute (migration 024_gate12): one row per agent and minute
 * with a value, the merge (core `mergeBucket`) of the slices its creates in that minute wrote. The
 * create path reads at most the window's 61 rows, however many creates the agent made, and
 * rewrites the current minute's row under the agent's lock (so no two creates lose one another's
 * slice); agents never share a row. The per-create slices stay in `agent_rate_events` for the
 * `/slicing` report.
 */
export interface AgentValueMinutesTable {
  agent_id: string;
  /** The minute's start, epoch ms (core `ValueBucket.start`). */
  start: number;
  /** JSON of core's `ValueBucket`. */
  bucket: string;
}

type Db = Kysely<Database> | Transaction<Database>;

export class CounterQueries {
  constructor(
    private readonly db: Db,
    private readonly capabilities: Capabilities,
  ) {}

  /**
   * Serialises this transaction with every other one holding the same key until it ends (commit
   * or rollback). Keys are `approver:<operatorId>` or `agent:<agentId>`. Must be called inside a
   * transaction; a no-op on SQLite, whose writer is already one at a time. Sent with the next
   * statement (store/pipeline.ts), which the server runs only once the lock is granted.
   */
  async lock(key: string): Promise<void> {
    if (this.capabilities.dialect !== 'postgres') return;
    await this.db.executeQuery(deferred(sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`.compile(this.db)));
  }

  /**
   * What a create checks under the agent's lock, in one statement: the agent's running pause
   * (the latest-ending one, as GuardQueries.activePause) and how many creates it made after each
   * of `since`. (The value running total reads its minute totals apart: `valueMinutes`.)
   */
  async createState(agentId: string, now: number, since: readonly number[]): Promise<{ pause: { until: number; reason: string } | undefined; counts: number[] }> {
    const counts = since.map((s, i) => sql`(select count(*) from agent_rate_events where agent_id = ${agentId} and at > ${s}) as ${sql.ref(`n${i}`)}`);
    const rows = await sql<Record<string, unknown>>`select ${sql.join([...counts, sql`p.until as pause_until`, sql`p.reason as pause_reason`])}
      from (select 1 as one) x
      left join (select until, reason from agent_pauses where agent_id = ${agentId} and until > ${now} and resumed_at is null order by until desc, id limit 1) p on 1 = 1`.execute(this.db);
    const first = rows.rows[0]!;
    return {
      pause: first['pause_until'] === null || first['pause_until'] === undefined ? undefined : { until: Number(first['pause_until']), reason: String(first['pause_reason']) },
      counts: since.map((_, i) => Number(first[`n${i}`] ?? 0)),
    };
  }

  async approvalsBy(operatorId: string, since: number): Promise<{ request_id: string; risk_level: string; at: number }[]> {
    const rows = await this.db
      .selectFrom('approval_events')
      .select(['request_id', 'risk_level', 'at'])
      .where('operator_id', '=', operatorId)
      .where('at', '>', since)
      .orderBy('at')
      .execute();
    return rows.map((r) => ({ request_id: r.request_id, risk_level: r.risk_level, at: Number(r.at) }));
  }

  async insertApproval(row: ApprovalEventsTable): Promise<void> {
    await this.db.insertInto('approval_events').values(row).execute();
  }

  /** How many creates the agent made after `since`. */
  async agentCount(agentId: string, since: number): Promise<number> {
    const row = await this.db
      .selectFrom('agent_rate_events')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .where('agent_id', '=', agentId)
      .where('at', '>', since)
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** The oldest create times after `since` (for the reset time of a full window). */
  async agentTimes(agentId: string, since: number, limit: number): Promise<number[]> {
    const rows = await this.db
      .selectFrom('agent_rate_events')
      .select('at')
      .where('agent_id', '=', agentId)
      .where('at', '>', since)
      .orderBy('at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => Number(r.at));
  }

  /** The agent's minute buckets starting after `since` (JSON `ValueBucket`s): at most one per minute. */
  async valueMinutes(agentId: string, since: number): Promise<string[]> {
    const rows = await this.db.selectFrom('agent_value_minutes').select('bucket').where('agent_id', '=', agentId).where('start', '>', since).execute();
    return rows.map((r) => r.bucket);
  }

  /** Drops the agent's minute buckets starting at or before `before` (out of every window): the table stays at about 61 rows an agent. */
  async pruneValueMinutes(agentId: string, before: number): Promise<void> {
    await this.db.deleteFrom('agent_value_minutes').where('agent_id', '=', agentId).where('start', '<=', before).execute();
  }

  /** Writes the agent's bucket for one minute (the caller holds the agent's lock and merged it). */
  async putValueMinute(row: AgentValueMinutesTable): Promise<void> {
    await this.db
      .insertInto('agent_value_minutes')
      .values(row)
      .onConflict((oc) => oc.columns(['agent_id', 'start']).doUpdateSet({ bucket: row.bucket }))
      .execute();
  }

  /** The agent's stored value slices since `since` (one per create with a value), for the `/slicing` report. */
  async valueSlices(agentId: string, since: number): Promise<{ request_id: string; at: number; value_bucket: string }[]> {
    const rows = await this.db
      .selectFrom('agent_rate_events')
      .select(['request_id', 'at', 'value_bucket'])
      .where('agent_id', '=', agentId)
      .where('at', '>', since)
      .where('value_bucket', 'is not', null)
      .execute();
    return rows.map((r) => ({ request_id: r.request_id, at: Number(r.at), value_bucket: r.value_bucket as string }));
  }

  /**
   * The agent's newest fingerprints of an action since `since` (at most `limit`), and of those as
   * many again with the given key set: two index range reads (024_gate12), fingerprints still sealed.
   */
  async recentFingerprints(agentId: string, actionKey: string, keysKey: string, since: number, limit: number): Promise<{ request_id: string; at: number; fingerprint: string }[]> {
    const read = (keys: string | undefined) => {
      let q = this.db.selectFrom('agent_rate_events').select(['request_id', 'at', 'fingerprint']).where('agent_id', '=', agentId).where('action_key', '=', actionKey);
      if (keys !== undefined) q = q.where('keys_key', '=', keys);
      return q.where('at', '>', since).where('fingerprint', 'is not', null).orderBy('at', 'desc').limit(limit).execute();
    };
    const seen = new Set<string>();
    const out: { request_id: string; at: number; fingerprint: string }[] = [];
    for (const r of [...(await read(undefined)), ...(await read(keysKey))]) {
      if (seen.has(r.request_id)) continue;
      seen.add(r.request_id);
      out.push({ request_id: r.request_id, at: Number(r.at), fingerprint: r.fingerprint as string });
    }
    return out;
  }

  /** Sent with the next statement (store/pipeline.ts); a failure fails the transaction there. */
  async insertAgentEvent(row: AgentRateEventsTable): Promise<void> {
    await this.db.executeQuery(deferred(this.db.insertInto('agent_rate_events').values(row).compile()));
  }
}

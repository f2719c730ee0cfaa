/**
 * The gate's counters (migration 009_gate): insert-only rows, one per accepted approval and one
 * per create, read over a time window. A limit is checked and recorded atomically by taking the
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
   * (the latest-ending one, as GuardQueries.activePause), how many creates it made after each of
   * `since`, and the value slices recorded after `bucketsSince` (as `valueBuckets`).
   */
  async createState(agentId: string, now: number, since: readonly number[], bucketsSince: number): Promise<{ pause: { until: number; reason: string } | undefined; counts: number[]; buckets: string[] }> {
    const counts = since.map((s, i) => sql`(select count(*) from agent_rate_events where agent_id = ${agentId} and at > ${s}) as ${sql.ref(`n${i}`)}`);
    const rows = await sql<Record<string, unknown>>`select ${sql.join([...counts, sql`p.until as pause_until`, sql`p.reason as pause_reason`, sql`b.value_bucket as value_bucket`])}
      from (select 1 as one) x
      left join (select until, reason from agent_pauses where agent_id = ${agentId} and until > ${now} and resumed_at is null order by until desc, id limit 1) p on 1 = 1
      left join (select value_bucket from agent_rate_events where agent_id = ${agentId} and at > ${bucketsSince} and value_bucket is not null) b on 1 = 1`.execute(this.db);
    const first = rows.rows[0]!;
    return {
      pause: first['pause_until'] === null || first['pause_until'] === undefined ? undefined : { until: Number(first['pause_until']), reason: String(first['pause_reason']) },
      counts: since.map((_, i) => Number(first[`n${i}`] ?? 0)),
      buckets: rows.rows.flatMap((r) => (r['value_bucket'] === null || r['value_bucket'] === undefined ? [] : [r['value_bucket'] as string])),
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

  /** The value slices the agent's creates after `since` recorded (JSON `ValueBucket`s). */
  async valueBuckets(agentId: string, since: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('agent_rate_events')
      .select('value_bucket')
      .where('agent_id', '=', agentId)
      .where('at', '>', since)
      .where('value_bucket', 'is not', null)
      .execute();
    return rows.map((r) => r.value_bucket as string);
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

  /** Sent with the next statement (store/pipeline.ts); a failure fails the transaction there. */
  async insertAgentEvent(row: AgentRateEventsTable): Promise<void> {
    await this.db.executeQuery(deferred(this.db.insertInto('agent_rate_events').values(row).compile()));
  }
}

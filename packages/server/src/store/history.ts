/**
 * A year of history (issue 19): the metrics summary and compliance reports as SQL aggregates
 * over the requests' fact columns (migration 019_rollups), with memory bounded by the number of
 * buckets and operators, never by the number of requests. The definitions are core's
 * (metrics-summary.ts `countFact`, audit/compliance.ts `violationsOf`); the SQL below restates
 * them and history-aggregates.test.ts holds the two equal on random histories, on both dialects.
 *
 * Quantiles are exact: each group's values are ranked in SQL (a window function: an ordered read,
 * spilled to disk by the database when large), and only the order statistics the core quantile
 * needs (metrics.ts `quantileRanks`, a few rows per group) come back; `interpolate` finishes it.
 * Both dialects rank alike, so both return the same double as `quantile` over the sorted values.
 * (PostgreSQL's `percentile_cont` interpolates in its own arithmetic; it is not used so the two
 * dialects cannot differ in the last bit, which the 0.1 s rounding would sometimes show.)
 */
import {
  assessmentFacts,
  bucketLayout,
  decisionFacts,
  interpolate,
  quantileRanks,
  ZERO_COUNTS,
  type ComplianceCounts,
  type MetricBucket,
  type RateCounts,
  type ReviewTimes,
  type ViolationFact,
} from '@countersign/core';
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { Database, RequestFactColumn, RequestsTable } from './schema.ts';
import type { Sealer } from './sealing.ts';

type Db = Kysely<Database> | Transaction<Database>;
type FactColumns = Pick<RequestsTable, RequestFactColumn>;

function parseObject(text: string | null | undefined): Record<string, unknown> | null {
  if (text === null || text === undefined) return null;
  const value = JSON.parse(text) as unknown;
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** A decision's columns (plain JSON, before sealing), and its operator deciders. */
export function decisionFactColumns(decision: string | null): { columns: Omit<FactColumns, 'self_approved' | 'sla_due_at' | 'sla_seconds' | 'requires_approval'>; deciderOperatorIds: string[] } {
  const d = decisionFacts(parseObject(decision));
  return {
    columns: { decided_by: d.decidedBy, outcome: d.outcome, modified: d.modified ? 1 : 0, chose_alternative: d.choseAlternative ? 1 : 0 },
    deciderOperatorIds: d.deciderOperatorIds,
  };
}

/** Every fact column of a new row (plain JSON, before sealing). */
export function requestFactColumns(row: { assessment: string; decision: string | null; requester_operator_id: string | null }): FactColumns {
  const a = assessmentFacts(parseObject(row.assessment));
  const d = decisionFactColumns(row.decision);
  return {
    ...d.columns,
    self_approved: row.requester_operator_id !== null && d.deciderOperatorIds.includes(row.requester_operator_id) ? 1 : 0,
    sla_due_at: a.slaDueAt,
    sla_seconds: a.slaSeconds,
    requires_approval: a.requiresApproval ? 1 : 0,
  };
}

/** `self_approved` for an UPDATE that sets a decision: whether the row's requester is one of these deciders. */
export function selfApprovedBy(ids: readonly string[]): RawBuilder<number> {
  if (ids.length === 0) return sql<number>`0`;
  return sql<number>`case when requester_operator_id in (${sql.join(ids.map((id) => sql`${id}`))}) then 1 else 0 end`;
}

/** The rows of a ranked query: a group, its size, a value's rank (0-based) and the value. */
interface RankedRow {
  g: string | number;
  n: string | number;
  rk: string | number;
  v: string | number;
}

/** The q-quantiles of each group from its order statistics, by the core definition; values scaled by `scale`. */
function quantilesOf(rows: readonly RankedRow[], qs: readonly number[], scale: number): Map<string, Array<number | null>> {
  const groups = new Map<string, { n: number; byRank: Map<number, number> }>();
  for (const r of rows) {
    const key = String(r.g);
    const group = groups.get(key) ?? { n: Number(r.n), byRank: new Map() };
    group.byRank.set(Number(r.rk), Number(r.v) / scale);
    groups.set(key, group);
  }
  const out = new Map<string, Array<number | null>>();
  for (const [key, g] of groups) {
    out.set(
      key,
      qs.map((q) => {
        const r = quantileRanks(g.n, q);
        if (r === null) return null;
        const a = g.byRank.get(r.lo);
        const b = g.byRank.get(r.hi);
        if (a === undefined || b === undefined) throw new Error(`quantile ranks ${r.lo}/${r.hi} of ${g.n} not read`);
        return interpolate(a, b, r.frac);
      }),
    );
  }
  return out;
}

/**
 * Ranks `value` within `group` over the rows of `from` (SQL text after FROM, with its WHERE) and
 * keeps the ranks near each quantile's position: within 2 of (n - 1) q, so the floor and the
 * ceiling are among them whatever rounding the database's multiplication does.
 */
async function rankedRows(db: Db, group: RawBuilder<unknown>, value: RawBuilder<unknown>, from: RawBuilder<unknown>, qs: readonly number[]): Promise<RankedRow[]> {
  const near = sql.join(
    qs.map((q) => sql`abs(rk - (n - 1) * cast(${q} as double precision)) < 2`),
    sql` or `,
  );
  const result = await sql<RankedRow>`
    select g, n, rk, v from (
      select ${group} as g, ${value} as v,
        row_number() over (partition by ${group} order by ${value}) - 1 as rk,
        count(*) over (partition by ${group}) as n
      from ${from}
    ) ranked
    where ${near}`.execute(db);
  return result.rows;
}

const int = (v: unknown) => Number(v ?? 0);

export interface SummaryAggregates {
  /** Counts and decision-time quantiles (seconds, unrounded) per bucket index, and in total. */
  buckets: Map<number, { counts: RateCounts; median: number | null; p90: number | null }>;
  total: { counts: RateCounts; median: number | null; p90: number | null };
  operators: Array<{ id: string; name: string; reviews: number; approvals: number; median: number | null }>;
}

export class HistoryQueries {
  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {}

  /** The summary's numbers for requests created in [from, to) (core metrics-summary.ts `countFact`). */
  async summary(from: number, to: number, bucket: MetricBucket, now: number): Promise<SummaryAggregates> {
    const { first, size } = bucketLayout(from, to, bucket);
    const bucketOf = sql`(created_at - cast(${first} as bigint)) / cast(${size} as bigint)`;
    const inRange = sql`created_at >= cast(${from} as bigint) and created_at < cast(${to} as bigint)`;
    const review = sql`route = 'review'`;
    const byReviewers = sql`decided_by = 'reviewers' and decided_at is not null`;
    const slaCounted = sql`${review} and sla_due_at is not null and (outcome is null or outcome <> 'cancelled')`;
    const counts = sql`
      count(*) as requests,
      count(*) filter (where route = 'auto_approve') as automated,
      count(*) filter (where route = 'block') as blocked,
      count(*) filter (where ${review}) as human_routed,
      count(*) filter (where ${review} and exists (select 1 from audit_log a where a.request_id = requests.id and a.type = 'escalated')) as escalated,
      count(*) filter (where ${review} and ${byReviewers}) as human_decided,
      count(*) filter (where ${review} and ${byReviewers} and outcome = 'approved') as human_approved,
      count(*) filter (where ${slaCounted} and ${byReviewers} and decided_at <= sla_due_at) as sla_met,
      sum(case when ${slaCounted} then (case
        when ${byReviewers} then (case when decided_at > sla_due_at then 1 else 0 end)
        when outcome is not null then 1
        when sla_due_at < cast(${now} as bigint) then 1
        else 0 end) else 0 end) as sla_missed`;
    type CountRow = Record<string, unknown> & { b?: unknown };
    const countsOf = (r: CountRow): RateCounts => ({
      requests: int(r.requests),
      automated: int(r.automated),
      humanRouted: int(r.human_routed),
      blocked: int(r.blocked),
      escalated: int(r.escalated),
      humanDecided: int(r.human_decided),
      humanApproved: int(r.human_approved),
      slaMet: int(r.sla_met),
      slaMissed: int(r.sla_missed),
    });
    // One pass for the counts, by bucket; the totals are their sums (every count adds up).
    const perBucket = await sql<CountRow>`select ${bucketOf} as b, ${counts} from requests where ${inRange} group by 1`.execute(this.db);
    // One ranked pass for the quantiles of every bucket and of the total: each decision time
    // ranked within its bucket and among all, only the order statistics either needs kept.
    const took = sql`case when decided_at > created_at then decided_at - created_at else 0 end`;
    const qs = [0.5, 0.9] as const;
    const near = (rk: string, n: string) => sql.join(qs.map((q) => sql`abs(${sql.ref(rk)} - (${sql.ref(n)} - 1) * cast(${q} as double precision)) < 2`), sql` or `);
    const ranked = await sql<{ b: unknown; nb: unknown; rb: unknown; nt: unknown; rt: unknown; v: unknown }>`
      select b, nb, rb, nt, rt, v from (
        select ${bucketOf} as b, ${took} as v,
          row_number() over (partition by ${bucketOf} order by ${took}) - 1 as rb,
          count(*) over (partition by ${bucketOf}) as nb,
          row_number() over (order by ${took}) - 1 as rt,
          count(*) over () as nt
        from requests where ${inRange} and ${review} and ${byReviewers}
      ) ranked
      where ${near('rb', 'nb')} or ${near('rt', 'nt')}`.execute(this.db);
    const bucketQ = quantilesOf(ranked.rows.map((r) => ({ g: r.b as number, n: r.nb as number, rk: r.rb as number, v: r.v as number })), qs, 1000);
    const totalQ = quantilesOf(ranked.rows.map((r) => ({ g: 0, n: r.nt as number, rk: r.rt as number, v: r.v as number })), qs, 1000).get('0') ?? [null, null];

    const buckets = new Map<number, { counts: RateCounts; median: number | null; p90: number | null }>();
    const total: RateCounts = { ...ZERO_COUNTS };
    for (const r of perBucket.rows) {
      const q = bucketQ.get(String(r.b)) ?? [null, null];
      const c = countsOf(r);
      for (const k of Object.keys(total) as Array<keyof RateCounts>) total[k] += c[k];
      buckets.set(int(r.b), { counts: c, median: q[0] ?? null, p90: q[1] ?? null });
    }

    const votes = sql`reviews join requests on requests.id = reviews.request_id where requests.created_at >= cast(${from} as bigint) and requests.created_at < cast(${to} as bigint)`;
    // By operator and name (one name each, unless renamed): the least name is picked here, in
    // JavaScript's order as core's reference does, not by the database's collation.
    const operatorRows = await sql<{ id: string; name: string; reviews: unknown; approvals: unknown }>`
      select reviews.operator_id as id, reviews.operator_name as name, count(*) as reviews,
        count(*) filter (where reviews.verdict = 'approve') as approvals
      from ${votes} group by reviews.operator_id, reviews.operator_name`.execute(this.db);
    const operators = new Map<string, { id: string; name: string; reviews: number; approvals: number }>();
    for (const o of operatorRows.rows) {
      const seen = operators.get(o.id);
      if (seen === undefined) operators.set(o.id, { id: o.id, name: o.name, reviews: int(o.reviews), approvals: int(o.approvals) });
      // biome-ignore lint/complexity/useMathMinMax: strings (Math.min would make them NaN)
      else operators.set(o.id, { id: o.id, name: o.name < seen.name ? o.name : seen.name, reviews: seen.reviews + int(o.reviews), approvals: seen.approvals + int(o.approvals) });
    }
    const response = sql`case when reviews.created_at > requests.created_at then reviews.created_at - requests.created_at else 0 end`;
    const operatorQ = quantilesOf(await rankedRows(this.db, sql`reviews.operator_id`, response, votes, [0.5]), [0.5], 1000);
    return {
      buckets,
      total: { counts: total, median: totalQ[0] ?? null, p90: totalQ[1] ?? null },
      operators: [...operators.values()].map((o) => ({ ...o, median: operatorQ.get(o.id)?.[0] ?? null })),
    };
  }

  /**
   * A compliance report's numbers for requests created in [from, to) (core audit/compliance.ts):
   * the counts, the review times, and the first `limit` decided requests with a violation.
   */
  async compliance(from: number, to: number, limit: number): Promise<{ counts: ComplianceCounts; review: ReviewTimes; violating: ViolationFact[] }> {
    const inRange = sql`created_at >= cast(${from} as bigint) and created_at < cast(${to} as bigint)`;
    const decided = sql`outcome is not null and decided_at is not null`;
    const withSla = sql`${decided} and requires_approval = 1 and sla_seconds is not null and decided_by <> 'agent'`;
    const inTime = sql`decided_by = 'reviewers' and (decided_at - created_at) <= sla_seconds * 1000`;
    const critical = sql`${decided} and outcome = 'approved' and risk_level = 'critical' and decided_by <> 'reviewers'`;
    const byTimeout = sql`${decided} and outcome = 'approved' and decided_by = 'timeout'`;
    const selfApproval = sql`${decided} and outcome = 'approved' and self_approved = 1`;
    const breach = sql`${withSla} and not (${inTime})`;
    const sum = (cond: RawBuilder<unknown>) => sql`count(*) filter (where ${cond})`;
    const row =
      (
        await sql<Record<string, unknown>>`
      select count(*) as requests,
        ${sum(sql`not (${decided})`)} as pending,
        ${sum(decided)} as decided,
        ${sum(sql`${decided} and decided_by = 'policy'`)} as automated,
        ${sum(sql`${decided} and decided_by = 'reviewers'`)} as human,
        ${sum(sql`${decided} and decided_by = 'timeout'`)} as by_timeout,
        ${sum(sql`${decided} and decided_by = 'agent'`)} as cancelled,
        ${sum(sql`${decided} and outcome = 'approved'`)} as approved,
        ${sum(sql`${decided} and outcome = 'rejected'`)} as rejected,
        ${sum(sql`${decided} and outcome = 'expired'`)} as expired,
        ${sum(sql`requires_approval = 1`)} as routed,
        ${sum(withSla)} as with_sla,
        ${sum(sql`${withSla} and ${inTime}`)} as within_sla,
        ${sum(sql`${decided} and modified = 1`)} as modified,
        ${sum(sql`${decided} and chose_alternative = 1`)} as alternatives,
        ${sum(critical)} as critical,
        ${sum(byTimeout)} as timeout_approved,
        ${sum(breach)} as breach,
        ${sum(selfApproval)} as self_approval,
        sum(case when ${decided} and decided_by = 'reviewers' then decided_at - created_at else 0 end) as review_ms
      from requests where ${inRange}`.execute(this.db)
      ).rows[0] ?? {};
    const counts: ComplianceCounts = {
      requests: int(row.requests),
      pending: int(row.pending),
      decided: int(row.decided),
      automated: int(row.automated),
      human: int(row.human),
      timeout: int(row.by_timeout),
      cancelled: int(row.cancelled),
      approved: int(row.approved),
      rejected: int(row.rejected),
      expired: int(row.expired),
      routedToHuman: int(row.routed),
      withSla: int(row.with_sla),
      withinSla: int(row.within_sla),
      modified: int(row.modified),
      alternatives: int(row.alternatives),
      criticalWithoutHuman: int(row.critical),
      approvedByTimeout: int(row.timeout_approved),
      slaBreach: int(row.breach),
      selfApproval: int(row.self_approval),
    };
    const reviewed = sql`requests where ${inRange} and ${decided} and decided_by = 'reviewers'`;
    const p90 = quantilesOf(await rankedRows(this.db, sql`0`, sql`decided_at - created_at`, reviewed, [0.9]), [0.9], 1000).get('0')?.[0] ?? null;
    // The first `limit` picked from the index (requests_history holds every column the test
    // reads), then only their rows visited for the action.
    const violatingRows = await sql<Record<string, unknown>>`
      select r.id, r.action, v.risk_level, v.created_at, v.decided_at, v.sla_seconds, v.requires_approval, v.decided_by, v.outcome, v.self_approved
      from (
        select id, risk_level, created_at, decided_at, sla_seconds, requires_approval, decided_by, outcome, self_approved
        from requests where ${inRange} and ((${breach}) or (${critical}) or (${byTimeout}) or (${selfApproval}))
        order by created_at, id limit ${limit}
      ) v join requests r on r.id = v.id
      order by v.created_at, v.id`.execute(this.db);
    return {
      counts,
      review: { decisions: counts.human, totalMs: int(row.review_ms), p90Seconds: p90 },
      violating: violatingRows.rows.map((r) => ({
        id: String(r.id),
        action: String(r.action),
        riskLevel: String(r.risk_level),
        createdAt: int(r.created_at),
        decidedAt: int(r.decided_at),
        slaSeconds: r.sla_seconds === null ? null : Number(r.sla_seconds),
        requiresApproval: int(r.requires_approval) === 1,
        decidedBy: String(r.decided_by),
        outcome: String(r.outcome),
        selfApproved: int(r.self_approved) === 1,
      })),
    };
  }

  /**
   * Fills in the decision columns of rows whose decision was sealed when migration 019 ran
   * (`requests_facts_unread`); returns how many. Needs the key that sealed them: a row it cannot
   * open throws, and the engine does not start (fail closed: reports would undercount).
   */
  async backfillFacts(batch = 500): Promise<number> {
    let done = 0;
    for (;;) {
      const rows = await this.db
        .selectFrom('requests')
        .select(['id', 'decision', 'requester_operator_id'])
        .where('decision', 'is not', null)
        .where('decided_by', 'is', null)
        .orderBy('id')
        .limit(batch)
        .execute();
      for (const row of rows) {
        const open = this.sealer.openRequest(row);
        const d = decisionFactColumns(open.decision);
        const self = open.requester_operator_id !== null && d.deciderOperatorIds.includes(open.requester_operator_id) ? 1 : 0;
        await this.db.updateTable('requests').set({ ...d.columns, decided_by: d.columns.decided_by ?? '', self_approved: self }).where('id', '=', row.id).execute();
      }
      done += rows.length;
      if (rows.length < batch) return done;
    }
  }
}

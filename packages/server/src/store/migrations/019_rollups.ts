import { assessmentFacts, decisionFacts } from '@countersign/core';
import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Migration 019 (issue 19): the numbers metrics and compliance reports aggregate, as plain
 * columns of `requests` (core request-facts.ts), so `GET /v1/metrics/summary` and
 * `GET /v1/reports/compliance` are SQL aggregates with bounded memory instead of a scan of
 * every row's JSON in JavaScript. The store writes them in the same statement as the JSON they
 * come from (store.ts `insertRequest`, `updateRequest`).
 *
 * - `decided_by`, `outcome`: the decision's (null while undecided);
 * - `modified`, `chose_alternative`, `self_approved` (0/1): reviewers changed the args, chose an
 *   alternative, a decider is the operator who requested it;
 * - `sla_due_at` (ms), `sla_seconds`, `requires_approval` (0/1): the assessment's.
 * - `requests_history` (created_at, then every fact column the aggregates read, and id): the
 *   summary's and reports' range scans read it without visiting the rows. It replaces
 *   `requests_created` (created_at), which it begins with: every read that walked that one walks this one.
 * - `audit_log_escalated` (request_id, only `escalated` entries): the summary's escalation test
 *   is a probe into it, not a read of every entry of the request.
 *
 * Existing rows are filled in here. A decision sealed at rest (COUNTERSIGN_ENCRYPTION_KEY) cannot
 * be read without the key: such rows keep `decided_by` null and the partial index
 * `requests_facts_unread` lists them; the store fills them in when the engine opens with the
 * key (store/history.ts `backfillFacts`), before it serves.
 *
 * All of it is one transaction on both dialects. Kysely wraps a migration in one only where it
 * believes DDL is transactional (PostgreSQL); SQLite's is too, so `up` opens its own there:
 * a run stopped half-way (a full disk, a killed process) leaves the database as it was, never
 * with columns added and the migration unrecorded (the next start would fail on "duplicate
 * column"), and a million row updates commit once, not once each (synchronous = FULL).
 */
const BATCH = 1_000;

/** Every column the summary's and compliance reports' aggregates read, so both read the index alone (index-only scans). */
const HISTORY_COLUMNS = ['created_at', 'route', 'decided_by', 'outcome', 'decided_at', 'sla_due_at', 'requires_approval', 'sla_seconds', 'risk_level', 'modified', 'chose_alternative', 'self_approved', 'id'] as const;

export const m019_rollups: Migration = {
  async up(db: Kysely<any>) {
    if (db.isTransaction) await up(db);
    else await db.transaction().execute(up);
  },
  async down(db: Kysely<any>) {
    await db.schema.dropIndex('audit_log_escalated').execute();
    await db.schema.dropIndex('requests_facts_unread').execute();
    await db.schema.createIndex('requests_created').on('requests').column('created_at').execute();
    await db.schema.dropIndex('requests_history').execute();
    for (const column of ['decided_by', 'outcome', 'modified', 'chose_alternative', 'self_approved', 'sla_due_at', 'sla_seconds', 'requires_approval']) {
      await db.schema.alterTable('requests').dropColumn(column).execute();
    }
  },
};

async function up(db: Kysely<any>): Promise<void> {
  const table = () => db.schema.alterTable('requests');
  await table().addColumn('decided_by', 'text').execute();
  await table().addColumn('outcome', 'text').execute();
  await table()
    .addColumn('modified', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await table()
    .addColumn('chose_alternative', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await table()
    .addColumn('self_approved', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await table().addColumn('sla_due_at', 'bigint').execute();
  await table().addColumn('sla_seconds', 'double precision').execute();
  await table()
    .addColumn('requires_approval', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  for (let after = ''; ; ) {
    const rows = (await db.selectFrom('requests').select(['id', 'assessment', 'decision', 'requester_operator_id']).where('id', '>', after).orderBy('id').limit(BATCH).execute()) as Array<{
      id: string;
      assessment: string;
      decision: string | null;
      requester_operator_id: string | null;
    }>;
    for (const row of rows) {
      const a = assessmentFacts(parse(row.assessment));
      const plain = row.decision === null ? null : parse(row.decision);
      // A sealed (unparseable) decision waits for the key: decided_by stays null (requests_facts_unread).
      const d = row.decision !== null && plain === undefined ? null : decisionFacts(plain ?? null);
      await db
        .updateTable('requests')
        .set({
          sla_due_at: a.slaDueAt,
          sla_seconds: a.slaSeconds,
          requires_approval: a.requiresApproval ? 1 : 0,
          ...(d && {
            decided_by: d.decidedBy,
            outcome: d.outcome,
            modified: d.modified ? 1 : 0,
            chose_alternative: d.choseAlternative ? 1 : 0,
            self_approved: row.requester_operator_id !== null && d.deciderOperatorIds.includes(row.requester_operator_id) ? 1 : 0,
          }),
        })
        .where('id', '=', row.id)
        .execute();
    }
    const last = rows[rows.length - 1];
    if (rows.length < BATCH || !last) break;
    after = last.id;
  }
  await db.schema.createIndex('requests_history').on('requests').columns([...HISTORY_COLUMNS]).execute();
  await db.schema.dropIndex('requests_created').execute();
  await sql`create index requests_facts_unread on requests (id) where decision is not null and decided_by is null`.execute(db);
  await sql`create index audit_log_escalated on audit_log (request_id) where type = 'escalated'`.execute(db);
}

/** The JSON object, or undefined when the text is not one (a sealed value). */
function parse(text: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

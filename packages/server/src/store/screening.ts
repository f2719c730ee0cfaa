/**
 * The learning loop's tables and their SQL (migration 014_screen): reviewers' screening
 * verdicts and the random audit sample of auto-allowed requests. Written only by
 * engine/screening.ts.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';

export interface ScreenVerdictsTable {
  id: string;
  request_id: string;
  finding: number;
  field: string;
  kind: string;
  channel: string;
  score: number;
  action: string;
  audited: number;
  verdict: string;
  operator_id: string;
  /** The agent that filed the request (the per-agent weight cap). */
  agent_id: string;
  created_at: number;
}

export interface ScreenSamplesTable {
  request_id: string;
  score: number;
  created_at: number;
}

export type ScreenVerdictRow = ScreenVerdictsTable;

/** The most verdicts one read brings back (calibration and metrics read a recent window). */
export const MAX_VERDICT_ROWS = 100_000;

export class ScreeningQueries {
  constructor(private readonly db: Kysely<Database> | Transaction<Database>) {}

  async insertVerdict(row: ScreenVerdictRow): Promise<void> {
    await this.db.insertInto('screen_verdicts').values(row).execute();
  }

  async insertSample(row: ScreenSamplesTable): Promise<void> {
    await this.db.insertInto('screen_samples').values(row).execute();
  }

  async sample(requestId: string): Promise<ScreenSamplesTable | undefined> {
    return this.db.selectFrom('screen_samples').selectAll().where('request_id', '=', requestId).executeTakeFirst();
  }

  async verdictsFor(requestId: string): Promise<ScreenVerdictRow[]> {
    const rows = await this.db.selectFrom('screen_verdicts').selectAll().where('request_id', '=', requestId).orderBy('created_at').orderBy('id').execute();
    return rows.map(num);
  }

  /** Verdicts since `since` (epoch ms), oldest first, at most `MAX_VERDICT_ROWS`. */
  async verdictsSince(since: number): Promise<ScreenVerdictRow[]> {
    const rows = await this.db.selectFrom('screen_verdicts').selectAll().where('created_at', '>=', since).orderBy('created_at').orderBy('id').limit(MAX_VERDICT_ROWS).execute();
    return rows.map(num);
  }

  async sampleCount(): Promise<number> {
    const r = await this.db.selectFrom('screen_samples').select((eb) => eb.fn.countAll().as('n')).executeTakeFirst();
    return Number(r?.n ?? 0);
  }
}

/** PostgreSQL returns bigint as a string. */
function num(r: ScreenVerdictRow): ScreenVerdictRow {
  return { ...r, created_at: Number(r.created_at), score: Number(r.score), finding: Number(r.finding), audited: Number(r.audited) };
}

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
  /** The server secret's MAC over the row (migration 023); null on rows written before it. */
  mac: string | null;
}

export interface ScreenSamplesTable {
  request_id: string;
  score: number;
  created_at: number;
}

/** Models adopted by the periodic retrain (migration 023_retrain); written only by engine/screen-models.ts. */
export interface ScreenModelsTable {
  seq: number;
  hash: string;
  version: string;
  data: string;
  mac: string;
  report: string;
  adopted_by: string;
  created_at: number;
}

/** Scheduled retrains (migration 023_retrain): claimed before they run, finished with their outcome. */
export interface ScreenRetrainAttemptsTable {
  seq: number;
  started_at: number;
  outcome: string | null;
  reason: string | null;
  finished_at: number | null;
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

  /** The newest adopted model's number (0: none adopted, the committed model is in use). */
  async latestModelSeq(): Promise<number> {
    const r = await this.db.selectFrom('screen_models').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
    return Number(r?.seq ?? 0);
  }

  async latestModel(): Promise<ScreenModelsTable | undefined> {
    const r = await this.db.selectFrom('screen_models').selectAll().orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return r ? { ...r, seq: Number(r.seq), created_at: Number(r.created_at) } : undefined;
  }

  /**
   * Adopt: insert the row numbered `row.seq`. False when that number is taken (another server
   * adopted first), so of two concurrent retrains only one wins.
   */
  async insertModel(row: ScreenModelsTable): Promise<boolean> {
    const r = await this.db.insertInto('screen_models').values(row).onConflict((oc) => oc.column('seq').doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  /** When the newest adoption was made (0: none). */
  async latestModelAt(): Promise<number> {
    const r = await this.db.selectFrom('screen_models').select((eb) => eb.fn.max('created_at').as('at')).executeTakeFirst();
    return Number(r?.at ?? 0);
  }

  async latestAttempt(): Promise<ScreenRetrainAttemptsTable | undefined> {
    const r = await this.db.selectFrom('screen_retrain_attempts').selectAll().orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return r ? { ...r, seq: Number(r.seq), started_at: Number(r.started_at), finished_at: r.finished_at === null ? null : Number(r.finished_at) } : undefined;
  }

  /** Claim scheduled attempt `seq` (the one after the newest): false when another server took it. */
  async claimAttempt(seq: number, at: number): Promise<boolean> {
    const r = await this.db.insertInto('screen_retrain_attempts').values({ seq, started_at: at, outcome: null, reason: null, finished_at: null }).onConflict((oc) => oc.column('seq').doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  async finishAttempt(seq: number, outcome: string, reason: string, at: number): Promise<void> {
    await this.db.updateTable('screen_retrain_attempts').set({ outcome, reason: reason.slice(0, 2_000), finished_at: at }).where('seq', '=', seq).execute();
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

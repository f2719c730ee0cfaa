/**
 * The screening model the create path uses, and the periodic retrain that may replace it
 * (issue 15's learning loop). The decisions are core's (screen/retrain.ts: the candidate and its
 * evaluation gate); this shell runs them in a worker thread, keeps adopted models in
 * `screen_models` (migration 023_retrain; the only writer), and audits every outcome.
 *
 * - The committed model (`@countersign/core/screen`'s DEFAULT_SCREEN_MODEL) is the frozen
 *   baseline: every retrain starts from the committed data, the gate compares with it, and it
 *   is what screens whenever no adopted model verifies.
 * - An adopted model is used only if its row verifies: SHA-256 of the data equals `hash`, the
 *   server secret's MAC over (seq, hash, version, created_at) holds, it loads, and it is the
 *   adoption the audit trail records last (the newest `screen_model_adopted` entry's seq and
 *   hash): deleting the newest row does not roll servers back to an older model. Anything else
 *   fails closed to the committed model (and says so in `inUse().why`); the next adoption
 *   (numbered after both the newest row and the newest audited one) ends it.
 * - Scheduled retrains claim a row of `screen_retrain_attempts` before they run, so `every`
 *   counts from the newest attempt (refusals included) or adoption, on every server and across
 *   restarts.
 * - Servers on one database: adoption inserts row `basedOn + 1`; of two retrains that started
 *   from the same row only the first insert wins, the other is `superseded`. Every server
 *   re-reads the newest row every `REFRESH_MS` (and at open).
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { CountersignError, type Policy } from '@countersign/core';
import { loadModel, teachingExamples, type RetrainReport, type SerializedModel, type VerdictExample } from '@countersign/core/screen/api';
import { SYSTEM_ACTOR, draft, type AuditWriter } from '../audit/writer.ts';
import type { ServerSecret } from '../keys/server-secret.ts';
import type { Store } from '../store/store.ts';
import type { ScreenModelsTable } from '../store/screening.ts';
import type { Principal } from './principal.ts';
import type { ActiveModel } from './screener.ts';

/** How often each server re-reads the newest adopted model. */
export const REFRESH_MS = 10_000;
/** A retrain that takes longer is stopped (its worker terminated) and reported as failed. */
const RETRAIN_TIMEOUT_MS = 30 * 60_000;
/** The retrain worker's heap limits (a runaway retrain fails, the server goes on). */
const RETRAIN_RESOURCE_LIMITS = { maxOldGenerationSizeMb: 2_048, maxYoungGenerationSizeMb: 64 };
const MAC_LABEL = 'screen-model';

export type RetrainTrigger = 'scheduled' | 'admin';

export interface ModelInUse {
  source: 'committed' | 'adopted';
  seq: number;
  hash: string | null;
  version: string;
  /** Why the committed model is in use although a newer row exists (it did not verify). */
  why?: string;
}

export interface RetrainOutcome {
  outcome: 'adopted' | 'refused' | 'superseded' | 'skipped' | 'failed';
  reason: string;
  trigger: RetrainTrigger;
  /** The adopted row, when adopted. */
  seq: number | null;
  hash: string | null;
  version: string | null;
  /** The adopted model's number the retrain started from (0: the committed model). */
  basedOn: number;
  verdicts: { counted: number; examples: number; missing: number };
  report: RetrainReport | null;
  inUse: ModelInUse;
}

export interface ScreenModelsDeps {
  store: Store;
  writer: AuditWriter;
  now: () => number;
  policy: () => Policy;
  secret: ServerSecret;
  /** The accepted verdicts' examples (engine/screening.ts: roles re-checked, per-source caps). */
  examples: () => Promise<{ examples: VerdictExample[]; counted: number; missing: number }>;
  /** The committed model's version (the baseline's). */
  baseVersion: string;
}

export interface RetrainRunner {
  /** Module URL exporting loadDocs (and optionally schemes, floors): the corpus the retrain reads. */
  corpus?: string;
  /** Where the worker's entry is (tests may point elsewhere). */
  workerUrl?: URL;
}

export function modelHash(data: SerializedModel | string): string {
  return createHash('sha256').update(typeof data === 'string' ? data : JSON.stringify(data)).digest('hex');
}

/** The clone's committed corpus (tools/screen/data.ts); absent from a built install. */
export function defaultCorpus(): string {
  return new URL('../../../../tools/screen/data.ts', import.meta.url).href;
}

export class ScreenModels {
  private active: ActiveModel | undefined;
  private inUseNow: ModelInUse;
  private checkedSeq = -1;
  private running: Promise<RetrainOutcome> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loop: Promise<unknown> = Promise.resolve();
  private runner: RetrainRunner = {};
  private worker: Worker | undefined;

  constructor(private readonly deps: ScreenModelsDeps) {
    this.inUseNow = { source: 'committed', seq: 0, hash: null, version: deps.baseVersion };
  }

  /** For tests and embedders: where the retrain's corpus and worker are. */
  useRunner(runner: RetrainRunner): void {
    this.runner = runner;
  }

  /** The adopted model for the create path, or undefined: the committed one. Synchronous (read on every create). */
  current(): ActiveModel | undefined {
    return this.active;
  }

  inUse(): ModelInUse {
    return this.inUseNow;
  }

  /** The newest adoption the audit trail records (seq 0: none). */
  private async audited(): Promise<{ seq: number; hash: string | null }> {
    const [entry] = await this.deps.store.listAudit({ type: 'screen_model_adopted', newest: true, limit: 1 });
    if (!entry) return { seq: 0, hash: null };
    const data = JSON.parse(entry.data) as { seq?: unknown; hash?: unknown };
    return { seq: Number(data.seq) || 0, hash: typeof data.hash === 'string' ? data.hash : null };
  }

  /**
   * Re-read the newest adopted model; fails closed to the committed model when it does not
   * verify or is older than the newest adoption the audit trail records.
   */
  async refresh(): Promise<ModelInUse> {
    const seq = await this.deps.store.screening.latestModelSeq();
    if (seq === this.checkedSeq) return this.inUseNow;
    const row = seq > 0 ? await this.deps.store.screening.latestModel() : undefined;
    const audited = await this.audited();
    this.checkedSeq = row?.seq ?? 0;
    const committed = (why?: string): ModelInUse => {
      this.active = undefined;
      this.inUseNow = { source: 'committed', seq: row?.seq ?? 0, hash: null, version: this.deps.baseVersion, ...(why ? { why } : {}) };
      return this.inUseNow;
    };
    if (!row) return committed(audited.seq > 0 ? `the audit trail records adopted model #${audited.seq}, but screen_models holds no row: the rows were removed from the database` : undefined);
    const verified = this.verify(row);
    if (typeof verified === 'string') return committed(`adopted model #${row.seq} is not used: ${verified}`);
    if (row.seq < audited.seq) return committed(`the newest row is adopted model #${row.seq}, but the audit trail records #${audited.seq} as adopted later: a newer row was removed from the database (a retrain adopts a new one)`);
    if (row.seq === audited.seq && row.hash !== audited.hash) return committed(`adopted model #${row.seq} is not the one the audit trail records (SHA-256 ${String(audited.hash).slice(0, 12)}…)`);
    // row.seq > audited.seq: adopted by another server, its entry not integrated yet; the MAC vouches for it.
    this.active = verified;
    this.inUseNow = { source: 'adopted', seq: row.seq, hash: row.hash, version: row.version };
    return this.inUseNow;
  }

  private macFields(r: Pick<ScreenModelsTable, 'seq' | 'hash' | 'version' | 'created_at'>): unknown[] {
    return [r.seq, r.hash, r.version, r.created_at];
  }

  private verify(row: ScreenModelsTable): ActiveModel | string {
    if (modelHash(row.data) !== row.hash) return 'its data does not match its SHA-256';
    if (!this.deps.secret.verify(MAC_LABEL, this.macFields(row), row.mac)) return "its MAC does not verify under this server's secret";
    try {
      const data = JSON.parse(row.data) as SerializedModel;
      if (data.version !== row.version) return 'its version does not match its data';
      return { hash: row.hash, model: loadModel(data), data };
    } catch (err) {
      return `it does not load (${(err as Error).message})`;
    }
  }

  /**
   * Retrain now. Admins only (or the schedule); one at a time per process (a second call while
   * one runs is RATE_LIMITED). Resolves with the outcome; never adopts a refused candidate.
   */
  async retrain(by: Principal | 'scheduler'): Promise<RetrainOutcome> {
    if (by !== 'scheduler' && (by.kind !== 'operator' || !by.roles.includes('admin'))) throw new CountersignError('FORBIDDEN', 'only admins can retrain the screening model');
    if (this.running) throw new CountersignError('RATE_LIMITED', 'a screening retrain is already running on this server; retry when it has finished', { retryAfter: 60 });
    const run = this.run(by === 'scheduler' ? 'scheduled' : 'admin', by === 'scheduler' ? SYSTEM_ACTOR : by);
    return this.track(run);
  }

  private async track(run: Promise<RetrainOutcome>): Promise<RetrainOutcome> {
    this.running = run;
    try {
      return await run;
    } finally {
      this.running = undefined;
    }
  }

  private async run(trigger: RetrainTrigger, actor: Principal | typeof SYSTEM_ACTOR): Promise<RetrainOutcome> {
    const settings = this.deps.policy().screening.retrain;
    await this.refresh();
    // After the newest row and the newest audited adoption: a removed row's number is not reused.
    const basedOn = Math.max(await this.deps.store.screening.latestModelSeq(), (await this.audited()).seq);
    const { examples, counted, missing } = await this.deps.examples();
    const teaching = teachingExamples(examples).teaching.length;
    const verdicts = { counted, examples: examples.length, missing };
    const base = { trigger, basedOn, verdicts, seq: null, hash: null, version: null };
    if (teaching < settings.minVerdicts) {
      return { ...base, outcome: 'skipped', reason: `${teaching} accepted verdicts with their text; a retrain needs at least ${settings.minVerdicts} (screening.retrain.minVerdicts; a "not injection" counts only when two reviewers agree on the text)`, report: null, inUse: this.inUseNow };
    }
    let result: { model: SerializedModel; report: RetrainReport };
    try {
      result = await this.inWorker({ examples, tolerance: settings.tolerance, baseVersion: this.deps.baseVersion });
    } catch (err) {
      return { ...base, outcome: 'failed', reason: (err as Error).message, report: null, inUse: this.inUseNow };
    }
    const { model, report } = result;
    const data = JSON.stringify(model);
    const hash = modelHash(data);
    const sets = report.sets.map((s) => ({ set: s.set, kind: s.kind, baseline: s.baseline, candidate: s.candidate, delta: s.delta, floor: s.floor, ok: s.ok }));
    const at = this.deps.now();
    const refuse = async (outcome: 'refused' | 'superseded', reason: string): Promise<RetrainOutcome> => {
      await this.deps.store.transaction(async (tx) => {
        await this.deps.writer.append(tx, [draft('screen_model_refused', null, actor, { hash, version: model.version, basedOn, reason, verdicts, sets, trigger }, at)]);
      });
      return { ...base, outcome, reason, hash, version: model.version, report, inUse: this.inUseNow };
    };
    if (!report.accepted) return refuse('refused', report.reason);
    const seq = basedOn + 1;
    const row: ScreenModelsTable = {
      seq,
      hash,
      version: model.version,
      data,
      mac: this.deps.secret.mac(MAC_LABEL, this.macFields({ seq, hash, version: model.version, created_at: at })),
      report: JSON.stringify(report),
      adopted_by: 'type' in actor ? actor.id : actor.kind === 'operator' ? actor.operatorId : actor.agentId,
      created_at: at,
    };
    const won = await this.deps.store.transaction(async (tx) => {
      if (!(await tx.screening.insertModel(row))) return false;
      await this.deps.writer.append(tx, [draft('screen_model_adopted', null, actor, { seq, hash, version: model.version, basedOn, verdicts, sets, trigger }, at)]);
      return true;
    });
    if (!won) return refuse('superseded', `another server adopted model #${seq} while this retrain ran (it started from #${basedOn}); nothing changed here`);
    await this.refresh();
    return { ...base, outcome: 'adopted', reason: report.reason, seq, hash, version: model.version, report, inUse: this.inUseNow };
  }

  private inWorker(input: { examples: VerdictExample[]; tolerance: number; baseVersion: string }): Promise<{ model: SerializedModel; report: RetrainReport }> {
    const url = this.runner.workerUrl ?? new URL(import.meta.url.endsWith('.ts') ? './retrain-worker.mjs' : './retrain-worker.js', import.meta.url);
    const corpus = this.runner.corpus ?? defaultCorpus();
    return new Promise((resolve, reject) => {
      const w = new Worker(url, { resourceLimits: RETRAIN_RESOURCE_LIMITS });
      this.worker = w;
      let done = false;
      const finish = (err: Error | undefined, value?: { model: SerializedModel; report: RetrainReport }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (this.worker === w) this.worker = undefined;
        void w.terminate();
        if (err) reject(err);
        else resolve(value as { model: SerializedModel; report: RetrainReport });
      };
      const timer = setTimeout(() => finish(new Error(`the retrain took longer than ${RETRAIN_TIMEOUT_MS / 60_000} minutes and was stopped`)), RETRAIN_TIMEOUT_MS);
      timer.unref();
      w.on('message', (msg: { model?: SerializedModel; report?: RetrainReport; error?: string }) => {
        if (msg.error !== undefined || !msg.model || !msg.report) finish(new Error(`the retrain failed: ${msg.error ?? 'no result'} (it needs the committed training data: a clone's tools/screen and data/prompt-injection)`));
        else finish(undefined, { model: msg.model, report: msg.report });
      });
      w.on('error', (err) => finish(new Error(`the retrain worker failed: ${err.message}`)));
      w.on('exit', (code) => finish(new Error(`the retrain worker exited (${code})`)));
      w.postMessage({ corpus, ...input });
    });
  }

  /**
   * A scheduled retrain, if one is due: `screening.retrain.every` since the newest scheduled
   * attempt (any server, any outcome) and the newest adoption. The attempt is claimed in the
   * database first (one server wins a slot) and finished with its outcome.
   */
  private async scheduled(): Promise<{ run: Promise<RetrainOutcome> } | undefined> {
    const every = this.deps.policy().screening.retrain.everyMs;
    if (every === null || this.running) return undefined;
    const last = await this.deps.store.screening.latestAttempt();
    const since = Math.max(last?.started_at ?? 0, await this.deps.store.screening.latestModelAt());
    const now = this.deps.now();
    if (now - since < every) return undefined;
    const seq = (last?.seq ?? 0) + 1;
    if (!(await this.deps.store.screening.claimAttempt(seq, now))) return undefined;
    const run = this.run('scheduled', SYSTEM_ACTOR).then(
      async (o) => {
        await this.deps.store.screening.finishAttempt(seq, o.outcome, o.reason, this.deps.now());
        return o;
      },
      async (err: unknown) => {
        await this.deps.store.screening.finishAttempt(seq, 'failed', (err as Error).message ?? String(err), this.deps.now()).catch(() => undefined);
        throw err;
      },
    );
    return { run: this.track(run) };
  }

  /**
   * The background loop (runtime.ts starts it beside the checkpointer): re-read the newest
   * adopted model every `intervalMs`, and retrain when due. Errors are reported, never thrown.
   */
  start(options: { intervalMs?: number; onError?: (err: unknown) => void; onOutcome?: (o: RetrainOutcome) => void } = {}): void {
    if (this.timer) return;
    const onError = options.onError ?? (() => {});
    const tick = () => {
      this.loop = this.loop
        .then(async () => {
          await this.refresh();
          const due = await this.scheduled();
          // Not awaited by the loop: refreshes go on while the worker trains.
          if (due) void due.run.then((o) => options.onOutcome?.(o), onError);
        })
        .catch(onError);
    };
    this.timer = setInterval(tick, options.intervalMs ?? REFRESH_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.loop;
    // A retrain in its worker is stopped, not waited for (minutes of CPU): it reports `failed`.
    void this.worker?.terminate();
    await this.running?.catch(() => undefined);
  }
}

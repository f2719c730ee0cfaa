/**
 * Screening a create body for prompt injection without stalling the event loop. The decision is
 * core's (screen/request.ts); this shell only chooses where it runs:
 *
 * - small bodies (at most `INLINE_MAX_CHARS` of text in at most `INLINE_MAX_FIELDS` strings) are
 *   screened inline: a few milliseconds at worst (measured in BENCHMARKS.md);
 * - everything else goes to one worker thread, shared by the process, one body at a time.
 *
 * Fails closed: a worker that does not answer within `timeoutMs` (counted from when it took the
 * body) is terminated and replaced, and the request gets core's unscreened result (review, with
 * that reason); so does a body that finds `maxQueue` bodies already waiting.
 *
 *   const s = await screener.screen(body, policy.screening); // RequestScreening
 */
import { Worker } from 'node:worker_threads';
import { CountersignError } from '@countersign/core';
import {
  requestTexts,
  screen,
  screenRequestText,
  unscreenedResult,
  type RequestScreening,
  type ScreeningConfig,
  type ScreenRequest,
  type ScreenModel,
  type ScreenResult,
  type SerializedModel,
} from '@countersign/core/screen/api';

/** A model adopted by the retrain (engine/screen-models.ts): used instead of the committed one when given. */
export interface ActiveModel {
  readonly hash: string;
  readonly model: ScreenModel;
  readonly data: SerializedModel;
}

/** The committed model, loaded on first inline use (decoding it costs most of a second at start: the CLI never needs it). */
let model: Promise<ScreenModel> | undefined;
const loadModel = (): Promise<ScreenModel> => (model ??= import('@countersign/core/screen').then((m) => m.DEFAULT_SCREEN_MODEL));

type Body = Parameters<typeof screenRequestText>[0];

export const INLINE_MAX_CHARS = 4 * 1024;
export const INLINE_MAX_FIELDS = 8;
/** `POST /v1/screen` texts one caller may have waiting or running in the worker at once. */
export const TEXT_PER_CALLER = 2;
/** After the worker dies before it is ready, how long new work is refused (fail closed) before starting another. */
const START_BACKOFF_MS = 2_000;

export interface ScreenerOptions {
  /** How long the worker may take over one body (default 5 s). */
  timeoutMs?: number;
  /** Create bodies waiting for the worker beyond which a new one is not screened (default 64). */
  maxQueue?: number;
  /** `POST /v1/screen` texts waiting for the worker beyond which a new one is refused (default 16): their own queue. */
  maxTextQueue?: number;
  /** How long a job may wait for the worker before it fails closed (default 15 s). */
  queueTimeoutMs?: number;
}

type Job = { id: number; config: ScreeningConfig; model: ActiveModel | undefined; fail: (why: string) => void; waitTimer?: NodeJS.Timeout; caller?: string } & (
  | { body: Body; resolve: (r: RequestScreening) => void }
  | { text: ScreenRequest; resolve: (r: ScreenResult) => void }
);

export class Screener {
  private worker: Worker | undefined;
  private ready = false;
  /** Create bodies: served first. */
  private readonly queue: Job[] = [];
  /** `POST /v1/screen` texts: served when no create body waits, bounded on their own and per caller. */
  private readonly textQueue: Job[] = [];
  private readonly perCaller = new Map<string, number>();
  private current: { job: Job; timer: NodeJS.Timeout } | undefined;
  private nextId = 1;
  private blockedUntil = 0;
  /** Adopted models the current worker holds (by hash): each is sent to it once. */
  private readonly workerModels = new Set<string>();
  private readonly timeoutMs: number;
  private readonly maxQueue: number;
  private readonly maxTextQueue: number;
  private readonly queueTimeoutMs: number;
  /** Bodies screened in the worker, and those it failed to screen (timeouts, crashes): for tests and metrics. */
  readonly stats = { inline: 0, worker: 0, failed: 0 };

  constructor(options: ScreenerOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.maxQueue = options.maxQueue ?? 64;
    this.maxTextQueue = options.maxTextQueue ?? 16;
    this.queueTimeoutMs = options.queueTimeoutMs ?? 15_000;
  }

  async screen(body: Body, config: ScreeningConfig, model?: ActiveModel): Promise<RequestScreening> {
    const { texts, complete } = requestTexts(body);
    const chars = texts.reduce((s, t) => s + t.text.length, 0);
    if (complete && texts.length <= INLINE_MAX_FIELDS && chars <= INLINE_MAX_CHARS) {
      this.stats.inline++;
      return screenRequestText(body, model?.model ?? (await loadModel()), config);
    }
    if (this.queue.length >= this.maxQueue) {
      this.stats.failed++;
      return unscreenedResult(`screening is busy (${this.maxQueue} requests waiting): the request's text was not screened`, config);
    }
    if (Date.now() < this.blockedUntil) {
      this.stats.failed++;
      return unscreenedResult("the screening worker failed to start: the request's text was not screened", config);
    }
    return new Promise((resolve) => {
      this.enqueue(this.queue, { id: this.nextId++, body, config, model, resolve, fail: (why) => resolve(unscreenedResult(why, config)) });
    });
  }

  /**
   * One `POST /v1/screen` request. Failing closed here means an answer that says it could not
   * screen: the policy's over-budget action with an `unscreened` finding. A caller (`agent:<id>`,
   * `operator:<id>`) with `TEXT_PER_CALLER` texts already waiting or running, or a full text
   * queue, is refused with RATE_LIMITED and `retryAfter` (429).
   */
  async screenText(request: ScreenRequest, config: ScreeningConfig, caller?: string, model?: ActiveModel): Promise<ScreenResult> {
    const size = request.text !== undefined ? request.text.length : typeof request.content === 'string' ? request.content.length : INLINE_MAX_CHARS + 1;
    if (size <= INLINE_MAX_CHARS) {
      this.stats.inline++;
      return screen(request, model?.model ?? (await loadModel()), config);
    }
    const unscreened = (why: string): ScreenResult => ({
      score: 0,
      severity: 'low',
      action: config.overBudget,
      findings: [{ kind: 'unscreened', span: { start: 0, end: 0 }, score: 0, why }],
    });
    if (caller !== undefined && (this.perCaller.get(caller) ?? 0) >= TEXT_PER_CALLER) {
      throw new CountersignError('RATE_LIMITED', `at most ${TEXT_PER_CALLER} large texts per caller are screened at once; retry in 1 s`, { retryAfter: 1 });
    }
    if (this.textQueue.length >= this.maxTextQueue) {
      throw new CountersignError('RATE_LIMITED', `screening is busy (${this.maxTextQueue} texts waiting); retry in 2 s`, { retryAfter: 2 });
    }
    if (Date.now() < this.blockedUntil) return unscreened('the screening worker failed to start');
    return new Promise((resolve) => {
      const job: Job = { id: this.nextId++, text: request, config, model, resolve, fail: (why) => resolve(unscreened(why)) };
      if (caller !== undefined) {
        job.caller = caller;
        this.perCaller.set(caller, (this.perCaller.get(caller) ?? 0) + 1);
      }
      this.enqueue(this.textQueue, job);
    });
  }

  /** Stop the worker (pending bodies get the unscreened result). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.ready = false;
    if (this.current) this.finish(undefined, 'the screener was closed');
    this.failQueued('the screener was closed');
    await w?.terminate();
  }

  private enqueue(queue: Job[], job: Job): void {
    // A deadline on the wait too: a job nobody takes fails closed instead of hanging its request.
    job.waitTimer = setTimeout(() => {
      const i = queue.indexOf(job);
      if (i < 0) return;
      queue.splice(i, 1);
      this.settle(job, undefined, `screening waited longer than ${this.queueTimeoutMs} ms for the worker: the text was not screened`);
    }, this.queueTimeoutMs);
    job.waitTimer.unref();
    queue.push(job);
    this.pump();
  }

  private settle(job: Job, result: (RequestScreening & ScreenResult) | undefined, why: string): void {
    if (job.waitTimer) clearTimeout(job.waitTimer);
    if (job.caller !== undefined) {
      const n = (this.perCaller.get(job.caller) ?? 1) - 1;
      if (n <= 0) this.perCaller.delete(job.caller);
      else this.perCaller.set(job.caller, n);
    }
    if (result === undefined) {
      this.stats.failed++;
      job.fail(why);
    } else job.resolve(result);
  }

  private failQueued(why: string): void {
    for (const job of [...this.queue.splice(0), ...this.textQueue.splice(0)]) this.settle(job, undefined, why);
  }

  private start(): void {
    const w = new Worker(this.workerUrl());
    w.unref(); // an idle screener never keeps the process alive
    this.worker = w;
    this.ready = false;
    this.workerModels.clear();
    w.on('message', (msg: { ready?: true; id?: number; result?: RequestScreening & ScreenResult; error?: string }) => {
      if (w !== this.worker) return;
      if (msg.ready) {
        this.ready = true;
        this.pump();
        return;
      }
      const cur = this.current;
      if (!cur || msg.id !== cur.job.id) return;
      this.stats.worker++;
      this.finish(msg.result, `screening failed: ${msg.error ?? 'no result'}`);
    });
    const lost = (why: string): void => {
      if (w !== this.worker) return;
      const wasReady = this.ready;
      this.worker = undefined;
      this.ready = false;
      if (!wasReady) {
        // It died before it could take work (a startup failure): restarting at once would spin.
        // Everything waiting fails closed (review), and new work is refused for a while.
        this.blockedUntil = Date.now() + START_BACKOFF_MS;
        if (this.current) this.finish(undefined, `the screening worker failed to start: ${why}`);
        this.failQueued(`the screening worker failed to start: ${why}`);
        return;
      }
      if (this.current) this.finish(undefined, `screening failed: ${why}`);
      else this.pump();
    };
    w.on('error', (err) => lost(err.message));
    w.on('exit', (code) => lost(`the screening worker exited (${code})`));
  }

  private finish(result: (RequestScreening & ScreenResult) | undefined, why: string): void {
    const cur = this.current;
    if (!cur) return;
    clearTimeout(cur.timer);
    this.current = undefined;
    this.settle(cur.job, result, why);
    this.pump();
  }

  private pump(): void {
    if (this.current || (this.queue.length === 0 && this.textQueue.length === 0)) return;
    if (Date.now() < this.blockedUntil) {
      this.failQueued('the screening worker failed to start');
      return;
    }
    if (!this.worker) this.start();
    if (!this.ready) return;
    // Create bodies first: a flood of /v1/screen texts never makes a create wait behind it (review R3).
    const job = (this.queue.shift() ?? this.textQueue.shift()) as Job;
    if (job.waitTimer) clearTimeout(job.waitTimer);
    const timer = setTimeout(() => {
      // A body that takes this long is treated as hostile: kill the worker (it may be stuck on it) and start afresh.
      const w = this.worker;
      this.worker = undefined;
      this.ready = false;
      void w?.terminate();
      this.finish(undefined, `screening took longer than ${this.timeoutMs} ms: the text was not screened`);
    }, this.timeoutMs);
    timer.unref();
    this.current = { job, timer };
    const m = job.model;
    const model = m ? { modelHash: m.hash, ...(this.workerModels.has(m.hash) ? {} : { modelData: m.data }) } : {};
    if (m && !this.workerModels.has(m.hash)) {
      this.workerModels.add(m.hash);
      // The worker keeps the newest four: forget in the same order, so an evicted one is sent again.
      for (const k of this.workerModels) if (this.workerModels.size > 4) this.workerModels.delete(k);
    }
    this.worker?.postMessage('text' in job ? { id: job.id, text: job.text, config: job.config, ...model } : { id: job.id, body: job.body, config: job.config, ...model });
  }

  /** For tests: start a worker from another module (one that fails at startup, say). */
  /** From the clone's sources the worker needs the dev loader (screen-worker.mjs); the build runs its compiled entry. */
  protected workerUrl(): URL {
    return new URL(import.meta.url.endsWith('.ts') ? './screen-worker.mjs' : './screen-worker.js', import.meta.url);
  }
}

let shared: Screener | undefined;

/** The process's screener: one worker however many engines a process opens (tests open many). */
export function sharedScreener(): Screener {
  shared ??= new Screener();
  return shared;
}

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
} from '@countersign/core/screen/api';

/** The committed model, loaded on first inline use (decoding it costs most of a second at start: the CLI never needs it). */
let model: Promise<ScreenModel> | undefined;
const loadModel = (): Promise<ScreenModel> => (model ??= import('@countersign/core/screen').then((m) => m.DEFAULT_SCREEN_MODEL));

type Body = Parameters<typeof screenRequestText>[0];

export const INLINE_MAX_CHARS = 4 * 1024;
export const INLINE_MAX_FIELDS = 8;

export interface ScreenerOptions {
  /** How long the worker may take over one body (default 5 s). */
  timeoutMs?: number;
  /** Bodies waiting for the worker beyond which a new one is not screened (default 64). */
  maxQueue?: number;
}

type Job = { id: number; config: ScreeningConfig; fail: (why: string) => void } & (
  | { body: Body; resolve: (r: RequestScreening) => void }
  | { text: ScreenRequest; resolve: (r: ScreenResult) => void }
);

export class Screener {
  private worker: Worker | undefined;
  private ready = false;
  private readonly queue: Job[] = [];
  private current: { job: Job; timer: NodeJS.Timeout } | undefined;
  private nextId = 1;
  private readonly timeoutMs: number;
  private readonly maxQueue: number;
  /** Bodies screened in the worker, and those it failed to screen (timeouts, crashes): for tests and metrics. */
  readonly stats = { inline: 0, worker: 0, failed: 0 };

  constructor(options: ScreenerOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.maxQueue = options.maxQueue ?? 64;
  }

  async screen(body: Body, config: ScreeningConfig): Promise<RequestScreening> {
    const { texts, complete } = requestTexts(body);
    const chars = texts.reduce((s, t) => s + t.text.length, 0);
    if (complete && texts.length <= INLINE_MAX_FIELDS && chars <= INLINE_MAX_CHARS) {
      this.stats.inline++;
      return screenRequestText(body, await loadModel(), config);
    }
    if (this.queue.length >= this.maxQueue) {
      this.stats.failed++;
      return unscreenedResult(`screening is busy (${this.maxQueue} requests waiting): the request's text was not screened`, config);
    }
    return new Promise((resolve) => {
      this.queue.push({ id: this.nextId++, body, config, resolve, fail: (why) => resolve(unscreenedResult(why, config)) });
      this.pump();
    });
  }

  /**
   * One `POST /v1/screen` request. Failing closed here means an answer that says it could not
   * screen: the policy's over-budget action with an `unscreened` finding.
   */
  async screenText(request: ScreenRequest, config: ScreeningConfig): Promise<ScreenResult> {
    const size = request.text !== undefined ? request.text.length : typeof request.content === 'string' ? request.content.length : INLINE_MAX_CHARS + 1;
    if (size <= INLINE_MAX_CHARS) {
      this.stats.inline++;
      return screen(request, await loadModel(), config);
    }
    const unscreened = (why: string): ScreenResult => ({
      score: 0,
      severity: 'low',
      action: config.overBudget,
      findings: [{ kind: 'unscreened', span: { start: 0, end: 0 }, score: 0, why }],
    });
    if (this.queue.length >= this.maxQueue) {
      this.stats.failed++;
      return unscreened(`screening is busy (${this.maxQueue} requests waiting)`);
    }
    return new Promise((resolve) => {
      this.queue.push({ id: this.nextId++, text: request, config, resolve, fail: (why) => resolve(unscreened(why)) });
      this.pump();
    });
  }

  /** Stop the worker (pending bodies get the unscreened result). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.ready = false;
    if (this.current) this.finish(undefined, 'the screener was closed');
    for (const job of this.queue.splice(0)) job.fail('the screener was closed');
    await w?.terminate();
  }

  private start(): void {
    // From the clone's sources the worker needs the dev loader (screen-worker.mjs); the build runs its compiled entry.
    const entry = import.meta.url.endsWith('.ts') ? './screen-worker.mjs' : './screen-worker.js';
    const w = new Worker(new URL(entry, import.meta.url));
    w.unref(); // an idle screener never keeps the process alive
    this.worker = w;
    this.ready = false;
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
      this.worker = undefined;
      this.ready = false;
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
    if (result === undefined) {
      this.stats.failed++;
      cur.job.fail(why);
    } else cur.job.resolve(result);
    this.pump();
  }

  private pump(): void {
    if (this.current || this.queue.length === 0) return;
    if (!this.worker) this.start();
    if (!this.ready) return;
    const job = this.queue.shift() as Job;
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
    this.worker?.postMessage('text' in job ? { id: job.id, text: job.text, config: job.config } : { id: job.id, body: job.body, config: job.config });
  }
}

let shared: Screener | undefined;

/** The process's screener: one worker however many engines a process opens (tests open many). */
export function sharedScreener(): Screener {
  shared ??= new Screener();
  return shared;
}

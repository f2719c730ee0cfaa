/**
 * The live queue: one EventSource on `GET /v1/events` for the whole app, and the queue read from
 * the server — filtered, ordered (most urgent first) and paged there, with its counts — never
 * the whole table in the browser. On "ready" (the server has subscribed us) it reads the first
 * page; each change then updates the rows it names at once (newest `updatedAt` wins, so nothing
 * between the subscription and the read is lost or rolled back) and schedules one re-read of the
 * loaded rows and counts (at most one in flight, coalesced), so the counts and the rows always
 * come from the same server query. "Load more" follows the cursor. EventSource reconnects by
 * itself; when the server refuses the stream (signed out), the app's 401 handler takes over.
 */
import { useSyncExternalStore } from 'react';
import { api, ApiError, type ApprovalRequest, type QueuePage } from './api.ts';
import { applyChange, isFiltered, NO_COUNTS, NO_FILTER, queueParams, type QueueCounts, type QueueQuery } from './queue.ts';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting';

/** Rows per page: the first screen, and each "load more". */
export const PAGE = 100;
/** The most rows a re-read brings back (the reviewer asked for them with "load more"). */
const MAX_LOADED = 2000;
/** A burst of changes is read back once, this long after the first (a flood costs one read per interval). */
const REFRESH_MS = 300;

export interface LiveSnapshot {
  /** The loaded rows, in the server's order. */
  pending: ReadonlyMap<string, ApprovalRequest>;
  status: LiveStatus;
  /** Requests that arrived over the stream since the page loaded (for the "new" highlight). */
  arrived: ReadonlySet<string>;
  loaded: boolean;
  query: QueueQuery;
  /** Counts of the current query: `total` matches every filter; per level, every filter but the risk levels. */
  counts: QueueCounts;
  /** Every pending request, whatever the filters (the nav and the title). */
  allPending: number;
  /** How many matching requests follow the loaded rows. */
  remaining: number;
  loadingMore: boolean;
  /** The server refused the query (a bad filter): its message. */
  error: string | null;
}

type Listener = () => void;

export class LiveQueue {
  private snapshot: LiveSnapshot = {
    pending: new Map(),
    status: 'connecting',
    arrived: new Set(),
    loaded: false,
    query: NO_FILTER,
    counts: NO_COUNTS,
    allPending: 0,
    remaining: 0,
    loadingMore: false,
    error: null,
  };
  private seen = new Map<string, string>();
  /** Changes heard while a read is in flight, applied over its answer. */
  private buffer: ApprovalRequest[] | null = null;
  private cursor: string | null = null;
  private source: EventSource | null = null;
  private readonly listeners = new Set<Listener>();
  private readonly requestListeners = new Map<string, Set<(r: ApprovalRequest) => void>>();
  private retry: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private reading = false;
  private dirty = false;
  /** Bumped by each new query, so an answer to an older one is dropped. */
  private generation = 0;
  private stopped = false;

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.refreshTimer);
    this.source?.close();
    this.source = null;
  }

  /** A new filter: the rows, counts and cursor are read again from the first page. */
  setQuery(query: QueueQuery): void {
    this.generation++;
    this.cursor = null;
    this.set({ query, pending: new Map(), remaining: 0, error: null, loaded: false });
    void this.read(PAGE);
  }

  /** The next page after the loaded rows. */
  async loadMore(): Promise<void> {
    if (!this.cursor || this.snapshot.loadingMore) return;
    const generation = this.generation;
    this.set({ loadingMore: true });
    try {
      const page = await api.queue(queueParams(this.snapshot.query, PAGE, this.cursor));
      if (generation !== this.generation) return;
      const pending = new Map(this.snapshot.pending);
      for (const r of page.items) {
        if (!pending.has(r.id)) pending.set(r.id, r);
        this.seen.set(r.id, r.updatedAt);
      }
      this.cursor = page.nextCursor;
      this.set({ pending, counts: page.counts, remaining: page.remaining, error: null });
    } catch (err) {
      this.set({ error: err instanceof ApiError ? err.message : String(err) });
    } finally {
      this.set({ loadingMore: false });
    }
  }

  private open(): void {
    const source = new EventSource('/v1/events');
    this.source = source;
    source.addEventListener('ready', () => void this.read(Math.max(PAGE, this.snapshot.pending.size)));
    source.addEventListener('request', (event) => {
      const request = JSON.parse((event as MessageEvent<string>).data) as ApprovalRequest;
      this.onRequest(request);
    });
    source.addEventListener('error', () => {
      if (this.stopped) return;
      this.set({ status: 'reconnecting' });
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (e.g. the session ended): ask why, then try again.
        this.source = null;
        void api.session().catch(() => undefined);
        this.retry = setTimeout(() => !this.stopped && this.open(), 3000);
      }
    });
  }

  /**
   * Reads the first `want` rows of the current query (pages of at most 500) with their counts,
   * and replaces the loaded rows with them; changes heard meanwhile are applied on top.
   */
  private async read(want: number): Promise<void> {
    if (this.reading) {
      this.dirty = true;
      return;
    }
    this.reading = true;
    this.dirty = false;
    this.buffer = [];
    const generation = this.generation;
    const query = this.snapshot.query;
    try {
      const limit = Math.min(Math.max(want, PAGE), MAX_LOADED);
      const items: ApprovalRequest[] = [];
      let page: QueuePage | undefined;
      let cursor: string | undefined;
      do {
        page = await api.queue(queueParams(query, Math.min(500, limit - items.length), cursor));
        items.push(...page.items);
        cursor = page.nextCursor ?? undefined;
      } while (cursor && items.length < limit);
      const allPending = isFiltered(query) ? (await api.queue(queueParams(NO_FILTER, 1))).counts.total : page.counts.total;
      if (generation !== this.generation) return;
      let pending = new Map<string, ApprovalRequest>();
      const seen = new Map<string, string>();
      for (const r of items) {
        pending.set(r.id, r);
        seen.set(r.id, r.updatedAt);
      }
      for (const r of this.buffer ?? []) pending = applyChange(pending, r, seen);
      this.seen = seen;
      this.cursor = page.nextCursor;
      this.set({ pending, counts: page.counts, remaining: page.remaining, allPending, status: 'live', loaded: true, error: null });
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) this.set({ error: err.message, loaded: true, pending: new Map(), counts: NO_COUNTS, remaining: 0, status: 'live' });
      else this.set({ status: 'reconnecting' });
    } finally {
      this.buffer = null;
      this.reading = false;
      if (this.dirty && !this.stopped) this.scheduleRefresh();
    }
  }

  /** One re-read of the loaded rows and counts, shortly after a burst of changes. */
  private scheduleRefresh(): void {
    if (this.refreshTimer !== undefined) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.read(this.snapshot.pending.size);
    }, REFRESH_MS);
  }

  private onRequest(request: ApprovalRequest): void {
    for (const listener of this.requestListeners.get(request.id) ?? []) listener(request);
    if (this.buffer) this.buffer.push(request);
    else {
      const arrived = request.status === 'pending' && !this.seen.has(request.id) ? new Set([...this.snapshot.arrived, request.id]) : this.snapshot.arrived;
      this.set({ pending: applyChange(this.snapshot.pending, request, this.seen), arrived });
    }
    if (this.reading) this.dirty = true;
    else this.scheduleRefresh();
  }

  private set(patch: Partial<LiveSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const l of this.listeners) l();
  }

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): LiveSnapshot => this.snapshot;

  /** Hears every new state of one request (the open card). */
  watch(id: string, listener: (r: ApprovalRequest) => void): () => void {
    let set = this.requestListeners.get(id);
    if (!set) this.requestListeners.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.requestListeners.delete(id);
    };
  }
}

export function useLive(live: LiveQueue): LiveSnapshot {
  return useSyncExternalStore(live.subscribe, live.getSnapshot);
}

/** One shared one-second clock: countdowns re-render on its tick, nothing else does. */
const clock = {
  now: Date.now(),
  listeners: new Set<() => void>(),
  timer: undefined as ReturnType<typeof setInterval> | undefined,
  subscribe(listener: () => void): () => void {
    clock.listeners.add(listener);
    clock.timer ??= setInterval(() => {
      clock.now = Date.now();
      for (const l of clock.listeners) l();
    }, 1000);
    return () => {
      clock.listeners.delete(listener);
      if (clock.listeners.size === 0) {
        clearInterval(clock.timer);
        clock.timer = undefined;
      }
    };
  },
  get: () => clock.now,
};

/** The current time, updated once a second (countdowns). */
export function useNow(): number {
  return useSyncExternalStore(clock.subscribe, clock.get);
}

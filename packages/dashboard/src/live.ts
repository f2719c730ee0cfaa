/**
 * The live queue: one EventSource on `GET /v1/events` for the whole app. On "ready" (the
 * server has subscribed us) it loads the pending list, then applies each change in order of
 * `updatedAt`, so nothing that happens between the subscription and the load is lost or rolled
 * back. EventSource reconnects by itself; when the server refuses the stream (signed out), the
 * app's 401 handler takes over.
 */
import { useSyncExternalStore } from 'react';
import { api, loadPending, type ApprovalRequest } from './api.ts';
import { applyChange } from './queue.ts';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting';

export interface LiveSnapshot {
  pending: ReadonlyMap<string, ApprovalRequest>;
  status: LiveStatus;
  /** Requests that arrived over the stream since the page loaded (for the "new" highlight). */
  arrived: ReadonlySet<string>;
  loaded: boolean;
}

type Listener = () => void;

export class LiveQueue {
  private snapshot: LiveSnapshot = { pending: new Map(), status: 'connecting', arrived: new Set(), loaded: false };
  private seen = new Map<string, string>();
  private buffer: ApprovalRequest[] | null = null;
  private source: EventSource | null = null;
  private readonly listeners = new Set<Listener>();
  private readonly requestListeners = new Map<string, Set<(r: ApprovalRequest) => void>>();
  private retry: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.source?.close();
    this.source = null;
  }

  private open(): void {
    const source = new EventSource('/v1/events');
    this.source = source;
    source.addEventListener('ready', () => void this.onReady());
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

  private async onReady(): Promise<void> {
    this.buffer = [];
    try {
      const items = await loadPending();
      let pending = new Map<string, ApprovalRequest>();
      const seen = new Map<string, string>();
      for (const r of items) {
        pending.set(r.id, r);
        seen.set(r.id, r.updatedAt);
      }
      for (const r of this.buffer ?? []) pending = applyChange(pending, r, seen);
      this.seen = seen;
      this.buffer = null;
      this.set({ pending, status: 'live', loaded: true });
    } catch {
      this.buffer = null;
      this.set({ status: 'reconnecting' });
    }
  }

  private onRequest(request: ApprovalRequest): void {
    for (const listener of this.requestListeners.get(request.id) ?? []) listener(request);
    if (this.buffer) {
      this.buffer.push(request);
      return;
    }
    const arrived = request.status === 'pending' && !this.snapshot.pending.has(request.id) ? new Set([...this.snapshot.arrived, request.id]) : this.snapshot.arrived;
    this.set({ pending: applyChange(this.snapshot.pending, request, this.seen), arrived });
    // The shared feed cannot say whether *this* reviewer may act on it; ask for our own view.
    if (request.status === 'pending' && request.actionable === undefined) {
      void api
        .request(request.id)
        .then((mine) => this.set({ pending: applyChange(this.snapshot.pending, mine, this.seen) }))
        .catch(() => undefined);
    }
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

/**
 * The dedicated PostgreSQL connection that LISTENs for cross-process wake-ups, kept alive
 * through restarts, failovers and dropped connections. A pg client whose connection dies emits
 * `error` (an unhandled one kills the process: issue 13 point 11, `57P01 terminating connection
 * due to administrator command`) and is then useless, so on `error` or `end` this drops it and
 * connects a new one with back-off (core `reconnectDelay`: 100 ms doubling to 5 s, jittered),
 * for as long as the server runs. Once it is listening again it calls `onReconnect`: whatever
 * was notified while it was away is lost, so the caller re-checks everything that waits.
 *
 *   const stop = await listenResilient(base, 'countersign_wake', publish, () => wakeups.resync());
 */
import pg from 'pg';
import { reconnectDelay } from '@countersign/core';

export interface ListenOptions {
  /** Told each time the connection is lost (with why) and each time it is back. */
  onState?: ((state: 'lost' | 'listening', detail?: string) => void) | undefined;
  /** Injected for tests; default Math.random. */
  random?: () => number;
}

export async function listenResilient(
  config: pg.ClientConfig,
  channel: string,
  onMessage: (payload: string) => void,
  onReconnect: () => void,
  options: ListenOptions = {},
): Promise<() => Promise<void>> {
  let stopped = false;
  let client: pg.Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  let attempt = 0;
  /** Clients that reported an error or an end, even before they became `client`. */
  const dead = new WeakSet<pg.Client>();

  const open = async (): Promise<pg.Client> => {
    const next = new pg.Client(config);
    // Before connect(): an error from here on must never be unhandled.
    next.on('error', (err) => {
      dead.add(next);
      lost(next, err);
    });
    next.on('end', () => {
      dead.add(next);
      lost(next);
    });
    next.on('notification', (msg) => {
      if (msg.channel === channel && msg.payload !== undefined) onMessage(msg.payload);
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${next.escapeIdentifier(channel)}`);
    } catch (err) {
      next.removeAllListeners('end');
      await next.end().catch(() => {});
      throw err;
    }
    if (dead.has(next)) throw new Error('the LISTEN connection closed as it opened');
    return next;
  };

  const lost = (which: pg.Client, err?: Error) => {
    if (which !== client || stopped) return; // an old client's late events, or our own shutdown
    client = undefined;
    which.removeAllListeners('end');
    void which.end().catch(() => {});
    options.onState?.('lost', err?.message);
    schedule();
  };

  const schedule = () => {
    if (stopped || timer) return;
    attempt += 1;
    timer = setTimeout(() => {
      timer = undefined;
      void reconnect();
    }, reconnectDelay(attempt, (options.random ?? Math.random)()));
    timer.unref?.();
  };

  const reconnect = async () => {
    if (stopped) return;
    try {
      const next = await open();
      if (stopped) {
        await next.end().catch(() => {});
        return;
      }
      client = next;
      attempt = 0;
      options.onState?.('listening');
      onReconnect();
    } catch {
      schedule();
    }
  };

  client = await open(); // the first connection must work: the server is starting
  return async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    const last = client;
    client = undefined;
    if (last) {
      last.removeAllListeners('end');
      await last.end().catch(() => {});
    }
  };
}

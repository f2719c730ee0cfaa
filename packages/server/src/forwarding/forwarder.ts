/**
 * The SIEM forwarder: one loop per destination, off the request path, reading the integrated
 * trail after the destination's durable cursor (`forward_cursors`, store/forwarding.ts) and
 * moving the cursor only after the destination has the batch. So delivery is at least once: a
 * process killed between a send and its cursor move sends that batch again after restart (or
 * another server does, once the lease lapses), and entries go out in seq order.
 *
 * Requests never wait for it: it only reads `audit_log` (entries already committed and
 * integrated) and writes its own row, on its own timers; a destination that is down costs
 * backed-off retries (core `reconnectDelay`, 0.5 s doubling to 60 s, jittered), nothing more.
 * Each entry goes out as the audit API and an export show it: the data the writer stored, redacted
 * once at write time and not again (forwarding/format.ts), so the SIEM's tokens are the trail's.
 *
 *   const forwarder = new Forwarder(store, (d) => trail.redact(d), config.forward, { log });
 *   forwarder.start();
 *   await forwarder.stop();   // releases the leases, so another server takes over at once
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { reconnectDelay } from '@countersign/core';
import type { Store } from '../store/store.ts';
import type { ForwardDestination, ForwardingConfig } from './config.ts';
import { forwardEntry, ndjsonLine, octetFrame, syslogMessage } from './format.ts';
import { HttpSender, SyslogSender, type Sender } from './senders.ts';
import { displayName } from './status.ts';

export interface ForwarderOptions {
  log?: (line: string) => void;
  now?: () => number;
  /** Makes the senders (tests may point them elsewhere); default the real wires. */
  sender?: (dest: ForwardDestination) => Sender;
}

const BACKOFF = { baseMs: 500, capMs: 60_000 };
/** How long stop() lets a batch in flight finish before it cuts the connections. */
const STOP_GRACE_MS = 3_000;
/** The version the CEF header names (the one `/healthz` reports). */
const SERVER_VERSION = '0.1.0';

export class Forwarder {
  readonly #holder = `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`;
  readonly #loops: Promise<void>[] = [];
  readonly #senders: Sender[] = [];
  #stopped = false;
  readonly #wakers = new Set<() => void>();
  readonly #log: (line: string) => void;
  readonly #now: () => number;

  constructor(
    private readonly store: Store,
    private readonly redact: (data: unknown) => unknown,
    private readonly config: ForwardingConfig,
    private readonly options: ForwarderOptions = {},
  ) {
    this.#log = options.log ?? ((line) => console.error(line));
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    if (this.#loops.length > 0) return;
    for (const dest of this.config.destinations) {
      const sender = this.options.sender?.(dest) ?? (dest.kind === 'syslog' ? new SyslogSender(dest, this.config.syslogConfirmMs) : new HttpSender(dest));
      this.#senders.push(sender);
      this.#loops.push(this.#run(dest, sender));
    }
  }

  /** Ends the loops after their current batch, gives the leases up and closes the connections. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const wake of [...this.#wakers]) wake();
    // A send to a receiver that does not answer is cut after a grace period rather than held for
    // its timeout (30 s): that batch is simply sent again by whoever forwards next.
    const all = Promise.all(this.#loops);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'late'>((ok) => (timer = setTimeout(() => ok('late'), STOP_GRACE_MS)));
    if ((await Promise.race([all, grace])) === 'late') for (const s of this.#senders) s.close();
    clearTimeout(timer);
    await all;
    for (const s of this.#senders) s.close();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((ok) => {
      if (this.#stopped) return ok();
      const done = () => {
        clearTimeout(timer);
        this.#wakers.delete(done);
        ok();
      };
      const timer = setTimeout(done, ms);
      this.#wakers.add(done);
    });
  }

  async #run(dest: ForwardDestination, sender: Sender): Promise<void> {
    const { batch, pollMs, leaseMs } = this.config;
    let attempt = 0;
    // `lease.seq` is the stored cursor (confirmed); `sent` is what went out since, awaiting confirmation.
    let lease: { seq: number; until: number } | undefined;
    let sent = 0;
    let pending: Array<{ last: number; at: number; connection: number }> = [];
    let lastLogged = { message: '', at: 0 };
    const host = hostname();
    const shown = displayName(dest.id); // logs name the destination without an HTTPS path (it may be a credential)
    const rewind = () => {
      sent = lease?.seq ?? 0;
      pending = [];
    };
    /**
     * Stores the cursor for every batch its wire now counts as delivered; false when the lease was
     * lost. Throws when the connection those batches went out on broke first: that is a failed
     * delivery (recorded, backed off, shown as failing), not a quiet resend, or a receiver that
     * drops every connection before the confirmation window would look healthy forever.
     */
    const confirm = async (): Promise<boolean> => {
      if (!lease) return true;
      unconfirmedLost(sender.connection());
      const now = this.#now();
      let upTo: number | undefined;
      while (pending.length > 0 && pending[0]!.at <= now - sender.confirmMs) upTo = pending.shift()!.last;
      if (upTo === undefined) return true;
      if (!(await this.store.forwarding.advance(dest.id, this.#holder, upTo, now, leaseMs))) return false;
      lease = { seq: Math.max(lease.seq, upTo), until: now + leaseMs };
      // Backoff ends with a delivery the wire confirmed, not with a write the kernel took.
      if (attempt > 0) this.#log(`countersign: forwarding to ${shown} resumed (delivered up to seq ${upTo})`);
      attempt = 0;
      return true;
    };
    /** Throws (the catch below rewinds, records and backs off) when sent batches' connection is gone. */
    const unconfirmedLost = (connection: number | undefined) => {
      if (pending.length > 0 && pending[0]!.connection !== connection) {
        throw new Error('the receiver dropped the connection before the batches sent on it were confirmed (COUNTERSIGN_FORWARD_SYSLOG_CONFIRM_MS); they are sent again');
      }
    };
    while (!this.#stopped) {
      try {
        const now = this.#now();
        // Renew the lease when half of it is gone (one write per half lease while idle).
        if (!lease || now > lease.until - leaseMs / 2) {
          const cursor = await this.store.forwarding.acquire(dest.id, this.#holder, now, leaseMs);
          if (!cursor) {
            lease = undefined; // another server forwards to this destination
            rewind();
            await this.#sleep(Math.min(leaseMs / 2, 5_000));
            continue;
          }
          if (!lease) {
            lease = { seq: cursor.seq, until: now + leaseMs };
            rewind();
          } else {
            // Renewed. Had another server held it meanwhile (this one stalled past its lease), the
            // cursor may have moved on: what it covers needs no sending or confirming again.
            lease = { seq: Math.max(lease.seq, cursor.seq), until: now + leaseMs };
            if (cursor.seq > sent) sent = cursor.seq;
            pending = pending.filter((p) => p.last > cursor.seq);
          }
        }
        if (!(await confirm())) {
          this.#log(`countersign: forwarding to ${shown}: the lease passed to another server; it continues from the stored cursor`);
          lease = undefined;
          continue;
        }
        const rows = await this.store.forwarding.entriesAfter(sent, batch);
        if (rows.length === 0) {
          await this.#sleep(pending.length > 0 ? Math.min(pollMs, Math.max(50, sender.confirmMs / 4)) : pollMs);
          continue;
        }
        const first = Number(rows[0]!.seq);
        if (first !== sent + 1) this.#log(`countersign: forwarding to ${shown}: entries ${sent + 1}–${first - 1} were removed by retention before they were forwarded`);
        // Encoded one at a time, up to the batch's byte bound (at least one entry).
        const pieces: Buffer[] = [];
        let bytes = 0;
        let last = first - 1;
        for (const row of rows) {
          const e = forwardEntry(row, this.redact);
          const piece =
            dest.kind === 'syslog'
              ? octetFrame(syslogMessage(e, { hostname: host, procId: String(process.pid), maxBytes: this.config.maxMessageBytes, format: dest.format, version: SERVER_VERSION }))
              : Buffer.from(ndjsonLine(e), 'utf8');
          if (pieces.length > 0 && bytes + piece.length > this.config.batchBytes) break;
          pieces.push(piece);
          bytes += piece.length;
          last = Number(row.seq);
        }
        const payload = Buffer.concat(pieces);
        const full = pieces.length === rows.length && rows.length === batch;
        const connection = await sender.open();
        unconfirmedLost(connection); // earlier batches' connection broke: a failure; they go again first, in order
        await sender.send(payload, { first, last });
        if (sender.connection() !== connection) throw new Error('the connection broke while sending');
        sent = last;
        pending.push({ last, at: this.#now(), connection });
        if (!full && pieces.length === rows.length) await this.#sleep(Math.min(pollMs, 50)); // caught up: a short breath, then look again
      } catch (err) {
        attempt++;
        rewind(); // whatever was not confirmed goes out again, on a new connection
        sender.close();
        const message = err instanceof Error ? err.message : String(err);
        const now = this.#now();
        // Once per cause, and again each minute while it lasts.
        if (message !== lastLogged.message || now - lastLogged.at >= 60_000) {
          lastLogged = { message, at: now };
          this.#log(`countersign: forwarding to ${shown} failed (retrying): ${message}`);
        }
        if (lease) await this.store.forwarding.recordError(dest.id, this.#holder, message, now).catch(() => {});
        await this.#sleep(reconnectDelay(attempt, Math.random(), BACKOFF));
      }
    }
    // A clean stop: an orderly close the receiver answered confirms everything sent; otherwise
    // only what is confirmed is stored, and the rest is sent again by whoever forwards next.
    if (lease && pending.length > 0 && (await sender.finish().catch(() => false))) {
      await this.store.forwarding.advance(dest.id, this.#holder, pending[pending.length - 1]!.last, this.#now(), leaseMs).catch(() => false);
    } else await confirm().catch(() => false);
    await this.store.forwarding.release(dest.id, this.#holder).catch(() => {});
  }
}

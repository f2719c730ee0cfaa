/**
 * The two wires: RFC 5425 syslog over TLS (or plain TCP), one long-lived connection, frames
 * written back to back; and NDJSON over HTTPS, one POST per batch. A send resolves when the
 * destination has the batch as far as its wire can say so: for syslog, when the kernel accepted
 * the bytes (RFC 5425 has no application acknowledgement); for HTTP, on a 2xx answer. Anything
 * else rejects, and the forwarder sends the same batch again later.
 */
import { readFileSync } from 'node:fs';
import type { ClientRequest } from 'node:http';
import { request } from 'node:https';
import { isIP, Socket, connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { HttpDestination, SyslogDestination } from './config.ts';

const CONNECT_TIMEOUT_MS = 10_000;
const SEND_TIMEOUT_MS = 30_000;

export interface Sender {
  /**
   * Connects if there is no live connection, and says which connection is live. The forwarder
   * calls it before each send: batches sent but unconfirmed on an earlier connection are sent
   * again first, so a new connection never carries a later batch ahead of them.
   */
  open(): Promise<number>;
  /** Sends on the connection open() returned; never reconnects (a broken one rejects). */
  send(payload: Buffer, info: { first: number; last: number }): Promise<void>;
  /**
   * How long a sent batch must stay unrefuted before it counts as delivered: 0 when the wire
   * acknowledges (HTTP's 2xx); for syslog, the time the connection must stay open after the
   * write, since bytes the kernel accepted are lost with a connection the receiver drops.
   */
  readonly confirmMs: number;
  /** The current connection's number, or undefined when it is broken (what was sent on it and not yet confirmed is sent again). */
  connection(): number | undefined;
  /**
   * Ends the connection in order and says whether the receiver read everything sent on it (for
   * TCP: it closed its side after our FIN arrived, so it consumed every byte before it).
   */
  finish(): Promise<boolean>;
  close(): void;
}

export class SyslogSender implements Sender {
  #socket: Socket | TLSSocket | undefined;
  #broken: Error | undefined;
  #connection = 0;
  readonly #ca: Buffer | undefined;

  constructor(
    private readonly dest: SyslogDestination,
    readonly confirmMs: number,
  ) {
    this.#ca = dest.caPath === null ? undefined : readFileSync(dest.caPath);
  }

  connection(): number | undefined {
    return this.#socket && !this.#broken && !this.#socket.destroyed ? this.#connection : undefined;
  }

  async #connect(): Promise<Socket> {
    if (this.#socket && !this.#broken && !this.#socket.destroyed) return this.#socket;
    this.#socket?.destroy();
    this.#socket = undefined;
    const { host, port } = this.dest;
    const socket: Socket = this.dest.tls
      ? tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...(this.#ca ? { ca: this.#ca } : {}), rejectUnauthorized: true, minVersion: 'TLSv1.2' })
      : tcpConnect({ host, port });
    socket.setKeepAlive(true, 30_000);
    socket.setNoDelay(true);
    // A receiver sends nothing back; whatever it sends is read and dropped so its buffer never fills ours.
    socket.on('data', () => {});
    // Only this socket's own end marks the sender broken (a replaced socket's late close must not).
    socket.on('error', (err) => {
      if (this.#socket === socket) this.#broken ??= err;
    });
    socket.on('close', () => {
      if (this.#socket === socket) this.#broken ??= new Error('the syslog receiver closed the connection');
    });
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => {
        socket.destroy();
        fail(new Error(`connecting to ${host}:${port} timed out`));
      }, CONNECT_TIMEOUT_MS);
      socket.once(this.dest.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        ok();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        fail(err);
      });
    });
    this.#socket = socket;
    this.#broken = undefined;
    this.#connection++;
    return socket;
  }

  async open(): Promise<number> {
    await this.#connect();
    return this.#connection;
  }

  async send(payload: Buffer): Promise<void> {
    const socket = this.#socket;
    if (!socket || this.#broken || socket.destroyed) throw this.#broken ?? new Error('the syslog connection is not open');
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => {
        socket.destroy();
        fail(new Error('writing to the syslog receiver timed out'));
      }, SEND_TIMEOUT_MS);
      socket.write(payload, (err) => {
        clearTimeout(timer);
        if (err) fail(err);
        else if (this.#broken) fail(this.#broken);
        else ok();
      });
    });
  }

  async finish(): Promise<boolean> {
    const socket = this.#socket;
    if (!socket || this.#broken || socket.destroyed) return false;
    const closed = new Promise<boolean>((ok) => {
      const timer = setTimeout(() => {
        socket.destroy();
        ok(false);
      }, 5_000);
      socket.once('close', (hadError: boolean) => {
        clearTimeout(timer);
        ok(!hadError);
      });
    });
    socket.end();
    const clean = await closed;
    this.#socket = undefined;
    return clean;
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }
}

export class HttpSender implements Sender {
  readonly #ca: Buffer | undefined;
  /** The POST in flight, so close() can abort it (a stopping server does not wait out its timeout). */
  #inFlight: ClientRequest | undefined;
  readonly confirmMs = 0;

  connection(): number {
    return 0;
  }

  async open(): Promise<number> {
    return 0;
  }

  async finish(): Promise<boolean> {
    return true;
  }

  constructor(private readonly dest: HttpDestination) {
    this.#ca = dest.caPath === null ? undefined : readFileSync(dest.caPath);
  }

  send(payload: Buffer, info: { first: number; last: number }): Promise<void> {
    return new Promise<void>((ok, fail) => {
      const req = request(
        this.dest.url,
        {
          method: 'POST',
          ...(this.#ca ? { ca: this.#ca } : {}),
          rejectUnauthorized: true,
          minVersion: 'TLSv1.2',
          timeout: SEND_TIMEOUT_MS,
          headers: {
            'content-type': 'application/x-ndjson',
            'content-length': String(payload.length),
            // The same batch always has the same key, so a receiver may drop a repeat whole.
            'idempotency-key': `countersign-${info.first}-${info.last}`,
            'x-countersign-seq-range': `${info.first}-${info.last}`,
            ...(this.dest.token ? { authorization: `Bearer ${this.dest.token}` } : {}),
          },
        },
        (res) => {
          res.resume(); // the answer's body is not ours to keep
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) ok();
            else fail(new Error(`the receiver answered ${status}`));
          });
          res.on('error', fail);
        },
      );
      req.on('timeout', () => req.destroy(new Error('the receiver did not answer in time')));
      req.on('error', fail);
      req.on('close', () => {
        if (this.#inFlight === req) this.#inFlight = undefined;
        fail(new Error('the connection closed before the receiver answered'));
      });
      this.#inFlight = req;
      req.end(payload);
    });
  }

  close(): void {
    this.#inFlight?.destroy(new Error('forwarding stopped'));
    this.#inFlight = undefined;
  }
}

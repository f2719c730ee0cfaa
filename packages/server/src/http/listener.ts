/**
 * The HTTP listener in front of the app, with the transport limits of `TransportConfig`:
 * a connection cap, and header, request and keep-alive timeouts that drop slow clients
 * (slowloris: headers or a body sent a byte every few seconds). Node checks the header and
 * request timeouts on an interval (30 s by default, which let 300 such sockets live past 75 s);
 * here it is a fraction of the shorter timeout, so a slow client is gone within about
 * `timeout × 1.25`.
 *
 * A port that is taken is `ADDRESS_IN_USE` with a hint, not an `INTERNAL` stack trace.
 */
import { serve as listen, type ServerType } from '@hono/node-server';
import type { Server } from 'node:http';
import { CountersignError } from '@countersign/core';
import type { TransportConfig } from '../config.ts';

export interface ListenOptions {
  fetch: (request: Request) => Response | Promise<Response>;
  host: string;
  port: number;
  transport: TransportConfig;
}

export async function startListener(options: ListenOptions): Promise<ServerType> {
  const { transport } = options;
  const checkEvery = Math.max(50, Math.min(1_000, Math.floor(Math.min(transport.headersTimeoutMs, transport.requestTimeoutMs) / 4)));
  return new Promise((resolve, reject) => {
    const server = listen(
      {
        fetch: options.fetch,
        hostname: options.host,
        port: options.port,
        serverOptions: {
          headersTimeout: transport.headersTimeoutMs,
          requestTimeout: transport.requestTimeoutMs,
          keepAliveTimeout: transport.keepAliveTimeoutMs,
          connectionsCheckingInterval: checkEvery,
        },
      },
      () => {
        server.off('error', onError);
        resolve(server);
      },
    );
    (server as Server).maxConnections = transport.maxConnections;
    const onError = (err: NodeJS.ErrnoException) => reject(listenError(err, options.host, options.port));
    server.once('error', onError);
  });
}

/** What a failed `listen` means for the person starting the server. */
export function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (err.code === 'EADDRINUSE') {
    return new CountersignError('ADDRESS_IN_USE', `${where} is already in use (another Countersign or another program listens there)`, {
      host,
      port,
      hint: 'stop the other server, or choose another port with --port or COUNTERSIGN_PORT (0 picks a free one)',
    });
  }
  if (err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL') {
    return new CountersignError('ADDRESS_IN_USE', `cannot listen on ${where}: ${err.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : 'no such local address'}`, {
      host,
      port,
      hint: 'choose another --host / --port (COUNTERSIGN_HOST / COUNTERSIGN_PORT)',
    });
  }
  return err;
}

/**
 * Red-team review of SIEM forwarding (issue 20): a syslog receiver that takes every connection and
 * drops it before COUNTERSIGN_FORWARD_SYSLOG_CONFIRM_MS has passed (a crash-looping collector, a
 * load balancer with a short idle timeout, a middlebox). Nothing is ever confirmed, so the cursor
 * never moves — correctly — but the forwarder treats each drop as a quiet rewind, not a failure:
 * no error is recorded, no backoff applies (it reconnects at once, forever), and
 * `GET /v1/forwarding` says `ok` and `countersign_forward_failing` 0 while nothing is delivered.
 * The README says "alert on both"; the failing one never fires.
 *
 * Fails on the reviewed branch; passes once a connection lost before its batches were confirmed
 * counts as a failure (recorded, shown as failing, backed off).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveForwardingConfig } from '../src/forwarding/config.ts';
import { Forwarder } from '../src/forwarding/forwarder.ts';
import { forwardingStatus } from '../src/forwarding/status.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { openTestEngine, type TestEngine } from './support/engine.ts';

async function until(what: string, check: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('review: a syslog receiver that drops every connection before confirmation', () => {
  let database: TestDatabase;
  let t: TestEngine;
  let server: Server;
  let port = 0;
  let connections = 0;
  let bytes = 0;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    database = sqliteDatabase();
    t = await openTestEngine(database.url);
    // Reads what it is sent, then drops the connection once the first bytes arrived.
    server = createServer((socket) => {
      connections++;
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
      socket.once('data', (chunk: Buffer) => {
        bytes += chunk.length;
        setTimeout(() => socket.destroy(), 100);
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    port = (server.address() as { port: number }).port;
  }, 60_000);

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((ok) => server.close(() => ok()));
    await t?.engine.close();
    await database?.drop();
  }, 30_000);

  it('reports the destination failing (with an error) while nothing is ever confirmed', async () => {
    await t.engine.store.integrator.settle(10_000);
    const head = await t.engine.store.forwarding.headSeq();
    expect(head).toBeGreaterThan(0); // bootstrap and policy entries to forward
    const config = resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_URL: `tcp://127.0.0.1:${port}`, COUNTERSIGN_FORWARD_POLL_MS: '50', COUNTERSIGN_FORWARD_SYSLOG_CONFIRM_MS: '1000' }, '/');
    const forwarder = new Forwarder(t.engine.store, (d) => t.engine.trail.redact(d), config, { log: () => {} });
    forwarder.start();
    let status: Awaited<ReturnType<typeof forwardingStatus>>['destinations'][number] | undefined;
    try {
      // The receiver got the batch and dropped the connection, again and again.
      await until('five dropped connections', () => connections >= 5);
      // Read while it runs (a clean stop may confirm the last batch: the receiver read it all).
      status = (await forwardingStatus(t.engine.store, config.destinations, Date.now())).destinations[0]!;
    } finally {
      await forwarder.stop();
    }
    expect(bytes).toBeGreaterThan(0);
    if (!status) throw new Error('no status read');
    expect(status.cursor).toBe(0); // nothing confirmed: right
    expect(status.lag).toBe(head);
    expect(status.lastError, JSON.stringify(status)).not.toBeNull(); // the defect: no error recorded …
    expect(status.state).toBe('failing'); // … so it shows `ok` while nothing arrives
  }, 90_000);
});

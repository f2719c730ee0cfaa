/**
 * Red-team review of SIEM forwarding (issue 20): what the server tells others about its SIEM.
 *
 * `GET /v1/forwarding` is admin/auditor only because it "names the SIEM's addresses"; the same
 * names are labels on `/metrics`, which takes no credential at all. And a destination is named by
 * its URL's path, which for common HTTP collectors is the credential itself (a Sumo Logic HTTP
 * source, for one, is `https://…/receiver/v1/http/<collector code>`, with no other secret).
 *
 * Each test here fails on the reviewed branch and passes once the defect is fixed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { api, startServerProcess, type ServerProcess } from './support/server-process.ts';

/** The collector's secret, as a path segment of the HTTPS destination (nothing listens there). */
const PATH_SECRET = 'ZaVnC4dhaV3xJ7q9PathSecret';
const SIEM_HOST = '127.0.0.9';

async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('review: the SIEM destination is not disclosed beyond admins and auditors', () => {
  let database: TestDatabase;
  let server: ServerProcess;
  let adminToken: string;
  let agentKey: string;
  let auditorToken: string;

  beforeAll(async () => {
    database = sqliteDatabase();
    server = await startServerProcess(database.url, {
      COUNTERSIGN_FORWARD_HTTP_URL: `https://${SIEM_HOST}:9/receiver/v1/http/${PATH_SECRET}`,
      COUNTERSIGN_FORWARD_SYSLOG_URL: `tcp://${SIEM_HOST}:9`,
      COUNTERSIGN_FORWARD_POLL_MS: '100',
    });
    ({ adminToken, agentKey } = server.bootstrap!);
    auditorToken = (await api<{ token: string }>(server.url, adminToken, '/v1/operators', { body: { name: 'audrey', roles: ['auditor'] } })).body.token;
    // The forwarder has taken both destinations up (their cursors exist).
    await until('both cursors', async () => (await api<{ destinations: Array<{ state: string }> }>(server.url, adminToken, '/v1/forwarding')).body.destinations.every((d) => d.state !== 'pending'));
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  }, 30_000);

  it('control: an agent may not read GET /v1/forwarding', async () => {
    expect((await api(server.url, agentKey, '/v1/forwarding')).status).toBe(403);
  });

  it('an unauthenticated scrape of /metrics names neither the SIEM address nor the collector path (GET /v1/forwarding keeps those for admins and auditors)', async () => {
    const res = await fetch(`${server.url}/metrics`); // no credential at all
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toContain('countersign_forward_lag'); // the metrics are there …
    expect(body).not.toContain(PATH_SECRET); // … but not the HTTP collector's secret path
    expect(body).not.toContain(SIEM_HOST); // … nor where the SIEM is
  });

  it('the status an auditor reads names the HTTPS destination by its origin, not by a path that may be its credential', async () => {
    const res = await api<{ destinations: Array<{ destination: string; lastError: string | null }> }>(server.url, auditorToken, '/v1/forwarding');
    expect(res.status).toBe(200);
    expect(res.body.destinations.map((d) => d.destination).some((d) => d.includes(SIEM_HOST))).toBe(true);
    expect(JSON.stringify(res.body)).not.toContain(PATH_SECRET);
  });
});

/**
 * Issue 13 across processes: two real server processes on one PostgreSQL database. A key revoked
 * through one stops working on the other within 5 s, its open event stream included; 50 parallel
 * wrong step-up codes through both get at most 5 evaluated; break-glass needs the secret file.
 */
import { randomBytes } from 'node:crypto';
import { get as httpGet } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode } from '../src/guard/totp.ts';
import { postgresDatabase, type TestDatabase } from './support/databases.ts';
import { api, runCli, startServerProcess, testKeyPaths, type ServerProcess } from './support/server-process.ts';

describe('credentials across two servers on one PostgreSQL database', () => {
  let database: TestDatabase;
  let a: ServerProcess;
  let b: ServerProcess;
  let adminToken: string;
  let agentKey: string;

  beforeAll(async () => {
    database = postgresDatabase();
    a = await startServerProcess(database.url);
    b = await startServerProcess(database.url);
    adminToken = a.bootstrap!.adminToken;
    agentKey = a.bootstrap!.agentKey;
  }, 180_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await database?.drop();
  }, 60_000);

  it('a key revoked through one server stops working on the other within 5 s, and its open stream is closed', async () => {
    const made = (await api<{ key: string; keyId: string }>(a.url, adminToken, '/v1/keys', { body: { agent: 'streamer' } })).body;
    const created = (await api<{ id: string }>(b.url, made.key, '/v1/requests', { body: { action: 'isolate_host', args: { host: 'ws-mp' }, confidence: 0.82 } })).body;
    const stream = await fetch(`${b.url}/v1/requests/${created.id}/events`, { headers: { authorization: `Bearer ${made.key}` } });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read(); // the first state event
    const ended = (async () => {
      for (;;) if ((await reader.read()).done) return Date.now();
    })();
    const revokedAt = Date.now();
    expect((await api(a.url, adminToken, `/v1/keys/${made.keyId}`, { method: 'DELETE' })).status).toBe(200);
    let refusedAt = 0;
    while (Date.now() - revokedAt < 20_000) {
      if ((await api(b.url, made.key, '/v1/me')).status === 401) {
        refusedAt = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(refusedAt).toBeGreaterThan(0);
    expect(refusedAt - revokedAt).toBeLessThan(5_000 + 3_000); // 2 s cache + a loaded machine's request time
    const endedAt = await Promise.race([ended, new Promise<number>((r) => setTimeout(() => r(-1), 20_000))]);
    expect(endedAt).toBeGreaterThan(0);
    expect(endedAt - revokedAt).toBeLessThan(5_000 + 3_000);
  }, 60_000);

  it('an operator disabled through one server loses the other within 5 s: its token, its dashboard session and both their open event streams', async () => {
    const olga = (await api<{ token: string }>(a.url, adminToken, '/v1/operators', { body: { name: 'olga', roles: ['admin'] } })).body;
    const signIn = await fetch(`${b.url}/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json', origin: b.url }, body: JSON.stringify({ token: olga.token }) });
    expect(signIn.status).toBe(200);
    const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0]!;
    expect(cookie).toMatch(/=/);
    // Each stream on its own socket (node:http, no shared agent), read until the server ends it.
    const open = (headers: Record<string, string>) =>
      new Promise<{ ended: Promise<number> }>((resolve, reject) => {
        const req = httpGet(`${b.url}/v1/events`, { headers, agent: false }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
          const ended = new Promise<number>((done) => res.on('end', () => done(Date.now())).on('close', () => done(Date.now())));
          res.once('data', () => resolve({ ended })); // "ready" (wrapped: a promise resolved with a promise would wait for it)
        });
        req.on('error', reject);
      });
    const bySession = await open({ cookie });
    const byToken = await open({ authorization: `Bearer ${olga.token}` });
    const disabledAt = Date.now();
    expect((await api(a.url, adminToken, '/v1/operators/olga', { method: 'PATCH', body: { disabled: true } })).status).toBe(200);
    const timeout = new Promise<number>((r) => setTimeout(() => r(-1), 20_000));
    for (const { ended } of [byToken, bySession]) {
      const at = await Promise.race([ended, timeout]);
      expect(at).toBeGreaterThan(0);
      expect(at - disabledAt).toBeLessThan(5_000 + 3_000); // 2 s cache + 1 s re-check + a loaded machine
    }
    expect((await api(b.url, olga.token, '/v1/me')).status).toBe(401);
    expect((await fetch(`${b.url}/v1/session`, { headers: { cookie } })).status).toBe(401);
  }, 60_000);

  it('a role taken away through one server is gone on the other within 5 s (admin → reviewer: no more key listing)', async () => {
    const rita = (await api<{ token: string }>(a.url, adminToken, '/v1/operators', { body: { name: 'rita', roles: ['admin'] } })).body;
    expect((await api(b.url, rita.token, '/v1/keys')).status).toBe(200); // cached on b as an admin
    const changedAt = Date.now();
    expect((await api(a.url, adminToken, '/v1/operators/rita', { method: 'PATCH', body: { roles: ['reviewer'] } })).status).toBe(200);
    let refusedAt = 0;
    while (Date.now() - changedAt < 20_000) {
      if ((await api(b.url, rita.token, '/v1/keys')).status === 403) {
        refusedAt = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(refusedAt).toBeGreaterThan(0);
    expect(refusedAt - changedAt).toBeLessThan(5_000 + 3_000);
    expect((await api<{ roles: string[] }>(b.url, rita.token, '/v1/me')).body.roles).toEqual(['reviewer']);
  }, 60_000);

  it('a role change through one server ends the operator\'s open streams on the other within 5 s (what they showed was computed for the old roles)', async () => {
    const vera = (await api<{ token: string }>(a.url, adminToken, '/v1/operators', { body: { name: 'vera', roles: ['director'] } })).body;
    const request = (await api<{ id: string }>(a.url, agentKey, '/v1/requests', { body: { action: 'isolate_host', args: { host: 'ws-roles' }, confidence: 0.82 } })).body;
    const open = (path: string) =>
      new Promise<{ ended: Promise<number> }>((resolve, reject) => {
        const req = httpGet(`${b.url}${path}`, { headers: { authorization: `Bearer ${vera.token}` }, agent: false }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
          const ended = new Promise<number>((done) => res.on('end', () => done(Date.now())).on('close', () => done(Date.now())));
          res.once('data', () => resolve({ ended }));
        });
        req.on('error', reject);
      });
    const feed = await open('/v1/events');
    const one = await open(`/v1/requests/${request.id}/events`);
    // Unchanged grants keep the streams open (a PATCH that sets the same roles changes nothing).
    expect((await api(a.url, adminToken, '/v1/operators/vera', { method: 'PATCH', body: { roles: ['director'] } })).status).toBe(200);
    const early = await Promise.race([one.ended, new Promise<number>((r) => setTimeout(() => r(-1), 4_000))]);
    expect(early).toBe(-1);
    const changedAt = Date.now();
    expect((await api(a.url, adminToken, '/v1/operators/vera', { method: 'PATCH', body: { roles: ['reviewer'] } })).status).toBe(200);
    const timeout = new Promise<number>((r) => setTimeout(() => r(-1), 20_000));
    for (const { ended } of [feed, one]) {
      const at = await Promise.race([ended, timeout]);
      expect(at).toBeGreaterThan(0);
      expect(at - changedAt).toBeLessThan(5_000 + 3_000);
    }
    expect((await api(b.url, vera.token, '/v1/me')).status).toBe(200); // the credential still holds: a new stream opens with the new roles
  }, 60_000);

  it('50 parallel wrong codes through both servers: at most 5 evaluated, the rest MFA_LOCKED', async () => {
    const dir = (await api<{ token: string }>(a.url, adminToken, '/v1/operators', { body: { name: 'dmitri', roles: ['director'] } })).body;
    const enrol = (await api<{ secret: string }>(a.url, dir.token, '/v1/operators/me/totp', { method: 'POST', body: {} })).body;
    expect((await api(b.url, dir.token, '/v1/operators/me/totp/confirm', { body: { code: totpCode(enrol.secret, Date.now()) } })).status).toBe(200);
    const request = (await api<{ id: string }>(a.url, agentKey, '/v1/requests', { body: { action: 'delete_data', args: { path: '/x' }, confidence: 0.99, riskLevel: 'critical' } })).body;
    const matchCode = (await api<{ matchCode: string }>(a.url, dir.token, `/v1/requests/${request.id}`)).body.matchCode;
    const right = totpCode(enrol.secret, Date.now());
    const wrong = String((Number(right) + 500_000) % 1_000_000).padStart(6, '0');
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => api<{ error: { code: string } }>(i % 2 ? a.url : b.url, dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: wrong, matchCode } })),
    );
    const codes = results.map((r) => r.body.error.code);
    expect(codes.filter((c) => c === 'MFA_INVALID').length).toBeLessThanOrEqual(5);
    expect(codes.filter((c) => c === 'MFA_LOCKED').length).toBeGreaterThanOrEqual(45);
    expect(codes.every((c) => c === 'MFA_INVALID' || c === 'MFA_LOCKED')).toBe(true);
    expect((await api<{ error: { code: string } }>(b.url, dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: right, matchCode } })).body.error.code).toBe('MFA_LOCKED');
    expect((await api<{ status: string }>(a.url, adminToken, `/v1/requests/${request.id}`)).body.status).toBe('pending');
    const locked = (await api<{ items: unknown[] }>(a.url, adminToken, '/v1/audit?type=mfa_locked')).body.items;
    expect(locked.length).toBe(1);
  }, 90_000);

  it('admin recover: refused without the server secret file, works with it (and the new admin works on both servers)', async () => {
    // The servers' own files (one pair per database: review finding 9), as on the server host.
    const paths = testKeyPaths(database.url);
    const env = { COUNTERSIGN_AUDIT_KEY_PATH: paths.auditKey };
    const without = await runCli(['admin', 'recover', '--database', database.url, '--secret-file', join(tmpdir(), `no-such-countersign-secret-${process.pid}`)], env);
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/server secret/);
    // Another secret file (a database writer's own): refused before anything is written.
    const forged = join(mkdtempSync(join(tmpdir(), 'cs-forged-')), 'secret');
    writeFileSync(forged, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const wrong = await runCli(['admin', 'recover', '--database', database.url, '--secret-file', forged, '--json'], env);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/not the one this database/);
    expect((await api<{ items: unknown[] }>(a.url, adminToken, '/v1/audit?type=admin_recovered')).body.items).toHaveLength(0);
    const withIt = await runCli(['admin', 'recover', '--database', database.url, '--secret-file', paths.serverSecret, '--json'], env);
    expect(withIt.code, withIt.stderr).toBe(0);
    const out = JSON.parse(withIt.stdout) as { token: string; name: string };
    expect((await api<{ roles: string[] }>(b.url, out.token, '/v1/me')).body.roles).toContain('admin');
    const audit = (await api<{ items: Array<{ data: { name: string } }> }>(a.url, out.token, '/v1/audit?type=admin_recovered')).body.items;
    expect(audit.map((e) => e.data.name)).toContain('recovery-admin');
    expect(JSON.stringify(audit)).not.toContain(out.token);
  }, 90_000);
});

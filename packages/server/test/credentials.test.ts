/**
 * Issue 13, in process on both databases: the credential lifecycle over real HTTP (findings 2
 * and 7), MACed credential rows against a database writer (break-glass premise), step-up
 * lockout (finding 3) and cool-down authority (finding 6). Each attack tried is kept here.
 */
import { CountersignError, CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { createApp } from '../src/http/app.ts';
import { sha256Hex } from '../src/ids.ts';
import { ephemeralServerSecret } from '../src/keys/server-secret.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const CRITICAL = { action: 'delete_data', args: { path: '/srv/customers' }, confidence: 0.99, riskLevel: 'critical' } as const;

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    if (err instanceof CountersignError) return err.code;
    throw err;
  }
}

describe.each(ENGINES)('credentials: $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let clock = T0;
  const secret = ephemeralServerSecret();
  let adminToken: string;
  let agentKey: string;
  let admin: Principal;

  const call = async (token: string, path: string, init: { method?: string; body?: unknown } = {}) => {
    const res = await app.request(path, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: { authorization: `Bearer ${token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const operator = async (name: string, roles: string[]) => (await call(adminToken, '/v1/operators', { body: { name, roles } })).body as { id: string; token: string };

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock, serverSecret: secret });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    adminToken = boot.adminToken;
    agentKey = boot.agentKey;
    admin = (await engine.authenticate(adminToken))!;
    app = createApp({ engine, log: () => {} });
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  describe('agent keys (finding 2, point 7)', () => {
    it('lists ids, agents, status and times, never a key or any part of one', async () => {
      clock += 61_000;
      expect((await call(agentKey, '/v1/me')).status).toBe(200); // stamps last use
      // The stamp is written in the background, after the answer: wait for it (up to 10 s under load).
      let list = await call(adminToken, '/v1/keys');
      for (let i = 0; i < 200 && list.body.items?.find((k: any) => k.agentName === 'demo-agent')?.lastUsedAt == null; i++) {
        await new Promise((r) => setTimeout(r, 50));
        list = await call(adminToken, '/v1/keys');
      }
      expect(list.status).toBe(200);
      const demo = list.body.items.find((k: any) => k.agentName === 'demo-agent');
      expect(demo).toMatchObject({ status: 'active', revokedAt: null, expiresAt: null });
      expect(demo.lastUsedAt).not.toBeNull();
      const text = JSON.stringify(list.body);
      expect(text).not.toContain(agentKey);
      expect(text).not.toContain(agentKey.slice(0, 10));
      expect(text).not.toContain('prefix');
      const created = await engine.listAudit(admin, { type: 'key_created' });
      expect(JSON.stringify(created)).not.toContain(agentKey.slice(4, 10));
      expect(created.every((e) => !('prefix' in (e.data as object)))).toBe(true);
    });

    it('only admins list, revoke or rotate keys', async () => {
      const rev = await operator('kim-reviewer', ['reviewer']);
      expect((await call(rev.token, '/v1/keys')).status).toBe(403);
      expect((await call(agentKey, '/v1/keys')).status).toBe(403);
      expect((await call(rev.token, '/v1/keys/demo-agent', { method: 'DELETE' })).status).toBe(403);
      expect((await call(agentKey, '/v1/keys/demo-agent/rotate', { body: {} })).status).toBe(403);
      expect((await call(agentKey, '/v1/me')).status).toBe(200); // nothing changed
    });

    it('rotates with a grace period: both keys work until it ends, then only the new one', async () => {
      const made = (await call(adminToken, '/v1/keys', { body: { agent: 'rotor' } })).body as { key: string; keyId: string };
      const rotated = await call(adminToken, `/v1/keys/${made.keyId}/rotate`, { body: { graceSeconds: 60 } });
      expect(rotated.status).toBe(200);
      expect(rotated.body.previousKeyId).toBe(made.keyId);
      expect((await call(made.key, '/v1/me')).status).toBe(200);
      expect((await call(rotated.body.key, '/v1/me')).body.name).toBe('rotor');
      clock += 61_000;
      engine.credentials.forget();
      expect((await call(made.key, '/v1/me')).status).toBe(401);
      expect((await call(rotated.body.key, '/v1/me')).status).toBe(200);
      // The old key cannot be rotated again, a bad grace changes nothing.
      expect((await call(adminToken, `/v1/keys/${made.keyId}/rotate`, { body: {} })).status).toBe(409);
      expect((await call(adminToken, `/v1/keys/rotor/rotate`, { body: { graceSeconds: -1 } })).status).toBe(400);
      expect((await call(adminToken, `/v1/keys/rotor/rotate`, { body: { graceSeconds: 9_999_999 } })).status).toBe(400);
      expect((await call(rotated.body.key, '/v1/me')).status).toBe(200);
      const types = (await engine.listAudit(admin, { type: 'key_rotated' })).map((e) => e.data);
      expect(types).toContainEqual(expect.objectContaining({ previousKeyId: made.keyId, agentName: 'rotor' }));
    });

    it('revokes at once on this server (by id or agent name), audited', async () => {
      const made = (await call(adminToken, '/v1/keys', { body: { agent: 'doomed' } })).body as { key: string; keyId: string };
      expect((await call(made.key, '/v1/me')).status).toBe(200);
      const revoked = await call(adminToken, '/v1/keys/doomed', { method: 'DELETE' });
      expect(revoked.body).toMatchObject({ id: made.keyId, status: 'revoked' });
      expect((await call(made.key, '/v1/me')).status).toBe(401);
      expect((await call(adminToken, '/v1/keys/key_nope', { method: 'DELETE' })).status).toBe(404);
      expect((await engine.listAudit(admin, { type: 'key_revoked' })).map((e) => (e.data as { keyId: string }).keyId)).toContain(made.keyId);
    });
  });

  describe('operators (finding 2)', () => {
    it('disable, enable, set roles, rotate a token and remove, each audited; `me` and names work', async () => {
      const op = await operator('olga', ['reviewer']);
      expect((await call(adminToken, '/v1/operators/olga', { method: 'PATCH', body: { disabled: true } })).body.disabled).toBe(true);
      expect((await call(op.token, '/v1/me')).status).toBe(401);
      expect((await call(adminToken, `/v1/operators/${op.id}`, { method: 'PATCH', body: { disabled: false, roles: ['lead'], groups: ['soc'] } })).body).toMatchObject({ disabled: false, roles: ['lead'], groups: ['soc'] });
      expect((await call(op.token, '/v1/me')).body.roles).toEqual(['lead']);
      const fresh = await call(adminToken, '/v1/operators/olga/token', { body: {} });
      expect(fresh.status).toBe(200);
      expect((await call(op.token, '/v1/me')).status).toBe(401);
      expect((await call(fresh.body.token, '/v1/me')).status).toBe(200);
      const removed = await call(adminToken, '/v1/operators/olga', { method: 'DELETE' });
      expect(removed.body).toMatchObject({ removed: true, name: 'olga' });
      expect((await call(fresh.body.token, '/v1/me')).status).toBe(401);
      expect((await call(adminToken, '/v1/operators')).body.items.map((o: any) => o.name)).not.toContain('olga');
      const types = new Set((await engine.listAudit(admin, {})).map((e) => e.type));
      for (const t of ['operator_updated', 'token_rotated', 'operator_removed']) expect(types).toContain(t);
      expect(JSON.stringify((await call(adminToken, '/v1/operators')).body)).not.toMatch(/cso_/);
    });

    it('refuses bad input and non-admins, and changes nothing', async () => {
      const lead = await operator('lena', ['lead']);
      expect((await call(lead.token, '/v1/operators/lena', { method: 'PATCH', body: { roles: ['admin'] } })).status).toBe(403);
      expect((await call(lead.token, '/v1/operators/me/token', { body: {} })).status).toBe(403);
      expect((await call(adminToken, '/v1/operators/lena', { method: 'PATCH', body: { roles: ['emperor'] } })).status).toBe(400);
      expect((await call(adminToken, '/v1/operators/lena', { method: 'PATCH', body: { roles: [] } })).status).toBe(400);
      expect((await call(adminToken, '/v1/operators/lena', { method: 'PATCH', body: { disabled: 'yes' } })).status).toBe(400);
      expect((await call(adminToken, '/v1/operators/lena', { method: 'PATCH', body: { extra: 1 } })).status).toBe(400);
      expect((await call(adminToken, '/v1/operators/nobody', { method: 'DELETE' })).status).toBe(404);
      expect((await call(lead.token, '/v1/me')).body.roles).toEqual(['lead']);
    });

    it('the last active admin cannot be disabled, removed or demoted; with a second admin it can', async () => {
      for (const req of [
        { method: 'PATCH', body: { disabled: true } },
        { method: 'PATCH', body: { roles: ['director'] } },
        { method: 'DELETE' },
      ]) {
        const res = await call(adminToken, '/v1/operators/me', req);
        expect(res.status).toBe(409);
        expect(res.body.error.details.reason).toBe('last_admin');
      }
      expect((await call(adminToken, '/v1/me')).status).toBe(200);
      const second = await operator('second-admin', ['admin']);
      // Two admins disabling each other at once: at most one succeeds, one admin is always left.
      const results = await Promise.all([
        call(adminToken, '/v1/operators/second-admin', { method: 'PATCH', body: { disabled: true } }),
        call(second.token, '/v1/operators/admin', { method: 'PATCH', body: { disabled: true } }),
      ]);
      expect(results.filter((r) => r.status === 200).length).toBe(1);
      const adminsLeft = (await engine.credentials.listOperators(admin)).filter((o) => o.roles.includes('admin') && !o.disabled);
      expect(adminsLeft.length).toBe(1);
      const still = adminsLeft[0]!.name === 'admin' ? adminToken : second.token;
      const other = adminsLeft[0]!.name === 'admin' ? 'second-admin' : 'admin';
      expect((await call(still, `/v1/operators/${other}`, { method: 'PATCH', body: { disabled: false } })).status).toBe(200);
    });
  });

  describe('a database writer cannot mint or raise a credential (MACs under the server secret)', () => {
    it('refuses an inserted token, an edited role, a re-enabled operator, and a row MACed by another secret', async () => {
      const forged = 'cso_forged-by-someone-with-database-access';
      const adminId = admin.kind === 'operator' ? admin.operatorId : '';
      await engine.store.credentials.insertToken({ id: 'tok_forged', operator_id: adminId, token_hash: sha256Hex(forged), prefix: 'cso_', created_at: clock, revoked_at: null, last_used_at: null, expires_at: null, mac: null });
      expect((await call(forged, '/v1/me')).status).toBe(401);
      await engine.store.credentials.updateToken('tok_forged', { mac: 'f'.repeat(64) });
      expect((await call(forged, '/v1/me')).status).toBe(401);

      const rev = await operator('raised', ['reviewer']);
      await engine.store.credentials.updateOperator(rev.id, { roles: '["admin"]' });
      engine.credentials.forget();
      expect((await call(rev.token, '/v1/me')).status).toBe(401); // the edit breaks the MAC: refused, not promoted

      const off = await operator('switched-off', ['reviewer']);
      await call(adminToken, '/v1/operators/switched-off', { method: 'PATCH', body: { disabled: true } });
      await engine.store.credentials.updateOperator(off.id, { disabled_at: null });
      engine.credentials.forget();
      expect((await call(off.token, '/v1/me')).status).toBe(401);

      const stranger = await Engine.open({ connection: await connect(database.url), now: () => clock, serverSecret: ephemeralServerSecret() });
      try {
        expect(await stranger.authenticate(adminToken)).toBeUndefined();
      } finally {
        await stranger.close();
      }
      expect((await call(adminToken, '/v1/me')).status).toBe(200);
      expect((await call(adminToken, '/v1/keys')).body.items.every((k: any) => k.status !== 'invalid')).toBe(true);
    });
  });

  describe('step-up attempt limits (finding 3)', () => {
    it('after 5 wrong codes further attempts are MFA_LOCKED (429, retryAfter), even the right one; audited once; the back-off grows', async () => {
      const dir = await operator('dora', ['director']);
      const dora = (await engine.authenticate(dir.token))!;
      const { secret: seed } = await engine.guard.enrolTotp(dora);
      await engine.guard.confirmTotp(dora, totpCode(seed, clock));
      clock += 60_000;
      const { request } = await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse(CRITICAL));
      const matchCode = (await engine.getRequest(dora, request.id)).matchCode;
      const wrong = (n: number) => String((Number(totpCode(seed, clock)) + n) % 1_000_000).padStart(6, '0');
      for (let i = 1; i <= 5; i++) {
        const res = await call(dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: wrong(i), matchCode } });
        expect(res.body.error.code).toBe('MFA_INVALID');
      }
      const locked = await call(dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: totpCode(seed, clock), matchCode } });
      expect(locked.status).toBe(429);
      expect(locked.body.error.code).toBe('MFA_LOCKED');
      expect(locked.body.error.details.retryAfter).toBeGreaterThan(0);
      expect(locked.body.error.details.retryAfter).toBeLessThanOrEqual(60);
      expect((await engine.getRequest(dora, request.id)).status).toBe('pending');
      const audits = await engine.listAudit(admin, { type: 'mfa_locked' });
      expect(audits.length).toBe(1);
      expect(audits[0]!.data).toMatchObject({ operator: 'dora', failures: 5, strikes: 1 });
      // Rejections never need a code and are never locked out.
      // After the back-off one more wrong code locks for twice as long.
      clock += 61_000;
      expect((await call(dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: wrong(7), matchCode } })).body.error.code).toBe('MFA_INVALID');
      const again = await call(dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: totpCode(seed, clock), matchCode } });
      expect(again.body.error.code).toBe('MFA_LOCKED');
      expect(again.body.error.details.retryAfter).toBeGreaterThan(60);
      expect((await engine.listAudit(admin, { type: 'mfa_locked' })).length).toBe(2);
      // Once the lock ends the right codes approve; they do not clear the record.
      clock += 121_000;
      const ok = await call(dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: totpCode(seed, clock), matchCode } });
      expect(ok.status).toBe(200);
      expect(await engine.guard.lockout.state(dir.id)).toMatchObject({ locked: false, failures: 6 }); // a good code no longer resets the count (review finding 6)
      // Single use: the same code again is refused (and counted).
      const { request: next } = await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse({ ...CRITICAL, args: { path: '/srv/other' } }));
      const nextCode = (await engine.getRequest(dora, next.id)).matchCode;
      expect((await call(dir.token, `/v1/requests/${next.id}/reviews`, { body: { verdict: 'approve', totp: totpCode(seed, clock), matchCode: nextCode } })).body.error.code).toBe('MFA_INVALID');
      // The good code reset nothing: that replay is the 7th wrong code in the window, so the lock is back.
      expect(await engine.guard.lockout.state(dir.id)).toMatchObject({ locked: true, failures: 7 });
      // Once the window has passed, the old failures age out; a wrong match code is counted on its own.
      clock += 16 * 60_000;
      const badMatch = await call(dir.token, `/v1/requests/${next.id}/reviews`, { body: { verdict: 'approve', totp: totpCode(seed, clock), matchCode: nextCode === '00' ? '01' : '00' } });
      expect(badMatch.body.error.code).toBe('MATCH_CODE_INVALID');
      expect(await engine.guard.lockout.state(dir.id)).toMatchObject({ locked: false, failures: 1 });
      expect((await call(dir.token, `/v1/requests/${next.id}/reviews`, { body: { verdict: 'reject', reason: 'no' } })).status).toBe(200);
    });

    it('a patient guesser who stays under the window (4 wrong codes per 16 minutes) is locked at the 20th wrong code of the day, audited', async () => {
      const dir = await operator('petra', ['director']);
      const petra = (await engine.authenticate(dir.token))!;
      const { secret: seed } = await engine.guard.enrolTotp(petra);
      await engine.guard.confirmTotp(petra, totpCode(seed, clock));
      clock += 60_000;
      const auditsBefore = (await engine.listAudit(admin, { type: 'mfa_locked' })).length;
      const codes: string[] = [];
      for (let round = 0; round < 6; round++) {
        // A fresh request each round (one would lapse over the hours); the guesser has the token, not the seed.
        const { request } = await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse({ ...CRITICAL, args: { path: `/srv/p${round}` } }));
        const matchCode = (await engine.getRequest(petra, request.id)).matchCode;
        for (let i = 0; i < 4; i++) {
          const wrong = String((Number(totpCode(seed, clock)) + 1 + i) % 1_000_000).padStart(6, '0');
          codes.push((await call(dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: wrong, matchCode } })).body.error.code);
          clock += 1_000;
        }
        clock += 16 * 60_000;
      }
      // 5 rounds of 4 are 20 wrong codes, never 5 within 15 minutes: the 20th locks (a minute).
      expect(codes.slice(0, 20).every((c) => c === 'MFA_INVALID')).toBe(true);
      expect(codes[20]).toBe('MFA_INVALID'); // the lockout of the 20th (1 min) ended during the 16-minute pause
      expect(codes[21]).toBe('MFA_LOCKED'); // …and the 21st is a strike of its own: locked again, for longer
      const audits = await engine.listAudit(admin, { type: 'mfa_locked' });
      expect(audits.length - auditsBefore).toBe(2);
      expect(audits.at(-1)!.data).toMatchObject({ operator: 'petra', strikes: 2 });
    });

    it('a code sent with an approval that needs none does not clear the record', async () => {
      const dir = await operator('duncan', ['director']);
      const duncan = (await engine.authenticate(dir.token))!;
      const { secret: seed } = await engine.guard.enrolTotp(duncan);
      await engine.guard.confirmTotp(duncan, totpCode(seed, clock));
      const { request } = await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse(CRITICAL));
      const matchCode = (await engine.getRequest(duncan, request.id)).matchCode;
      for (let i = 0; i < 3; i++) await call(dir.token, `/v1/requests/${request.id}/reviews`, { body: { verdict: 'approve', totp: '000000', matchCode } });
      const low = await engine.createRequest((await engine.authenticate(agentKey))!, CreateRequestBody.parse({ action: 'isolate_host', args: { host: 'x' }, confidence: 0.82 }));
      expect((await call(dir.token, `/v1/requests/${low.request.id}/reviews`, { body: { verdict: 'approve', totp: '123456' } })).status).toBe(200);
      expect((await engine.guard.lockout.state(dir.id)).failures).toBe(3);
    });
  });

  describe('cool-down authority (finding 6)', () => {
    it('set only on lower ranks; lifted by same-or-higher rank, never by the one cooling down; audited', async () => {
      const lead = await operator('leo', ['lead']);
      const dir = await operator('diana', ['director']);
      const rev = await operator('rita', ['reviewer']);
      const other = await operator('liam', ['lead']);
      const set = (token: string, who: string) => call(token, `/v1/approvers/${who}/cooldown`, { body: { minutes: 60, reason: 'tired' } });
      expect((await set(lead.token, 'diana')).status).toBe(403);
      expect((await set(lead.token, 'admin')).status).toBe(403);
      expect((await set(lead.token, 'liam')).status).toBe(403); // same rank
      expect((await call(adminToken, '/v1/approvers/diana/cooldown')).body.active).toBe(false);
      expect((await set(lead.token, 'rita')).body.active).toBe(true);
      const lift = (token: string, who: string) => call(token, `/v1/approvers/${who}/cooldown`, { method: 'DELETE', body: { reason: 'rested' } });
      expect((await lift(rev.token, 'rita')).status).toBe(403); // never by the one it applies to (nor a reviewer)
      expect((await lift(rev.token, 'me')).status).toBe(403);
      expect((await set(dir.token, 'leo')).body.active).toBe(true);
      expect((await lift(lead.token, 'me')).status).toBe(403); // leo cannot lift his own
      expect((await lift(other.token, 'leo')).status).toBe(403); // a lead cannot lift a director's cool-down
      expect((await lift(dir.token, 'leo')).body.active).toBe(false);
      expect((await lift(other.token, 'rita')).body.active).toBe(false); // same rank as the lead who set it
      expect((await lift(other.token, 'rita')).status).toBe(404);
      expect((await call(other.token, '/v1/approvers/rita/cooldown', { method: 'DELETE', body: {} })).status).toBe(400);
      const lifted = await engine.listAudit(admin, { type: 'cooldown_lifted' });
      expect(lifted.map((e) => (e.data as { operator: string }).operator).sort()).toEqual(['leo', 'rita']);
    });
  });
});

/**
 * Red-team review of the `creds` branch (issue 13). Each test is a confirmed attack: it failed on
 * the branch as reviewed (it asserts what the issue promises) and passes with the fixes
 * (ac284f4..2a9a65d); the last block holds the attacks tried after the merge with main.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CountersignError, CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN, DEFAULT_POLICY_YAML } from '@countersign/core';
import type { Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { channelPolicyCheck } from '../src/channels/config.ts';
import { ChannelRegistry } from '../src/channels/registry.ts';
import { slackSignature } from '../src/channels/slack-actions.ts';
import { Engine } from '../src/engine/engine.ts';
import { sessionIdHash } from '../src/engine/credentials.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { createApp } from '../src/http/app.ts';
import { sha256Hex } from '../src/ids.ts';
import { ephemeralServerSecret, loadOrCreateServerSecret, readServerSecret } from '../src/keys/server-secret.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const CRITICAL = { action: 'delete_data', args: { path: '/srv/customers' }, confidence: 0.99, riskLevel: 'critical' } as const;
const QUEUED = CreateRequestBody.parse({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 });
const SIGNING = 'slack-signing-secret-for-tests';
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: Number.MAX_SAFE_INTEGER, perDay: Number.MAX_SAFE_INTEGER }, cooldown: { ...DEFAULT_COOLDOWN, threshold: Number.MAX_SAFE_INTEGER } };

/** The database as someone who can write it (and nothing else) sees it. */
const raw = (engine: Engine) => (engine.store as unknown as { db: Kysely<any> }).db;

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {});
});

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    if (err instanceof CountersignError) return err.code;
    throw err;
  }
}

interface Rig {
  database: TestDatabase;
  engine: Engine;
  admin: Principal;
  adminToken: string;
  agent: Principal;
  clock: { now: number };
}

async function rig(options: { policy?: string; env?: Record<string, string>; secret?: ReturnType<typeof ephemeralServerSecret>; database?: TestDatabase } = {}): Promise<Rig> {
  const database = options.database ?? sqliteDatabase();
  const clock = { now: T0 };
  const engine = await Engine.open({ connection: await connect(database.url), now: () => clock.now, serverSecret: options.secret ?? ephemeralServerSecret(), guard: NO_LIMITS });
  if (options.env) engine.addPolicyCheck(channelPolicyCheck(options.env));
  await engine.activatePolicy(options.policy ?? DEFAULT_POLICY_YAML, 'test');
  const boot = (await engine.bootstrap())!;
  cleanup.push(async () => {
    await engine.close();
    await database.drop();
  });
  return { database, engine, clock, admin: (await engine.authenticate(boot.adminToken))!, adminToken: boot.adminToken, agent: (await engine.authenticate(boot.agentKey))! };
}

describe('review-creds: revoked or disabled credentials still work', () => {
  async function slackRig() {
    const env = { COUNTERSIGN_SLACK_BOT_TOKEN: 'xoxb-review', COUNTERSIGN_SLACK_SIGNING_SECRET: SIGNING };
    const r = await rig({
      env,
      policy: `escalation:\n  levels: [{ role: lead, after: sla, notify: [slack] }]\nchannels:\n  slack: { channel: C0123456789, apiUrl: "http://127.0.0.1:9/api", users: { U0ALICE1: alice } }\n`,
    });
    r.clock.now = Date.now(); // Slack signatures are checked against the engine clock
    const channels = new ChannelRegistry(r.engine, env);
    cleanup.push(() => channels.close());
    const app = createApp({ engine: r.engine, channels, log: () => {} });
    const click = (user: string, actionId: string, requestId: string) => {
      const body = new URLSearchParams({
        payload: JSON.stringify({ type: 'block_actions', user: { id: user }, actions: [{ type: 'button', action_id: actionId, value: requestId, action_ts: String(Date.now() / 1000) }] }),
      }).toString();
      const ts = String(Math.floor(r.clock.now / 1000));
      return app.request('/v1/integrations/slack/actions', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': ts, 'x-slack-signature': slackSignature(SIGNING, ts, body) },
        body,
      });
    };
    return { ...r, click };
  }

  it('a DISABLED operator mapped to a Slack user still approves through Slack', async () => {
    const r = await slackRig();
    await r.engine.createOperator(r.admin, { name: 'alice', roles: ['lead'] });
    await r.engine.credentials.updateOperator(r.admin, 'alice', { disabled: true });
    const { request } = await r.engine.createRequest(r.agent, QUEUED);
    const res = await r.click('U0ALICE1', 'approve', request.id);
    expect((await r.engine.getRequest(r.admin, request.id)).status).toBe('pending');
    expect(res.status).toBe(403);
  });

  it('a REMOVED operator mapped to a Slack user still approves through Slack', async () => {
    const r = await slackRig();
    await r.engine.createOperator(r.admin, { name: 'alice', roles: ['lead'] });
    await r.engine.credentials.removeOperator(r.admin, 'alice');
    const { request } = await r.engine.createRequest(r.agent, QUEUED);
    const res = await r.click('U0ALICE1', 'approve', request.id);
    expect((await r.engine.getRequest(r.admin, request.id)).status).toBe('pending');
    expect(res.status).toBe(403);
  });

  it('a Slack-linked operator whose row was edited in the database (MAC broken: roles raised) still reviews with the raised roles', async () => {
    const r = await slackRig();
    const made = await r.engine.createOperator(r.admin, { name: 'alice', roles: ['auditor'] }); // cannot review at all
    await r.engine.store.credentials.updateOperator(made.id, { roles: '["lead"]' }); // a database writer raises her
    const { request } = await r.engine.createRequest(r.agent, QUEUED);
    const res = await r.click('U0ALICE1', 'approve', request.id);
    expect((await r.engine.getRequest(r.admin, request.id)).status).toBe('pending');
    expect(res.status).toBe(403);
  });
});

describe('review-creds: a database writer alone becomes an admin', () => {
  it('a session row inserted into `sessions` (no MAC) gives a dashboard session as the admin', async () => {
    const r = await rig();
    const app = createApp({ engine: r.engine, log: () => {} });
    const adminId = r.admin.kind === 'operator' ? r.admin.operatorId : '';
    // Everything below is read from or written to the database only; no secret file, no token.
    const token = (await r.engine.store.credentials.tokensOf(adminId))[0]!;
    const forgedId = 'A'.repeat(43);
    await r.engine.store.credentials.insertSession({ id_hash: sessionIdHash(forgedId), operator_id: adminId, token_id: token.id, created_at: r.clock.now, expires_at: r.clock.now + 86_400_000, mac: 'f'.repeat(64) });
    const res = await app.request('/v1/keys', { headers: { cookie: `countersign_session=v2.${forgedId}` } });
    expect(res.status).toBe(401);
  });

  it("a real session's MAC moved onto a forged id, or its expiry pushed out, does not sign in", async () => {
    const r = await rig();
    const app = createApp({ engine: r.engine, log: () => {} });
    const real = await r.engine.credentials.openSession(r.adminToken, 60_000);
    const cookie = (id: string) => ({ headers: { cookie: `countersign_session=v2.${id}` } });
    expect((await app.request('/v1/keys', cookie(real.id))).status).toBe(200);
    const row = (await r.engine.store.credentials.session(sessionIdHash(real.id)))!;
    const forgedId = 'B'.repeat(43);
    await r.engine.store.credentials.insertSession({ ...row, id_hash: sessionIdHash(forgedId) });
    expect((await app.request('/v1/keys', cookie(forgedId))).status).toBe(401);
    await raw(r.engine).updateTable('sessions').set({ expires_at: r.clock.now + 365 * 86_400_000 }).where('id_hash', '=', sessionIdHash(real.id)).execute();
    expect((await app.request('/v1/keys', cookie(real.id))).status).toBe(401);
  });

  it('a TOTP seed overwritten as `plain:<known>` in the database is accepted for step-up (seeds are not bound to the server secret)', async () => {
    const r = await rig();
    const { token } = await r.engine.createOperator(r.admin, { name: 'dora', roles: ['director'] });
    const dora = (await r.engine.authenticate(token))!;
    const { secret: real } = await r.engine.guard.enrolTotp(dora);
    await r.engine.guard.confirmTotp(dora, totpCode(real, r.clock.now));
    r.clock.now += 60_000;
    const known = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
    const doraId = dora.kind === 'operator' ? dora.operatorId : '';
    await raw(r.engine).updateTable('operator_totp').set({ secret: `plain:${known}` }).where('operator_id', '=', doraId).execute();
    const { request } = await r.engine.createRequest(r.agent, CreateRequestBody.parse(CRITICAL));
    const matchCode = (await r.engine.getRequest(dora, request.id)).matchCode;
    const code = await codeOf(r.engine.review(dora, request.id, { verdict: 'approve', totp: totpCode(known, r.clock.now), matchCode }));
    expect(code).not.toBeUndefined(); // the attacker's seed must not pass step-up
  });

  it("another operator's sealed seed copied onto the victim's row is accepted (the seal is not bound to the operator)", async () => {
    const r = await rig();
    const mk = async (name: string) => {
      const { token } = await r.engine.createOperator(r.admin, { name, roles: ['director'] });
      const p = (await r.engine.authenticate(token))!;
      const { secret } = await r.engine.guard.enrolTotp(p);
      await r.engine.guard.confirmTotp(p, totpCode(secret, r.clock.now));
      return { p, secret, id: p.kind === 'operator' ? p.operatorId : '' };
    };
    const victim = await mk('victim');
    const mallory = await mk('mallory');
    r.clock.now += 60_000;
    const row = await raw(r.engine).selectFrom('operator_totp').selectAll().where('operator_id', '=', mallory.id).executeTakeFirstOrThrow();
    await raw(r.engine).updateTable('operator_totp').set({ secret: row.secret, last_step: null }).where('operator_id', '=', victim.id).execute();
    const { request } = await r.engine.createRequest(r.agent, CreateRequestBody.parse(CRITICAL));
    const matchCode = (await r.engine.getRequest(victim.p, request.id)).matchCode;
    const code = await codeOf(r.engine.review(victim.p, request.id, { verdict: 'approve', totp: totpCode(mallory.secret, r.clock.now), matchCode }));
    expect(code).not.toBeUndefined();
  });

  it('deleting the credential rows makes the next start bootstrap (and serve print) a fresh admin token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cs-review-secret-'));
    const path = join(dir, 'countersign-server-secret');
    loadOrCreateServerSecret(path);
    const database = sqliteDatabase();
    const first = await rig({ database, secret: readServerSecret(path)! });
    // A database writer wipes the tokens and keys and renames the admin out of the way.
    await raw(first.engine).deleteFrom('operator_tokens').execute();
    await raw(first.engine).deleteFrom('api_keys').execute();
    await raw(first.engine).updateTable('operators').set({ name: 'old-admin' }).where('name', '=', 'admin').execute();
    // The next `serve` (same secret file, not a first start) calls bootstrap again.
    const again = await Engine.open({ connection: await connect(database.url), serverSecret: readServerSecret(path)! });
    cleanup.push(() => again.close());
    const boot = await again.bootstrap();
    expect(boot).toBeNull();
  });

  it('rows a database writer leaves without a MAC are adopted by the next start that makes a new secret file', async () => {
    const database = sqliteDatabase();
    const first = await rig({ database });
    const adminId = first.admin.kind === 'operator' ? first.admin.operatorId : '';
    const forged = 'cso_inserted-by-a-database-writer-0001';
    await first.engine.store.credentials.insertToken({ id: 'tok_forged', operator_id: adminId, token_hash: sha256Hex(forged), prefix: 'cso_', created_at: T0, revoked_at: null, last_used_at: null, expires_at: null, mac: null });
    await first.engine.store.credentials.updateOperator(adminId, { mac: null });
    expect(await first.engine.authenticate(forged)).toBeUndefined();
    // The secret file is lost (new volume, new host, a server started without it): a new one is created.
    const dir = mkdtempSync(join(tmpdir(), 'cs-review-secret-'));
    const fresh = loadOrCreateServerSecret(join(dir, 'countersign-server-secret'));
    expect(fresh.created).toBe(true);
    const again = await Engine.open({ connection: await connect(database.url), serverSecret: fresh });
    cleanup.push(() => again.close());
    expect(await again.authenticate(forged)).toBeUndefined();
  });
});

describe('review-creds: step-up lockout', () => {
  async function directorWithTotp(r: Rig, name: string) {
    const { token } = await r.engine.createOperator(r.admin, { name, roles: ['director'] });
    const p = (await r.engine.authenticate(token))!;
    const { secret } = await r.engine.guard.enrolTotp(p);
    await r.engine.guard.confirmTotp(p, totpCode(secret, r.clock.now));
    return { p, secret, token };
  }
  const wrongOf = (secret: string, at: number, n: number) => String((Number(totpCode(secret, at)) + n) % 1_000_000).padStart(6, '0');

  it('a correct code wipes the count: 8 wrong codes in under 15 minutes and no lockout (4 guesses per legitimate approval)', async () => {
    const r = await rig();
    const { p, secret } = await directorWithTotp(r, 'gus');
    r.clock.now += 60_000;
    const target = (await r.engine.createRequest(r.agent, CreateRequestBody.parse(CRITICAL))).request;
    const targetMatch = (await r.engine.getRequest(p, target.id)).matchCode;
    const guess = async (n: number) => codeOf(r.engine.review(p, target.id, { verdict: 'approve', totp: wrongOf(secret, r.clock.now, n), matchCode: targetMatch }));
    for (let i = 1; i <= 4; i++) expect(await guess(i)).toBe('MFA_INVALID');
    // The real operator (or whoever shares their token) approves something legitimately.
    const other = (await r.engine.createRequest(r.agent, CreateRequestBody.parse({ ...CRITICAL, args: { path: '/srv/other' } }))).request;
    const otherMatch = (await r.engine.getRequest(p, other.id)).matchCode;
    expect(await codeOf(r.engine.review(p, other.id, { verdict: 'approve', totp: totpCode(secret, r.clock.now), matchCode: otherMatch }))).toBeUndefined();
    r.clock.now += 30_000;
    // The legitimate approval does not reset the count: the fifth wrong code is the last evaluated.
    expect(await guess(5)).toBe('MFA_INVALID');
    expect(await guess(6)).toBe('MFA_LOCKED');
  });

  it('a correct code after a lockout also wipes the strikes: the back-off never grows', async () => {
    const r = await rig();
    const { p, secret } = await directorWithTotp(r, 'gwen');
    r.clock.now += 60_000;
    const target = (await r.engine.createRequest(r.agent, CreateRequestBody.parse(CRITICAL))).request;
    const m = (await r.engine.getRequest(p, target.id)).matchCode;
    const guess = (n: number) => codeOf(r.engine.review(p, target.id, { verdict: 'approve', totp: wrongOf(secret, r.clock.now, n), matchCode: m }));
    for (let i = 1; i <= 5; i++) await guess(i);
    expect(await r.engine.guard.lockout.state(p.kind === 'operator' ? p.operatorId : '')).toMatchObject({ locked: true, strikes: 1 });
    r.clock.now += 61_000;
    const other = (await r.engine.createRequest(r.agent, CreateRequestBody.parse({ ...CRITICAL, args: { path: '/srv/x' } }))).request;
    const om = (await r.engine.getRequest(p, other.id)).matchCode;
    expect(await codeOf(r.engine.review(p, other.id, { verdict: 'approve', totp: totpCode(secret, r.clock.now), matchCode: om }))).toBeUndefined();
    r.clock.now += 30_000;
    for (let i = 6; i <= 10; i++) await guess(i);
    const state = await r.engine.guard.lockout.state(p.kind === 'operator' ? p.operatorId : '');
    expect(state.strikes).toBeGreaterThanOrEqual(2); // the second lockout within the look-back should be longer
  });

  it('two servers whose clocks differ by 10 s each evaluate 5 wrong codes (attempts "in the future" are ignored)', async () => {
    const database = sqliteDatabase();
    const a = await rig({ database });
    const { p, secret } = await directorWithTotp(a, 'skew');
    a.clock.now += 60_000;
    const behind = await Engine.open({ connection: await connect(database.url), now: () => a.clock.now - 10_000, serverSecret: a.engine.credentials.secret, guard: NO_LIMITS });
    cleanup.push(() => behind.close());
    const target = (await a.engine.createRequest(a.agent, CreateRequestBody.parse(CRITICAL))).request;
    const m = (await a.engine.getRequest(p, target.id)).matchCode;
    let evaluated = 0;
    for (const [engine, n] of [[a.engine, 1], [a.engine, 2], [a.engine, 3], [a.engine, 4], [a.engine, 5], [behind, 6], [behind, 7], [behind, 8], [behind, 9], [behind, 10]] as const) {
      const code = await codeOf(engine.review(p, target.id, { verdict: 'approve', totp: wrongOf(secret, a.clock.now, n), matchCode: m }));
      if (code === 'MFA_INVALID') evaluated++;
    }
    expect(evaluated).toBeLessThanOrEqual(5);
  });
});

describe('review-creds: removed operators are still named as reviewers', () => {
  it('a request can be reassigned to a removed (or disabled) operator', async () => {
    const r = await rig();
    const { token } = await r.engine.createOperator(r.admin, { name: 'lead-one', roles: ['lead'] });
    const lead = (await r.engine.authenticate(token))!;
    await r.engine.createOperator(r.admin, { name: 'gone', roles: ['lead'] });
    await r.engine.credentials.removeOperator(r.admin, 'gone');
    const { request } = await r.engine.createRequest(r.agent, QUEUED);
    expect(await codeOf(r.engine.reassign(lead, request.id, { operator: 'gone', reason: 'hand it to someone who left' }))).toBe('VALIDATION_FAILED');
  });

  it('a cool-down or an allowlist cannot be set on a disabled operator, nor on one whose row a database writer lowered', async () => {
    const r = await rig();
    await r.engine.createOperator(r.admin, { name: 'sleepy', roles: ['reviewer'] });
    await r.engine.credentials.updateOperator(r.admin, 'sleepy', { disabled: true });
    expect(await codeOf(r.engine.guard.setCooldown(r.admin, 'sleepy', { minutes: 10, reason: 'x' }))).toBe('NOT_FOUND');
    expect(await codeOf(r.engine.guard.setAllowlist(r.admin, 'sleepy', ['10.0.0.0/8']))).toBe('NOT_FOUND');
    // A director's row edited to read 'reviewer' (MAC broken) so that a lead could cool them down.
    const { token } = await r.engine.createOperator(r.admin, { name: 'lead-two', roles: ['lead'] });
    const lead = (await r.engine.authenticate(token))!;
    const dir = await r.engine.createOperator(r.admin, { name: 'dir', roles: ['director'] });
    await r.engine.store.credentials.updateOperator(dir.id, { roles: '["reviewer"]' });
    expect(await codeOf(r.engine.guard.setCooldown(lead, 'dir', { minutes: 10, reason: 'x' }))).toBe('NOT_FOUND');
  });
});

/**
 * Red team after the merge with main (gate, first-hour embedded admin, transport limits): each
 * attack is kept as a test that fails if the defence it names is taken out.
 */
describe('red team after the merge', () => {
  it('a database writer plants an unMACed admin-role operator: the embedded gateway refuses to act, and bootstrap gives the token to a real admin, never to the planted row', async () => {
    const database = sqliteDatabase();
    const engine = await Engine.open({ connection: await connect(database.url), now: () => T0, serverSecret: ephemeralServerSecret(), guard: NO_LIMITS });
    cleanup.push(async () => {
      await engine.close();
      await database.drop();
    });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    await raw(engine).insertInto('operators').values({ id: 'op_planted', name: 'mallory', roles: '["admin"]', groups: '[]', created_at: T0, disabled_at: null, removed_at: null, mac: null }).execute();
    // Without the MAC check the planted row would be the embedded gateway's admin.
    expect(await codeOf(engine.embeddedAdmin())).toBe('FORBIDDEN');
    const boot = (await engine.bootstrap())!;
    const who = await engine.authenticate(boot.adminToken);
    expect(who).toMatchObject({ kind: 'operator', name: 'admin' });
    const tokens = await raw(engine).selectFrom('operator_tokens').select(['operator_id']).execute();
    expect(tokens.map((t) => t.operator_id)).not.toContain('op_planted');
    // And a second bootstrap (the writer then deletes every token) mints nothing: the mark and the trail remember.
    await raw(engine).deleteFrom('operator_tokens').execute();
    expect(await engine.bootstrap()).toBeNull();
  });

  it("an embedded database's tokenless admin is given its first token MACed and audited without any part of it; an edited token row no longer signs in", async () => {
    const database = sqliteDatabase();
    const secret = ephemeralServerSecret();
    const open = async () => Engine.open({ connection: await connect(database.url), now: () => T0, serverSecret: secret, guard: NO_LIMITS });
    const engine = await open();
    cleanup.push(async () => {
      await engine.close();
      await database.drop();
    });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const tokenless = await engine.embeddedAdmin();
    const boot = (await engine.bootstrap())!;
    expect(boot.operatorId).toBe(tokenless.operatorId);
    expect(await engine.authenticate(boot.adminToken)).toMatchObject({ operatorId: tokenless.operatorId });
    const [issued] = await engine.store.listAudit({ limit: 10, type: 'operator_token_issued' });
    expect(JSON.parse(issued!.data)).not.toHaveProperty('prefix');
    expect(issued!.data).not.toContain(boot.adminToken.slice(0, 8));
    // A writer who edits the token row (another operator) breaks its MAC: it no longer signs in.
    const tokenRow = await raw(engine).selectFrom('operator_tokens').selectAll().where('operator_id', '=', tokenless.operatorId).executeTakeFirstOrThrow();
    await raw(engine).updateTable('operator_tokens').set({ expires_at: T0 + 1 }).where('id', '=', tokenRow.id).execute();
    engine.credentials.forget();
    expect(await engine.authenticate(boot.adminToken)).toBeUndefined();
  });

  it('a rotated key replayed after its grace is refused on a second server that had it cached', async () => {
    const r = await rig();
    const other = await Engine.open({ connection: await connect(r.database.url), now: () => r.clock.now, serverSecret: (r.engine.credentials as unknown as { secret: ReturnType<typeof ephemeralServerSecret> }).secret, guard: NO_LIMITS });
    cleanup.push(() => other.close());
    await other.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const made = await r.engine.createAgentKey(r.admin, 'rotor');
    expect(await other.authenticate(made.key)).toMatchObject({ kind: 'agent' }); // cached on the other server
    await r.engine.credentials.rotateKey(r.admin, made.keyId, { graceSeconds: 60 });
    r.clock.now += 30_000;
    expect(await other.authenticate(made.key)).toMatchObject({ kind: 'agent' }); // in grace
    r.clock.now += 31_000 + 2_000; // past the grace and the other server's cache
    expect(await other.authenticate(made.key)).toBeUndefined();
    expect(await r.engine.authenticate(made.key)).toBeUndefined();
    // A writer who pushes the old key's expiry out breaks its MAC.
    await raw(r.engine).updateTable('api_keys').set({ expires_at: r.clock.now + 86_400_000 }).where('id', '=', made.keyId).execute();
    r.clock.now += 2_001;
    expect(await other.authenticate(made.key)).toBeUndefined();
  });

  it("a disabled operator's open event stream is closed within 5 s", async () => {
    const r = await rig();
    const app = createApp({ engine: r.engine, log: () => {}, heartbeatSeconds: 1 });
    const { token } = await r.engine.createOperator(r.admin, { name: 'watcher', roles: ['reviewer'] });
    const { request } = await r.engine.createRequest(r.agent, QUEUED);
    const res = await app.request(`/v1/requests/${request.id}/events`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    const ended = (async () => {
      for (;;) if ((await reader.read()).done) return Date.now();
    })();
    const disabledAt = Date.now();
    r.clock.now += 1; // the engine clock is fixed; the credential re-check runs on wall time
    await r.engine.credentials.updateOperator(r.admin, 'watcher', { disabled: true });
    const endedAt = await Promise.race([ended, new Promise<number>((done) => setTimeout(() => done(-1), 8_000))]);
    expect(endedAt).toBeGreaterThan(0);
    expect(endedAt - disabledAt).toBeLessThan(5_000);
  }, 20_000);

  it('lockout through match codes: 5 wrong match codes (each with a valid TOTP code) lock step-up; the right pair is then MFA_LOCKED', async () => {
    const r = await rig();
    const { token } = await r.engine.createOperator(r.admin, { name: 'mina', roles: ['director'] });
    const mina = (await r.engine.authenticate(token))!;
    const { secret } = await r.engine.guard.enrolTotp(mina);
    await r.engine.guard.confirmTotp(mina, totpCode(secret, r.clock.now));
    r.clock.now += 60_000;
    const { request } = await r.engine.createRequest(r.agent, CreateRequestBody.parse(CRITICAL));
    const right = (await r.engine.getRequest(mina, request.id)).matchCode!;
    const wrongs = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0')).filter((c) => c !== right);
    for (const matchCode of wrongs.slice(0, 5)) {
      expect(await codeOf(r.engine.review(mina, request.id, { verdict: 'approve', totp: totpCode(secret, r.clock.now), matchCode }))).toBe('MATCH_CODE_INVALID');
    }
    expect(await codeOf(r.engine.review(mina, request.id, { verdict: 'approve', totp: totpCode(secret, r.clock.now), matchCode: right }))).toBe('MFA_LOCKED');
    expect((await r.engine.getRequest(r.admin, request.id)).status).toBe('pending');
  });
});

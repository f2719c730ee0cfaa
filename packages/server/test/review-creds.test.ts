/**
 * Independent red-team review of creds-base (issue 13's credential lifecycle). Each test is an
 * attack that works on the branch as reviewed: it asserts what the issue promises and FAILS until
 * the defect is fixed. The attacker is a database writer (any row, no server secret file, no audit
 * key) unless the test says otherwise.
 */
import { CountersignError, CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN, DEFAULT_POLICY_YAML } from '@countersign/core';
import type { Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { createEmbeddedGateway } from '../src/embedded.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { sha256Hex } from '../src/ids.ts';
import { ephemeralServerSecret } from '../src/keys/server-secret.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const CRITICAL = { action: 'delete_data', args: { path: '/srv/customers' }, confidence: 0.99, riskLevel: 'critical' } as const;
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

async function rig(options: { database?: TestDatabase; adminToken?: string } = {}) {
  const database = options.database ?? sqliteDatabase();
  const clock = { now: T0 };
  const secret = ephemeralServerSecret();
  const engine = await Engine.open({ connection: await connect(database.url), now: () => clock.now, serverSecret: secret, guard: NO_LIMITS });
  await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
  const boot = (await engine.bootstrap(options.adminToken ? { adminToken: options.adminToken } : {}))!;
  cleanup.push(async () => {
    await engine.close();
    await database.drop();
  });
  const admin = (await engine.authenticate(boot.adminToken))!;
  const agent = (await engine.authenticate(boot.agentKey))!;
  return { database, engine, clock, secret, admin, adminToken: boot.adminToken, agent };
}

const roleOf = (p: Principal | undefined) => (p?.kind === 'operator' ? p.roles : null);
/** The roles a credential grants, [] when it does not authenticate (`not.toContain` cannot take null). */
const rolesOrNone = (p: Principal | undefined) => roleOf(p) ?? [];

describe('review-creds: an admin action re-MACs a row a database writer edited (laundering)', () => {
  it('a disabled reviewer whose row a database writer raised to admin becomes a MAC-valid admin when an admin re-enables them', async () => {
    const r = await rig();
    const mallory = await r.engine.createOperator(r.admin, { name: 'mallory', roles: ['reviewer'] });
    await r.engine.credentials.updateOperator(r.admin, 'mallory', { disabled: true });
    // The database writer raises the disabled row (MAC now broken; it authenticates nowhere).
    await raw(r.engine).updateTable('operators').set({ roles: '["admin"]' }).where('id', '=', mallory.id).execute();
    r.engine.credentials.forget();
    expect(await r.engine.authenticate(mallory.token)).toBeUndefined();
    // A real admin re-enables mallory (an ordinary request): the edited roles are sealed with a fresh MAC.
    await r.engine.credentials.updateOperator(r.admin, 'mallory', { disabled: false }).catch(() => {});
    r.engine.credentials.forget();
    expect(rolesOrNone(await r.engine.authenticate(mallory.token))).not.toContain('admin');
  });

  it('setting only the groups of an operator whose row was raised in the database seals the raised roles', async () => {
    const r = await rig();
    const mallory = await r.engine.createOperator(r.admin, { name: 'mallory', roles: ['reviewer'] });
    await raw(r.engine).updateTable('operators').set({ roles: '["admin"]' }).where('id', '=', mallory.id).execute();
    await r.engine.credentials.updateOperator(r.admin, 'mallory', { groups: ['oncall'] }).catch(() => {});
    r.engine.credentials.forget();
    expect(rolesOrNone(await r.engine.authenticate(mallory.token))).not.toContain('admin');
  });

  it('rotating a key row a database writer planted (listed as `invalid`) with a grace period MACs it: the planted key authenticates for the grace', async () => {
    const r = await rig();
    const made = await r.engine.createAgentKey(r.admin, 'deploy-bot');
    const planted = 'csk_planted-by-a-database-writer-000001';
    await raw(r.engine)
      .insertInto('api_keys')
      .values({ id: 'key_planted', agent_id: made.agentId, key_hash: sha256Hex(planted), prefix: 'csk_', created_at: T0, created_by: null, revoked_at: null, last_used_at: null, expires_at: null, mac: null })
      .execute();
    expect(await r.engine.authenticate(planted)).toBeUndefined();
    expect((await r.engine.credentials.listKeys(r.admin)).find((k) => k.id === 'key_planted')?.status).toBe('invalid');
    // An admin tidies up the `invalid` key by rotating it with a day of grace.
    await r.engine.credentials.rotateKey(r.admin, 'key_planted', { graceSeconds: 86_400 }).catch(() => {});
    r.engine.credentials.forget();
    expect(await r.engine.authenticate(planted)).toBeUndefined();
  });
});

describe('review-creds: a database writer puts back an earlier copy of a row (replay)', () => {
  // KNOWN LIMIT (docs/ARCHITECTURE.md, "Row rollback"): a MAC cannot tell a restored earlier copy of a row
  // from the original; no version high-water mark the writer cannot roll back exists yet. Expected to fail until one does.
  it.fails('a revoked agent key works again once its pre-revocation row (revoked_at NULL, old MAC) is written back', async () => {
    const r = await rig();
    const made = await r.engine.createAgentKey(r.admin, 'deploy-bot');
    const before = await raw(r.engine).selectFrom('api_keys').selectAll().where('id', '=', made.keyId).executeTakeFirstOrThrow();
    await r.engine.credentials.revokeKey(r.admin, made.keyId);
    expect(await r.engine.authenticate(made.key)).toBeUndefined();
    await raw(r.engine).updateTable('api_keys').set({ revoked_at: before.revoked_at, mac: before.mac }).where('id', '=', made.keyId).execute();
    r.engine.credentials.forget(); // or just wait out the 2 s cache on any other server
    expect(await r.engine.authenticate(made.key)).toBeUndefined();
  });

  // KNOWN LIMIT (docs/ARCHITECTURE.md, "Row rollback"): a MAC cannot tell a restored earlier copy of a row
  // from the original; no version high-water mark the writer cannot roll back exists yet. Expected to fail until one does.
  it.fails('a demoted admin is an admin again once their earlier row (roles, MAC) is written back', async () => {
    const r = await rig();
    const eve = await r.engine.createOperator(r.admin, { name: 'eve', roles: ['admin'] });
    const before = await raw(r.engine).selectFrom('operators').selectAll().where('id', '=', eve.id).executeTakeFirstOrThrow();
    await r.engine.credentials.updateOperator(r.admin, 'eve', { roles: ['reviewer'], disabled: true });
    await raw(r.engine).updateTable('operators').set({ roles: before.roles, disabled_at: null, mac: before.mac }).where('id', '=', eve.id).execute();
    r.engine.credentials.forget();
    expect(rolesOrNone(await r.engine.authenticate(eve.token))).not.toContain('admin');
  });
});

describe('review-creds: a database writer lifts a step-up lockout', () => {
  it('deleting the operator’s `mfa_attempts` rows lets a locked-out operator guess again at once', async () => {
    const r = await rig();
    const { token } = await r.engine.createOperator(r.admin, { name: 'dora', roles: ['director'] });
    const dora = (await r.engine.authenticate(token))!;
    const { secret } = await r.engine.guard.enrolTotp(dora);
    await r.engine.guard.confirmTotp(dora, totpCode(secret, r.clock.now));
    r.clock.now += 60_000;
    const { request } = await r.engine.createRequest(r.agent, CreateRequestBody.parse(CRITICAL));
    const matchCode = (await r.engine.getRequest(dora, request.id)).matchCode;
    const wrong = (n: number) => String((Number(totpCode(secret, r.clock.now)) + n) % 1_000_000).padStart(6, '0');
    for (let i = 1; i <= 5; i++) expect(await codeOf(r.engine.review(dora, request.id, { verdict: 'approve', totp: wrong(i), matchCode } as any))).toBe('MFA_INVALID');
    expect(await codeOf(r.engine.review(dora, request.id, { verdict: 'approve', totp: wrong(6), matchCode } as any))).toBe('MFA_LOCKED');
    // The attacker (who holds dora's token, or is guessing through a stolen session) also writes the database.
    await raw(r.engine).deleteFrom('mfa_attempts').execute();
    // Still inside the 60 s back-off: the next guess must not be evaluated.
    expect(await codeOf(r.engine.review(dora, request.id, { verdict: 'approve', totp: wrong(7), matchCode } as any))).toBe('MFA_LOCKED');
  });
});

describe('review-creds: re-bootstrap after a database wipe', () => {
  it('with COUNTERSIGN_ADMIN_TOKEN still set, wiping tokens, the `bootstrapped` mark and the trail revives the revoked env token as an admin', async () => {
    const envToken = 'cso_from-the-deployment-manifest-0001';
    const r = await rig({ adminToken: envToken });
    // The operator did the right thing: rotated the env-supplied token away.
    await r.engine.credentials.rotateToken(r.admin, 'me');
    r.engine.credentials.forget();
    expect(await r.engine.authenticate(envToken)).toBeUndefined();
    // A database writer: no tokens, no mark, no trail (an empty trail is a consistent chain).
    const db = raw(r.engine);
    await db.deleteFrom('operator_tokens').execute();
    await db.deleteFrom('server_marks').where('name', '=', 'bootstrapped').execute();
    await db.deleteFrom('audit_log').execute();
    // The next start (same env) runs bootstrap again.
    await r.engine.bootstrap({ adminToken: envToken });
    r.engine.credentials.forget();
    expect(roleOf(await r.engine.authenticate(envToken))).toBeNull();
  });
});

describe('review-creds: cool-down authority', () => {
  it("once the director who set a cool-down is demoted, a lead lifts it (the setter's rank is read now, not when it was set)", async () => {
    const r = await rig();
    await r.engine.createOperator(r.admin, { name: 'leo', roles: ['lead'] });
    const diana = await r.engine.createOperator(r.admin, { name: 'diana', roles: ['director'] });
    const liam = await r.engine.createOperator(r.admin, { name: 'liam', roles: ['lead'] });
    const dianaP = (await r.engine.authenticate(diana.token))!;
    const liamP = (await r.engine.authenticate(liam.token))!;
    await r.engine.guard.setCooldown(dianaP, 'leo', { minutes: 600, reason: 'two bad approvals' });
    expect(await codeOf(r.engine.guard.liftCooldown(liamP, 'leo', { reason: 'mate' }))).toBe('FORBIDDEN');
    await r.engine.credentials.updateOperator(r.admin, 'diana', { roles: ['reviewer'] });
    expect(await codeOf(r.engine.guard.liftCooldown(liamP, 'leo', { reason: 'mate' }))).toBe('FORBIDDEN');
  });
});

describe('review-creds: the identity a key grants is read from an unMACed row', () => {
  it("renaming a blocked agent's `agents` row lifts its per-agent `block` (the key MAC binds agent_id, the policy reads the name)", async () => {
    const r = await rig();
    await r.engine.activatePolicy(`agents:\n  intern-bot: { block: [drop_database] }\n`, 'test');
    const made = await r.engine.createAgentKey(r.admin, 'intern-bot');
    const bot = (await r.engine.authenticate(made.key))!;
    const outcome = async (p: Principal) => {
      try {
        return (await r.engine.createRequest(p, CreateRequestBody.parse({ action: 'drop_database', args: { db: 'customers' }, confidence: 0.9 }))).request.status;
      } catch (err) {
        return (err as CountersignError).code;
      }
    };
    const before = await outcome(bot);
    expect(before).not.toBe('pending');
    // The database writer holds intern-bot's key (a compromised agent) and renames its row.
    await raw(r.engine).updateTable('agents').set({ name: 'renamed-bot' }).where('id', '=', made.agentId).execute();
    r.engine.credentials.forget(); // or wait out the 2 s cache
    // The key's MAC binds the agent's name: a renamed row refuses the key (it authenticates as no one),
    // and should it ever authenticate, the outcome must not change.
    const renamed = await r.engine.authenticate(made.key);
    expect(renamed).toBeUndefined();
    if (renamed) expect(await outcome(renamed)).toBe(before);
  });
});

describe('review-creds: the embedded gateway keeps principals it resolved once', () => {
  it('an operator disabled after `gateway.operator()` still approves through `gateway.review(…, as)`; a disabled embedded admin still approves by default', async () => {
    const g = await createEmbeddedGateway({ database: 'sqlite::memory:', onWarning: () => {} });
    cleanup.push(() => g.close());
    const bob = await g.operator('bob', ['lead']);
    const ada = await g.engine.createOperator(g.admin, { name: 'ada', roles: ['admin'] });
    const adaP = (await g.engine.authenticate(ada.token))!;
    await g.engine.credentials.updateOperator(adaP, 'bob', { disabled: true });
    await g.engine.credentials.updateOperator(adaP, 'admin', { disabled: true });
    const { request: first } = await g.createRequest({ action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.82 });
    expect(first.status).toBe('pending');
    expect((await codeOf(g.review(first.id, { verdict: 'approve' }, bob))) ?? 'approved').toMatch(/^(UNAUTHENTICATED|FORBIDDEN)$/);
    const { request: second } = await g.createRequest({ action: 'isolate_host', args: { host: 'ws-2' }, confidence: 0.82 });
    expect((await codeOf(g.review(second.id, { verdict: 'approve' }))) ?? 'approved').toMatch(/^(UNAUTHENTICATED|FORBIDDEN)$/);
  });
});

describe('review-creds: break-glass can be disabled by a database writer', () => {
  it('deleting the `sealed` mark makes `admin recover` refuse the right secret file for good', async () => {
    const r = await rig();
    // The right secret (the one every row verifies under) and a database the servers use.
    expect(await r.engine.credentials.ownsDatabase()).toBe(true);
    await raw(r.engine).deleteFrom('server_marks').where('name', '=', 'sealed').execute();
    // Every admin token is lost; the operator runs break-glass with the servers' secret file.
    const recovered = await r.engine.credentials.recoverAdmin('rescuer', { type: 'system', id: 'admin-recover', name: 'countersign admin recover' }).catch((err: unknown) => err);
    expect(recovered).not.toBeInstanceOf(CountersignError);
  });
});

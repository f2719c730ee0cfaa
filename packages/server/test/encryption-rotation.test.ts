/**
 * Rotating COUNTERSIGN_ENCRYPTION_KEY, on SQLite and PostgreSQL: rows sealed under key A read
 * after switching to key B with A in COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS (also `enc:v1:` values
 * from before key ids); `rotateEncryption` re-seals every value under B (asserted on the raw
 * columns), also when interrupted and run again; afterwards B alone reads everything and TOTP
 * codes still verify; `--include-plain` seals never-encrypted rows; a value under a key that is
 * not configured fails closed naming its key id; and the CLI does the same through the real binary.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POLICY_YAML, type ApprovalRequest } from '@countersign/core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { loadOrCreateServerSecret, type ServerSecret } from '../src/keys/server-secret.ts';
import type { Principal } from '../src/engine/principal.ts';
import { guardOptionsFromEnv } from '../src/guard/service.ts';
import { SecretBox, seedSealer, totpCode } from '../src/guard/totp.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { rotateEncryption } from '../src/keys/rotation.ts';
import { Keyring, Sealer, encryptionKeyId, gcmSeal, parseEncryptionKey } from '../src/store/sealing.ts';
import { ENGINES, postgresDatabase, type TestDatabase } from './support/databases.ts';
import { markedRequest } from './support/sealed-request.ts';
import { runCli } from './support/server-process.ts';

/** One server secret file per database, as a server keeps it: every reopen reads the same file. */
const SECRET_DIR = mkdtempSync(join(tmpdir(), 'countersign-secret-'));
const secretPaths = new Map<string, string>();
function secretFor(url: string): ServerSecret {
  let path = secretPaths.get(url);
  if (!path) secretPaths.set(url, (path = join(SECRET_DIR, `secret-${secretPaths.size}`)));
  return loadOrCreateServerSecret(path);
}
afterAll(() => rmSync(SECRET_DIR, { recursive: true, force: true }));

const KEY_A = randomBytes(32).toString('hex');
const KEY_B = randomBytes(32).toString('base64');
const KEY_C = randomBytes(32).toString('hex');
const idOf = (key: string) => encryptionKeyId(parseEncryptionKey(key));
const ID_A = idOf(KEY_A);
const ID_B = idOf(KEY_B);
const ID_C = idOf(KEY_C);
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0);

/** A value as servers sealed them before key ids (`enc:v1:`). */
function legacySeal(key: string, plain: string): string {
  const { iv, tag, body } = gcmSeal(parseEncryptionKey(key), plain);
  return `enc:v1:${Buffer.concat([iv, tag, body]).toString('base64')}`;
}

/** A TOTP secret as servers sealed them before key ids. */
function legacyTotp(key: string, secret: string): string {
  const { iv, tag, body } = gcmSeal(createHash('sha256').update(`countersign-totp:${key}`).digest(), secret);
  return `enc:v1:${iv.toString('base64')}:${tag.toString('base64')}:${body.toString('base64')}`;
}

/** Every raw non-null value of every sealed column. */
async function rawValues(raw: Connection): Promise<Array<{ where: string; value: string }>> {
  const out: Array<{ where: string; value: string }> = [];
  const { rows: requests } = await sql<Record<string, string | null>>`select id, args, context, alternatives, description, decision from requests`.execute(raw.db);
  for (const r of requests) for (const c of ['args', 'context', 'alternatives', 'description', 'decision']) if (r[c] != null) out.push({ where: `requests.${c} ${r.id}`, value: r[c]! });
  const { rows: reviews } = await sql<{ id: string; args: string | null }>`select id, args from reviews`.execute(raw.db);
  for (const r of reviews) if (r.args != null) out.push({ where: `reviews.args ${r.id}`, value: r.args });
  const { rows: totp } = await sql<{ operator_id: string; secret: string }>`select operator_id, secret from operator_totp`.execute(raw.db);
  for (const r of totp) out.push({ where: `operator_totp.secret ${r.operator_id}`, value: r.secret });
  return out;
}

const body = markedRequest;

describe('previous keys', () => {
  it('are parsed like the key, and a bad one refuses startup naming the setting, never the key', async () => {
    const ring = Keyring.fromConfig(KEY_B, ` ${KEY_A} , ${KEY_C},${KEY_A}`);
    expect(ring.current?.id).toBe(ID_B);
    expect(ring.previous.map((k) => k.id)).toEqual([ID_A, ID_C]);
    expect(ID_A).toMatch(/^[0-9a-f]{16}$/);
    expect(new Set([ID_A, ID_B, ID_C]).size).toBe(3);
    expect(() => Keyring.fromConfig(KEY_B, `${KEY_A},not-a-key`)).toThrow(/COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS \(key 2 of 2\) must be 32 bytes/);
    expect(() => Keyring.fromConfig(KEY_B, KEY_A.slice(2))).toThrow(/^COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS must be 32 bytes/);
    expect(() => Keyring.fromConfig(undefined, KEY_A)).toThrow(/COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS is set but COUNTERSIGN_ENCRYPTION_KEY is not/);
    let message = '';
    try {
      Keyring.fromConfig(KEY_B, `${KEY_A}x`);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS/);
    expect(message).not.toContain(KEY_A);
    expect(guardOptionsFromEnv({ COUNTERSIGN_ENCRYPTION_KEY: KEY_B, COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS: KEY_A })).toMatchObject({ encryptionKey: KEY_B, previousEncryptionKeys: KEY_A });
  });

  it('an enc:v1 TOTP secret opens whichever way its old key is written in PREVIOUS (a trailing newline, hex or base64 of the same bytes)', () => {
    const secret = 'JBSWY3DPEHPK3PXP';
    const bytes = Buffer.from(KEY_A, 'hex');
    // Sealed when the key was configured as base64 text with a trailing newline (a secrets file).
    const sealed = legacyTotp(`${bytes.toString('base64')}\n`, secret);
    for (const previous of [KEY_A, bytes.toString('base64'), bytes.toString('base64url')]) {
      const box = new SecretBox(Sealer.fromKey(KEY_B, previous));
      expect(box.open(sealed)).toBe(secret);
    }
    expect(() => new SecretBox(Sealer.fromKey(KEY_B, KEY_C)).open(sealed)).toThrow(/neither COUNTERSIGN_ENCRYPTION_KEY nor in COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS/);
  });

  it('a malformed previous key refuses to open the engine', async () => {
    const db = ENGINES[0]!.make();
    try {
      await expect(Engine.open({ connection: await connect(db.url), guard: { encryptionKey: KEY_B, previousEncryptionKeys: 'hunter2' }, serverSecret: secretFor(db.url) })).rejects.toThrow(
        /COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS must be 32 bytes/,
      );
    } finally {
      await db.drop();
    }
  });
});

describe.each(ENGINES)('key rotation on $name', ({ make }) => {
  let database: TestDatabase;
  let raw: Connection;
  let clock = T0;
  let adminToken = '';
  let agentKey = '';
  let directorToken = '';
  let totpSecret = '';
  let legacyTotpSecret = '';
  let legacyOperatorId = '';
  let leeToken = '';
  let legacyRequestId = '';
  const ids: string[] = [];
  let plainId = '';
  const open: Engine[] = [];

  async function engineWith(key: string | undefined, previous?: string): Promise<{ engine: Engine; admin: Principal; agent: Principal; director: Principal }> {
    const engine = await Engine.open({ connection: await connect(database.url), now: () => clock, guard: { encryptionKey: key, previousEncryptionKeys: previous }, serverSecret: secretFor(database.url) });
    open.push(engine);
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    return {
      engine,
      admin: (await engine.authenticate(adminToken))!,
      agent: (await engine.authenticate(agentKey))!,
      director: (await engine.authenticate(directorToken))!,
    };
  }

  /** Every request written so far reads back with its plaintext. */
  async function expectAllReadable(engine: Engine, admin: Principal): Promise<void> {
    for (const [i, id] of ids.entries()) {
      const got = await engine.getRequest(admin, id);
      expect(got.args).toEqual({ host: `r${i}-args` });
      expect(got.context).toMatchObject({ evidence: [{ summary: `r${i}-evidence` }] });
      expect(got.decision?.args ?? null).toEqual(i === 0 ? { host: 'r0-modified' } : null);
    }
    expect((await engine.getRequest(admin, legacyRequestId)).args).toEqual({ host: 'legacy-args' });
    expect((await engine.getRequest(admin, plainId)).args).toEqual({ host: 'plain-args' });
  }

  beforeAll(async () => {
    database = make();
    const engine = await Engine.open({ connection: await connect(database.url), now: () => clock, guard: {}, serverSecret: secretFor(database.url) });
    open.push(engine);
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    adminToken = boot.adminToken;
    agentKey = boot.agentKey;
    const admin = (await engine.authenticate(adminToken))!;
    directorToken = (await engine.createOperator(admin, { name: 'dora', roles: ['director'] })).token;
    // Before any key: a plain request and a plain TOTP secret.
    plainId = (await engine.createRequest((await engine.authenticate(agentKey))!, body('plain'))).request.id;
    const { secret } = await engine.guard.enrolTotp((await engine.authenticate((await engine.createOperator(admin, { name: 'pat', roles: ['director'] })).token))!);
    expect(secret).toBeTruthy();
    raw = await connect(database.url);
  }, 60_000);

  afterAll(async () => {
    for (const engine of open) await engine.close().catch(() => {});
    await raw?.destroy();
    await database.drop();
  });

  it('rows sealed under key A (and enc:v1 ones) read after switching to key B with A as previous', async () => {
    const { engine, agent, admin, director } = await engineWith(KEY_A);
    for (let i = 0; i < 5; i++) ids.push((await engine.createRequest(agent, body(`r${i}`))).request.id);
    const reviewer = (await engine.authenticate((await engine.createOperator(admin, { name: 'rita', roles: ['reviewer'] })).token))!;
    let after = await engine.review(reviewer, ids[0]!, { verdict: 'approve', args: { host: 'r0-modified' } });
    if (after.status === 'pending') {
      const sam = (await engine.authenticate((await engine.createOperator(admin, { name: 'sam', roles: ['reviewer'] })).token))!;
      after = await engine.review(sam, ids[0]!, { verdict: 'approve' });
    }
    expect(after.status).toBe('approved');
    totpSecret = (await engine.guard.enrolTotp(director)).secret;
    await engine.guard.confirmTotp(director, totpCode(totpSecret, clock));
    // Values from before key ids: one request column, and one operator's TOTP secret.
    legacyRequestId = (await engine.createRequest(agent, body('legacy'))).request.id;
    await sql`update requests set args = ${legacySeal(KEY_A, JSON.stringify({ host: 'legacy-args' }))} where id = ${legacyRequestId}`.execute(raw.db);
    const lee = await engine.createOperator(admin, { name: 'lee', roles: ['director'] });
    legacyOperatorId = lee.id;
    leeToken = lee.token;
    legacyTotpSecret = (await engine.guard.enrolTotp((await engine.authenticate(lee.token))!)).secret;
    // Its content is bound to lee, as the start that created the server secret file binds every older seed
    // (GuardService.sealPlainSeeds, mfa-totp.test.ts); an unbound seal planted later is refused (credentials-attacks).
    await sql`update operator_totp set secret = ${legacyTotp(KEY_A, `bound:${legacyOperatorId}:${legacyTotpSecret}`)} where operator_id = ${legacyOperatorId}`.execute(raw.db);

    const sealed = (await rawValues(raw)).filter((v) => v.value.startsWith('enc:'));
    expect(sealed.length).toBeGreaterThan(25);
    // pat enrolled before any key: never plain, sealed under the server secret's seed key.
    const seedId = seedSealer(secretFor(database.url)).keys.current!.id;
    for (const { where, value } of sealed) expect(value.startsWith(`enc:v2:${ID_A}:`) || value.startsWith('enc:v1:') || value.startsWith(`enc:v2:${seedId}:`), where).toBe(true);
    expect(sealed.filter((v) => v.value.startsWith(`enc:v2:${seedId}:`))).toHaveLength(1);
    expect(sealed.filter((v) => v.value.startsWith('enc:v1:'))).toHaveLength(2);

    const b = await engineWith(KEY_B, KEY_A);
    await expectAllReadable(b.engine, b.admin);
    expect(await b.engine.guard.totpStatus(b.director)).toEqual({ enrolled: true, pending: false });
    // New writes use B.
    ids.push((await b.engine.createRequest(b.agent, body(`r${ids.length}`))).request.id);
    const { rows } = await sql<{ args: string }>`select args from requests where id = ${ids.at(-1)!}`.execute(raw.db);
    expect(rows[0]!.args.startsWith(`enc:v2:${ID_B}:`)).toBe(true);
  });

  it('without A, a value sealed under A fails closed with STORE_UNAVAILABLE naming its key id', async () => {
    const { engine, admin } = await engineWith(KEY_B);
    const err = await engine.getRequest(admin, ids[0]!).then(
      () => null,
      (e: unknown) => e as Error & { code: string },
    );
    expect(err?.code).toBe('STORE_UNAVAILABLE');
    expect(err?.message).toContain(`sealed under encryption key ${ID_A}`);
    expect(err?.message).not.toContain('enc:v2:');
    expect(err?.message).not.toContain('r0-args');
    // The enc:v1 value too: no configured key opens it.
    await expect(engine.getRequest(admin, legacyRequestId)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringMatching(/no configured key/) });
  });

  it('an interrupted rotation leaves a mix that still reads; run again, it re-seals every value under B', async () => {
    const { engine, admin } = await engineWith(KEY_B, KEY_A);
    const first = await rotateEncryption(engine.store, { seedKey: seedSealer(secretFor(database.url)), batchSize: 2, maxBatches: 2, now: () => clock });
    expect(first.complete).toBe(false);
    expect(first.resealed).toBeGreaterThan(0);
    const mixed = (await rawValues(raw)).filter((v) => v.value.startsWith('enc:'));
    expect(mixed.some((v) => v.value.startsWith(`enc:v2:${ID_B}:`))).toBe(true);
    expect(mixed.some((v) => v.value.startsWith(`enc:v2:${ID_A}:`))).toBe(true);
    await expectAllReadable(engine, admin);
    expect((await engine.store.listAudit({ limit: 1000, type: 'encryption_rotated' })).length).toBe(0);

    const progress: string[] = [];
    const second = await rotateEncryption(engine.store, { seedKey: seedSealer(secretFor(database.url)), batchSize: 2, now: () => clock, onProgress: (p) => progress.push(p.table) });
    expect(second).toMatchObject({ complete: true, keyId: ID_B, previousKeyIds: [ID_A], staleLeft: 0, sealedPlain: 0, unreadableKeyIds: [] });
    expect(second.alreadyCurrent).toBeGreaterThanOrEqual(first.resealed);
    expect(second.tables.operator_totp.resealed + first.tables.operator_totp.resealed).toBe(3); // dora's, lee's (enc:v1) and pat's (seed key)
    expect(second.tables.reviews.resealed + first.tables.reviews.resealed).toBeGreaterThan(0);
    expect(progress).toEqual(expect.arrayContaining(['requests', 'reviews', 'operator_totp']));
    const values = await rawValues(raw);
    for (const { where, value } of values.filter((v) => v.value.startsWith('enc:'))) expect(value.startsWith(`enc:v2:${ID_B}:`), where).toBe(true);
    // Plain rows are left alone without --include-plain: the plain request's columns. No seed is ever plain.
    expect(second.plainLeft).toBeGreaterThanOrEqual(4);
    expect(values.filter((v) => v.value.startsWith('plain:'))).toHaveLength(0);

    const [entry] = await engine.store.listAudit({ limit: 1000, type: 'encryption_rotated' });
    const data = JSON.parse(entry!.data) as Record<string, unknown>;
    expect(data).toMatchObject({ keyId: ID_B, previousKeyIds: [ID_A], resealed: second.resealed, staleLeft: 0 });
    for (const key of [KEY_A, KEY_B, parseEncryptionKey(KEY_A).toString('base64'), parseEncryptionKey(KEY_B).toString('hex')]) expect(entry!.data).not.toContain(key);

    // Idempotent: a third run finds nothing to do.
    const third = await rotateEncryption(engine.store, { seedKey: seedSealer(secretFor(database.url)), batchSize: 2, now: () => clock });
    expect(third).toMatchObject({ resealed: 0, staleLeft: 0, alreadyCurrent: second.alreadyCurrent + second.resealed });
  });

  it('after rotation, B alone reads everything and TOTP codes (also the enc:v1 one) still verify', async () => {
    const { engine, admin, agent, director } = await engineWith(KEY_B);
    await expectAllReadable(engine, admin);
    const critical = await engine.createRequest(agent, body('crit', { action: 'delete_data', riskLevel: 'critical', confidence: 0.99 }));
    clock += 30_000;
    const matchCode = (await engine.getRequest(director, critical.request.id)).matchCode!;
    const voted = await engine.review(director, critical.request.id, { verdict: 'approve', totp: totpCode(totpSecret, clock), matchCode });
    expect(voted.reviews).toHaveLength(1);
    // lee's secret was enc:v1 under A, now under B: confirming the enrolment proves it opens.
    const { rows } = await sql<{ secret: string }>`select secret from operator_totp where operator_id = ${legacyOperatorId}`.execute(raw.db);
    expect(rows[0]!.secret.startsWith(`enc:v2:${ID_B}:`)).toBe(true);
    const lee = (await engine.authenticate(leeToken))!;
    await engine.guard.confirmTotp(lee, totpCode(legacyTotpSecret, clock));
    expect(await engine.guard.totpStatus(lee)).toEqual({ enrolled: true, pending: false });
  });

  it('--include-plain seals the rows and TOTP secrets stored before any key', async () => {
    const { engine, admin } = await engineWith(KEY_B);
    const report = await rotateEncryption(engine.store, { seedKey: seedSealer(secretFor(database.url)), includePlain: true, now: () => clock });
    expect(report.sealedPlain).toBeGreaterThanOrEqual(4); // the plain request's columns (seeds are never plain)
    expect(report).toMatchObject({ resealed: 0, plainLeft: 0, staleLeft: 0, includePlain: true });
    const { rows } = await sql<{ args: string; description: string }>`select args, description from requests where id = ${plainId}`.execute(raw.db);
    expect(rows[0]!.args.startsWith(`enc:v2:${ID_B}:`)).toBe(true);
    expect(rows[0]!.description.startsWith(`enc:v2:${ID_B}:`)).toBe(true);
    expect((await rawValues(raw)).filter((v) => !v.value.startsWith(`enc:v2:${ID_B}:`))).toEqual([]);
    expect((await engine.getRequest(admin, plainId)).description).toBe('plain-description');
  });

  it('a value under a key that is not configured is left, counted and named; everything else rotates', async () => {
    const c = await engineWith(KEY_C);
    const orphan = (await c.engine.createRequest(c.agent, body('orphan'))).request.id;
    const { engine, admin } = await engineWith(KEY_A, KEY_B);
    const report = await rotateEncryption(engine.store, { seedKey: seedSealer(secretFor(database.url)), batchSize: 3, now: () => clock });
    expect(report).toMatchObject({ complete: true, keyId: ID_A, unreadableKeyIds: [ID_C] });
    expect(report.staleLeft).toBe(4); // the orphan's args, context, alternatives, description
    expect(report.resealed).toBeGreaterThan(20);
    const left = (await rawValues(raw)).filter((v) => !v.value.startsWith(`enc:v2:${ID_A}:`));
    expect(left.map((v) => v.where).sort()).toEqual(['alternatives', 'args', 'context', 'description'].map((col) => `requests.${col} ${orphan}`).sort());
    await expect(engine.getRequest(admin, orphan)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringContaining(ID_C) });
  });
});

describe.each(ENGINES)('countersign keys rotate-encryption on $name', ({ make }) => {
  let database: TestDatabase;
  let raw: Connection;
  const created: ApprovalRequest[] = [];
  let adminToken = '';

  beforeAll(async () => {
    database = make();
    const engine = await Engine.open({ connection: await connect(database.url), guard: { encryptionKey: KEY_A }, serverSecret: secretFor(database.url) });
    try {
      await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      const boot = (await engine.bootstrap())!;
      adminToken = boot.adminToken;
      const agent = (await engine.authenticate(boot.agentKey))!;
      for (let i = 0; i < 3; i++) created.push((await engine.createRequest(agent, body(`cli${i}`))).request);
    } finally {
      await engine.close();
    }
    raw = await connect(database.url);
  }, 60_000);

  afterAll(async () => {
    await raw?.destroy();
    await database.drop();
  });

  it('has --help', async () => {
    const run = await runCli(['keys', 'rotate-encryption', '--help'], {});
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/--batch <n>/);
    expect(run.stdout).toMatch(/--include-plain/);
    expect(run.stdout).toMatch(/COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS/);
  });

  it('never guesses the database: none given, a missing file, or one no server has used is refused and nothing is created', async () => {
    const env = { COUNTERSIGN_ENCRYPTION_KEY: KEY_B, COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS: KEY_A };
    const cwd = mkdtempSync(join(tmpdir(), 'countersign-rotate-'));
    try {
      const none = await runCli(['keys', 'rotate-encryption'], env, cwd);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/say which database to rotate/);
      const missing = await runCli(['keys', 'rotate-encryption', '--database', `sqlite:${join(cwd, 'nowhere.db')}`], env, cwd);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/no database at/);
      expect(readdirSync(cwd)).toEqual([]); // nothing created
      const fresh = postgresDatabase();
      try {
        const unused = await runCli(['keys', 'rotate-encryption', '--database', fresh.url], env, cwd);
        expect(unused.code).toBe(1);
        expect(unused.stderr).toMatch(/never been used by a Countersign server/);
      } finally {
        await fresh.drop();
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('refuses a malformed previous key, and runs without a current key only to say so', async () => {
    const bad = await runCli(['keys', 'rotate-encryption', '--database', database.url], { COUNTERSIGN_ENCRYPTION_KEY: KEY_B, COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS: 'nope' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/VALIDATION_FAILED: COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS must be 32 bytes/);
    const none = await runCli(['keys', 'rotate-encryption', '--database', database.url], {});
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/COUNTERSIGN_ENCRYPTION_KEY is not set/);
  });

  it('re-seals under the new key with progress on stderr, then finds nothing left to do', async () => {
    const env = { COUNTERSIGN_DATABASE_URL: database.url, COUNTERSIGN_ENCRYPTION_KEY: KEY_B, COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS: KEY_A };
    const run = await runCli(['keys', 'rotate-encryption', '--json', '--batch', '1'], env);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { resealed: number; alreadyCurrent: number; staleLeft: number; keyId: string; previousKeyIds: string[] };
    expect(report).toMatchObject({ resealed: 12, alreadyCurrent: 0, staleLeft: 0, keyId: ID_B, previousKeyIds: [ID_A] }); // 3 requests × 4 columns
    expect(run.stderr).toMatch(/requests: 4 re-sealed \(batch 1\)/);
    expect(run.stderr).toMatch(/requests: 12 re-sealed \(batch 3\)/);
    const { rows } = await sql<Record<string, string>>`select args, context, alternatives, description from requests`.execute(raw.db);
    expect(rows).toHaveLength(3);
    for (const row of rows) for (const value of Object.values(row)) expect(value.startsWith(`enc:v2:${ID_B}:`)).toBe(true);

    const again = await runCli(['keys', 'rotate-encryption'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/re-sealed 0, already current 12, plain left 0/);
    expect(again.stdout).toMatch(/COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS can be removed/);

    const engine = await Engine.open({ connection: await connect(database.url), guard: { encryptionKey: KEY_B }, serverSecret: secretFor(database.url) });
    try {
      await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      const admin = (await engine.authenticate(adminToken))!;
      for (const [i, r] of created.entries()) expect((await engine.getRequest(admin, r.id)).args).toEqual({ host: `cli${i}-args` });
      expect((await engine.store.listAudit({ limit: 100, type: 'encryption_rotated' })).length).toBe(2);
    } finally {
      await engine.close();
    }
  });
});

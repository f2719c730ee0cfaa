/**
 * Encryption at rest (COUNTERSIGN_ENCRYPTION_KEY), on SQLite and PostgreSQL: with a key the raw
 * columns holding agent-supplied content are ciphertext while the API returns the plaintext;
 * without the key, or with another key, reading a sealed row fails closed (STORE_UNAVAILABLE,
 * nothing returned); rows written before the key was set still read; a flipped ciphertext byte
 * is caught by the GCM tag; and the audit trail verifies with no encryption key at all.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CountersignError, DEFAULT_POLICY_YAML, type TrailResult } from '@countersign/core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ephemeralAuditKey, type AuditKey } from '../src/audit/crypto.ts';
import { verifyTrailStream } from '../src/audit/verify.ts';
import { Engine } from '../src/engine/engine.ts';
import { loadOrCreateServerSecret, type ServerSecret } from '../src/keys/server-secret.ts';
import { createApp } from '../src/http/app.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { Sealer, encryptionKeyId, parseEncryptionKey } from '../src/store/sealing.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { markedRequest } from './support/sealed-request.ts';

/** One server secret file per database, as a server keeps it: every reopen reads the same file. */
const SECRET_DIR = mkdtempSync(join(tmpdir(), 'countersign-secret-'));
const secretPaths = new Map<string, string>();
function secretFor(url: string): ServerSecret {
  let path = secretPaths.get(url);
  if (!path) secretPaths.set(url, (path = join(SECRET_DIR, `secret-${secretPaths.size}`)));
  return loadOrCreateServerSecret(path);
}
afterAll(() => rmSync(SECRET_DIR, { recursive: true, force: true }));

const KEY_HEX = randomBytes(32).toString('hex');
const KEY_B64 = randomBytes(32).toString('base64');
const SECRET = 'ws-Secret-4711-Ω';

describe('encryption key format', () => {
  it('takes 32 bytes as 64 hex characters or base64, and nothing else', () => {
    expect(parseEncryptionKey(KEY_HEX)).toHaveLength(32);
    expect(parseEncryptionKey(KEY_B64)).toHaveLength(32);
    expect(parseEncryptionKey(KEY_B64.replace(/=+$/, ''))).toHaveLength(32);
    for (const bad of ['test-encryption-key', KEY_HEX.slice(2), randomBytes(16).toString('base64'), randomBytes(48).toString('base64'), `${KEY_HEX}00`]) {
      expect(() => parseEncryptionKey(bad), bad).toThrow(/COUNTERSIGN_ENCRYPTION_KEY must be 32 bytes/);
    }
  });

  it('seals with a fresh IV each time and opens only under the same key', () => {
    const sealer = Sealer.fromKey(KEY_HEX);
    const a = sealer.seal('{"x":1}');
    const b = sealer.seal('{"x":1}');
    const id = encryptionKeyId(parseEncryptionKey(KEY_HEX));
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(a).toMatch(new RegExp(`^enc:v2:${id}:[A-Za-z0-9+/=]+$`));
    expect(a).not.toBe(b);
    expect(sealer.open(a, 'test')).toBe('{"x":1}');
    expect(() => Sealer.fromKey(KEY_B64).open(a, 'test')).toThrow(new RegExp(`sealed under encryption key ${id}, which is neither`));
    expect(() => Sealer.none.open(a, 'test')).toThrow(/COUNTERSIGN_ENCRYPTION_KEY is not set/);
  });

  it('without a key, text that merely looks sealed round-trips unchanged', () => {
    const stored = Sealer.none.seal('enc:v1:not really');
    expect(stored).not.toBe('enc:v1:not really');
    expect(Sealer.none.open(stored, 'test')).toBe('enc:v1:not really');
    expect(Sealer.fromKey(KEY_HEX).open(stored, 'test')).toBe('enc:v1:not really');
  });

  it('a malformed key refuses to open the engine', async () => {
    const db = ENGINES[0]!.make();
    try {
      await expect(Engine.open({ connection: await connect(db.url), guard: { encryptionKey: 'hunter2' }, serverSecret: secretFor(db.url) })).rejects.toThrow(/COUNTERSIGN_ENCRYPTION_KEY must be 32 bytes/);
    } finally {
      await db.drop();
    }
  });
});

describe.each(ENGINES)('encryption at rest on $name', ({ make }) => {
  let database: TestDatabase;
  let raw: Connection;
  const auditKey: AuditKey = ephemeralAuditKey();
  let adminToken = '';
  let agentKey = '';
  let plainId = '';
  let sealedId = '';
  let reviewerToken = '';
  const open: Engine[] = [];

  async function engineWith(key: string | undefined): Promise<{ engine: Engine; admin: Principal; agent: Principal }> {
    const engine = await Engine.open({ connection: await connect(database.url), auditKey, guard: { encryptionKey: key }, serverSecret: secretFor(database.url) });
    open.push(engine);
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    return { engine, admin: (await engine.authenticate(adminToken))!, agent: (await engine.authenticate(agentKey))! };
  }

  async function rawRequest(id: string) {
    const { rows } = await sql<{ args: string; context: string; alternatives: string; description: string | null; decision: string | null }>`
      select args, context, alternatives, description, decision from requests where id = ${id}`.execute(raw.db);
    return rows[0]!;
  }

  async function verifyExport(engine: Engine): Promise<{ result: TrailResult; text: string }> {
    await engine.trail.checkpoint();
    const lines: string[] = [];
    for await (const line of engine.trail.exportLines()) lines.push(`${line}\n`);
    const text = lines.join('');
    async function* chunks() {
      yield Buffer.from(text);
    }
    return { result: await verifyTrailStream(chunks(), auditKey), text };
  }

  const body = markedRequest;

  beforeAll(async () => {
    database = make();
    // Before any key: a plain request, as every server wrote them until now.
    const engine = await Engine.open({ connection: await connect(database.url), auditKey, guard: {}, serverSecret: secretFor(database.url) });
    open.push(engine);
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    adminToken = boot.adminToken;
    agentKey = boot.agentKey;
    const admin = (await engine.authenticate(adminToken))!;
    reviewerToken = (await engine.createOperator(admin, { name: 'rita', roles: ['reviewer'], groups: [] })).token;
    const agent = (await engine.authenticate(agentKey))!;
    plainId = (await engine.createRequest(agent, body('plain'))).request.id;
    raw = await connect(database.url);
  }, 60_000);

  afterAll(async () => {
    for (const engine of open) await engine.close().catch(() => {});
    await raw?.destroy();
    await database.drop();
  });

  it('with a key, the raw columns hold ciphertext while the API returns the plaintext', async () => {
    const { engine, agent } = await engineWith(KEY_HEX);
    const created = await engine.createRequest(agent, body(SECRET));
    sealedId = created.request.id;
    const reviewer = (await engine.authenticate(reviewerToken))!;
    let after = await engine.review(reviewer, sealedId, { verdict: 'approve', args: { host: `${SECRET}-modified` } });
    if (after.status === 'pending') {
      // The policy may want a second reviewer for modified args.
      const { token } = await engine.createOperator((await engine.authenticate(adminToken))!, { name: 'sam', roles: ['reviewer'], groups: [] });
      after = await engine.review((await engine.authenticate(token))!, sealedId, { verdict: 'approve' });
    }
    expect(after.status).toBe('approved');
    expect(after.decision?.args).toEqual({ host: `${SECRET}-modified` });

    const row = await rawRequest(sealedId);
    for (const value of [row.args, row.context, row.alternatives, row.description, row.decision]) {
      expect(value).toMatch(/^enc:v2:[0-9a-f]{16}:/);
      expect(value).not.toContain(SECRET);
    }
    const { rows: reviews } = await sql<{ args: string | null }>`select args from reviews where request_id = ${sealedId}`.execute(raw.db);
    const modified = reviews.filter((r) => r.args !== null);
    expect(modified.length).toBeGreaterThan(0);
    for (const r of modified) expect(r.args).toMatch(/^enc:v2:[0-9a-f]{16}:/);

    const got = await engine.getRequest(agent, sealedId);
    expect(got.args).toEqual({ host: `${SECRET}-args` });
    expect(got.description).toBe(`${SECRET}-description`);
    expect(got.context).toMatchObject({ evidence: [{ summary: `${SECRET}-evidence` }] });
    expect(got.alternatives[0]?.args).toEqual({ host: `${SECRET}-alt` });
    expect(got.decision?.args).toEqual({ host: `${SECRET}-modified` });
    expect(got.reviews.some((r) => JSON.stringify(r.args) === JSON.stringify({ host: `${SECRET}-modified` }))).toBe(true);
  });

  it('rows written before the key was set still read, beside sealed ones', async () => {
    const { engine, admin } = await engineWith(KEY_HEX);
    expect((await rawRequest(plainId)).args).toBe(JSON.stringify({ host: 'plain-args' }));
    const plain = await engine.getRequest(admin, plainId);
    expect(plain.args).toEqual({ host: 'plain-args' });
    expect(plain.context).toMatchObject({ evidence: [{ summary: 'plain-evidence' }] });
    const listed = await engine.listRequests(admin, {});
    const ids = listed.items.map((r: { id: string }) => r.id);
    expect(ids).toEqual(expect.arrayContaining([plainId, sealedId]));
  });

  it('without the key, a sealed row is refused (fail closed) and plain rows still read', async () => {
    const { engine, admin } = await engineWith(undefined);
    const err = await engine.getRequest(admin, sealedId).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CountersignError);
    expect((err as CountersignError).code).toBe('STORE_UNAVAILABLE');
    expect((err as Error).message).toMatch(/encrypted at rest and COUNTERSIGN_ENCRYPTION_KEY is not set/);
    expect((err as Error).message).not.toContain('enc:v2:');
    await expect(engine.listRequests(admin, {})).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect((await engine.getRequest(admin, plainId)).args).toEqual({ host: 'plain-args' });

    // Over HTTP: 503 STORE_UNAVAILABLE, and no ciphertext in the answer.
    const app = createApp({ engine, log: () => {} });
    const res = await app.request(`/v1/requests/${sealedId}`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.status).toBe(503);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ error: { code: 'STORE_UNAVAILABLE' } });
    expect(text).not.toContain('enc:v2:');
    expect(text).not.toContain(SECRET);
  });

  it('with a different key, a sealed row is refused the same way', async () => {
    const { engine, admin } = await engineWith(KEY_B64);
    await expect(engine.getRequest(admin, sealedId)).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
      message: expect.stringMatching(/is sealed under encryption key [0-9a-f]{16}, which is neither COUNTERSIGN_ENCRYPTION_KEY/),
    });
  });

  it('the audit trail verifies with no encryption key, and never carries the sealed content', async () => {
    const { engine } = await engineWith(undefined);
    const { result, text } = await verifyExport(engine);
    expect(result.ok).toBe(true);
    expect(text).not.toContain(SECRET);
  });

  it('a tampered ciphertext is detected by the GCM tag', async () => {
    const sealed = (await rawRequest(sealedId)).args;
    const prefix = /^enc:v2:[0-9a-f]{16}:/.exec(sealed)![0];
    const bytes = Buffer.from(sealed.slice(prefix.length), 'base64');
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0x01, bytes.length - 1); // the last byte of the ciphertext
    const tampered = `${prefix}${bytes.toString('base64')}`;
    await sql`update requests set args = ${tampered} where id = ${sealedId}`.execute(raw.db);
    try {
      const { engine, admin } = await engineWith(KEY_HEX);
      await expect(engine.getRequest(admin, sealedId)).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
        message: expect.stringMatching(/requests\.args .*altered/),
      });
    } finally {
      await sql`update requests set args = ${sealed} where id = ${sealedId}`.execute(raw.db);
    }
    const { engine, admin } = await engineWith(KEY_HEX);
    expect((await engine.getRequest(admin, sealedId)).args).toEqual({ host: `${SECRET}-args` });
  });
});

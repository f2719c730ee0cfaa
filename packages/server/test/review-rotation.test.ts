/**
 * Red-team review of key rotation (branch rotation). Each test is an attack that should be
 * refused; a failing test is an open defect.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateRequestBody, DEFAULT_POLICY_YAML, retentionMessage, trailBaseLine } from '@countersign/core';
import { publicKeyFromPem } from '../src/audit/crypto.ts';
import { verifyTrailStream } from '../src/audit/verify.ts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadOrCreateAuditKey, type AuditKey } from '../src/audit/crypto.ts';
import { rotateSigningKey } from '../src/audit/rotate.ts';
import { fileSignerState, signerStatePath } from '../src/audit/signer-state.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO } from './support/engine.ts';

const DAY = 86_400_000;

describe.each(ENGINES)('review: key rotation attacks on $name', ({ make }) => {
  let db: TestDatabase;
  let root: string;
  let clock: number;
  const opened: Array<Engine | Connection> = [];
  const host = (name: string) => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    return join(dir, 'countersign-audit-key.pem');
  };
  const open = async (key: AuditKey): Promise<Engine> => {
    const engine = await Engine.open({ connection: await connect(db.url), auditKey: key, now: () => clock });
    opened.push(engine);
    return engine;
  };
  const raw = async (): Promise<Connection> => {
    const c = await connect(db.url);
    opened.push(c);
    return c;
  };
  let agent: Principal;
  const create = async (engine: Engine, n: number) => {
    for (let i = 0; i < n; i++) await engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `198.51.100.${i}` } }));
  };

  beforeEach(() => {
    db = make();
    root = mkdtempSync(join(tmpdir(), 'cs-review-rotation-'));
    clock = Date.parse('2026-01-01T00:00:00.000Z');
  });
  afterEach(async () => {
    for (const o of opened.splice(0).reverse()) await (o instanceof Engine ? o.close() : o.destroy()).catch(() => {});
    await db.drop();
    rmSync(root, { recursive: true, force: true });
  });

  it('a database writer cannot un-retire a key once retention pruned its rotation entry (restored backup of the old key must stay refused)', async () => {
    const keyA = loadOrCreateAuditKey(host('a'));
    const a = await open(keyA);
    await a.trail.checkKey();
    await a.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    agent = (await a.authenticate((await a.bootstrap())!.agentKey))!;
    await create(a, 3);
    await a.trail.checkpoint();
    // The operator's pre-rotation backup of key A and its state.
    const backup = host('backup');
    copyFileSync(keyA.path!, backup);
    copyFileSync(signerStatePath(keyA.path!), signerStatePath(backup));
    const keyB = loadOrCreateAuditKey(host('b'));
    await rotateSigningKey(a, a.store, keyB, fileSignerState(signerStatePath(keyB.path!)), { reason: 'yearly rotation' });
    const b = await open(keyB);
    await b.trail.checkKey();
    await b.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    // Ordinary retention later removes the rotation entry (and the hand-over checkpoints' entries).
    clock += 400 * DAY;
    await create(b, 2);
    await b.trail.checkpoint();
    await b.trail.prune(365);
    expect(await b.store.listAudit({ type: 'audit_key_rotated', limit: 5 })).toHaveLength(0);
    // A database writer (no key files) edits the key record: A current again, B's row gone.
    const c = await raw();
    await c.db.updateTable('audit_keys').set({ handover: null, handed_over_at: null }).where('key_id', '=', keyA.keyId).execute();
    await c.db.deleteFrom('audit_keys').where('key_id', '=', keyB.keyId).execute();
    // The restored retired key must not start (the newest checkpoint is B's, and B took over from A)…
    const restored = await open(loadOrCreateAuditKey(backup));
    const started = await restored.trail.checkKey().then(
      () => 'started',
      (err: { code?: string }) => err.code,
    );
    // …and must never sign a checkpoint after its hand-over.
    let signedBy: string | undefined;
    if (started === 'started') {
      await restored.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      await create(restored, 1);
      signedBy = (await restored.trail.checkpoint().catch(() => null))?.keyId;
    }
    expect({ started, signedBy }).toEqual({ started: expect.stringMatching(/^AUDIT_(KEY_RETIRED|FORK)$/), signedBy: undefined });
  });
  it('a stolen RETIRED key cannot sign a retention statement after its hand-over (a fake prune an offline verifier pinned to the old key accepts)', async () => {
    const keyA = loadOrCreateAuditKey(host('a'));
    const a = await open(keyA);
    await a.trail.checkKey();
    await a.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    agent = (await a.authenticate((await a.bootstrap())!.agentKey))!;
    await create(a, 3);
    await a.trail.checkpoint();
    const n = (await a.trail.head()).treeSize;
    clock += 400 * DAY;
    const keyB = loadOrCreateAuditKey(host('b'));
    const { handover } = await rotateSigningKey(a, a.store, keyB, fileSignerState(signerStatePath(keyB.path!)), { reason: 'yearly rotation' });
    const b = await open(keyB);
    await b.trail.checkKey();
    await b.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    await create(b, 2);
    await b.trail.checkpoint();
    await b.trail.prune(365);
    expect(await b.store.trail.prunedTo()).toBe(n);
    const lines: string[] = [];
    for await (const chunk of b.trail.exportLines()) lines.push(...chunk.split('\n'));
    // Mallory, holding the retired key A, re-signs the base as "A pruned to n", dated a day after A was retired.
    const baseIndex = lines.findIndex((l) => l.includes('"kind":"base"'));
    const base = JSON.parse(lines[baseIndex]!) as { frontier: string[]; treeSize: number };
    const timestamp = new Date(Date.parse(handover.timestamp) + DAY).toISOString();
    const body = { prunedTo: base.treeSize, frontier: base.frontier, timestamp };
    lines[baseIndex] = trailBaseLine({ ...body, keyId: keyA.keyId, signature: keyA.sign(retentionMessage(body)) });
    const result = await verifyTrailStream(
      (async function* () {
        yield Buffer.from(`${lines.join('\n')}\n`);
      })(),
      publicKeyFromPem(keyA.publicKeyPem),
      {},
    );
    expect(result).toMatchObject({ ok: false, fault: { code: 'KEY_RETIRED' } });
  });
});


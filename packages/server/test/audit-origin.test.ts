/**
 * Review finding 12: the signed notes' origin is per deployment. A runtime keeps an origin from its
 * first start (configured, or drawn then), signs every checkpoint and witness note under it, and
 * refuses a different configured one later; a note or checkpoint of another deployment spliced
 * into this one's trail is ORIGIN_MISMATCH; an origin changed in the database stops the signer;
 * and no origin can make a checkpoint the bytes of another signed statement.
 */
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHECKPOINT_ORIGIN, CreateRequestBody, DEFAULT_POLICY_YAML, checkpointMessage, originProblem, retentionMessage, trailCheckpointLine, utf8 } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { loadOrCreateAuditKey, publicKeyFromPem } from '../src/audit/crypto.ts';
import { readCheckpointNotes, verifyTrailStream } from '../src/audit/verify.ts';
import { resolveRuntimeConfig } from '../src/config.ts';
import { openRuntime, type Runtime } from '../src/runtime.ts';
import { connect } from '../src/store/connect.ts';
import { AUTO } from './support/engine.ts';

const dirs: string[] = [];
const runtimes: Runtime[] = [];
afterEach(async () => {
  for (const r of runtimes.splice(0)) await r.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A deployment: its own SQLite file, key and witness directory. */
function deployment() {
  const dir = mkdtempSync(join(tmpdir(), 'cs-origin-'));
  dirs.push(dir);
  return { dir, url: `sqlite:${join(dir, 'cs.db')}`, key: join(dir, 'key.pem'), witness: join(dir, 'witness') };
}
async function start(d: ReturnType<typeof deployment>, env: Record<string, string> = {}): Promise<Runtime> {
  const config = resolveRuntimeConfig({ database: d.url, auditKey: d.key }, { COUNTERSIGN_AUDIT_WITNESS_DIR: d.witness, ...env });
  const runtime = await openRuntime(config, { policy: { text: DEFAULT_POLICY_YAML, source: 'test' }, log: () => {} });
  runtimes.push(runtime);
  return runtime;
}
async function exportOf(r: Runtime): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of r.engine.trail.exportLines()) out.push(...chunk.split('\n'));
  return out;
}
const verify = (lines: string[], pem: string, pinned = [] as ReturnType<typeof readCheckpointNotes>) =>
  verifyTrailStream(
    (async function* () {
      yield Buffer.from(`${lines.join('\n')}\n`);
    })(),
    publicKeyFromPem(pem),
    { pinned },
  );

describe('per-deployment checkpoint origin (finding 12)', () => {
  it('is drawn at the first start and kept: checkpoints, witness notes and verify carry it; a different configured one is refused', async () => {
    const d = deployment();
    let r = await start(d);
    await r.engine.bootstrap();
    const cp = await r.engine.trail.checkpoint();
    expect(cp.origin).toMatch(/^countersign\/[0-9a-f]{16}$/);
    const note = readdirSync(d.witness).find((n) => n.endsWith('.note'))!;
    expect(readFileSync(join(d.witness, note), 'utf8').split('\n')[0]).toBe(cp.origin);
    const result = await verify(await exportOf(r), r.engine.trail.key.publicKeyPem, readCheckpointNotes([d.witness], r.engine.trail.key));
    expect(result).toMatchObject({ ok: true, origin: cp.origin });
    await r.close();
    r = await start(d);
    expect((await r.engine.trail.checkpoint()).origin).toBe(cp.origin); // kept across restarts
    await r.close();
    await expect(start(d, { COUNTERSIGN_AUDIT_ORIGIN: 'soc.example.com/countersign' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining(cp.origin!) });
  });

  it('is configurable at the first start; reserved or malformed origins are refused', async () => {
    const d = deployment();
    const r = await start(d, { COUNTERSIGN_AUDIT_ORIGIN: 'soc.example.com/countersign' });
    await r.engine.bootstrap();
    expect((await r.engine.trail.checkpoint()).origin).toBe('soc.example.com/countersign');
    for (const bad of ['countersign.audit.retention/v1', 'countersign.receipt/v1', 'Has Space/x', 'nohost', CHECKPOINT_ORIGIN]) {
      expect(originProblem(bad)).not.toBeNull();
      expect(() => resolveRuntimeConfig({ database: deployment().url }, { COUNTERSIGN_AUDIT_ORIGIN: bad })).toThrow(/COUNTERSIGN_AUDIT_ORIGIN/);
    }
  });

  it("a note or checkpoint of another deployment (same key, copied by mistake) is refused: ORIGIN_MISMATCH", async () => {
    const a = deployment();
    const b = deployment();
    const ra = await start(a, { COUNTERSIGN_AUDIT_ORIGIN: 'a.example.com/countersign' });
    await ra.engine.bootstrap();
    await ra.engine.trail.checkpoint();
    await ra.close();
    copyFileSync(a.key, b.key); // the misconfiguration: one key file for two deployments
    const rb = await start(b, { COUNTERSIGN_AUDIT_ORIGIN: 'b.example.com/countersign' });
    const agent = (await rb.engine.authenticate((await rb.engine.bootstrap())!.agentKey))!;
    await rb.engine.trail.checkpoint();
    await rb.engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO }));
    const cpB = await rb.engine.trail.checkpoint();
    const pem = rb.engine.trail.key.publicKeyPem;
    const linesB = await exportOf(rb);
    // A's witness note, pinned against B's trail: refused.
    const notesA = readCheckpointNotes([a.witness], rb.engine.trail.key);
    expect((await verify(linesB, pem, notesA)).ok).toBe(false);
    // The case only the origin tells apart: A's key signed B's very tree (same key, same history), under A's origin.
    const key = loadOrCreateAuditKey(b.key);
    const body = { origin: 'a.example.com/countersign', treeSize: cpB.treeSize, rootHash: cpB.rootHash, timestamp: cpB.timestamp };
    const asA = { ...body, keyId: key.keyId, signature: key.sign(checkpointMessage(body)), file: 'a.note' };
    expect(await verify(linesB, pem, [asA])).toMatchObject({ ok: false, fault: { code: 'ORIGIN_MISMATCH' } });
    // …and the same checkpoint spliced into B's export in place of B's own.
    const spliced = linesB.map((l) => (l === trailCheckpointLine(cpB) ? trailCheckpointLine(asA) : l));
    expect(await verify(spliced, pem)).toMatchObject({ ok: false, fault: { code: 'ORIGIN_MISMATCH' } });
  });

  it('an origin changed in the database stops the signer (AUDIT_FORK), and no origin turns another statement into a checkpoint', async () => {
    const d = deployment();
    const r = await start(d);
    const agent = (await r.engine.authenticate((await r.engine.bootstrap())!.agentKey))!;
    await r.engine.trail.checkpoint();
    const raw = await connect(d.url);
    try {
      await raw.db.updateTable('audit_origin').set({ origin: 'evil.example.com/other' }).execute();
    } finally {
      await raw.destroy();
    }
    await r.engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO }));
    await expect(r.engine.trail.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_FORK', message: expect.stringContaining('origin') });
    // A retention statement with one frontier hash, read as a checkpoint under the retention origin, is not the same bytes.
    const frontier = ['A'.repeat(43) + '='];
    const retention = retentionMessage({ prunedTo: 1, frontier, timestamp: '2026-01-01T00:00:00.000Z' });
    const asCheckpoint = checkpointMessage({ origin: 'countersign.audit.retention/v1', treeSize: 1, rootHash: frontier[0]!, timestamp: '2026-01-01T00:00:00.000Z' });
    expect(Buffer.from(asCheckpoint).equals(Buffer.from(retention))).toBe(false);
    expect(Buffer.from(asCheckpoint).includes(Buffer.from(utf8('countersign.audit.retention/v1')))).toBe(false);
  });
});

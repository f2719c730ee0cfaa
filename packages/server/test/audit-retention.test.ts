/**
 * Retention: entries older than the retention period are removed, up to a checkpoint, while
 * what remains still verifies (the export starts from the signed compact tree at the prune
 * point) and proofs still work; an edit of the pruned export is still caught where it was made.
 */
import {
  CreateRequestBody,
  DEFAULT_POLICY_YAML,
  fromBase64,
  toBase64,
  verifyConsistency,
  verifyInclusion,
  type TrailResult,
} from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveAuditConfig } from '../src/audit/config.ts';
import { hasher } from '../src/audit/crypto.ts';
import { verifyTrailStream } from '../src/audit/verify.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { AUTO } from './support/engine.ts';

const DAY = 86_400_000;
const b64 = (s: string) => fromBase64(s)!;

describe.each(ENGINES)('audit retention: $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let agent: Principal;
  let admin: Principal;
  let clock = Date.UTC(2025, 0, 1);
  let oldCheckpoint = 0;

  async function exported(): Promise<Buffer> {
    let text = '';
    for await (const chunk of engine.trail.exportLines()) text += `${chunk}\n`;
    return Buffer.from(text);
  }
  const verify = async (bytes: Uint8Array): Promise<TrailResult> =>
    verifyTrailStream(
      (async function* () {
        yield bytes;
      })(),
      engine.trail.key,
    );

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    agent = (await engine.authenticate(boot.agentKey))!;
    admin = (await engine.authenticate(boot.adminToken))!;
    for (let i = 0; i < 12; i++) {
      clock += 60_000;
      await engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `198.51.100.${i}` } }));
      if (i % 4 === 3) oldCheckpoint = (await engine.trail.checkpoint()).treeSize;
    }
    clock += 400 * DAY;
    for (let i = 0; i < 5; i++) {
      clock += 60_000;
      await engine.createRequest(agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `203.0.113.${i}` } }));
    }
    await engine.trail.checkpoint();
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('removes what is older than the retention period, up to the last checkpoint before it', async () => {
    const before = (await engine.trail.query(admin, { limit: 1000 })).items;
    expect(await engine.trail.prune(365)).toBe(oldCheckpoint);
    expect(await engine.store.trail.prunedTo()).toBe(oldCheckpoint);
    const after = (await engine.trail.query(admin, { limit: 1000 })).items;
    expect(after.map((e) => e.seq)).toEqual(before.filter((e) => e.seq > oldCheckpoint).map((e) => e.seq));
    expect(after.every((e) => Date.parse(e.at) > clock - 365 * DAY)).toBe(true);
    expect(await engine.trail.prune(365)).toBe(0); // nothing more is due
  });

  it('still verifies, from the signed compact tree at the prune point', async () => {
    const head = await engine.trail.head();
    const result = await verify(await exported());
    expect(result).toMatchObject({ ok: true, prunedTo: oldCheckpoint, treeSize: head.treeSize, rootHash: head.rootHash });
  });

  it('still proves: remaining entries by inclusion, the pruned prefix by consistency', async () => {
    const latest = (await engine.trail.latestCheckpoint())!;
    const seq = oldCheckpoint + 2;
    const proof = await engine.trail.inclusionProof(seq);
    expect(verifyInclusion(hasher, seq - 1, latest.treeSize, b64(proof.leafHash), proof.inclusionPath.map(b64), b64(latest.rootHash)).ok).toBe(true);
    await expect(engine.trail.inclusionProof(1)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const c = await engine.trail.consistencyProof(3);
    expect(verifyConsistency(hasher, 3, latest.treeSize, c.consistencyPath.map(b64), b64(c.rootHash1), b64(latest.rootHash)).ok).toBe(true);
  });

  it('catches an edit of the pruned export where it was made', async () => {
    const original = await exported();
    const lines = original.toString('utf8').slice(0, -1).split('\n');
    expect(JSON.parse(lines[1]!)).toMatchObject({ kind: 'base', treeSize: oldCheckpoint });
    const edited = (i: number, edit: (line: string) => string) => Buffer.from(`${lines.map((l, j) => (j === i ? edit(l) : l)).join('\n')}\n`);
    const faultOf = (r: TrailResult) => (r.ok ? null : { code: r.fault.code, line: r.fault.line });

    // Another (validly encoded) subtree hash in the base: the signed retention statement no longer verifies.
    const base = JSON.parse(lines[1]!) as { frontier: string[] };
    const forged = toBase64(hasher.hashLeaf(new Uint8Array([1])));
    expect(faultOf(await verify(edited(1, (l) => l.replace(base.frontier[0]!, forged))))).toEqual({ code: 'UNSIGNED_BASE', line: 2 });
    // The base removed: entries then start in the middle.
    expect(faultOf(await verify(Buffer.from(`${lines.filter((_, j) => j !== 1).join('\n')}\n`)))).toEqual({ code: 'CHECKPOINT_PLACEMENT', line: 2 });
    // The base's checkpoint removed.
    expect(faultOf(await verify(Buffer.from(`${lines.filter((_, j) => j !== 2).join('\n')}\n`)))).toEqual({ code: 'CHECKPOINT_PLACEMENT', line: 3 });
    // A byte anywhere in the first three lines.
    for (let i = 0; i < 200; i++) {
      const line = i % 3;
      const start = lines.slice(0, line).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
      const at = start + ((i * 7919) % Buffer.byteLength(lines[line]!));
      const bytes = Buffer.from(original);
      bytes[at] = (bytes[at]! + 1 + (i % 250)) % 256;
      const result = await verify(bytes);
      expect(result.ok, `byte ${at} of line ${line + 1}`).toBe(false);
      if (!result.ok) expect(result.fault.line, `byte ${at}: ${result.fault.message}`).toBe(line + 1);
    }
  });
});

describe('retention configuration', () => {
  it('defaults to 365 days; 0 keeps everything; anything else must be a whole number of days', () => {
    expect(resolveAuditConfig('sqlite::memory:', {}, {}).retentionDays).toBe(365);
    expect(resolveAuditConfig('sqlite::memory:', {}, { COUNTERSIGN_AUDIT_RETENTION_DAYS: '0' }).retentionDays).toBe(0);
    expect(resolveAuditConfig('sqlite::memory:', {}, { COUNTERSIGN_AUDIT_RETENTION_DAYS: '30' }).retentionDays).toBe(30);
    expect(() => resolveAuditConfig('sqlite::memory:', {}, { COUNTERSIGN_AUDIT_RETENTION_DAYS: '1.5' })).toThrow(/COUNTERSIGN_AUDIT_RETENTION_DAYS/);
  });
});

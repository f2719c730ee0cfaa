/**
 * Audit verification speed: `countersign audit verify --file` over an exported trail of
 * BENCH_AUDIT_ENTRIES entries (default 1,000,000), beside this machine's raw SHA-256
 * throughput in the same run:
 *
 * - bulk SHA-256: one hash over the whole file (MB/s), the ceiling for "hashing the bytes";
 * - tree hashes only: the leaf and node hashes the verification must compute, from bytes already
 *   in memory, with no parsing or I/O (the floor for any verifier of this format in Node);
 * - verification: reading the file, checking every line, recomputing the tree, checking every
 *   checkpoint signature.
 *
 * The trail is written with the export's own format functions (what `GET /v1/audit/export`
 * sends), with entries shaped like the engine's, and a signed checkpoint every 1,000 entries.
 *
 *   node --import tsx bench/audit.ts            # prints a Markdown section and JSON
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CompactTree, auditLeafJson, checkpointMessage, toBase64, trailCheckpointLine, trailEntryLine, trailHeaderLine, utf8 } from '@countersign/core';
import { ephemeralAuditKey, hasher, sha256 } from '../packages/server/src/audit/crypto.ts';
import { verifyTrailStream } from '../packages/server/src/audit/verify.ts';
import { writeSection } from './sections.ts';

const ENTRIES = Number(process.env.BENCH_AUDIT_ENTRIES ?? 1_000_000);
const EVERY = 1000;
const TYPES = ['created', 'queued', 'reviewed', 'approved', 'executed'];

function entry(seq: number) {
  const request = `req_01m7${String(Math.floor(seq / 5)).padStart(22, '0')}`;
  const type = TYPES[seq % TYPES.length]!;
  const data =
    type === 'created'
      ? { action: 'isolate_host', agentId: 'agt_01m7ybs7sn4bzd22waey5k1mtq', policyVersion: 3, riskScore: 0.6123, riskLevel: 'high', automationLevel: 'advisory', route: 'review', matchedRules: ['destructive-verbs'] }
      : type === 'reviewed'
        ? { verdict: 'approve', reason: 'confirmed with IR', modifiedArgs: false, alternative: null, stage: 0 }
        : { decidedBy: 'reviewers', deciders: ['alice'], reason: null, alternative: null, modified: false };
  return auditLeafJson({
    seq,
    at: new Date(1_790_000_000_000 + seq * 37).toISOString(),
    type,
    requestId: request,
    actor: type === 'reviewed' ? { type: 'operator', id: 'op_01m7ybs7ske6n2t0c5x2htgagn', name: 'alice' } : { type: 'system', id: 'system', name: 'countersign' },
    data,
  });
}

async function writeTrail(path: string) {
  const key = ephemeralAuditKey();
  const tree = new CompactTree(hasher);
  const file = await open(path, 'w');
  const checkpoints = Math.ceil(ENTRIES / EVERY);
  let buffer = `${trailHeaderLine({ treeSize: ENTRIES, checkpoints, keyId: key.keyId })}\n`;
  const leaves: Uint8Array[] = [];
  for (let seq = 1; seq <= ENTRIES; seq++) {
    const json = entry(seq);
    const bytes = utf8(json);
    leaves.push(bytes);
    const leafHash = hasher.hashLeaf(bytes);
    tree.append(leafHash);
    buffer += `${trailEntryLine(json, leafHash)}\n`;
    if (seq % EVERY === 0 || seq === ENTRIES) {
      const body = { treeSize: seq, rootHash: toBase64(tree.root()), timestamp: new Date(1_790_000_000_000 + seq * 37).toISOString() };
      buffer += `${trailCheckpointLine({ ...body, keyId: key.keyId, signature: key.sign(checkpointMessage(body)) })}\n`;
    }
    if (buffer.length > 1 << 22) {
      await file.write(buffer);
      buffer = '';
    }
  }
  await file.write(buffer);
  await file.close();
  return { key, leaves, root: toBase64(tree.root()) };
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'cs-bench-audit-'));
  const path = join(dir, 'trail.jsonl');
  try {
    let start = process.hrtime.bigint();
    const { key, leaves, root } = await writeTrail(path);
    const writeSeconds = seconds(start);
    const bytes = statSync(path).size;

    // Bulk SHA-256 over the file's bytes (read from the page cache, as the verification will).
    start = process.hrtime.bigint();
    const bulk = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) bulk.update(chunk as Buffer);
    bulk.digest();
    const bulkSeconds = seconds(start);

    // Raw SHA-256 compute: one hash over 256 MB in memory, and 64-byte messages one by one.
    const big = Buffer.alloc(256 * 2 ** 20, 7);
    start = process.hrtime.bigint();
    createHash('sha256').update(big).digest();
    const rawSeconds = seconds(start);
    const small = Buffer.alloc(64, 1);
    const smallCount = 1_000_000;
    start = process.hrtime.bigint();
    for (let i = 0; i < smallCount; i++) sha256(small);
    const smallSeconds = seconds(start);

    // The tree's hashes alone: one leaf hash per entry and the nodes above, from bytes in memory.
    start = process.hrtime.bigint();
    const tree = new CompactTree(hasher);
    for (const leaf of leaves) tree.append(hasher.hashLeaf(leaf));
    if (toBase64(tree.root()) !== root) throw new Error('tree mismatch');
    const hashSeconds = seconds(start);
    leaves.length = 0;

    // The verification, as `countersign audit verify --file` runs it.
    start = process.hrtime.bigint();
    const result = await verifyTrailStream(createReadStream(path, { highWaterMark: 1 << 20 }), key);
    const verifySeconds = seconds(start);
    if (!result.ok || result.rootHash !== root) throw new Error(`verification failed: ${JSON.stringify(result)}`);

    const mb = bytes / 1e6;
    const report = {
      machine: `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
      entries: ENTRIES,
      checkpoints: result.checkpoints,
      fileMB: Number(mb.toFixed(1)),
      writeSeconds: Number(writeSeconds.toFixed(2)),
      bulkSha256MBps: Math.round(mb / bulkSeconds),
      rawSha256MBps: Math.round(268.435456 / rawSeconds),
      sha256Of64BytesPerSecond: Math.round(smallCount / smallSeconds),
      treeHashesOnly: { seconds: Number(hashSeconds.toFixed(2)), entriesPerSecond: Math.round(ENTRIES / hashSeconds) },
      verify: { seconds: Number(verifySeconds.toFixed(2)), entriesPerSecond: Math.round(ENTRIES / verifySeconds), MBps: Math.round(mb / verifySeconds) },
      verifyVsTreeHashes: Number((hashSeconds / verifySeconds).toFixed(2)),
      verifyVsBulkSha256: Number((bulkSeconds / verifySeconds).toFixed(3)),
    };
    const section = [
        `## Audit verification (${ENTRIES.toLocaleString('en-US')} entries)`,
        '',
        `Machine: ${report.machine}. Command: \`npm run bench\` (\`bench/audit.ts\`).`,
        '',
        '| what | time | rate |',
        '| --- | --- | --- |',
        `| raw SHA-256, one 256 MiB buffer in memory | ${rawSeconds.toFixed(2)} s | ${report.rawSha256MBps} MB/s |`,
        `| raw SHA-256, 1,000,000 messages of 64 bytes (the size of a tree node) | ${smallSeconds.toFixed(2)} s | ${report.sha256Of64BytesPerSecond.toLocaleString('en-US')} hashes/s |`,
        `| bulk SHA-256 over the ${report.fileMB} MB export, read from the page cache | ${bulkSeconds.toFixed(2)} s | ${report.bulkSha256MBps} MB/s |`,
        `| tree hashes only (leaf + node hashes, bytes in memory) | ${report.treeHashesOnly.seconds} s | ${report.treeHashesOnly.entriesPerSecond.toLocaleString('en-US')} entries/s |`,
        `| \`audit verify --file\` (read, check every line, recompute the tree, ${report.checkpoints} signatures) | ${report.verify.seconds} s | ${report.verify.entriesPerSecond.toLocaleString('en-US')} entries/s, ${report.verify.MBps} MB/s |`,
        '',
        `Verification needs about two SHA-256 calls per entry (the leaf, and on average one node). It runs at ${Math.round(report.verifyVsTreeHashes * 100)}% of the speed of those hashes alone, and at ${(report.verifyVsBulkSha256 * 100).toFixed(1)}% of bulk SHA-256 over the same bytes: per-call overhead, not hashing, bounds both.`,
      ].join('\n');
    console.log(section);
    writeSection('audit', section);
    console.log(JSON.stringify(report));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

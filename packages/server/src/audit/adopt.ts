/**
 * `countersign audit trust-current`: the operator's way past a missing signer state. The signer
 * refuses to sign when its state file is gone but the database holds checkpoints, because it
 * cannot tell that trail from a rewritten one. This verifies the whole trail the database holds
 * (every checkpoint's signature and root, and that it extends every pinned witness note), then
 * records its newest checkpoint as the state, and writes an `audit_state_adopted` entry saying
 * who did it, from where, and why.
 */
import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { CountersignError } from '@countersign/core';
import { processEnvironment } from '../config.ts';
import { Engine } from '../engine/engine.ts';
import { connect, parseDatabaseUrl } from '../store/connect.ts';
import { resolveAuditConfig } from './config.ts';
import { loadOrCreateAuditKey } from './crypto.ts';
import { readCheckpointNotes, verifyTrailStream } from './verify.ts';
import { SYSTEM_ACTOR, draft } from './writer.ts';

export interface TrustCurrentResult {
  treeSize: number;
  rootHash: string;
  keyId: string;
  entriesVerified: number;
  pinned: number;
  statePath: string;
}

export async function trustCurrent(flags: { database?: string | undefined; auditKey?: string | undefined; checkpoint?: string[] | undefined; reason: string }): Promise<TrustCurrentResult> {
  const env = processEnvironment();
  const url = flags.database ?? env.COUNTERSIGN_DATABASE_URL;
  if (!url) throw new CountersignError('VALIDATION_FAILED', 'say which database: --database URL or COUNTERSIGN_DATABASE_URL (the one your servers use)');
  const parsed = parseDatabaseUrl(url);
  if (parsed.dialect === 'sqlite' && (parsed.target === ':memory:' || !existsSync(parsed.target))) {
    throw new CountersignError('VALIDATION_FAILED', `no database at ${parsed.target}: point --database at the one your servers use`);
  }
  const reason = flags.reason.trim();
  if (reason === '' || reason.length > 500) throw new CountersignError('VALIDATION_FAILED', '--reason: say why, in at most 500 characters');
  const audit = resolveAuditConfig(url, { auditKey: flags.auditKey }, env);
  if (audit.keyPath === null || !existsSync(audit.keyPath)) {
    throw new CountersignError('VALIDATION_FAILED', `no audit key at ${audit.keyPath ?? '(memory)'}: point --audit-key at the key your servers sign with`);
  }
  const key = loadOrCreateAuditKey(audit.keyPath);
  const pins = readCheckpointNotes(flags.checkpoint ?? [], key);
  const engine = await Engine.open({ connection: await connect(url), auditKey: key });
  try {
    await engine.trail.checkKey();
    const export_ = engine.trail.exportLines();
    const result = await verifyTrailStream(
      (async function* () {
        for await (const chunk of export_) yield Buffer.from(`${chunk}\n`);
      })(),
      key,
      { pinned: pins },
    );
    if (!result.ok) {
      throw new CountersignError('AUDIT_VERIFICATION_FAILED', `the trail in the database does not verify, so it is not adopted: ${result.fault.message}`, result.fault);
    }
    if (result.checkpoint === null) throw new CountersignError('VALIDATION_FAILED', 'the database holds no signed checkpoint: there is nothing to adopt (a server signs the first one itself)');
    const cp = result.checkpoint;
    await engine.trail.signer.adopt(cp);
    const at = Date.now();
    await engine.store.transaction((tx) =>
      engine.writer.append(tx, [
        draft('audit_state_adopted', null, SYSTEM_ACTOR, { treeSize: cp.treeSize, rootHash: cp.rootHash, keyId: cp.keyId, pinned: result.pinned, reason, user: userInfo().username, host: hostname() }, at),
      ]),
    );
    return { treeSize: cp.treeSize, rootHash: cp.rootHash, keyId: cp.keyId, entriesVerified: result.entriesVerified, pinned: result.pinned, statePath: engine.trail.signer.state.where };
  } finally {
    await engine.close();
  }
}

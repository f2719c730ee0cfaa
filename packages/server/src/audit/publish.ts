/**
 * Telling the world what the audit signer did, so that history cannot be rewritten quietly:
 *
 * - every checkpoint it signs goes, as a signed note (core `checkpointNote`), to the append-only
 *   witness directory (`COUNTERSIGN_AUDIT_WITNESS_DIR`) and as a `countersign.audit.checkpoint`
 *   event to every webhook channel with `checkpoints: true`;
 * - every refusal (`AUDIT_FORK`: the database's tree does not extend the signed one, a checkpoint
 *   row the key did not sign, or the signer's state is missing, damaged or cannot be written)
 *   goes first where the database cannot stop it — the log, and an `audit-fork-<time>.json` file
 *   in the witness directory (best effort, never rewritten) — and then as an `audit_fork` notice
 *   to every channel of the policy. The signer re-reports a refusal that lasts (bounded rate,
 *   `REFUSAL_RESEND_MS`), so an alarm lost with the database is sent again.
 *
 * Channel messages travel the durable delivery path (a delivery row and its timer, retried by
 * the scheduler). The witness directory is written directly: it must not depend on the database.
 */
import { checkpointNote, type GuardNoticeData, type Policy, type SignedCheckpoint } from '@countersign/core';
import { checkpointChannelNames } from '../channels/config.ts';
import { newId } from '../ids.ts';
import type { Store } from '../store/store.ts';
import { deliveryRows } from '../store/timers.ts';
import { sha256, type AuditKey } from './crypto.ts';
import type { SignerHooks, SignerRefusal } from './signer.ts';
import { writeForkAlarm, writeWitnessNote } from './witness.ts';

export const CHECKPOINT_EVENT = 'audit.checkpoint';

/** What a `countersign.audit.checkpoint` webhook carries. */
export interface CheckpointEventData {
  checkpoint: SignedCheckpoint;
  /** The checkpoint as a C2SP signed note. */
  note: string;
}

export interface PublisherOptions {
  store: Store;
  key: AuditKey;
  /** The active policy (its channels), if one is loaded. */
  policy: () => Policy | undefined;
  witnessDir: string | null;
  now: () => number;
  log: (line: string) => void;
}

export function trailPublisher(options: PublisherOptions): Required<SignerHooks> {
  const { store, key, policy, witnessDir, now, log } = options;

  const queue = async (channels: readonly string[], event: string, data: unknown): Promise<void> => {
    if (channels.length === 0) return;
    const at = now();
    const rows = channels.map((channel) => deliveryRows(newId('dlv', at), null, channel, event, data, at));
    await store.transaction(async (tx) => {
      await tx.timers.insertDeliveries(rows.map((r) => r.delivery));
      await tx.timers.insertTimers(rows.map((r) => r.timer));
    });
  };

  const onRefused = async (refusal: SignerRefusal): Promise<void> => {
    log(`countersign: AUDIT_FORK: ${refusal.reason}`);
    if (witnessDir !== null) {
      try {
        writeForkAlarm(witnessDir, refusal, now());
      } catch (err) {
        log(`countersign: AUDIT_FORK could not be written to the witness directory: ${(err as Error).message}`);
      }
    }
    const data: GuardNoticeData = { kind: 'audit_fork', at: now(), by: 'countersign', reason: refusal.reason };
    try {
      await queue(Object.keys(policy()?.channels ?? {}), 'guard.audit_fork', data);
    } catch (err) {
      log(`countersign: AUDIT_FORK could not be queued to the channels: ${(err as Error).message}`);
    }
  };

  const onSigned = async (cp: SignedCheckpoint): Promise<void> => {
    const note = checkpointNote(sha256, cp, key.noteKey);
    if (witnessDir !== null) {
      try {
        const result = writeWitnessNote(witnessDir, cp, note, key.noteKey);
        if (!result.written && result.existing === 'other-root') {
          await onRefused({
            kind: 'fork',
            reason: `the witness directory already holds a checkpoint for size ${cp.treeSize} with another root (${result.file}): this key signed two different histories`,
            signed: null,
            database: { treeSize: cp.treeSize, rootHash: cp.rootHash },
            since: now(),
          });
        }
      } catch (err) {
        log(`countersign: witness directory: ${(err as Error).message}`);
      }
    }
    try {
      const data: CheckpointEventData = { checkpoint: cp, note };
      await queue(checkpointChannelNames(policy()?.channels ?? {}), CHECKPOINT_EVENT, data);
    } catch (err) {
      log(`countersign: checkpoint ${cp.treeSize} could not be queued to the witness webhooks: ${(err as Error).message}`);
    }
  };

  return { onRefused, onSigned };
}

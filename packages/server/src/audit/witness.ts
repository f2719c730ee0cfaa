/**
 * The append-only directory witness (`COUNTERSIGN_AUDIT_WITNESS_DIR`): every checkpoint the
 * signer publishes is written there as a signed note, one file per tree size
 * (`checkpoint-0000000000001500.note`), created exclusively and never rewritten. Point it at a
 * directory the database's writers cannot reach (another volume, a synced or WORM bucket), and
 * `countersign audit verify --checkpoint DIR` pins the trail to every note in it.
 *
 * A note already there for the same size is left alone: the same root is a second server's
 * signature of the same tree; another root is a fork, reported to the caller.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CountersignError, parseCheckpointNote, type NoteKey, type SignedCheckpoint } from '@countersign/core';
import { sha256 } from './crypto.ts';
import type { SignerRefusal } from './signer.ts';
import { syncDirectory } from './signer-state.ts';

export const WITNESS_NOTE = /^checkpoint-(\d{16})\.note$/;

export function witnessFileName(treeSize: number): string {
  return `checkpoint-${String(treeSize).padStart(16, '0')}.note`;
}

export type WitnessWrite = { written: true } | { written: false; existing: 'same' | 'other-root' | 'unreadable'; file: string };

/** Writes one note; never replaces a file. Throws (STORE_UNAVAILABLE) when the directory cannot be written. */
export function writeWitnessNote(dir: string, cp: SignedCheckpoint, note: string, key: NoteKey): WitnessWrite {
  const file = join(dir, witnessFileName(cp.treeSize));
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const fd = openSync(file, 'wx', 0o644);
    try {
      writeSync(fd, note);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    syncDirectory(dir);
    return { written: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new CountersignError('STORE_UNAVAILABLE', `cannot write the witness note ${file}: ${(err as Error).message}`);
    }
  }
  const existing = readWitnessNote(file, key);
  if (existing === null) return { written: false, existing: 'unreadable', file };
  return { written: false, existing: existing.rootHash === cp.rootHash ? 'same' : 'other-root', file };
}

function readWitnessNote(file: string, key: NoteKey): SignedCheckpoint | null {
  try {
    const parsed = parseCheckpointNote(sha256, readFileSync(file, 'utf8'), key);
    return parsed.ok ? parsed.checkpoint : null;
  } catch {
    return null;
  }
}

/** The note files in a witness directory, by tree size. */
export function witnessNoteFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => WITNESS_NOTE.test(name))
    .sort()
    .map((name) => join(dir, name));
}

/** The name of a fork alarm file: `audit-fork-<ISO time, colons as dashes>-<random>.json`. */
export const FORK_ALARM = /^audit-fork-[0-9TZ.-]+-[0-9a-f]{8}\.json$/;

/**
 * Writes a refusal of the signer (AUDIT_FORK) into the witness directory, as JSON, beside the
 * notes: an alarm that reaches whoever watches the directory even when the database (and with it
 * the channels' delivery queue) is what was attacked. A new file each time, created exclusively.
 */
export function writeForkAlarm(dir: string, refusal: SignerRefusal, at: number): string {
  const file = join(dir, `audit-fork-${new Date(at).toISOString().replaceAll(':', '-')}-${randomBytes(4).toString('hex')}.json`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const fd = openSync(file, 'wx', 0o644);
  try {
    writeSync(fd, `${JSON.stringify({ code: 'AUDIT_FORK', at: new Date(at).toISOString(), kind: refusal.kind, reason: refusal.reason, signed: refusal.signed, database: refusal.database, since: new Date(refusal.since).toISOString() })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  syncDirectory(dir);
  return file;
}

/**
 * Verifying an exported trail from a byte stream (a file, or the server's export response):
 * split it into lines without decoding twice, and feed `TrailVerifier` the exact bytes, so
 * what is hashed is what was on disk or on the wire.
 */
import { chainCrypto, publicKeyOfRaw } from './keys.ts';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import { CountersignError, SignedHandover, TrailVerifier, checkExtension, checkpointMessage, fromBase64Of, parseCheckpointNote, type SignedCheckpoint, type TrailResult } from '@countersign/core';
import { hasher, sha256, type PublicAuditKey } from './crypto.ts';

export interface VerifyProgress {
  bytes: number;
  entries: number;
  /** Entries the header promises, once it is read. */
  total: number | null;
}

export interface VerifyOptions {
  /** Called now and then (at most every `progressEvery` lines). */
  onProgress?: (progress: VerifyProgress) => void;
  progressEvery?: number;
  /** Longest line accepted, bytes (default `MAX_TRAIL_LINE_BYTES`); a longer one is a `MALFORMED` fault, read no further. */
  maxLineBytes?: number;
  /** Checkpoints the trail must extend (see `TrailVerifier`). */
  pinned?: readonly SignedCheckpoint[];
  /** Skip (and report) pins in the pruned prefix instead of failing (see `TrailVerifier`). */
  skipPrunedPins?: boolean;
  /** Told each verified entry (seq, leaf JSON). */
  onEntry?: (seq: number, leafJson: string) => void;
}

/**
 * No line of a real export comes near this: entries hold redacted data (a string over 2,048
 * characters is one token), checkpoints and the header are small, a pruned base is one hash per
 * level. A file with a longer line is not an export, and reading it whole would only cost memory.
 */
export const MAX_TRAIL_LINE_BYTES = 4 * 1024 * 1024;

/**
 * Verifies a trail read as chunks of bytes, with the trusted public key. Never throws on bad
 * input: it reports. Linear in the input: a line split across chunks is kept as a list of pieces
 * and joined once, when its newline arrives (never re-concatenated per chunk), and no line may
 * exceed `maxLineBytes`.
 */
export async function verifyTrailStream(
  source: AsyncIterable<Uint8Array>,
  key: PublicAuditKey,
  options: VerifyOptions = {},
): Promise<TrailResult> {
  const verifier = new TrailVerifier({
    hasher,
    keyId: key.keyId,
    verifySignature: (message, signature) => key.verify(message, signature),
    // Key rotation: the verifier follows hand-overs from this key (audit/keys.ts).
    rawPublicKey: key.noteKey.rawPublicKey,
    keyIdOfRaw: chainCrypto.keyIdOfRaw,
    verifyWithKey: chainCrypto.verify,
    ...(options.pinned ? { pinned: options.pinned } : {}),
    ...(options.skipPrunedPins ? { skipPrunedPins: true } : {}),
    ...(options.onEntry ? { onEntry: options.onEntry } : {}),
  });
  const every = options.progressEvery ?? 20_000;
  const maxLine = options.maxLineBytes ?? MAX_TRAIL_LINE_BYTES;
  let bytes = 0;
  let lines = 0;
  /** The start of the current line, as it arrived: pieces of earlier chunks. */
  let pieces: Buffer[] = [];
  let pending = 0;
  let stopped = false;
  const report = () => options.onProgress?.({ bytes, entries: verifier.entries, total: verifier.header?.treeSize ?? null });
  const tooLong = (): TrailResult => ({
    ok: false,
    fault: { code: 'MALFORMED', line: lines + 1, message: `line ${lines + 1} is longer than ${maxLine} bytes: not an audit export` },
    entriesChecked: verifier.entries,
  });

  for await (const chunk of source) {
    if (stopped) break;
    bytes += chunk.length;
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    let start = 0;
    for (;;) {
      const end = buf.indexOf(10, start);
      if (end < 0) break;
      if (pending + (end - start) > maxLine) return tooLong();
      const line = pending === 0 ? buf.subarray(start, end) : Buffer.concat([...pieces, buf.subarray(start, end)], pending + (end - start));
      pieces = [];
      pending = 0;
      start = end + 1;
      if (!verifier.push(line.toString('utf8'), line)) {
        stopped = true;
        break;
      }
      if (++lines % every === 0) report();
    }
    if (!stopped && start < buf.length) {
      pending += buf.length - start;
      if (pending > maxLine) return tooLong();
      pieces.push(Buffer.from(buf.subarray(start))); // a copy: the source may reuse its buffer
    }
  }
  let endsWithNewline = true;
  if (!stopped && pending > 0) {
    const rest = Buffer.concat(pieces, pending);
    verifier.push(rest.toString('utf8'), rest);
    endsWithNewline = false;
  }
  report();
  return verifier.finish({ endsWithNewline });
}

/** Yields a web stream's chunks (fetch response bodies). */
export async function* chunksOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Notes larger than this are not checkpoints (a checkpoint note is a few hundred bytes). */
const MAX_NOTE_BYTES = 16_384;

/**
 * Checkpoint notes to pin a verification to: each path is a note file, or a directory whose
 * `*.note` files are read (a witness directory). Every note must parse, be signed by `key`, and
 * verify; anything else is refused, naming the file, so a pin can never be silently dropped.
 */
export function readCheckpointNotes(paths: readonly string[], key: PublicAuditKey): Array<SignedCheckpoint & { file: string }> {
  const files: string[] = [];
  for (const path of paths) {
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch (err) {
      throw new CountersignError('VALIDATION_FAILED', `--checkpoint: cannot read ${path}: ${(err as Error).message}`);
    }
    if (!isDir) files.push(path);
    else {
      const notes = readdirSync(path).filter((n) => n.endsWith('.note')).sort();
      if (notes.length === 0) throw new CountersignError('VALIDATION_FAILED', `--checkpoint: the directory ${path} holds no .note files`);
      files.push(...notes.map((n) => join(path, n)));
    }
  }
  // After a key rotation a witness directory holds notes of several keys, and the hand-over
  // statements (`handover-*.json`) that name them: candidates only — the verifier accepts a note
  // of another key only if the chain followed from the trusted key reaches it, for that size.
  const candidates: PublicAuditKey[] = [key];
  for (const path of paths) {
    let names: string[] = [];
    try {
      names = statSync(path).isDirectory() ? readdirSync(path).filter((n) => /^handover-\d{16}-[0-9a-f]{16}-[0-9a-f]{16}\.json$/.test(n)) : [];
    } catch {
      names = [];
    }
    for (const name of names) {
      try {
        const { kind: _kind, ...rest } = JSON.parse(readFileSync(join(path, name), 'utf8')) as Record<string, unknown>;
        const h = SignedHandover.safeParse(rest);
        if (!h.success) continue;
        for (const raw of [h.data.fromPublicKey, h.data.toPublicKey]) {
          const k = publicKeyOfRaw(raw);
          if (k && !candidates.some((c) => c.keyId === k.keyId)) candidates.push(k);
        }
      } catch {
        // not a statement: ignored, it names no key
      }
    }
  }
  return files.map((file) => {
    let text: string;
    try {
      if (statSync(file).size > MAX_NOTE_BYTES) throw new Error(`larger than ${MAX_NOTE_BYTES} bytes`);
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CountersignError('VALIDATION_FAILED', `--checkpoint: cannot read ${file}: ${(err as Error).message}`);
    }
    let parsed = parseCheckpointNote(sha256, text, key.noteKey);
    let signer = key;
    for (const other of candidates.slice(1)) {
      if (parsed.ok) break;
      const attempt = parseCheckpointNote(sha256, text, other.noteKey);
      if (attempt.ok) [parsed, signer] = [attempt, other];
    }
    if (!parsed.ok) throw new CountersignError('VALIDATION_FAILED', `--checkpoint: ${file} is not a checkpoint note signed by key ${key.keyId}: ${parsed.reason}`);
    const sig = fromBase64Of(parsed.checkpoint.signature, 64);
    if (!sig || !signer.verify(checkpointMessage(parsed.checkpoint), sig)) {
      throw new CountersignError('AUDIT_VERIFICATION_FAILED', `--checkpoint: the signature of ${file} does not verify with key ${key.keyId}: the note was forged or altered`);
    }
    return { ...parsed.checkpoint, file };
  });
}

export type PinCheck = { ok: true } | { ok: false; pin: SignedCheckpoint; reason: string };

/**
 * Live pinning: with the trail verified up to `verified` (its root covered by a signed
 * checkpoint), each pin must be a prefix of it — shown by a consistency proof the server gives
 * (`proof(from, to)`), which it cannot forge. A pin beyond the verified size means the trail was
 * cut back.
 */
export async function checkPinsLive(
  pins: readonly SignedCheckpoint[],
  verified: { treeSize: number; rootHash: string },
  proof: (from: number, to: number) => Promise<string[]>,
): Promise<PinCheck> {
  for (const pin of pins) {
    if (pin.treeSize > verified.treeSize) {
      return { ok: false, pin, reason: `the trail has ${verified.treeSize} entries, but the pinned checkpoint signed ${pin.timestamp} covers ${pin.treeSize}: entries ${verified.treeSize + 1}–${pin.treeSize} were cut off` };
    }
    const check = checkExtension(hasher, pin, verified, pin.treeSize === verified.treeSize || pin.treeSize === 0 ? [] : await proof(pin.treeSize, verified.treeSize));
    if (!check.ok) return { ok: false, pin, reason: `the trail does not extend the pinned checkpoint signed ${pin.timestamp} (size ${pin.treeSize}): ${check.reason}` };
  }
  return { ok: true };
}

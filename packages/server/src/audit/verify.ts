/**
 * Verifying an exported trail from a byte stream (a file, or the server's export response):
 * split it into lines without decoding twice, and feed `TrailVerifier` the exact bytes, so
 * what is hashed is what was on disk or on the wire.
 */
import { TrailVerifier, type TrailResult } from '@countersign/core';
import { hasher, type PublicAuditKey } from './crypto.ts';

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
  const verifier = new TrailVerifier({ hasher, keyId: key.keyId, verifySignature: (message, signature) => key.verify(message, signature) });
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

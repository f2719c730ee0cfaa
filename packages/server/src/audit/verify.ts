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
}

/** Verifies a trail read as chunks of bytes, with the trusted public key. Never throws on bad input: it reports. */
export async function verifyTrailStream(
  source: AsyncIterable<Uint8Array>,
  key: PublicAuditKey,
  options: VerifyOptions = {},
): Promise<TrailResult> {
  const verifier = new TrailVerifier({ hasher, keyId: key.keyId, verifySignature: (message, signature) => key.verify(message, signature) });
  const every = options.progressEvery ?? 20_000;
  let bytes = 0;
  let lines = 0;
  let carry: Buffer | null = null;
  let stopped = false;
  const report = () => options.onProgress?.({ bytes, entries: verifier.entries, total: verifier.header?.treeSize ?? null });

  for await (const chunk of source) {
    if (stopped) break;
    bytes += chunk.length;
    let buf: Buffer = carry ? Buffer.concat([carry, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    carry = null;
    let start = 0;
    for (;;) {
      const end = buf.indexOf(10, start);
      if (end < 0) break;
      const line = buf.subarray(start, end);
      start = end + 1;
      if (!verifier.push(line.toString('utf8'), line)) {
        stopped = true;
        break;
      }
      if (++lines % every === 0) report();
    }
    if (!stopped && start < buf.length) carry = Buffer.from(buf.subarray(start));
    buf = Buffer.alloc(0);
  }
  let endsWithNewline = true;
  if (!stopped && carry && carry.length > 0) {
    verifier.push(carry.toString('utf8'), carry);
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

/**
 * Tamper detection, the acceptance bar: 1,000 random single edits of a real exported trail
 * (change a byte, delete an entry, swap two entries, truncate, re-sign with another key) must
 * every one fail verification, naming the line where the file was touched. Then edits of the
 * stored trail (the database itself), caught by verifying what the server exports.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { CreateRequestBody, checkpointMessage, keyIdOf, toBase64, type SignedCheckpoint, type TrailResult } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../src/audit/crypto.ts';
import { verifyTrailStream } from '../src/audit/verify.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

let database: TestDatabase;
let t: TestEngine;
let original: Buffer;

async function exported(): Promise<Buffer> {
  const chunks: string[] = [];
  for await (const chunk of t.engine.trail.exportLines()) chunks.push(`${chunk}\n`);
  return Buffer.from(chunks.join(''));
}

async function verify(bytes: Uint8Array, chunk = 4096): Promise<TrailResult> {
  async function* pieces() {
    for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
  }
  return verifyTrailStream(pieces(), t.engine.trail.key);
}

beforeAll(async () => {
  database = sqliteDatabase();
  t = await openTestEngine(database.url);
  // Several reviewers: one person approving many high-risk actions in a row is put in a cool-down.
  const reviewers = await Promise.all(['bob', 'carol', 'dave', 'erin', 'frank'].map((name) => t.operator(name)));
  for (let i = 0; i < 60; i++) {
    if (i % 3 === 0) {
      const { request } = await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...QUEUED, args: { host: `ws-${i}`, note: 'ünïcödé ✓' } }));
      await t.engine.review(reviewers[(i / 3) % reviewers.length]!, request.id, i % 2 ? { verdict: 'reject', reason: `no ${i}` } : { verdict: 'approve' });
    } else {
      await t.engine.createRequest(t.agent, CreateRequestBody.parse({ ...AUTO, args: { ip: `203.0.113.${i}` } }));
    }
    if (i % 7 === 6) await t.engine.trail.checkpoint();
  }
  await t.engine.trail.checkpoint();
  original = await exported();
}, 60_000);

afterAll(async () => {
  await t.engine.close();
  await database.drop();
});

/** A small seeded PRNG, so a failure can be replayed (the seed is in the test name). */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n) };
}

interface Edit {
  what: string;
  bytes: Buffer;
  /** The line the verifier must name. */
  line: number;
}

const lineStarts = (buf: Buffer): number[] => {
  const starts = [0];
  for (let i = 0; i < buf.length - 1; i++) if (buf[i] === 10) starts.push(i + 1);
  return starts;
};

function lineOf(starts: number[], offset: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

function edit(rand: ReturnType<typeof prng>, other: { privateKey: ReturnType<typeof generateKeyPairSync>['privateKey']; keyId: string }): Edit {
  const text = original.toString('utf8');
  const lines = text.slice(0, -1).split('\n');
  const starts = lineStarts(original);
  const entryLines = lines.flatMap((l, i) => (l.startsWith('{"entry":') ? [i] : []));
  const join = (ls: string[]) => Buffer.from(`${ls.join('\n')}\n`);
  switch (rand.int(5)) {
    case 0: {
      const at = rand.int(original.length);
      const bytes = Buffer.from(original);
      bytes[at] = (bytes[at]! + 1 + rand.int(255)) % 256;
      return { what: `byte ${at} changed to ${bytes[at]}`, bytes, line: lineOf(starts, at) };
    }
    case 1: {
      const i = entryLines[rand.int(entryLines.length)]!;
      return { what: `entry line ${i + 1} deleted`, bytes: join(lines.filter((_, j) => j !== i)), line: i + 1 };
    }
    case 2: {
      const a = entryLines[rand.int(entryLines.length)]!;
      let b = a;
      while (b === a) b = entryLines[rand.int(entryLines.length)]!;
      const swapped = lines.slice();
      [swapped[a], swapped[b]] = [swapped[b]!, swapped[a]!];
      return { what: `entry lines ${a + 1} and ${b + 1} swapped`, bytes: join(swapped), line: Math.min(a, b) + 1 };
    }
    case 3: {
      const at = rand.int(original.length); // keep bytes [0, at)
      const kept = original.subarray(0, at);
      const remaining = kept.length === 0 ? 1 : lineOf(lineStarts(kept), kept.length - 1);
      return { what: `truncated to ${at} bytes`, bytes: Buffer.from(kept), line: remaining };
    }
    default: {
      // Every checkpoint re-signed with another key: claiming the original key id, or owning up to the new one.
      const claim = rand.int(2) === 0;
      let first = 0;
      const resigned = lines.map((l, i) => {
        if (i === 0) return claim ? l : l.replace(/"keyId":"[0-9a-f]+"/, `"keyId":"${other.keyId}"`);
        if (!l.startsWith('{"keyId"')) return l;
        const cp = JSON.parse(l) as SignedCheckpoint & { kind: string };
        if (first === 0) first = i + 1;
        const signature = toBase64(sign(null, checkpointMessage(cp), other.privateKey));
        return l.replace(cp.signature, signature).replace(`"keyId":"${cp.keyId}"`, `"keyId":"${claim ? cp.keyId : other.keyId}"`);
      });
      return { what: `re-signed with another key (${claim ? 'claiming the original key id' : 'under its own key id'})`, bytes: join(resigned), line: claim ? first : 1 };
    }
  }
}

describe('tamper detection', () => {
  it('verifies the untouched export, read in any chunk size', async () => {
    const lines = original.toString('utf8').split('\n').length - 1;
    expect(lines).toBeGreaterThan(150);
    for (const chunk of [1, 7, 4096, original.length]) {
      const result = await verify(original, chunk);
      expect(result, `chunk ${chunk}`).toMatchObject({ ok: true });
    }
  });

  const SEED = 20261121;
  it(`detects 1,000 of 1,000 random single edits and names the edited line (seed ${SEED})`, async () => {
    const rand = prng(SEED);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const other = { privateKey, keyId: keyIdOf(sha256, publicKey.export({ type: 'spki', format: 'der' })) };
    const kinds = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const e = edit(rand, other);
      const result = await verify(e.bytes, 1 + rand.int(70_000));
      expect(result.ok, `edit ${i}: ${e.what} went undetected`).toBe(false);
      if (result.ok) continue;
      expect(result.fault.line, `edit ${i}: ${e.what}: ${result.fault.message}`).toBe(e.line);
      const kind = e.what.split(' ')[0]!;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    expect([...kinds.keys()].sort()).toEqual(['byte', 'entry', 're-signed', 'truncated']);
    for (const n of kinds.values()) expect(n).toBeGreaterThan(100);
  }, 60_000);
});

describe('tamper detection in the database', () => {
  /** Runs `edit` on the SQLite file, verifies what the server then exports, and puts the rows back. */
  async function tampered(seqs: number[], edit: string): Promise<TrailResult> {
    const Database = (await import('better-sqlite3')).default;
    const file = database.url.slice('sqlite:'.length);
    const raw = new Database(file);
    const saved = raw.prepare(`select * from audit_log where seq in (${seqs.join(',')})`).all() as Array<Record<string, unknown>>;
    raw.exec(edit);
    raw.close();
    try {
      return await verify(await exported());
    } finally {
      const back = new Database(file);
      back.prepare(`delete from audit_log where seq in (${seqs.join(',')})`).run();
      const insert = back.prepare('insert into audit_log (seq, at, type, request_id, actor_type, actor_id, actor_name, data) values (@seq, @at, @type, @request_id, @actor_type, @actor_id, @actor_name, @data)');
      for (const row of saved) insert.run(row);
      back.close();
    }
  }

  it('names the entry whose row was edited, deleted or swapped', async () => {
    const faultOf = (r: TrailResult) => (r.ok ? null : { code: r.fault.code, seq: r.fault.seq });
    expect(faultOf(await tampered([40], `update audit_log set data = '{"forged":true}' where seq = 40`))).toEqual({ code: 'LEAF_MISMATCH', seq: 40 });
    expect(faultOf(await tampered([41], `update audit_log set data = replace(data, '"', '''') where seq = 41`))).toEqual({ code: 'LEAF_MISMATCH', seq: 41 });
    expect(faultOf(await tampered([17], `update audit_log set actor_name = 'mallory' where seq = 17`))).toEqual({ code: 'LEAF_MISMATCH', seq: 17 });
    expect(faultOf(await tampered([23], `update audit_log set at = at + 1 where seq = 23`))).toEqual({ code: 'LEAF_MISMATCH', seq: 23 });
    expect(faultOf(await tampered([31], 'delete from audit_log where seq = 31'))).toEqual({ code: 'SEQUENCE', seq: 31 });
    expect(
      faultOf(await tampered([50, 51], 'update audit_log set data = case seq when 50 then (select data from audit_log where seq = 51) else (select data from audit_log where seq = 50) end where seq in (50, 51)')),
    ).toEqual({ code: 'LEAF_MISMATCH', seq: 50 });
    // Every row back as it was: the trail verifies again.
    expect(await verify(await exported())).toMatchObject({ ok: true });
  });
});

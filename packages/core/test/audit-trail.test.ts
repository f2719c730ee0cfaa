/** The trail format and its verifier, on trails built here with node:crypto's SHA-256 and Ed25519. */
import { createHash, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CompactTree,
  TrailVerifier,
  auditLeafJson,
  checkpointMessage,
  keyIdOf,
  merkleHasher,
  toBase64,
  trailCheckpointLine,
  trailEntryLine,
  trailHeaderLine,
  utf8,
  type AuditLeaf,
  type SignedCheckpoint,
  type TrailResult,
} from '../src/index.ts';

const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());
const hasher = merkleHasher(sha256);

function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyId = keyIdOf(sha256, new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })));
  return { privateKey, publicKey, keyId };
}

const KEY = keyPair();

function entry(seq: number): AuditLeaf {
  return {
    seq,
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
    type: seq % 2 ? 'created' : 'approved',
    requestId: `req_${seq}`,
    actor: { type: 'agent', id: 'agt_1', name: 'soc-bot' },
    data: { n: seq, note: 'é ✓ "quoted"' },
  };
}

/** A trail of `n` entries with a checkpoint after every `every` entries and one at the end. */
function trail(n: number, every: number, key: { privateKey: KeyObject; keyId: string } = KEY): string[] {
  const tree = new CompactTree(hasher);
  const body: string[] = [];
  let checkpoints = 0;
  for (let seq = 1; seq <= n; seq++) {
    const json = auditLeafJson(entry(seq));
    const leafHash = hasher.hashLeaf(utf8(json));
    tree.append(leafHash);
    body.push(trailEntryLine(json, leafHash));
    if (seq % every === 0 || seq === n) {
      const cp = { treeSize: seq, rootHash: toBase64(tree.root()), timestamp: new Date(Date.UTC(2026, 0, 1, 1, 0, seq)).toISOString() };
      const signature = toBase64(sign(null, checkpointMessage(cp), key.privateKey));
      body.push(trailCheckpointLine({ ...cp, keyId: key.keyId, signature }));
      checkpoints++;
    }
  }
  return [trailHeaderLine({ treeSize: n, checkpoints, keyId: key.keyId }), ...body];
}

function check(lines: readonly string[], options: { publicKey?: KeyObject; keyId?: string; endsWithNewline?: boolean } = {}): TrailResult {
  const publicKey = options.publicKey ?? KEY.publicKey;
  const verifier = new TrailVerifier({
    hasher,
    keyId: options.keyId ?? keyIdOf(sha256, new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }))),
    verifySignature: (message, signature) => verify(null, message, publicKey, signature),
  });
  for (const line of lines) if (!verifier.push(line)) break;
  return verifier.finish({ endsWithNewline: options.endsWithNewline ?? true });
}

function fault(result: TrailResult) {
  if (result.ok) throw new Error('expected the trail to fail verification');
  return result.fault;
}

describe('audit leaves', () => {
  it('are canonical JSON of exactly the six fields', () => {
    expect(auditLeafJson({ ...entry(1), extra: 'dropped' } as AuditLeaf)).toBe(
      '{"actor":{"id":"agt_1","name":"soc-bot","type":"agent"},"at":"2026-01-01T00:00:01.000Z","data":{"n":1,"note":"é ✓ \\"quoted\\""},"requestId":"req_1","seq":1,"type":"created"}',
    );
  });
});

describe('trail verifier', () => {
  it('accepts an untouched trail and reports its size, root and checkpoints', () => {
    const lines = trail(25, 10);
    const result = check(lines);
    expect(result).toMatchObject({ ok: true, treeSize: 25, checkpoints: 3 });
    const tree = new CompactTree(hasher);
    for (let seq = 1; seq <= 25; seq++) tree.append(hasher.hashLeaf(utf8(auditLeafJson(entry(seq)))));
    expect(result.ok && result.rootHash).toBe(toBase64(tree.root()));
  });

  it('hashes the bytes it was given, when given', () => {
    const lines = trail(5, 5);
    const verifier = new TrailVerifier({ hasher, keyId: KEY.keyId, verifySignature: (m, s) => verify(null, m, KEY.publicKey, s) });
    for (const line of lines) verifier.push(line, utf8(line));
    expect(verifier.finish().ok).toBe(true);
  });

  it('accepts an empty trail', () => {
    expect(check([trailHeaderLine({ treeSize: 0, checkpoints: 0, keyId: KEY.keyId })])).toMatchObject({ ok: true, treeSize: 0 });
  });

  it('names the altered entry when its content changed', () => {
    const lines = trail(25, 10);
    lines[7] = lines[7]!.replace('"n":7', '"n":8');
    expect(fault(check(lines))).toMatchObject({ code: 'LEAF_MISMATCH', line: 8, seq: 7 });
  });

  it('bounds an altered entry between checkpoints when its leafHash was recomputed too', () => {
    const lines = trail(25, 10);
    const altered = auditLeafJson({ ...entry(14), type: 'rejected' });
    lines[15] = trailEntryLine(altered, hasher.hashLeaf(utf8(altered))); // header + 13 entries + 1 checkpoint before seq 14
    expect(fault(check(lines))).toMatchObject({ code: 'ROOT_MISMATCH', line: 23, seq: 11 });
  });

  it('names a deleted, repeated or reordered entry', () => {
    const lines = trail(12, 5);
    expect(fault(check(lines.filter((_, i) => i !== 3)))).toMatchObject({ code: 'SEQUENCE', line: 4, seq: 3 });
    const swapped = lines.slice();
    [swapped[2], swapped[4]] = [swapped[4]!, swapped[2]!];
    expect(fault(check(swapped))).toMatchObject({ code: 'SEQUENCE', line: 3 });
    expect(fault(check([...lines.slice(0, 3), lines[2]!, ...lines.slice(3)])).message).toMatch(/seq 2 is out of order or repeated/);
  });

  it('refuses a trail signed by another key, naming the first place that shows it', () => {
    const other = keyPair();
    expect(fault(check(trail(12, 5, other)))).toMatchObject({ code: 'KEY_MISMATCH', line: 1 });
    // Same key id claimed, other signatures: the first checkpoint fails.
    expect(fault(check(trail(12, 5, { privateKey: other.privateKey, keyId: KEY.keyId })))).toMatchObject({ code: 'BAD_SIGNATURE', line: 7 });
  });

  it('refuses a cut-short trail: missing entries, a missing final checkpoint, a missing newline', () => {
    const lines = trail(12, 5);
    expect(fault(check(lines.slice(0, 9)))).toMatchObject({ code: 'TRUNCATED', line: 9, seq: 8 });
    expect(fault(check(lines.slice(0, -1)))).toMatchObject({ code: 'UNCOVERED', line: lines.length - 1, seq: 11 });
    expect(fault(check([trailHeaderLine({ treeSize: 12, checkpoints: 4, keyId: KEY.keyId }), ...lines.slice(1)]))).toMatchObject({ code: 'TRUNCATED', line: 1 });
    expect(fault(check(lines, { endsWithNewline: false }))).toMatchObject({ code: 'TRUNCATED', line: lines.length });
    expect(fault(check([]))).toMatchObject({ code: 'TRUNCATED', line: 1 });
  });

  it('refuses entries that no checkpoint covers', () => {
    const lines = trail(12, 5);
    const header = trailHeaderLine({ treeSize: 12, checkpoints: 2, keyId: KEY.keyId });
    expect(fault(check([header, ...lines.slice(1, -1)]))).toMatchObject({ code: 'UNCOVERED', seq: 11 });
  });

  it('refuses a misplaced checkpoint and any non-canonical line', () => {
    const lines = trail(12, 5);
    const moved = lines.slice();
    [moved[6], moved[7]] = [moved[7]!, moved[6]!]; // the checkpoint for 5 after entry 6
    expect(fault(check(moved))).toMatchObject({ code: 'CHECKPOINT_PLACEMENT', line: 8 });
    const spaced = lines.slice();
    spaced[6] = spaced[6]!.replace('"kind":', '"kind": ');
    expect(fault(check(spaced))).toMatchObject({ code: 'MALFORMED', line: 7 });
    const cp = JSON.parse(lines[6]!) as SignedCheckpoint;
    const sig = cp.signature;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    // Differs only in padding bits: lenient base64 decoders read the same signature.
    const sibling = sig.slice(0, 85) + alphabet[alphabet.indexOf(sig[85]!) ^ 1]! + '==';
    const lenient = lines.slice();
    lenient[6] = lines[6]!.replace(sig, sibling);
    expect(fault(check(lenient))).toMatchObject({ code: 'MALFORMED', line: 7 });
  });
});

it('key ids are the SPKI fingerprint', () => {
  const spki = new Uint8Array(createPublicKey(KEY.privateKey).export({ type: 'spki', format: 'der' }));
  expect(KEY.keyId).toMatch(/^[0-9a-f]{16}$/);
  expect(keyIdOf(sha256, spki)).toBe(KEY.keyId);
});

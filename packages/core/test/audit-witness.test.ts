/**
 * Witnessed history, pure parts: checkpoint notes (C2SP signed-note style) with vectors written
 * here, the signer's state file format, the extension rule, and pinned / signed-retention
 * verification of an exported trail.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CompactTree,
  MemoryTree,
  TrailVerifier,
  auditLeafJson,
  checkExtension,
  checkpointMessage,
  checkpointNote,
  ed25519RawKey,
  emptySignerState,
  formatNote,
  inclusionSides,
  keyIdOf,
  merkleHasher,
  noteKeyHash,
  parseCheckpointNote,
  parseNote,
  parseSignerState,
  retentionMessage,
  signerStateJson,
  toBase64,
  trailBaseLine,
  trailCheckpointLine,
  trailEntryLine,
  trailHeaderLine,
  utf8,
  verifyInclusion,
  type SignedCheckpoint,
  type TrailResult,
} from '../src/index.ts';

const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());
const hasher = merkleHasher(sha256);

/** A fixed key (seed 07×32), so the vectors below never change. */
const SEED = Buffer.alloc(32, 7);
const FIXED = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), SEED]), format: 'der', type: 'pkcs8' });
const FIXED_SPKI = new Uint8Array(createPublicKey(FIXED).export({ type: 'spki', format: 'der' }));
const FIXED_KEY = { keyId: keyIdOf(sha256, FIXED_SPKI), rawPublicKey: ed25519RawKey(FIXED_SPKI)! };

const VECTOR_CP: SignedCheckpoint = {
  treeSize: 1500,
  rootHash: 'SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=',
  timestamp: '2026-12-01T09:00:00.000Z',
  keyId: '324be2dea8bc4446',
  signature: 'RSMtXm7jsM4Ame5bcVdUfDvir1qOm4Y0hQUZAUdFdlEJGyrHumMvv6K1R33Y9fX51icaf5DSGXccLuuISa1LDw==',
};
const VECTOR_NOTE =
  'countersign.audit.checkpoint/v1\n1500\nSBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=\n2026-12-01T09:00:00.000Z\n\n' +
  '— countersign.audit.324be2dea8bc4446 WUYdGUUjLV5u47DOAJnuW3FXVHw74q9ajpuGNIUFGQFHRXZRCRsqx7pjL7+itUd92PX1+dYnGn+Q0hl3HC7riEmtSw8=\n';

describe('checkpoint notes', () => {
  it('match the vector: the key id, the C2SP key hash and the Ed25519 signature, byte for byte', () => {
    expect(FIXED_KEY.keyId).toBe('324be2dea8bc4446');
    // The key hash by the C2SP rule, computed independently: SHA-256(name ‖ \n ‖ 0x01 ‖ key)[0:4].
    const name = 'countersign.audit.324be2dea8bc4446';
    const expected = createHash('sha256').update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([1]), FIXED_KEY.rawPublicKey])).digest().subarray(0, 4);
    expect(Buffer.from(noteKeyHash(sha256, name, FIXED_KEY.rawPublicKey))).toEqual(expected);
    expect(sign(null, checkpointMessage(VECTOR_CP), FIXED).toString('base64')).toBe(VECTOR_CP.signature);
    expect(checkpointNote(sha256, VECTOR_CP, FIXED_KEY)).toBe(VECTOR_NOTE);
    expect(parseCheckpointNote(sha256, VECTOR_NOTE, FIXED_KEY)).toEqual({ ok: true, checkpoint: VECTOR_CP });
    // The note's text is exactly the signed checkpoint message.
    const parsed = parseNote(VECTOR_NOTE);
    expect(parsed.ok && Buffer.from(parsed.note.text)).toEqual(Buffer.from(checkpointMessage(VECTOR_CP)));
  });

  it('ignore other signers, and find the trusted key by name and key hash', () => {
    const cosigned = `${VECTOR_NOTE}— witness.example.org AAAAAQ${'A'.repeat(84)}==\n`;
    expect(parseCheckpointNote(sha256, cosigned, FIXED_KEY)).toEqual({ ok: true, checkpoint: VECTOR_CP });
    const other = generateKeyPairSync('ed25519').publicKey;
    const otherSpki = new Uint8Array(other.export({ type: 'spki', format: 'der' }));
    const otherKey = { keyId: keyIdOf(sha256, otherSpki), rawPublicKey: ed25519RawKey(otherSpki)! };
    expect(parseCheckpointNote(sha256, VECTOR_NOTE, otherKey)).toMatchObject({ ok: false, reason: expect.stringMatching(/no signature by the trusted key/) });
    // Same name, another key hash: not ours.
    const wrongHash = VECTOR_NOTE.replace('WUYdGU', 'AAAAAE');
    expect(parseCheckpointNote(sha256, wrongHash, FIXED_KEY).ok).toBe(false);
  });

  it('refuse every other spelling', () => {
    const bad: Array<[string, string]> = [
      ['no blank line', VECTOR_NOTE.replace('\n\n', '\n')],
      ['CRLF', VECTOR_NOTE.replaceAll('\n', '\r\n')],
      ['no final newline', VECTOR_NOTE.slice(0, -1)],
      ['a second blank line', VECTOR_NOTE.replace('1500\n', '1500\n\n')],
      ['no signature', VECTOR_NOTE.slice(0, VECTOR_NOTE.indexOf('—'))],
      ['hyphen instead of em dash', VECTOR_NOTE.replace('— ', '- ')],
      ['non-canonical base64', VECTOR_NOTE.replace('Sw8=\n', 'Sw9=\n')],
      ['leading zero size', VECTOR_NOTE.replace('\n1500\n', '\n01500\n')],
      ['another origin', VECTOR_NOTE.replace('checkpoint/v1', 'checkpoint/v2')],
      ['an extra line', VECTOR_NOTE.replace('.000Z\n', '.000Z\nextra\n')],
      ['a control character', VECTOR_NOTE.replace('1500', '15\u000000')],
      ['a lone surrogate', VECTOR_NOTE.replace('countersign.audit.checkpoint/v1', 'countersign.audit.checkpoint/v1\ud800')],
      ['a second line for the key', VECTOR_NOTE + VECTOR_NOTE.slice(VECTOR_NOTE.indexOf('—'))],
      ['oversize', VECTOR_NOTE + `— x ${'A'.repeat(20_000)}\n`],
      ['a space in the name', VECTOR_NOTE.replace('countersign.audit.324be', 'counter sign.audit.324be')],
      ['short root', VECTOR_NOTE.replace('SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=', 'SBNJ')],
    ];
    for (const [what, note] of bad) expect(parseCheckpointNote(sha256, note, FIXED_KEY).ok, what).toBe(false);
    expect(() => formatNote({ text: 'no newline', signatures: [] })).toThrow(TypeError);
  });

  it('carry a signature that verifies only over the exact note text', () => {
    const parsed = parseCheckpointNote(sha256, VECTOR_NOTE, FIXED_KEY);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const pub = createPublicKey(FIXED);
    expect(verify(null, checkpointMessage(parsed.checkpoint), pub, Buffer.from(parsed.checkpoint.signature, 'base64'))).toBe(true);
    const moved = parseCheckpointNote(sha256, VECTOR_NOTE.replace('\n1500\n', '\n1501\n'), FIXED_KEY);
    expect(moved.ok && verify(null, checkpointMessage(moved.checkpoint), pub, Buffer.from(moved.checkpoint.signature, 'base64'))).toBe(false);
  });
});

describe('signer state', () => {
  it('round-trips, and refuses anything damaged rather than reading it as "nothing signed"', () => {
    const state = { keyId: VECTOR_CP.keyId, treeSize: 1500, rootHash: VECTOR_CP.rootHash, checkpoint: VECTOR_CP };
    const text = signerStateJson(state);
    expect(parseSignerState(text)).toEqual({ ok: true, state });
    expect(parseSignerState(signerStateJson(emptySignerState(hasher, VECTOR_CP.keyId)))).toMatchObject({ ok: true, state: { treeSize: 0, checkpoint: null } });
    for (const damaged of [
      '',
      text.slice(0, -10),
      text.replace('"treeSize":1500}', '"treeSize":1499}'),
      text.replace('countersign-signer-state/v1', 'v2'),
      text.replace(/"checkpoint":\{[^}]*\}/, '"checkpoint":null'),
      text.replace('{"checkpoint"', '{"extra":1,"checkpoint"'),
      text.replace(`"keyId":"${VECTOR_CP.keyId}","rootHash"`, '"keyId":"0000000000000000","rootHash"'),
    ]) {
      expect(parseSignerState(damaged).ok, damaged).toBe(false);
    }
  });
});

describe('the extension rule', () => {
  const tree = new MemoryTree(hasher);
  for (let i = 0; i < 37; i++) tree.append(hasher.hashLeaf(utf8(`leaf ${i}`)));
  const head = (n: number) => ({ treeSize: n, rootHash: toBase64(tree.root(n)) });
  const proof = (a: number, b: number) => tree.consistencyProof(a, b).map(toBase64);

  it('accepts every honest extension, and equal trees', () => {
    for (const [a, b] of [[0, 5], [1, 37], [16, 32], [17, 37], [36, 37], [37, 37]] as const) {
      expect(checkExtension(hasher, head(a), head(b), proof(a, b)), `${a}→${b}`).toEqual({ ok: true });
    }
  });

  it('refuses a rewritten prefix, a shrunk tree and a different root at the same size', () => {
    const forged = new MemoryTree(hasher);
    for (let i = 0; i < 37; i++) forged.append(hasher.hashLeaf(utf8(i === 3 ? 'forged' : `leaf ${i}`)));
    const forgedHead = { treeSize: 37, rootHash: toBase64(forged.root()) };
    expect(checkExtension(hasher, head(20), forgedHead, forged.consistencyProof(20, 37).map(toBase64))).toMatchObject({ ok: false, reason: expect.stringMatching(/rewritten/) });
    expect(checkExtension(hasher, head(20), head(19), [])).toMatchObject({ ok: false, reason: expect.stringMatching(/shrank/) });
    expect(checkExtension(hasher, head(37), forgedHead, [])).toMatchObject({ ok: false, reason: expect.stringMatching(/another root/) });
    expect(checkExtension(hasher, head(20), head(37), ['not base64'])).toMatchObject({ ok: false });
  });
});

describe('inclusion sides (the SDK folds them with WebCrypto)', () => {
  it('agree with verifyInclusion for every leaf of every tree up to 40', () => {
    for (let size = 1; size <= 40; size++) {
      const tree = new MemoryTree(hasher);
      for (let i = 0; i < size; i++) tree.append(hasher.hashLeaf(utf8(`l${i}`)));
      for (let index = 0; index < size; index++) {
        const path = tree.inclusionProof(index);
        const sides = inclusionSides(index, size, path.length)!;
        let r = tree.leafHash(index);
        sides.forEach((side, i) => (r = side === 'left' ? hasher.hashChildren(path[i]!, r) : hasher.hashChildren(r, path[i]!)));
        expect(Buffer.from(r)).toEqual(Buffer.from(tree.root()));
        expect(verifyInclusion(hasher, index, size, tree.leafHash(index), path, tree.root()).ok).toBe(true);
        expect(inclusionSides(index, size, path.length + 1)).toBeNull();
        if (path.length > 0) expect(inclusionSides(index, size, path.length - 1)).toBeNull();
      }
    }
  });
});

// ---- pinned verification and signed retention over exported trails built here ----

function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, keyId: keyIdOf(sha256, new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }))) };
}
const KEY = keyPair();

function leaf(seq: number, note = 'ok') {
  return auditLeafJson({ seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), type: 'approved', requestId: `req_${seq}`, actor: { type: 'operator', id: 'op_1', name: 'alice' }, data: { note } });
}

/** Entries 1…n, a checkpoint every `every`; `edit` changes one entry (then re-signs, as a key holder could). */
function build(n: number, every: number, options: { edit?: number; prunedTo?: number; signBase?: boolean; key?: { privateKey: KeyObject; keyId: string } } = {}) {
  const key = options.key ?? KEY;
  const tree = new CompactTree(hasher);
  const lines: string[] = [];
  const checkpoints: SignedCheckpoint[] = [];
  const pruned = options.prunedTo ?? 0;
  for (let seq = 1; seq <= n; seq++) {
    const json = leaf(seq, seq === options.edit ? 'forged' : 'ok');
    const h = hasher.hashLeaf(utf8(json));
    tree.append(h);
    if (seq === pruned) {
      const frontier = tree.hashes.map(toBase64);
      const timestamp = '2026-06-01T00:00:00.000Z';
      const signature = toBase64(sign(null, retentionMessage({ prunedTo: seq, frontier, timestamp }), key.privateKey));
      lines.push(options.signBase === false ? JSON.stringify({ frontier, kind: 'base', treeSize: seq }) : trailBaseLine({ prunedTo: seq, frontier, timestamp, keyId: key.keyId, signature }));
    }
    if (seq > pruned) lines.push(trailEntryLine(json, h));
    if (seq % every === 0 || seq === n) {
      const body = { treeSize: seq, rootHash: toBase64(tree.root()), timestamp: new Date(Date.UTC(2026, 0, 2, 0, 0, seq)).toISOString() };
      const cp = { ...body, keyId: key.keyId, signature: toBase64(sign(null, checkpointMessage(body), key.privateKey)) };
      checkpoints.push(cp);
      if (seq >= pruned) lines.push(trailCheckpointLine(cp));
    }
  }
  const inFile = checkpoints.filter((c) => c.treeSize >= pruned).length;
  return { lines: [trailHeaderLine({ treeSize: n, checkpoints: inFile, keyId: key.keyId }), ...lines], checkpoints };
}

function run(lines: string[], pinned: SignedCheckpoint[] = [], skipPrunedPins = false): TrailResult {
  const v = new TrailVerifier({ hasher, keyId: KEY.keyId, verifySignature: (m, s) => verify(null, m, KEY.publicKey, s), pinned, skipPrunedPins });
  for (const l of lines) if (!v.push(l)) break;
  return v.finish();
}

describe('pinned verification', () => {
  const honest = build(40, 10);

  it('passes when the trail extends every pinned checkpoint', () => {
    expect(run(honest.lines, honest.checkpoints.slice(0, 2))).toMatchObject({ ok: true, treeSize: 40, pinned: 2, entriesVerified: 40, prunedTo: 0, prunedAt: null });
  });

  it('attack (a): history rewritten and re-signed by a key holder — caught by a pin taken before', () => {
    const forged = build(40, 10, { edit: 7 });
    expect(run(forged.lines)).toMatchObject({ ok: true }); // alone, a consistently re-signed forgery verifies…
    const r = run(forged.lines, [honest.checkpoints[0]!]); // …pinned to the witness's size-10 checkpoint, it does not
    expect(r).toMatchObject({ ok: false, fault: { code: 'FORK', seq: 10 } });
  });

  it('attack (c): an export cut back to an earlier checkpoint — caught with a later pin', () => {
    const cut = build(20, 10);
    expect(run(cut.lines)).toMatchObject({ ok: true, treeSize: 20 });
    expect(run(cut.lines, [honest.checkpoints[3]!])).toMatchObject({ ok: false, fault: { code: 'PIN_NOT_REACHED', seq: 21 } });
  });

  it('refuses pins not signed by the trusted key, two pins that fork, and pins it cannot show from a pruned export', () => {
    const other = keyPair();
    const foreign = build(40, 10, { key: other }).checkpoints[0]!;
    expect(run(honest.lines, [foreign])).toMatchObject({ ok: false, fault: { code: 'KEY_MISMATCH' } });
    expect(run(honest.lines, [{ ...foreign, keyId: KEY.keyId }])).toMatchObject({ ok: false, fault: { code: 'BAD_SIGNATURE' } });
    const forkPin = build(40, 10, { edit: 3 }).checkpoints[0]!;
    expect(run(honest.lines, [honest.checkpoints[0]!, forkPin])).toMatchObject({ ok: false, fault: { code: 'FORK' } });
    const pruned = build(40, 10, { prunedTo: 20 });
    expect(run(pruned.lines, [pruned.checkpoints[0]!])).toMatchObject({ ok: false, fault: { code: 'PIN_PRUNED' } });
    expect(run(pruned.lines, [pruned.checkpoints[1]!, pruned.checkpoints[3]!])).toMatchObject({ ok: true, pinned: 2, pinsSkipped: [] });
  });

  it('with skipPrunedPins, a pin in the pruned prefix is skipped and reported, never counted; pins after it still bind', () => {
    const pruned = build(40, 10, { prunedTo: 20 });
    expect(run(pruned.lines, [pruned.checkpoints[0]!, pruned.checkpoints[3]!], true)).toMatchObject({ ok: true, pinned: 1, pinsSkipped: [10] });
    // A skipped pin is still checked for its signature: a forged one is refused, not skipped.
    expect(run(pruned.lines, [{ ...pruned.checkpoints[0]!, rootHash: pruned.checkpoints[1]!.rootHash }], true)).toMatchObject({ ok: false, fault: { code: 'BAD_SIGNATURE' } });
    // And a later pin that the trail does not extend still fails.
    const forked = build(40, 10, { edit: 33 });
    expect(run(pruned.lines, [pruned.checkpoints[0]!, forked.checkpoints[3]!], true)).toMatchObject({ ok: false, fault: { code: 'FORK' } });
  });
});

describe('signed retention', () => {
  it('reports the pruning, its date, and counts only entries that still exist', () => {
    const pruned = build(40, 10, { prunedTo: 20 });
    expect(run(pruned.lines)).toMatchObject({ ok: true, treeSize: 40, prunedTo: 20, prunedAt: '2026-06-01T00:00:00.000Z', entriesVerified: 20 });
  });

  it('attack (b): a base no signed statement covers (rows deleted, the mark moved) is refused', () => {
    expect(run(build(40, 10, { prunedTo: 20, signBase: false }).lines)).toMatchObject({ ok: false, fault: { code: 'UNSIGNED_BASE', line: 2 } });
    // A statement signed by another key, or for another size, is no cover either.
    const other = keyPair();
    const foreign = build(40, 10, { prunedTo: 20, key: other }).lines[1]!;
    const lines = build(40, 10, { prunedTo: 20 }).lines;
    expect(run([lines[0]!, foreign, ...lines.slice(2)])).toMatchObject({ ok: false, fault: { code: 'KEY_MISMATCH', line: 2 } });
    const moved = lines[1]!.replace('"treeSize":20', '"treeSize":30');
    expect(run([lines[0]!, moved, ...lines.slice(2)])).toMatchObject({ ok: false, fault: { line: 2 } });
  });
});

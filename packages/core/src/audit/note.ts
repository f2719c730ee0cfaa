/**
 * Checkpoints as signed notes, for witnesses: the C2SP signed-note shape (a text, a blank line,
 * one signature line per signer) around the C2SP tlog-checkpoint body (origin, size, base64 root,
 * then extension lines). Countersign's checkpoint message (`checkpointMessage`) already is such
 * a body, with the signing time as its one extension line, so a note carries exactly the bytes
 * and the Ed25519 signature the trail stores: nothing is signed twice.
 *
 *   countersign.audit.checkpoint/v1
 *   1500
 *   q1Wl…=
 *   2026-12-01T09:00:00.000Z
 *
 *   — countersign.audit.3f2a9c0d1e2b4a5c <base64(key hash ‖ signature)>
 *
 * The key hash is the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ raw Ed25519 public key), the
 * C2SP rule for Ed25519 keys, so a note verifier can pick the line meant for a key without trying
 * every signature. Parsing is strict: one spelling per note, so a note that parses and verifies
 * cannot be re-spelled unnoticed. Pure: the hash is passed in.
 */
import { bytesEqual, fromBase64, fromBase64Of, toBase64, utf8 } from './bytes.ts';
import type { HashFn } from './merkle.ts';
import { CHECKPOINT_ORIGIN, checkpointMessage, originProblem, type SignedCheckpoint } from './signed.ts';

/** The em dash and space that open a signature line. */
export const NOTE_SIGNATURE_PREFIX = '\u2014 ';
/** Longest note accepted, in characters: a checkpoint note is a few hundred. */
export const NOTE_MAX_LENGTH = 16_384;
const MAX_SIGNATURES = 64;

export interface NoteSignature {
  /** The key's name: no whitespace, no `+`. */
  name: string;
  /** 4 bytes naming the key (see `noteKeyHash`). */
  keyHash: Uint8Array;
  signature: Uint8Array;
}

export interface Note {
  /** The signed text: every line ends with a newline. */
  text: string;
  signatures: NoteSignature[];
}

export type NoteParse = { ok: true; note: Note } | { ok: false; reason: string };

const NAME = /^[^\s+]{1,128}$/u;

/** The DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = new Uint8Array([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);

/** The raw 32-byte Ed25519 key inside its SubjectPublicKeyInfo (DER), or null if it is not one. */
export function ed25519RawKey(spki: Uint8Array): Uint8Array | null {
  if (spki.length !== ED25519_SPKI_PREFIX.length + 32) return null;
  if (!bytesEqual(spki.subarray(0, ED25519_SPKI_PREFIX.length), ED25519_SPKI_PREFIX)) return null;
  return spki.slice(ED25519_SPKI_PREFIX.length);
}

/** The note key name of a Countersign audit key: `countersign.audit.<keyId>`. */
export function noteKeyName(keyId: string): string {
  return `countersign.audit.${keyId}`;
}

/** C2SP key hash of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[0:4]. */
export function noteKeyHash(hash: HashFn, name: string, rawPublicKey: Uint8Array): Uint8Array {
  const nameBytes = utf8(name);
  const buf = new Uint8Array(nameBytes.length + 2 + rawPublicKey.length);
  buf.set(nameBytes, 0);
  buf[nameBytes.length] = 0x0a;
  buf[nameBytes.length + 1] = 0x01;
  buf.set(rawPublicKey, nameBytes.length + 2);
  return hash(buf).slice(0, 4);
}

/** A note from its text and signatures. Throws on a text or name a parser would refuse. */
export function formatNote(note: Note): string {
  const problem = textProblem(note.text);
  if (problem) throw new TypeError(`formatNote: ${problem}`);
  let out = `${note.text}\n`;
  for (const s of note.signatures) {
    if (!NAME.test(s.name)) throw new TypeError(`formatNote: bad key name ${JSON.stringify(s.name)}`);
    if (s.keyHash.length !== 4) throw new TypeError('formatNote: a key hash is 4 bytes');
    const blob = new Uint8Array(4 + s.signature.length);
    blob.set(s.keyHash, 0);
    blob.set(s.signature, 4);
    out += `${NOTE_SIGNATURE_PREFIX}${s.name} ${toBase64(blob)}\n`;
  }
  return out;
}

function textProblem(text: string): string | null {
  if (text.length === 0 || !text.endsWith('\n')) return 'the text must be non-empty and end with a newline';
  if (text.includes('\n\n') || text.startsWith('\n')) return 'the text has an empty line';
  // No control characters but the newline; no lone surrogates (not UTF-8).
  if (/[\u0000-\u0009\u000b-\u001f\u007f]/.test(text)) return 'the text holds a control character';
  if (hasLoneSurrogate(text)) return 'the text is not well-formed Unicode';
  return null;
}

function hasLoneSurrogate(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

/** Parses a signed note (strict: exactly one newline at the end, every signature line well formed). */
export function parseNote(input: string): NoteParse {
  if (typeof input !== 'string') return { ok: false, reason: 'a note is text' };
  if (input.length > NOTE_MAX_LENGTH) return { ok: false, reason: `the note is longer than ${NOTE_MAX_LENGTH} characters` };
  const split = input.lastIndexOf('\n\n');
  if (split < 0) return { ok: false, reason: 'no blank line between the text and its signatures' };
  const text = input.slice(0, split + 1);
  const problem = textProblem(text);
  if (problem) return { ok: false, reason: problem };
  const rest = input.slice(split + 2);
  if (rest.length === 0 || !rest.endsWith('\n')) return { ok: false, reason: 'the note has no signature line, or its last line has no newline' };
  const lines = rest.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) return { ok: false, reason: `more than ${MAX_SIGNATURES} signatures` };
  const signatures: NoteSignature[] = [];
  for (const [i, line] of lines.entries()) {
    if (!line.startsWith(NOTE_SIGNATURE_PREFIX)) return { ok: false, reason: `signature line ${i + 1} does not start with "— "` };
    const parts = line.slice(NOTE_SIGNATURE_PREFIX.length).split(' ');
    if (parts.length !== 2 || !NAME.test(parts[0]!)) return { ok: false, reason: `signature line ${i + 1} is not "— <name> <base64>"` };
    const blob = fromBase64(parts[1]!);
    if (!blob || blob.length < 5) return { ok: false, reason: `signature line ${i + 1} has no canonical base64 key hash and signature` };
    signatures.push({ name: parts[0]!, keyHash: blob.slice(0, 4), signature: blob.slice(4) });
  }
  return { ok: true, note: { text, signatures } };
}

export interface NoteKey {
  /** Countersign key id (16 hex digits of SHA-256 of the SPKI). */
  keyId: string;
  /** Raw 32-byte Ed25519 public key. */
  rawPublicKey: Uint8Array;
}

/** A signed checkpoint as a note signed by `key` (the signature is the checkpoint's own). */
export function checkpointNote(hash: HashFn, cp: SignedCheckpoint, key: NoteKey): string {
  if (cp.keyId !== key.keyId) throw new TypeError(`checkpointNote: the checkpoint is signed by ${cp.keyId}, not ${key.keyId}`);
  const signature = fromBase64(cp.signature);
  if (!signature) throw new TypeError('checkpointNote: the signature is not base64');
  const name = noteKeyName(key.keyId);
  const text = new TextDecoder().decode(checkpointMessage(cp));
  return formatNote({ text, signatures: [{ name, keyHash: noteKeyHash(hash, name, key.rawPublicKey), signature }] });
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export type CheckpointNoteParse = { ok: true; checkpoint: SignedCheckpoint } | { ok: false; reason: string };

/**
 * The checkpoint a note carries, with the signature made by `key` (found by its name and key
 * hash). The signature itself is not checked here: verify `checkpointMessage(checkpoint)` with
 * the key, as for any checkpoint. Refuses a note of another origin, another key, or whose text
 * is not exactly the checkpoint message its fields make.
 */
export function parseCheckpointNote(hash: HashFn, input: string, key: NoteKey, signatureLength = 64): CheckpointNoteParse {
  const parsed = parseNote(input);
  if (!parsed.ok) return parsed;
  const lines = parsed.note.text.slice(0, -1).split('\n');
  const origin = lines[0]!;
  if (origin !== CHECKPOINT_ORIGIN && originProblem(origin) !== null) return { ok: false, reason: `the note's origin is neither a deployment's origin nor ${CHECKPOINT_ORIGIN}` };
  if (lines.length !== 4) return { ok: false, reason: 'a checkpoint note has four lines: origin, size, root, time' };
  const [, sizeText, rootHash, timestamp] = lines as [string, string, string, string];
  if (!/^(0|[1-9]\d{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) return { ok: false, reason: 'the tree size is not a whole number' };
  if (!fromBase64Of(rootHash, 32)) return { ok: false, reason: 'the root is not canonical base64 of 32 bytes' };
  if (!ISO.test(timestamp)) return { ok: false, reason: 'the time is not ISO 8601 UTC with milliseconds' };
  const name = noteKeyName(key.keyId);
  const keyHash = noteKeyHash(hash, name, key.rawPublicKey);
  const mine = parsed.note.signatures.filter((s) => s.name === name && bytesEqual(s.keyHash, keyHash));
  if (mine.length === 0) return { ok: false, reason: `the note carries no signature by the trusted key ${key.keyId}` };
  if (mine.length > 1) return { ok: false, reason: `the note carries more than one signature line for key ${key.keyId}` };
  if (mine[0]!.signature.length !== signatureLength) return { ok: false, reason: `the signature is not ${signatureLength} bytes` };
  const checkpoint: SignedCheckpoint = { ...(origin === CHECKPOINT_ORIGIN ? {} : { origin }), treeSize: Number(sizeText), rootHash, timestamp, keyId: key.keyId, signature: toBase64(mine[0]!.signature) };
  return { ok: true, checkpoint };
}

/**
 * The audit trail's read side and its signatures: signed checkpoints, inclusion and consistency
 * proofs (RFC 9162 shapes, camelCase), the JSON Lines export, and decision receipts. Entries
 * are written only by `Queries.appendAudit`, inside the engine's transactions, and folded into
 * the tree by the store's integrator (store/integrator.ts); this class settles (integrates what
 * committed before the call, bounded) and then signs and proves integrated entries only.
 */
import { AUDIT_EXEMPT_FIELDS } from './writer.ts';
import {
  CountersignError,
  consistencyProofRanges,
  createRedactor,
  payloadHash,
  inclusionProofRanges,
  receiptBody,
  receiptMessage,
  frontierNodes,
  fromBase64,
  toBase64,
  trailBaseLine,
  trailCheckpointLine,
  trailEntryLine,
  trailHeaderLine,
  trailHandoverLine,
  type SignedHandover,
  type Decision,
  type JsonObject,
  type Receipt,
  type ReceiptClaim,
  type Redactor,
  type SignedCheckpoint,
  type SignedRetention,
  canonicalJson,
} from '@countersign/core';
import { createHmac } from 'node:crypto';
import { AuditSigner } from './signer.ts';
import { recordedHandovers, requireNewestKey } from './keys.ts';
import { signerStateFor, type SignerStateStore } from './signer-state.ts';
import type { AuditEntry } from '../engine/engine.ts';
import type { Principal } from '../engine/principal.ts';
import type { AuditRow, Store } from '../store/store.ts';
import { sha256, type AuditKey } from './crypto.ts';
import { parseTime } from './reports.ts';
import { entryTime, leafJsonOf } from '../store/trail.ts';

export interface InclusionProof {
  seq: number;
  leafIndex: number;
  treeSize: number;
  /** The leaf's bytes (UTF-8 of this canonical JSON) hash to `leafHash`. */
  leaf: string;
  leafHash: string;
  rootHash: string;
  inclusionPath: string[];
  /** The signed checkpoint at `treeSize`, when there is one. */
  checkpoint: SignedCheckpoint | null;
}

export interface ConsistencyProof {
  treeSize1: number;
  treeSize2: number;
  rootHash1: string;
  rootHash2: string;
  consistencyPath: string[];
  checkpoint1: SignedCheckpoint | null;
  checkpoint2: SignedCheckpoint | null;
}

export interface AuditQuery {
  after?: number | undefined;
  cursor?: string | undefined;
  limit?: number | undefined;
  /** One event type or several, comma-separated. */
  type?: string | undefined;
  order?: 'oldest' | 'newest' | undefined;
  requestId?: string | undefined;
  actor?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

/** Entries per page when reading the trail for an export. */
const EXPORT_PAGE = 2000;

const iso = entryTime;

export class AuditService {
  #redactor: Redactor;

  /** Signs checkpoints and retention statements, only over trees that extend what it signed (audit/signer.ts). */
  readonly signer: AuditSigner;

  constructor(
    private readonly store: Store,
    readonly key: AuditKey,
    private readonly now: () => number,
    signerState: SignerStateStore = signerStateFor(key),
  ) {
    this.#redactor = this.#makeRedactor(undefined);
    this.signer = new AuditSigner(store, key, signerState, now);
  }

  #makeRedactor(fields: readonly string[] | undefined): Redactor {
    const secret = this.key.derive('redaction/v1');
    return createRedactor({
      ...(fields ? { fields } : {}),
      exempt: AUDIT_EXEMPT_FIELDS,
      tokenize: (kind, value) => createHmac('sha256', secret).update(`${kind}\u0000${value}`).digest('hex').slice(0, 20),
    });
  }

  /** Field names whose values are redacted whole (default: email, ip_address, user_id, phone_number and their camelCase). */
  setRedactedFields(fields: readonly string[] | undefined): void {
    this.#redactor = this.#makeRedactor(fields);
  }

  /** What an audit entry stores of `data`: personal data as keyed tokens (core `createRedactor`). */
  redact(data: unknown): unknown {
    return this.#redactor.redact(data);
  }

  /** The token a value is stored as, to look it up in the trail (`kind`: email, ip_address, user_id, phone_number, …). */
  redactionToken(kind: string, value: string): string {
    return this.#redactor.token(kind, value);
  }

  /** SHA-256 (hex) of the canonical `{action, args}`: what audit entries and receipts bind to. */
  payloadHash(action: string, args: JsonObject): string {
    return payloadHash(sha256, action, args);
  }

  /** The keys' chain: the current key and every hand-over (each signed by both its keys), oldest first. */
  async keyChain(): Promise<{ current: string; handovers: SignedHandover[] }> {
    const handovers = await recordedHandovers(this.store.auditKeys);
    const current = await this.store.auditKeys.current();
    return { current: current[0]?.keyId ?? this.key.keyId, handovers };
  }

  get publicKey(): { keyId: string; publicKeyPem: string } {
    return { keyId: this.key.keyId, publicKeyPem: this.key.publicKeyPem };
  }

  /**
   * Refuses a key that did not sign the trail's checkpoints: a server that lost its key file
   * must not silently start a trail nobody can verify end to end.
   */
  async checkKey(): Promise<void> {
    const latest = await this.store.trail.latestCheckpoint();
    // A key the record names is judged by the record (rotation: its newest key may not have signed yet).
    const recorded = await this.store.auditKeys.get(this.key.keyId);
    if (latest && latest.keyId !== this.key.keyId && recorded === undefined) {
      throw new CountersignError(
        'STORE_UNAVAILABLE',
        `the audit trail is signed by key ${latest.keyId}, but the audit key${this.key.path ? ` at ${this.key.path}` : ''} is ${this.key.keyId}; restore the original key file (COUNTERSIGN_AUDIT_KEY_PATH)`,
      );
    }
    // Only the newest key the trail names may run; a retired one (copied back, restored from a backup) never does.
    await requireNewestKey(this.store, this.key, this.now());
  }

  /** Tree size and root of what has committed. */
  async head(): Promise<{ treeSize: number; rootHash: string }> {
    await this.store.settleAudit();
    const tree = await this.store.trail.head();
    return { treeSize: tree.size, rootHash: toBase64(tree.root()) };
  }

  async latestCheckpoint(): Promise<(SignedCheckpoint & { createdAt: number }) | null> {
    return (await this.store.trail.latestCheckpoint()) ?? null;
  }

  /**
   * Signs the current head, unless a checkpoint already covers it — and only if the head extends
   * what the signer signed before (else `AUDIT_FORK`, see audit/signer.ts). Several servers on one
   * database may race: one checkpoint per tree size is stored, and everyone returns it.
   */
  async checkpoint(): Promise<SignedCheckpoint> {
    await this.settledForSigning();
    return (await this.signer.checkpoint())!;
  }

  /**
   * Signs a checkpoint when `every` entries have come since the last one, or `maxAgeMs` has
   * passed with any; otherwise still checks that the database's tree extends the signed one, so
   * a rewrite of an idle trail is noticed too.
   */
  async checkpointIfDue(every: number, maxAgeMs: number): Promise<SignedCheckpoint | null> {
    await this.settledForSigning();
    // "Due" counts from the signer's own state, not from the newest row a database writer may have planted.
    return this.signer.checkpoint({ due: { every, maxAgeMs } });
  }

  /**
   * A checkpoint must cover every entry committed before it was asked for: while one is still
   * pending (the integrator is stalled, or a session holds its lock), entries sit mutable in
   * audit_pending, and a signature over the smaller tree would hide that. Refuse, and say why.
   */
  private async settledForSigning(): Promise<void> {
    if (await this.store.settleAudit()) return;
    throw new CountersignError(
      'STORE_UNAVAILABLE',
      'audit entries committed before this checkpoint are not integrated yet (the integrator is stalled, or another session holds its lock): refusing to sign a checkpoint that would leave them out',
    );
  }

  private async checkSize(treeSize: number | undefined, what: string): Promise<number> {
    // Proofs and exports cover what committed before the call: integrated first (bounded wait).
    await this.store.settleAudit();
    const head = await this.store.trail.head();
    if (treeSize === undefined) return (await this.store.trail.latestCheckpoint())?.treeSize ?? head.size;
    if (treeSize > head.size) {
      throw new CountersignError('VALIDATION_FAILED', `${what} ${treeSize} is larger than the trail (${head.size} entries)`, { treeSize: head.size });
    }
    return treeSize;
  }

  /** Proof that entry `seq` is leaf `seq - 1` of the tree of `treeSize` (default: the latest checkpoint's). */
  async inclusionProof(seq: number, treeSizeIn?: number): Promise<InclusionProof> {
    const treeSize = await this.checkSize(treeSizeIn, 'treeSize');
    if (seq < 1 || seq > treeSize) {
      throw new CountersignError('VALIDATION_FAILED', `seq must be 1–${treeSize} for a tree of ${treeSize} entries`, { treeSize });
    }
    const index = seq - 1;
    const prunedTo = await this.store.trail.prunedTo();
    if (seq <= prunedTo) {
      throw new CountersignError('NOT_FOUND', `entry ${seq} was removed by retention (entries 1–${prunedTo}); the tree still commits to it, and consistency proofs still cover it`, { prunedTo });
    }
    const [hashes, entries, checkpoint] = await Promise.all([
      this.store.trail.rangeHashes([[index, index + 1], [0, treeSize], ...inclusionProofRanges(index, treeSize)]),
      this.store.trail.entries(seq, seq),
      this.store.trail.checkpointAt(treeSize),
    ]);
    const [leafHash, root, ...path] = hashes;
    const entry = entries[0];
    if (!entry || !leafHash || !root) throw new CountersignError('INTERNAL', `audit entry ${seq} is missing from the store`);
    return {
      seq,
      leafIndex: index,
      treeSize,
      leaf: leafJsonOf(entry),
      leafHash: toBase64(leafHash),
      rootHash: toBase64(root),
      inclusionPath: path.map(toBase64),
      checkpoint: checkpoint ?? null,
    };
  }

  /** Proof that the tree of `from` entries is a prefix of the tree of `to` (default: the latest checkpoint's). */
  async consistencyProof(from: number, toIn?: number): Promise<ConsistencyProof> {
    const to = await this.checkSize(toIn, 'to');
    if (from > to) throw new CountersignError('VALIDATION_FAILED', `from (${from}) must not exceed to (${to})`);
    const [hashes, checkpoint1, checkpoint2] = await Promise.all([
      this.store.trail.rangeHashes([[0, from], [0, to], ...consistencyProofRanges(from, to)]),
      this.store.trail.checkpointAt(from),
      this.store.trail.checkpointAt(to),
    ]);
    const [root1, root2, ...path] = hashes;
    return {
      treeSize1: from,
      treeSize2: to,
      rootHash1: toBase64(root1!),
      rootHash2: toBase64(root2!),
      consistencyPath: path.map(toBase64),
      checkpoint1: checkpoint1 ?? null,
      checkpoint2: checkpoint2 ?? null,
    };
  }

  /**
   * The trail up to `treeSize` (default: the latest checkpoint) as JSON Lines, for
   * `TrailVerifier`: a header, every entry with its stored leaf hash, and each checkpoint
   * right after the entry it covers. Streams page by page.
   */
  async *exportLines(treeSizeIn?: number): AsyncGenerator<string, void, undefined> {
    const treeSize = await this.checkSize(treeSizeIn, 'treeSize');
    // After retention the export starts from the compact tree at the prune point, signed there.
    const prunedTo = Math.min(await this.store.trail.prunedTo(), treeSize);
    const checkpoints = await this.store.trail.checkpoints(Math.max(1, prunedTo), treeSize);
    // Key rotation: every hand-over before this size follows the header, which names the key of this size.
    const all = await recordedHandovers(this.store.auditKeys);
    const handovers = all.filter((h) => h.treeSize < treeSize);
    const keyId = handovers.length > 0 ? handovers[handovers.length - 1]!.toKeyId : (all[0]?.fromKeyId ?? this.key.keyId);
    yield trailHeaderLine({ treeSize, checkpoints: checkpoints.length, keyId });
    if (handovers.length > 0) yield handovers.map(trailHandoverLine).join('\n');
    let next = 0;
    if (prunedTo > 0) {
      // The signed retention statement is the base; without one (rows deleted and the mark moved
      // in the database) the base goes out unsigned, and every verifier refuses it.
      const statement = await this.store.trail.retentionAt(prunedTo);
      let base: string;
      if (statement) base = trailBaseLine(statement);
      else {
        const ids = frontierNodes(prunedTo);
        const nodes = await this.store.trail.nodes(ids);
        base = canonicalJson({ frontier: ids.map((id) => toBase64(nodes.get(`${id.level}/${id.index}`) ?? new Uint8Array(32))), kind: 'base', treeSize: prunedTo });
      }
      if (checkpoints[0]?.treeSize !== prunedTo) throw new CountersignError('INTERNAL', `no checkpoint at the prune point ${prunedTo}`);
      yield `${base}\n${trailCheckpointLine(checkpoints[next++]!)}`;
    }
    for (let from = prunedTo + 1; from <= treeSize; from += EXPORT_PAGE) {
      const to = Math.min(treeSize, from + EXPORT_PAGE - 1);
      const [entries, hints] = await Promise.all([this.store.trail.entries(from, to), this.store.trail.leafHashes(from, to)]);
      let out = '';
      for (const entry of entries) {
        const hint = hints.get(Number(entry.seq));
        if (hint === undefined) throw new CountersignError('INTERNAL', `audit entry ${entry.seq} has no leaf hash in the store`);
        out += `${trailEntryLine(leafJsonOf(entry), Buffer.from(hint, 'base64'))}\n`;
        while (next < checkpoints.length && checkpoints[next]!.treeSize === Number(entry.seq)) out += `${trailCheckpointLine(checkpoints[next++]!)}\n`;
      }
      yield out.slice(0, -1);
    }
  }

  /**
   * The trail, oldest first, filtered by request, actor (id or name), type and time; one page of
   * at most `limit` (default 100, at most 1000) and the cursor of the next. `after` (a seq) is the
   * older way to page and still works.
   */
  async query(by: Principal, q: AuditQuery): Promise<{ items: AuditEntry[]; nextCursor: string | null }> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'the audit trail needs an operator token');
    if (q.after !== undefined && q.cursor !== undefined) {
      throw new CountersignError('VALIDATION_FAILED', 'give either after or cursor, not both', { field: 'cursor' });
    }
    const limit = Math.min(Math.max(q.limit ?? 100, 1), 1000);
    const newest = q.order === 'newest';
    if (newest && q.after !== undefined) throw new CountersignError('VALIDATION_FAILED', 'after pages oldest first; with order=newest page with cursor', { field: 'after' });
    const types = auditTypes(q.type);
    const at = q.cursor !== undefined ? decodeCursor(q.cursor, newest ? 'newest' : 'oldest') : undefined;
    const rows = await this.store.listAudit({
      afterSeq: newest ? undefined : (at ?? q.after),
      beforeSeq: newest ? at : undefined,
      newest,
      limit: limit + 1,
      types,
      requestId: q.requestId,
      actor: q.actor,
      from: q.from === undefined ? undefined : parseTime(q.from, 'from'),
      to: q.to === undefined ? undefined : parseTime(q.to, 'to'),
    });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { items: page.map((row) => entryOf(row)), nextCursor: rows.length > limit && last ? encodeCursor(Number(last.seq), newest ? 'newest' : 'oldest') : null };
  }

  /**
   * Retention: removes the entries older than `retentionDays`, up to the newest checkpoint whose
   * entries are all that old, one checkpoint interval per transaction. The tree's hashes stay,
   * so what remains still verifies (the export starts from the signed compact tree at the prune
   * point) and proofs still work. Returns how many entries were removed.
   */
  async prune(retentionDays: number): Promise<number> {
    const cutoff = this.now() - retentionDays * 86_400_000;
    const firstKept = await this.store.trail.firstSeqAtOrAfter(cutoff);
    const head = await this.store.trail.head();
    // Only what the signer has signed can be pruned (a checkpoint covers it).
    const signed = (await this.checkpoint()).treeSize;
    const limit = Math.min((firstKept ?? head.size + 1) - 1, signed);
    let removed = 0;
    for (;;) {
      const from = await this.store.trail.prunedTo();
      const to = await this.store.trail.nextCheckpointSize(from, limit);
      if (to === undefined) return removed;
      // Signed before the deletion, stored with it: a prune point nobody signed is refused by every verifier.
      const statement = await this.signer.retentionStatement(from, to, cutoff);
      const n = await this.store.transaction((tx) => tx.trail.pruneEntries(from, to, statement, this.now()));
      if (n === 0 && (await this.store.trail.prunedTo()) === from) return removed;
      removed += n;
    }
  }

  /** The signed retention statement at the current prune point, if any. */
  async retention(): Promise<(SignedRetention & { entriesPruned: number }) | null> {
    const prunedTo = await this.store.trail.prunedTo();
    if (prunedTo === 0) return null;
    const statement = await this.store.trail.retentionAt(prunedTo);
    return statement ? { ...statement, entriesPruned: prunedTo } : null;
  }

  /**
   * A signed receipt for a decision, to store with it (see `Receipt`). With `claim`, a runnable
   * approval gets a version 2 receipt carrying the nonce and expiry it is claimed with once.
   */
  receipt(requestId: string, decision: Decision, claim?: ReceiptClaim): Receipt {
    // A key the signer has seen handed over signs no receipt either: the decision fails closed.
    const retired = this.signer.retired;
    if (retired) throw retired;
    const body = receiptBody(sha256, requestId, decision, this.key.keyId, claim);
    return { ...body, signature: this.key.sign(receiptMessage(body)) };
  }

  /** The decision with its receipt. */
  seal(requestId: string, decision: Decision, claim?: ReceiptClaim): Decision {
    const { receipt: _old, ...rest } = decision;
    return { ...rest, receipt: this.receipt(requestId, rest, claim) };
  }

  /**
   * Whether this server's audit key signed `receipt` as it stands (every signed field, the
   * version included). A body whose fields do not fit its version (a version 1 receipt carrying a
   * nonce, a version 2 one without) is not a receipt this server signs: false, never thrown.
   */
  verifiesReceipt(receipt: Receipt): boolean {
    if (receipt.keyId !== this.key.keyId) return false;
    const { signature, ...body } = receipt;
    const sig = fromBase64(signature);
    if (sig === null) return false;
    let message: Uint8Array;
    try {
      message = receiptMessage(body);
    } catch {
      return false;
    }
    return this.key.verify(message, sig);
  }
}

/**
 * A stored row as the audit API shows it. `time` formats `at`; `malformed` maps data that is not
 * JSON (not the writer's: a database writer edited it). The SIEM forwarder reuses it with its own
 * two (forwarding/format.ts).
 */
export function entryOf(row: AuditRow, time: (ms: number) => string = iso, malformed: (text: string) => unknown = (text) => text): AuditEntry {
  let data: unknown;
  try {
    data = JSON.parse(row.data);
  } catch {
    data = malformed(row.data);
  }
  return {
    seq: Number(row.seq),
    at: time(Number(row.at)),
    type: row.type,
    requestId: row.request_id,
    actor: { type: row.actor_type, id: row.actor_id, name: row.actor_name },
    data,
  };
}

/** A cursor names its direction: one issued for oldest-first is refused with order=newest, and back. */
const encodeCursor = (seq: number, order: 'oldest' | 'newest') => Buffer.from(order === 'oldest' ? `audit:${seq}` : `audit:${seq}:newest`).toString('base64url');

function decodeCursor(cursor: string, order: 'oldest' | 'newest'): number {
  const match = /^audit:(\d{1,16})(:newest)?$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!match) throw new CountersignError('VALIDATION_FAILED', 'cursor is not one this server issued', { field: 'cursor' });
  if ((match[2] !== undefined) !== (order === 'newest')) {
    throw new CountersignError('VALIDATION_FAILED', `this cursor pages ${match[2] ? 'newest' : 'oldest'} first: give the same order as the page it came from`, { field: 'cursor' });
  }
  return Number(match[1]);
}

/** At most this many event types in one audit query. */
const MAX_AUDIT_TYPES = 20;

/** `type=a,b`: the event types asked for (each a known type's shape), or undefined for all. */
export function auditTypes(type: string | undefined): string[] | undefined {
  if (type === undefined || type.trim() === '') return undefined;
  const types = [...new Set(type.split(',').map((t) => t.trim()).filter((t) => t !== ''))];
  if (types.length > MAX_AUDIT_TYPES) throw new CountersignError('VALIDATION_FAILED', `at most ${MAX_AUDIT_TYPES} event types in one query (got ${types.length})`, { field: 'type' });
  const bad = types.find((t) => !/^[a-z][a-z0-9_.]{0,63}$/.test(t));
  if (bad !== undefined) throw new CountersignError('VALIDATION_FAILED', `type: "${bad.slice(0, 64)}" is not an event type name (lower-case letters, digits and _)`, { field: 'type' });
  return types;
}

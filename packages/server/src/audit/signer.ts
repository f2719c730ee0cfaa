/**
 * The audit signer: the only code that signs checkpoints and retention statements, and it signs
 * only what extends what it signed before. It keeps its last signed tree outside the database
 * (audit/signer-state.ts, next to the key) and, before each signature, checks an RFC 9162
 * consistency proof from that tree to the database's (core `checkExtension`). A database writer
 * who edits a signed entry, rebuilds the leaf and node hashes and deletes the checkpoints gets a
 * refusal (`AUDIT_FORK`), not a signature over the forged tree.
 *
 * Several servers: on one host they share the state file and its lock. Across hosts each keeps
 * its own state and adopts a newer checkpoint from the database when it is signed by the key
 * and extends its own state (so they never fight), and refuses one that does not.
 *
 * A refusal is kept (`refusal`, shown by /healthz as degraded) and reported once per distinct
 * cause to `onRefused` (the runtime sends it to every channel), until a signature succeeds again.
 */
import {
  CompactTree,
  CountersignError,
  checkExtension,
  checkpointMessage,
  consistencyProofRanges,
  emptySignerState,
  fromBase64Of,
  frontierNodes,
  retentionMessage,
  toBase64,
  utf8,
  type SignedCheckpoint,
  type SignedRetention,
  type SignerState,
  type TreeHead,
} from '@countersign/core';
import type { Store } from '../store/store.ts';
import { MissingNodeError, leafJsonOf } from '../store/trail.ts';
import { hasher, type AuditKey } from './crypto.ts';
import type { SignerStateStore } from './signer-state.ts';

export type RefusalKind = 'fork' | 'state_missing' | 'state_damaged' | 'state_other_key';

export interface SignerRefusal {
  kind: RefusalKind;
  /** What happened and what the operator should do. */
  reason: string;
  /** The tree the signer last signed (when it knows one). */
  signed: TreeHead | null;
  /** The tree the database holds now. */
  database: TreeHead;
  /** Epoch ms of the first refusal for this cause. */
  since: number;
}

export interface SignerHooks {
  /** A new cause of refusal (once per cause per process; never thrown through). */
  onRefused?: (refusal: SignerRefusal) => void | Promise<void>;
  /** A checkpoint this signer signed and stored: publish it to the witnesses. */
  onSigned?: (cp: SignedCheckpoint) => void | Promise<void>;
}

const iso = (ms: number) => new Date(ms).toISOString();

function strip(cp: SignedCheckpoint): SignedCheckpoint {
  return { treeSize: cp.treeSize, rootHash: cp.rootHash, timestamp: cp.timestamp, keyId: cp.keyId, signature: cp.signature };
}

export class AuditSigner {
  #refusal: SignerRefusal | null = null;
  #reported = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly key: AuditKey,
    readonly state: SignerStateStore,
    private readonly now: () => number,
    private hooks: SignerHooks = {},
  ) {}

  setHooks(hooks: SignerHooks): void {
    this.hooks = hooks;
  }

  /** Why the signer currently refuses to sign, or null (then /healthz is ok). */
  get refusal(): SignerRefusal | null {
    return this.#refusal;
  }

  /**
   * Signs the database's tree if it extends the signed one (and is larger), else returns the
   * checkpoint that already covers it. With `sign: false` only checks (the background loop does
   * this when nothing is due, so a rewrite is noticed even while the trail is idle).
   */
  async checkpoint(options: { sign?: boolean } = {}): Promise<SignedCheckpoint | null> {
    const sign = options.sign ?? true;
    return this.state.locked(async () => {
      const tree = await this.store.trail.head();
      const head: TreeHead = { treeSize: tree.size, rootHash: toBase64(tree.root()) };
      const latest = await this.store.trail.latestCheckpoint();
      const state = await this.#readState(head, latest !== undefined);

      // Another server (same key, another host) may have signed further: adopt it if it extends ours.
      let base: SignerState = state;
      if (latest && latest.treeSize > state.treeSize && this.#signedByMe(latest)) {
        await this.#requireExtension(state, latest, head, `the checkpoint in the database for size ${latest.treeSize}, signed by this key,`);
        base = { keyId: this.key.keyId, treeSize: latest.treeSize, rootHash: latest.rootHash, checkpoint: strip(latest) };
      }
      await this.#requireExtension(base, head, head, 'the database tree');

      if (head.treeSize === base.treeSize && base.checkpoint !== null) {
        if (base !== state) this.state.write(base);
        // A checkpoint deleted from the database is put back from the state.
        if (!latest || latest.treeSize < base.treeSize) await this.store.trail.insertCheckpoint(base.checkpoint, this.now());
        this.#clear();
        return base.checkpoint;
      }
      if (!sign) {
        if (base !== state) this.state.write(base);
        this.#clear();
        return null;
      }
      // Signed times never go backwards, even if this machine's clock does.
      const at = Math.max(this.now(), ...[base.checkpoint, latest].map((c) => (c ? Date.parse(c.timestamp) : 0)));
      const body = { treeSize: head.treeSize, rootHash: head.rootHash, timestamp: iso(at) };
      const cp: SignedCheckpoint = { ...body, keyId: this.key.keyId, signature: this.key.sign(checkpointMessage(body)) };
      // Remembered before anyone can see it: a crash after this leaves the state ahead, never behind.
      this.state.write({ keyId: this.key.keyId, treeSize: cp.treeSize, rootHash: cp.rootHash, checkpoint: cp });
      const inserted = await this.store.trail.insertCheckpoint(cp, this.now());
      this.#clear();
      if (!inserted) return (await this.store.trail.checkpointAt(cp.treeSize)) ?? cp;
      try {
        await this.hooks.onSigned?.(cp);
      } catch {
        // Publishing reports its own failures; the checkpoint is signed and stored.
      }
      return cp;
    });
  }

  /**
   * The signed statement for pruning entries `from + 1` … `to`, after checking that what goes is
   * what was signed: the tree at `to` extends nothing but the signed tree, every entry removed
   * hashes into it, and each is older than `cutoff` (epoch ms). Refuses (AUDIT_FORK) otherwise.
   */
  async retentionStatement(from: number, to: number, cutoff: number): Promise<SignedRetention> {
    return this.state.locked(async () => {
      const tree = await this.store.trail.head();
      const head: TreeHead = { treeSize: tree.size, rootHash: toBase64(tree.root()) };
      const state = await this.#readState(head, true);
      if (to > state.treeSize) throw new CountersignError('VALIDATION_FAILED', `retention may prune only signed entries: ${to} > ${state.treeSize}`);
      const [frontierTo, frontierFrom, rows] = await Promise.all([this.#frontier(to, head), this.#frontier(from, head), this.store.trail.entries(from + 1, to)]);
      const atTo: TreeHead = { treeSize: to, rootHash: toBase64(new CompactTree(hasher, to, frontierTo).root()) };
      await this.#requireExtension(atTo, state, head, `the tree at the prune point ${to}`);
      const rebuilt = new CompactTree(hasher, from, frontierFrom);
      for (const row of rows) {
        if (Number(row.seq) !== rebuilt.size + 1) return this.#refuse('fork', `entry ${rebuilt.size + 1} is missing from the database before retention reached it`, state, head);
        if (Number(row.at) >= cutoff) throw new CountersignError('VALIDATION_FAILED', `entry ${row.seq} is not older than the retention period`);
        rebuilt.append(hasher.hashLeaf(utf8(leafJsonOf(row))));
      }
      if (rebuilt.size !== to || toBase64(rebuilt.root()) !== atTo.rootHash) {
        return this.#refuse('fork', `the entries ${from + 1}–${to} retention would remove do not hash to the signed tree: they were rewritten`, state, head);
      }
      const body = { prunedTo: to, frontier: frontierTo.map(toBase64), timestamp: iso(this.now()) };
      return { ...body, keyId: this.key.keyId, signature: this.key.sign(retentionMessage(body)) };
    });
  }

  /**
   * Adopts `cp` (a checkpoint signed by this key, verified by the caller against the whole trail)
   * as the signed state: `countersign audit trust-current`. The only way past `state_missing`.
   */
  async adopt(cp: SignedCheckpoint): Promise<void> {
    if (!this.#signedByMe(cp)) throw new CountersignError('VALIDATION_FAILED', `checkpoint ${cp.treeSize} is not signed by this key (${this.key.keyId})`);
    await this.state.locked(async () => {
      this.state.write({ keyId: this.key.keyId, treeSize: cp.treeSize, rootHash: cp.rootHash, checkpoint: strip(cp) });
      this.#clear();
    });
  }

  #signedByMe(cp: SignedCheckpoint): boolean {
    const sig = fromBase64Of(cp.signature, 64);
    return cp.keyId === this.key.keyId && sig !== null && this.key.verify(checkpointMessage(cp), sig);
  }

  async #readState(head: TreeHead, checkpointsExist: boolean): Promise<SignerState> {
    let state: SignerState | null;
    try {
      state = this.state.read();
    } catch (err) {
      return this.#refuse('state_damaged', (err as Error).message, null, head);
    }
    if (state === null) {
      if (!checkpointsExist) return emptySignerState(hasher, this.key.keyId);
      return this.#refuse(
        'state_missing',
        `the audit signer's state (${this.state.where}) is missing, but the database holds signed checkpoints: the signer cannot tell this trail from a rewritten one. Restore the state file from a backup (or copy it from another server using this key), or verify the trail and adopt it: countersign audit trust-current [--checkpoint WITNESS_DIR]`,
        null,
        head,
      );
    }
    if (state.keyId !== this.key.keyId) {
      return this.#refuse('state_other_key', `the audit signer's state (${this.state.where}) belongs to key ${state.keyId}, not to the audit key ${this.key.keyId}`, null, head);
    }
    return state;
  }

  /** The compact tree at `size` from the stored nodes (a missing node is a refusal: rows were deleted). */
  async #frontier(size: number, head: TreeHead): Promise<Uint8Array[]> {
    const ids = frontierNodes(size);
    const nodes = await this.store.trail.nodes(ids);
    const hashes = ids.map((id) => nodes.get(`${id.level}/${id.index}`));
    if (hashes.some((h) => h === undefined)) return this.#refuse('fork', `the tree nodes at size ${size} are missing from the database`, null, head);
    return hashes as Uint8Array[];
  }

  /** Refuses unless `next` extends `from`, proven from the stored nodes. */
  async #requireExtension(from: TreeHead, next: TreeHead, head: TreeHead, what: string): Promise<void> {
    if (next.treeSize < from.treeSize) {
      return this.#refuse('fork', `${what} has ${next.treeSize} entries, but ${from.treeSize} were signed: the trail was cut back`, from, head);
    }
    let proof: string[];
    try {
      proof = (await this.store.trail.rangeHashes(consistencyProofRanges(from.treeSize, next.treeSize))).map(toBase64);
    } catch (err) {
      if (!(err instanceof MissingNodeError)) throw err;
      return this.#refuse('fork', `${what} cannot be proven to extend the signed tree of ${from.treeSize} entries: ${err.message}`, from, head);
    }
    const check = checkExtension(hasher, from, next, proof);
    if (!check.ok) return this.#refuse('fork', `${what} (${next.treeSize} entries) does not extend the tree of ${from.treeSize} entries this signer signed: ${check.reason}`, from, head);
  }

  #refuse(kind: RefusalKind, reason: string, signed: TreeHead | null, database: TreeHead): never {
    // One notice per cause: the signed tree it fails against, not the database's head, which
    // keeps growing (each notice's delivery is itself audited) and would otherwise re-notify forever.
    const key = `${kind}:${signed?.treeSize ?? '-'}:${signed?.rootHash ?? '-'}`;
    const refusal: SignerRefusal = { kind, reason, signed, database, since: this.#refusal?.kind === kind ? this.#refusal.since : this.now() };
    this.#refusal = refusal;
    if (!this.#reported.has(key)) {
      this.#reported.add(key);
      void Promise.resolve()
        .then(() => this.hooks.onRefused?.(refusal))
        .catch(() => {});
    }
    throw new CountersignError('AUDIT_FORK', `the audit signer refuses to sign: ${reason}`, { kind, signed, database });
  }

  #clear(): void {
    this.#refusal = null;
    this.#reported.clear();
  }
}

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
 * A refusal is kept (`refusal`, shown by /healthz as degraded) and reported to `onRefused` (the
 * runtime sends it to every channel and, without the database, to the witness directory and the
 * log) once per distinct cause and again every REFUSAL_RESEND_MS while it lasts, until a
 * signature succeeds again. A state file or lock that cannot be read or written is a refusal too
 * (`state_io`).
 */
import {
  CompactTree,
  CountersignError,
  checkExtension,
  checkHandover,
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
import { isSignerStateError, type SignerStateStore } from './signer-state.ts';
import { chainCrypto, signingProblem } from './keys.ts';

export type RefusalKind = 'fork' | 'state_missing' | 'state_damaged' | 'state_other_key' | 'state_io' | 'key_retired';

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
  /** A new cause of refusal (once per cause per process, and again now and then while it lasts; never thrown through). */
  onRefused?: (refusal: SignerRefusal) => void | Promise<void>;
  /** A checkpoint this signer signed: publish it to the witnesses (called after the state is written and the lock released). */
  onSigned?: (cp: SignedCheckpoint) => void | Promise<void>;
}

/** When the background loop signs: after `every` entries since the signer's own last checkpoint, or `maxAgeMs` after it. */
export interface DueRule {
  every: number;
  maxAgeMs: number;
}

/** How often a refusal that lasts is reported again (the channels dedupe nothing; this bounds the rate). */
export const REFUSAL_RESEND_MS = 15 * 60_000;

const iso = (ms: number) => new Date(ms).toISOString();

function strip(cp: SignedCheckpoint): SignedCheckpoint {
  return { ...(cp.origin !== undefined ? { origin: cp.origin } : {}), treeSize: cp.treeSize, rootHash: cp.rootHash, timestamp: cp.timestamp, keyId: cp.keyId, signature: cp.signature };
}

/** What the signer read under its lock: the state it signs from, and what is on disk (for the compare-and-swap). */
interface ReadState {
  state: SignerState;
  onDisk: SignerState | null;
}

export class AuditSigner {
  #refusal: SignerRefusal | null = null;
  /** Set once this key is seen handed over (key rotation): it signs nothing more, receipts included. */
  #retired: CountersignError | null = null;
  /** Cause → when it was last reported. */
  #reported = new Map<string, number>();

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

  /** Why this key may no longer sign (it was handed over to a newer key), or null. */
  get retired(): CountersignError | null {
    return this.#retired;
  }

  /** Why the signer currently refuses to sign (or has seen a fork in the database), or null (then /healthz is ok). */
  get refusal(): SignerRefusal | null {
    return this.#refusal;
  }

  /**
   * Signs the database's tree if it extends the signed one (and is larger), else returns the
   * checkpoint that already covers it. With `due`, signs only when that rule says so (counted
   * from the signer's own state, never from a database row) and returns null otherwise — still
   * checking that the database's tree extends the signed one, so a rewrite of an idle trail is
   * noticed too.
   *
   * Checkpoint rows the database holds are evidence, not trust: a row of another key for a size
   * beyond this key's state is a refusal (that key took over; this one never signs again); a
   * row this key did not sign, or
   * one for a tree larger than the database's, is a fork alarm (refusal kind `fork`, reported),
   * while the signer goes on signing what extends its own state. A row signed by this key for a
   * larger tree that extends the state (another host's signer) is adopted.
   */
  async checkpoint(options: { due?: DueRule } = {}): Promise<SignedCheckpoint | null> {
    const outcome = await this.#io(() =>
      this.state.locked(async () => {
        const tree = await this.store.trail.head();
        const head: TreeHead = { treeSize: tree.size, rootHash: toBase64(tree.root()) };
        await this.#requireCurrentKey(head);
        const { state, onDisk } = await this.#readState(head);
        const rows = await this.store.trail.checkpoints(state.treeSize, Number.MAX_SAFE_INTEGER);
        const alarms: string[] = [];
        const good: SignedCheckpoint[] = [];
        for (const row of rows) {
          if (!this.#signedByMe(row) && row.keyId !== this.key.keyId && row.treeSize > state.treeSize) {
            // Another key signed further than this one: this key was handed over (or the row was planted); either way it signs nothing more.
            return this.#refuse('fork', `the database holds a checkpoint for size ${row.treeSize} signed by key ${row.keyId}, beyond this key's (${this.key.keyId}) signed size ${state.treeSize}: another key signs this trail now`, state, head);
          }
          if (!this.#signedByMe(row)) alarms.push(`the database holds a checkpoint for size ${row.treeSize} that this key (${this.key.keyId}) did not sign`);
          else if (row.treeSize > head.treeSize) alarms.push(`the database holds a checkpoint signed for size ${row.treeSize}, larger than its tree: entries were removed`);
          else if (row.treeSize === state.treeSize && row.rootHash !== state.rootHash) {
            return this.#refuse('fork', `this key signed two different trees of ${row.treeSize} entries (the one in the database and the one in ${this.state.where})`, state, head);
          } else good.push(row);
        }

        // Another server (same key, another host) may have signed further: adopt it if it extends ours.
        let base: SignerState = state;
        const newest = good[good.length - 1];
        if (newest && newest.treeSize > state.treeSize) {
          await this.#requireExtension(state, newest, head, `the checkpoint in the database for size ${newest.treeSize}, signed by this key,`);
          base = { keyId: this.key.keyId, treeSize: newest.treeSize, rootHash: newest.rootHash, checkpoint: strip(newest) };
        }
        await this.#requireExtension(base, head, head, 'the database tree');

        const pending = head.treeSize - base.treeSize;
        const age = base.checkpoint ? this.now() - Date.parse(base.checkpoint.timestamp) : Infinity;
        const due = options.due === undefined ? pending > 0 || base.checkpoint === null : pending > 0 && (pending >= options.due.every || age >= options.due.maxAgeMs);
        if (!due) {
          if (base !== state) this.state.write(base, onDisk);
          // A checkpoint deleted from the database is put back from the state.
          if (base.checkpoint !== null && !rows.some((r) => r.treeSize === base.treeSize)) await this.#insert(base.checkpoint, head);
          return { cp: options.due === undefined ? base.checkpoint : null, signed: false, alarms };
        }
        // Signed times never go backwards, even if this machine's clock does.
        const at = Math.max(this.now(), ...[base.checkpoint, newest].map((c) => (c ? Date.parse(c.timestamp) : 0)));
        // The deployment's origin (kept since its first start); it never changes under a signer.
        const origin = await this.store.auditKeys.origin();
        const signedOrigin = base.checkpoint?.origin;
        if (signedOrigin !== undefined && origin !== signedOrigin) {
          return this.#refuse('fork', `this trail's checkpoints are signed under the origin ${signedOrigin}, but the database now names ${origin ?? 'none'}: the origin was changed in the database`, base, head);
        }
        const body = { ...(origin !== undefined ? { origin } : {}), treeSize: head.treeSize, rootHash: head.rootHash, timestamp: iso(at) };
        const cp: SignedCheckpoint = { ...body, keyId: this.key.keyId, signature: this.key.sign(checkpointMessage(body)) };
        // Remembered before anyone can see it: a crash after this leaves the state ahead, never behind.
        this.state.write({ keyId: this.key.keyId, treeSize: cp.treeSize, rootHash: cp.rootHash, checkpoint: cp }, onDisk);
        const inserted = await this.#insert(cp, head);
        if (!inserted) {
          const stored = await this.store.trail.checkpointAt(cp.treeSize);
          if (!stored || stored.rootHash !== cp.rootHash || !this.#signedByMe(stored)) {
            alarms.push(`the database already held another checkpoint for size ${cp.treeSize} when this signer signed it; the signer's own is kept in ${this.state.where} and published`);
          }
        }
        return { cp, signed: true, alarms };
      }),
    );
    if (outcome.alarms.length > 0) {
      this.#alarm('fork', `${outcome.alarms.join('; ')}. Verify the trail (countersign audit verify --checkpoint WITNESS_DIR) and remove the rows this key did not sign`, { treeSize: outcome.cp?.treeSize ?? 0, rootHash: outcome.cp?.rootHash ?? '' });
    } else this.#clear();
    if (outcome.signed && outcome.cp) {
      try {
        await this.hooks.onSigned?.(outcome.cp);
      } catch {
        // Publishing reports its own failures; the checkpoint is signed and stored.
      }
    }
    return outcome.cp;
  }

  /**
   * The signed statement for pruning entries `from + 1` … `to`, after checking that what goes is
   * what was signed: the tree at `to` extends nothing but the signed tree, every entry removed
   * hashes into it, and each is older than `cutoff` (epoch ms). Refuses (AUDIT_FORK) otherwise.
   */
  async retentionStatement(from: number, to: number, cutoff: number): Promise<SignedRetention> {
    return this.#io(() =>
      this.state.locked(async () => {
        const tree = await this.store.trail.head();
        const head: TreeHead = { treeSize: tree.size, rootHash: toBase64(tree.root()) };
        await this.#requireCurrentKey(head);
        const { state } = await this.#readState(head);
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
      }),
    );
  }

  /**
   * Adopts `cp` (a checkpoint signed by this key, verified by the caller against the whole trail
   * and its witnesses) as the signed state: `countersign audit trust-current`, and the one-time
   * adoption on upgrade. Only past a missing or damaged state: a readable state of this key is
   * replaced only by a checkpoint that extends it (proven from the stored nodes) — never rolled
   * back, which would let the signer sign a history rewritten after the adopted point. A state of
   * another key is refused (move it aside first). Returns what was replaced.
   */
  async adopt(cp: SignedCheckpoint): Promise<{ replaced: 'missing' | 'damaged' | 'extended'; previous: TreeHead | null }> {
    if (!this.#signedByMe(cp)) throw new CountersignError('VALIDATION_FAILED', `checkpoint ${cp.treeSize} is not signed by this key (${this.key.keyId})`);
    return this.#io(() =>
      this.state.locked(async () => {
        let current: SignerState | null;
        let damaged = false;
        try {
          current = this.state.read();
        } catch (err) {
          if (isSignerStateError(err)) throw err;
          current = null;
          damaged = true;
        }
        if (current !== null && current.keyId !== this.key.keyId) {
          throw new CountersignError('VALIDATION_FAILED', `the signer state ${this.state.where} belongs to key ${current.keyId}, not to the audit key ${this.key.keyId}: move it aside first if that key is retired`);
        }
        if (current !== null && current.checkpoint !== null && !this.#signedByMe(current.checkpoint)) {
          current = null; // a state whose checkpoint this key did not sign is damaged
          damaged = true;
        }
        if (current !== null) {
          if (cp.treeSize < current.treeSize) {
            throw new CountersignError('AUDIT_FORK', `refusing to roll the signer state (${this.state.where}) back from ${current.treeSize} to ${cp.treeSize} entries: the state is intact, and the database no longer holds the checkpoints it signed since, so the trail after ${cp.treeSize} may have been rewritten. Verify it against a witness; adopt only past a missing or damaged state`, { signed: { treeSize: current.treeSize, rootHash: current.rootHash } });
          }
          let proof: string[];
          try {
            proof = cp.treeSize === current.treeSize ? [] : (await this.store.trail.rangeHashes(consistencyProofRanges(current.treeSize, cp.treeSize))).map(toBase64);
          } catch (err) {
            if (!(err instanceof MissingNodeError)) throw err;
            throw new CountersignError('AUDIT_FORK', `the checkpoint of ${cp.treeSize} entries cannot be proven to extend the signer state of ${current.treeSize}: ${err.message}`);
          }
          const check = checkExtension(hasher, current, cp, proof);
          if (!check.ok) throw new CountersignError('AUDIT_FORK', `the checkpoint of ${cp.treeSize} entries does not extend the signer state (${this.state.where}) of ${current.treeSize}: ${check.reason}`);
        }
        const previous = current === null ? null : { treeSize: current.treeSize, rootHash: current.rootHash };
        this.state.write({ keyId: this.key.keyId, treeSize: cp.treeSize, rootHash: cp.rootHash, checkpoint: strip(cp) }, current);
        this.#clear();
        return { replaced: current !== null ? ('extended' as const) : damaged ? ('damaged' as const) : ('missing' as const), previous };
      }),
    );
  }

  /** Runs a state operation; an I/O failure of the state or its lock is a refusal (`state_io`), shown and reported like the others. */
  async #io<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!isSignerStateError(err)) throw err;
      let database: TreeHead = { treeSize: 0, rootHash: '' };
      try {
        const tree = await this.store.trail.head();
        database = { treeSize: tree.size, rootHash: toBase64(tree.root()) };
      } catch {
        // the database is down too: report what we can
      }
      return this.#refuse('state_io', `${err.message}: the signer cannot keep its state, so it signs nothing`, null, database);
    }
  }

  #signedByMe(cp: SignedCheckpoint): boolean {
    const sig = fromBase64Of(cp.signature, 64);
    return cp.keyId === this.key.keyId && sig !== null && this.key.verify(checkpointMessage(cp), sig);
  }

  async #readState(head: TreeHead): Promise<ReadState> {
    let state: SignerState | null;
    try {
      state = this.state.read();
    } catch (err) {
      if (isSignerStateError(err)) throw err;
      return this.#refuse('state_damaged', (err as Error).message, null, head);
    }
    if (state === null) {
      if ((await this.store.trail.latestCheckpoint()) === undefined) return { state: emptySignerState(hasher, this.key.keyId), onDisk: null };
      const handedOver = await this.#handoverToMe();
      if (handedOver) return { state: handedOver, onDisk: null };
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
    if (state.checkpoint !== null && !this.#signedByMe(state.checkpoint)) {
      return this.#refuse('state_damaged', `the audit signer's state (${this.state.where}) names a checkpoint of ${state.treeSize} entries that this key did not sign: it was forged or damaged; restore it from a backup or re-adopt the trail (countersign audit trust-current)`, null, head);
    }
    return { state, onDisk: state };
  }

  /**
   * A new key's starting point (key rotation): the size and root its predecessor handed over at,
   * from the hand-over statement this very key signed — used only while this key has no state and
   * has signed no checkpoint the database holds (else a lost state stays a refusal).
   */
  async #handoverToMe(): Promise<SignerState | null> {
    const keys = await this.store.auditKeys.all();
    const h = keys.find((k) => k.handover?.toKeyId === this.key.keyId)?.handover;
    if (!h || !checkHandover(h, chainCrypto).ok) return null;
    const latest = await this.store.trail.latestCheckpoint();
    if (latest?.keyId === this.key.keyId) return null;
    const mine = await this.store.trail.checkpoints(h.treeSize + 1, Number.MAX_SAFE_INTEGER);
    if (mine.some((cp) => cp.keyId === this.key.keyId)) return null;
    return { keyId: this.key.keyId, treeSize: h.treeSize, rootHash: h.rootHash, checkpoint: null };
  }

  /** Refuses (AUDIT_KEY_RETIRED, kept and reported as `key_retired`) once this key is no longer the trail's newest. */
  async #requireCurrentKey(head: TreeHead): Promise<void> {
    const problem = await signingProblem(this.store, this.key);
    if (!problem) return;
    if (problem.code === 'AUDIT_KEY_RETIRED') this.#retired = problem;
    this.#alarm(problem.code === 'AUDIT_KEY_RETIRED' ? 'key_retired' : 'fork', `${problem.message}; this server signs no checkpoint, retention statement or receipt with it`, head);
    throw problem;
  }

  /**
   * Stores a checkpoint only while this key is still the current one, read in the insert's own
   * transaction under the rotation lock (shared): a rotation that committed first wins, and a
   * server still on the retired key stores nothing after it.
   */
  async #insert(cp: SignedCheckpoint, head: TreeHead): Promise<boolean> {
    const outcome = await this.store.transaction(async (tx) => {
      await tx.auditKeys.lockShared();
      const problem = await signingProblem(tx, this.key);
      if (problem) return { problem };
      return { inserted: await tx.trail.insertCheckpoint(cp, this.now()) };
    });
    if ('problem' in outcome && outcome.problem) {
      if (outcome.problem.code === 'AUDIT_KEY_RETIRED') this.#retired = outcome.problem;
      this.#alarm('key_retired', `${outcome.problem.message}; the checkpoint of ${cp.treeSize} entries it had just signed was not stored`, head);
      throw outcome.problem;
    }
    return (outcome as { inserted: boolean }).inserted;
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
    this.#alarm(kind, reason, database, signed);
    throw new CountersignError('AUDIT_FORK', `the audit signer refuses to sign: ${reason}`, { kind, signed, database });
  }

  /** Keeps the refusal (for /healthz) and reports it: once per cause, and again every REFUSAL_RESEND_MS while it lasts. */
  #alarm(kind: RefusalKind, reason: string, database: TreeHead, signed: TreeHead | null = null): void {
    // One notice per cause: the signed tree it fails against (not the database's head, which keeps
    // growing: each notice's delivery is itself audited, and would otherwise re-notify forever).
    const key = `${kind}:${signed?.treeSize ?? '-'}:${signed?.rootHash ?? '-'}:${signed === null ? reason : ''}`;
    const refusal: SignerRefusal = { kind, reason, signed, database, since: this.#refusal?.kind === kind ? this.#refusal.since : this.now() };
    this.#refusal = refusal;
    const last = this.#reported.get(key);
    const at = this.now();
    if (last === undefined || at - last >= REFUSAL_RESEND_MS) {
      this.#reported.set(key, at);
      void Promise.resolve()
        .then(() => this.hooks.onRefused?.(refusal))
        .catch(() => {});
    }
  }

  #clear(): void {
    this.#refusal = null;
    this.#reported.clear();
  }
}

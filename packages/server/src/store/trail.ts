/**
 * The audit trail's tables and their SQL. The Merkle tree is kept in the database, written in
 * the same transaction as the entries it commits to:
 *
 * - `audit_nodes`: every perfect subtree's hash (level 0 = leaf hashes), keyed by (level, idx):
 *   any root, inclusion or consistency proof is a handful of primary-key reads.
 * - `audit_head.frontier`: the compact tree (one hash per set bit of the size). An append reads
 *   it with the head row it already locks, so there is no in-memory state that a rolled-back
 *   savepoint or another process could leave stale.
 * - `audit_checkpoints`: signed `{treeSize, rootHash, timestamp}`, one per tree size.
 *
 * Hashes are stored as base64 text, like the API shows them, in both dialects.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { CompactTree, auditLeafJson, fromBase64Of, nodesFor, pendingEntryProblem, planIntegration, rangeHash, toBase64, utf8, type LeafRange, type NodeId, type SignedCheckpoint, type SignedRetention } from '@countersign/core';
import type { AuditLogTable, Database } from './schema.ts';
import { hasher } from './hashing.ts';
import { Sealer } from './sealing.ts';
import { insertRows } from './insert-rows.ts';
import { deferred } from './pipeline.ts';
import { INTEGRATION_LOCK_TIMEOUT_MS, INTEGRATION_STATEMENT_TIMEOUT_MS } from './integrator.ts';

export interface AuditNodesTable {
  level: number;
  idx: number;
  hash: string;
}

export interface AuditCheckpointsTable {
  tree_size: number;
  root_hash: string;
  /** ISO time, as signed. */
  timestamp: string;
  key_id: string;
  signature: string;
  created_at: number;
  /** The deployment's origin it was signed under (migration 015); null: the fixed origin of before. */
  origin: string | null;
}

/** A signed retention statement (migration 011): entries 1 … pruned_to removed, keeping `frontier`. */
export interface AuditRetentionTable {
  pruned_to: number;
  /** JSON array of base64 hashes: the compact tree at `pruned_to`. */
  frontier: string;
  /** ISO time, as signed. */
  timestamp: string;
  key_id: string;
  signature: string;
  created_at: number;
}

/** The upgrade mark (migration 011): the newest checkpoint of a deployment from before the signer's state file. */
export interface AuditSignerUpgradeTable {
  id: number;
  tree_size: number;
  root_hash: string;
  created_at: number;
}

/** A tree node a proof needs is not in the store: rows were deleted (or never written). */
export class MissingNodeError extends Error {
  override readonly name = 'MissingNodeError';
}

type Db = Kysely<Database> | Transaction<Database>;

/**
 * An entry's time as the leaf, the export and the audit API show it. A time no date can hold (a
 * database writer set it; the writer never does) is shown as such instead of thrown, so one
 * edited row takes down neither the listing nor the export: the verifier names its line (the
 * leaf hash covers the time).
 */
export function entryTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `invalid time: ${ms}` : d.toISOString();
}

/**
 * The leaf JSON of a stored row: what the tree commits to (see `auditLeafJson`). A row whose
 * data is no longer JSON (edited in the database) still exports, as its raw text, so the
 * verifier can name it instead of the export failing.
 */
export function leafJsonOf(row: AuditLogTable): string {
  let data: unknown;
  try {
    data = JSON.parse(row.data);
  } catch {
    data = row.data;
  }
  return auditLeafJson({
    seq: Number(row.seq),
    at: entryTime(Number(row.at)),
    type: row.type,
    requestId: row.request_id,
    actor: { type: row.actor_type, id: row.actor_id, name: row.actor_name },
    data,
  });
}

function decodeFrontier(text: string, size: number): CompactTree {
  const hashes = (JSON.parse(text) as unknown[]).map((h) => {
    const bytes = fromBase64Of(h, hasher.size);
    if (!bytes) throw new Error('audit_head.frontier holds a malformed hash');
    return bytes;
  });
  return new CompactTree(hasher, size, hashes);
}

const encodeFrontier = (tree: CompactTree): string => JSON.stringify(tree.hashes.map(toBase64));

/** Rows of at most this many values per INSERT (PostgreSQL allows 65535 parameters). */
const INSERT_CHUNK = 1000;

export class TrailQueries {
  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer = Sealer.none,
  ) {}

  /**
   * Adds the leaves of freshly inserted entries (seq `size + 1` …) to the tree: their hashes
   * and every subtree they complete go to `audit_nodes`, the new frontier to `audit_head`.
   * `frontier` is the head row's value read under the same lock that assigned the seqs.
   */
  async appendLeaves(size: number, frontier: string, rows: readonly AuditLogTable[], later = false): Promise<void> {
    const tree = decodeFrontier(frontier, size);
    const nodes: AuditNodesTable[] = [];
    for (const row of rows) {
      if (Number(row.seq) !== tree.size + 1) throw new Error(`audit seq ${row.seq} does not follow tree size ${tree.size}`);
      tree.append(hasher.hashLeaf(utf8(leafJsonOf(row))), ({ level, index }, hash) => nodes.push({ level, idx: index, hash: toBase64(hash) }));
    }
    for (let i = 0; i < nodes.length; i += INSERT_CHUNK) {
      await insertRows(this.db, 'audit_nodes', nodes.slice(i, i + INSERT_CHUNK), later);
    }
    const move = this.db.updateTable('audit_head').set({ frontier: encodeFrontier(tree) }).where('id', '=', 1).compile();
    await this.db.executeQuery(later ? deferred(move) : move);
  }

  /**
   * One integration batch (store/integrator.ts runs it in its own transaction): takes up to
   * `limit` committed pending entries, gives them the seqs after the tree's size (core
   * `planIntegration`), writes them to `audit_log` with their leaves and nodes, moves the head,
   * and removes them from `audit_pending` — all in the caller's transaction, so a crash leaves
   * either the whole batch integrated or none of it.
   *
   * On PostgreSQL only the holder of this schema's integrator lock (a transaction-level advisory
   * lock) runs a batch: `null` when another server holds it. The head row is locked before the
   * pending rows are read, and the rows are taken by a DELETE … RETURNING, so even two batches
   * that got past the lock could not take one row twice (the second waits on the head, then its
   * statement snapshot no longer holds the rows the first removed).
   */
  async integrateBatch(limit: number, postgres: boolean, now: number = Date.now()): Promise<{ taken: number; size: number } | null> {
    if (postgres) {
      // Bounded: a session holding a row lock on a pending entry or the head fails this batch
      // (retried later) instead of holding the integrator, and so every settle, indefinitely.
      // Both sent with the lock below, in one round trip with `begin` (store/pipeline.ts).
      await this.db.executeQuery(deferred(sql.raw(`set local lock_timeout = ${INTEGRATION_LOCK_TIMEOUT_MS}`).compile(this.db)));
      await this.db.executeQuery(deferred(sql.raw(`set local statement_timeout = ${INTEGRATION_STATEMENT_TIMEOUT_MS}`).compile(this.db)));
      const lock = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(hashtext(current_schema() || ':countersign:audit-integrator')) as ok`.execute(this.db);
      if (!lock.rows[0]?.ok) return null;
    }
    let headQuery = this.db.selectFrom('audit_head').select(['seq', 'frontier']).where('id', '=', 1);
    if (postgres) headQuery = headQuery.forUpdate();
    const head = await headQuery.executeTakeFirstOrThrow();
    const size = Number(head.seq);
    // Ids are read as text and compared as bigints: a row planted with an id at or above 2^53
    // (and, on SQLite, every id drawn after it) stays exact, so it neither throws nor collides.
    const taken = await this.db
      .deleteFrom('audit_pending')
      .where('id', 'in', (eb) => eb.selectFrom('audit_pending').select('id').orderBy('id').limit(limit))
      .returning([sql<string>`cast(id as text)`.as('id_text'), 'at', 'type', 'request_id', 'actor_type', 'actor_id', 'actor_name', 'data'])
      .execute();
    if (taken.length === 0) return { taken: 0, size };
    const plan = planIntegration(
      size,
      taken.map(({ id_text, ...r }) => ({ ...r, id: BigInt(id_text), at: typeof r.at === 'bigint' || typeof r.at === 'string' ? Number(r.at) : r.at })),
    );
    const rows: AuditLogTable[] = plan.map(({ seq, entry }) => {
      const { id, ...fields } = entry;
      // Stored as exact text; both dialects' bigint/INTEGER columns take it as the integer.
      const entryId = String(id) as unknown as number;
      const problem = pendingEntryProblem(entry);
      if (problem === null) return { seq, entry_id: entryId, ...fields };
      // Planted in the database: kept, as text, in an entry of its own, so the batch goes on.
      const texts = Object.fromEntries(Object.entries(entry).map(([k, v]) => [k, v === null ? null : String(v)]));
      return {
        seq,
        entry_id: entryId,
        at: now,
        type: 'audit_entry_malformed',
        request_id: null,
        actor_type: 'system',
        actor_id: 'system',
        actor_name: 'countersign',
        data: JSON.stringify({ entryId: Number.isSafeInteger(Number(id)) ? Number(id) : String(id), problem, fields: texts }),
      };
    });
    // The writes go out together, with the head's move (store/pipeline.ts); a failure fails the batch there.
    for (let i = 0; i < rows.length; i += INSERT_CHUNK / 10) {
      await insertRows(this.db, 'audit_log', rows.slice(i, i + INSERT_CHUNK / 10), true);
    }
    await this.appendLeaves(size, head.frontier, rows, true);
    const moved = await this.db.updateTable('audit_head').set({ seq: size + rows.length }).where('id', '=', 1).where('seq', '=', size).executeTakeFirst();
    if (Number(moved.numUpdatedRows) !== 1) throw new Error(`the audit head moved from ${size} during integration`);
    return { taken: rows.length, size: size + rows.length };
  }

  /** The committed tree size and its compact form. */
  async head(): Promise<CompactTree> {
    const row = await this.db.selectFrom('audit_head').select(['seq', 'frontier']).where('id', '=', 1).executeTakeFirstOrThrow();
    return decodeFrontier(row.frontier, Number(row.seq));
  }

  async nodes(ids: readonly NodeId[]): Promise<Map<string, Uint8Array>> {
    const found = new Map<string, Uint8Array>();
    for (let i = 0; i < ids.length; i += 200) {
      const chunk = ids.slice(i, i + 200);
      const rows = await this.db
        .selectFrom('audit_nodes')
        .select(['level', 'idx', 'hash'])
        .where((eb) => eb.or(chunk.map((id) => eb.and([eb('level', '=', id.level), eb('idx', '=', id.index)]))))
        .execute();
      for (const row of rows) found.set(`${row.level}/${Number(row.idx)}`, fromBase64Of(row.hash, hasher.size)!);
    }
    return found;
  }

  /** Hashes of the given subtrees (each aligned as proofs use them), from the stored nodes. */
  async rangeHashes(ranges: readonly LeafRange[]): Promise<Uint8Array[]> {
    const nodes = await this.nodes(nodesFor(ranges));
    return ranges.map((range) =>
      rangeHash(hasher, range, (id) => {
        const hash = nodes.get(`${id.level}/${id.index}`);
        if (!hash) throw new MissingNodeError(`audit node ${id.level}/${id.index} is missing`);
        return hash;
      }),
    );
  }

  /** Stored leaf hashes of seq `from` … `to` (inclusive), by seq. */
  async leafHashes(from: number, to: number): Promise<Map<number, string>> {
    const rows = await this.db
      .selectFrom('audit_nodes')
      .select(['idx', 'hash'])
      .where('level', '=', 0)
      .where('idx', '>=', from - 1)
      .where('idx', '<=', to - 1)
      .execute();
    return new Map(rows.map((r) => [Number(r.idx) + 1, r.hash]));
  }

  /** Entries with seq in [from, to], in order. */
  async entries(from: number, to: number): Promise<AuditLogTable[]> {
    return this.db.selectFrom('audit_log').selectAll().where('seq', '>=', from).where('seq', '<=', to).orderBy('seq').execute();
  }

  /** Stores a checkpoint; false when one for this size exists already (another process signed it). */
  async insertCheckpoint(cp: SignedCheckpoint, createdAt: number): Promise<boolean> {
    const result = await this.db
      .insertInto('audit_checkpoints')
      .values({ tree_size: cp.treeSize, root_hash: cp.rootHash, timestamp: cp.timestamp, key_id: cp.keyId, signature: cp.signature, created_at: createdAt, origin: cp.origin ?? null })
      .onConflict((oc) => oc.column('tree_size').doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  async checkpointAt(treeSize: number): Promise<SignedCheckpoint | undefined> {
    const row = await this.db.selectFrom('audit_checkpoints').selectAll().where('tree_size', '=', treeSize).executeTakeFirst();
    return row && checkpointOf(row);
  }

  /** The newest checkpoint, optionally the newest at or below `maxSize`. */
  async latestCheckpoint(maxSize?: number): Promise<(SignedCheckpoint & { createdAt: number }) | undefined> {
    let query = this.db.selectFrom('audit_checkpoints').selectAll();
    if (maxSize !== undefined) query = query.where('tree_size', '<=', maxSize);
    const row = await query.orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
    return row && { ...checkpointOf(row), createdAt: Number(row.created_at) };
  }

  /** Checkpoints with tree size in [from, to], by size. */
  async checkpoints(from: number, to: number, limit = 100_000): Promise<SignedCheckpoint[]> {
    const rows = await this.db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .where('tree_size', '>=', from)
      .where('tree_size', '<=', to)
      .orderBy('tree_size')
      .limit(limit)
      .execute();
    return rows.map(checkpointOf);
  }

  /** Audit entries of `type` about requests created in [from, to) (escalations for reports). */
  /** How many entries of each of `types` were written in [from, to). */
  async countAuditByType(types: readonly string[], from: number, to: number): Promise<Record<string, number>> {
    if (types.length === 0) return {};
    const rows = await this.db
      .selectFrom('audit_log')
      .select((eb) => ['type', eb.fn.countAll<number>().as('n')])
      .where('type', 'in', [...types])
      .where('at', '>=', from)
      .where('at', '<', to)
      .groupBy('type')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.type, Number(r.n)]));
  }

  async countAuditOfRequests(type: string, from: number, to: number): Promise<number> {
    const row = await this.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('type', '=', type)
      .where('request_id', 'in', (eb) => eb.selectFrom('requests').select('id').where('created_at', '>=', from).where('created_at', '<', to))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** One operator's votes cast in [from, to), with what each request needed (its SLA). */
  async operatorVotes(operatorId: string, from: number, to: number) {
    const rows = await this.db
      .selectFrom('reviews')
      .innerJoin('requests', 'requests.id', 'reviews.request_id')
      .select(['reviews.verdict', 'reviews.created_at', 'reviews.args', 'reviews.alternative', 'requests.created_at as request_created_at', 'requests.assessment'])
      .where('reviews.operator_id', '=', operatorId)
      .where('reviews.created_at', '>=', from)
      .where('reviews.created_at', '<', to)
      .orderBy('reviews.created_at')
      .execute();
    return rows.map((r) => this.sealer.openReview(r));
  }

  /** Entries 1 … this were removed by retention (0: none). */
  async prunedTo(): Promise<number> {
    const row = await this.db.selectFrom('audit_head').select('pruned_to').where('id', '=', 1).executeTakeFirstOrThrow();
    return Number(row.pruned_to);
  }

  /** The first seq from which every entry is kept: the smallest seq of an entry at or after `at`, if any. */
  async firstSeqAtOrAfter(at: number): Promise<number | undefined> {
    // The smallest seq among entries at or after `at`: entries are not in time order by seq (an
    // integrated entry keeps its transaction's time), so the earliest by time is not the one to keep from.
    const row = await this.db.selectFrom('audit_log').select((eb) => eb.fn.min('seq').as('seq')).where('at', '>=', at).executeTakeFirst();
    return row?.seq === null || row?.seq === undefined ? undefined : Number(row.seq);
  }

  /** The smallest checkpoint size in (after, upTo]. */
  async nextCheckpointSize(after: number, upTo: number): Promise<number | undefined> {
    const row = await this.db
      .selectFrom('audit_checkpoints')
      .select('tree_size')
      .where('tree_size', '>', after)
      .where('tree_size', '<=', upTo)
      .orderBy('tree_size')
      .limit(1)
      .executeTakeFirst();
    return row ? Number(row.tree_size) : undefined;
  }

  /**
   * Removes entries `from + 1` … `to`, records the new prune point and stores the signer's
   * retention statement for it, in one transaction with the caller. `to` must be a checkpoint's
   * size: the export starts from it. Nothing is removed unless the prune point was still `from`
   * (another server pruned first).
   */
  async pruneEntries(from: number, to: number, statement: SignedRetention, createdAt: number): Promise<number> {
    if (statement.prunedTo !== to) throw new Error(`the retention statement covers ${statement.prunedTo}, not ${to}`);
    const moved = await this.db.updateTable('audit_head').set({ pruned_to: to }).where('id', '=', 1).where('pruned_to', '=', from).executeTakeFirst();
    if (Number(moved.numUpdatedRows) !== 1) return 0;
    await this.db
      .insertInto('audit_retention')
      .values({ pruned_to: to, frontier: JSON.stringify(statement.frontier), timestamp: statement.timestamp, key_id: statement.keyId, signature: statement.signature, created_at: createdAt })
      .execute();
    const result = await this.db.deleteFrom('audit_log').where('seq', '>', from).where('seq', '<=', to).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** The checkpoint a deployment from before the signer's state file had signed last, until it is adopted (migration 011). */
  async upgradeMark(): Promise<{ treeSize: number; rootHash: string } | undefined> {
    const row = await this.db.selectFrom('audit_signer_upgrade').selectAll().where('id', '=', 1).executeTakeFirst();
    return row && { treeSize: Number(row.tree_size), rootHash: row.root_hash };
  }

  /** Removes the upgrade mark (once adopted, in the transaction of the adoption entry); false if another server did first. */
  async consumeUpgradeMark(): Promise<boolean> {
    const result = await this.db.deleteFrom('audit_signer_upgrade').where('id', '=', 1).executeTakeFirst();
    return Number(result.numDeletedRows) === 1;
  }

  /** The signed retention statement for the prune point `prunedTo`, if one was stored. */
  async retentionAt(prunedTo: number): Promise<SignedRetention | undefined> {
    const row = await this.db.selectFrom('audit_retention').selectAll().where('pruned_to', '=', prunedTo).executeTakeFirst();
    if (!row) return undefined;
    let frontier: unknown;
    try {
      frontier = JSON.parse(row.frontier);
    } catch {
      frontier = [];
    }
    return { prunedTo: Number(row.pruned_to), frontier: Array.isArray(frontier) ? frontier.map(String) : [], timestamp: row.timestamp, keyId: row.key_id, signature: row.signature };
  }

  async countCheckpoints(to: number): Promise<number> {
    const row = await this.db
      .selectFrom('audit_checkpoints')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tree_size', '<=', to)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}

function checkpointOf(row: AuditCheckpointsTable): SignedCheckpoint {
  return { ...(row.origin ? { origin: row.origin } : {}), treeSize: Number(row.tree_size), rootHash: row.root_hash, timestamp: row.timestamp, keyId: row.key_id, signature: row.signature };
}



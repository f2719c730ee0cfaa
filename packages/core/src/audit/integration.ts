/**
 * How pending audit entries become tree leaves (issue 14): the integrator takes a batch of
 * committed entries that have a database id but no position, and this decides their positions.
 *
 * - Ids come from a sequence: they may commit out of order and leave gaps, so they are never a
 *   position. The batch is ordered by id (a transaction that committed before another began drew
 *   its ids first) and given the seqs after the tree's size, gaplessly.
 * - Each id is integrated at most once: a batch with a repeated id is refused (the database's
 *   primary key makes it impossible; a planted duplicate must not become two leaves).
 * - Ids are compared exactly: the store reads them as text and passes a bigint, so an id at or
 *   above 2^53 (planted by a database writer; on SQLite every later id follows it) is still
 *   ordered and told apart exactly. A number must be a safe integer.
 *
 *   planIntegration(10, [{ id: 42 }, { id: 40 }]) // → [{ seq: 11, entry: {id: 40} }, { seq: 12, entry: {id: 42} }]
 */
export interface PendingRef {
  readonly id: number | bigint;
}

export interface Integration<T extends PendingRef> {
  readonly seq: number;
  readonly entry: T;
}

export function planIntegration<T extends PendingRef>(treeSize: number, batch: readonly T[]): Array<Integration<T>> {
  if (!Number.isSafeInteger(treeSize) || treeSize < 0) throw new RangeError(`tree size ${treeSize} is not a size`);
  const keyed = batch.map((entry) => {
    const { id } = entry;
    if (typeof id === 'number' && !Number.isSafeInteger(id)) throw new RangeError(`pending audit id ${id} is not an integer`);
    return { key: BigInt(id), entry };
  });
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (let i = 1; i < keyed.length; i++) {
    if (keyed[i - 1]!.key === keyed[i]!.key) throw new RangeError(`pending audit id ${keyed[i]!.key} appears twice in one batch`);
  }
  return keyed.map(({ entry }, i) => ({ seq: treeSize + 1 + i, entry }));
}

/** The fields of a pending entry as the database returned them. */
export interface PendingFields {
  readonly id: number | bigint;
  readonly at: unknown;
  readonly type: unknown;
  readonly request_id: unknown;
  readonly actor_type: unknown;
  readonly actor_id: unknown;
  readonly actor_name: unknown;
  readonly data: unknown;
}

/** The largest time a JavaScript Date (and so an ISO leaf time) can hold, in ms either side of 1970. */
const MAX_TIME = 8.64e15;

/**
 * Null when a pending entry can become a leaf; else why not. The audit writer never writes such
 * an entry; a database writer can, and one unserialisable row must not stall every entry after
 * it (the integrator then records `audit_entry_malformed` in its place).
 */
export function pendingEntryProblem(e: PendingFields): string | null {
  if (typeof e.at !== 'number' || !Number.isSafeInteger(e.at) || Math.abs(e.at) > MAX_TIME) return `its time ${String(e.at)} is not a time`;
  for (const field of ['type', 'actor_type', 'actor_id', 'actor_name', 'data'] as const) {
    if (typeof e[field] !== 'string') return `its ${field} is not text`;
  }
  if (e.request_id !== null && typeof e.request_id !== 'string') return 'its request_id is not text';
  return null;
}

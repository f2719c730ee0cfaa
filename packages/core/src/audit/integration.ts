/**
 * How pending audit entries become tree leaves (issue 14): the integrator takes a batch of
 * committed entries that have a database id but no position, and this decides their positions.
 *
 * - Ids come from a sequence: they may commit out of order and leave gaps, so they are never a
 *   position. The batch is ordered by id (a transaction that committed before another began drew
 *   its ids first) and given the seqs after the tree's size, gaplessly.
 * - Each id is integrated at most once: a batch with a repeated id is refused (the database's
 *   primary key makes it impossible; a planted duplicate must not become two leaves).
 *
 *   planIntegration(10, [{ id: 42 }, { id: 40 }]) // → [{ seq: 11, entry: {id: 40} }, { seq: 12, entry: {id: 42} }]
 */
export interface PendingRef {
  readonly id: number;
}

export interface Integration<T extends PendingRef> {
  readonly seq: number;
  readonly entry: T;
}

export function planIntegration<T extends PendingRef>(treeSize: number, batch: readonly T[]): Array<Integration<T>> {
  if (!Number.isSafeInteger(treeSize) || treeSize < 0) throw new RangeError(`tree size ${treeSize} is not a size`);
  const sorted = [...batch].sort((a, b) => a.id - b.id);
  for (let i = 0; i < sorted.length; i++) {
    const id = sorted[i]!.id;
    if (!Number.isSafeInteger(id)) throw new RangeError(`pending audit id ${id} is not an integer`);
    if (i > 0 && sorted[i - 1]!.id === id) throw new RangeError(`pending audit id ${id} appears twice in one batch`);
  }
  return sorted.map((entry, i) => ({ seq: treeSize + 1 + i, entry }));
}

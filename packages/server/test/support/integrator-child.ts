/**
 * A child process for the integrator's crash and exclusion tests.
 *
 * Usage: node --import tsx integrator-child.ts MODE URL [ARGS]
 * - `drain URL BATCH`: opens a store whose integrator takes BATCH entries per transaction and
 *   integrates until nothing is pending, printing `batch` after each; the parent kills it (-9)
 *   while it works.
 * - `contend URL LOG ROUNDS`: ROUNDS times, writes entries and runs the real `integrateBatch` in a
 *   transaction; while it holds the integrator lock (until its commit) it logs `enter`/`exit`
 *   to LOG and sleeps, so two integrators that ever ran at once would interleave there.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../../src/store/connect.ts';
import { Store } from '../../src/store/store.ts';
import { TrailQueries } from '../../src/store/trail.ts';

const [mode, url, a, b] = process.argv.slice(2) as [string, string, string, string];
const connection = await connect(url);

if (mode === 'drain') {
  // No background loop of its own: batches run one after another, as fast as they can.
  const store = new Store(connection, undefined, { batch: Number(a), pollMs: 3_600_000 });
  const postgres = connection.capabilities.dialect === 'postgres';
  process.stdout.write('ready\n');
  for (;;) {
    const result = postgres
      ? await connection.db.transaction().execute((trx) => new TrailQueries(trx).integrateBatch(Number(a), true))
      : await store.transaction((tx) => tx.trail.integrateBatch(Number(a), false));
    if (result && result.taken === 0) break;
    process.stdout.write('batch\n');
  }
  process.stdout.write('done\n');
  await store.close();
} else if (mode === 'contend') {
  const store = new Store(connection, undefined, { pollMs: 3_600_000 });
  for (let i = 0; i < Number(b); i++) {
    await store.transaction((tx) => tx.appendAudit([{ at: Date.now(), type: 'contend', request_id: null, actor_type: 'system', actor_id: String(process.pid), actor_name: 'contender', data: JSON.stringify({ i }) }]));
    await connection.db.transaction().execute(async (trx) => {
      const result = await new TrailQueries(trx).integrateBatch(100, true);
      if (result === null) return;
      appendFileSync(a, `enter ${process.pid}\n`);
      await sleep(3 + Math.random() * 8);
      appendFileSync(a, `exit ${process.pid}\n`);
    });
  }
  await store.integrator.stop();
  await connection.destroy();
}

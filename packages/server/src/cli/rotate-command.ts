/**
 * `countersign keys rotate-encryption`: re-seals every value at rest under the current
 * COUNTERSIGN_ENCRYPTION_KEY (store/rotation.ts). Unlike the client commands it opens the
 * database itself (--database / COUNTERSIGN_DATABASE_URL), as `serve` does, with the same key
 * settings as the servers; it is safe while they run and safe to interrupt and run again.
 */
import type { Command } from 'commander';
import { positiveInt, print, printJson } from './common.ts';
import type { RotationReport } from '../store/rotation.ts';

export function registerRotateEncryption(keys: Command): void {
  keys
    .command('rotate-encryption')
    .description('re-seal everything encrypted at rest under COUNTERSIGN_ENCRYPTION_KEY (old keys in COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS); opens the database directly')
    .option('--database <url>', 'sqlite:PATH or postgres://… (env COUNTERSIGN_DATABASE_URL)')
    .option('--batch <n>', 'rows per transaction (default 200)', positiveInt(10_000))
    .option('--include-plain', 'also seal values stored before any key was set')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
Rotating the key: set COUNTERSIGN_ENCRYPTION_KEY to the new key and COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS
to the old one on every server and restart them; run this command with the same two variables; when
it reports nothing left under an old key, remove COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS and restart.
Progress goes to stderr. Exits 1 when values remain that no configured key opens.`,
    )
    .action(async (flags: { database?: string; batch?: number; includePlain?: boolean; json?: boolean }) => {
      // Loaded here so other commands do not pay for the store at start-up.
      const { connect } = await import('../store/connect.ts');
      const { Sealer } = await import('../store/sealing.ts');
      const { Store } = await import('../store/store.ts');
      const { rotateEncryption } = await import('../store/rotation.ts');
      const sealer = Sealer.fromKey(process.env.COUNTERSIGN_ENCRYPTION_KEY || undefined, process.env.COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS || undefined);
      const store = new Store(await connect(flags.database ?? process.env.COUNTERSIGN_DATABASE_URL ?? 'sqlite:./countersign.db'), sealer);
      let report: RotationReport;
      try {
        report = await rotateEncryption(store, {
          batchSize: flags.batch,
          includePlain: flags.includePlain,
          onProgress: (p) => process.stderr.write(`${p.table}: ${p.resealed} re-sealed (batch ${p.batch})\n`),
        });
      } finally {
        await store.close();
      }
      if (flags.json) printJson(report);
      else printReport(report);
      if (report.staleLeft > 0) process.exitCode = 1;
    });
}

function printReport(r: RotationReport): void {
  print(`current key ${r.keyId}${r.previousKeyIds.length > 0 ? `; previous ${r.previousKeyIds.join(', ')}` : ''}`);
  print(`re-sealed ${r.resealed}, already current ${r.alreadyCurrent}${r.includePlain ? `, sealed plain ${r.sealedPlain}` : ''}, plain left ${r.plainLeft}`);
  if (r.staleLeft > 0) {
    const keys = r.unreadableKeyIds.length > 0 ? ` (keys ${r.unreadableKeyIds.join(', ')} are not configured)` : '';
    print(`${r.staleLeft} values are still sealed under another key${keys}: keep the old key until they are re-sealed`);
  } else {
    print('nothing is left under an old key: COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS can be removed');
  }
  if (r.plainLeft > 0 && !r.includePlain) print(`${r.plainLeft} values were never encrypted; --include-plain seals them`);
}

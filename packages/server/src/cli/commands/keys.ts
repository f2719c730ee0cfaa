/**
 * `countersign keys rotate-encryption`: re-seals every value at rest under the current
 * COUNTERSIGN_ENCRYPTION_KEY (keys/rotation.ts). Unlike the client commands it opens the
 * database itself (--database / COUNTERSIGN_DATABASE_URL), as `serve` does, with the same key
 * settings as the servers; it is safe while they run and safe to interrupt and run again.
 */
import { CountersignError } from '@countersign/core/errors';
import type { Command } from 'commander';
import { positiveInt, print, printJson } from '../common.ts';
import type { RotationReport } from '../../keys/rotation.ts';

export function registerRotateEncryption(keys: Command): void {
  keys
    .command('rotate-encryption')
    .description('re-seal everything encrypted at rest under COUNTERSIGN_ENCRYPTION_KEY (old keys in COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS); opens the database directly')
    .option('--database <url>', 'sqlite:PATH or postgres://… (env COUNTERSIGN_DATABASE_URL); required: it is never guessed')
    .option('--batch <n>', 'rows per transaction (default 200)', positiveInt(10_000))
    .option('--include-plain', 'also seal values stored before any key was set')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
Rotating the key: first add the new key to COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS on every server and
restart them; then make it COUNTERSIGN_ENCRYPTION_KEY with the old one in COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS
and restart them again; run this command with those two variables and --database; when it reports
nothing left under an old key, remove COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS and restart.
Progress goes to stderr. Exits 1 when values remain that no configured key opens.`,
    )
    .action(async (flags: { database?: string; batch?: number; includePlain?: boolean; json?: boolean }) => {
      // Loaded here so other commands do not pay for the store at start-up.
      const { connect } = await import('../../store/connect.ts');
      const { Sealer } = await import('../../store/sealing.ts');
      const { Store } = await import('../../store/store.ts');
      const { rotateEncryption } = await import('../../keys/rotation.ts');
      const { existsSync } = await import('node:fs');
      const { parseDatabaseUrl } = await import('../../store/connect.ts');
      const { processEnvironment, guardOptionsFromEnv } = await import('../../config.ts');
      const env = processEnvironment();
      const keys = guardOptionsFromEnv(env);
      const sealer = Sealer.fromKey(keys.encryptionKey, keys.previousEncryptionKeys);
      // Never a default database: rotating an empty one would report "nothing left under an old key".
      const url = flags.database ?? env.COUNTERSIGN_DATABASE_URL;
      if (!url) throw new CountersignError('VALIDATION_FAILED', 'say which database to rotate: --database URL or COUNTERSIGN_DATABASE_URL (the one your servers use)');
      const parsed = parseDatabaseUrl(url);
      if (parsed.dialect === 'sqlite' && (parsed.target === ':memory:' || !existsSync(parsed.target))) {
        throw new CountersignError('VALIDATION_FAILED', `no database at ${parsed.target}: point --database at the one your servers use`);
      }
      const store = new Store(await connect(url), sealer);
      let report: RotationReport;
      try {
        if ((await store.countCredentials()) === 0) {
          throw new CountersignError('VALIDATION_FAILED', 'this database has never been used by a Countersign server (no credentials): point --database at the one your servers use');
        }
        // TOTP seeds sealed under the server secret's seed key (no encryption key was set) move under the new key too.
        const { resolveRuntimeConfig } = await import('../../config.ts');
        const { readServerSecret } = await import('../../keys/server-secret.ts');
        const { seedSealer } = await import('../../guard/totp.ts');
        const secretPath = resolveRuntimeConfig({ database: url }, env).serverSecretPath;
        const secret = secretPath === null ? null : readServerSecret(secretPath);
        report = await rotateEncryption(store, {
          seedKey: secret ? seedSealer(secret) : undefined,
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
    const keys = r.unreadableKeyIds.length > 0 ? ` (keys ${r.unreadableKeyIds.join(', ')}: not configured, or the values were altered)` : '';
    print(`${r.staleLeft} values are still sealed under another key${keys}: keep the old key until they are re-sealed`);
  } else if (r.resealed + r.alreadyCurrent === 0) {
    print('no encrypted values were found: keep COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS until you have checked this is the right database');
  } else {
    print('nothing is left under an old key: COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS can be removed');
  }
  if (r.plainLeft > 0 && !r.includePlain) print(`${r.plainLeft} values were never encrypted; --include-plain seals them`);
}

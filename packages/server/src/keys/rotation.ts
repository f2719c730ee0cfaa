/**
 * Re-encryption after a key change (`countersign keys rotate-encryption`): every sealed value not
 * under COUNTERSIGN_ENCRYPTION_KEY — request columns, reviews' modified args, TOTP secrets — is
 * opened with its old key (COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS) and sealed again under the
 * current one, in small transactions of `batchSize` rows through the store, so a running server
 * is held up for one batch at a time. Values already under the current key are never selected,
 * so an interrupted run is simply run again. Each value is swapped only if it is unchanged since
 * it was read, so a server writing meanwhile wins. At the end one `encryption_rotated` audit entry
 * records the counts and key ids (never keys); when nothing is left under an old key, the old key
 * can be removed from the configuration.
 *
 *   const report = await rotateEncryption(store, { batchSize: 500, onProgress: (p) => log(p) });
 *   if (report.staleLeft === 0) // COUNTERSIGN_ENCRYPTION_KEY_PREVIOUS can go
 */
import { CountersignError } from '@countersign/core';
import { SecretBox } from '../guard/totp.ts';
import type { Sealer } from '../store/sealing.ts';
import { isSealed } from '../store/sealing.ts';
import type { SealedRow, ResealTarget } from '../store/sealed-sql.ts';
import type { Queries, Store } from '../store/store.ts';
import { SYSTEM_ACTOR, draft, standaloneAuditWriter, type AuditWriter } from '../audit/writer.ts';

export const SEALED_TABLES = ['requests', 'reviews', 'operator_totp'] as const;
export type SealedTableName = (typeof SEALED_TABLES)[number];

export interface RotationOptions {
  /** Rows per transaction (default 200). */
  batchSize?: number | undefined;
  /** Seal never-encrypted values too (rows from before a key was set). */
  includePlain?: boolean | undefined;
  /** Stop after this many batches, leaving the rest for the next run (report.complete is false, no audit entry). */
  maxBatches?: number | undefined;
  onProgress?: ((progress: { table: SealedTableName; batch: number; resealed: number }) => void) | undefined;
  now?: (() => number) | undefined;
  /** The server secret file's seed key (guard/totp.ts `seedSealer`): TOTP seeds sealed under it when no key was set are re-sealed too. */
  seedKey?: Sealer | undefined;
  /** Writes the `encryption_rotated` entry; default a standalone writer (the command has no audit key; audit/writer.ts). */
  writer?: AuditWriter | undefined;
}

export interface TableRotation {
  /** Values this run moved from an old key to the current one. */
  resealed: number;
  /** Plain values this run sealed (`includePlain`). */
  sealedPlain: number;
  /** Values under the current key that this run did not have to touch. */
  alreadyCurrent: number;
  /** Values still stored unencrypted. */
  plainLeft: number;
  /** Values still sealed under another key (their key is not configured, or the run stopped early). */
  staleLeft: number;
}

export interface RotationReport extends TableRotation {
  keyId: string;
  previousKeyIds: string[];
  includePlain: boolean;
  /** False when `maxBatches` stopped the run early. */
  complete: boolean;
  /** Ids of the keys of values that could not be opened (`enc:v1` when the value names none). */
  unreadableKeyIds: string[];
  tables: Record<SealedTableName, TableRotation>;
}


interface Codec {
  open(value: string, where: string): string;
  seal(plain: string): string;
}

export async function rotateEncryption(store: Store, options: RotationOptions = {}): Promise<RotationReport> {
  const sealer = store.sealer;
  const current = sealer.keys.current;
  const currentPrefix = sealer.currentPrefix;
  if (!current || currentPrefix === null) {
    throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_ENCRYPTION_KEY is not set: rotate-encryption re-seals every value under it');
  }
  const batchSize = options.batchSize ?? 200;
  const includePlain = options.includePlain ?? false;
  const target: ResealTarget = { currentPrefix, includePlain };
  const box = new SecretBox(sealer, options.seedKey ?? null);
  const codecs: Record<SealedTableName, Codec> = {
    requests: sealer,
    reviews: sealer,
    operator_totp: { open: (value) => box.open(value), seal: (plain) => box.seal(plain) },
  };
  const moved = Object.fromEntries(SEALED_TABLES.map((t) => [t, { resealed: 0, sealedPlain: 0 }])) as Record<SealedTableName, { resealed: number; sealedPlain: number }>;
  const unreadable = new Set<string>();
  let batches = 0;
  let complete = true;

  tables: for (const table of SEALED_TABLES) {
    let after = '';
    for (;;) {
      if (options.maxBatches !== undefined && batches >= options.maxBatches) {
        complete = false;
        break tables;
      }
      const batch = await store.transaction(async (tx) => {
        const rows = await resealBatch(tx, table, after, batchSize, target);
        const counts = { resealed: 0, sealedPlain: 0, unreadable: [] as string[] };
        for (const row of rows) {
          for (const [column, value] of Object.entries(row.values)) {
            if (value === null || value.startsWith(currentPrefix)) continue;
            const sealed = isSealed(value);
            if (!sealed && !includePlain) continue;
            let next: string;
            try {
              next = codecs[table].seal(codecs[table].open(value, `${table}.${column} of ${row.key}`));
            } catch {
              counts.unreadable.push(sealer.keyIdOf(value) ?? 'enc:v1');
              continue;
            }
            if (await replaceSealed(tx, table, row.key, column, value, next)) counts[sealed ? 'resealed' : 'sealedPlain'] += 1;
          }
        }
        return { rows, ...counts };
      });
      batches += 1;
      moved[table].resealed += batch.resealed;
      moved[table].sealedPlain += batch.sealedPlain;
      for (const id of batch.unreadable) unreadable.add(id);
      options.onProgress?.({ table, batch: batches, resealed: moved[table].resealed + moved[table].sealedPlain });
      const last = batch.rows.at(-1);
      if (!last || batch.rows.length < batchSize) break;
      after = last.key;
    }
  }

  const tableReports = {} as Record<SealedTableName, TableRotation>;
  for (const table of SEALED_TABLES) {
    const census = table === 'operator_totp' ? await store.guard.totpCensus(currentPrefix) : await store.sealCensus(table, currentPrefix);
    const { resealed, sealedPlain } = moved[table];
    tableReports[table] = { resealed, sealedPlain, alreadyCurrent: Math.max(0, census.current - resealed - sealedPlain), plainLeft: census.plain, staleLeft: census.stale };
  }
  const total = (field: keyof TableRotation) => SEALED_TABLES.reduce((n, t) => n + tableReports[t][field], 0);
  const report: RotationReport = {
    keyId: current.id,
    previousKeyIds: sealer.keys.previous.map((k) => k.id),
    includePlain,
    complete,
    resealed: total('resealed'),
    sealedPlain: total('sealedPlain'),
    alreadyCurrent: total('alreadyCurrent'),
    plainLeft: total('plainLeft'),
    staleLeft: total('staleLeft'),
    unreadableKeyIds: [...unreadable].sort(),
    tables: tableReports,
  };
  if (complete) {
    const at = (options.now ?? Date.now)();
    const writer = options.writer ?? standaloneAuditWriter();
    await store.transaction((tx) => writer.append(tx, [draft('encryption_rotated', null, SYSTEM_ACTOR, report, at)]));
  }
  return report;
}

function resealBatch(tx: Queries, table: SealedTableName, after: string, limit: number, target: ResealTarget): Promise<SealedRow[]> {
  return table === 'operator_totp' ? tx.guard.totpResealBatch(after, limit, target) : tx.resealBatch(table, after, limit, target);
}

function replaceSealed(tx: Queries, table: SealedTableName, key: string, column: string, before: string, after: string): Promise<boolean> {
  return table === 'operator_totp' ? tx.guard.replaceTotpSecret(key, before, after) : tx.replaceSealed(table, key, column, before, after);
}

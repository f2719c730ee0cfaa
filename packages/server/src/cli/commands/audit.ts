/**
 * `countersign audit public-key | export | verify`.
 *
 *   countersign audit public-key --out key.pem                  the key that signs the trail
 *   countersign audit export --out trail.jsonl                  entries and checkpoints, signed up to now
 *   countersign audit verify                                    the live server's trail
 *   countersign audit verify --file trail.jsonl --public-key key.pem   offline: no server, no database
 *   countersign audit verify --checkpoint /witness/dir               pinned: must extend every checkpoint there
 *   countersign audit verify --since checkpoint-…1500.note           what was added after that checkpoint
 *   countersign audit trust-current --database URL [--checkpoint DIR]  adopt the verified trail as the signer's state
 *   countersign audit query --actor alice --from 2026-01-01              filtered, paged entries
 *
 * Verification recomputes the Merkle tree from the entries' bytes, checks every checkpoint's
 * signature and root (each is therefore a prefix of the next), and stops at the first fault,
 * naming its line. Against a live server it also checks that the server's newest checkpoint
 * extends what was verified (a consistency proof).
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { SignedCheckpoint, TrailResult } from '@countersign/core';
import { REGULATIONS } from '@countersign/core/constants';
import { CountersignError } from '@countersign/core/errors';
import { clientFrom, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import type { ApiClient } from '../http-client.ts';
import { safe, safeMultiline, table } from '../format.ts';
import type { AuditEntry } from '../../engine/engine.ts';
import type { PublicAuditKey } from '../../audit/crypto.ts';
import type { VerifyProgress } from '../../audit/verify.ts';
import { AtomicFile, writeFileAtomically } from '../atomic-file.ts';

// The trail's crypto and verifier (and through them the domain's schemas) load inside the
// commands that use them, not at the CLI's start-up (docs/ARCHITECTURE.md, CLI cold start).
const trailCrypto = () => import('../../audit/crypto.ts');
const trailVerifier = () => import('../../audit/verify.ts');

interface ForwardingRow {
  destination: string;
  configured: boolean;
  state: string;
  cursor: number;
  lag: number;
  deliveredAt: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
}

function size(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number.');
  return n;
}

export function registerAuditCommands(audit: Command): void {
  withClientOptions(
    audit
      .command('query')
      .description('audit entries filtered by request, actor, type and time, oldest first (or --newest)')
      .option('--request <id>', "one request's entries")
      .option('--actor <name>', 'entries by this actor (operator or agent name, or id)')
      .option('--type <types>', 'entries of this type, or of several comma-separated (created, queued, reviewed, approved, …)')
      .option('--newest', 'newest first')
      .option('--from <time>', 'at or after this time (ISO 8601, e.g. 2026-01-31 or 2026-01-31T09:00:00Z)')
      .option('--to <time>', 'before this time')
      .option('--limit <n>', 'at most this many entries (default 50)', (v) => Math.max(1, size(v)))
      .option('--cursor <cursor>', 'continue where a previous query stopped'),
  ).action(async (flags: CommonFlags & { request?: string; actor?: string; type?: string; newest?: boolean; from?: string; to?: string; limit?: number; cursor?: string }) => {
    const client = clientFrom(flags);
    const want = flags.limit ?? 50;
    const items: AuditEntry[] = [];
    let cursor = flags.cursor;
    let next: string | null = null;
    do {
      const page = await client.get<{ items: AuditEntry[]; nextCursor: string | null }>('/v1/audit', {
        requestId: flags.request,
        actor: flags.actor,
        type: flags.type,
        order: flags.newest ? 'newest' : undefined,
        from: flags.from,
        to: flags.to,
        cursor,
        limit: Math.min(1000, want - items.length),
      });
      items.push(...page.items);
      next = page.nextCursor;
      cursor = next ?? undefined;
    } while (next !== null && items.length < want);
    if (flags.json) return printJson({ items, nextCursor: next });
    if (items.length === 0) return print('No audit entries match.');
    print(
      table(items, [
        { header: 'SEQ', value: (e) => String(e.seq), align: 'right' },
        { header: 'TIME', value: (e) => e.at },
        { header: 'TYPE', value: (e) => e.type, max: 20 },
        { header: 'ACTOR', value: (e) => `${e.actor.type}:${e.actor.name}`, max: 28 },
        { header: 'REQUEST', value: (e) => e.requestId ?? '-' },
        { header: 'DATA', value: (e) => JSON.stringify(e.data) ?? '', max: 60 },
      ]),
    );
    if (next !== null) print(`more: countersign audit query …${flags.newest ? ' --newest' : ''} --cursor ${next}`);
  });

  withClientOptions(
    audit
      .command('forwarding')
      .description("SIEM forwarding: each destination's cursor, lag behind the trail, lease holder and last error (admin, auditor)"),
  ).action(async (flags: CommonFlags) => {
    const client = clientFrom(flags);
    const status = await client.get<{ head: number; destinations: ForwardingRow[] }>('/v1/forwarding');
    if (flags.json) return printJson(status);
    if (status.destinations.length === 0) return print('no SIEM destination is configured (COUNTERSIGN_FORWARD_SYSLOG_URL, COUNTERSIGN_FORWARD_HTTP_URL)');
    print(
      table(status.destinations, [
        { header: 'DESTINATION', value: (d) => d.destination + (d.configured ? '' : ' (not configured)'), max: 60 },
        { header: 'STATE', value: (d) => d.state },
        { header: 'CURSOR', value: (d) => String(d.cursor), align: 'right' },
        { header: 'LAG', value: (d) => String(d.lag), align: 'right' },
        { header: 'DELIVERED', value: (d) => d.deliveredAt ?? '-' },
        { header: 'LAST ERROR', value: (d) => (d.lastError === null ? '-' : `${d.lastErrorAt ?? ''} ${d.lastError}`), max: 80 },
      ]),
    );
  });

  withClientOptions(
    audit
      .command('public-key')
      .description("print (or save) the server's audit public key (PEM), for offline verification")
      .option('--out <file>', 'write the PEM to this file'),
  ).action(async (flags: CommonFlags & { out?: string }) => {
    const client = clientFrom(flags);
    const response = await client.stream('/v1/audit/public-key');
    const pem = await response.text();
    const { publicKeyFromPem } = await trailCrypto();
    const key = publicKeyFromPem(pem);
    if (flags.out) {
      await writeFile(flags.out, pem);
      if (flags.json) return printJson({ keyId: key.keyId, out: flags.out });
      return print(`wrote the audit public key ${key.keyId} to ${safe(flags.out)}`);
    }
    if (flags.json) return printJson({ keyId: key.keyId, publicKeyPem: pem });
    print(pem);
  });

  withClientOptions(
    audit
      .command('export')
      .description('write the signed audit trail (entries and checkpoints, JSON Lines) to a file')
      .requiredOption('--out <file>', 'where to write it ("-" for standard output)')
      .option('--tree-size <n>', 'export the first N entries (default: sign a checkpoint now and export everything)', size)
      .option('--no-checkpoint', 'do not sign a fresh checkpoint first; export up to the latest one'),
  ).action(async (flags: CommonFlags & { out: string; treeSize?: number; checkpoint: boolean }) => {
    const client = clientFrom(flags);
    const treeSize = flags.treeSize ?? (flags.checkpoint ? (await client.post<SignedCheckpoint>('/v1/audit/checkpoints', undefined)).treeSize : undefined);
    const response = await client.stream('/v1/audit/export', { treeSize });
    const toStdout = flags.out === '-';
    // A file is written beside the target and renamed into place (cli/atomic-file.ts): an export
    // cut short never truncates, replaces or deletes a previous one.
    const { chunksOf } = await trailVerifier();
    const file = toStdout ? undefined : await AtomicFile.create(flags.out);
    let header: { treeSize: number; checkpoints: number; keyId: string } | undefined;
    const head: Buffer[] = [];
    let headBytes = 0;
    try {
      for await (const chunk of chunksOf(response.body!)) {
        if (header === undefined) {
          const newline = chunk.indexOf(10);
          const take = newline >= 0 ? chunk.subarray(0, newline) : chunk;
          headBytes += take.length;
          if (headBytes > MAX_HEADER_BYTES) throw new Error(`the export's header line is longer than ${MAX_HEADER_BYTES} bytes`);
          head.push(Buffer.from(take));
          if (newline >= 0) header = JSON.parse(Buffer.concat(head).toString('utf8')) as typeof header;
        }
        if (file) await file.write(chunk);
        else if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
      }
      await file?.commit();
    } catch (err) {
      await file?.abort();
      if (err instanceof CountersignError) throw err;
      throw new CountersignError('NETWORK_ERROR', `the export was cut short: ${(err as Error).message}; ${file ? `${safe(flags.out)} was left as it was` : 'the output is incomplete'}`);
    }
    if (toStdout) return;
    const summary = { out: flags.out, treeSize: header?.treeSize ?? 0, checkpoints: header?.checkpoints ?? 0, keyId: header?.keyId ?? null };
    if (flags.json) return printJson(summary);
    print(`wrote ${summary.treeSize} entries and ${summary.checkpoints} checkpoints (key ${safe(summary.keyId)}) to ${safe(flags.out)}`);
  });

  withClientOptions(
    audit
      .command('verify')
      .description('verify the audit trail: the live server, or an export offline (--file, --public-key)')
      .option('--file <trail.jsonl>', 'verify this export offline (needs --public-key; no server, no database)')
      .option('--public-key <key.pem>', 'the trusted public key (PEM); live, the default is the key the server serves')
      .option('--checkpoint <note...>', 'pin: fail unless the trail extends each of these checkpoint notes (files, or a directory of them such as COUNTERSIGN_AUDIT_WITNESS_DIR)')
      .option('--since <note>', 'a checkpoint note: pin it, and print the entries added after it')
      .option('--skip-pruned-pins', 'offline: skip pinned checkpoints in the pruned prefix (an export cannot show them) instead of failing; the output lists each one skipped'),
  ).action(async (flags: CommonFlags & { file?: string; publicKey?: string; checkpoint?: string[]; since?: string; skipPrunedPins?: boolean }) => {
    const [{ publicKeyFromPem }, { checkPinsLive, chunksOf, readCheckpointNotes, verifyTrailStream }] = await Promise.all([trailCrypto(), trailVerifier()]);
    const pinned = flags.publicKey === undefined ? undefined : publicKeyFromPem(readText(flags.publicKey, '--public-key'));
    // Pinned checkpoints (a witness's notes) and --since: each must be signed by the trusted key.
    let pins: SignedCheckpoint[] = [];
    let since: SignedCheckpoint | undefined;
    const pinsFrom = (k: PublicAuditKey): SignedCheckpoint[] => {
      const notes = readCheckpointNotes(flags.checkpoint ?? [], k);
      if (flags.since !== undefined) since = readCheckpointNotes([flags.since], k)[0];
      return since ? [...notes, since] : notes;
    };
    const added: AuditEntry[] = [];
    const onEntry = flags.since === undefined ? undefined : (seq: number, leafJson: string) => {
      if (since && seq > since.treeSize) added.push(JSON.parse(leafJson) as AuditEntry);
    };
    const progress = progressBar(!flags.json && process.stderr.isTTY === true);
    const started = performance.now();
    let result: TrailResult;
    let source: string;
    let key: PublicAuditKey;
    let client: ApiClient | undefined;
    if (flags.file !== undefined) {
      if (!pinned) {
        throw new CountersignError('VALIDATION_FAILED', "offline verification needs the trusted key: --public-key key.pem (from 'countersign audit public-key')");
      }
      key = pinned;
      source = flags.file;
      pins = pinsFrom(key);
      const total = fileSize(flags.file);
      result = await verifyTrailStream(createReadStream(flags.file, { highWaterMark: 1 << 20 }), key, {
        onProgress: (p) => progress.update(p, total),
        pinned: pins,
        onEntry,
        ...(flags.skipPrunedPins ? { skipPrunedPins: true } : {}),
      });
    } else {
      client = clientFrom(flags);
      key = pinned ?? publicKeyFromPem(await (await client.stream('/v1/audit/public-key')).text());
      pins = pinsFrom(key);
      source = client.baseUrl;
      // Sign what is there now, so the whole trail is covered; auditors without the right fall back to the latest checkpoint.
      await client.post('/v1/audit/checkpoints', undefined).catch((err: unknown) => {
        if (!(err instanceof CountersignError && err.code === 'FORBIDDEN')) throw err;
      });
      const response = await client.stream('/v1/audit/export');
      // Live, pins are checked after, by consistency proofs (which also reach into a pruned prefix).
      result = await verifyTrailStream(chunksOf(response.body!), key, { onProgress: (p) => progress.update(p, null), onEntry });
      if (result.ok && pins.length > 0) {
        const live = client;
        const pinCheck = await checkPinsLive(pins, result, async (from, to) => (await live.get<{ consistencyPath: string[] }>('/v1/audit/proof/consistency', { from, to })).consistencyPath);
        if (!pinCheck.ok) result = { ok: false, entriesChecked: result.entriesVerified, fault: { code: pinCheck.pin.treeSize > result.treeSize ? 'PIN_NOT_REACHED' : 'FORK', line: 0, message: pinCheck.reason } };
        else result = { ...result, pinned: new Set(pins.map((p) => p.treeSize)).size };
      }
    }
    progress.done();
    const seconds = (performance.now() - started) / 1000;

    let extension: { treeSize: number; consistent: boolean } | null = null;
    if (result.ok && client) extension = await checkExtension(client, result.treeSize, result.rootHash);

    const report = {
      ...result,
      ok: result.ok && (extension?.consistent ?? true),
      source,
      keyId: key.keyId,
      seconds: Number(seconds.toFixed(3)),
      latest: extension,
      // What was added is shown only once it verified.
      ...(since ? { since: since.treeSize, ...(result.ok && (extension?.consistent ?? true) ? { added } : {}) } : {}),
    };
    if (flags.json) printJson(report);
    if (!result.ok) {
      const f = result.fault;
      if (!flags.json) {
        print(`FAILED: ${safe(source)} does not verify (${f.code})`);
        print(`  ${safe(f.message)}`);
        print(`  ${result.entriesChecked} entries verified before the fault; key ${key.keyId}`);
        if (f.code === 'UNSIGNED_BASE') print('  a trail whose first entries were deleted in the database, without a retention statement signed by the audit key, is refused');
      }
      throw new CountersignError('AUDIT_VERIFICATION_FAILED', f.message, f);
    }
    if (extension && !extension.consistent) {
      throw new CountersignError('AUDIT_VERIFICATION_FAILED', `the server's latest checkpoint (size ${extension.treeSize}) is not consistent with the verified trail (size ${result.treeSize}): the log was rewritten`);
    }
    if (flags.json) return;
    // Only entries whose bytes were read are counted as verified: pruned entries no longer exist.
    const n = (x: number) => x.toLocaleString('en-US');
    const rate = seconds > 0 ? ` (${n(Math.round(result.entriesVerified / seconds))} entries/s)` : '';
    const range = result.entriesVerified > 0 ? ` (seq ${n(result.prunedTo + 1)}–${n(result.treeSize)})` : '';
    print(`OK: ${safe(source)} verifies: ${n(result.entriesVerified)} entries verified${range}, ${result.checkpoints} signed checkpoints, in ${seconds.toFixed(2)} s${rate}`);
    if (result.origin !== null) print(`  origin: ${safe(result.origin)} (this deployment's checkpoints and witness notes carry it)`);
    if (result.keys.length > 1) print(`  signed by ${result.keys.length} keys, followed from the trusted key through ${result.handovers} hand-over(s): ${result.keys.join(' → ')}`);
    if (result.prunedTo > 0) print(`  ${n(result.prunedTo)} earlier entries (seq 1–${n(result.prunedTo)}) were pruned by retention on ${result.prunedAt} (signed retention statement; the tree still commits to them)`);
    else print('  nothing was pruned');
    if (result.pinsSkipped.length > 0) {
      print(`  extends ${result.pinned} pinned checkpoints; NOT checked: ${result.pinsSkipped.length} pinned checkpoints in the pruned prefix (sizes ${result.pinsSkipped.map(n).join(', ')}), skipped by --skip-pruned-pins (verify live to prove them)`);
    } else if (pins.length > 0) print(`  extends all ${result.pinned} pinned checkpoints (up to tree size ${n(Math.max(...pins.map((p) => p.treeSize)))})`);
    print(`  root ${result.rootHash} at tree size ${result.treeSize}`);
    if (result.checkpoint) print(`  last checkpoint signed ${result.checkpoint.timestamp} by key ${key.keyId}`);
    if (extension && extension.treeSize > result.treeSize) print(`  the server's newest checkpoint (size ${extension.treeSize}) extends it (consistency proof verified)`);
    if (since) {
      print(`${n(added.length)} entries added after the checkpoint of size ${n(since.treeSize)} (signed ${since.timestamp}):`);
      if (added.length > 0) {
        print(
          table(added, [
            { header: 'SEQ', value: (e) => String(e.seq), align: 'right' },
            { header: 'TIME', value: (e) => e.at },
            { header: 'TYPE', value: (e) => e.type, max: 20 },
            { header: 'ACTOR', value: (e) => `${e.actor.type}:${e.actor.name}`, max: 28 },
            { header: 'REQUEST', value: (e) => e.requestId ?? '-' },
          ]),
        );
      }
    }
  });

  audit
    .command('trust-current')
    .description("verify the trail in the database and adopt its newest checkpoint as the audit signer's state (after the state file was lost); opens the database directly")
    .option('--database <url>', 'sqlite:PATH or postgres://… (env COUNTERSIGN_DATABASE_URL); required: it is never guessed')
    .option('--audit-key <path>', 'the audit key file (env COUNTERSIGN_AUDIT_KEY_PATH; default as for serve)')
    .option('--checkpoint <note...>', 'pin: adopt only if the trail extends each of these checkpoint notes (default: the witness directory, COUNTERSIGN_AUDIT_WITNESS_DIR)')
    .option('--no-witness', 'adopt with no pin at all: you vouch for what the database holds (recorded in the audit trail); refused without it when there is no witness')
    .requiredOption('--reason <text>', 'why (recorded in the audit trail)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
The audit signer refuses to sign (AUDIT_FORK, /healthz degraded) when its state file next to the key is
missing but the database holds checkpoints: it cannot tell that trail from a rewritten one. Restore the
state file from a backup if you can. Otherwise run this: it verifies the whole trail in the database
(and that it extends every --checkpoint note, by default every note in COUNTERSIGN_AUDIT_WITNESS_DIR),
then records its newest checkpoint as the signer's state and writes an audit_state_adopted entry.
Running servers pick the state up at their next tick. It never rolls an intact state back: with a
readable state of the key, the adopted checkpoint must extend it (else AUDIT_FORK).`,
    )
    .action(async (flags: { database?: string; auditKey?: string; checkpoint?: string[]; witness?: boolean; reason: string; json?: boolean }) => {
      const { trustCurrent } = await import('../../audit/adopt.ts');
      const result = await trustCurrent(flags);
      if (flags.json) return printJson(result);
      print(`adopted: the signer's state (${safe(result.statePath)}) is now the checkpoint of size ${result.treeSize} (root ${result.rootHash}), after verifying ${result.entriesVerified} entries${result.pinned > 0 ? ` and ${result.pinned} pinned checkpoints` : ' (no checkpoint pinned: you vouch for what the database held)'}; replaced: ${result.replaced}`);
    });
}

export function registerRotateKeyCommand(audit: Command): void {
  audit
    .command('rotate-key')
    .description('hand the audit trail over to a new signing key (a statement signed by both keys); opens the database directly')
    .option('--database <url>', 'sqlite:PATH or postgres://… (env COUNTERSIGN_DATABASE_URL); required: it is never guessed')
    .option('--audit-key <path>', 'the current audit key file (env COUNTERSIGN_AUDIT_KEY_PATH; default as for serve)')
    .requiredOption('--reason <text>', 'why (recorded in the audit trail)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
The current key signs the trail's head, then one transaction (under a lock: an advisory lock on
PostgreSQL, the write transaction on SQLite) records a hand-over statement signed by both the old
and the new key — old key, new key, the size and root the old key's authority ends at — retires the
old key by a compare-and-set (a concurrent rotation gets AUDIT_KEY_CONFLICT) and writes an
audit_key_rotated entry; the new key then signs its first checkpoint. The new key takes the key
file's path; the old one is kept as <name>.retired-<keyId>.pem, for nothing but reading: a retired
key never signs this trail again (a server started with it refuses: AUDIT_KEY_RETIRED). Restart
every server with the new key file; one still running on the old key stops signing and says why.
Verifiers and SDKs pinned to the old key follow the hand-over to the new one.`,
    )
    .action(async (flags: { database?: string; auditKey?: string; reason: string; json?: boolean }) => {
      const { rotateKeyCommand } = await import('../../audit/rotate.ts');
      const result = await rotateKeyCommand(flags);
      if (flags.json) return printJson(result);
      print(`rotated: the audit key ${result.fromKeyId} handed over to ${result.toKeyId} at tree size ${result.treeSize} (root ${result.rootHash}); the new key signed the checkpoint of size ${result.firstCheckpoint}`);
      print(`the new key is ${safe(result.keyPath)}; the retired one was moved to ${safe(result.retiredKeyPath)}. Restart every server with the new key file.`);
    });
}

/**
 * `countersign report --regulation SOC2 --from 2026-01-01 [--to …] [--format markdown|csv|json] [--out FILE]`:
 * the compliance report of a period (auditors and senior roles).
 */
export function registerReportCommand(program: Command): void {
  withClientOptions(
    program
      .command('report')
      .description('compliance report for a period: decisions, review times, SLA, escalations, overrides, violations, controls')
      .addOption(new Option('--regulation <name>', 'which controls to map to').choices([...REGULATIONS]).makeOptionMandatory())
      .requiredOption('--from <time>', 'start of the period (ISO 8601, e.g. 2026-01-01)')
      .option('--to <time>', 'end of the period, exclusive (default: now)')
      .addOption(new Option('--format <format>', 'markdown (default), csv or json').choices(['markdown', 'csv', 'json']))
      .option('--out <file>', 'write the report to this file'),
  ).action(async (flags: CommonFlags & { regulation: string; from: string; to?: string; format?: 'markdown' | 'csv' | 'json'; out?: string }) => {
    const client = clientFrom(flags);
    const format = flags.json ? 'json' : (flags.format ?? 'markdown');
    const response = await client.stream('/v1/reports/compliance', { regulation: flags.regulation, from: flags.from, to: flags.to, format });
    const text = await response.text();
    if (flags.out) {
      await writeFile(flags.out, format === 'json' ? `${JSON.stringify(JSON.parse(text), null, 2)}\n` : text);
      return print(`wrote the ${safe(flags.regulation)} report (${format}) to ${safe(flags.out)}`);
    }
    if (format === 'json') return printJson(JSON.parse(text));
    // Terminal-safe: agent-supplied action names can hold control or bidi characters.
    process.stdout.write(safeMultiline(text.replace(/\r\n/g, '\n')));
  });
}

/** The server's newest checkpoint must extend what was just verified. */
async function checkExtension(client: ApiClient, treeSize: number, rootHash: string): Promise<{ treeSize: number; consistent: boolean }> {
  const latest = await client.get<SignedCheckpoint>('/v1/audit/checkpoint');
  if (latest.treeSize < treeSize) return { treeSize: latest.treeSize, consistent: false };
  if (latest.treeSize === treeSize) return { treeSize, consistent: latest.rootHash === rootHash };
  const proof = await client.get<{ consistencyPath: string[]; rootHash2: string }>('/v1/audit/proof/consistency', { from: treeSize, to: latest.treeSize });
  const [{ fromBase64, verifyConsistency }, { hasher }] = await Promise.all([import('@countersign/core'), trailCrypto()]);
  const b64 = (s: string) => fromBase64(s) ?? new Uint8Array(0);
  const check = verifyConsistency(hasher, treeSize, latest.treeSize, proof.consistencyPath.map(b64), b64(rootHash), b64(latest.rootHash));
  return { treeSize: latest.treeSize, consistent: check.ok };
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `${flag}: cannot read ${safe(path)}: ${(err as Error).message}`);
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `--file: cannot read ${safe(path)}: ${(err as Error).message}`);
  }
}

/** The export's first line is a small JSON header; more than this before its newline is not an export. */
const MAX_HEADER_BYTES = 64 * 1024;

function writeFile(path: string, text: string): Promise<void> {
  return writeFileAtomically(path, text);
}

/** A one-line progress bar on standard error, drawn only on a terminal. */
function progressBar(enabled: boolean) {
  let last = 0;
  let drawn = false;
  const width = 30;
  return {
    update(p: VerifyProgress, totalBytes: number | null) {
      if (!enabled) return;
      const now = performance.now();
      if (now - last < 100) return;
      last = now;
      const fraction = totalBytes ? p.bytes / totalBytes : p.total ? p.entries / p.total : 0;
      const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
      const of = p.total !== null ? `/${p.total.toLocaleString('en-US')}` : '';
      process.stderr.write(`\r  verifying [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.floor(fraction * 100)}% ${p.entries.toLocaleString('en-US')}${of} entries`);
      drawn = true;
    },
    done() {
      if (drawn) process.stderr.write('\r\u001b[2K');
    },
  };
}

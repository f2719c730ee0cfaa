/**
 * `countersign audit public-key | export | verify` as real processes against a real server:
 * export and verify offline with no server at all, tamper and be told where, verify live, and
 * the server's refusal to start with a key that did not sign its trail.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, runCli, startServerProcess, type CliRun, type ServerProcess } from './support/server-process.ts';

let dir: string;
let server: ServerProcess;
let adminToken: string;

type Run = CliRun;

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: adminToken, ...env }, dir);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-audit-cli-'));
  server = await startServerProcess(`sqlite:${join(dir, 'cs.db')}`, { COUNTERSIGN_AUDIT_CHECKPOINT_ENTRIES: '10' });
  adminToken = server.bootstrap!.adminToken;
  const agentKey = server.bootstrap!.agentKey;
  for (let i = 0; i < 30; i++) {
    const res = await api(server.url, agentKey, '/v1/requests', { body: { action: 'block_ip', args: { ip: `203.0.113.${i}` }, confidence: 0.97, context: { threatScore: 0.95 } } });
    expect(res.status).toBe(201);
  }
}, 30_000);

afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('countersign audit', () => {
  it('keeps the signing key outside the database, next to the SQLite file, readable by its owner only', () => {
    const key = join(dir, 'countersign-audit-key.pem');
    expect(readFileSync(key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(statSync(key).mode & 0o077).toBe(0);
  });

  it('exports, and verifies the export offline with no server reachable; a tampered copy fails naming the line', async () => {
    expect((await cli(['audit', 'public-key', '--out', 'key.pem'])).code).toBe(0);
    const exported = await cli(['audit', 'export', '--out', 'trail.jsonl', '--json']);
    expect(exported.code, exported.stderr).toBe(0);
    const summary = JSON.parse(exported.stdout) as { treeSize: number; checkpoints: number };
    expect(summary.treeSize).toBeGreaterThan(60);
    expect(summary.checkpoints).toBeGreaterThan(1); // every 10 entries, and the fresh one

    const offline = { COUNTERSIGN_URL: 'http://127.0.0.1:9', COUNTERSIGN_TOKEN: '' };
    const ok = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'key.pem'], offline);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^OK: trail.jsonl verifies: ${summary.treeSize} entries verified \\(seq 1–${summary.treeSize}\\), ${summary.checkpoints} signed checkpoints`));
    expect(ok.stderr).toBe(''); // no progress bar without a terminal

    const lines = readFileSync(join(dir, 'trail.jsonl'), 'utf8').split('\n');
    const target = lines.findIndex((l, i) => i > 10 && l.includes('"block_ip"'));
    const seq = (JSON.parse(lines[target]!) as { entry: { seq: number } }).entry.seq;
    lines[target] = lines[target]!.replace('"block_ip"', '"unblock_ip"');
    writeFileSync(join(dir, 'bad.jsonl'), lines.join('\n'));
    const bad = await cli(['audit', 'verify', '--file', 'bad.jsonl', '--public-key', 'key.pem'], offline);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('FAILED: bad.jsonl does not verify (LEAF_MISMATCH)');
    expect(bad.stderr).toContain(`error AUDIT_VERIFICATION_FAILED: line ${target + 1}: entry seq ${seq} does not hash`);
    const json = await cli(['audit', 'verify', '--file', 'bad.jsonl', '--public-key', 'key.pem', '--json'], offline);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, fault: { code: 'LEAF_MISMATCH', line: target + 1, seq } });

    const noKey = await cli(['audit', 'verify', '--file', 'trail.jsonl'], offline);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain('error VALIDATION_FAILED: offline verification needs the trusted key');
  }, 60_000);

  it('verifies the live server, and refuses a pinned key that is not the signer', async () => {
    const live = await cli(['audit', 'verify']);
    expect(live.code, live.stderr).toBe(0);
    expect(live.stdout).toMatch(/^OK: http:\/\/127\.0\.0\.1:\d+ verifies: \d+ entries/);
    writeFileSync(join(dir, 'other.pem'), (await import('node:crypto')).generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
    const pinned = await cli(['audit', 'verify', '--public-key', 'other.pem']);
    expect(pinned.code).toBe(1);
    expect(pinned.stderr).toMatch(/error AUDIT_VERIFICATION_FAILED: the header \(line 1\) says the trail is signed by key [0-9a-f]{16}, but the trusted public key is [0-9a-f]{16}/);
  }, 60_000);

  it('queries entries by type and actor, and says how to continue', async () => {
    const run = await cli(['audit', 'query', '--type', 'approved', '--limit', '5']);
    expect(run.code, run.stderr).toBe(0);
    const rows = run.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^SEQ\s+TIME\s+TYPE\s+ACTOR\s+REQUEST\s+DATA$/);
    expect(rows.slice(1, 6).every((r) => /^\s*\d+\s+\S+\s+approved\s+system:countersign\s+req_/.test(r))).toBe(true);
    expect(rows[6]).toMatch(/^more: countersign audit query … --cursor \S+$/);
    const json = JSON.parse((await cli(['audit', 'query', '--actor', 'demo-agent', '--limit', '3', '--json'])).stdout) as { items: Array<{ actor: { name: string } }>; nextCursor: string | null };
    expect(json.items).toHaveLength(3);
    expect(json.items.every((e) => e.actor.name === 'demo-agent')).toBe(true);
    expect(json.nextCursor).not.toBeNull();
  }, 30_000);

  it('countersign report prints the compliance report as Markdown, CSV or JSON', async () => {
    const yesterday = new Date(Date.now() - 86_400_000).toISOString();
    const md = await cli(['report', '--regulation', 'ISO27001', '--from', yesterday]);
    expect(md.code, md.stderr).toBe(0);
    expect(md.stdout).toMatch(/^# ISO27001 compliance report/);
    expect(md.stdout).toContain('| automated (policy) | 30 |');
    expect(md.stdout).toContain('A.8.15 logging');
    const csv = await cli(['report', '--regulation', 'SOC2', '--from', yesterday, '--format', 'csv', '--out', 'r.csv']);
    expect(csv.code, csv.stderr).toBe(0);
    expect(readFileSync(join(dir, 'r.csv'), 'utf8')).toContain('"decisions","automated","30"');
    const json = JSON.parse((await cli(['report', '--regulation', 'HIPAA', '--from', yesterday, '--json'])).stdout) as { regulation: string; decisions: { requests: number } };
    expect(json).toMatchObject({ regulation: 'HIPAA', decisions: { requests: 30 } });
    const bad = await cli(['report', '--regulation', 'SOX', '--from', yesterday]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("argument 'SOX' is invalid");
  }, 30_000);

  it('a server refuses to start with a key other than the one that signed its trail', async () => {
    const other = join(dir, 'elsewhere', 'key.pem');
    await expect(startServerProcess(`sqlite:${join(dir, 'cs.db')}`, { COUNTERSIGN_AUDIT_KEY_PATH: other })).rejects.toThrow(/the audit trail is signed by key [0-9a-f]{16}, but the audit key at .*elsewhere\/key\.pem is/);
  }, 30_000);
});

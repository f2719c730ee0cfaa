/**
 * Pinned verification and the signer's state, as real processes: a server writing its witness
 * directory, `audit verify --checkpoint DIR` and `--since` offline, a truncated export caught by
 * the pins, and a lost state file: the server runs degraded (AUDIT_FORK, state_missing) until
 * `audit trust-current` verifies and adopts the trail, audited.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

let dir: string;
let server: ServerProcess;
let adminToken: string;
let agentKey: string;
const witness = () => join(dir, 'witness');
const env = () => ({ COUNTERSIGN_AUDIT_WITNESS_DIR: witness(), COUNTERSIGN_AUDIT_CHECKPOINT_ENTRIES: '10' });
const db = () => `sqlite:${join(dir, 'cs.db')}`;
const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: adminToken, ...extra }, dir);
const offline = { COUNTERSIGN_URL: 'http://127.0.0.1:9', COUNTERSIGN_TOKEN: '' };

async function create(n: number) {
  for (let i = 0; i < n; i++) {
    const res = await api(server.url, agentKey, '/v1/requests', { body: { action: 'block_ip', args: { ip: `203.0.113.${i}` }, confidence: 0.97, context: { threatScore: 0.95 } } });
    expect(res.status).toBe(201);
  }
}

async function health(): Promise<Record<string, any>> {
  return (await fetch(`${server.url}/healthz`)).json() as Promise<Record<string, any>>;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-witness-cli-'));
  server = await startServerProcess(db(), env());
  adminToken = server.bootstrap!.adminToken;
  agentKey = server.bootstrap!.agentKey;
  await create(12);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('audit verify --checkpoint / --since', () => {
  it('pins an offline verification to every note of the witness directory, and lists what came after one', async () => {
    expect((await cli(['audit', 'public-key', '--out', 'key.pem'])).code).toBe(0);
    const first = await cli(['audit', 'export', '--out', 'cut.jsonl', '--json']);
    expect(first.code, first.stderr).toBe(0);
    const cutSize = (JSON.parse(first.stdout) as { treeSize: number }).treeSize;
    await create(6);
    const full = await cli(['audit', 'export', '--out', 'trail.jsonl', '--json']);
    expect(full.code, full.stderr).toBe(0);
    const notes = readdirSync(witness()).sort();
    expect(notes.length).toBeGreaterThanOrEqual(3);

    const ok = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'key.pem', '--checkpoint', 'witness'], offline);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/entries verified \(seq 1–\d+\)/);
    expect(ok.stdout).toContain('nothing was pruned');
    expect(ok.stdout).toMatch(new RegExp(`extends all ${notes.length} pinned checkpoints`));

    const firstNote = join('witness', notes[0]!);
    const since = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'key.pem', '--since', firstNote, '--json'], offline);
    expect(since.code, since.stderr).toBe(0);
    const report = JSON.parse(since.stdout) as { since: number; added: Array<{ seq: number }>; treeSize: number };
    expect(report.added.map((e) => e.seq)).toEqual(Array.from({ length: report.treeSize - report.since }, (_, i) => report.since + i + 1));

    // (c) the earlier export verifies on its own, and is caught as cut back with the witness as the pin.
    expect((await cli(['audit', 'verify', '--file', 'cut.jsonl', '--public-key', 'key.pem'], offline)).code).toBe(0);
    const cut = await cli(['audit', 'verify', '--file', 'cut.jsonl', '--public-key', 'key.pem', '--checkpoint', 'witness'], offline);
    expect(cut.code).toBe(1);
    expect(cut.stdout).toContain('PIN_NOT_REACHED');
    expect(cut.stderr).toMatch(new RegExp(`the trail ends at tree size ${cutSize}, but the pinned checkpoint .* covers \\d+ entries`));

    // Live, the same pins are checked by consistency proofs.
    const live = await cli(['audit', 'verify', '--checkpoint', 'witness']);
    expect(live.code, live.stderr).toBe(0);
    expect(live.stdout).toMatch(/extends all \d+ pinned checkpoints/);

    // A note that is not one (or not signed by the key) is refused, never silently dropped.
    const bogus = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'key.pem', '--checkpoint', 'key.pem'], offline);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toMatch(/is not a checkpoint note signed by key/);
  }, 60_000);
});

describe('a lost signer state', () => {
  it('runs degraded (AUDIT_FORK, state_missing) until trust-current verifies and adopts the trail, audited', async () => {
    await server.stop();
    rmSync(join(dir, 'countersign-audit-key.state.json'));
    server = await startServerProcess(db(), env());
    await expect.poll(async () => (await health()).status, { timeout: 20_000 }).toBe('degraded');
    expect((await health()).audit).toMatchObject({ code: 'AUDIT_FORK', kind: 'state_missing', reason: expect.stringMatching(/countersign audit trust-current/) });
    const refused = await cli(['audit', 'export', '--out', 'x.jsonl']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/AUDIT_FORK/);

    // Without a reason, or against the wrong database, nothing is adopted.
    expect((await cli(['audit', 'trust-current', '--database', db()])).code).toBe(1);
    expect((await cli(['audit', 'trust-current', '--database', `sqlite:${join(dir, 'nope.db')}`, '--reason', 'x'])).code).toBe(1);
    const adopted = await cli(['audit', 'trust-current', '--database', db(), '--checkpoint', 'witness', '--reason', 'state file lost with the old disk', '--json']);
    expect(adopted.code, adopted.stderr).toBe(0);
    expect(JSON.parse(adopted.stdout)).toMatchObject({ pinned: expect.any(Number), statePath: join(dir, 'countersign-audit-key.state.json') });

    await expect.poll(async () => (await health()).status, { timeout: 20_000 }).toBe('ok');
    const entries = await cli(['audit', 'query', '--type', 'audit_state_adopted', '--json']);
    const items = (JSON.parse(entries.stdout) as { items: Array<{ data: Record<string, unknown> }> }).items;
    expect(items).toHaveLength(1);
    expect(items[0]!.data).toMatchObject({ reason: 'state file lost with the old disk' });
    expect((await cli(['audit', 'verify', '--checkpoint', 'witness'])).code).toBe(0);
  }, 90_000);
});

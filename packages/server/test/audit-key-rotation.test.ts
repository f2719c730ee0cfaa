/**
 * Rotating the audit signing key, with the real binary against a real server on SQLite and on
 * PostgreSQL: the old key signs a checkpoint covering the `signing_key_rotated` entry, the new
 * key signs after it, and everything verifies live and offline with the keyring (not with the
 * new key alone); tampering on either side of the rotation is still found; a restarted server
 * takes up the new key.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicKeyFromPem, publicKeysFromPem, readAuditKey } from '../src/audit/crypto.ts';
import { postgresDatabase, sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { BIN, api, startServerProcess, type ServerProcess } from './support/server-process.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Rotation {
  oldKeyId: string;
  newKeyId: string;
  seq: number;
  checkpoint: { treeSize: number; keyId: string };
}

describe.each([
  ['sqlite', sqliteDatabase],
  ['postgres', postgresDatabase],
] as const)('audit key rotation on %s', (_name, makeDatabase) => {
  let dir: string;
  let db: TestDatabase;
  let server: ServerProcess;
  let adminToken: string;
  let agentKey: string;
  let keyPath: string;
  let rotation: Rotation;
  const env = () => ({ COUNTERSIGN_AUDIT_KEY_PATH: keyPath, COUNTERSIGN_AUDIT_CHECKPOINT_ENTRIES: '5' });

  function cli(args: string[], extra: Record<string, string> = {}): Promise<Run> {
    return new Promise((ok, fail) => {
      const clean: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_')) clean[k] = v;
      const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...clean, COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: adminToken, ...extra } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', fail);
      child.on('close', (code) => ok({ code, stdout, stderr }));
    });
  }

  async function propose(n: number, from: number): Promise<void> {
    for (let i = from; i < from + n; i++) {
      const res = await api(server.url, agentKey, '/v1/requests', { body: { action: 'block_ip', args: { ip: `203.0.113.${i}` }, confidence: 0.97, context: { threatScore: 0.95 } } });
      expect(res.status).toBe(201);
    }
  }

  const offline = { COUNTERSIGN_URL: 'http://127.0.0.1:9', COUNTERSIGN_TOKEN: '' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cs-audit-rotate-'));
    keyPath = join(dir, 'keys', 'countersign-audit-key.pem');
    db = makeDatabase();
    server = await startServerProcess(db.url, env());
    adminToken = server.bootstrap!.adminToken;
    agentKey = server.bootstrap!.agentKey;
    await propose(12, 0);
    expect((await cli(['audit', 'public-key', '--out', 'old.pem'])).code).toBe(0);
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('rotate-key has --help, and needs an admin', async () => {
    const help = await cli(['audit', 'rotate-key', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('replace the audit signing key');
    const reviewer = JSON.parse((await cli(['operators', 'add', '--name', 'rita', '--role', 'reviewer', '--json'])).stdout) as { token: string };
    const refused = await cli(['audit', 'rotate-key'], { COUNTERSIGN_TOKEN: reviewer.token });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('error FORBIDDEN: this needs the admin role');
  }, 30_000);

  it('replaces the key file, keeps the old public key in the keyring, and records a hand-over the old key signed', async () => {
    const before = readAuditKey(keyPath)!;
    const run = await cli(['audit', 'rotate-key', '--json']);
    expect(run.code, run.stderr).toBe(0);
    rotation = JSON.parse(run.stdout) as Rotation;
    expect(rotation.oldKeyId).toBe(before.keyId);
    expect(rotation.newKeyId).not.toBe(before.keyId);
    // The checkpoint covering the rotation entry is the old key's.
    expect(rotation.checkpoint.keyId).toBe(rotation.oldKeyId);
    expect(rotation.checkpoint.treeSize).toBeGreaterThanOrEqual(rotation.seq);

    // The new private key is where the old one was, owner-only; the old private key is gone.
    const after = readAuditKey(keyPath)!;
    expect(after.keyId).toBe(rotation.newKeyId);
    expect(statSync(keyPath).mode & 0o077).toBe(0);
    const keyring = readFileSync(join(dir, 'keys', 'countersign-audit-key.keyring.pem'), 'utf8');
    expect(keyring).not.toContain('PRIVATE KEY');
    expect(publicKeysFromPem(keyring).map((k) => k.keyId)).toEqual([rotation.oldKeyId, rotation.newKeyId]);

    const entry = JSON.parse((await cli(['audit', 'query', '--type', 'signing_key_rotated', '--json'])).stdout) as { items: Array<{ seq: number; data: unknown; actor: { name: string } }> };
    expect(entry.items).toEqual([expect.objectContaining({ seq: rotation.seq, data: { oldKeyId: rotation.oldKeyId, newKeyId: rotation.newKeyId }, actor: expect.objectContaining({ name: 'admin' }) })]);

    // The keyring over HTTP; the single-key route serves the new key.
    const keys = await api<{ currentKeyId: string; keys: Array<{ keyId: string; current: boolean }> }>(server.url, agentKey, '/v1/audit/keys', { method: 'GET' });
    expect(keys.body).toMatchObject({ currentKeyId: rotation.newKeyId, keys: [{ keyId: rotation.oldKeyId, current: false }, { keyId: rotation.newKeyId, current: true }] });
    const single = await fetch(`${server.url}/v1/audit/public-key`, { headers: { authorization: `Bearer ${agentKey}` } });
    expect(publicKeyFromPem(await single.text()).keyId).toBe(rotation.newKeyId);
  }, 30_000);

  it('signs with the new key after the rotation; live verify and offline verify with the keyring accept both', async () => {
    await propose(12, 100);
    const live = await cli(['audit', 'verify']);
    expect(live.code, live.stderr).toBe(0);
    expect(live.stdout).toContain(`signed by keys ${rotation.oldKeyId} -> ${rotation.newKeyId}`);

    expect((await cli(['audit', 'keys', '--export', 'keys.pem'])).code).toBe(0);
    expect((await cli(['audit', 'public-key', '--out', 'new.pem'])).code).toBe(0);
    const exported = await cli(['audit', 'export', '--out', 'trail.jsonl', '--json']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({ keyId: rotation.newKeyId });

    // In the export, the checkpoint right after the rotation entry's is the old key's, and later ones the new key's.
    const lines = readFileSync(join(dir, 'trail.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { kind: string; keyId?: string; treeSize?: number });
    const checkpoints = lines.filter((l) => l.kind === 'checkpoint');
    const covering = checkpoints.find((c) => c.treeSize! >= rotation.seq)!;
    expect(covering.keyId).toBe(rotation.oldKeyId);
    expect(checkpoints.filter((c) => c.treeSize! < rotation.seq).every((c) => c.keyId === rotation.oldKeyId)).toBe(true);
    expect(checkpoints.filter((c) => c.treeSize! > covering.treeSize!).every((c) => c.keyId === rotation.newKeyId)).toBe(true);
    expect(checkpoints.at(-1)!.keyId).toBe(rotation.newKeyId);

    const withKeyring = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--keyring', 'keys.pem', '--json'], offline);
    expect(withKeyring.code, withKeyring.stderr).toBe(0);
    expect(JSON.parse(withKeyring.stdout)).toMatchObject({ ok: true, keyIds: [rotation.oldKeyId, rotation.newKeyId] });
    const twoKeys = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'old.pem', '--public-key', 'new.pem'], offline);
    expect(twoKeys.code, twoKeys.stderr).toBe(0);
  }, 60_000);

  it('offline verify with only the new key (or only the old) fails naming the key it lacks', async () => {
    const newOnly = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'new.pem'], offline);
    expect(newOnly.code).toBe(1);
    expect(newOnly.stderr).toMatch(new RegExp(`error AUDIT_VERIFICATION_FAILED: line \\d+: checkpoint \\(size \\d+\\) is signed by key ${rotation.oldKeyId}, which is not among the trusted keys \\(${rotation.newKeyId}\\)`));
    const oldOnly = await cli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'old.pem'], offline);
    expect(oldOnly.code).toBe(1);
    expect(oldOnly.stderr).toContain(`the header (line 1) says the trail is signed by key ${rotation.newKeyId}, which is not among the trusted keys (${rotation.oldKeyId})`);
    // Live, a pinned key replaces the server's keyring.
    const pinned = await cli(['audit', 'verify', '--public-key', 'new.pem']);
    expect(pinned.code).toBe(1);
    expect(pinned.stderr).toContain(`signed by key ${rotation.oldKeyId}, which is not among the trusted keys`);
  }, 60_000);

  it('still finds an edited entry before and after the rotation, and a forged hand-over', async () => {
    const lines = readFileSync(join(dir, 'trail.jsonl'), 'utf8').split('\n');
    const seqOf = (i: number) => (JSON.parse(lines[i]!) as { entry?: { seq: number } }).entry?.seq ?? 0;
    const before = lines.findIndex((l, i) => l.includes('"block_ip"') && seqOf(i) < rotation.seq);
    const after = lines.findIndex((l, i) => l.includes('"block_ip"') && seqOf(i) > rotation.seq + 2);
    for (const target of [before, after]) {
      const copy = [...lines];
      copy[target] = copy[target]!.replace('"block_ip"', '"unblock_ip"');
      writeFileSync(join(dir, 'bad.jsonl'), copy.join('\n'));
      const bad = await cli(['audit', 'verify', '--file', 'bad.jsonl', '--keyring', 'keys.pem', '--json'], offline);
      expect(bad.code).toBe(1);
      expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, fault: { code: 'LEAF_MISMATCH', line: target + 1, seq: seqOf(target) } });
    }
    // The rotation entry itself is covered: naming another new key is caught.
    const rotated = lines.findIndex((l) => l.includes('"type":"signing_key_rotated"'));
    const forged = [...lines];
    forged[rotated] = forged[rotated]!.replace(rotation.newKeyId, 'ffffffffffffffff');
    writeFileSync(join(dir, 'bad.jsonl'), forged.join('\n'));
    const bad = await cli(['audit', 'verify', '--file', 'bad.jsonl', '--keyring', 'keys.pem', '--json'], offline);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, fault: { code: 'LEAF_MISMATCH', line: rotated + 1 } });
  }, 60_000);

  it('a restarted server takes up the new key and refuses a keyring-less stranger', async () => {
    await server.stop();
    server = await startServerProcess(db.url, env());
    await propose(3, 200);
    const live = await cli(['audit', 'verify', '--json']);
    expect(live.code, live.stderr).toBe(0);
    expect(JSON.parse(live.stdout)).toMatchObject({ ok: true, keyIds: [rotation.oldKeyId, rotation.newKeyId] });
    await server.stop();
    // Another key file, with no keyring listing the trail's keys, is refused as before.
    writeFileSync(join(dir, 'stranger.pem'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await expect(startServerProcess(db.url, { ...env(), COUNTERSIGN_AUDIT_KEY_PATH: join(dir, 'stranger.pem') })).rejects.toThrow(/the audit trail is signed by key [0-9a-f]{16}/);
    server = await startServerProcess(db.url, env());
  }, 60_000);
});

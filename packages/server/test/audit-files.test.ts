/**
 * Issue 13, points 16 and 17: the audit CLI's files. `audit verify --file` is linear (a line split
 * over many chunks is joined once) with a line-length cap; `audit export --out` writes a 0600
 * temporary file and renames it into place, refuses a symbolic link at the target, leaves an
 * existing file untouched when the export fails, and bounds its header buffer. Real processes,
 * a real server, and a stand-in server that misbehaves on purpose.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicKeyFromPem } from '../src/audit/crypto.ts';
import { MAX_TRAIL_LINE_BYTES, verifyTrailStream } from '../src/audit/verify.ts';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

let dir: string;
let server: ServerProcess;
let admin: string;

const cli = (args: string[], url = server.url) => runCli(args, { COUNTERSIGN_URL: url, COUNTERSIGN_TOKEN: admin }, dir);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-audit-files-'));
  server = await startServerProcess(`sqlite:${join(dir, 'cs.db')}`, { COUNTERSIGN_AUDIT_CHECKPOINT_ENTRIES: '5' });
  admin = server.bootstrap!.adminToken;
  for (let i = 0; i < 12; i++) {
    const res = await api(server.url, server.bootstrap!.agentKey, '/v1/requests', { body: { action: 'block_ip', args: { ip: `203.0.113.${i}` }, confidence: 0.97, context: { threatScore: 0.95 } } });
    expect(res.status).toBe(201);
  }
  expect((await cli(['audit', 'public-key', '--out', 'key.pem'])).code).toBe(0);
}, 60_000);
afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A byte source that yields `data` in `size`-byte chunks. */
async function* inChunks(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const leftovers = () => readdirSync(dir).filter((f) => f.endsWith('.part'));

describe('audit verify --file (point 16)', () => {
  it('a real export fed in 7-byte chunks verifies exactly as read whole', async () => {
    const run = await cli(['audit', 'export', '--out', 'whole.jsonl']);
    expect(run.code, run.stderr).toBe(0);
    const bytes = readFileSync(join(dir, 'whole.jsonl'));
    const key = publicKeyFromPem(readFileSync(join(dir, 'key.pem'), 'utf8'));
    const whole = await verifyTrailStream(inChunks(bytes, bytes.length), key);
    const tiny = await verifyTrailStream(inChunks(bytes, 7), key);
    expect(whole.ok).toBe(true);
    expect(tiny).toEqual(whole);
  });

  it('a 3 MiB line in 256-byte chunks is joined once (linear), not re-concatenated per chunk', async () => {
    const key = publicKeyFromPem(readFileSync(join(dir, 'key.pem'), 'utf8'));
    const line = Buffer.concat([Buffer.from('{"x":"'), Buffer.alloc(3 * 1024 * 1024, 'a'), Buffer.from('"}\n')]);
    const started = Date.now();
    const result = await verifyTrailStream(inChunks(line, 256), key);
    // Re-concatenating per chunk copies ~18 GB here (minutes); joined once it is milliseconds.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.fault).toMatchObject({ code: 'HEADER', line: 1 });
  });

  it('a single line past the cap is refused (MALFORMED, line 1) after reading only the cap, by the CLI too', async () => {
    const big = join(dir, 'one-line.jsonl');
    writeFileSync(big, Buffer.alloc(MAX_TRAIL_LINE_BYTES * 8, 'a')); // 32 MiB, no newline
    const key = publicKeyFromPem(readFileSync(join(dir, 'key.pem'), 'utf8'));
    let read = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of inChunks(readFileSync(big), 1 << 20)) {
        read += chunk.length;
        yield chunk;
      }
    }
    const result = await verifyTrailStream(counted(), key);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.fault).toMatchObject({ code: 'MALFORMED', line: 1 });
    expect(read).toBeLessThanOrEqual(MAX_TRAIL_LINE_BYTES + (1 << 20));

    const started = Date.now();
    const run = await runCli(['audit', 'verify', '--file', big, '--public-key', join(dir, 'key.pem'), '--json'], {}, dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('"MALFORMED"');
    expect(run.stdout).toContain(`longer than ${MAX_TRAIL_LINE_BYTES} bytes`);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe('audit export --out (point 17)', () => {
  it('writes the file 0600 through a temporary file, leaving no temporary file behind', async () => {
    const run = await cli(['audit', 'export', '--out', 'trail.jsonl']);
    expect(run.code, run.stderr).toBe(0);
    expect(statSync(join(dir, 'trail.jsonl')).mode & 0o777).toBe(0o600);
    expect(leftovers()).toEqual([]);
    const ok = await runCli(['audit', 'verify', '--file', 'trail.jsonl', '--public-key', 'key.pem'], {}, dir);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('refuses a symbolic link at the target and leaves the file it points to alone', async () => {
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(dir, 'link.jsonl'));
    const run = await cli(['audit', 'export', '--out', 'link.jsonl']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('symbolic link');
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(dir, 'link.jsonl')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(dir, 'link.jsonl'))).toBe(victim);
    expect(leftovers()).toEqual([]);
  });

  describe('against a server that misbehaves', () => {
    let fake: Server;
    let fakeUrl: string;
    let mode: 'cut' | 'endless-header' = 'cut';
    beforeAll(async () => {
      fake = createServer((req, res) => {
        if (!req.url?.startsWith('/v1/audit/export')) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        if (mode === 'cut') {
          res.write('{"checkpoints":1,"format":"countersign.audit.export/v1","keyId":"abc","kind":"header","treeSize":100}\n');
          res.write('{"entry":{"actor":');
          setTimeout(() => res.socket?.destroy(), 50); // the connection dies mid-export
        } else {
          const chunk = Buffer.alloc(64 * 1024, 'h');
          let sent = 0;
          const pump = () => {
            while (sent < 256 && res.write(chunk)) sent++;
            if (sent < 256) res.once('drain', pump);
            else res.end();
          };
          pump();
        }
      });
      await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
      fakeUrl = `http://127.0.0.1:${(fake.address() as { port: number }).port}`;
    });
    afterAll(() => new Promise<void>((r) => fake.close(() => r())));

    it('an export cut short leaves the previous export exactly as it was (nothing truncated, nothing deleted)', async () => {
      const previous = readFileSync(join(dir, 'trail.jsonl'));
      mode = 'cut';
      const run = await cli(['audit', 'export', '--out', 'trail.jsonl', '--no-checkpoint'], fakeUrl);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('cut short');
      expect(existsSync(join(dir, 'trail.jsonl'))).toBe(true);
      expect(readFileSync(join(dir, 'trail.jsonl')).equals(previous)).toBe(true);
      expect(leftovers()).toEqual([]);
    });

    it('a header line that never ends is refused after 64 KiB, the previous export untouched', async () => {
      const previous = readFileSync(join(dir, 'trail.jsonl'));
      mode = 'endless-header';
      const run = await cli(['audit', 'export', '--out', 'trail.jsonl', '--no-checkpoint'], fakeUrl);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('header line is longer than');
      expect(readFileSync(join(dir, 'trail.jsonl')).equals(previous)).toBe(true);
      expect(leftovers()).toEqual([]);
    });
  });

  it('report --out and public-key --out write the same careful way (a symlink is refused)', async () => {
    const victim = join(dir, 'victim2.txt');
    writeFileSync(victim, 'keep\n');
    symlinkSync(victim, join(dir, 'key-link.pem'));
    const run = await cli(['audit', 'public-key', '--out', 'key-link.pem']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('symbolic link');
    expect(readFileSync(victim, 'utf8')).toBe('keep\n');
    expect(leftovers()).toEqual([]);
  });
});

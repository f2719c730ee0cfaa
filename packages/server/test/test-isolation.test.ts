/**
 * `npm test` is self-contained: nothing of the developer's set-up reaches a test. The README's
 * Policy section tells a newcomer to create `countersign.yaml` in the clone; a server a test
 * starts with default paths must not pick it up, and no COUNTERSIGN_* variable of the
 * developer's shell may leak in (test/setup.ts).
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveServerConfig } from '../src/config.ts';
import { REPO } from './support/dashboard-browser.ts';
import { sqliteDatabase } from './support/databases.ts';
import { api, startServerProcess } from './support/server-process.ts';

/** A policy no test expects: it would block every action. */
const HOSTILE = 'rules:\n  - name: stray-developer-policy\n    when: { actionMatches: [block, isolate, delete, send] }\n    then: { block: true }\n';

describe('tests never read the developer\'s set-up', () => {
  const planted = join(REPO, 'countersign.yaml');
  const plantedHere = !existsSync(planted);
  if (plantedHere) writeFileSync(planted, HOSTILE);
  afterAll(() => {
    if (plantedHere) rmSync(planted, { force: true });
  });

  it('runs in an empty working directory with no COUNTERSIGN_* variables but the test knobs', () => {
    expect(process.cwd().startsWith(REPO.replace(/\/$/, ''))).toBe(false);
    expect(existsSync(join(process.cwd(), 'countersign.yaml'))).toBe(false);
    const leaked = Object.keys(process.env).filter(
      (k) => k.startsWith('COUNTERSIGN_') && !['COUNTERSIGN_TEST_PG_URL', 'COUNTERSIGN_CHROMIUM', 'COUNTERSIGN_UPDATE_SCREENSHOTS', 'COUNTERSIGN_CHECK_REENTRY'].includes(k),
    );
    expect(leaked).toEqual([]);
  });

  it('resolves no policy file by default, even with countersign.yaml in the clone', () => {
    expect(existsSync(planted)).toBe(true);
    expect(resolveServerConfig({}).policyPath).toBeNull();
  });

  it('a server a test starts runs the built-in policy, not the clone\'s countersign.yaml', async () => {
    const db = sqliteDatabase();
    const server = await startServerProcess(db.url);
    try {
      const policy = await api<{ source: string; policy: { rules?: Array<{ name: string }> } }>(server.url, server.bootstrap!.adminToken, '/v1/policy');
      expect(policy.status).toBe(200);
      expect(JSON.stringify(policy.body)).not.toContain('stray-developer-policy');
      const created = await api<{ status: string }>(server.url, server.bootstrap!.agentKey, '/v1/requests', {
        body: { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } },
      });
      expect(created.status).toBe(201);
      expect(created.body.status).toBe('approved');
    } finally {
      await server.stop();
      await db.drop();
    }
  });
});

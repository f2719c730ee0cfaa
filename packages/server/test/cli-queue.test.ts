/**
 * `countersign status` (alias `queue`) reads the server's queue (issue 13 point 5): the critical
 * request above a flood of low-risk ones, the counts per risk level and "N more"; the filters go
 * to the server (an agent's name, any spelling of an action) and a bad one is refused with its
 * message. The real binary, as a user runs it, against a real listener.
 */
import { serve as listen, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { FLOOD_POLICY, pool } from './support/flood.ts';
import { api, runCli } from './support/server-process.ts';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

let database: TestDatabase;
let engine: Engine;
let server: ServerType;
let env: Record<string, string>;
let criticalId = '';

beforeAll(async () => {
  database = sqliteDatabase();
  engine = await Engine.open({ connection: await connect(database.url) });
  await engine.activatePolicy(FLOOD_POLICY, 'flood-test');
  const boot = (await engine.bootstrap())!;
  const app = createApp({ engine, log: () => {} });
  server = await new Promise<ServerType>((resolve) => {
    const s = listen({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  env = { COUNTERSIGN_URL: url, COUNTERSIGN_TOKEN: boot.adminToken };
  const junkKey = (await api<{ key: string }>(url, boot.adminToken, '/v1/keys', { body: { agent: 'junk-bot' } })).body.key;
  await pool(Array.from({ length: 60 }, (_, i) => i), 8, async (i) => {
    expect((await api(url, junkKey, '/v1/requests', { body: { action: 'junk_ping', args: { n: i }, confidence: 0.9 } })).status).toBe(201);
  });
  criticalId = (await api<{ id: string }>(url, boot.agentKey, '/v1/requests', { body: { action: 'delete_data', args: { path: '/x' }, confidence: 0.3 } })).body.id;
});

afterAll(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await engine?.close();
  await database?.drop();
});

describe('countersign status under a flood', () => {
  it('lists the critical request first, with the counts and "N more"', async () => {
    const run = await runCli(['queue', '--limit', '5'], env);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+ACTION\s+AGENT\s+RISK/);
    expect(lines[1]).toMatch(new RegExp(`^${criticalId}\\s+delete_data\\s+demo-agent\\s+critical`));
    expect(lines.filter((l) => l.startsWith('req_'))).toHaveLength(5);
    expect(lines.at(-1)).toBe('61 pending approvals (critical 1, high 0, medium 0, low 60); 5 shown; 56 more not shown (use --limit).');
  });

  it('sends the filters to the server: an agent name, a respelt action, several risk levels; refuses a bad one', async () => {
    const byAgent = await runCli(['status', '--agent', 'junk-bot', '--action', 'JunkPing', '--risk', 'low,medium', '--limit', '100'], env);
    expect(byAgent.code, byAgent.stderr).toBe(0);
    expect(byAgent.stdout.trim().split('\n').at(-1)).toBe('60 pending approvals (critical 0, high 0, medium 0, low 60); 60 shown.');
    expect(byAgent.stdout).not.toContain(criticalId);
    const bad = await runCli(['status', '--risk', 'severe'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('VALIDATION_FAILED: riskLevel takes one or more of critical, high, medium, low, comma-separated; not "severe"');
  });

  it('status --mine lists only what the caller may approve now, with its own summary line', async () => {
    const { token } = (await api<{ token: string }>(env.COUNTERSIGN_URL!, env.COUNTERSIGN_TOKEN!, '/v1/operators', { body: { name: 'carol', roles: ['reviewer'] } })).body;
    // carol files two requests herself: never hers to approve (SELF_REVIEW)
    for (const n of [1, 2]) expect((await api(env.COUNTERSIGN_URL!, token, '/v1/requests', { body: { action: 'junk_ping', args: { own: n }, confidence: 0.9 } })).status).toBe(201);
    const oracle = (await api<{ items: Array<{ id: string; actionable?: boolean }> }>(env.COUNTERSIGN_URL!, token, '/v1/requests?status=pending&limit=500', { method: 'GET' })).body.items;
    const mine = oracle.filter((r) => r.actionable === true).map((r) => r.id);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.length).toBeLessThan(oracle.length);
    const run = await runCli(['status', '--mine', '--limit', '500'], { ...env, COUNTERSIGN_TOKEN: token });
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('req_')).map((l) => l.split(/\s+/)[0])).toEqual(mine);
    expect(lines.at(-1)).toBe(`${oracle.length} pending approvals; ${mine.length} you may approve now.`);
    const few = await runCli(['status', '--mine', '--limit', '2'], { ...env, COUNTERSIGN_TOKEN: token });
    expect(few.stdout.trim().split('\n').at(-1)).toBe(`${oracle.length} pending approvals; 2+ you may approve now (more with --limit).`);
  });
});

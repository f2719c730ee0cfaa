/**
 * Extend, reassign and deliveries over the HTTP API, and the CLI commands that use them
 * (`status` with LEVEL and SLA LEFT, `extend`, `reassign`, `deliveries`, `history` flagging
 * approval by timeout), against a real server listening in this process.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import type { ApprovalRequest } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerClientCommands } from '../src/cli/commands/index.ts';
import { decidedBy } from '../src/cli/commands/requests.ts';
import { resolveServerConfig } from '../src/config.ts';
import { startServer, type RunningServer } from '../src/serve.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';

const POLICY = `
levels: { high: { sla: 10m } }
escalation:
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 10m }
`;

let database: TestDatabase;
let server: RunningServer;
let admin: string;
let agent: string;
let reviewer: string;

async function call<T>(token: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${server.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

async function cli(...args: string[]): Promise<string> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  try {
    const p = new Command().name('countersign').exitOverride();
    registerClientCommands(p);
    await p.parseAsync(['node', 'countersign', ...args, '--url', server.url, '--token', admin]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

const create = async (body: Record<string, unknown> = {}) =>
  (await call<ApprovalRequest>(agent, '/v1/requests', { action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.82, ...body })).body;

beforeAll(async () => {
  database = sqliteDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'countersign-policy-'));
  writeFileSync(join(dir, 'countersign.yaml'), POLICY);
  const config = resolveServerConfig({ database: database.url, port: 0, policy: join(dir, 'countersign.yaml') }, { COUNTERSIGN_TICK_MS: '50' });
  server = await startServer(config, () => {});
  admin = server.bootstrap!.adminToken;
  agent = server.bootstrap!.agentKey;
  reviewer = (await call<{ token: string }>(admin, '/v1/operators', { name: 'rita', roles: ['reviewer'] })).body.token;
});
afterAll(async () => {
  await server.close();
  await database.drop();
});

describe('escalation over HTTP', () => {
  it('shows the level and deadline on every request; extends once, bounded, with a reason', async () => {
    const r = await create();
    expect(r.escalation).toMatchObject({ level: 1, levels: 2, role: 'lead', extended: false, assignee: null, onFinalTimeout: 'reject' });
    const due = Date.parse(r.escalation!.dueAt);

    const tooLong = await call<{ error: { code: string; details: { maxSeconds: number } } }>(admin, `/v1/requests/${r.id}/extend`, { seconds: 601, reason: 'x' });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: { maxSeconds: 600 } });
    expect((await call(admin, `/v1/requests/${r.id}/extend`, { seconds: 60 })).status).toBe(400); // no reason
    expect((await call(admin, `/v1/requests/${r.id}/extend`, { seconds: 60, reason: 'x', extra: 1 })).status).toBe(400);
    expect((await call(agent, `/v1/requests/${r.id}/extend`, { seconds: 60, reason: 'x' })).status).toBe(403);

    const ok = await call<ApprovalRequest>(reviewer, `/v1/requests/${r.id}/extend`, { seconds: 300, reason: 'owner on the phone' });
    expect(ok.status).toBe(200);
    expect(Date.parse(ok.body.escalation!.dueAt)).toBe(due + 300_000);
    expect(ok.body.escalation!.extended).toBe(true);
    const again = await call<{ error: { code: string } }>(admin, `/v1/requests/${r.id}/extend`, { seconds: 60, reason: 'more' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('ALREADY_EXTENDED');

    const audit = await call<{ items: Array<{ type: string; actor: { name: string }; data: Record<string, unknown> }> }>(admin, `/v1/requests/${r.id}/audit`);
    expect(audit.body.items.at(-1)).toMatchObject({ type: 'extended', actor: { name: 'rita' }, data: { bySeconds: 300, reason: 'owner on the phone' } });
  });

  it('reassigns to an operator or a group; refuses unknown operators and both-or-neither', async () => {
    const r = await create();
    expect((await call(admin, `/v1/requests/${r.id}/reassign`, { reason: 'x' })).status).toBe(400);
    expect((await call(admin, `/v1/requests/${r.id}/reassign`, { operator: 'rita', group: 'g', reason: 'x' })).status).toBe(400);
    expect((await call(admin, `/v1/requests/${r.id}/reassign`, { operator: 'nobody', reason: 'x' })).status).toBe(400);
    const ok = await call<ApprovalRequest>(admin, `/v1/requests/${r.id}/reassign`, { operator: 'rita', reason: 'she owns ws-1' });
    expect(ok.status).toBe(200);
    expect(ok.body.escalation?.assignee).toEqual({ operator: 'rita' });
    await call(admin, `/v1/requests/${r.id}/reviews`, { verdict: 'reject', reason: 'no' });
    const late = await call<{ error: { code: string } }>(admin, `/v1/requests/${r.id}/reassign`, { group: 'g', reason: 'x' });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('ALREADY_DECIDED');
  });

  it('lists deliveries for operators only, with a validated filter', async () => {
    const list = await call<{ items: unknown[]; nextCursor: string | null }>(admin, '/v1/deliveries?status=failed');
    expect(list.status).toBe(200);
    expect(list.body).toEqual({ items: [], nextCursor: null });
    expect((await call(admin, '/v1/deliveries?status=lost')).status).toBe(400);
    expect((await call(agent, '/v1/deliveries')).status).toBe(403);
  });

  it('documents the new routes in /openapi.json', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/requests/{id}/extend', '/v1/requests/{id}/reassign', '/v1/deliveries']));
  });
});

describe('escalation in the CLI', () => {
  it('status shows each pending request’s level and SLA time left; extend and reassign work', async () => {
    const r = await create({ args: { host: 'ws-cli' } });
    let out = await cli('status');
    const line = out.split('\n').find((l) => l.includes(r.id))!;
    expect(out.split('\n')[0]).toMatch(/LEVEL\s+SLA LEFT/);
    expect(line).toMatch(/1\/2 lead\s+(9m\d+s|10m)$/);

    out = await cli('extend', r.id, '--by', '2m', '--reason', 'waiting on the owner');
    expect(out).toMatch(new RegExp(`extended ${r.id}: level 1/2 lead \\+, 1[12]m\\d*s? left`));
    out = await cli('reassign', r.id, '--group', 'ir-oncall', '--reason', 'night shift');
    expect(out).toContain(`reassigned ${r.id} to group ir-oncall`);
    out = await cli('status');
    expect(out.split('\n').find((l) => l.includes(r.id))).toMatch(/1\/2 lead \+ →ir-oncall/);
    out = await cli('show', r.id);
    expect(out).toMatch(/escalation:\s+level 1\/2 lead \+ →ir-oncall; 1[12]m\d*s? left at this level; then level 2/);
  });

  it('deliveries --status failed says when there are none; --json prints a list', async () => {
    expect(await cli('deliveries', '--status', 'failed')).toBe('No failed deliveries.\n');
    expect(JSON.parse(await cli('deliveries', '--json'))).toEqual([]);
  });
});

describe('approval by timeout is flagged wherever the CLI names a decider', () => {
  it('says that no human approved', () => {
    const decision = { outcome: 'approved', decidedBy: 'timeout', deciders: [], reason: 'no decision', at: '', action: 'x', args: {}, alternative: null, modified: false } as const;
    expect(decidedBy({ decision } as unknown as ApprovalRequest)).toBe('TIMEOUT (approved with no human decision)');
    expect(decidedBy({ decision: { ...decision, outcome: 'expired' } } as unknown as ApprovalRequest)).toBe('timeout');
  });
});

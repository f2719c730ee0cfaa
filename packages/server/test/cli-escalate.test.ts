/**
 * `countersign escalate ID --reason TEXT` end to end: a real server process and real CLI
 * processes. It moves the request one level up, says where it is now, and is refused (exit 1,
 * the server's code) at the last level, for an operator who may not review it, and without a reason.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApprovalRequest } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

const POLICY = `
levels: { high: { sla: 10m } }
escalation:
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 20m }
rules:
  - name: leads-only
    when: { action: wire_money }
    then: { approvers: [{ role: lead }] }
`;

let dir: string;
let server: ServerProcess;
let admin: string;
let agent: string;
let rita: string;

const cli = (args: string[], token = admin) => runCli(args, { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: token }, dir);
const create = async (action: string) =>
  (await api<ApprovalRequest>(server.url, agent, '/v1/requests', { body: { action, args: { host: 'ws-cli' }, confidence: 0.82 } })).body;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-cli-escalate-'));
  writeFileSync(join(dir, 'countersign.yaml'), POLICY);
  server = await startServerProcess(`sqlite:${join(dir, 'x.db')}`, { COUNTERSIGN_POLICY: join(dir, 'countersign.yaml') });
  admin = server.bootstrap!.adminToken;
  agent = server.bootstrap!.agentKey;
  rita = (await api<{ token: string }>(server.url, admin, '/v1/operators', { body: { name: 'rita', roles: ['reviewer'] } })).body.token;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('countersign escalate', () => {
  it('moves a pending request one level up now and says where it is; at the last level it is refused', async () => {
    const r = await create('isolate_host');
    const run = await cli(['escalate', r.id, '--reason', 'production host, needs a manager']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^escalated ${r.id}: level 2/2 manager, (19m\\d+s|20m) left\\n$`));
    const audit = await api<{ items: Array<{ type: string; actor: { name: string }; data: Record<string, unknown> }> }>(server.url, admin, `/v1/requests/${r.id}/audit`);
    expect(audit.body.items.find((e) => e.type === 'escalated')).toMatchObject({ data: { reason: 'manual', text: 'production host, needs a manager', from: 1, to: 2 } });

    const last = await cli(['escalate', r.id, '--reason', 'again']);
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/^error ILLEGAL_TRANSITION: cannot escalate: level 2 of 2 is the last/);
    expect((await api<ApprovalRequest>(server.url, admin, `/v1/requests/${r.id}`)).body).toMatchObject({ status: 'pending', escalation: { level: 2 } });
  }, 60_000);

  it('prints the request with --json; refuses an operator who may not review it, and a missing or multi-line reason', async () => {
    const r = await create('isolate_host');
    const json = await cli(['escalate', r.id, '--reason', 'owner unreachable', '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect((JSON.parse(json.stdout) as ApprovalRequest).escalation).toMatchObject({ level: 2, role: 'manager' });

    const wire = await create('wire_money');
    const ineligible = await cli(['escalate', wire.id, '--reason', 'x'], rita);
    expect(ineligible.code).toBe(1);
    expect(ineligible.stderr).toMatch(/^error NOT_ELIGIBLE:/);
    const none = await cli(['escalate', wire.id]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("required option '--reason <text>' not specified");
    const twoLines = await cli(['escalate', wire.id, '--reason', 'one\ntwo']);
    expect(twoLines.code).toBe(1);
    expect(twoLines.stderr).toMatch(/^error VALIDATION_FAILED:/);
    expect((await api<ApprovalRequest>(server.url, admin, `/v1/requests/${wire.id}`)).body.escalation).toMatchObject({ level: 1 });
  }, 60_000);
});

/**
 * Issue 11, points 8, 14 and 15: CLI and API polish a newcomer tripped over, against a real
 * server process and the real CLI binary.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatScore, type ApprovalRequest } from '@countersign/core';
import { renderVelocity } from '../src/cli/commands/guard.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { BIN, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

let db: TestDatabase;
let server: ServerProcess;
let admin: string;
let agent: string;
let alice: string;
let bob: string;
let dir: string;

async function call(method: string, path: string, token: string, init: { body?: string; type?: string } = {}) {
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(init.type ? { 'content-type': init.type } : {}) },
    ...(init.body === undefined ? {} : { body: init.body }),
  });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as Record<string, any> };
}

const post = (path: string, token: string, body: unknown) => call('POST', path, token, { body: JSON.stringify(body), type: 'application/json' });

async function propose(host: string, extra: Record<string, unknown> = {}): Promise<ApprovalRequest> {
  const res = await post('/v1/requests', agent, {
    action: 'isolate_host',
    args: { host },
    confidence: 0.82,
    alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: '/tmp/x' } }, { name: 'watch', action: 'monitor_host', args: { host } }],
    ...extra,
  });
  expect(res.status).toBe(201);
  return res.body as ApprovalRequest;
}

const cli = (args: string[], token = admin) => runCli(args, { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: token }, dir);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-polish-'));
  db = sqliteDatabase();
  server = await startServerProcess(db.url);
  admin = server.bootstrap!.adminToken;
  agent = server.bootstrap!.agentKey;
  alice = (await post('/v1/operators', admin, { name: 'alice', roles: ['reviewer'] })).body.token;
  bob = (await post('/v1/operators', admin, { name: 'bob', roles: ['reviewer'] })).body.token;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('decisions as the CLI shows them (point 14)', () => {
  it('history says how each was approved, audit tail shows reasons, and an unknown alternative lists the real ones', async () => {
    const [asked, alt, modified, rejected, unknown] = await Promise.all(['h-asked', 'h-alt', 'h-mod', 'h-rej', 'h-unknown'].map((h) => propose(h)));
    const runs = await Promise.all([
      cli(['approve', asked!.id, '--reason', 'confirmed with IR']),
      cli(['approve', alt!.id, '--alternative', 'quarantine']),
      cli(['approve', modified!.id, '--args', '{"host":"h-mod-2"}']),
      cli(['reject', rejected!.id, '--reason', 'wrong host']),
      cli(['approve', unknown!.id, '--alternative', 'nuke']),
    ]);
    for (const run of runs.slice(0, 4)) expect(run.stderr).toBe('');
    const refused = runs[4]!;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/UNKNOWN_ALTERNATIVE: no alternative named "nuke"; its alternatives are "quarantine", "watch"/);

    const history = await cli(['history', '--last', '10']);
    expect(history.code).toBe(0);
    const row = (id: string) => history.stdout.split('\n').find((l) => l.startsWith(id)) ?? '';
    expect(history.stdout.split('\n')[0]).toMatch(/OUTCOME\s+AS\s+DECIDED BY/);
    expect(row(asked!.id)).toMatch(/approved\s+as asked\s/);
    expect(row(alt!.id)).toMatch(/approved\s+alternative quarantine\s/);
    expect(row(modified!.id)).toMatch(/approved\s+modified args\s/);
    expect(row(rejected!.id)).toMatch(/rejected\s+-\s/);

    const tail = await cli(['audit', 'tail', '--limit', '200']);
    expect(tail.code).toBe(0);
    expect(tail.stdout.split('\n')[0]).toMatch(/REQUEST\s+DETAIL$/);
    const lines = tail.stdout.split('\n');
    expect(lines.some((l) => l.includes(asked!.id) && /reviewed\s.*approve; reason: confirmed with IR/.test(l))).toBe(true);
    expect(lines.some((l) => l.includes(rejected!.id) && /reject; reason: wrong host/.test(l))).toBe(true);
    expect(lines.some((l) => l.includes(alt!.id) && /approve; alternative quarantine/.test(l))).toBe(true);
    expect(lines.some((l) => l.includes(modified!.id) && /approve; modified args/.test(l))).toBe(true);
  }, 120_000);

  it("a policy decision's reason is the assessment's sentences, never joined with '.;'", async () => {
    const res = await post('/v1/requests', agent, { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } });
    expect(res.body.status).toBe('approved');
    const reason = res.body.decision.reason as string;
    expect(reason).not.toMatch(/\.;/);
    expect(reason).toBe((res.body.assessment.reasons as string[]).join(' '));
  });

  it('prints a score the way the dashboard does (one function: core formatScore)', async () => {
    const r = await propose('h-score');
    const show = await cli(['show', r.id]);
    expect(show.stdout).toContain(`(score ${formatScore(r.assessment.riskScore)})`);
    const status = await cli(['status']);
    const row = status.stdout.split('\n').find((l) => l.startsWith(r.id));
    expect(row).toContain(`${r.assessment.riskLevel} ${formatScore(r.assessment.riskScore)}`);
    // The dashboard's score() and RiskBadge import the same function (dashboard-source would see a second toFixed).
    const dashboard = readFileSync(join(import.meta.dirname, '../../dashboard/src/format.ts'), 'utf8');
    expect(dashboard).toMatch(/import \{ formatScore \} from '@countersign\/core\/format'/);
  }, 60_000);
});

describe('approvers velocity (point 8)', () => {
  it('prints readable lines, not JSON with literal \\u000a, and the help says "an operator\'s"', async () => {
    const r = await propose('v-1');
    expect((await cli(['approve', r.id], alice)).code).toBe(0);
    const [out, help] = await Promise.all([cli(['approvers', 'velocity', 'alice']), cli(['approvers', 'allowlist', '--help'])]);
    expect(out.code).toBe(0);
    expect(out.stdout).not.toMatch(/\\u000a|[{}"]/);
    expect(out.stdout).toMatch(/^alice \(op_[0-9a-z]+\): approvals of high and critical-risk requests\n/);
    expect(out.stdout).toMatch(/\n  last hour: +1 of 10\n/);
    expect(out.stdout).toMatch(/\n  last day: +1 of 50\n/);
    expect(out.stdout).toMatch(/\n  velocity limit: not reached \(a cool-down, if any, is shown by `countersign approvers cooldown`\)\n$/);
    expect(help.stdout).toContain("an operator's approvals");
    expect(help.stdout).not.toContain("a operator's");
  }, 60_000);
});

describe('approvers velocity, rendered', () => {
  it('names the reached window and when a slot frees; agent-free but still escaped', () => {
    const now = Date.parse('2026-12-01T10:00:00Z');
    const text = renderVelocity(
      { operatorId: 'op_1', operator: 'r\u202eita', riskLevels: ['high'], counts: { hour: 10, day: 12 }, limits: { hour: 10, day: 50 }, allowed: false, reason: '10 in the last hour (limit 10)', resetAt: '2026-12-01T10:20:00.000Z' },
      now,
    );
    expect(text).toBe(
      [
        'r\\u202eita (op_1): approvals of high-risk requests',
        '  last hour: 10 of 10',
        '  last day:  12 of 50',
        '  velocity limit: REACHED — 10 in the last hour (limit 10); a slot frees in 20m (2026-12-01T10:20:00.000Z)',
      ].join('\n'),
    );
  });
});

describe('the wire (points 14 and 15)', () => {
  it('every JSON response ends with a newline: answers, errors, unknown routes', async () => {
    const answers = await Promise.all([
      call('GET', '/healthz', ''),
      call('GET', '/v1/me', admin),
      call('GET', '/v1/requests?limit=2', admin),
      call('GET', '/v1/requests/req_00000000000000000000000000', admin),
      call('GET', '/v1/nowhere', admin),
      call('POST', '/v1/requests', agent, { body: '{', type: 'application/json' }),
      call('GET', '/v1/me', 'csk_wrong'),
    ]);
    for (const a of answers) {
      expect(a.text.endsWith('}\n') || a.text.endsWith(']\n'), a.text).toBe(true);
      expect(a.text.endsWith('\n\n')).toBe(false);
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 404, 404, 400, 401]);
    // Streams are untouched: the export stays JSON Lines, one line per record.
    const exported = await fetch(`${server.url}/v1/audit/export`, { headers: { authorization: `Bearer ${admin}` } });
    const body = await exported.text();
    expect(body.endsWith('\n')).toBe(true);
    expect(body.endsWith('\n\n')).toBe(false);
  });

  it('POST /v1/operators/me/totp works without a body, with or without a JSON content-type', async () => {
    const bare = await call('POST', '/v1/operators/me/totp', alice);
    expect(bare.status).toBe(201);
    const typed = await call('POST', '/v1/operators/me/totp', bob, { type: 'application/json' });
    expect(typed.status).toBe(201);
    expect(typed.body.otpauthUri).toMatch(/^otpauth:\/\/totp\//);
    // A route that needs a body still says what is missing, and bad JSON is still BAD_JSON.
    const empty = await call('POST', '/v1/requests', agent, { type: 'application/json', body: '' });
    expect(empty.status).toBe(400);
    expect(empty.body.error.code).toBe('VALIDATION_FAILED');
    expect(empty.body.error.message).toMatch(/action/);
    const broken = await call('POST', '/v1/operators/me/totp', bob, { type: 'application/json', body: '{"x":' });
    expect(broken.body.error.code).toBe('BAD_JSON');
  });

  it('GET /v1/metrics/operators/:id takes an id, a name or me; only report roles read others, and nobody learns who exists', async () => {
    const me = await call('GET', '/v1/me', alice);
    const [byMe, byName, byId, other, ghost, adminGhost, adminByName] = await Promise.all([
      call('GET', '/v1/metrics/operators/me', alice),
      call('GET', '/v1/metrics/operators/alice', alice),
      call('GET', `/v1/metrics/operators/${me.body.id}`, alice),
      call('GET', '/v1/metrics/operators/bob', alice),
      call('GET', '/v1/metrics/operators/nobody-here', alice),
      call('GET', '/v1/metrics/operators/nobody-here', admin),
      call('GET', '/v1/metrics/operators/alice', admin),
    ]);
    for (const r of [byMe, byName, byId, adminByName]) {
      expect(r.status, r.text).toBe(200);
      expect(r.body.operator).toEqual({ id: me.body.id, name: 'alice' });
    }
    expect(other.status).toBe(403);
    expect(ghost.status).toBe(403);
    expect(ghost.body.error.message).toBe(other.body.error.message);
    expect(adminGhost.status).toBe(404);
  });

  it('every operator path takes an id, a name or me; an id wins over a name that spells it; nobody may be named "me"', async () => {
    const me = (await call('GET', '/v1/me', alice)).body;
    for (const path of ['/v1/approvers/{}/velocity', '/v1/approvers/{}/cooldown', '/v1/operators/{}/ip-allowlist']) {
      const answers = await Promise.all(['me', 'alice', me.id].map((ref) => call('GET', path.replace('{}', ref), alice)));
      for (const a of answers) {
        expect(a.status, `${path}: ${a.text}`).toBe(200);
        expect({ id: a.body.operatorId, name: a.body.operator }).toEqual({ id: me.id, name: 'alice' });
      }
    }
    // `me` from an agent key is no operator: refused, never another operator's data.
    const agentMe = await call('GET', '/v1/approvers/me/velocity', agent);
    expect(agentMe.status).toBe(403);
    // An operator named after alice's id: the id still names alice.
    const squatter = await post('/v1/operators', admin, { name: me.id, roles: ['reviewer'] });
    expect(squatter.status).toBe(201);
    const byId = await call('GET', `/v1/approvers/${me.id}/velocity`, admin);
    expect(byId.body.operator).toBe('alice');
    const namedMe = await post('/v1/operators', admin, { name: 'me', roles: ['reviewer'] });
    expect(namedMe.status).toBe(400);
    expect(namedMe.body.error.message).toMatch(/cannot be an operator's name/);
    const keyMe = await post('/v1/keys', admin, { agent: 'me' });
    expect(keyMe.status).toBe(400);
    expect(keyMe.body.error.message).toMatch(/cannot be an agent's name/);
    // Agent paths: a name or an id; `me` from an operator token names no agent.
    const agentId = (await call('GET', '/v1/me', agent)).body.id;
    const agentName = (await call('GET', '/v1/me', agent)).body.name;
    const [byAgentName, byAgentId, operatorMe] = await Promise.all([
      call('GET', `/v1/agents/${agentName}/slicing`, admin),
      call('GET', `/v1/agents/${agentId}/slicing`, admin),
      call('GET', '/v1/agents/me/slicing', admin),
    ]);
    expect(byAgentName.status, byAgentName.text).toBe(200);
    expect(byAgentId.body).toEqual(byAgentName.body);
    expect(operatorMe.status).toBe(404);
  });
});

describe('piping the CLI (point 14)', () => {
  it('into a reader that has gone (head, true) exits quietly: no EPIPE stack trace', async () => {
    await Promise.all(['p-1', 'p-2', 'p-3'].map((h) => propose(h)));
    const script = `(node '${BIN}' audit tail --json --limit 2000 2>'${dir}/err'; echo $? >'${dir}/code') | true`;
    const env: NodeJS.ProcessEnv = { ...process.env, COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: admin };
    await new Promise<void>((ok) => spawn('sh', ['-c', script], { env, cwd: dir }).on('close', () => ok()));
    expect(readFileSync(join(dir, 'err'), 'utf8')).toBe('');
    expect(readFileSync(join(dir, 'code'), 'utf8').trim()).toBe('0');
    const head = await new Promise<{ out: string; err: string }>((ok) => {
      const child = spawn('sh', ['-c', `node '${BIN}' status | head -1`], { env, cwd: dir });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', () => ok({ out, err }));
    });
    expect(head.out).toMatch(/^ID\s+ACTION/);
    expect(head.err).toBe('');
  }, 60_000);
});

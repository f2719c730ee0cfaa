/**
 * Issue 18, "debug logs and environment config", on real server processes: the JSON log stream
 * (COUNTERSIGN_LOG_LEVEL), the COUNTERSIGN_DEBUG routing line that carries no agent text, no
 * secret in the output, policy settings from the environment over the file and under the agent
 * overlay, and `config --effective`. Every process gets an explicit environment (runCli strips the
 * caller's COUNTERSIGN_*; startServerProcess is given every variable that matters here).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveLoggingConfig, resolvePolicyOverrides } from '../src/config.ts';
import { createLogger, routingFields } from '../src/log.ts';
import { readPolicySource } from '../src/serve.ts';
import { parsePolicy } from '@countersign/core';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';

const dirs: string[] = [];
const tmp = () => {
  const dir = mkdtempSync(join(tmpdir(), 'cs-debuglogs-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Explicit values for every variable these processes read, so the developer's own do not leak in.
const BASE = {
  COUNTERSIGN_LOG_LEVEL: '',
  COUNTERSIGN_DEBUG: '',
  COUNTERSIGN_SLA_LOW: '',
  COUNTERSIGN_SLA_MEDIUM: '',
  COUNTERSIGN_SLA_HIGH: '',
  COUNTERSIGN_SLA_CRITICAL: '',
  COUNTERSIGN_AUTOMATION_FULL: '',
  COUNTERSIGN_AUTOMATION_SUPERVISED: '',
  COUNTERSIGN_AUTOMATION_ADVISORY: '',
  COUNTERSIGN_REQUIRE_APPROVAL: '',
  COUNTERSIGN_REVIEWER_LIMITS: 'off',
};

const ADMIN = 'cs_admin_GIVENSECRETadmin0123456789abcdef';
const AGENT = 'cs_agent_GIVENSECRETagent0123456789abcdef';
const MARKER = 'MARKER-7f3a9c-agent-text';

const jsonLines = (out: string) =>
  out
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('{"url"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function waitFor(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('COUNTERSIGN_LOG_LEVEL and COUNTERSIGN_DEBUG (config.ts)', () => {
  it('defaults to info; DEBUG=1 alone means debug; a bad value is refused naming its variable', () => {
    expect(resolveLoggingConfig({})).toEqual({ level: 'info', debug: false });
    expect(resolveLoggingConfig({ COUNTERSIGN_DEBUG: '1' })).toEqual({ level: 'debug', debug: true });
    expect(resolveLoggingConfig({ COUNTERSIGN_DEBUG: '1', COUNTERSIGN_LOG_LEVEL: 'WARN' })).toEqual({ level: 'warn', debug: true });
    expect(() => resolveLoggingConfig({ COUNTERSIGN_LOG_LEVEL: 'loud' })).toThrow(/COUNTERSIGN_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent/);
    expect(() => resolveLoggingConfig({ COUNTERSIGN_DEBUG: 'yes please' })).toThrow(/COUNTERSIGN_DEBUG/);
  });

  it('the logger censors secret fields passed by mistake', () => {
    let out = '';
    const sink = new Writable({ write: (chunk, _e, done) => ((out += chunk.toString()), done()) });
    const logger = createLogger({ level: 'info', debug: false }, sink);
    logger.info({ token: ADMIN, headers: { authorization: `Bearer ${AGENT}`, cookie: 'cs_session=abc' }, nested: { totp: '123456' } }, 'oops');
    expect(out).not.toContain('GIVENSECRET');
    expect(out).not.toContain('123456');
    expect(out).not.toContain('cs_session=abc');
    expect(JSON.parse(out)).toMatchObject({ level: 'info', msg: 'oops', token: '[redacted]' });
  });

  it('the routing fields are ids and policy names only', () => {
    const fields = routingFields({
      id: 'req_1',
      agentId: 'agt_1',
      assessment: { route: 'human_review', riskLevel: 'high', riskScore: 0.5, automationLevel: 'manual', matchedRules: [{ name: 'secret-in-args', reason: `found ${MARKER}`, effects: [] }] } as never,
    });
    expect(JSON.stringify(fields)).not.toContain(MARKER);
    expect(Object.keys(fields).sort()).toEqual(['agentId', 'automationLevel', 'event', 'matchedRules', 'requestId', 'riskLevel', 'riskScore', 'route']);
  });
});

describe('a real server process', () => {
  let server: ServerProcess | undefined;
  afterAll(async () => server?.stop());

  it('logs JSON lines, one routing line per create with no agent text, and never a secret it was given', async () => {
    const dir = tmp();
    const policy = join(dir, 'countersign.yaml');
    writeFileSync(policy, 'levels:\n  high: { sla: 20m }\n');
    server = await startServerProcess(`sqlite:${join(dir, 'cs.db')}`, {
      ...BASE,
      COUNTERSIGN_POLICY: policy,
      COUNTERSIGN_DEBUG: '1',
      COUNTERSIGN_ADMIN_TOKEN: ADMIN,
      COUNTERSIGN_AGENT_KEY: AGENT,
      COUNTERSIGN_SESSION_SECRET: 'GIVENSECRETsession0123456789abcdef',
    });
    const created = await api<{ id: string; agentId: string; assessment: { route: string; matchedRules: { name: string }[] } }>(server.url, AGENT, '/v1/requests', {
      body: { action: 'isolate_host', args: { host: 'ws-042', note: MARKER }, description: `please ${MARKER}`, context: { why: MARKER }, confidence: 0.5 },
    });
    expect(created.status).toBe(201);
    // A refused credential and an operator read: neither may put a token in the log.
    expect((await api(server.url, `${ADMIN}x`, '/v1/requests')).status).toBe(401);
    expect((await api(server.url, ADMIN, `/v1/requests/${created.body.id}`)).status).toBe(200);
    // A refused reload logs an error line (the file's wrong key named).
    writeFileSync(policy, 'levels:\n  high: { sla: 20m }\nbogusKey: 1\n');
    server.child.kill('SIGHUP');
    await waitFor(() => server!.stdout().includes('policy reload refused'));

    const out = server.stdout();
    const lines = jsonLines(out);
    const routed = lines.filter((l) => l.event === 'routed');
    expect(routed).toHaveLength(1);
    expect(routed[0]).toMatchObject({
      level: 'debug',
      msg: 'routed',
      requestId: created.body.id,
      agentId: created.body.agentId,
      route: created.body.assessment.route,
      matchedRules: created.body.assessment.matchedRules.map((r) => r.name),
    });
    expect(lines.find((l) => String(l.msg).includes('policy reload refused'))).toMatchObject({ level: 'error', name: 'countersign' });
    expect(String(lines.find((l) => String(l.msg).includes('policy reload refused'))?.msg)).toContain('bogusKey');
    for (const text of [out, server.stderr()]) {
      expect(text).not.toContain(MARKER);
      expect(text).not.toContain('GIVENSECRET');
    }
  });

  it('with no COUNTERSIGN_DEBUG there is no routing line; at warn the info lines are gone too', async () => {
    const dir = tmp();
    const s = await startServerProcess(`sqlite:${join(dir, 'cs.db')}`, { ...BASE, COUNTERSIGN_LOG_LEVEL: 'warn', COUNTERSIGN_ADMIN_TOKEN: ADMIN, COUNTERSIGN_AGENT_KEY: AGENT });
    try {
      expect((await api(s.url, AGENT, '/v1/requests', { body: { action: 'send_alert', args: {}, confidence: 1 } })).status).toBe(201);
      s.child.kill('SIGHUP'); // an ok reload is an info line: not at warn
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await s.stop();
    }
    expect(jsonLines(s.stdout()).filter((l) => l.event === 'routed' || l.level === 'info')).toEqual([]);
  });

  it('refuses to start with a bad COUNTERSIGN_LOG_LEVEL or a bad policy variable, naming it', async () => {
    const dir = tmp();
    const db = `sqlite:${join(dir, 'cs.db')}`;
    const level = await runCli(['serve'], { COUNTERSIGN_DATABASE_URL: db, COUNTERSIGN_PORT: '0', COUNTERSIGN_LOG_LEVEL: 'chatty' }, dir);
    expect(level.code).not.toBe(0);
    expect(level.stderr).toMatch(/COUNTERSIGN_LOG_LEVEL must be one of/);
    const sla = await runCli(['serve'], { COUNTERSIGN_DATABASE_URL: db, COUNTERSIGN_PORT: '0', COUNTERSIGN_SLA_HIGH: '15 minutes' }, dir);
    expect(sla.code).not.toBe(0);
    expect(sla.stderr).toMatch(/COUNTERSIGN_SLA_HIGH \(policy levels\.high\.sla\): expected a duration/);
  });
});

describe('policy settings from the environment', () => {
  it('are validated like the file, naming the variable', () => {
    expect(resolvePolicyOverrides({})).toEqual([]);
    expect(resolvePolicyOverrides({ COUNTERSIGN_SLA_HIGH: '7m', COUNTERSIGN_REQUIRE_APPROVAL: 'send_alert, block_ip', COUNTERSIGN_AUTOMATION_FULL: '0.99' })).toEqual([
      { variable: 'COUNTERSIGN_SLA_HIGH', path: ['levels', 'high', 'sla'], value: '7m' },
      { variable: 'COUNTERSIGN_AUTOMATION_FULL', path: ['automation', 'full'], value: 0.99 },
      { variable: 'COUNTERSIGN_REQUIRE_APPROVAL', path: ['requireApproval'], value: ['send_alert', 'block_ip'] },
    ]);
    expect(resolvePolicyOverrides({ COUNTERSIGN_REQUIRE_APPROVAL: 'none' })).toEqual([{ variable: 'COUNTERSIGN_REQUIRE_APPROVAL', path: ['requireApproval'], value: [] }]);
    expect(() => resolvePolicyOverrides({ COUNTERSIGN_AUTOMATION_SUPERVISED: '1.5' })).toThrow(/COUNTERSIGN_AUTOMATION_SUPERVISED \(policy automation\.supervised\)/);
    expect(() => resolvePolicyOverrides({ COUNTERSIGN_REQUIRE_APPROVAL: 'ok, not ok!' })).toThrow(/COUNTERSIGN_REQUIRE_APPROVAL/);
  });

  it('a value cannot smuggle policy text in: it is checked, then written as a YAML value, not spliced', () => {
    expect(() => resolvePolicyOverrides({ COUNTERSIGN_SLA_HIGH: '5m\nrules: []' })).toThrow(/COUNTERSIGN_SLA_HIGH/);
    expect(() => resolvePolicyOverrides({ COUNTERSIGN_REQUIRE_APPROVAL: 'a]\nautomation: { full: 0 }' })).toThrow(/COUNTERSIGN_REQUIRE_APPROVAL/);
    expect(() => resolvePolicyOverrides({ COUNTERSIGN_AUTOMATION_FULL: '0.9 # comment' })).toThrow(/COUNTERSIGN_AUTOMATION_FULL/);
  });

  it('are written over the file the server reads (startup and every SIGHUP), keeping the file\'s other keys', () => {
    const dir = tmp();
    const path = join(dir, 'p.yaml');
    writeFileSync(path, '# mine\nlevels:\n  high: { sla: 20m }  # twenty\n  low: { sla: 2h }\n');
    const source = readPolicySource({ policyPath: path, policyOverrides: resolvePolicyOverrides({ COUNTERSIGN_SLA_HIGH: '7m', COUNTERSIGN_REQUIRE_APPROVAL: 'send_alert' }) });
    expect(source.source).toBe(`${path} + env COUNTERSIGN_SLA_HIGH, COUNTERSIGN_REQUIRE_APPROVAL`);
    const parsed = parsePolicy(source.text);
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    expect(parsed.policy.levels.high.slaMs).toBe(7 * 60_000);
    expect(parsed.policy.levels.low.slaMs).toBe(2 * 3_600_000);
    expect(parsed.policy.requireApproval).toEqual(['send_alert']);
    expect(source.text).toContain('# mine');
    // No overrides: the file exactly as written.
    expect(readPolicySource({ policyPath: path, policyOverrides: [] }).text).toBe('# mine\nlevels:\n  high: { sla: 20m }  # twenty\n  low: { sla: 2h }\n');
  });

  it('defaults < file < environment < the agent API overlay, on a real server; config --effective says where each came from', async () => {
    const dir = tmp();
    const policy = join(dir, 'countersign.yaml');
    writeFileSync(policy, 'levels:\n  high: { sla: 20m }\n  medium: { sla: 25m }\nautomation:\n  full: 0.97\n');
    const env = { ...BASE, COUNTERSIGN_POLICY: policy, COUNTERSIGN_SLA_HIGH: '7m', COUNTERSIGN_REQUIRE_APPROVAL: 'send_alert' };
    const s = await startServerProcess(`sqlite:${join(dir, 'cs.db')}`, { ...env, COUNTERSIGN_ADMIN_TOKEN: ADMIN, COUNTERSIGN_AGENT_KEY: AGENT });
    try {
      type Created = { id: string; agentName: string; assessment: { riskLevel: string; slaSeconds: number | null; route: string; matchedRules: { name: string }[] } };
      // The env's requireApproval: send_alert at full confidence goes to a human.
      const alert = await api<Created>(s.url, AGENT, '/v1/requests', { body: { action: 'send_alert', args: {}, confidence: 1 } });
      expect(alert.body.assessment.route).not.toBe('auto_approve');
      expect(alert.body.assessment.matchedRules.map((r) => r.name)).toContain('require-approval');
      // The env's high SLA (7m) over the file's 20m.
      const high = await api<Created>(s.url, AGENT, '/v1/requests', { body: { action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.5 } });
      expect(high.body.assessment.riskLevel).toBe('high');
      expect(high.body.assessment.slaSeconds).toBe(7 * 60);
      // The agent's own overlay (a tightening, applied at once) over the env.
      const put = await api(s.url, ADMIN, `/v1/agents/${high.body.agentName}/config`, { method: 'PUT', body: { levels: { high: { sla: '3m' } } } });
      expect(put.status).toBeLessThan(300);
      const again = await api<Created>(s.url, AGENT, '/v1/requests', { body: { action: 'isolate_host', args: { host: 'ws-2' }, confidence: 0.5 } });
      expect(again.body.assessment.slaSeconds).toBe(3 * 60);
    } finally {
      await s.stop();
    }

    const cli = await runCli(['config', '--effective', '--json'], env, dir);
    expect(cli.stderr).toBe('');
    const rows = new Map((JSON.parse(cli.stdout).rows as { key: string; value: unknown; source: string }[]).map((r) => [r.key, r]));
    expect(rows.get('levels.high.sla')).toMatchObject({ value: '7m', source: 'env' });
    expect(rows.get('levels.medium.sla')).toMatchObject({ value: '25m', source: 'file' });
    expect(rows.get('levels.low.sla')).toMatchObject({ value: '60m', source: 'default' });
    expect(rows.get('automation.full')).toMatchObject({ value: 0.97, source: 'file' });
    expect(rows.get('automation.supervised')).toMatchObject({ value: 0.8, source: 'default' });
    expect(rows.get('requireApproval')).toMatchObject({ value: ['send_alert'], source: 'env' });
    expect(rows.get('log level')).toMatchObject({ value: 'info', source: 'default' });
    const text = await runCli(['config', '--effective'], env, dir);
    expect(text.stdout).toMatch(/levels\.high\.sla\s+7m\s+\(env: COUNTERSIGN_SLA_HIGH\)/);
    expect(text.stdout).toMatch(/levels\.medium\.sla\s+25m\s+\(file; env COUNTERSIGN_SLA_MEDIUM\)/);
    // A band order the whole policy breaks is refused, as the server would refuse it at start.
    const bad = await runCli(['config', '--effective'], { ...env, COUNTERSIGN_AUTOMATION_ADVISORY: '0.99' }, dir);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/automation\.advisory/);
  }, 120_000); // a real server, the CLI and SIGHUP reloads: 14 s alone, far more on a loaded 2-core runner
});

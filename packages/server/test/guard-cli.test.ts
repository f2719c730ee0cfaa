/**
 * The guard's CLI against a real HTTP server in this process: `mfa enrol` / `mfa confirm`,
 * `show` printing the match code, `approve --totp --match-code` (and a replayed code refused),
 * `agents pause|resume|slicing`, `approvers cooldown|velocity`, `approvers allowlist` and
 * `roles allowlist`.
 */
import { serve, type ServerType } from '@hono/node-server';
import { Command, CommanderError } from 'commander';
import { CountersignError, CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerClientCommands } from '../src/cli/commands/index.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';

describe('guard CLI', () => {
  let database: TestDatabase;
  let engine: Engine;
  let server: ServerType;
  let url = '';
  let clock = Date.UTC(2026, 0, 5, 9, 0, 0);
  let agent: Principal;
  let adminToken = '';
  let directorToken = '';

  async function cli(token: string, ...args: string[]): Promise<{ out: string; error?: unknown }> {
    const program = new Command().name('countersign').exitOverride();
    registerClientCommands(program);
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    try {
      await program.parseAsync(['node', 'countersign', ...args, '--url', url, '--token', token]);
      return { out };
    } catch (error) {
      return { out, error };
    } finally {
      spy.mockRestore();
    }
  }

  beforeAll(async () => {
    database = sqliteDatabase();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    adminToken = boot.adminToken;
    agent = (await engine.authenticate(boot.agentKey))!;
    directorToken = (await engine.createOperator((await engine.authenticate(adminToken))!, { name: 'dana', roles: ['director'] })).token;
    const app = createApp({ engine, log: () => {} });
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await engine.close();
    await database.drop();
  });

  it('enrols, confirms, shows the match code and approves a critical request with both; a replayed code is refused', async () => {
    const enrol = await cli(directorToken, 'mfa', 'enrol', '--json');
    expect(enrol.error).toBeUndefined();
    const { secret, otpauthUri } = JSON.parse(enrol.out) as { secret: string; otpauthUri: string };
    expect(otpauthUri).toContain(`secret=${secret}`);
    expect((await cli(directorToken, 'mfa', 'confirm', totpCode(secret, clock))).out).toContain('TOTP enrolled');
    expect((await cli(directorToken, 'mfa', 'status')).out.trim()).toBe('enrolled');

    const critical = CreateRequestBody.parse({ action: 'delete_data', args: { path: '/srv' }, confidence: 0.99, riskLevel: 'critical' });
    const first = (await engine.createRequest(agent, critical)).request;
    const second = (await engine.createRequest(agent, critical)).request;
    const shown = await cli(directorToken, 'show', first.id);
    const match = /match code:\s+(\d{2}) \(approve with --match-code \1\)/.exec(shown.out);
    expect(match).not.toBeNull();
    clock += 30_000;
    const code = totpCode(secret, clock);
    const approved = await cli(directorToken, 'approve', first.id, '--totp', code, '--match-code', match![1]!);
    expect(approved.error).toBeUndefined();
    expect((await engine.getRequest(agent, first.id)).reviews).toHaveLength(1);
    const second2 = /match code:\s+(\d{2})/.exec((await cli(directorToken, 'show', second.id)).out)![1]!;
    const replay = await cli(directorToken, 'approve', second.id, '--totp', code, '--match-code', second2);
    expect(replay.error).toBeInstanceOf(CountersignError);
    expect((replay.error as CountersignError).code).toBe('MFA_INVALID');
  });

  it('pauses and resumes an agent, reports slicing, and shows and sets cool-downs', async () => {
    expect((await cli(adminToken, 'agents', 'pause', 'demo-agent', '--minutes', '10', '--reason', 'investigating')).out).toMatch(/demo-agent paused until /);
    const refused = await engine.createRequest(agent, CreateRequestBody.parse({ action: 'block_ip', args: { ip: '192.0.2.1' } })).catch((e: unknown) => e);
    expect((refused as CountersignError).code).toBe('AGENT_PAUSED');
    expect((await cli(adminToken, 'agents', 'resume', 'demo-agent', '--reason', 'fine')).out).toContain('demo-agent resumed');
    expect((await cli(adminToken, 'agents', 'slicing', 'demo-agent', '--window', '30')).out).toContain('no attack detected');
    expect((await cli(adminToken, 'approvers', 'cooldown', 'dana')).out.trim()).toBe('no cool-down');
    expect((await cli(adminToken, 'approvers', 'cooldown', 'dana', '--minutes', '15', '--reason', 'long shift')).out).toMatch(/cool-down until .*: manual: long shift/);
    const velocity = JSON.parse((await cli(adminToken, 'approvers', 'velocity', 'dana', '--json')).out);
    expect(velocity).toMatchObject({ operator: 'dana', counts: { hour: 1, day: 1 }, allowed: true });
  });

  it("shows, sets and lifts a role's and an operator's IP allowlist; a director may read but not set", async () => {
    expect((await cli(directorToken, 'roles', 'allowlist', 'reviewer')).out.trim()).toBe('role reviewer: no IP allowlist');
    const set = await cli(adminToken, 'roles', 'allowlist', 'reviewer', '--cidr', '10.0.0.0/8', '--cidr', '192.0.2.7', '--json');
    expect(set.error).toBeUndefined();
    expect(JSON.parse(set.out)).toEqual({ role: 'reviewer', cidrs: ['10.0.0.0/8', '192.0.2.7/32'] });
    expect((await cli(directorToken, 'roles', 'allowlist', 'reviewer')).out.trim()).toBe('role reviewer: approvals only from 10.0.0.0/8, 192.0.2.7/32');
    expect((await engine.guard.roleAllowlist((await engine.authenticate(adminToken))!, 'reviewer')).cidrs).toEqual(['10.0.0.0/8', '192.0.2.7/32']);

    const byDirector = await cli(directorToken, 'roles', 'allowlist', 'reviewer', '--clear');
    expect((byDirector.error as CountersignError).code).toBe('FORBIDDEN');
    const unknown = await cli(adminToken, 'roles', 'allowlist', 'reviewers', '--cidr', '10.0.0.0/8');
    expect((unknown.error as CountersignError).code).toBe('VALIDATION_FAILED');
    const junk = await cli(adminToken, 'roles', 'allowlist', 'reviewer', '--cidr', '10.0.0.0/99');
    expect((junk.error as CountersignError).code).toBe('VALIDATION_FAILED');
    expect(((await cli(adminToken, 'roles', 'allowlist', 'reviewer', '--cidr', '10.0.0.0/8', '--clear')).error as CommanderError).code).toBe('commander.conflictingOption');
    expect(JSON.parse((await cli(directorToken, 'roles', 'allowlist', 'reviewer', '--json')).out).cidrs).toEqual(['10.0.0.0/8', '192.0.2.7/32']);

    expect((await cli(adminToken, 'roles', 'allowlist', 'reviewer', '--clear')).out.trim()).toBe('role reviewer: no IP allowlist');
    expect((await engine.guard.roleAllowlist((await engine.authenticate(adminToken))!, 'reviewer')).cidrs).toEqual([]);

    expect((await cli(adminToken, 'approvers', 'allowlist', 'dana', '--cidr', '2001:db8::/32')).out.trim()).toBe('operator dana: approvals only from 2001:db8::/32');
    expect(JSON.parse((await cli(directorToken, 'approvers', 'allowlist', 'dana', '--json')).out)).toMatchObject({ operator: 'dana', cidrs: ['2001:db8::/32'] });
    expect((await cli(adminToken, 'approvers', 'allowlist', 'dana', '--clear')).out.trim()).toBe('operator dana: no IP allowlist');
  });
});

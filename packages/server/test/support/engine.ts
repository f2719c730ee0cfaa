import { DEFAULT_POLICY_YAML, type Role } from '@countersign/core';
import { Engine } from '../../src/engine/engine.ts';
import type { Principal } from '../../src/engine/principal.ts';
import { connect } from '../../src/store/connect.ts';
import { ephemeralServerSecret } from '../../src/keys/server-secret.ts';

/**
 * One server secret for every engine a test file opens, as servers sharing a database share the
 * secret file: an engine opened on the same database with another secret refuses its credentials.
 */
export const TEST_SERVER_SECRET = ephemeralServerSecret();

export interface TestEngine {
  engine: Engine;
  admin: Principal;
  agent: Principal;
  operator(name: string, roles?: Role[], groups?: string[]): Promise<Principal>;
  agentNamed(name: string): Promise<Principal>;
}

export async function openTestEngine(url: string, policy = DEFAULT_POLICY_YAML): Promise<TestEngine> {
  const engine = await Engine.open({ connection: await connect(url), serverSecret: TEST_SERVER_SECRET });
  await engine.activatePolicy(policy, 'test');
  const boot = await engine.bootstrap();
  if (!boot) throw new Error('expected an empty database');
  const admin = (await engine.authenticate(boot.adminToken))!;
  const agent = (await engine.authenticate(boot.agentKey))!;
  return {
    engine,
    admin,
    agent,
    async operator(name, roles = ['reviewer'], groups = []) {
      const { token } = await engine.createOperator(admin, { name, roles, groups });
      return (await engine.authenticate(token))!;
    },
    async agentNamed(name) {
      const { key } = await engine.createAgentKey(admin, name);
      return (await engine.authenticate(key))!;
    },
  };
}

export const QUEUED = { action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82 } as const;
export const AUTO = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 } } as const;

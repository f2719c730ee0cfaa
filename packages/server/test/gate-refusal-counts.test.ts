/**
 * Issue 12: counters are recorded only when a valid vote commits. A wrong or missing TOTP code is
 * refused before anything is counted, so it never uses up the approver's velocity slot (here
 * `perHour: 1`): the same reviewer's valid approval after two refusals is accepted, and only the
 * next one is over the limit. Both databases; the approval_events rows are counted directly.
 */
import { CountersignError, CreateRequestBody } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const POLICY = `
rules:
  - name: risky-with-mfa
    when: { action: [risky_op] }
    then: { riskAtLeast: high, review: true, mfa: true }
guard:
  velocity: { perHour: 1, perDay: 50, riskLevels: [high, critical] }
  cooldown: { threshold: 100, window: 15m, duration: 30m, riskLevels: [high, critical] }
`;

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    if (err instanceof CountersignError) return err.code;
    throw err;
  }
}

describe.each(ENGINES)('a refused vote counts for nothing ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let clock = Date.UTC(2026, 0, 5, 10, 0, 0);
  let agent: Principal;
  let reviewer: Principal;
  let secret = '';

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock, guard: { encryptionKey: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' } });
    await engine.activatePolicy(POLICY, 'test');
    const boot = (await engine.bootstrap())!;
    const admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
    reviewer = (await engine.authenticate((await engine.createOperator(admin, { name: 'vic', roles: ['reviewer'] })).token))!;
    secret = (await engine.guard.enrolTotp(reviewer)).secret;
    await engine.guard.confirmTotp(reviewer, totpCode(secret, clock));
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('wrong and missing codes never use up the velocity slot; the valid approval does', async () => {
    const create = async (n: number) => (await engine.createRequest(agent, CreateRequestBody.parse({ action: 'risky_op', args: { n }, confidence: 0.9 }))).request;
    const first = await create(1);
    const second = await create(2);
    expect(first.assessment.riskLevel).toBe('high');
    clock += 60_000; // a fresh TOTP step after the enrolment's
    const right = totpCode(secret, clock);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, '0');
    expect(await codeOf(engine.review(reviewer, first.id, { verdict: 'approve' }))).toBe('MFA_REQUIRED');
    expect(await codeOf(engine.review(reviewer, first.id, { verdict: 'approve', totp: wrong }))).toBe('MFA_INVALID');
    expect(await codeOf(engine.review(reviewer, first.id, { verdict: 'approve', totp: wrong }))).toBe('MFA_INVALID');
    expect((await engine.review(reviewer, first.id, { verdict: 'approve', totp: right })).status).toBe('approved');
    clock += 60_000;
    // The one slot of the hour is now used: the next valid approval is over the limit.
    expect(await codeOf(engine.review(reviewer, second.id, { verdict: 'approve', totp: totpCode(secret, clock) }))).toBe('VELOCITY_LIMITED');
    const events = await (engine.store as unknown as { db: { selectFrom(t: string): any } }).db.selectFrom('approval_events').select((eb: any) => eb.fn.countAll().as('n')).executeTakeFirst();
    expect(Number(events.n)).toBe(1);
  });
});

/**
 * Step-up MFA and number matching through the engine, on both databases: enrolment, critical
 * approvals that need a valid unused TOTP code and the card's match code, replay refusal (also
 * under a race), secrets sealed at rest, and where the match code is (not) shown.
 */
import { CountersignError, CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { connect } from '../src/store/connect.ts';
import { ephemeralServerSecret } from '../src/keys/server-secret.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const body = (input: unknown) => CreateRequestBody.parse(input);
const CRITICAL = { action: 'delete_data', args: { path: '/srv/customers' }, confidence: 0.99, riskLevel: 'critical' } as const;
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0);

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    if (err instanceof CountersignError) return err.code;
    throw err;
  }
}

describe.each(ENGINES)('step-up MFA: $name', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let clock = T0;
  let admin: Principal;
  let agent: Principal;
  const secrets = new Map<string, string>();

  async function director(name: string): Promise<Principal> {
    const { token } = await engine.createOperator(admin, { name, roles: ['director'] });
    return (await engine.authenticate(token))!;
  }

  async function enrol(op: Principal): Promise<string> {
    const { secret } = await engine.guard.enrolTotp(op);
    await engine.guard.confirmTotp(op, totpCode(secret, clock));
    secrets.set(op.kind === 'operator' ? op.operatorId : '', secret);
    return secret;
  }

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), now: () => clock, guard: { encryptionKey: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' } });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
  });
  afterAll(async () => {
    await engine.close();
    await database.drop();
  });

  it('enrols TOTP: secret and otpauth URI once, confirmed by a first valid code, sealed at rest', async () => {
    const erin = await director('erin');
    const started = await engine.guard.enrolTotp(erin);
    expect(started.otpauthUri).toMatch(/^otpauth:\/\/totp\/Countersign:erin\?secret=[A-Z2-7]+&issuer=Countersign$/);
    expect(started.encryptedAtRest).toBe(true);
    expect(await engine.guard.totpStatus(erin)).toEqual({ enrolled: false, pending: true });
    const wrong = String((Number(totpCode(started.secret, clock)) + 1) % 1_000_000).padStart(6, '0');
    expect(await codeOf(engine.guard.confirmTotp(erin, wrong))).toBe('MFA_INVALID');
    await engine.guard.confirmTotp(erin, totpCode(started.secret, clock));
    expect(await engine.guard.totpStatus(erin)).toEqual({ enrolled: true, pending: false });
    // A confirmed factor cannot be replaced with the operator's token alone.
    expect(await codeOf(engine.guard.enrolTotp(erin))).toBe('ILLEGAL_TRANSITION');
    const stored = await engine.store.guard.totpFor(erin.kind === 'operator' ? erin.operatorId : '');
    expect(stored?.secret.startsWith('enc:v2:')).toBe(true);
    expect(stored?.secret).not.toContain(started.secret);
    expect(await codeOf(engine.guard.enrolTotp(agent))).toBe('FORBIDDEN');
  });

  it('refuses a critical approval without a code, with a wrong code, or without the match code; takes it with both', async () => {
    const ann = await director('ann');
    const { request } = await engine.createRequest(agent, body(CRITICAL));
    expect(request.assessment).toMatchObject({ riskLevel: 'critical', mfaRequired: true });
    // Not enrolled yet.
    expect(await codeOf(engine.review(ann, request.id, { verdict: 'approve', totp: '123456', matchCode: '00' }))).toBe('MFA_REQUIRED');
    const secret = await enrol(ann);
    clock += 30_000; // the confirming code's step is used; move to the next one
    const matchCode = (await engine.getRequest(ann, request.id)).matchCode!;
    expect(matchCode).toMatch(/^\d{2}$/);
    expect(await codeOf(engine.review(ann, request.id, { verdict: 'approve', matchCode }))).toBe('MFA_REQUIRED');
    const good = totpCode(secret, clock);
    const bad = good === '000000' ? '111111' : '000000';
    expect(await codeOf(engine.review(ann, request.id, { verdict: 'approve', totp: bad, matchCode }))).toBe('MFA_INVALID');
    expect(await codeOf(engine.review(ann, request.id, { verdict: 'approve', totp: good }))).toBe('MATCH_CODE_INVALID');
    const wrongMatch = String((Number(matchCode) + 1) % 100).padStart(2, '0');
    expect(await codeOf(engine.review(ann, request.id, { verdict: 'approve', totp: good, matchCode: wrongMatch }))).toBe('MATCH_CODE_INVALID');
    expect((await engine.getRequest(admin, request.id)).reviews).toHaveLength(0);
    // The refused attempts did not burn the code: the failing transactions rolled back.
    const voted = await engine.review(ann, request.id, { verdict: 'approve', totp: good, matchCode });
    expect(voted.reviews).toHaveLength(1);
    expect(voted.status).toBe('pending'); // critical needs two approvals
    const refusals = (await engine.auditForRequest(admin, request.id)).filter((e) => e.type === 'review_refused').map((e) => (e.data as { code: string }).code);
    expect(refusals).toEqual(['MFA_REQUIRED', 'MFA_REQUIRED', 'MFA_INVALID', 'MATCH_CODE_INVALID', 'MATCH_CODE_INVALID']);

    const bob = await director('bob');
    const bobSecret = await enrol(bob);
    clock += 30_000;
    const done = await engine.review(bob, request.id, { verdict: 'approve', totp: totpCode(bobSecret, clock), matchCode });
    expect(done.status).toBe('approved');
    expect(done.decision?.deciders.map((d) => d.name).sort()).toEqual(['ann', 'bob']);
  });

  it('refuses a replayed code (same time step) and accepts the next step', async () => {
    const cleo = await director('cleo');
    const secret = await enrol(cleo);
    clock += 30_000;
    const first = (await engine.createRequest(agent, body(CRITICAL))).request;
    const second = (await engine.createRequest(agent, body(CRITICAL))).request;
    const code = totpCode(secret, clock);
    const match1 = (await engine.getRequest(cleo, first.id)).matchCode!;
    const match2 = (await engine.getRequest(cleo, second.id)).matchCode!;
    await engine.review(cleo, first.id, { verdict: 'approve', totp: code, matchCode: match1 });
    expect(await codeOf(engine.review(cleo, second.id, { verdict: 'approve', totp: code, matchCode: match2 }))).toBe('MFA_INVALID');
    // The previous step's code (still inside the ±1 drift window) is older than the used one: refused too.
    expect(await codeOf(engine.review(cleo, second.id, { verdict: 'approve', totp: totpCode(secret, clock - 30_000), matchCode: match2 }))).toBe('MFA_INVALID');
    clock += 30_000;
    const ok = await engine.review(cleo, second.id, { verdict: 'approve', totp: totpCode(secret, clock), matchCode: match2 });
    expect(ok.reviews).toHaveLength(1);
  });

  it('lets exactly one of two racing approvals use one code', async () => {
    const dora = await director('dora');
    const secret = await enrol(dora);
    clock += 30_000;
    const requests = [(await engine.createRequest(agent, body(CRITICAL))).request, (await engine.createRequest(agent, body(CRITICAL))).request];
    const code = totpCode(secret, clock);
    const matches = await Promise.all(requests.map(async (r) => (await engine.getRequest(dora, r.id)).matchCode!));
    const outcomes = await Promise.all(requests.map((r, i) => codeOf(engine.review(dora, r.id, { verdict: 'approve', totp: code, matchCode: matches[i] }))));
    expect(outcomes.filter((o) => o === undefined)).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'MFA_INVALID')).toHaveLength(1);
  });

  it('shows the match code only to an operator reading the request, never in listings, notifications or to the agent', async () => {
    const { request } = await engine.createRequest(agent, body(CRITICAL));
    expect((await engine.getRequest(admin, request.id)).matchCode).toMatch(/^\d{2}$/);
    expect((await engine.getRequest(agent, request.id)).matchCode).toBeUndefined();
    expect((await engine.requestById(request.id))?.matchCode).toBeUndefined(); // what channels render
    const listed = (await engine.listRequests(admin, { status: 'pending', limit: 500 })).items.find((r) => r.id === request.id);
    expect(listed?.matchCode).toBeUndefined();
    // Stable across reads (and processes: the secret is in the database).
    expect((await engine.getRequest(admin, request.id)).matchCode).toBe((await engine.getRequest(admin, request.id)).matchCode);
  });

  it('never holds back a rejection: no code needed to say no', async () => {
    const eve = await director('eve');
    const { request } = await engine.createRequest(agent, body(CRITICAL));
    const rejected = await engine.review(eve, request.id, { verdict: 'reject', reason: 'not today' });
    expect(rejected.status).toBe('rejected');
  });

  it('never stores a seed plain: without an encryption key it is sealed under the server secret; old plain: seeds are sealed at start (issue 13, point 8)', async () => {
    const other = make();
    const secret = ephemeralServerSecret();
    let plain = await Engine.open({ connection: await connect(other.url), now: () => clock, guard: {}, serverSecret: secret });
    try {
      await plain.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      const boot = (await plain.bootstrap())!;
      const op = (await plain.authenticate(boot.adminToken))!;
      const id = op.kind === 'operator' ? op.operatorId : '';
      const started = await plain.guard.enrolTotp(op);
      expect(started.encryptedAtRest).toBe(true);
      const stored = (await plain.store.guard.totpFor(id))!.secret;
      expect(stored).toMatch(/^enc:v2:[0-9a-f]{16}:/);
      expect(stored).not.toContain(started.secret);
      // A `plain:` seed written after the secret-file era began (as a database writer would) …
      await plain.store.transaction((tx) => tx.guard.replaceTotpSecret(id, stored, `plain:${started.secret}`));
      await plain.close();
      // … is not sealed by the next start (only the era's first start does that) and is refused.
      plain = await Engine.open({ connection: await connect(other.url), now: () => clock, guard: {}, serverSecret: secret });
      await plain.activatePolicy(DEFAULT_POLICY_YAML, 'test');
      expect((await plain.store.guard.totpFor(id))!.secret).toBe(`plain:${started.secret}`);
      expect((await plain.listAudit(op, { type: 'totp_sealed' })).length).toBe(0);
      await expect(plain.guard.confirmTotp(op, totpCode(started.secret, clock))).rejects.toThrow(/plain TOTP seed is refused/);
    } finally {
      await plain.close();
      await other.drop();
    }
  });
});
